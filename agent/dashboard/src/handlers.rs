//! The routes' handlers. Pages need a session; every POST needs the session's CSRF token and
//! answers with a redirect (303) to the page it came from with what happened in `done=`, so a
//! reload shows the page again and never repeats the action. A form that is missing a field
//! gets the refusal page, not a bare 422.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use valor_protocol::analytics::RunAnalytics;
use valor_protocol::records::RunRecord;
use valor_protocol::time::now_ms;

use crate::auth::{Gate, Session};
use crate::charts::{Chart, bucket};
use crate::logs::LogFilter;
use crate::pages::{self, LogsView};
use crate::{Overview, Ui, reports};

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;
/// Runs the Jobs page lists.
const JOB_RUNS: usize = 20;
/// Lines the Logs page shows (and a download holds) at most.
pub(crate) const LOG_LINES: usize = 2_000;

impl Ui {
    /// The session of the request, if it has a live one.
    pub(crate) async fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok());
        self.gate.session(cookie).await
    }

    /// A POSTed form and its session: the refusal page when the form cannot be read (400),
    /// without a session (401), or when its CSRF token is not the session's (403: a forged
    /// request from another site).
    pub(crate) async fn form<T: CsrfField>(
        &self,
        headers: &HeaderMap,
        form: Result<Form<T>, FormRejection>,
    ) -> Result<(T, Session), Response> {
        let Form(form) = form.map_err(|rejection| unreadable(&rejection))?;
        let session = self.form_session(headers, form.csrf()).await?;
        Ok((form, session))
    }

    async fn form_session(&self, headers: &HeaderMap, csrf: &str) -> Result<Session, Response> {
        let session = self.session(headers).await.ok_or_else(refusal)?;
        if Gate::csrf_ok(&session, csrf) {
            Ok(session)
        } else {
            Err(forged())
        }
    }
}

/// A form that carries the session's CSRF token.
pub(crate) trait CsrfField {
    fn csrf(&self) -> &str;
}

macro_rules! csrf_field {
    ($($form:ty),*) => {$(
        impl CsrfField for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        }
    )*};
}

csrf_field!(CsrfForm, EndForm, RunJobForm, PauseForm, StopForm);
pub(crate) use csrf_field;

/// The page a request without a session gets.
pub(crate) fn refusal() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        pages::refused("This page needs a login."),
    )
        .into_response()
}

fn forged() -> Response {
    (
        StatusCode::FORBIDDEN,
        pages::refused("This form is not from this dashboard."),
    )
        .into_response()
}

/// A form that could not be read (a field missing or malformed).
fn unreadable(rejection: &FormRejection) -> Response {
    tracing::debug!(error = %rejection, "a dashboard form could not be read");
    (
        StatusCode::BAD_REQUEST,
        pages::refused("This form is incomplete or not from this dashboard."),
    )
        .into_response()
}

/// The redirect after a POST: back to `page`, saying `done`.
pub(crate) fn back(page: &str, done: &str) -> Response {
    let mut to = String::from(page);
    to.push_str(if page.contains('?') {
        "&done="
    } else {
        "?done="
    });
    for b in done.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => to.push(b as char),
            _ => to.push_str(&format!("%{b:02X}")),
        }
    }
    Redirect::to(&to).into_response()
}

/// `?done=` after a redirect.
#[derive(Deserialize, Default)]
pub(crate) struct Done {
    #[serde(default)]
    done: Option<String>,
}

impl Done {
    pub(crate) fn text(&self) -> Option<&str> {
        self.done.as_deref().map(|d| d.get(..300).unwrap_or(d))
    }
}

pub(crate) async fn to_overview() -> Redirect {
    Redirect::permanent("/ui/")
}

pub(crate) async fn to_favicon() -> Redirect {
    Redirect::permanent("/ui/favicon.svg")
}

pub(crate) async fn login_link(State(ui): State<Ui>, headers: HeaderMap) -> Response {
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
pub(crate) struct LoginQuery {
    #[serde(default)]
    token: String,
}

pub(crate) async fn login(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let agent = (headers.get(header::USER_AGENT))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match ui.gate.log_in(&q.token, agent).await {
        Some(id) => (
            [(header::SET_COOKIE, ui.gate.cookie(&id))],
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

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

pub(crate) async fn logout(
    State(ui): State<Ui>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let (_, session) = match ui.form(&headers, form).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    ui.gate.end(&session.key).await;
    (
        [(header::SET_COOKIE, ui.gate.cleared_cookie())],
        pages::refused("You are logged out."),
    )
        .into_response()
}

/// `GET /ui/session`: 200 while the cookie's session lives, else 401 (the live script asks
/// this when its stream is refused, to tell a restart from a lost login).
pub(crate) async fn session_check(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    match ui.session(&headers).await {
        Some(_) => axum::Json(serde_json::json!({ "session": true })).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "session": false })),
        )
            .into_response(),
    }
}

