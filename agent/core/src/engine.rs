//! The conversation engine: one turn from a user's message to the stored reply, the same for
//! every channel (Telegram, the console).
//!
//! 1. The message is stored, durably, before anything else happens.
//! 2. The context window is built from the chat's history (summaries kept between turns).
//! 3. The prompt gets the CONTEXT_DATA block. A resumed backend session already holds the
//!    history, so the block carries only the last few messages; the whole compressed history
//!    goes in when the backend has no session for the chat (first turn since start, or when the
//!    backend had to start a new session).
//! 4. The request is routed and run; its events are relayed as they come.
//! 5. The reply is stored when the turn finishes.
//!
//! `/new` (a fresh session) also cuts the history: what came before is not carried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;
use valor_protocol::{Author, Event, Events, TurnError, TurnErrorKind, TurnRequest, TurnSummary};

use crate::backend::Backend;
use crate::context::{
    ContextFigures, ContextItem, ContextLimits, ContextMessage, Role, SummaryCache, optimize_with,
};
use crate::inject::{ContextData, inject_counted};
use crate::observe::{Activity, CodeMap};
use crate::recall::{PromptBudget, Recall};
use crate::routing::ModelRouter;
pub use crate::store::{ConversationStore, StoreFailure};

mod memory;
pub use memory::SUMMARY_CHAT_ID;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub limits: ContextLimits,
    /// Messages the block carries when the backend session holds the history.
    pub short_history: usize,
    /// Messages read for the context window at most.
    pub window: usize,
    /// Room for long-term memories in the prompt.
    pub prompt: PromptBudget,
    /// A chat with no turn for this long starts a new session (its last one summarised);
    /// 0: only `/new` ends a session.
    pub session_idle_ms: u64,
    /// The model that writes session summaries (one cheap call a session); `None`: they are
    /// extractive only.
    pub summary_model: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            limits: ContextLimits::default(),
            short_history: 5,
            window: 2000,
            prompt: PromptBudget::default(),
            session_idle_ms: 0,
            summary_model: None,
        }
    }
}

/// The MCP servers a chat's turns may use, and the tool names to allow.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolGrant {
    pub mcp_config: serde_json::Value,
    pub allowed_tools: Vec<String>,
    /// The permission prompt tool (approvals), and the tools that must reach it.
    pub permission_tool: Option<String>,
    pub gated_tools: Vec<String>,
}

/// Makes a chat's [`ToolGrant`] (the agent's tool host).
pub type ToolGrantFn = Arc<dyn Fn(i64) -> ToolGrant + Send + Sync>;

/// A user's message to answer.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub chat_id: i64,
    pub author: Option<Author>,
    pub text: String,
    /// Start over (`/new`): a new backend session, no earlier history.
    pub fresh_session: bool,
    pub cancel: CancellationToken,
    /// Where the message came from (e.g. `tg:<update_id>`), so a replay stores it once.
    pub source: Option<String>,
    /// The chat's name where it came from, kept with the chat.
    pub chat_title: Option<String>,
}

impl Incoming {
    pub fn new(chat_id: i64, text: impl Into<String>) -> Incoming {
        Incoming {
            chat_id,
            author: None,
            text: text.into(),
            fresh_session: false,
            cancel: CancellationToken::new(),
            source: None,
            chat_title: None,
        }
    }
}

struct ChatState {
    summaries: SummaryCache,
    figures: ContextFigures,
    /// The backend session this engine saw the chat's last turn finish in.
    session: Option<String>,
    /// Messages before this id belong to a conversation closed with `/new`.
    since_id: u64,
    /// When its last turn started (the engine's turn counter): the least recent goes first.
    last_turn: u64,
    memory: memory::SessionState,
    /// The chat's name as last kept in the store (written again only when it changes).
    title: Option<String>,
}

/// Chats whose state (summaries, figures, session) the engine keeps; past it the least
/// recently used is dropped and rebuilt from the store when that chat speaks again.
pub const MAX_TRACKED_CHATS: usize = 1024;

impl ChatState {
    fn starting_at(since_id: u64) -> ChatState {
        ChatState {
            last_turn: 0,
            summaries: SummaryCache::default(),
            figures: ContextFigures::default(),
            session: None,
            since_id,
            memory: memory::SessionState::default(),
            title: None,
        }
    }
}

