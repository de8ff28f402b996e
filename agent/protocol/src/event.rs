//! What the conversation service and the backends say, as one stream of [`Event`]s.
//!
//! A backend's turn yields `Started`, text, tools, retries and ends with `Final` or `Failed`; the
//! conversation service relays those and adds its own (`Queued`, `WaitingForSlot`, `Refused`,
//! `Proposal`, answers to ops). One enum for both, so a turn's event reaches a channel as the
//! backend made it.

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::error::{TurnError, TurnErrorKind};
use crate::question::{Answered, Question};
use crate::turn::TurnSummary;

/// What a submission yields, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `position` turns of this chat are ahead of this one.
    Queued {
        position: usize,
    },
    /// Every slot is busy; `position` 1 is next.
    WaitingForSlot {
        position: usize,
    },
    /// The backend session is up.
    Started {
        session_id: String,
        model: String,
        failed_mcp_servers: Vec<String>,
    },
    /// A new model message begins: text shown so far belongs to an earlier message.
    MessageStart,
    /// Text as the model writes it.
    TextDelta(String),
    /// A whole text block (the deltas of one block, joined): the reply is made of these.
    Text(String),
    ToolCall {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        id: String,
        ok: bool,
        content: String,
    },
    /// The API failed and the backend is retrying.
    Retrying {
        attempt: u32,
        max_retries: u32,
        delay_ms: u64,
        status: Option<u16>,
    },
    /// The turn is answered; `summary.text` is the reply.
    Final(TurnSummary),
    /// The turn failed; `partial` is what it had written.
    Failed {
        error: TurnError,
        partial: String,
    },
    /// The message cannot be taken; the text says why.
    Refused(String),
    /// "Remember this?", asked after the answer.
    Proposal(Question),
    /// An open question went unanswered: the user wrote something else.
    Lapsed(Question),
    Answered(Answered),
    Interrupted {
        was_running: bool,
    },
    NewConversation,
    /// The answer to a chat command (`/status`, `/learnings`, `/forget`, `/remember`).
    Reply(String),
    /// The running turn waits for a person to allow an effect (shown whole, with the choices).
    ApprovalNeeded(crate::approval::Approval),
    /// An approval was decided (by a person, the timeout or the turn's end): `line` replaces
    /// its question, its buttons gone.
    ApprovalSettled {
        id: u64,
        decision: crate::approval::Decision,
        line: String,
    },
    /// The answer to a [`crate::Op::Decide`] or [`crate::Op::AllowMore`]: a short word for
    /// whoever pressed.
    Decided(String),
    /// One model message's tokens so far (`message` counts the turn's messages from 0): what
    /// the turn costs while it runs.
    Usage {
        message: u32,
        model: String,
        usage: crate::turn::Usage,
    },
    /// The account's usage window (subscription logins), as the API reported it.
    UsageWindow {
        status: String,
        resets_at_ms: Option<u64>,
        window: String,
    },
    /// A `[budget]` cap came near or is spent.
    Budget(crate::budget::BudgetNotice),
}

impl Event {
    /// A turn's last event.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::Final(_) | Event::Failed { .. })
    }

    /// A failure with nothing written yet.
    pub fn failed(error: TurnError) -> Event {
        Event::Failed {
            error,
            partial: String::new(),
        }
    }
}

/// The events of one submission or one backend turn. The receiver of a turn's events holds
/// the chat's queue until it is dropped (see [`Events::channel_held`]).
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
    /// Dropped with the events: whoever waits on the other end may go on.
    _held: Option<oneshot::Sender<()>>,
}

/// Resolves when the [`Events`] it was made with are dropped.
pub type Released = oneshot::Receiver<()>;

impl Events {
    /// Events and the sender that feeds them.
    pub fn channel(capacity: usize) -> (mpsc::Sender<Event>, Events) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, Events { rx, _held: None })
    }

    /// [`Events::channel`], and a [`Released`] that resolves once the events are dropped (the
    /// channel is done with them).
    pub fn channel_held(capacity: usize) -> (mpsc::Sender<Event>, Events, Released) {
        let (tx, rx) = mpsc::channel(capacity);
        let (held, released) = oneshot::channel();
        (
            tx,
            Events {
                rx,
                _held: Some(held),
            },
            released,
        )
    }

    /// Events that hold just `event`.
    pub fn one(event: Event) -> Events {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(event);
        Events { rx, _held: None }
    }

    /// The next event; `None` after the last.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is there already (an `Interrupt`'s answer is).
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Drains a turn's events: its summary, or its error. Text and tools are dropped.
    pub async fn finish(mut self) -> Result<TurnSummary, TurnError> {
        while let Some(event) = self.next().await {
            match event {
                Event::Final(summary) => return Ok(summary),
                Event::Failed { error, .. } => return Err(error),
                Event::Refused(why) => return Err(TurnError::new(TurnErrorKind::Crashed, why)),
                _ => {}
            }
        }
        Err(TurnError::new(
            TurnErrorKind::Crashed,
            "the backend ended the turn without a result",
        ))
    }
}