pub(crate) async fn sessions(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(done): Query<Done>,
) -> Response {
    let Some(session) = ui.session(&headers).await else {
        return refusal();
    };
    pages::sessions(&ui.gate.sessions(), &session, done.text()).into_response()
}

#[derive(Deserialize)]
pub(crate) struct EndForm {
    csrf: String,
    key: String,
}

pub(crate) async fn end_session(
    State(ui): State<Ui>,
    headers: HeaderMap,
    form: Result<Form<EndForm>, FormRejection>,
) -> Response {
    let (form, session) = match ui.form(&headers, form).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let ended = ui.gate.end(&form.key).await;
    if form.key == session.key {
        return (
            [(header::SET_COOKIE, ui.gate.cleared_cookie())],
            pages::refused("You are logged out."),
        )
            .into_response();
    }
    back(
        "/ui/sessions",
        if ended {
            "That session has ended."
        } else {
            "There was no such session."
        },
    )
}

/// The Overview's figures of today and its charts of the last 24 hours, from one read of the
/// runs.
pub(crate) async fn overview_parts(ui: &Ui) -> (Overview, RunAnalytics, Vec<Chart<'static>>) {
    let now = now_ms();
    let since = (now / HOUR_MS).saturating_sub(23) * HOUR_MS;
    let today_start = now / DAY_MS * DAY_MS;
    let (o, all, points) = (
        ui.source.overview().await,
        ui.source.runs_since(since.min(today_start)).await,
        ui.source.health_points(since).await,
    );
    let today = RunAnalytics::of(all.iter().filter(|r| r.started_at_ms >= today_start));
    let alerts = ui.source.alerts().await;
    let charts = turn_charts(&all, now, HOUR_MS, 24, &alerts, &points);
    (o, today, charts)
}

/// Turns, failures, cost and p50/p95 duration of the chats' runs per bucket, and the health
/// points' memory, with alerts marked.
pub(crate) fn turn_charts(
    runs: &[RunRecord],
    end_ms: u64,
    bucket_ms: u64,
    buckets: usize,
    alerts: &[crate::AlertRow],
    points: &[valor_protocol::health::HealthPoint],
) -> Vec<Chart<'static>> {
    let chats: Vec<&RunRecord> = (runs.iter())
        .filter(|r| !valor_protocol::turn::is_background_chat(r.chat_id))
        .collect();
    let marks: Vec<(u64, String)> = (alerts.iter())
        .map(|a| (a.raised_ms, format!("{}: {}", a.severity, a.message)))
        .collect();
    let series = |f: &dyn Fn(&RunRecord) -> f64| {
        bucket(
            chats.iter().map(|r| (r.started_at_ms, f(r))),
            end_ms,
            bucket_ms,
            buckets,
        )
    };
    let durations = percentiles(&chats, end_ms, bucket_ms, buckets);
    let memory = {
        let mut last = 0.0;
        let mut by_bucket = bucket(std::iter::empty(), end_ms, bucket_ms, buckets);
        for slot in &mut by_bucket {
            let peak = (points.iter())
                .filter(|p| p.at_ms >= slot.0 && p.at_ms < slot.0 + bucket_ms)
                .map(|p| f64::from(p.rss_mb))
                .fold(f64::NAN, f64::max);
            if peak.is_finite() {
                last = peak;
            }
            slot.1 = if peak.is_finite() { peak } else { last };
        }
        by_bucket
    };
    vec![
        Chart {
            title: "Turns",
            unit: "turns",
            points: series(&|_| 1.0),
            bucket_ms,
            bars: true,
            marks: marks.clone(),
            ..Chart::default()
        },
        Chart {
            title: "Failed turns",
            unit: "turns",
            points: series(&|r| f64::from(u8::from(r.failed()))),
            bucket_ms,
            bars: true,
            bad: true,
            marks: marks.clone(),
            ..Chart::default()
        },
        Chart {
            title: "Cost",
            unit: "$",
            points: series(&|r| r.cost_usd),
            bucket_ms,
            bars: true,
            ..Chart::default()
        },
        Chart {
            title: "Turn duration p50",
            unit: "s",
            points: durations.iter().map(|(at, p50, _)| (*at, *p50)).collect(),
            bucket_ms,
            ..Chart::default()
        },
        Chart {
            title: "Turn duration p95",
            unit: "s",
            points: durations.iter().map(|(at, _, p95)| (*at, *p95)).collect(),
            bucket_ms,
            ..Chart::default()
        },
        Chart {
            title: "Valor's memory (peak)",
            unit: "MiB",
            points: memory,
            bucket_ms,
            marks,
            ..Chart::default()
        },
    ]
}