/// The engine; clones share state. Made by [`Engine::builder`].
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Called with each turn's context figures (for /metrics).
pub type FiguresObserver = Arc<dyn Fn(i64, ContextFigures) + Send + Sync>;

struct Inner {
    backend: Arc<dyn Backend>,
    store: Arc<dyn ConversationStore>,
    router: ModelRouter,
    config: EngineConfig,
    chats: Mutex<HashMap<i64, ChatState>>,
    /// Counts turns, to order chats by their latest.
    turns: std::sync::atomic::AtomicU64,
    observer: Option<FiguresObserver>,
    recall: Option<Arc<dyn Recall>>,
    tools: Option<ToolGrantFn>,
    code: Option<Arc<dyn CodeMap>>,
    now_ms: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// The backend for turns of its own (session summaries): one that waits for a slot.
    background: std::sync::OnceLock<Arc<dyn Backend>>,
    /// What a finished turn leaves to keep (its observations): waited for when the sessions
    /// end, so stopping right after a turn loses nothing.
    keeping: tokio_util::task::TaskTracker,
}

/// Builds an [`Engine`]: the backend, the store and the router are needed; the rest is optional.
pub struct EngineBuilder {
    backend: Arc<dyn Backend>,
    store: Arc<dyn ConversationStore>,
    router: ModelRouter,
    config: EngineConfig,
    observer: Option<FiguresObserver>,
    recall: Option<Arc<dyn Recall>>,
    tools: Option<ToolGrantFn>,
    code: Option<Arc<dyn CodeMap>>,
    now_ms: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl EngineBuilder {
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Calls `observer` with every turn's context figures.
    pub fn observe_figures(mut self, observer: FiguresObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Brings relevant long-term memories into every turn's prompt.
    pub fn recall(mut self, recall: Arc<dyn Recall>) -> Self {
        self.recall = Some(recall);
        self
    }

    /// Gives every turn the MCP tool servers `grant` returns for its chat.
    pub fn tools(mut self, grant: ToolGrantFn) -> Self {
        self.tools = Some(grant);
        self
    }

    /// Reads the chats' workspaces: the function-map layer, the functions observations name.
    pub fn code_map(mut self, code: Arc<dyn CodeMap>) -> Self {
        self.code = Some(code);
        self
    }

    /// Reads the time (Unix milliseconds) from `now_ms` instead of the system clock.
    pub fn clock(mut self, now_ms: Arc<dyn Fn() -> u64 + Send + Sync>) -> Self {
        self.now_ms = now_ms;
        self
    }

    pub fn build(self) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                backend: self.backend,
                store: self.store,
                router: self.router,
                config: self.config,
                chats: Mutex::new(HashMap::new()),
                turns: std::sync::atomic::AtomicU64::new(0),
                observer: self.observer,
                recall: self.recall,
                tools: self.tools,
                code: self.code,
                now_ms: self.now_ms,
                background: std::sync::OnceLock::new(),
                keeping: tokio_util::task::TaskTracker::new(),
            }),
        }
    }
}

/// A turn begun: its message stored, its history read.
struct Begun {
    incoming: Incoming,
    /// The stored message's id.
    id: u64,
    history: Vec<ContextMessage>,
    /// Whether this turn ended the session before it (its summary is kept).
    fresh_session: bool,
    /// What memory brought back for the request.
    remembered: memory::Remembered,
    /// Where an unknown chat's conversation starts.
    start: u64,
    now_ms: u64,
}

/// A turn ready to start: its request and what the relay needs to know.
struct Prepared {
    request: TurnRequest,
    figures: ContextFigures,
    /// The backend session the chat's last turn finished in, as this engine saw it.
    expected_session: Option<String>,
    turn: u64,
    /// The user's words, for the turn's observations.
    request_text: String,
}

impl Engine {
    pub fn builder(
        backend: Arc<dyn Backend>,
        store: Arc<dyn ConversationStore>,
        router: ModelRouter,
    ) -> EngineBuilder {
        EngineBuilder {
            backend,
            store,
            router,
            config: EngineConfig::default(),
            observer: None,
            recall: None,
            tools: None,
            code: None,
            now_ms: memory::system_clock(),
        }
    }

