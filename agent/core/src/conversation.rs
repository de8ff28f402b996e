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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use valor_protocol::{
    Answered, Command, Event, Events, Op, Question, Released, TurnError, TurnErrorKind,
    TurnRequest, UserTurn,
};

use crate::approvals::ApprovalSettings;
use crate::backend::Backend;
use crate::engine::{Engine, Incoming, Turn};
use crate::learning::{Expired, Learning, typed_answer};
use crate::progress::{ProgressBoard, TurnProgress};
use crate::status::{ChatRecords, ChatStatus};
use crate::transcript::Transcript;

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
    /// What the store knows of a chat's turns, for its status.
    records: std::sync::OnceLock<Arc<dyn ChatRecords>>,
    /// Spend caps (`/cost`, [Allow more]); the engine's backend is wrapped by it.
    budget: std::sync::OnceLock<crate::budget::Budget>,
    settings: Settings,
    slots: Arc<Semaphore>,
    /// Questions that expired, told to every channel listening.
    notices: broadcast::Sender<Notice>,
    waiting_for_slot: AtomicUsize,
    chats: Mutex<HashMap<i64, ChatQueue>>,
    shutdown: CancellationToken,
    progress: ProgressBoard,
    approvals: crate::approvals::Approvals,
}

#[derive(Default)]
struct ChatQueue {
    turns: VecDeque<Submitted>,
    /// The running turn's token.
    running: Option<CancellationToken>,
    /// The running turn's events (an approval's question joins them).
    events: Option<mpsc::Sender<Event>>,
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
    done: Released,
}

/// Releases a counter when dropped.
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What happened to a chat outside any submission, told to the channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A question nobody answered in its time: its line replaces it.
    QuestionExpired(Expired),
    /// A question the operator answered on the dashboard: its line replaces it (the same shape
    /// as an expired one: the question and the line).
    QuestionSettled(Expired),
}

impl Conversations {
    pub fn new(engine: Engine, learning: Option<Arc<dyn Learning>>, settings: Settings) -> Self {
        Self::with_approvals(engine, learning, settings, ApprovalSettings::default())
    }