/// (bucket start, p50 s, p95 s) of the runs' durations per bucket (0 without runs).
fn percentiles(
    runs: &[&RunRecord],
    end_ms: u64,
    bucket_ms: u64,
    buckets: usize,
) -> Vec<(u64, f64, f64)> {
    let slots = bucket(std::iter::empty(), end_ms, bucket_ms, buckets);
    slots
        .iter()
        .map(|(start, _)| {
            let mut durations: Vec<u64> = (runs.iter())
                .filter(|r| r.started_at_ms >= *start && r.started_at_ms < start + bucket_ms)
                .map(|r| r.duration_ms)
                .collect();
            durations.sort_unstable();
            let at = |q: f64| {
                if durations.is_empty() {
                    return 0.0;
                }
                let i = ((durations.len() - 1) as f64 * q).round() as usize;
                durations[i.min(durations.len() - 1)] as f64 / 1000.0
            };
            (*start, at(0.5), at(0.95))
        })
        .collect()
}

pub(crate) async fn overview(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    if ui.session(&headers).await.is_none() {
        return refusal();
    }
    let (o, today, charts) = overview_parts(&ui).await;
    pages::overview(&o, &today, &charts, now_ms()).into_response()
}

#[derive(Deserialize)]
pub(crate) struct DaysQuery {
    #[serde(default)]
    pub(crate) days: Option<u32>,
}

impl DaysQuery {
    pub(crate) fn days(&self) -> u32 {
        self.days.unwrap_or(7).clamp(1, 366)
    }
}

/// The Usage page's body over `days` (the live part too).
pub(crate) async fn usage_body(ui: &Ui, days: u32) -> maud::Markup {
    let now = now_ms();
    let since = (now / DAY_MS).saturating_sub(u64::from(days) - 1) * DAY_MS;
    let (runs, baseline, names, alerts, caps) = (
        ui.source.runs_since(since).await,
        ui.source.baseline().await,
        ui.source.chat_names().await,
        ui.source.alerts().await,
        ui.source.caps().await,
    );
    let analytics = RunAnalytics::of(&runs);
    // What routing saved: the same tokens on the biggest model, against what was paid.
    let saved = baseline.map(|(model, price)| pages::Saving {
        model,
        actual: analytics.all.cost_usd,
        on_biggest: RunAnalytics::cost_at(&runs, price),
    });
    let day_list: Vec<String> = (0..u64::from(days))
        .map(|i| valor_protocol::time::civil_date(since + i * DAY_MS))
        .collect();
    let (bucket_ms, buckets) = if days == 1 {
        (HOUR_MS, 24)
    } else {
        (DAY_MS, days as usize)
    };
    let charts = turn_charts(&runs, now, bucket_ms, buckets, &alerts, &[]);
    let charts: Vec<Chart<'static>> = charts.into_iter().take(5).collect();
    let usage = pages::UsageView {
        days,
        day_list: &day_list,
        analytics: &analytics,
        saved: saved.as_ref(),
        names: &names,
        charts: &charts,
        caps: &caps,
    };
    pages::usage_body(&usage)
}

pub(crate) async fn usage(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(q): Query<DaysQuery>,
) -> Response {
    if ui.session(&headers).await.is_none() {
        return refusal();
    }
    let days = q.days();
    pages::usage(days, usage_body(&ui, days).await).into_response()
}

/// What the Jobs page shows: the jobs, their recent runs, the reports.
pub(crate) async fn jobs_view(ui: &Ui) -> pages::JobsView {
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

pub(crate) async fn jobs(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(done): Query<Done>,
) -> Response {
    let Some(session) = ui.session(&headers).await else {
        return refusal();
    };
    pages::jobs(&jobs_view(&ui).await, &session.csrf, done.text()).into_response()
}

#[derive(Deserialize)]
pub(crate) struct RunJobForm {
    csrf: String,
    job: String,
}

pub(crate) async fn run_job(
    State(ui): State<Ui>,
    headers: HeaderMap,
    form: Result<Form<RunJobForm>, FormRejection>,
) -> Response {
    let form = match ui.form(&headers, form).await {
        Ok((form, _)) => form,
        Err(refused) => return refused,
    };
    let done = match ui.source.run_job(&form.job).await {
        Ok(()) => format!("{} started.", form.job),
        Err(e) => e,
    };
    back("/ui/jobs", &done)
}

#[derive(Deserialize)]
pub(crate) struct PauseForm {
    csrf: String,
    job: String,
    /// `true` pauses, `false` resumes.
    paused: bool,
}

pub(crate) async fn pause_job(
    State(ui): State<Ui>,
    headers: HeaderMap,
    form: Result<Form<PauseForm>, FormRejection>,
) -> Response {
    let form = match ui.form(&headers, form).await {
        Ok((form, _)) => form,
        Err(refused) => return refused,
    };
    let done = match ui.source.pause_job(&form.job, form.paused).await {
        Ok(()) if form.paused => format!(
            "{} is paused: the clock will not run it until you resume it.",
            form.job
        ),
        Ok(()) => format!("{} is resumed.", form.job),
        Err(e) => e,
    };
    back("/ui/jobs", &done)
}

pub(crate) async fn chart(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    if ui.session(&headers).await.is_none() {
        return refusal();
    }
    match ui.source.chart().await {
        Some(png) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        None => (StatusCode::NOT_FOUND, "no chart yet").into_response(),
    }
}

pub(crate) async fn report_one(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if ui.session(&headers).await.is_none() {
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
            pages::missing("There is no such report."),
        )
            .into_response(),
    }
}

