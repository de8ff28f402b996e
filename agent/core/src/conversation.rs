//! The conversation service: a chat's turn lifecycle in one place, the same for every channel
//! (in the style of codex-rs' submission and event queues).
//!
//! A channel submits an [`Op`] and reads the [`Event`]s that submission yields, in order:
//! - `UserTurn`: `Queued` when turns of the chat are ahead, `WaitingForSlot` when every slot
//!   is busy, then the turn's own events (`Started`, text, tools, retries) up to `Final` or
//!   `Failed` (or `Refused`: the message cannot be taken), then `Proposal` when the learning
//!   watcher wants to ask "Remember this?". A typed yes or no to an open question is answered
//!   (`Answered`) instead of running a turn.
//! - `Interrupt` stops the chat's running turn; `NewConversation` makes its next turn start
//!   over; `Answer` settles a question (a button press).
//!
//! One ordered queue per chat, one concurrency limit across chats, cancellation by token. The
//! next turn of a chat starts when the channel is done with the previous one: it has dropped
//! that turn's [`Events`] (so answers are shown in order, each whole).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::backend::{TurnEvent, TurnSummary};
use crate::engine::{Author, Engine, Incoming};
use crate::error::{TurnError, TurnErrorKind};
use crate::learning::{Answered, Learning, Question, typed_answer};
use crate::progress::{ProgressBoard, TurnProgress};
use crate::transcript::Transcript;

/// Work done when a turn reaches the head of its chat's queue (a file's download): the text
/// to answer, or a refusal to show the user.
pub type Prepare = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// A user's message to answer.
pub struct UserTurn {
    pub chat_id: i64,
    pub author: Option<Author>,
    pub text: String,
    /// Where it came from (`tg:<update_id>`), so a replay stores it once.
    pub source: Option<String>,
    pub prepare: Option<Prepare>,
    /// Whether the learning watcher may ask "Remember this?" about it (not where nobody could
    /// answer: `valor chat --once`).
    pub ask: bool,
}

impl UserTurn {
    pub fn new(chat_id: i64, text: impl Into<String>) -> UserTurn {
        UserTurn {
            chat_id,
            author: None,
            text: text.into(),
            source: None,
            prepare: None,
            ask: true,
        }
    }
}

/// What a channel asks of the service.
pub enum Op {
    UserTurn(UserTurn),
    /// Stop the chat's running turn (`/stop`, the Stop button, Ctrl-C).
    Interrupt {
        chat_id: i64,
    },
    /// The chat's next turn starts a new conversation (`/new`).
    NewConversation {
        chat_id: i64,
    },
    /// A yes or no to a "Remember this?" question (a button press).
    Answer {
        chat_id: i64,
        question: u64,
        yes: bool,
    },
}

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
    /// A new model message begins.
    MessageStart,
    TextDelta(String),
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
}

/// The events of one submission; the receiver of a turn's events holds the chat's queue until
/// it is dropped.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
    /// Dropped with the events: the chat's next turn may start.
    _done: Option<oneshot::Sender<()>>,
}

impl Events {
    /// The next event; `None` after the last.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// Events and the sender that feeds them (channels' tests, other producers of events).
    pub fn channel(capacity: usize) -> (mpsc::Sender<Event>, Events) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, Events { rx, _done: None })
    }

    /// The next event if one is there already (an `Interrupt`'s answer is).
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    fn one(event: Event) -> Events {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(event);
        Events { rx, _done: None }
    }
}

/// Limits of the service.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Turns running at once across chats.
    pub max_concurrent: usize,
    /// Turns of one chat running or waiting; more are refused.
    pub max_pending: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_concurrent: 4,
            max_pending: 20,
        }
    }
}

/// Chats the service keeps state for when they have nothing running; past it idle ones go.
pub const MAX_IDLE_CHATS: usize = 4096;

/// How long a "Remember this?" waits for a typed answer (as long as its buttons).
const QUESTION_TTL: Duration = Duration::from_secs(10 * 60);

