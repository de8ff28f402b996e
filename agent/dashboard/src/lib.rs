//! Valor's operator dashboard, served by `valor run` under `/ui/` on the health port.
//!
//! - [`auth`]: the one-time login link, the session cookie, CSRF tokens.
//! - [`logs`]: the last log lines (a `tracing` layer into a bounded ring) for the Logs page.
//! - [`pages`]: the server-rendered pages and the live script.
//! - [`reports`]: daydream reports rendered from markdown with nothing active left in them.
//! - this file: [`Source`] (what the agent shows through it), the routes and the live stream.
//!
//! `POST /ui/login-link` (behind the store's bearer token, for `valor dashboard`) makes a link;
//! `GET /ui/login?token=` spends it for a session cookie; every other page needs the cookie, and
//! every POST the session's CSRF token. `GET /ui/events` streams the overview as it changes
//! (server-sent events); nobody watching costs nothing.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod auth;
pub mod logs;
pub mod pages;
pub mod reports;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use valor_protocol::analytics::RunAnalytics;
use valor_protocol::health::HealthPoint;
use valor_protocol::jobs::JobRunRecord;
use valor_protocol::records::RunRecord;
use valor_scheduler::JobStatus;

use crate::auth::{Gate, Session};
use valor_protocol::time::now_ms;

/// How often the live stream looks for a change while a browser watches.
pub const LIVE_EVERY: Duration = Duration::from_millis(200);

/// The overview's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overview {
    /// `ok`, `degraded` or `unhealthy`.
    pub status: String,
    pub score: u8,
    pub uptime_secs: u64,
    /// (component, status).
    pub components: Vec<(String, String)>,
    /// (severity, message, what to do).
    pub alerts: Vec<(String, String, String)>,
    pub running: usize,
    pub queued: usize,
    pub turns_today: u64,
    pub cost_today: f64,
}

/// One chat on the Chats page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRow {
    pub chat_id: i64,
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
}

/// An alert on the Alerts page: active (no `cleared_ms`) or past.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertRow {
    pub severity: String,
    pub message: String,
    pub action: String,
    pub raised_ms: u64,
    pub cleared_ms: Option<u64>,
    /// It ended because Valor stopped, not because it recovered.
    pub ended_by_restart: bool,
    /// What was done about it: (when, what).
    pub done: Vec<(u64, String)>,
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
    /// Stops the chat's running turn; whether one ran.
    async fn stop(&self, chat_id: i64) -> bool;
    /// Alerts, newest first: the active ones and those past.
    async fn alerts(&self) -> Vec<AlertRow>;
    /// Memory search (the same hybrid search as everywhere), best first, as snippets.
    async fn search(&self, query: &str) -> Vec<MemoryRow>;
    /// One memory whole.
    async fn memory(&self, id: u64) -> Option<MemoryRow>;
    async fn learnings(&self) -> Vec<LearningRow>;
    /// Forgets a chat's learning by its number; says what happened.
    async fn forget(&self, chat_id: i64, number: u64) -> String;
    /// The model routing is measured against and its price (dollars per million tokens,
    /// `[input, output]`), when one is priced.
    async fn baseline(&self) -> Option<(String, [f64; 2])>;
}

#[derive(Clone)]
struct Ui {
    source: Arc<dyn Source>,
    gate: Arc<Gate>,
    api_token: Arc<str>,
    logs: logs::LogRing,
}