    /// [`Conversations::new`] with approvals set up as `approvals` says.
    pub fn with_approvals(
        engine: Engine,
        learning: Option<Arc<dyn Learning>>,
        settings: Settings,
        approvals: ApprovalSettings,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(settings.max_concurrent.max(1)));
        // Turns no user waits for (session summaries) take a slot like any other.
        engine.set_background(Arc::new(Slotted {
            backend: engine.backend(),
            slots: Arc::clone(&slots),
        }));
        Conversations {
            inner: Arc::new(Inner {
                engine,
                learning,
                records: std::sync::OnceLock::new(),
                budget: std::sync::OnceLock::new(),
                notices: broadcast::channel(64).0,
                slots,
                settings,
                waiting_for_slot: AtomicUsize::new(0),
                chats: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                progress: ProgressBoard::default(),
                approvals: crate::approvals::Approvals::new(approvals),
            }),
        }
    }

    /// Gives `/status` and the dashboard what the store knows of a chat's turns (once).
    pub fn set_records(&self, records: Arc<dyn ChatRecords>) {
        let _ = self.inner.records.set(records);
    }

    /// The backend for turns no user waits for (the daydream): each takes one of the global
    /// slots while it runs, so they never crowd out users' turns beyond the limit.
    pub fn background(&self) -> Arc<dyn Backend> {
        Arc::new(Slotted {
            backend: self.inner.engine.backend(),
            slots: Arc::clone(&self.inner.slots),
        })
    }

    /// Moves whenever a turn starts, shows progress or ends (for live views).
    pub fn activity(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.progress.subscribe()
    }

    /// What happens to chats outside any submission (expired questions).
    pub fn notices(&self) -> broadcast::Receiver<Notice> {
        self.inner.notices.subscribe()
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
                self.inner.approvals.end_grants(chat_id);
                Events::one(Event::NewConversation)
            }
            Op::Command {
                chat_id,
                command,
                source,
                by,
            } => {
                let (tx, events) = Events::channel(1);
                let service = self.clone();
                tokio::spawn(async move {
                    let reply = service.command(chat_id, &command, &source, by).await;
                    let _ = tx.send(Event::Reply(reply)).await;
                });
                events
            }
            Op::Decide {
                chat_id,
                approval,
                decision,
                by,
            } => {
                let (tx, events) = Events::channel(1);
                let service = self.clone();
                tokio::spawn(async move {
                    let word = service.decide(chat_id, approval, decision, by).await;
                    let _ = tx.send(Event::Decided(word)).await;
                });
                events
            }
            Op::AllowMore {
                chat_id,
                key,
                by,
                anywhere,
            } => {
                let (tx, events) = Events::channel(1);
                let service = self.clone();
                tokio::spawn(async move {
                    let word = service.allow_more(chat_id, key, by, anywhere).await;
                    let _ = tx.send(Event::Decided(word)).await;
                });
                events
            }
            Op::Answer {
                chat_id,
                question,
                yes,
                operator,
            } => {
                let (tx, events) = Events::channel(1);
                let service = self.clone();
                tokio::spawn(async move {
                    let answered = service.answer(chat_id, question, yes, operator).await;
                    let _ = tx.send(Event::Answered(answered)).await;
                });
                events
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

    /// Stops every running and waiting turn (turns submitted later fail at once), then ends
    /// every open session with its summary.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.engine.end_sessions().await;
    }

    /// Waits until what the finished turns left to keep is in memory, without ending the
    /// sessions (a one-off turn from the command line, about to exit).
    pub async fn kept(&self) {
        self.inner.engine.kept().await;
    }

    /// Stops every running and waiting turn at once (a channel stopping); the sessions stay
    /// open for [`Conversations::shutdown`].
    pub fn stop_turns(&self) {
        self.inner.shutdown.cancel();
    }

    /// What this process knows of the chat now, without the store: its queue, its running
    /// turn, its latest context figures and session.
    pub fn live_status(&self, chat_id: i64) -> ChatStatus {
        ChatStatus {
            chat_id,
            pending: self.pending(chat_id),
            running: self.progress(chat_id),
            context: self.inner.engine.figures(chat_id),
            live_session: self.inner.engine.session(chat_id),
            ..ChatStatus::default()
        }
    }

    /// The chat as `/status` and the dashboard show it.
    pub async fn chat_status(&self, chat_id: i64) -> ChatStatus {
        let mut status = self.live_status(chat_id);
        if let Some(records) = self.inner.records.get() {
            let day_ms = 86_400_000;
            let today = valor_protocol::time::now_ms() / day_ms * day_ms;
            status.session = records.session(chat_id).await.unwrap_or_else(|e| {
                tracing::warn!(chat_id, error = %e, "cannot read the chat's session");
                None
            });
            status.today = records
                .usage_since(chat_id, today)
                .await
                .unwrap_or_default();
            status.questions = records.questions(chat_id).await.unwrap_or_default();
        }
        status
    }

    /// The answer to a chat command.
    async fn command(
        &self,
        chat_id: i64,
        command: &Command,
        source: &str,
        by: Option<i64>,
    ) -> String {
        match command {
            Command::Status => return self.chat_status(chat_id).await.lines().join("\n"),
            Command::Cost => return self.cost(chat_id, by).await,
            _ => {}
        }
        let Some(learning) = self.inner.learning.clone() else {
            return "Learning is off ([learning] enabled = false).".to_owned();
        };
        crate::learning::command(learning.as_ref(), chat_id, command, source)
            .await
            .unwrap_or_else(|| "Sorry, that failed.".to_owned())
    }

    /// Expires the questions nobody answered in their time (and forgets old settled ones),
    /// telling every channel listening; the scheduler runs it whether or not a channel is.
    pub async fn expire_questions(&self) -> usize {
        let Some(learning) = self.inner.learning.clone() else {
            return 0;
        };
        let now = valor_protocol::time::now_ms();
        let expired = learning.expire(now).await;
        for gone in &expired {
            tracing::info!(
                chat_id = gone.question.chat_id,
                question = gone.question.id,
                "question expired"
            );
            if let Some(queue) = self.chats().get_mut(&gone.question.chat_id)
                && queue
                    .question
                    .as_ref()
                    .is_some_and(|(q, _)| q.id == gone.question.id)
            {
                queue.question = None;
            }
            let _ = self
                .inner
                .notices
                .send(Notice::QuestionExpired(gone.clone()));
        }
        expired.len()
    }

    fn chats(&self) -> std::sync::MutexGuard<'_, HashMap<i64, ChatQueue>> {
        self.inner
            .chats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn user_turn(&self, turn: UserTurn) -> Events {
        let chat_id = turn.chat_id;
        let (tx, events, done) = Events::channel_held(256);
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
                        queue.events = Some(submitted.tx.clone());
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
                queue.events = None;
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
        let typed_by = turn.author.as_ref().map(|a| a.user_id);
        if let Some(answered) = self.typed_answer(chat_id, typed_by, &text).await {
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
        let author = turn.author.as_ref().map(|a| a.user_id);
        let watched = watcher.map(|learning| {
            let text = text.clone();
            tokio::spawn(async move { learning.watch(chat_id, author, &text, &source).await })
        });
        let incoming = Incoming {
            chat_id,
            author: turn.author,
            text,
            fresh_session: fresh,
            cancel,
            source: turn.source,
            chat_title: turn.chat_title,
        };
        let progress = &self.inner.progress;
        progress.begin(chat_id, valor_protocol::time::now_ms());
        let turn = self.inner.engine.turn(incoming).await;
        match turn {
            Ok(turn) => {
                relay(turn, &tx, permit, |event| progress.note(chat_id, event)).await;
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
    async fn typed_answer(&self, chat_id: i64, by: Option<i64>, text: &str) -> Option<Event> {
        let yes = typed_answer(text)?;
        let question = {
            let mut chats = self.chats();
            let queue = chats.get_mut(&chat_id)?;
            // In a group only the person it was asked of answers it by typing (anyone else's
            // "yes" is a message of its own).
            let theirs = |q: &Question| q.asked_of.is_none() || chat_id > 0 || q.asked_of == by;
            match queue.question.take() {
                Some((question, at)) if at.elapsed() < QUESTION_TTL && theirs(&question) => {
                    question
                }
                other => {
                    queue.question = other;
                    return None;
                }
            }
        };
        Some(Event::Answered(
            self.answer(chat_id, question.id, yes, false).await,
        ))
    }

    /// Another message lapses the chat's open question.
    fn lapse_question(&self, chat_id: i64) -> Option<Question> {
        let mut chats = self.chats();
        let (question, at) = chats.get_mut(&chat_id)?.question.take()?;
        (at.elapsed() < QUESTION_TTL).then_some(question)
    }

    async fn answer(&self, chat_id: i64, question: u64, yes: bool, operator: bool) -> Answered {
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
        let mut answered = if operator {
            learning.decide(chat_id, question, yes).await
        } else {
            learning.answer(chat_id, question, yes).await
        };
        // Settled now: the channel replaces the question (and its buttons) by the outcome;
        // answered elsewhere, the chat's channel hears of it.
        if let Some(line) = &answered.outcome {
            answered.question = Some(question);
            if operator {
                let settled = Expired {
                    question: Question {
                        id: question,
                        chat_id,
                        text: String::new(),
                        asked_of: None,
                    },
                    line: line.clone(),
                };
                let _ = self.inner.notices.send(Notice::QuestionSettled(settled));
            }
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

/// A backend whose turns each take one of the service's slots while they run.
struct Slotted {
    backend: Arc<dyn Backend>,
    slots: Arc<Semaphore>,
}

impl Backend for Slotted {
    fn start(&self, request: TurnRequest) -> Events {
        let (tx, events) = Events::channel(64);
        let (backend, slots) = (Arc::clone(&self.backend), Arc::clone(&self.slots));
        tokio::spawn(async move {
            let cancel = request.cancel.clone();
            let permit = tokio::select! {
                () = cancel.cancelled() => None,
                permit = slots.acquire_owned() => permit.ok(),
            };
            let Some(_permit) = permit else {
                let error =
                    TurnError::new(TurnErrorKind::Cancelled, "stopped while waiting for a slot");
                let _ = tx.send(Event::failed(error)).await;
                return;
            };
            let mut inner = backend.start(request);
            while let Some(event) = inner.next().await {
                if tx.send(event).await.is_err() {
                    break;
                }
            }
        });
        events
    }
}

/// Relays a turn's events, each shown to `progress` first; the slot is given back as soon as
/// the backend is done. A failure carries what the turn had written.
async fn relay(
    mut turn: Turn,
    tx: &mpsc::Sender<Event>,
    permit: OwnedSemaphorePermit,
    progress: impl Fn(&Event),
) {
    let mut permit = Some(permit);
    let mut transcript = Transcript::default();
    let mut writing = false;
    while let Some(event) = turn.next().await {
        // Text deltas reach the board once (it only notes that writing began).
        let is_text = matches!(event, Event::TextDelta(_));
        if !is_text || !writing {
            progress(&event);
        }
        writing = match event {
            Event::TextDelta(_) => true,
            Event::ToolCall { .. } | Event::Retrying { .. } => false,
            _ => writing,
        };
        let event = match event {
            Event::MessageStart => {
                transcript.message_start();
                Event::MessageStart
            }
            Event::TextDelta(delta) => {
                transcript.push(&delta);
                Event::TextDelta(delta)
            }
            // Whole blocks are the engine's (the stored reply); channels show the deltas.
            Event::Text(_) => continue,
            Event::Failed { error, partial } if partial.is_empty() => Event::Failed {
                error,
                partial: transcript.text(),
            },
            event => event,
        };
        let ended = event.is_terminal();
        if ended {
            permit.take();
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

#[path = "conversation_approvals.rs"]
mod approvals;
#[path = "conversation_budget.rs"]
mod budget;

#[cfg(test)]
#[path = "conversation_tests.rs"]
mod tests;