/// The service; clones share it.
#[derive(Clone)]
pub struct Conversations {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    learning: Option<Arc<dyn Learning>>,
    settings: Settings,
    slots: Arc<Semaphore>,
    waiting_for_slot: AtomicUsize,
    chats: Mutex<HashMap<i64, ChatQueue>>,
    shutdown: CancellationToken,
    progress: ProgressBoard,
}

#[derive(Default)]
struct ChatQueue {
    turns: VecDeque<Submitted>,
    /// The running turn's token.
    running: Option<CancellationToken>,
    /// A task is working through `turns`.
    worker: bool,
    /// `/new` was asked: the next turn starts a new conversation.
    fresh_next: bool,
    /// The question asked after the last answer, open for a typed yes or no.
    question: Option<(Question, Instant)>,
}

impl ChatQueue {
    fn pending(&self) -> usize {
        self.turns.len() + usize::from(self.running.is_some())
    }

    /// Nothing to keep: no work, no flag, no open question.
    fn is_idle(&self) -> bool {
        !self.worker
            && self.turns.is_empty()
            && !self.fresh_next
            && self
                .question
                .as_ref()
                .is_none_or(|(_, at)| at.elapsed() >= QUESTION_TTL)
    }
}

struct Submitted {
    turn: UserTurn,
    tx: mpsc::Sender<Event>,
    /// Ends when the channel drops the turn's events.
    done: oneshot::Receiver<()>,
}