/// The dashboard's routes; `api_token` is the store's token, which `valor dashboard` holds;
/// `logs` the ring the process's logger fills.
pub fn router(source: Arc<dyn Source>, api_token: &str, logs: logs::LogRing) -> Router {
    let ui = Ui {
        source,
        gate: Arc::new(Gate::default()),
        api_token: Arc::from(api_token),
        logs,
    };
    Router::new()
        .route("/ui/login-link", post(login_link))
        .route("/ui/login", get(login))
        .route("/ui/", get(overview))
        .route("/ui/usage", get(usage))
        .route("/ui/jobs", get(jobs))
        .route("/ui/jobs/run", post(run_job))
        .route("/ui/reports/chart.png", get(chart))
        .route("/ui/reports/{name}", get(report_one))
        .route("/ui/chats", get(chats))
        .route("/ui/chats/stop", post(stop_chat))
        .route("/ui/alerts", get(alerts))
        .route("/ui/memory", get(memory_page))
        .route("/ui/memory/{id}", get(memory_one))
        .route("/ui/learnings/forget", post(forget))
        .route("/ui/logs", get(logs_page))
        .route("/ui/events", get(events))
        .with_state(ui)
}

impl Ui {
    /// The session of the request, if it has a live one.
    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok());
        self.gate.session(cookie)
    }
}

impl Ui {
    /// The session of a form's POST: 401 without one, 403 when the form's CSRF token is not
    /// the session's (a forged request from another site).
    fn form_session(&self, headers: &HeaderMap, csrf: &str) -> Result<Session, StatusCode> {
        let session = self.session(headers).ok_or(StatusCode::UNAUTHORIZED)?;
        if Gate::csrf_ok(&session, csrf) {
            Ok(session)
        } else {
            Err(StatusCode::FORBIDDEN)
        }
    }
}

/// The page a refused form gets.
fn refused_form(status: StatusCode) -> Response {
    if status == StatusCode::UNAUTHORIZED {
        return refusal();
    }
    (
        status,
        pages::refused("This form is not from this dashboard."),
    )
        .into_response()
}

/// The page a request without a session gets.
fn refusal() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        pages::refused("This page needs a login."),
    )
        .into_response()
}

async fn login_link(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = ui.api_token.as_bytes();
    let matches = offered.len() == expected.len()
        && bool::from(subtle::ConstantTimeEq::ct_eq(offered.as_bytes(), expected));
    if !matches {
        return (
            StatusCode::UNAUTHORIZED,
            "missing or wrong token (it is in the file <store>.api-token)",
        )
            .into_response();
    }
    match ui.gate.new_link() {
        Ok(token) => axum::Json(serde_json::json!({ "path": format!("/ui/login?token={token}") }))
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    token: String,
}

async fn login(State(ui): State<Ui>, Query(q): Query<LoginQuery>) -> Response {
    match ui.gate.log_in(&q.token) {
        Some(id) => (
            [(header::SET_COOKIE, auth::cookie(&id))],
            Redirect::to("/ui/"),
        )
            .into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            pages::refused("This login link is unknown, used or expired."),
        )
            .into_response(),
    }
}

async fn overview(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    if ui.session(&headers).is_none() {
        return refusal();
    }
    let now = now_ms();
    let since = now.saturating_sub(24 * 3_600_000);
    let s = &ui.source;
    let (o, points, runs) = (
        s.overview().await,
        s.health_points(since).await,
        s.runs_since(since).await,
    );
    // Turns per hour over the last 24 hours, oldest first.
    let mut turns = vec![0.0; 24];
    for run in &runs {
        let hours_ago = now.saturating_sub(run.started_at_ms) / 3_600_000;
        if let Some(slot) = 23usize.checked_sub(hours_ago as usize) {
            turns[slot] += 1.0;
        }
    }
    pages::overview(&o, &points, &turns).into_response()
}

#[derive(Deserialize)]
struct UsageQuery {
    #[serde(default)]
    days: Option<u32>,
}

async fn usage(State(ui): State<Ui>, headers: HeaderMap, Query(q): Query<UsageQuery>) -> Response {
    if ui.session(&headers).is_none() {
        return refusal();
    }
    let days = q.days.unwrap_or(7).clamp(1, 366);
    let day_ms = 86_400_000;
    let since = (now_ms() / day_ms).saturating_sub(u64::from(days) - 1) * day_ms;
    let (runs, baseline) = (
        ui.source.runs_since(since).await,
        ui.source.baseline().await,
    );
    let analytics = RunAnalytics::of(&runs);
    // What routing saved: the same tokens on the biggest model, against what was paid.
    let saved = baseline.map(|(model, price)| pages::Saving {
        model,
        actual: analytics.all.cost_usd,
        on_biggest: RunAnalytics::cost_at(&runs, price),
    });
    pages::usage(days, &analytics, saved.as_ref()).into_response()
}

