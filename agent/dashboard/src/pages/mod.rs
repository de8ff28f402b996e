//! The pages, server-rendered (maud escapes every value), with a little JavaScript for the
//! live parts. Everything is in the binary: no CDN, no build step, works offline.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use valor_protocol::analytics::{RunAnalytics, RunTotals};
use valor_protocol::jobs::JobRunRecord;
use valor_scheduler::JobStatus;

use crate::{ChatRow, Overview};

pub mod approvals;
pub mod review;
pub mod turns;

/// This process's start, Unix milliseconds: a page from an earlier process reloads itself
/// when its stream says the process changed.
pub static BOOT: std::sync::LazyLock<u64> = std::sync::LazyLock::new(valor_protocol::time::now_ms);

/// How a page stays current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// By nothing but its clock (a form, a search): times still tick.
    No,
    /// Its fragments over the event stream at this address.
    Stream(String),
}

/// The navigation: (address, name).
const NAV: [(&str, &str); 10] = [
    ("/ui/", "Overview"),
    ("/ui/turns", "Turns"),
    ("/ui/chats", "Chats"),
    ("/ui/usage", "Usage"),
    ("/ui/jobs", "Jobs"),
    ("/ui/memory", "Memory"),
    ("/ui/alerts", "Alerts"),
    ("/ui/approvals", "Approvals"),
    ("/ui/logs", "Logs"),
    ("/ui/sessions", "Sessions"),
];

/// The page frame: navigation (the current page marked), the status chip, the body, and how
/// it stays current. `here` is the page's address in the navigation.
pub fn layout(title: &str, here: &str, body: Markup, live: Live) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { "Valor · " (title) }
                link rel="icon" href="/ui/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/ui/app.css";
            }
            body data-live=[if let Live::Stream(url) = &live { Some(url) } else { None }] data-boot=(*BOOT) {
                nav {
                    @for (href, name) in NAV {
                        a href=(href) aria-current=[(href == here).then_some("page")] { (name) }
                    }
                    span #chip {}
                    button #tz type="button" title="show times in UTC or local time" { "UTC" }
                }
                main { h1 { (title) } (body) }
                script { (PreEscaped(crate::headers::SCRIPT)) }
            }
        }
    }
}

/// A time with seconds (UTC as sent; the page's script shows it in UTC or local time and
/// gives its relative time on hover).
pub fn time(ms: u64) -> Markup {
    html! { time data-ms=(ms) datetime=(iso(ms)) { (when(ms)) } }
}

/// A relative time ("3 min ago"), kept current by the page's script.
pub fn ago(ms: u64, now_ms: u64) -> Markup {
    let secs = now_ms.saturating_sub(ms) / 1000;
    let text = match secs {
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    };
    html! { span.ago data-ms=(ms) { (text) } }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn iso(ms: u64) -> String {
    let (date, clock) = date_and_clock(ms);
    format!("{date}T{clock}Z")
}

/// The UTC date and `HH:MM:SS` of a time.
fn date_and_clock(ms: u64) -> (String, String) {
    let secs = ms / 1000;
    let clock = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    );
    (valor_protocol::time::civil_date(ms), clock)
}

/// A table that scrolls sideways on a narrow screen.
pub fn scroll(table: Markup) -> Markup {
    html! { div.scroll { (table) } }
}

/// A notice after a form's redirect (`?done=`), shown once.
pub fn notice(text: Option<&str>) -> Markup {
    html! { @if let Some(text) = text { p.notice role="status" { (text) } } }
}

/// The live cards of the overview: health, turns now, today's figures, uptime.
pub fn overview_cards(o: &Overview, today: &RunAnalytics) -> Markup {
    let chats = today.chats();
    html! {
        div.cards {
            div.card { div { "Health" } div class={ "big " (o.status) } { (o.score) } div class=(o.status) { (o.status) } }
            div.card { div { "Turns running" } div.big { (o.running) } div { (o.queued) " waiting" } }
            div.card { div { "Chat turns today" } div.big { (chats.turns) } div { (format!("${:.4}", chats.cost_usd)) " · " (chats.failed) " failed" } }
            div.card { div { "Internal runs today" } div.big { (today.background.turns) } div { (format!("${:.4}", today.background.cost_usd)) } }
            div.card { div { "Up" } div.big { (uptime(o.uptime_secs)) } }
        }
    }
}