/// Releases a counter when dropped.
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Conversations {
    pub fn new(engine: Engine, learning: Option<Arc<dyn Learning>>, settings: Settings) -> Self {
        Conversations {
            inner: Arc::new(Inner {
                engine,
                learning,
                slots: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
                settings,
                waiting_for_slot: AtomicUsize::new(0),
                chats: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                progress: ProgressBoard::default(),
            }),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn learning(&self) -> Option<&Arc<dyn Learning>> {
        self.inner.learning.as_ref()
    }

    /// Submits `op`; its events follow on the returned [`Events`].
    pub fn submit(&self, op: Op) -> Events {
        match op {
            Op::UserTurn(turn) => self.user_turn(turn),
            Op::Interrupt { chat_id } => {
                let running = self.chats().get(&chat_id).and_then(|q| q.running.clone());
                if let Some(cancel) = &running {
                    tracing::info!(chat_id, "turn interrupted");
                    cancel.cancel();
                }
                Events::one(Event::Interrupted {
                    was_running: running.is_some(),
                })
            }
            Op::NewConversation { chat_id } => {
                let mut chats = self.chats();
                make_room(&mut chats);
                chats.entry(chat_id).or_default().fresh_next = true;
                Events::one(Event::NewConversation)
            }
            Op::Answer {
                chat_id,
                question,
                yes,
            } => {
                let (tx, rx) = mpsc::channel(1);
                let service = self.clone();
                tokio::spawn(async move {
                    let answered = service.answer(chat_id, question, yes).await;
                    let _ = tx.send(Event::Answered(answered)).await;
                });
                Events { rx, _done: None }
            }
        }
    }

    /// Turns of the chat running or waiting.
    pub fn pending(&self, chat_id: i64) -> usize {
        self.chats().get(&chat_id).map_or(0, ChatQueue::pending)
    }

    /// Whether a new turn of the chat would be refused (too many waiting).
    pub fn is_full(&self, chat_id: i64) -> bool {
        self.pending(chat_id) >= self.inner.settings.max_pending
    }

    /// Turns running now, and turns waiting (for their chat's turn before them or a slot),
    /// over every chat.
    pub fn load(&self) -> (usize, usize) {
        let chats = self.chats();
        let started = chats.values().filter(|q| q.running.is_some()).count();
        let queued: usize = chats.values().map(|q| q.turns.len()).sum();
        // A turn taken from its queue may still wait for a slot.
        let for_slot = self
            .inner
            .waiting_for_slot
            .load(Ordering::Relaxed)
            .min(started);
        (started - for_slot, queued + for_slot)
    }

    /// What the chat's running turn is doing, while one runs.
    pub fn progress(&self, chat_id: i64) -> Option<TurnProgress> {
        self.inner.progress.get(chat_id)
    }

    /// Chats the service keeps state for.
    pub fn chats_tracked(&self) -> usize {
        self.chats().len()
    }

    /// Stops every running and waiting turn; turns submitted later fail at once.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    fn chats(&self) -> std::sync::MutexGuard<'_, HashMap<i64, ChatQueue>> {
        self.inner
            .chats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn user_turn(&self, turn: UserTurn) -> Events {
        let chat_id = turn.chat_id;
        let (tx, rx) = mpsc::channel(256);
        let (done_tx, done) = oneshot::channel();
        let events = Events {
            rx,
            _done: Some(done_tx),
        };
        if self.inner.shutdown.is_cancelled() {
            let error = TurnError::new(TurnErrorKind::Cancelled, "Valor is stopping");
            let _ = tx.try_send(Event::Failed {
                error,
                partial: String::new(),
            });
            return events;
        }
        let mut chats = self.chats();
        make_room(&mut chats);
        let queue = chats.entry(chat_id).or_default();
        let ahead = queue.pending();
        if ahead >= self.inner.settings.max_pending {
            tracing::warn!(
                chat_id,
                max_pending = self.inner.settings.max_pending,
                "too many messages waiting; refused"
            );
            let _ = tx.try_send(Event::Refused(
                "Too many messages are waiting in this chat; try again when I have answered them."
                    .to_owned(),
            ));
            return events;
        }
        if ahead > 0 {
            let _ = tx.try_send(Event::Queued { position: ahead });
        }
        queue.turns.push_back(Submitted { turn, tx, done });
        if !queue.worker {
            queue.worker = true;
            tokio::spawn(self.clone().work(chat_id));
        }
        events
    }

    /// Runs the chat's turns in order until its queue is empty.
    async fn work(self, chat_id: i64) {
        loop {
            let next = {
                let mut chats = self.chats();
                let Some(queue) = chats.get_mut(&chat_id) else {
                    return;
                };
                match queue.turns.pop_front() {
                    Some(submitted) => {
                        let cancel = self.inner.shutdown.child_token();
                        queue.running = Some(cancel.clone());
                        (submitted, cancel, std::mem::take(&mut queue.fresh_next))
                    }
                    None => {
                        queue.worker = false;
                        if queue.is_idle() {
                            chats.remove(&chat_id);
                        }
                        return;
                    }
                }
            };
            let (Submitted { turn, tx, done }, cancel, fresh) = next;
            let ran = self.run(turn, tx, cancel, fresh).await;
            if let Some(queue) = self.chats().get_mut(&chat_id) {
                queue.running = None;
                if fresh && !ran {
                    // The turn never reached the model: the next one starts over instead.
                    queue.fresh_next = true;
                }
            }
            // The channel is done showing this turn when it drops its events.
            let _ = done.await;
        }
    }

    /// One submitted turn; false when it never reached the engine.
    async fn run(
        &self,
        turn: UserTurn,
        tx: mpsc::Sender<Event>,
        cancel: CancellationToken,
        fresh: bool,
    ) -> bool {
        let chat_id = turn.chat_id;
        let text = match turn.prepare {
            None => turn.text,
            Some(prepare) => {
                let prepared = tokio::select! {
                    () = cancel.cancelled() => Err(None),
                    prepared = prepare => prepared.map_err(Some),
                };
                match prepared {
                    Ok(text) => text,
                    Err(Some(refusal)) => {
                        let _ = tx.send(Event::Refused(refusal)).await;
                        return false;
                    }
                    Err(None) => {
                        let _ = tx.send(stopped("stopped while queued")).await;
                        return false;
                    }
                }
            }
        };
        if let Some(answered) = self.typed_answer(chat_id, &text).await {
            let _ = tx.send(answered).await;
            return false;
        }
        if let Some(lapsed) = self.lapse_question(chat_id) {
            let _ = tx.send(Event::Lapsed(lapsed)).await;
        }
        let Some(permit) = self.slot(&tx, &cancel).await else {
            let _ = tx.send(stopped("stopped while waiting for a slot")).await;
            return false;
        };
        // The watcher reads the message beside the turn (a turn stopped before it ran is not
        // asked about); its question follows the answer.
        let source = turn.source.clone().unwrap_or_else(|| "console".to_owned());
        let watcher = self.inner.learning.clone().filter(|_| turn.ask);
        let watched = watcher.map(|learning| {
            let text = text.clone();
            tokio::task::spawn_blocking(move || learning.watch(chat_id, &text, &source))
        });
        let incoming = Incoming {
            chat_id,
            author: turn.author,
            text,
            fresh_session: fresh,
            cancel,
            source: turn.source,
        };
        let progress = &self.inner.progress;
        progress.begin(chat_id, crate::time::now_ms());
        let turn = self.inner.engine.turn(incoming).await;
        match turn {
            Ok((stream, _figures)) => {
                relay(stream, &tx, permit, |event| progress.note(chat_id, event)).await;
                progress.end(chat_id);
            }
            Err(e) => {
                progress.end(chat_id);
                tracing::error!(chat_id, error = %e, "cannot take the message in");
                let error = TurnError::new(TurnErrorKind::Crashed, e.to_string());
                let failed = Event::Failed {
                    error,
                    partial: String::new(),
                };
                let _ = tx.send(failed).await;
                return true;
            }
        }
        if let Some(watched) = watched
            && let Ok(Some(question)) = watched.await
        {
            if let Some(queue) = self.chats().get_mut(&chat_id) {
                queue.question = Some((question.clone(), Instant::now()));
            }
            let _ = tx.send(Event::Proposal(question)).await;
        }
        true
    }

    /// One of the global slots, waiting for it when all are busy; `None` when stopped first.
    async fn slot(
        &self,
        tx: &mpsc::Sender<Event>,
        cancel: &CancellationToken,
    ) -> Option<OwnedSemaphorePermit> {
        let slots = Arc::clone(&self.inner.slots);
        if let Ok(permit) = Arc::clone(&slots).try_acquire_owned() {
            return Some(permit);
        }
        let waiting = &self.inner.waiting_for_slot;
        let position = waiting.fetch_add(1, Ordering::AcqRel) + 1;
        let _waiting = Counted(waiting);
        let _ = tx.send(Event::WaitingForSlot { position }).await;
        tokio::select! {
            () = cancel.cancelled() => None,
            permit = slots.acquire_owned() => permit.ok(),
        }
    }

    /// A typed yes or no to the chat's open question, answered; `None` when `text` is not one
    /// or no question is open.
    async fn typed_answer(&self, chat_id: i64, text: &str) -> Option<Event> {
        let yes = typed_answer(text)?;
        let question = {
            let mut chats = self.chats();
            let queue = chats.get_mut(&chat_id)?;
            match queue.question.take() {
                Some((question, at)) if at.elapsed() < QUESTION_TTL => question,
                _ => return None,
            }
        };
        Some(Event::Answered(
            self.answer(chat_id, question.id, yes).await,
        ))
    }

    /// Another message lapses the chat's open question.
    fn lapse_question(&self, chat_id: i64) -> Option<Question> {
        let mut chats = self.chats();
        let (question, at) = chats.get_mut(&chat_id)?.question.take()?;
        (at.elapsed() < QUESTION_TTL).then_some(question)
    }

    async fn answer(&self, chat_id: i64, question: u64, yes: bool) -> Answered {
        let Some(learning) = self.inner.learning.clone() else {
            return Answered::only("This question is no longer open.");
        };
        if let Some(queue) = self.chats().get_mut(&chat_id)
            && queue
                .question
                .as_ref()
                .is_some_and(|(q, _)| q.id == question)
        {
            queue.question = None;
        }
        let mut answered =
            tokio::task::spawn_blocking(move || learning.answer(chat_id, question, yes))
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(chat_id, error = %e, "answering a question failed");
                    Answered::only("Sorry, something went wrong.")
                });
        // Settled now: the channel replaces the question (and its buttons) by the outcome.
        if answered.outcome.is_some() {
            answered.question = Some(question);
        }
        answered
    }
}

