//! The Claude Code driver: implements the `Backend` seam with process management only. Each
//! chat's session is resumed and its warm process reused; running plus warm processes stay
//! within the memory budget; every run is recorded for analytics. Ordering turns and limiting
//! them across chats is the conversation service's (core); a chat's process state is still
//! used by one turn at a time.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use valor_config::ClaudeConfig;
use valor_core::Backend;
use valor_monitor::{ChildRegistry, MetricsRegistry};
use valor_protocol::records::{RunError, RunRecord, SessionRecord, TurnText};
use valor_protocol::{Event, Events, TurnError, TurnErrorKind, TurnRequest, TurnSummary};

use crate::failure::{Verdict, classify};
use crate::ledger::Ledger;
use crate::metrics::DriverMetrics;
use crate::process::now_ms;
use crate::sandbox::{JailSpec, SandboxState};
use crate::session::{ClaudeProcess, Limits, TurnRead};
use crate::spawn::{McpConfigFile, SpawnSpec, child_env, resolve_program, stdio_programs};

/// Everything the driver is built from.
pub struct DriverSetup {
    pub config: ClaudeConfig,
    /// The resolved `claude` program.
    pub binary: PathBuf,
    /// Appended to Claude Code's system prompt on every turn (the persona).
    pub persona: Option<String>,
    /// Valor's own environment; only the allowed part reaches Claude.
    pub parent_env: Vec<(String, String)>,
    /// Where per-turn MCP config files go (a private folder).
    pub runtime_dir: PathBuf,
    /// Whether each process runs in its own sandbox (probed once by the caller).
    pub sandbox: SandboxState,
    /// Where each chat's workspace and HOME are, and whose they are.
    pub chats: valor_chatfs::ChatFs,
    /// Sessions, runs and process groups (the store).
    pub ledger: Ledger,
    pub children: ChildRegistry,
    pub metrics: MetricsRegistry,
}

const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// The most of a turn's prompt and of its answer kept for its page on the dashboard.
pub const TURN_TEXT_KEPT: usize = 32 * 1024;

/// The driver; clones share one pool.
#[derive(Clone)]
pub struct ClaudeDriver {
    inner: Arc<Inner>,
}

/// Whether a chat's running turn waits for a person.
pub type WaitingForPerson = Arc<dyn Fn(i64) -> bool + Send + Sync>;

struct Inner {
    config: ClaudeConfig,
    binary: PathBuf,
    env: BTreeMap<String, String>,
    persona: Option<String>,
    runtime_dir: PathBuf,
    sandbox: SandboxState,
    folders: valor_chatfs::ChatFs,
    /// Valor's MCP servers, answered on each sandbox's own socket (set once they are built).
    mcp_routes: std::sync::OnceLock<axum::Router>,
    /// Whether a chat's turn waits for a person (an approval): not idle meanwhile.
    waiting: std::sync::OnceLock<WaitingForPerson>,
    /// Prices a run that never reached its result (the CLI prices the others).
    prices: std::sync::OnceLock<valor_protocol::pricing::Prices>,
    store: Ledger,
    children: ChildRegistry,
    /// Turns running now.
    running: AtomicUsize,
    /// Bytes running plus warm processes may hold ([`crate::budget`]).
    budget: u64,
    /// Notified when a process ends: a turn waiting for memory looks again.
    freed: Notify,
    chats: Mutex<HashMap<i64, Arc<ChatSlot>>>,
    metrics: DriverMetrics,
    shutdown: CancellationToken,
}

#[derive(Default)]
struct ChatSlot {
    /// Held for the whole turn: the chat's process is used by one turn at a time.
    state: tokio::sync::Mutex<ChatState>,
}

#[derive(Default)]
struct ChatState {
    warm: Option<WarmProcess>,
}

/// A process kept for the chat's next turn, with what it was started for.
struct WarmProcess {
    process: ClaudeProcess,
    key: ReuseKey,
}

/// What must match for a turn to reuse a warm process.
#[derive(Debug, Clone, PartialEq)]
struct ReuseKey {
    allowed_tools: Vec<String>,
    permission_tool: Option<String>,
    model: Option<String>,
    effort: Option<String>,
    mcp_config: Option<Value>,
}