fn uptime(secs: u64) -> String {
    match secs {
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h {} min", s / 3600, s / 60 % 60),
        s => format!("{} d {} h", s / 86_400, s / 3600 % 24),
    }
}

/// The live health part: every component of `/health` with how long it has had its status
/// and its last error, and the active alerts, each linked to the Alerts page.
pub fn overview_health(o: &Overview, now_ms: u64) -> Markup {
    html! {
        h2 { "Alerts" }
        @if o.alerts.is_empty() { p.ok { "No active alert." } }
        @for alert in &o.alerts {
            div class={ "alert " (alert.severity.to_ascii_lowercase()) } {
                a href={ "/ui/alerts#alert-" (alert.raised_ms) } { strong { (alert.severity) } } " " (alert.message)
                " · since " (time(alert.raised_ms))
                br; small { (alert.action) }
            }
        }
        h2 { "Trends" }
        @if o.trends_at_ms == 0 { p { "Not looked at yet: the history is judged a minute after start, then every 5 minutes." } }
        @else {
            @if o.unusual.is_empty() { p.ok { "Nothing unusual for the hour (cost, failures, turn duration, memory, queue against the same hour of earlier days)." } }
            @for line in &o.unusual { p.alert.warning { strong { "Unusual: " } (line) } }
            ul.forecasts { @for line in &o.forecasts { li { (line) } } }
            p { small { "Looked at " (time(o.trends_at_ms)) "." } }
        }
        h2 { "Components" }
        @let (ok, failing): (Vec<&crate::ComponentRow>, Vec<&crate::ComponentRow>) = o.components.iter().partition(|c| c.status == "ok");
        @if !ok.is_empty() {
            p {
                span class="pill ok" { "ok" } " "
                @for (i, c) in ok.iter().enumerate() {
                    @if i > 0 { ", " }
                    span title=(c.last_error.as_ref().map_or(String::new(), |(_, e)| format!("last error: {e}"))) { (c.name) }
                }
            }
        }
        @if !failing.is_empty() { (scroll(html! {
            table.stack {
                tr { th { "component" } th { "status" } th { "for" } th { "last error" } }
                @for c in &failing {
                    tr {
                        td data-label="component" { (c.name) }
                        td data-label="status" { span class={ "pill " (c.status) } { (c.status) } }
                        td data-label="for" {
                            @if c.status == "ok" { "ok since " } @else { "failing since " }
                            (time(c.since_ms)) " (" (ago(c.since_ms, now_ms)) ")"
                        }
                        td data-label="last error" {
                            @if let Some((at, text)) = &c.last_error { (text) br; small { (time(*at)) } } @else { "-" }
                        }
                    }
                }
            }
        })) }
    }
}