async fn jobs(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let Some(session) = ui.session(&headers) else {
        return refusal();
    };
    pages::jobs(&jobs_view(&ui).await, &session.csrf, None).into_response()
}

/// What the Jobs page shows: the jobs, their recent runs, the reports.
async fn jobs_view(ui: &Ui) -> pages::JobsView {
    let s = &ui.source;
    let latest = s.report(None).await.map(|md| reports::render(&md));
    pages::JobsView {
        jobs: s.jobs().await,
        runs: s.job_runs(JOB_RUNS).await,
        reports: s.reports().await,
        latest,
        chart: s.chart().await.is_some(),
    }
}

/// Runs the Jobs page lists.
const JOB_RUNS: usize = 20;

async fn chart(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    if ui.session(&headers).is_none() {
        return refusal();
    }
    match ui.source.chart().await {
        Some(png) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        None => (StatusCode::NOT_FOUND, "no chart yet").into_response(),
    }
}

async fn report_one(
    State(ui): State<Ui>,
    headers: HeaderMap,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    if ui.session(&headers).is_none() {
        return refusal();
    }
    let markdown = if reports::is_report_name(&name) {
        ui.source.report(Some(&name)).await
    } else {
        None
    };
    match markdown {
        Some(md) => pages::report(&name, &reports::render(&md)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            pages::refused("There is no such report."),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct RunJobForm {
    csrf: String,
    job: String,
}

async fn run_job(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Form(form): Form<RunJobForm>,
) -> Response {
    let session = match ui.form_session(&headers, &form.csrf) {
        Ok(session) => session,
        Err(status) => return refused_form(status),
    };
    let notice = match ui.source.run_job(&form.job).await {
        Ok(()) => format!("{} started.", form.job),
        Err(e) => e,
    };
    pages::jobs(&jobs_view(&ui).await, &session.csrf, Some(&notice)).into_response()
}

async fn chats(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let Some(session) = ui.session(&headers) else {
        return refusal();
    };
    let rows = ui.source.chats().await;
    pages::chats(&rows, &session.csrf, None, now_ms()).into_response()
}

#[derive(Deserialize)]
struct StopForm {
    csrf: String,
    chat_id: i64,
}

async fn stop_chat(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Form(form): Form<StopForm>,
) -> Response {
    let session = match ui.form_session(&headers, &form.csrf) {
        Ok(session) => session,
        Err(status) => return refused_form(status),
    };
    let notice = if ui.source.stop(form.chat_id).await {
        format!("Chat {}: its running turn is stopping.", form.chat_id)
    } else {
        format!("Chat {}: nothing was running.", form.chat_id)
    };
    let rows = ui.source.chats().await;
    pages::chats(&rows, &session.csrf, Some(&notice), now_ms()).into_response()
}

async fn alerts(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    if ui.session(&headers).is_none() {
        return refusal();
    }
    let rows = ui.source.alerts().await;
    pages::alerts(&rows).into_response()
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn memory_page(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(q): Query<SearchQuery>,
) -> Response {
    let Some(session) = ui.session(&headers) else {
        return refusal();
    };
    let query: String = q.q.trim().chars().take(1_000).collect();
    let hits = if query.is_empty() {
        Vec::new()
    } else {
        ui.source.search(&query).await
    };
    let learnings = ui.source.learnings().await;
    pages::memory(&query, &hits, &learnings, &session.csrf, None).into_response()
}

async fn memory_one(
    State(ui): State<Ui>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<u64>,
) -> Response {
    if ui.session(&headers).is_none() {
        return refusal();
    }
    match ui.source.memory(id).await {
        Some(row) => pages::memory_one(&row).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            pages::refused("There is no such memory."),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct ForgetForm {
    csrf: String,
    chat_id: i64,
    number: u64,
}

async fn forget(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Form(form): Form<ForgetForm>,
) -> Response {
    let session = match ui.form_session(&headers, &form.csrf) {
        Ok(session) => session,
        Err(status) => return refused_form(status),
    };
    let notice = ui.source.forget(form.chat_id, form.number).await;
    let learnings = ui.source.learnings().await;
    pages::memory("", &[], &learnings, &session.csrf, Some(&notice)).into_response()
}

#[derive(Deserialize)]
struct LogsQuery {
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    chat: Option<String>,
}

/// Lines the Logs page shows at most.
const LOG_LINES: usize = 2_000;

async fn logs_page(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(q): Query<LogsQuery>,
) -> Response {
    if ui.session(&headers).is_none() {
        return refusal();
    }
    let (level, chat) = q.filter();
    let lines = ui.logs.lines(level, chat, LOG_LINES);
    let level_name = level.as_str().to_ascii_lowercase();
    pages::logs(&lines, &level_name, chat).into_response()
}

impl LogsQuery {
    /// The level (info unless a known one is named) and the chat asked for.
    fn filter(&self) -> (tracing::Level, Option<i64>) {
        let level = (self.level.as_deref())
            .and_then(|l| l.parse::<tracing::Level>().ok())
            .unwrap_or(tracing::Level::INFO);
        let chat = self
            .chat
            .as_deref()
            .and_then(|c| c.trim().parse::<i64>().ok());
        (level, chat)
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    page: String,
    #[serde(flatten)]
    logs: LogsQuery,
}

/// Which page a live stream feeds.
#[derive(Clone, Copy)]
enum LivePage {
    Overview,
    Chats,
    Logs(tracing::Level, Option<i64>),
}

impl LivePage {
    /// How often it is looked at: the chats read more of the store than the overview.
    fn every(self) -> Duration {
        match self {
            LivePage::Overview => LIVE_EVERY,
            LivePage::Chats | LivePage::Logs(..) => LIVE_EVERY * 2,
        }
    }

    /// The page's live part now; `None` when nothing it shows can have changed since
    /// `seen` (the log ring's version).
    async fn fragment(self, ui: &Ui, csrf: &str, seen: &mut u64) -> Option<String> {
        match self {
            LivePage::Overview => {
                Some(pages::overview_fragment(&ui.source.overview().await).into_string())
            }
            LivePage::Chats => {
                let rows = ui.source.chats().await;
                Some(pages::chats_fragment(&rows, csrf, now_ms()).into_string())
            }
            LivePage::Logs(level, chat) => {
                let version = ui.logs.version();
                if version == *seen {
                    return None;
                }
                *seen = version;
                let lines = ui.logs.lines(level, chat, LOG_LINES);
                Some(pages::logs_fragment(&lines).into_string())
            }
        }
    }
}

/// A page's live part whenever it changes, looked at every [`LIVE_EVERY`] (or twice that)
/// while the browser stays connected.
async fn events(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    let Some(session) = ui.session(&headers) else {
        return refusal();
    };
    let page = match q.page.as_str() {
        "" | "overview" => LivePage::Overview,
        "chats" => LivePage::Chats,
        "logs" => {
            let (level, chat) = q.logs.filter();
            LivePage::Logs(level, chat)
        }
        _ => return (StatusCode::NOT_FOUND, "no such live page").into_response(),
    };
    let start = (ui, session.csrf, String::new(), u64::MAX);
    let stream =
        futures_util::stream::unfold(start, move |(ui, csrf, last, mut seen)| async move {
            loop {
                if let Some(fragment) = page.fragment(&ui, &csrf, &mut seen).await
                    && fragment != last
                {
                    let event = Event::default().event("fragment").data(fragment.clone());
                    return Some((Ok::<Event, Infallible>(event), (ui, csrf, fragment, seen)));
                }
                tokio::time::sleep(page.every()).await;
            }
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