    /// The backend users' turns run on.
    pub fn backend(&self) -> Arc<dyn Backend> {
        Arc::clone(&self.inner.backend)
    }

    /// Where the engine's own turns (session summaries) run: a backend that takes a slot of
    /// the conversation service's limit (set once, by the service).
    pub fn set_background(&self, backend: Arc<dyn Backend>) {
        let _ = self.inner.background.set(backend);
    }

    fn background(&self) -> Arc<dyn Backend> {
        self.inner
            .background
            .get()
            .cloned()
            .unwrap_or_else(|| Arc::clone(&self.inner.backend))
    }

    /// Chats whose state the engine keeps (at most [`MAX_TRACKED_CHATS`]).
    pub fn tracked_chats(&self) -> usize {
        self.chats().len()
    }

    /// The context figures of a chat's latest turn.
    pub fn figures(&self, chat_id: i64) -> Option<ContextFigures> {
        self.chats().get(&chat_id).map(|c| c.figures)
    }

    /// The backend session the chat's latest turn finished in.
    pub fn session(&self, chat_id: i64) -> Option<String> {
        self.chats().get(&chat_id).and_then(|c| c.session.clone())
    }

    fn chats(&self) -> std::sync::MutexGuard<'_, HashMap<i64, ChatState>> {
        self.inner
            .chats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a turn. The message is stored before this returns; the events follow from the
    /// [`Turn`], the reply (`Final`'s text) assembled from the model's text blocks. The
    /// store's reads and writes, recall and the context window run off the async threads.
    pub async fn turn(&self, incoming: Incoming) -> Result<Turn, StoreFailure> {
        let prepared = self.prepare(incoming).await?;
        Ok(self.start(prepared))
    }

    /// Keeps the chat's name in the store when it is new or changed (not at every message).
    async fn keep_title(&self, chat_id: i64, title: Option<&str>) {
        let Some(title) = title else { return };
        let known = self.chats().get(&chat_id).and_then(|c| c.title.clone());
        if known.as_deref() == Some(title) {
            return;
        }
        match self.inner.store.name_chat(chat_id, title).await {
            Ok(()) => {
                if let Some(state) = self.chats().get_mut(&chat_id) {
                    state.title = Some(title.to_owned());
                }
            }
            Err(e) => tracing::warn!(chat_id, error = %e, "cannot keep the chat's name"),
        }
    }

    /// Stores the message (durably), reads the chat's history and what memory brings back;
    /// the rest of the turn's preparation reads files, so it runs on the blocking pool.
    async fn prepare(&self, mut incoming: Incoming) -> Result<Prepared, StoreFailure> {
        let inner = &self.inner;
        let chat_id = incoming.chat_id;
        // A secret pasted into the chat reaches neither the model (nor its transcripts in the
        // sandbox) nor the store: `[redacted]` stands in for it from here on.
        incoming.text = valor_redact::redact_owned(incoming.text);
        let id = inner
            .store
            .append(
                chat_id,
                Role::User,
                &incoming.text,
                incoming.author.as_ref(),
                incoming.source.as_deref(),
                true,
            )
            .await?;
        self.keep_title(chat_id, incoming.chat_title.as_deref())
            .await;
        let history = inner
            .store
            .recent(chat_id, inner.config.window.saturating_add(1))
            .await?;
        // `/new` or a long pause ends the session: its summary is kept, the turn starts afresh.
        let now_ms = (inner.now_ms)();
        let ending = self
            .session_ending(chat_id, incoming.fresh_session, now_ms)
            .await;
        if ending.is_some() {
            inner.store.set_conversation_start(chat_id, id).await?;
        }
        // A chat this engine has not seen yet continues where its conversation started.
        let known = self.chats().contains_key(&chat_id);
        let start = if known || ending.is_some() {
            0
        } else {
            inner.store.conversation_start(chat_id).await?
        };
        if let Some(ending) = &ending {
            self.end_session(chat_id, ending, &history, id, now_ms)
                .await;
        }
        let remembered = self.remembered(&incoming, id, &history).await;
        let engine = self.clone();
        let begun = Begun {
            incoming,
            id,
            history,
            fresh_session: ending.is_some(),
            remembered,
            start,
            now_ms,
        };
        tokio::task::spawn_blocking(move || engine.compose(begun))
            .await
            .map_err(|e| StoreFailure::failed(format!("the turn could not be prepared: {e}")))
    }