/// The overview's charts: the last 24 hours by hour.
pub fn overview_charts(charts: &[crate::charts::Chart<'_>]) -> Markup {
    html! { div.cards { @for chart in charts { (crate::charts::render(chart)) } } }
}

pub fn overview(
    o: &Overview,
    today: &RunAnalytics,
    charts: &[crate::charts::Chart<'_>],
    now_ms: u64,
) -> Markup {
    let body = html! {
        div #cards { (overview_cards(o, today)) }
        div #health { (overview_health(o, now_ms)) }
        h2 { "The last 24 hours" }
        div #charts { (overview_charts(charts)) }
    };
    layout(
        "Overview",
        "/ui/",
        body,
        Live::Stream("/ui/events?page=overview".to_owned()),
    )
}

fn totals_table(title: &str, rows: Vec<(String, RunTotals)>) -> Markup {
    html! {
        h2 { "By " (title) }
        (scroll(html! {
            table.stack {
                tr { th { (title) } th.n { "turns" } th.n { "failed" } th.n { "cost" } th.n { "tokens in" } th.n { "tokens out" } th.n { "mean s" } }
                @for (label, t) in rows {
                    tr {
                        td data-label=(title) { (label) } td.n data-label="turns" { (t.turns) } td.n data-label="failed" { (t.failed) }
                        td.n data-label="cost" { (format!("${:.4}", t.cost_usd)) }
                        td.n data-label="tokens in" { (t.input_tokens) } td.n data-label="tokens out" { (t.output_tokens) }
                        td.n data-label="mean s" { (format!("{:.1}", t.mean_duration_ms() / 1000.0)) }
                    }
                }
            }
        }))
    }
}

fn counts_table(title: &str, what: &str, rows: &std::collections::BTreeMap<String, u64>) -> Markup {
    html! {
        h2 { (title) }
        @if rows.is_empty() { p { "None." } }
        @else {
            (scroll(html! {
                table {
                    tr { th { (what) } th.n { "count" } }
                    @for (name, count) in rows { tr { td { (name) } td.n { (count) } } }
                }
            }))
        }
    }
}

/// What routing saved against sending every turn to the biggest model.
#[derive(Debug, Clone, PartialEq)]
pub struct Saving {
    pub model: String,
    pub actual: f64,
    pub on_biggest: f64,
}

/// The range picker: the same page over 1, 7 or 30 days.
pub fn range(path: &str, days: u32) -> Markup {
    html! {
        p.range {
            "Range: "
            @for d in [1, 7, 30, 90] {
                a href={ (path) "?days=" (d) } aria-current=[(d == days).then_some("true")] { (d) " d" }
            }
        }
    }
}

/// How a chat is named: its Telegram title or user name when known, else its id.
pub fn chat_label(chat_id: i64, names: &std::collections::BTreeMap<i64, String>) -> Markup {
    html! {
        a href={ "/ui/chats/" (chat_id) } {
            @match names.get(&chat_id) { Some(name) => { (name) " " small { "(" (chat_id) ")" } }, None => { "chat " (chat_id) } }
        }
    }
}

/// What the Usage page shows.
pub struct UsageView<'a> {
    pub days: u32,
    pub day_list: &'a [String],
    pub analytics: &'a RunAnalytics,
    pub saved: Option<&'a Saving>,
    pub names: &'a std::collections::BTreeMap<i64, String>,
    pub charts: &'a [crate::charts::Chart<'a>],
    pub caps: &'a crate::Caps,
}

