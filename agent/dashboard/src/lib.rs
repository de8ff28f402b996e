//! Valor's operator dashboard, served by `valor run` under `/ui/` on the health port.
//!
//! - [`auth`]: the one-time login link, the session cookie (kept in the store), CSRF tokens.
//! - [`headers`]: the security headers, the stylesheet, the icon.
//! - [`live`]: a version per source ([`live::Pulse`]); [`stream`]: the pages' event streams.
//! - [`handlers`]: the routes' handlers; `drill`: the Turns, turn and chat pages'; `review`:
//!   Alerts' and Memory's (acknowledge, silence, search, questions, forget).
//! - [`logs`]: the last log lines (a `tracing` layer into a bounded ring) for the Logs page.
//! - [`pages`], [`charts`], [`cron`]: the server-rendered pages, SVG charts, schedules in words.
//! - [`reports`]: daydream reports rendered from markdown with nothing active left in them.
//! - this file: [`Source`] (what the agent shows through it) and the routes.
//!
//! `POST /ui/login-link` (behind the store's bearer token, for `valor dashboard`) makes a link;
//! `GET /ui/login?token=` spends it for a session cookie; every other page needs the cookie, and
//! every POST the session's CSRF token, and answers with a redirect (a reload never repeats
//! it). `GET /ui/events` streams a page's fragments when their source changes (server-sent
//! events); nobody watching costs nothing.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod auth;
pub mod charts;
pub mod cron;
mod drill;
mod handlers;
pub mod headers;
pub mod live;
pub mod logs;
pub mod pages;
pub mod reports;
mod review;
mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use valor_protocol::health::HealthPoint;
use valor_protocol::jobs::JobRunRecord;
use valor_protocol::records::{RunRecord, TurnText};
use valor_scheduler::JobStatus;

use crate::auth::{Gate, SessionBook};
use crate::live::Pulse;

/// The overview's figures: the whole of `/health` and the turns now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overview {
    /// `ok`, `degraded` or `unhealthy`.
    pub status: String,
    pub score: u8,
    pub uptime_secs: u64,
    /// Every component of `/health`.
    pub components: Vec<ComponentRow>,
    /// The active alerts.
    pub alerts: Vec<AlertRow>,
    pub running: usize,
    pub queued: usize,
    /// What the latest look at the history found unusual for the hour, and what runs out
    /// (each in a line with its numbers), and when it looked (0: not yet).
    pub unusual: Vec<String>,
    pub forecasts: Vec<String>,
    pub trends_at_ms: u64,
}

/// A component of `/health` as the Overview shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ComponentRow {
    pub name: String,
    /// `ok`, `degraded` or `unhealthy`.
    pub status: String,
    /// Unix milliseconds since it has had this status.
    pub since_ms: u64,
    /// Its latest error: (Unix milliseconds, text).
    pub last_error: Option<(u64, String)>,
}

/// One chat on the Chats page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRow {
    pub chat_id: i64,
    /// Its title or user name on Telegram, when known.
    pub name: Option<String>,
    /// Unix milliseconds of its latest message.
    pub last_at_ms: u64,
    pub messages: u64,
    /// Turns and cost over the last 30 days.
    pub turns: u64,
    pub cost_usd: f64,
    /// The latest turn's context window: messages and tokens before and after compression.
    pub context: Option<(usize, usize, usize, usize)>,
    /// Turns running or waiting.
    pub pending: usize,
    /// The backend session its latest turn finished in.
    pub session: Option<String>,
    /// What its running turn is doing.
    pub running: Option<valor_core::progress::TurnProgress>,
    /// The node holding it now, when Valor runs on several machines.
    pub node: Option<String>,
}

/// An alert on the Alerts page: active (no `cleared_ms`) or past.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertRow {
    /// What it is about (`telegram`, `process_memory`, ...): acknowledged and silenced by it.
    pub kind: String,
    pub severity: String,
    pub message: String,
    pub action: String,
    pub raised_ms: u64,
    pub cleared_ms: Option<u64>,
    /// It ended because Valor stopped, not because it recovered.
    pub ended_by_restart: bool,
    /// What was done about it: (when, what).
    pub done: Vec<(u64, String)>,
    /// When the operator acknowledged it.
    pub acknowledged_ms: Option<u64>,
}

/// One spend counter of the current day, month or usage window, against its cap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapRow {
    /// Whose: `chat 42`, `user 7`, `everything`, `session summary`.
    pub who: String,
    /// `day`, `month`, `usage window`.
    pub period: String,
    /// What was spent, as its unit reads (`$1.35`, `120k tokens`).
    pub spent: String,
    /// The cap with what was allowed on top (`None`: no cap, only counted).
    pub cap: Option<String>,
    /// Spent over the cap (1.0: spent).
    pub share: Option<f64>,
    pub resets_ms: u64,
}