    /// Builds the context window and the prompt, routes the request. Blocking: the code map
    /// reads files.
    fn compose(&self, begun: Begun) -> Prepared {
        let Begun {
            incoming,
            id,
            history,
            fresh_session,
            remembered,
            start,
            now_ms,
        } = begun;
        let inner = &self.inner;
        let chat_id = incoming.chat_id;
        let memory::Remembered {
            learnings,
            memories,
            session_summary,
        } = remembered;
        let code_map = self.code_layer(chat_id, &incoming.text, inner.config.prompt.shares().code);

        let turn = inner
            .turns
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (prompt, figures, expected_session) = {
            let mut chats = self.chats();
            if !chats.contains_key(&chat_id) && chats.len() >= MAX_TRACKED_CHATS {
                let oldest = chats
                    .iter()
                    .min_by_key(|(_, s)| s.last_turn)
                    .map(|(id, _)| *id);
                if let Some(oldest) = oldest {
                    chats.remove(&oldest);
                }
            }
            let state = chats
                .entry(chat_id)
                .or_insert_with(|| ChatState::starting_at(start));
            state.last_turn = turn;
            if fresh_session {
                let memory = std::mem::take(&mut state.memory);
                let title = state.title.take();
                *state = ChatState::starting_at(id);
                (state.memory, state.title) = (memory, title);
            }
            Engine::note_turn(state, now_ms);
            let earlier: Vec<ContextMessage> = history
                .into_iter()
                .filter(|m| m.id < id && m.id >= state.since_id)
                .collect();
            let (items, mut figures) =
                optimize_with(&earlier, &inner.config.limits, &mut state.summaries);
            let carried: Vec<ContextItem> = if state.session.is_some() {
                let keep = inner.config.short_history;
                let start = items.len().saturating_sub(keep);
                items[start..]
                    .iter()
                    .filter(|i| matches!(i, ContextItem::Message { .. }))
                    .cloned()
                    .collect()
            } else {
                items
            };
            let data = ContextData {
                chat_id,
                username: incoming.author.as_ref().and_then(|a| a.username.as_deref()),
                history: &carried,
                memories: &memories,
                learnings: &learnings,
                session_summary: session_summary.as_deref(),
                code_map: code_map.as_deref(),
                budget: inner.config.prompt,
            };
            let (prompt, layers) = inject_counted(&incoming.text, &data);
            figures.memory = layers;
            state.figures = figures;
            (prompt, figures, state.session.clone())
        };

        if let Some(observe) = &inner.observer {
            observe(chat_id, figures);
        }
        let route = inner.router.route(&incoming.text);
        let mut request = TurnRequest::new(chat_id, prompt).routed(route);
        request.fresh_session = fresh_session;
        request.user_id = incoming.author.as_ref().map(|a| a.user_id);
        request.cancel = incoming.cancel;
        if let Some(grant) = &inner.tools {
            let grant = grant(chat_id);
            request.mcp_config = Some(grant.mcp_config);
            request.extra_allowed_tools = grant.allowed_tools;
            request.permission_tool = grant.permission_tool;
            request.gated_tools = grant.gated_tools;
        }
        Prepared {
            request,
            figures,
            expected_session,
            turn,
            request_text: incoming.text,
        }
    }

    /// Runs the prepared request: the backend's events, recorded as they are read.
    fn start(&self, prepared: Prepared) -> Turn {
        let Prepared {
            request,
            figures,
            expected_session,
            turn,
            request_text,
        } = prepared;
        let chat_id = request.chat_id;
        // One span per turn, carried into the backend and into every read of its events.
        let span = tracing::info_span!("turn", chat_id, turn, session = ?expected_session);
        let events = span.in_scope(|| self.inner.backend.start(request));
        Turn {
            engine: self.clone(),
            events,
            chat_id,
            figures,
            expected_session,
            new_session: false,
            blocks: Vec::new(),
            activity: Activity::default(),
            request_text: Some(request_text),
            span,
        }
    }