/// The Usage page's body: spend against the caps, every day of the range (zeros included),
/// chats apart from Valor's internal runs, errors by kind, tools, per chat, per model, class
/// and effort.
pub fn usage_body(view: &UsageView<'_>) -> Markup {
    let UsageView {
        days,
        day_list,
        analytics,
        saved,
        names,
        charts,
        caps,
    } = *view;
    let named = |map: &std::collections::BTreeMap<String, RunTotals>| {
        map.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    let mut by_day: Vec<(String, RunTotals)> = (day_list.iter())
        .map(|d| {
            (
                d.clone(),
                analytics.by_day.get(d).cloned().unwrap_or_default(),
            )
        })
        .collect();
    let chats = analytics.chats();
    by_day.push(("all days".to_owned(), analytics.all.clone()));
    html! {
        div.cards {
            div.card { div { "Chat turns" } div.big { (chats.turns) } div { (format!("${:.4}", chats.cost_usd)) " · " (chats.failed) " failed" } }
            div.card { div { "Internal runs" } div.big { (analytics.background.turns) } div { (format!("${:.4}", analytics.background.cost_usd)) " · daydream, summaries" } }
            div.card { div { "All runs" } div.big { (analytics.all.turns) } div { (format!("${:.4}", analytics.all.cost_usd)) } }
        }
        (caps_table(caps))
        @if let Some(s) = saved {
            p.notice {
                "Routing: paid " strong { (format!("${:.4}", s.actual)) } "; every turn on "
                (s.model) " would have cost " strong { (format!("${:.4}", s.on_biggest)) }
                " (at the configured prices): saved "
                strong { (format!("${:.4}", s.on_biggest - s.actual)) }
                @if s.on_biggest > 0.0 { " (" (format!("{:.0}%", (s.on_biggest - s.actual) / s.on_biggest * 100.0)) ")" }
            }
        }
        div.cards { @for chart in charts { (crate::charts::render(chart)) } }
        (totals_table("day", by_day))
        h2 { "By chat" }
        (scroll(html! {
            table.stack {
                tr { th { "chat" } th.n { "turns" } th.n { "failed" } th.n { "cost" } th.n { "tokens in" } th.n { "tokens out" } }
                @for (chat, t) in &analytics.by_chat {
                    tr {
                        td data-label="chat" { (chat_label(*chat, names)) } td.n data-label="turns" { (t.turns) } td.n data-label="failed" { (t.failed) }
                        td.n data-label="cost" { (format!("${:.4}", t.cost_usd)) } td.n data-label="tokens in" { (t.input_tokens) } td.n data-label="tokens out" { (t.output_tokens) }
                    }
                }
                tr {
                    td data-label="chat" { em { "internal runs" } } td.n data-label="turns" { (analytics.background.turns) } td.n data-label="failed" { (analytics.background.failed) }
                    td.n data-label="cost" { (format!("${:.4}", analytics.background.cost_usd)) } td.n data-label="tokens in" { (analytics.background.input_tokens) } td.n data-label="tokens out" { (analytics.background.output_tokens) }
                }
            }
        }))
        (counts_table("Errors by kind", "kind", &analytics.errors))
        (counts_table("Tools used", "tool", &analytics.tools))
        (totals_table("model", named(&analytics.by_model)))
        (totals_table("class", named(&analytics.by_class)))
        (totals_table("effort", named(&analytics.by_effort)))
        p { small { (days) " days." } }
    }
}

/// Spend against the caps: whose, over which period, how much of the cap (a bar), when it
/// resets.
fn caps_table(caps: &crate::Caps) -> Markup {
    let now = valor_protocol::time::now_ms();
    html! {
        h2 { "Spend against caps" }
        @if let Some(window) = &caps.usage_window {
            p.notice { "Usage window: " (window) }
        }
        @if caps.rows.is_empty() {
            p { small { "Nothing spent yet this period." } }
        } @else {
            (scroll(html! {
                table.stack {
                    tr { th { "whose" } th { "period" } th.n { "spent" } th.n { "cap" } th { "share" } th { "resets" } }
                    @for row in &caps.rows {
                        tr {
                            td data-label="whose" { (row.who) } td data-label="period" { (row.period) }
                            td.n data-label="spent" { (row.spent) }
                            td.n data-label="cap" { @match &row.cap { Some(cap) => { (format!("{} of {cap}", row.spent)) }, None => { small { "no cap" } } } }
                            td data-label="share" {
                                @if let Some(share) = row.share {
                                    meter min="0" max="1" low="0.8" high="0.99" optimum="0" value=(format!("{:.3}", share.min(1.0))) {}
                                    " " (format!("{:.0}%", share * 100.0))
                                }
                            }
                            td data-label="resets" { (valor_protocol::time::clock_time(row.resets_ms, now)) }
                        }
                    }
                }
            }))
        }
    }
}

pub fn usage(days: u32, body: Markup) -> Markup {
    let page = html! {
        (range("/ui/usage", days))
        div #usage { (body) }
    };
    layout(
        "Usage",
        "/ui/usage",
        page,
        Live::Stream(format!("/ui/events?page=usage&days={days}")),
    )
}

/// What the Jobs page shows.
#[derive(Debug, Clone, Default)]
pub struct JobsView {
    pub jobs: Vec<JobStatus>,
    /// Recorded runs, newest first.
    pub runs: Vec<JobRunRecord>,
    /// Archived report names, newest first.
    pub reports: Vec<String>,
    /// The latest report, rendered.
    pub latest: Option<String>,
    /// A chart is there to show.
    pub chart: bool,
}

/// How long a run took, or that it still runs.
fn took(run: &JobRunRecord) -> String {
    match run.finished_ms {
        Some(end) => format!(
            "{:.1} s",
            end.saturating_sub(run.started_ms) as f64 / 1000.0
        ),
        None => "running".to_owned(),
    }
}

/// The live part of the Jobs page: the jobs and their recent runs.
pub fn jobs_fragment(view: &JobsView, csrf: &str, now_ms: u64) -> Markup {
    html! {
        (scroll(html! {
            table.stack {
                tr { th { "job" } th { "schedule" } th { "last run" } th { "outcome" } th { "took" } th { "next run" } th {} }
                @for job in &view.jobs {
                    tr {
                        td data-label="job" { strong { (job.name) } }
                        td data-label="schedule" { (crate::cron::describe(&job.schedule)) br; small { code { (job.schedule) } } }
                        td data-label="last run" { @match &job.last { Some(r) => (time(r.started_ms)), None => "never" } }
                        td data-label="outcome" {
                            @match &job.last { Some(r) => span class=(r.outcome.as_str()) { (r.outcome.as_str()) }, None => "-" }
                            @if let Some(p) = &job.progress { br; small.progress { (p) } }
                        }
                        td data-label="took" {
                            @match &job.last {
                                Some(r) if r.finished_ms.is_none() => { "running, started " (ago(r.started_ms, now_ms)) }
                                Some(r) => (took(r)),
                                None => "-",
                            }
                        }
                        td data-label="next run" {
                            @if job.paused { span.degraded { "paused" } }
                            @else { @match job.next { Some(t) => (time(u64::try_from(t.timestamp_millis()).unwrap_or(0))), None => "-" } }
                        }
                        td {
                            form.inline method="post" action="/ui/jobs/run" {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="job" value=(job.name);
                                button type="submit" { "Run now" }
                            }
                            form.inline method="post" action="/ui/jobs/pause" {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="job" value=(job.name);
                                input type="hidden" name="paused" value=(!job.paused);
                                button type="submit" { (if job.paused { "Resume" } else { "Pause" }) }
                            }
                        }
                    }
                }
            }
        }))
        h2 { "Recent runs" }
        @if view.runs.is_empty() { p { "None recorded yet." } }
        @else {
            (scroll(html! {
                table.stack.runs {
                    tr { th { "job" } th { "started" } th { "took" } th { "outcome" } th { "what happened" } }
                    @for run in &view.runs {
                        tr {
                            td data-label="job" { (run.job) } td data-label="started" { (time(run.started_ms)) } td data-label="took" { (took(run)) }
                            td data-label="outcome" { span class=(run.outcome.as_str()) { (run.outcome.as_str()) } } td data-label="what happened" { (run.detail) }
                        }
                    }
                }
            }))
        }
    }
}

pub fn jobs(view: &JobsView, csrf: &str, notice_text: Option<&str>) -> Markup {
    let body = html! {
        (notice(notice_text))
        div #jobs { (jobs_fragment(view, csrf, valor_protocol::time::now_ms())) }
        h2 { "Daydream" }
        @if view.chart { img.wide src="/ui/reports/chart.png" alt="turns per day and health over time"; }
        @match &view.latest {
            Some(html) => div.report { (PreEscaped(html)) },
            None => p { "No report yet: the daydream writes one every run." },
        }
        @if !view.reports.is_empty() {
            h3 { "Earlier reports" }
            ul { @for name in &view.reports { li { a href={ "/ui/reports/" (name) } { (name) } } } }
        }
    };
    layout(
        "Jobs",
        "/ui/jobs",
        body,
        Live::Stream("/ui/events?page=jobs".to_owned()),
    )
}

/// One archived daydream report.
pub fn report(name: &str, html: &str) -> Markup {
    let body = html! {
        p { a href="/ui/jobs" { "← Jobs" } " · " (name) }
        div.report { (PreEscaped(html)) }
    };
    layout("Daydream report", "/ui/jobs", body, Live::No)
}

/// A time with seconds, UTC.
pub fn when(ms: u64) -> String {
    let (date, clock) = date_and_clock(ms);
    format!("{date} {clock} UTC")
}

/// What a running turn is doing, in a line: model, time so far, tool calls, writing.
fn progress(p: &valor_core::progress::TurnProgress, now_ms: u64) -> Markup {
    let secs = now_ms.saturating_sub(p.started_ms) / 1000;
    html! {
        strong { "running " (secs) " s" }
        @if let Some(model) = &p.model { " on " (model) }
        @if let Some(attempt) = p.retrying { ", API busy: retry " (attempt) }
        @if p.tool_calls > 0 {
            ", " (p.tool_calls) " tool call" @if p.tool_calls > 1 { "s" } ": "
            @for (i, step) in p.tools.iter().enumerate() {
                @if i > 0 { ", " }
                (step.name) " " (match step.ok { None => "…", Some(true) => "✓", Some(false) => "✗" })
            }
        }
        @if p.writing { ", writing the answer" }
    }
}

/// The live part of the Chats page.
pub fn chats_fragment(rows: &[ChatRow], csrf: &str, now_ms: u64) -> Markup {
    // On several machines each chat is held by one node: which, beside what it does.
    let cluster = rows.iter().any(|r| r.node.is_some());
    html! {
        @if rows.is_empty() { p { "No chat yet." } }
        @else {
            (scroll(html! {
                table.stack {
                    tr { th { "chat" } @if cluster { th { "node" } } th { "session" } th { "last message" } th.n { "messages" } th.n { "turns (30 d)" } th.n { "cost (30 d)" } th { "context before → after" } th { "now" } th {} }
                    @for row in rows {
                        tr {
                            td data-label="chat" {
                                a href={ "/ui/chats/" (row.chat_id) } {
                                    @match &row.name { Some(name) => { (name) " " small { "(" (row.chat_id) ")" } }, None => { "chat " (row.chat_id) } }
                                }
                            }
                            @if cluster { td data-label="node" { (row.node.as_deref().unwrap_or("-")) } }
                            td data-label="session" { code { (row.session.as_deref().map_or("-", |s| s.get(..8).unwrap_or(s))) } }
                            td data-label="last message" { (time(row.last_at_ms)) } td.n data-label="messages" { (row.messages) } td.n data-label="turns" { (row.turns) }
                            td.n data-label="cost" { (format!("${:.4}", row.cost_usd)) }
                            td data-label="context" { @if let Some((mb, ma, tb, ta)) = row.context { (mb) " → " (ma) " msgs, " (tb) " → " (ta) " tokens" } @else { "-" } }
                            td.now data-label="now" {
                                @if let Some(p) = &row.running { (progress(p, now_ms)) }
                                @if row.pending > usize::from(row.running.is_some()) {
                                    " " (row.pending - usize::from(row.running.is_some())) " waiting"
                                }
                                @if row.pending == 0 { "idle" }
                            }
                            td {
                                @if row.pending > 0 || row.node.is_some() {
                                    form.inline method="post" action="/ui/chats/stop" {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="chat_id" value=(row.chat_id);
                                        button type="submit" { "Stop" }
                                    }
                                }
                            }
                        }
                    }
                }
            }))
        }
    }
}

pub fn chats(rows: &[ChatRow], csrf: &str, notice_text: Option<&str>, now_ms: u64) -> Markup {
    let body = html! {
        (notice(notice_text))
        div #chats { (chats_fragment(rows, csrf, now_ms)) }
    };
    layout(
        "Chats",
        "/ui/chats",
        body,
        Live::Stream("/ui/events?page=chats".to_owned()),
    )
}

/// Log lines as the Logs page shows them (each a line of its own, coloured by level).
pub fn log_lines(lines: &[crate::logs::LogLine]) -> Markup {
    html! {
        @for line in lines {
            div.line {
                time data-ms=(line.at_ms) datetime=(iso(line.at_ms)) { (when_ms(line.at_ms)) }
                " " span class=(line.level.as_str()) { (line.level.as_str()) } " " small { (line.target) }
                @if let Some(chat) = line.chat_id { " chat=" (chat) }
                " " (line.text)
            }
        }
    }
}

/// A time to the millisecond, UTC.
pub fn when_ms(ms: u64) -> String {
    let (date, clock) = date_and_clock(ms);
    format!("{date} {clock}.{:03} UTC", ms % 1000)
}

/// The Logs page's filter, as its form and stream name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogsView {
    pub level: String,
    pub chat: Option<i64>,
    pub text: String,
    /// Newest first (else oldest first, following the end).
    pub newest_first: bool,
}