/// Counts a running turn while it lives.
struct Running<'a>(&'a Inner);

impl<'a> Running<'a> {
    fn start(inner: &'a Inner) -> Running<'a> {
        let now = inner.running.fetch_add(1, Ordering::AcqRel) + 1;
        inner.metrics.active.set(now as f64);
        Running(inner)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let now = self.0.running.fetch_sub(1, Ordering::AcqRel) - 1;
        self.0.metrics.active.set(now as f64);
        self.0.freed.notify_waiters();
    }
}

impl ClaudeDriver {
    pub fn new(setup: DriverSetup) -> Result<ClaudeDriver, valor_monitor::MonitorError> {
        let metrics = DriverMetrics::register(&setup.metrics)?;
        metrics.set_sandbox(&setup.sandbox);
        let env = child_env(setup.parent_env, &setup.config.env);
        // A sandbox binds the program's own folder, so it needs the real path.
        let binary = match &setup.sandbox {
            SandboxState::Active(_) => {
                resolve_program(&setup.binary, env.get("PATH").map(String::as_str))
            }
            _ => setup.binary,
        };
        let driver = ClaudeDriver {
            inner: Arc::new(Inner {
                budget: crate::budget::budget_bytes(setup.config.process_memory_mb),
                config: setup.config,
                binary,
                env,
                persona: setup.persona,
                runtime_dir: setup.runtime_dir,
                sandbox: setup.sandbox,
                folders: setup.chats,
                mcp_routes: std::sync::OnceLock::new(),
                waiting: std::sync::OnceLock::new(),
                prices: std::sync::OnceLock::new(),
                store: setup.ledger,
                children: setup.children,
                running: AtomicUsize::new(0),
                freed: Notify::new(),
                chats: Mutex::new(HashMap::new()),
                metrics,
                shutdown: CancellationToken::new(),
            }),
        };
        Ok(driver)
    }

    pub fn metrics(&self) -> &DriverMetrics {
        &self.inner.metrics
    }

    /// The sandbox every turn runs in (or why none).
    pub fn sandbox(&self) -> &SandboxState {
        &self.inner.sandbox
    }

    /// Where a turn's MCP servers are, seen from where its Claude runs: inside a sandbox its
    /// own socket, else `outside` (Valor's health port).
    pub fn mcp_base_url(&self, outside: &str) -> String {
        match &self.inner.sandbox {
            SandboxState::Active(_) => crate::sandbox::INSIDE_URL.to_owned(),
            _ => outside.to_owned(),
        }
    }

    /// Valor's MCP routes, for the sandboxes' sockets (once; later calls are ignored).
    pub fn serve_mcp(&self, routes: axum::Router) {
        let _ = self.inner.mcp_routes.set(routes);
    }

    /// How a run that never reached its result is priced (once): its messages' tokens.
    pub fn price_unfinished_runs(&self, prices: valor_protocol::pricing::Prices) {
        let _ = self.inner.prices.set(prices);
    }

    /// Tells the driver which chats wait for a person (an approval asked): the CLI writes
    /// nothing meanwhile, and that silence is not a stalled turn.
    pub fn waiting_for_person(&self, waiting: WaitingForPerson) {
        let _ = self.inner.waiting.set(waiting);
    }

    /// Closes warm processes idle longer than `keep_warm_secs`, and the least recently used
    /// ones beyond `max_warm`. Chats running a turn are left alone.
    pub async fn maintain_warm(&self) {
        let keep = Duration::from_secs(self.inner.config.keep_warm_secs);
        let grace = self.grace();
        let slots: Vec<Arc<ChatSlot>> = self.chat_slots();
        let mut idle: Vec<(Instant, Arc<ChatSlot>)> = Vec::new();
        for slot in slots {
            let Ok(mut state) = slot.state.try_lock() else {
                continue;
            };
            let expired = state
                .warm
                .as_ref()
                .is_some_and(|w| w.process.last_used.elapsed() >= keep);
            if expired || state.warm.as_mut().is_some_and(|w| w.process.has_exited()) {
                if let Some(warm) = state.warm.take() {
                    warm.process.stop(grace).await;
                    self.inner.freed.notify_waiters();
                }
            } else if let Some(warm) = &state.warm {
                idle.push((warm.process.last_used, Arc::clone(&slot)));
            }
        }
        let over = idle.len().saturating_sub(self.inner.config.max_warm);
        idle.sort_by_key(|(last_used, _)| *last_used);
        for (_, slot) in idle.into_iter().take(over) {
            if let Ok(mut state) = slot.state.try_lock()
                && let Some(warm) = state.warm.take()
            {
                warm.process.stop(grace).await;
            }
        }
        self.inner.metrics.warm.set(self.count_warm() as f64);
        self.forget_idle_chats();
    }