/// Drops idle chats beyond [`MAX_IDLE_CHATS`], so the map does not grow with every chat seen.
fn make_room(chats: &mut HashMap<i64, ChatQueue>) {
    if chats.len() < MAX_IDLE_CHATS {
        return;
    }
    chats.retain(|_, queue| !queue.is_idle());
    if chats.len() >= MAX_IDLE_CHATS {
        // Still full of flags and open questions: the oldest questions go first.
        let mut resting: Vec<(i64, Option<Instant>)> = chats
            .iter()
            .filter(|(_, q)| !q.worker && q.turns.is_empty())
            .map(|(id, q)| (*id, q.question.as_ref().map(|(_, at)| *at)))
            .collect();
        resting.sort_by_key(|(_, at)| *at);
        for (id, _) in resting.into_iter().take(MAX_IDLE_CHATS / 4) {
            chats.remove(&id);
        }
    }
}

fn stopped(detail: &str) -> Event {
    Event::Failed {
        error: TurnError::new(TurnErrorKind::Cancelled, detail),
        partial: String::new(),
    }
}

/// Relays a turn's events, each shown to `progress` first; the slot is given back as soon as
/// the backend is done.
async fn relay(
    mut stream: crate::backend::TurnStream,
    tx: &mpsc::Sender<Event>,
    permit: OwnedSemaphorePermit,
    progress: impl Fn(&TurnEvent),
) {
    let mut permit = Some(permit);
    let mut transcript = Transcript::default();
    let mut ended = false;
    let mut writing = false;
    while let Some(event) = stream.next().await {
        // Text deltas reach the board once (it only notes that writing began).
        let is_text = matches!(event, TurnEvent::TextDelta(_));
        if !is_text || !writing {
            progress(&event);
        }
        writing = match event {
            TurnEvent::TextDelta(_) => true,
            TurnEvent::ToolCall { .. } | TurnEvent::Retrying { .. } => false,
            _ => writing,
        };
        let event = match event {
            TurnEvent::Queued { position } => Event::WaitingForSlot { position },
            TurnEvent::Started {
                session_id,
                model,
                failed_mcp_servers,
            } => Event::Started {
                session_id,
                model,
                failed_mcp_servers,
            },
            TurnEvent::MessageStart => {
                transcript.message_start();
                Event::MessageStart
            }
            TurnEvent::TextDelta(delta) => {
                transcript.push(&delta);
                Event::TextDelta(delta)
            }
            TurnEvent::Text(_) => continue,
            TurnEvent::ToolCall { id, name, input } => Event::ToolCall { id, name, input },
            TurnEvent::ToolResult { id, ok, content } => Event::ToolResult { id, ok, content },
            TurnEvent::Retrying {
                attempt,
                max_retries,
                delay_ms,
                status,
            } => Event::Retrying {
                attempt,
                max_retries,
                delay_ms,
                status,
            },
            TurnEvent::Finished(summary) => Event::Final(summary),
            TurnEvent::Failed(error) => Event::Failed {
                error,
                partial: transcript.text(),
            },
        };
        if matches!(event, Event::Final(_) | Event::Failed { .. }) {
            permit.take();
            ended = true;
        }
        // A channel that stopped listening still lets the turn run to its end (the reply is
        // stored); it only misses the events.
        let _ = tx.send(event).await;
        if ended {
            return;
        }
    }
    drop(permit);
    let error = TurnError::new(
        TurnErrorKind::Crashed,
        "the backend ended the turn without a result",
    );
    let _ = tx
        .send(Event::Failed {
            error,
            partial: transcript.text(),
        })
        .await;
}

#[cfg(test)]
#[path = "conversation_tests.rs"]
mod tests;