impl LogsView {
    /// The query these filters make (for the stream and the download).
    pub fn query(&self) -> String {
        let mut q = format!("level={}", self.level);
        if let Some(chat) = self.chat {
            q.push_str(&format!("&chat={chat}"));
        }
        if !self.text.is_empty() {
            q.push_str("&q=");
            q.push_str(&encode(&self.text));
        }
        if self.newest_first {
            q.push_str("&order=newest");
        }
        q
    }
}

/// `text` for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn logs(lines: &[crate::logs::LogLine], view: &LogsView, last_seq: u64) -> Markup {
    let mut shown: Vec<crate::logs::LogLine> = lines.to_vec();
    if view.newest_first {
        shown.reverse();
    }
    let body = html! {
        form method="get" action="/ui/logs" {
            "Level "
            select name="level" {
                @for name in ["error", "warn", "info", "debug", "trace"] {
                    option value=(name) selected[name == view.level] { (name) }
                }
            }
            " Chat " input type="text" name="chat" size="14" inputmode="numeric" value=(view.chat.map(|c| c.to_string()).unwrap_or_default());
            " Search " input type="search" name="q" size="20" value=(view.text);
            " " select name="order" {
                option value="oldest" selected[!view.newest_first] { "oldest first, follow" }
                option value="newest" selected[view.newest_first] { "newest first" }
            }
            " " button type="submit" { "Show" }
        }
        p {
            label { input #pause type="checkbox"; " pause" } " "
            @if !view.newest_first { label { input #follow type="checkbox" checked; " follow" } " " }
            a href={ "/ui/logs/download?" (view.query()) } download { "download" }
            " · " small { "Valor's own lines; the MCP library's are at debug." }
        }
        pre.log #lines data-order=(if view.newest_first { "newest" } else { "oldest" }) { (log_lines(&shown)) }
    };
    layout(
        "Logs",
        "/ui/logs",
        body,
        Live::Stream(format!(
            "/ui/events?page=logs&after={}&{}",
            last_seq,
            view.query()
        )),
    )
}

/// The Sessions page: the logged-in browsers, this one marked, each can be ended.
pub fn sessions(
    all: &[crate::auth::Session],
    mine: &crate::auth::Session,
    notice_text: Option<&str>,
) -> Markup {
    let body = html! {
        (notice(notice_text))
        p { "Browsers logged in to this dashboard (a login lasts 12 hours; a restart keeps it)." }
        (scroll(html! {
            table.stack {
                tr { th { "session" } th { "browser" } th { "logged in" } th { "last seen" } th {} }
                @for s in all {
                    tr {
                        td data-label="session" { code { (s.short()) } @if s.key == mine.key { " " strong { "(this one)" } } }
                        td data-label="browser" { (s.agent) }
                        td data-label="logged in" { (time(s.started_ms)) }
                        td data-label="last seen" { (time(s.last_seen_ms)) }
                        td {
                            form.inline method="post" action="/ui/sessions/end" {
                                input type="hidden" name="csrf" value=(mine.csrf);
                                input type="hidden" name="key" value=(s.key);
                                button type="submit" { @if s.key == mine.key { "Log out" } @else { "End" } }
                            }
                        }
                    }
                }
            }
        }))
        form method="post" action="/ui/logout" {
            input type="hidden" name="csrf" value=(mine.csrf);
            button type="submit" { "Log out" }
        }
    };
    layout("Sessions", "/ui/sessions", body, Live::No)
}

/// A page for a browser that is not logged in, a spent link or a refused form.
/// The page for an address that names nothing (a turn no longer kept, a chat nobody wrote in).
pub fn missing(what: &str) -> Markup {
    layout("Not found", "", html! { p { (what) } }, Live::No)
}

pub fn refused(why: &str) -> Markup {
    layout(
        "Log in",
        "",
        html! { p { (why) } p { "Run " code { "valor dashboard" } " on the machine Valor runs on for a login link." } },
        Live::No,
    )
}