    /// Drops the slots of chats with nothing running, waiting or warm, so the map does not grow
    /// with every chat ever seen. A slot is only handed out under the map's lock, so one that
    /// nobody else holds cannot be in use.
    fn forget_idle_chats(&self) {
        self.inner
            .chats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot
                        .state
                        .try_lock()
                        .map_or(true, |state| state.warm.is_some())
            });
    }

    /// Chats the driver keeps a slot for (running, waiting or warm).
    pub fn chats_tracked(&self) -> usize {
        self.inner
            .chats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Runs `maintain_warm` every few seconds until shutdown.
    pub async fn run_maintenance(self) {
        let period = Duration::from_secs((self.inner.config.keep_warm_secs / 4).clamp(1, 5));
        let mut interval = tokio::time::interval(period);
        loop {
            tokio::select! {
                () = self.inner.shutdown.cancelled() => break,
                _ = interval.tick() => self.maintain_warm().await,
            }
        }
    }

    /// Cancels every running turn and ends every Claude process this driver started.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let grace = self.grace();
        for slot in self.chat_slots() {
            let mut state = slot.state.lock().await;
            if let Some(warm) = state.warm.take() {
                warm.process.stop(grace).await;
            }
        }
        self.inner.metrics.warm.set(0.0);
    }

    fn chat_slots(&self) -> Vec<Arc<ChatSlot>> {
        self.inner
            .chats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn count_warm(&self) -> usize {
        self.chat_slots()
            .iter()
            .filter(|s| s.state.try_lock().map_or(true, |st| st.warm.is_some()))
            .count()
    }

    fn chat_slot(&self, chat_id: i64) -> Arc<ChatSlot> {
        let mut chats = self
            .inner
            .chats
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(chats.entry(chat_id).or_default())
    }

    /// SIGTERM-to-SIGKILL grace; at most 2 s while shutting down, so Valor stops within 5 s.
    fn grace(&self) -> Duration {
        let configured = Duration::from_secs(self.inner.config.kill_grace_secs);
        if self.inner.shutdown.is_cancelled() {
            configured.min(SHUTDOWN_GRACE)
        } else {
            configured
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            total: Duration::from_secs(self.inner.config.total_timeout_secs),
            idle: Duration::from_secs(self.inner.config.idle_timeout_secs),
            grace: self.grace(),
        }
    }

    fn keep_warm(&self) -> bool {
        self.inner.config.keep_warm_secs > 0 && self.inner.config.max_warm > 0
    }

    /// A token cancelled by the request's own token or by shutdown.
    fn turn_cancel(&self, request: &TurnRequest) -> CancellationToken {
        let combined = self.inner.shutdown.child_token();
        let (theirs, ours) = (request.cancel.clone(), combined.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = theirs.cancelled() => ours.cancel(),
                () = ours.cancelled() => {}
            }
        });
        combined
    }

    async fn run_turn(self, request: TurnRequest, tx: mpsc::Sender<Event>) {
        let started = Instant::now();
        let started_at_ms = now_ms();
        let cancel = self.turn_cancel(&request);
        // When the turn is over its token is cancelled: the task linking it to the request's
        // token ends, and the child of the shutdown token goes (one task leaked per turn before).
        let _turn_over = cancel.clone().drop_guard();
        let slot = self.chat_slot(request.chat_id);
        let mut state = tokio::select! {
            () = cancel.cancelled() => {
                let error = TurnError::new(TurnErrorKind::Cancelled, "stopped while queued");
                let _ = tx.send(Event::failed(error)).await;
                return;
            }
            state = slot.state.lock() => state,
        };
        let running = Running::start(&self.inner);

        let chat_id = request.chat_id;
        let store = &self.inner.store;
        let stored = if request.fresh_session {
            if let Err(e) = store.clear_session(chat_id).await {
                tracing::warn!(chat_id, error = %e, "cannot clear the chat's session");
            }
            None
        } else {
            store.session(chat_id).await.unwrap_or_else(|e| {
                tracing::warn!(chat_id, error = %e, "cannot read the chat's session; starting a new one");
                None
            })
        };
        if request.fresh_session
            && let Some(warm) = state.warm.take()
        {
            warm.process.stop(self.grace()).await;
        }
        let resume = stored.as_ref().map(|s| s.session_id.clone());
        if let Some(session) = &resume {
            tracing::Span::current().record("session", session.as_str());
        }
        let mut attempt = self
            .attempt(&mut state, &request, resume.clone(), &tx, &cancel)
            .await;
        if matches!(attempt.verdict, Verdict::SessionUnknown) {
            tracing::warn!(chat_id, session = ?resume, "Claude Code does not know the chat's session; starting a new one");
            self.inner.metrics.resume_fallbacks.inc();
            if let Err(e) = store.clear_session(chat_id).await {
                tracing::warn!(chat_id, error = %e, "cannot clear the chat's session");
            }
            attempt = self.attempt(&mut state, &request, None, &tx, &cancel).await;
        }
        drop(state);
        drop(running);
        if self.keep_warm() {
            self.maintain_warm().await;
        }

        let read = &attempt.read;
        let result = read.result.as_ref();
        let session_id = read
            .session_id
            .clone()
            .or_else(|| result.map(|r| r.session_id.clone()))
            .unwrap_or_default();
        let summary = TurnSummary {
            session_id: session_id.clone(),
            text: result.and_then(|r| r.result.clone()).unwrap_or_default(),
            model: read.model.clone().unwrap_or_default(),
            // A run that never reached its result cost its messages' tokens all the same.
            cost_usd: match result {
                Some(r) => r.total_cost_usd,
                None => (self.inner.prices.get()).map_or(0.0, |p| {
                    (read.messages.iter())
                        .map(|(model, u)| p.cost(model, u))
                        .sum()
                }),
            },
            usage: result.map_or_else(|| read.messages_usage(), |r| r.usage.clone()),
            duration_ms: started.elapsed().as_millis() as u64,
            api_duration_ms: result.map_or(0, |r| r.duration_api_ms),
            num_turns: result.map_or(0, |r| r.num_turns),
            tool_calls: read.tool_calls.clone(),
            permission_denials: result
                .map(|r| r.permission_denials.clone())
                .unwrap_or_default(),
            failed_mcp_servers: read.failed_mcp_servers.clone(),
            warm: attempt.warm,
        };
        let m = &self.inner.metrics;
        m.malformed_lines.inc_by(read.malformed_lines);
        m.oversized_lines.inc_by(read.oversized_lines);
        if !read.failed_mcp_servers.is_empty() {
            m.mcp_failures.inc_by(read.failed_mcp_servers.len() as u64);
        }
        m.record_mcp_state(&read.failed_mcp_servers);

        let error = match &attempt.verdict {
            Verdict::Ok => None,
            Verdict::Failed(e) => Some(crate::failure::usage_limit(
                e.clone(),
                (read.rate_limit.as_ref())
                    .filter(|(status, _)| status == "rejected")
                    .map(|(_, at)| *at),
                now_ms(),
            )),
            Verdict::SessionUnknown => Some(TurnError::new(
                TurnErrorKind::Crashed,
                "a new session could not be started either",
            )),
        };
        // A denied tool does not fail the turn (the answer is there), but it is recorded.
        let recorded_error = error.clone().or_else(|| {
            (!summary.permission_denials.is_empty()).then(|| {
                TurnError::new(
                    TurnErrorKind::ToolDenied,
                    format!("denied: {}", summary.permission_denials.join(", ")),
                )
            })
        });
        m.count_outcome(recorded_error.as_ref().map(|e| e.kind));
        let store = self.inner.store.clone();
        let run = RunRecord {
            chat_id,
            user_id: request.user_id,
            session_id: session_id.clone(),
            model: summary.model.clone(),
            class: request
                .class
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            effort: request.effort.clone().unwrap_or_default(),
            started_at_ms,
            duration_ms: summary.duration_ms,
            api_duration_ms: summary.api_duration_ms,
            cost_usd: summary.cost_usd,
            usage: summary.usage.clone(),
            num_turns: summary.num_turns,
            tool_calls: summary.tool_calls.clone(),
            warm: summary.warm,
            error: recorded_error.as_ref().map(|e| RunError {
                kind: e.kind,
                severity: e.kind.severity(),
                detail: e.detail.clone(),
            }),
        };
        let text = TurnText {
            chat_id,
            started_at_ms,
            prompt: valor_redact::redact_cut(&request.prompt, TURN_TEXT_KEPT),
            answer: valor_redact::redact_cut(&summary.text, TURN_TEXT_KEPT),
            tool_inputs: read.tool_inputs.clone(),
        };
        let session = (!session_id.is_empty() && error.is_none()).then(|| SessionRecord {
            session_id: session_id.clone(),
            updated_at_ms: now_ms(),
            turns: stored.as_ref().map_or(0, |s| s.turns) + 1,
        });
        m.record_run(&run);
        let saved = async {
            store.record_run(&run, &text).await?;
            match session {
                // Committed with the session (one flush for both).
                Some(session) => store.set_session(chat_id, &session).await,
                None => store.commit().await,
            }
        };
        if let Err(e) = saved.await {
            tracing::error!(chat_id, error = %e, "cannot record the run");
        }
        match error {
            None => {
                tracing::info!(chat_id, session = %session_id, model = %summary.model, warm = summary.warm,
                    duration_ms = summary.duration_ms, cost_usd = summary.cost_usd, "turn finished");
                let _ = tx.send(Event::Final(summary)).await;
            }
            Some(e) => {
                tracing::warn!(chat_id, kind = e.kind.as_str(), detail = %e.detail, "turn failed");
                let _ = tx.send(Event::failed(e)).await;
            }
        }
    }

    /// One try at the turn: in the chat's warm process when it fits, else a new process.
    async fn attempt(
        &self,
        state: &mut ChatState,
        request: &TurnRequest,
        resume: Option<String>,
        tx: &mpsc::Sender<Event>,
        cancel: &CancellationToken,
    ) -> Attempt {
        let key = ReuseKey {
            allowed_tools: self.allowed_tools(request),
            permission_tool: request.permission_tool.clone(),
            model: request.model.clone(),
            effort: request.effort.clone(),
            mcp_config: request.mcp_config.clone(),
        };
        let keep_warm = self.keep_warm();
        let grace = self.grace();

        let mut warm = false;
        let mut process = None;
        if let Some(mut candidate) = state.warm.take() {
            // A warm process that died while idle is not tried: what it had printed after its
            // last result would read as this turn's output and hide that it is gone.
            let fits = candidate.key == key
                && resume.is_some()
                && candidate.process.session_id == resume
                && !candidate.process.has_exited();
            if fits {
                warm = true;
                process = Some(candidate.process);
            } else {
                candidate.process.stop(grace).await;
            }
        }
        let mut read;
        let mut tries = 0;
        let mut process = loop {
            tries += 1;
            let mut current = match process.take() {
                Some(p) => p,
                None if !self.make_room(request.chat_id, cancel).await => {
                    return Attempt::failed(TurnError::new(
                        TurnErrorKind::Cancelled,
                        "stopped while waiting for memory",
                    ));
                }
                None => match self.spawn(request, &key, resume.clone()).await {
                    Ok(p) => p,
                    Err(e) => {
                        return Attempt::failed(TurnError::new(
                            TurnErrorKind::Crashed,
                            e.to_string(),
                        ));
                    }
                },
            };
            current.begin_turn();
            if let Err(e) = current.send(&request.prompt, !keep_warm).await {
                if warm && tries < 2 {
                    // The warm process died while idle: replace it, the turn goes on.
                    tracing::warn!(error = %e, "cannot send the prompt to the warm process; starting a new one");
                    current.stop(grace).await;
                    warm = false;
                    continue;
                }
                // A new process that cannot take its prompt is dying: read what it printed
                // and let the exit status and stderr say how it ended.
                tracing::warn!(error = %e, "cannot send the prompt to a new Claude process");
            }
            let chat_id = request.chat_id;
            let waiting = self.inner.waiting.get().cloned();
            let person = move || waiting.as_ref().is_some_and(|w| w(chat_id));
            read = current.read_turn(tx, self.limits(), cancel, &person).await;
            current.end_turn().await;
            // A warm process that died before answering is replaced and the turn goes on,
            // unless it had already called a tool (running that again could repeat what the
            // tool did). Lines it printed after its previous result may have come first, so
            // output alone does not mean it was answering.
            let died_idle = read.ended && read.result.is_none() && read.tool_calls.is_empty();
            if warm && died_idle && tries < 2 {
                tracing::warn!(
                    pgid = current.pgid(),
                    "warm Claude process died; replacing it"
                );
                current.stop(grace).await;
                warm = false;
                continue;
            }
            break current;
        };

        if read.stop.is_some() {
            let ended = process.stop(grace).await;
            let verdict = classify(
                read.result.as_ref(),
                read.stop.clone(),
                ended.exit,
                &ended.stderr,
            );
            return Attempt {
                verdict,
                read,
                warm,
            };
        }
        let succeeded = read.result.as_ref().is_some_and(|r| !r.is_error);
        if keep_warm && succeeded {
            // The process stays for the chat's next turn; it has not exited, so the verdict
            // rests on the result alone.
            process.turns += 1;
            let verdict = classify(read.result.as_ref(), None, None, "");
            state.warm = Some(WarmProcess { process, key });
            return Attempt {
                verdict,
                read,
                warm,
            };
        }
        let ended = process.finish(grace).await;
        let verdict = classify(read.result.as_ref(), None, ended.exit, &ended.stderr);
        Attempt {
            verdict,
            read,
            warm,
        }
    }

    fn allowed_tools(&self, request: &TurnRequest) -> Vec<String> {
        let mut tools = self.inner.config.allowed_tools.clone();
        for tool in &request.extra_allowed_tools {
            if !tools.contains(tool) {
                tools.push(tool.clone());
            }
        }
        // A gated tool (a pattern of it too) goes to the permission tool, never straight
        // through: `Bash(git log:*)` would let `git log; curl …` run on its text.
        tools.retain(|tool| {
            let name = tool.split('(').next().unwrap_or(tool);
            !request.gated_tools.iter().any(|gated| gated == name)
        });
        if request.read_only {
            // `Bash(git log:*)` and the like count as the tool they name.
            tools.retain(|tool| {
                let name = tool.split('(').next().unwrap_or(tool);
                !valor_protocol::WRITING_TOOLS.contains(&name)
            });
        }
        tools
    }

    async fn spawn(
        &self,
        request: &TurnRequest,
        key: &ReuseKey,
        resume: Option<String>,
    ) -> Result<ClaudeProcess, crate::ClaudeError> {
        let system_append = match (&self.inner.persona, &request.system_append) {
            (Some(p), Some(r)) => Some(format!("{p}\n\n{r}")),
            (p, r) => p.clone().or_else(|| r.clone()),
        };
        let chats = &self.inner.folders;
        let spec = SpawnSpec {
            binary: self.inner.binary.clone(),
            workspace: chats.paths(request.chat_id).workspace,
            allowed_tools: key.allowed_tools.clone(),
            permission_tool: key.permission_tool.clone(),
            resume,
            model: key.model.clone(),
            effort: key.effort.clone(),
            env: self.inner.env.clone(),
        };
        let (child, jail, mcp_file) = match &self.inner.sandbox {
            SandboxState::Active(sandbox) => {
                if !self.inner.binary.is_file() {
                    // The sandbox would start and then fail to bind it: say what a direct
                    // start says.
                    return Err(crate::ClaudeError::Spawn {
                        binary: self.inner.binary.clone(),
                        source: std::io::Error::from(std::io::ErrorKind::NotFound),
                    });
                }
                let (child, jail) = sandbox
                    .start(JailSpec {
                        chat_id: request.chat_id,
                        program: &self.inner.binary,
                        args: spec.args(),
                        env: &spec.env,
                        mcp_config: key.mcp_config.as_ref(),
                        system_append,
                        allowed_tools: &key.allowed_tools,
                        programs: stdio_programs(key.mcp_config.as_ref()),
                        mcp_routes: self.inner.mcp_routes.get().cloned(),
                        fresh: request.fresh_session,
                    })
                    .await?;
                (child, Some(jail), None)
            }
            SandboxState::Unavailable {
                reason,
                required: true,
            } => return Err(crate::ClaudeError::SandboxRequired(reason.clone())),
            _ => {
                chats
                    .workspace(request.chat_id)
                    .map_err(|e| crate::ClaudeError::Sandbox(e.to_string()))?;
                let mcp = McpConfigFile::write(&self.inner.runtime_dir, key.mcp_config.as_ref())?;
                let child = spec
                    .command(mcp.path(), system_append.as_deref())
                    .spawn()
                    .map_err(|source| crate::ClaudeError::Spawn {
                        binary: spec.binary.clone(),
                        source,
                    })?;
                (child, None, Some(mcp))
            }
        };
        ClaudeProcess::adopt(
            child,
            jail,
            mcp_file,
            spec,
            request.chat_id,
            &self.inner.children,
            &self.inner.store,
        )
        .await
    }
}