/// Spend against the caps, and the account's usage window when the API reported one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caps {
    pub rows: Vec<CapRow>,
    /// e.g. `rejected until 2026-12-08 15:00 UTC`.
    pub usage_window: Option<String>,
}

/// A silence in force: alerts of `kind` are not told to the admin chat until `until_ms`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SilenceRow {
    pub kind: String,
    pub until_ms: u64,
}

/// A Memory search: words or meaning, with filters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryQuery {
    pub text: String,
    /// One chat's (shared memories included).
    pub chat: Option<i64>,
    /// One kind (`message`, `link`, `learning`, `insight`, `observation`, `summary`).
    pub kind: Option<String>,
    /// From the last this many days.
    pub days: Option<u32>,
}

/// A "Remember this?" question: open, or declined or expired (the operator may still say yes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuestionRow {
    pub id: u64,
    pub chat_id: i64,
    /// What would be remembered.
    pub text: String,
    /// `pending`, `accepted`, `declined` or `expired`.
    pub state: String,
    /// The watcher's trigger, or the memory kind.
    pub why: String,
    /// The message it was found in, when kept.
    pub source_message: Option<String>,
    pub created_ms: u64,
}

/// A memory in a search result, or whole (`text` then holds all of it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryRow {
    pub id: u64,
    pub kind: String,
    /// `None`: shared (no chat).
    pub chat_id: Option<i64>,
    pub at_ms: u64,
    pub title: String,
    pub text: String,
    /// In a search result: the fused score, the cosine similarity when the vector ranking had
    /// it, and whether the words matched.
    pub score: Option<f32>,
    pub similarity: Option<f32>,
    pub keyword: bool,
}

/// A learning on the Memory page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LearningRow {
    pub chat_id: Option<i64>,
    pub number: u64,
    pub category: String,
    pub confidence: f32,
    pub times_seen: u32,
    pub content: String,
    /// Why it no longer counts, when it does not.
    pub retired: Option<String>,
    /// Its history: how it came (`remembered by the user`, the watcher's trigger), when it was
    /// made and last changed, and where it was seen each time (oldest first).
    pub origin: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub sources: Vec<String>,
}

/// What the dashboard shows, from the running agent (the agent implements it; reads from disk
/// are the implementation's to keep off the async threads).
#[async_trait::async_trait]
pub trait Source: Send + Sync + 'static {
    async fn overview(&self) -> Overview;
    /// Kept health points (a minute each) since `since_ms`.
    async fn health_points(&self, since_ms: u64) -> Vec<HealthPoint>;
    async fn runs_since(&self, since_ms: u64) -> Vec<RunRecord>;
    async fn jobs(&self) -> Vec<JobStatus>;
    /// Starts a job now (it runs on; the page does not wait).
    async fn run_job(&self, name: &str) -> Result<(), String>;
    /// Pauses a job (the clock no longer fires it) or resumes it.
    async fn pause_job(&self, name: &str, paused: bool) -> Result<(), String>;
    /// The recorded runs of the kept jobs, newest first, at most `limit`.
    async fn job_runs(&self, limit: usize) -> Vec<JobRunRecord>;
    /// The archived daydream reports' file names, newest first.
    async fn reports(&self) -> Vec<String>;
    /// A daydream report's markdown: the archived one named, or the latest.
    async fn report(&self, name: Option<&str>) -> Option<String>;
    /// The latest daydream chart, a PNG.
    async fn chart(&self) -> Option<Vec<u8>>;
    /// The chats, latest activity first.
    async fn chats(&self) -> Vec<ChatRow>;
    /// One chat as the Chats page shows it, without its run figures (`turns` and `cost_usd`
    /// are 0: its page sums its runs itself); `None` when nobody wrote in it.
    async fn chat(&self, chat_id: i64) -> Option<ChatRow>;
    /// Stops the chat's running turn; whether one ran.
    async fn stop(&self, chat_id: i64) -> bool;
    /// Alerts, newest first: the active ones and those past.
    async fn alerts(&self) -> Vec<AlertRow>;
    /// Memory search (the same hybrid search as everywhere), best first, as snippets with
    /// their scores.
    async fn search(&self, query: &MemoryQuery) -> Vec<MemoryRow>;
    /// The latest "Remember this?" questions, newest first.
    async fn questions(&self) -> Vec<QuestionRow>;
    /// The operator's yes or no to a question (a yes also takes a declined or expired one),
    /// through the conversation service; says what happened.
    async fn decide_question(&self, chat_id: i64, id: u64, yes: bool) -> String;
    /// Marks the active alert of `kind` seen; says what happened.
    async fn acknowledge_alert(&self, kind: &str) -> String;
    /// Alerts of `kind` are not told to the admin chat for `hours` (0: told again now).
    async fn silence_alert(&self, kind: &str, hours: u32) -> String;
    /// The silences in force.
    async fn silences(&self) -> Vec<SilenceRow>;
    /// One memory whole.
    async fn memory(&self, id: u64) -> Option<MemoryRow>;
    async fn learnings(&self) -> Vec<LearningRow>;
    /// Forgets a chat's learning by its number; says what happened.
    async fn forget(&self, chat_id: i64, number: u64) -> String;
    /// The model routing is measured against and its price (dollars per million tokens,
    /// `[input, output]`), when one is priced.
    async fn baseline(&self) -> Option<(String, [f64; 2])>;
    /// Chats' names (Telegram titles or user names) by id, where known.
    async fn chat_names(&self) -> BTreeMap<i64, String>;
    /// The latest runs `filter` keeps (one chat's, with `chat`), newest first, at most `limit`.
    async fn latest_turns(
        &self,
        limit: usize,
        filter: pages::turns::TurnFilter,
        chat: Option<i64>,
    ) -> Vec<RunRecord>;
    /// One turn: its figures and, while it is kept, what it said.
    async fn turn(&self, started_at_ms: u64, chat_id: i64)
    -> Option<(RunRecord, Option<TurnText>)>;
    /// A chat's latest saved memories (links, learnings, observations, summaries).
    async fn chat_memories(&self, chat_id: i64, limit: usize) -> Vec<MemoryRow>;
    /// The approvals audit log, newest first (of one chat, or all).
    async fn approvals(
        &self,
        chat_id: Option<i64>,
        limit: usize,
    ) -> Vec<valor_protocol::approval::ApprovalRecord>;
    /// Spend against the caps (`[budget]`), this day, month and usage window.
    async fn caps(&self) -> Caps {
        Caps::default()
    }
}