    /// Stores the reply and notes the session the chat's turns continue in.
    async fn finished(&self, chat_id: i64, summary: &TurnSummary, new_session: bool) {
        let stored = (self.inner.store)
            .append(
                chat_id,
                Role::Assistant,
                &valor_redact::redact(&summary.text),
                None,
                None,
                false,
            )
            .await;
        if let Err(e) = stored {
            tracing::error!(chat_id, error = %e, "cannot store the reply");
        }
        // A backend that had to start a new session ran this turn without the history: the
        // next turn carries it in full. (A chat dropped meanwhile is rebuilt from the store,
        // its conversation start included.)
        if let Some(state) = self.chats().get_mut(&chat_id) {
            state.session = (!new_session).then(|| summary.session_id.clone());
        }
    }
}

/// A running turn: the backend's events, each recorded as the reader takes it (the reply
/// stored when the turn finishes, its observations made), in the reader's own task: no task
/// and no channel of the engine's between the backend and the conversation service.
pub struct Turn {
    engine: Engine,
    events: Events,
    chat_id: i64,
    figures: ContextFigures,
    /// The backend session the chat's last turn finished in, as this engine saw it.
    expected_session: Option<String>,
    new_session: bool,
    /// The model's whole text blocks: the reply.
    blocks: Vec<String>,
    activity: Activity,
    /// The user's words, for the turn's observations (taken when it finishes).
    request_text: Option<String>,
    span: tracing::Span,
}

impl Turn {
    /// The context figures the turn was prepared with.
    pub fn figures(&self) -> ContextFigures {
        self.figures
    }

    /// The next event; `None` after the last.
    pub async fn next(&mut self) -> Option<Event> {
        let mut event = self.events.next().await?;
        match &mut event {
            Event::Started { session_id, .. } => {
                self.new_session = self
                    .expected_session
                    .as_ref()
                    .is_some_and(|s| s != session_id);
            }
            Event::Text(text) => self.blocks.push(text.clone()),
            Event::ToolCall { id, name, input } => self.activity.call(id, name, input),
            Event::ToolResult { id, ok, .. } => self.activity.result(id, *ok),
            Event::Final(summary) => {
                // The whole text blocks are the reply; the result text when the model wrote
                // none (an answer given only by a tool's output).
                if !self.blocks.is_empty() {
                    summary.text = self.blocks.join("\n\n");
                }
                let finished = self
                    .engine
                    .finished(self.chat_id, summary, self.new_session);
                tracing::Instrument::instrument(finished, self.span.clone()).await;
                let request = self.request_text.take().unwrap_or_default();
                let activity = std::mem::take(&mut self.activity);
                (self.engine).observe_turn(self.chat_id, request, summary.text.clone(), activity);
            }
            _ => {}
        }
        Some(event)
    }