impl ClaudeDriver {
    /// Waits until one more process fits the memory budget: warm processes close first, least
    /// recently used, then the turn waits for one to end. False when cancelled meanwhile.
    async fn make_room(&self, chat_id: i64, cancel: &CancellationToken) -> bool {
        let mut waited = false;
        loop {
            let pgids: Vec<u32> = self
                .inner
                .children
                .snapshot()
                .iter()
                .map(|c| c.pid)
                .collect();
            let used: u64 = tokio::task::spawn_blocking({
                let pgids = pgids.clone();
                move || crate::budget::group_rss(&pgids).values().sum()
            })
            .await
            .unwrap_or(0);
            self.inner.metrics.resident.set(used as f64);
            if crate::budget::fits(used, pgids.len(), self.inner.budget) {
                if waited {
                    tracing::info!(chat_id, used, "memory is free again; the turn goes on");
                }
                return true;
            }
            if self.close_least_recent_warm().await {
                continue;
            }
            if !waited {
                tracing::info!(
                    chat_id,
                    used,
                    budget = self.inner.budget,
                    "the Claude processes fill the memory budget; the turn waits for one to end"
                );
                self.inner.metrics.budget_waits.inc();
                waited = true;
            }
            // A process ending wakes the turn; memory shrinking is seen on the next look.
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = self.inner.freed.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Closes the least recently used warm process of a chat with no turn running; false
    /// when there is none.
    async fn close_least_recent_warm(&self) -> bool {
        let mut oldest: Option<(Instant, Arc<ChatSlot>)> = None;
        for slot in self.chat_slots() {
            let Ok(state) = slot.state.try_lock() else {
                continue;
            };
            if let Some(warm) = &state.warm
                && oldest
                    .as_ref()
                    .is_none_or(|(at, _)| warm.process.last_used < *at)
            {
                oldest = Some((warm.process.last_used, Arc::clone(&slot)));
            }
        }
        let Some((_, slot)) = oldest else {
            return false;
        };
        // A turn may have taken the chat meanwhile: then the next look finds another.
        if let Ok(mut state) = slot.state.try_lock()
            && let Some(warm) = state.warm.take()
        {
            tracing::info!("closing a warm Claude process to stay within the memory budget");
            warm.process.stop(self.grace()).await;
            self.inner.metrics.budget_closes.inc();
            self.inner.metrics.warm.set(self.count_warm() as f64);
        }
        true
    }
}

struct Attempt {
    verdict: Verdict,
    read: TurnRead,
    warm: bool,
}

impl Attempt {
    fn failed(error: TurnError) -> Attempt {
        Attempt {
            verdict: Verdict::Failed(error),
            read: TurnRead::default(),
            warm: false,
        }
    }
}

impl Backend for ClaudeDriver {
    fn start(&self, request: TurnRequest) -> Events {
        use tracing::Instrument as _;
        let (tx, stream) = Events::channel(256);
        // The caller's turn span (the engine opens one) goes on, with the driver's fields.
        let span = tracing::info_span!(
            "claude",
            chat_id = request.chat_id,
            session = tracing::field::Empty
        );
        tokio::spawn(self.clone().run_turn(request, tx).instrument(span));
        stream
    }
}