/// The chats with their names.
pub(crate) async fn chat_rows(ui: &Ui) -> Vec<crate::ChatRow> {
    let (mut rows, names) = (ui.source.chats().await, ui.source.chat_names().await);
    for row in &mut rows {
        if row.name.is_none() {
            row.name = names.get(&row.chat_id).cloned();
        }
    }
    rows
}

pub(crate) async fn chats(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(done): Query<Done>,
) -> Response {
    let Some(session) = ui.session(&headers).await else {
        return refusal();
    };
    let rows = chat_rows(&ui).await;
    pages::chats(&rows, &session.csrf, done.text(), now_ms()).into_response()
}

#[derive(Deserialize)]
pub(crate) struct StopForm {
    csrf: String,
    chat_id: i64,
}

pub(crate) async fn stop_chat(
    State(ui): State<Ui>,
    headers: HeaderMap,
    form: Result<Form<StopForm>, FormRejection>,
) -> Response {
    let form = match ui.form(&headers, form).await {
        Ok((form, _)) => form,
        Err(refused) => return refused,
    };
    let done = if ui.source.stop(form.chat_id).await {
        format!("Chat {}: its running turn is stopping.", form.chat_id)
    } else {
        format!("Chat {}: nothing was running.", form.chat_id)
    };
    back("/ui/chats", &done)
}

#[derive(Deserialize, Default, Clone)]
pub(crate) struct LogsQuery {
    #[serde(default)]
    pub(crate) level: Option<String>,
    #[serde(default)]
    pub(crate) chat: Option<String>,
    #[serde(default)]
    pub(crate) q: Option<String>,
    #[serde(default)]
    pub(crate) order: Option<String>,
}

impl LogsQuery {
    /// The filter asked for (info unless a known level is named) and how the page names it.
    pub(crate) fn view(&self) -> (LogFilter, LogsView) {
        let level = (self.level.as_deref())
            .and_then(|l| l.parse::<tracing::Level>().ok())
            .unwrap_or(tracing::Level::INFO);
        let chat = (self.chat.as_deref()).and_then(|c| c.trim().parse::<i64>().ok());
        let text: String = (self.q.as_deref().unwrap_or_default())
            .trim()
            .chars()
            .take(200)
            .collect();
        let view = LogsView {
            level: level.as_str().to_ascii_lowercase(),
            chat,
            text: text.clone(),
            newest_first: self.order.as_deref() == Some("newest"),
        };
        let filter = LogFilter {
            level: Some(level),
            chat,
            text,
        };
        (filter, view)
    }
}

pub(crate) async fn logs_page(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(q): Query<LogsQuery>,
) -> Response {
    if ui.session(&headers).await.is_none() {
        return refusal();
    }
    let (filter, view) = q.view();
    let next = ui.logs.version();
    let mut lines = ui.logs.matching(&filter, 0, LOG_LINES);
    // Later lines come over the stream, which starts at `next`.
    lines.retain(|l| l.seq < next);
    pages::logs(&lines, &view, next).into_response()
}

/// `GET /ui/logs/download`: the lines the filter keeps, as text.
pub(crate) async fn logs_download(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(q): Query<LogsQuery>,
) -> Response {
    if ui.session(&headers).await.is_none() {
        return refusal();
    }
    let (filter, _) = q.view();
    let mut text = String::new();
    for line in ui.logs.matching(&filter, 0, crate::logs::KEPT) {
        text.push_str(&pages::when_ms(line.at_ms));
        text.push(' ');
        text.push_str(line.level.as_str());
        text.push(' ');
        text.push_str(line.target);
        if let Some(chat) = line.chat_id {
            text.push_str(&format!(" chat={chat}"));
        }
        text.push(' ');
        text.push_str(&line.text);
        text.push('\n');
    }
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"valor-logs.txt\"",
            ),
        ],
        text,
    )
        .into_response()
}