    /// Reads the turn to its end: the summary, or the error.
    pub async fn finish(mut self) -> Result<TurnSummary, TurnError> {
        while let Some(event) = self.next().await {
            match event {
                Event::Final(summary) => return Ok(summary),
                Event::Failed { error, .. } => return Err(error),
                _ => {}
            }
        }
        Err(TurnError::new(
            TurnErrorKind::Crashed,
            "the backend ended the turn without a result",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripted::{Scripted, ScriptedBackend};
    use crate::store::InMemoryStore as MemoryStore;

    fn engine(backend: &ScriptedBackend, store: &Arc<MemoryStore>) -> Engine {
        Engine::builder(
            Arc::new(backend.clone()),
            Arc::clone(store) as Arc<dyn ConversationStore>,
            ModelRouter::new(valor_config::RoutingConfig::default()),
        )
        .build()
    }

    #[tokio::test]
    async fn the_message_is_stored_first_and_the_reply_after() {
        let backend = ScriptedBackend::new(|_| Scripted::text("Hello!"));
        let store = Arc::new(MemoryStore::default());
        let engine = engine(&backend, &store);
        let stream = engine.turn(Incoming::new(1, "hi there")).await.unwrap();
        assert_eq!(store.messages().len(), 1, "stored before the answer");
        assert!(store.messages()[0].2, "and durably");
        stream.finish().await.unwrap();
        tokio::task::yield_now().await;
        let messages = store.messages();
        assert_eq!(messages[1].1.text, "Hello!");
        assert_eq!(messages[1].1.role, Role::Assistant);
        // The request was routed and carried the block.
        let request = &backend.requests()[0];
        assert!(
            request.prompt.starts_with("CONTEXT_DATA:\nCHAT_ID=1\n"),
            "{}",
            request.prompt
        );
        assert!(request.prompt.ends_with("USER_REQUEST: hi there"));
        assert_eq!(request.class, Some(crate::routing::RequestClass::ShortChat));
    }

    #[tokio::test]
    async fn a_chats_name_is_written_when_new_or_changed_not_at_every_message() {
        let backend = ScriptedBackend::new(|_| Scripted::text("ok."));
        let store = Arc::new(MemoryStore::default());
        let engine = engine(&backend, &store);
        let say = |title: Option<&str>| {
            let mut incoming = Incoming::new(5, "hello");
            incoming.chat_title = title.map(str::to_owned);
            incoming
        };
        for title in [
            Some("Ops"),
            Some("Ops"),
            Some("Ops"),
            None,
            Some("Ops team"),
            Some("Ops team"),
        ] {
            engine
                .turn(say(title))
                .await
                .unwrap()
                .finish()
                .await
                .unwrap();
        }
        let names: Vec<String> = store.names().into_iter().map(|(_, n)| n).collect();
        // The first message comes before the chat is tracked; from the second on it is known.
        assert_eq!(names, ["Ops", "Ops", "Ops team"]);
    }

    #[tokio::test]
    async fn the_chats_it_keeps_are_bounded_and_the_least_recent_goes() {
        let backend = ScriptedBackend::new(|_| Scripted::text("ok."));
        let store = Arc::new(MemoryStore::default());
        let engine = engine(&backend, &store);
        for chat in 0..(MAX_TRACKED_CHATS as i64 + 10) {
            engine
                .turn(Incoming::new(chat, "hi"))
                .await
                .unwrap()
                .finish()
                .await
                .unwrap();
        }
        assert_eq!(engine.tracked_chats(), MAX_TRACKED_CHATS);
        assert!(
            engine.figures(0).is_none(),
            "the least recent chat was dropped"
        );
        assert!(engine.figures(MAX_TRACKED_CHATS as i64 + 9).is_some());
        // A dropped chat speaks again: rebuilt, and another goes.
        engine
            .turn(Incoming::new(0, "back"))
            .await
            .unwrap()
            .finish()
            .await
            .unwrap();
        assert!(engine.figures(0).is_some());
        assert!(engine.figures(10).is_none());
        assert_eq!(engine.tracked_chats(), MAX_TRACKED_CHATS);
    }

    #[tokio::test]
    async fn full_history_goes_in_once_then_only_the_last_messages() {
        let backend = ScriptedBackend::new(|_| Scripted::text("ok."));
        let store = Arc::new(MemoryStore::default());
        for m in crate::context::example_chat(1000) {
            store
                .append(2, m.role, &m.text, None, None, false)
                .await
                .unwrap();
        }
        let engine = engine(&backend, &store);
        let stream = engine
            .turn(Incoming::new(2, "where were we?"))
            .await
            .unwrap();
        let figures = stream.figures();
        assert!(figures.reduction() >= 0.97, "{figures:?}");
        stream.finish().await.unwrap();
        tokio::task::yield_now().await;
        let first = backend.requests()[0].prompt.clone();
        assert!(
            first.contains("[summary of"),
            "the first turn carries the compressed history"
        );
        assert!(
            first.contains("From now on, always run the tests"),
            "instructions are carried"
        );

        let stream = engine.turn(Incoming::new(2, "and next?")).await.unwrap();
        stream.finish().await.unwrap();
        let second = backend.requests()[1].prompt.clone();
        assert!(!second.contains("[summary of"), "{second}");
        assert!(
            second.contains("user: where were we?\nassistant: ok.\n"),
            "{second}"
        );
        assert!(second.len() < first.len() / 2);
        assert_eq!(engine.figures(2).unwrap().messages_before, 1002);
    }

    #[tokio::test]
    async fn a_fresh_session_leaves_the_old_conversation_behind() {
        let backend = ScriptedBackend::new(|_| Scripted::text("noted"));
        let store = Arc::new(MemoryStore::default());
        let engine = engine(&backend, &store);
        engine
            .turn(Incoming::new(3, "my secret word is apple"))
            .await
            .unwrap()
            .finish()
            .await
            .unwrap();
        let mut fresh = Incoming::new(3, "start over");
        fresh.fresh_session = true;
        engine.turn(fresh).await.unwrap().finish().await.unwrap();
        engine
            .turn(Incoming::new(3, "what do you know?"))
            .await
            .unwrap()
            .finish()
            .await
            .unwrap();
        let requests = backend.requests();
        assert!(requests[1].fresh_session);
        for request in &requests[1..] {
            assert!(!request.prompt.contains("apple"), "{}", request.prompt);
        }
        assert!(requests[2].prompt.contains("user: start over"));

        // A new engine (a restart, another `valor chat`) keeps the cut.
        let restarted = self::engine(&backend, &store);
        restarted
            .turn(Incoming::new(3, "anything else?"))
            .await
            .unwrap()
            .finish()
            .await
            .unwrap();
        let last = backend.requests().last().unwrap().prompt.clone();
        assert!(!last.contains("apple"), "{last}");
        assert!(last.contains("user: start over"), "{last}");
    }

    /// Remembers one thing, and what it was asked.
    #[derive(Default)]
    struct OneMemory {
        asked: Mutex<Vec<(i64, String, Vec<u64>)>>,
    }

    #[async_trait::async_trait]
    impl Recall for OneMemory {
        async fn recall(
            &self,
            chat_id: i64,
            text: &str,
            exclude: &[u64],
        ) -> Vec<crate::recall::Recollection> {
            self.asked
                .lock()
                .unwrap()
                .push((chat_id, text.to_owned(), exclude.to_vec()));
            vec![crate::recall::Recollection {
                id: 77,
                kind: "link".to_owned(),
                at_ms: 0,
                title: "Tokio tutorial".to_owned(),
                excerpt: "async Rust".to_owned(),
            }]
        }
    }

    #[tokio::test]
    async fn relevant_memories_join_the_prompt_without_the_messages_it_already_has() {
        let backend = ScriptedBackend::new(|_| Scripted::text("ok"));
        let store = Arc::new(MemoryStore::default());
        let memory = Arc::new(OneMemory::default());
        let engine = Engine::builder(
            Arc::new(backend.clone()),
            Arc::clone(&store) as Arc<dyn ConversationStore>,
            ModelRouter::new(valor_config::RoutingConfig::default()),
        )
        .recall(memory.clone())
        .build();
        engine
            .turn(Incoming::new(3, "first"))
            .await
            .unwrap()
            .finish()
            .await
            .unwrap();
        tokio::task::yield_now().await;
        engine
            .turn(Incoming::new(3, "what about tokio?"))
            .await
            .unwrap()
            .finish()
            .await
            .unwrap();
        let prompt = &backend.requests()[1].prompt;
        assert!(
            prompt.contains("RELEVANT_MEMORIES (best first; memory tools: get(ids) reads any in full, search(query) finds more, timeline(anchor_id) shows what happened around one):\n[#77 link 1970-01-01] Tokio tutorial\n  async Rust\n"),
            "{prompt}"
        );
        let asked = memory.asked.lock().unwrap();
        let (chat, text, exclude) = &asked[1];
        assert_eq!((*chat, text.as_str()), (3, "what about tokio?"));
        // The earlier user message, the reply and the new message are all in the prompt already.
        assert_eq!(exclude.len(), 3, "{exclude:?}");
    }

    #[tokio::test]
    async fn a_failed_turn_stores_no_reply() {
        let backend = ScriptedBackend::new(|_| {
            Scripted::Fail(valor_protocol::TurnError::new(
                valor_protocol::TurnErrorKind::Overloaded,
                "529",
            ))
        });
        let store = Arc::new(MemoryStore::default());
        let engine = engine(&backend, &store);
        let error = engine
            .turn(Incoming::new(4, "hi"))
            .await
            .unwrap()
            .finish()
            .await
            .unwrap_err();
        assert_eq!(error.kind, valor_protocol::TurnErrorKind::Overloaded);
        assert_eq!(store.messages().len(), 1);
    }
}