/// What the dashboard is made of.
pub struct Parts {
    pub source: Arc<dyn Source>,
    /// The store's token, which `valor dashboard` holds.
    pub api_token: String,
    /// The ring the process's logger fills.
    pub logs: logs::LogRing,
    /// Where sessions are kept (`None`: in memory, lost at a restart).
    pub sessions: Option<Arc<dyn SessionBook>>,
    /// Mark the cookie `Secure` (the dashboard is reached over HTTPS).
    pub secure_cookie: bool,
    /// The versions of what the pages show, fed by the agent.
    pub pulse: Pulse,
}

#[derive(Clone)]
struct Ui {
    source: Arc<dyn Source>,
    gate: Arc<Gate>,
    api_token: Arc<str>,
    logs: logs::LogRing,
    pulse: Pulse,
}

/// The dashboard's routes, each answer with the security headers.
pub fn router(parts: Parts) -> Router {
    let ui = Ui {
        source: parts.source,
        gate: Arc::new(Gate::new(parts.sessions, parts.secure_cookie)),
        api_token: Arc::from(parts.api_token.as_str()),
        logs: parts.logs,
        pulse: parts.pulse,
    };
    use handlers as h;
    Router::new()
        .route("/ui", get(h::to_overview))
        .route("/ui/app.css", get(headers::stylesheet))
        .route("/ui/favicon.svg", get(headers::favicon))
        .route("/favicon.ico", get(h::to_favicon))
        .route("/ui/login-link", post(h::login_link))
        .route("/ui/login", get(h::login))
        .route("/ui/logout", post(h::logout))
        .route("/ui/session", get(h::session_check))
        .route("/ui/sessions", get(h::sessions))
        .route("/ui/sessions/end", post(h::end_session))
        .route("/ui/", get(h::overview))
        .route("/ui/usage", get(h::usage))
        .route("/ui/jobs", get(h::jobs))
        .route("/ui/jobs/run", post(h::run_job))
        .route("/ui/jobs/pause", post(h::pause_job))
        .route("/ui/reports/chart.png", get(h::chart))
        .route("/ui/reports/{name}", get(h::report_one))
        .route("/ui/chats", get(h::chats))
        .route("/ui/chats/stop", post(h::stop_chat))
        .route("/ui/chats/{chat_id}", get(drill::chat))
        .route("/ui/turns", get(drill::turns))
        .route("/ui/turns/{started_at_ms}/{chat_id}", get(drill::turn))
        .route("/ui/alerts", get(review::alerts))
        .route("/ui/approvals", get(review::approvals))
        .route("/ui/alerts/acknowledge", post(review::acknowledge))
        .route("/ui/alerts/silence", post(review::silence))
        .route("/ui/memory", get(review::memory_page))
        .route("/ui/memory/{id}", get(review::memory_one))
        .route("/ui/questions/decide", post(review::decide))
        .route("/ui/learnings/forget", post(review::forget))
        .route("/ui/logs", get(h::logs_page))
        .route("/ui/logs/download", get(h::logs_download))
        .route("/ui/events", get(stream::events))
        .layer(axum::middleware::map_response(headers::secure))
        .with_state(ui)
}
