//! The pages, server-rendered (maud escapes every value), with a little JavaScript for the
//! live parts. Everything is in the binary: no CDN, no build step, works offline.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use valor_protocol::analytics::{RunAnalytics, RunTotals};
use valor_protocol::health::HealthPoint;
use valor_protocol::jobs::JobRunRecord;
use valor_scheduler::JobStatus;

use crate::{AlertRow, ChatRow, LearningRow, MemoryRow, Overview};

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}\
nav{background:#1d232a;padding:10px 16px}nav a{color:#fff;margin-right:16px;text-decoration:none}\
main{padding:16px;max-width:1100px}table{border-collapse:collapse;background:#fff;margin:8px 0}\
td,th{border:1px solid #dde;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}\
.ok{color:#1a7f37}.degraded{color:#9a6700}.unhealthy{color:#cf222e}.card{display:inline-block;\
background:#fff;border:1px solid #dde;padding:8px 14px;margin:4px;min-width:120px}\
.big{font-size:26px;font-weight:600}svg{background:#fff;border:1px solid #dde;margin:4px}";

/// Keeps a page live: the server sends the `#live` part again when it changes; the browser
/// reconnects by itself when the connection drops. The stream's address is the body's
/// `data-live`.
const LIVE: &str = "const s=new EventSource(document.body.dataset.live);\
s.addEventListener('fragment',e=>{const o=document.getElementById('live');if(o){o.innerHTML=e.data;}\
document.body.dataset.updated=Date.now();});";

/// How a page stays current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// It does not (a form, a search).
    No,
    /// Its `#live` part over the event stream at this address.
    Stream(String),
}

/// The page frame: navigation, the body, and how it stays current.
pub fn layout(title: &str, body: Markup, live: Live) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Valor · " (title) }
                style { (PreEscaped(STYLE)) }
            }
            body data-live=[if let Live::Stream(url) = &live { Some(url) } else { None }] {
                nav {
                    a href="/ui/" { "Overview" }
                    a href="/ui/usage" { "Usage" }
                    a href="/ui/chats" { "Chats" }
                    a href="/ui/jobs" { "Jobs" }
                    a href="/ui/memory" { "Memory" }
                    a href="/ui/alerts" { "Alerts" }
                    a href="/ui/logs" { "Logs" }
                }
                main { h1 { (title) } (body) }
                @if let Live::Stream(_) = live { script { (PreEscaped(LIVE)) } }
            }
        }
    }
}

/// A sparkline of `values` (oldest first) as inline SVG.
fn sparkline(label: &str, values: &[f64], unit: &str) -> Markup {
    let (width, height) = (320.0, 60.0);
    let max = values.iter().copied().fold(0.0_f64, f64::max).max(1.0);
    let step = width / (values.len().max(2) - 1) as f64;
    let points: Vec<String> = (values.iter().enumerate())
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                height - v / max * (height - 4.0)
            )
        })
        .collect();
    let last = values.last().copied().unwrap_or(0.0);
    html! {
        div.card {
            div { (label) ": " strong { (format!("{last:.1}")) " " (unit) } }
            svg width=(width) height=(height) role="img" aria-label=(label) {
                polyline fill="none" stroke="#0969da" stroke-width="1.5" points=(points.join(" ")) {}
            }
        }
    }
}

/// The live part of the overview (sent again over the event stream when it changes).
pub fn overview_fragment(o: &Overview) -> Markup {
    html! {
        div.card { div { "Health" } div class={ "big " (o.status) } { (o.score) } div class=(o.status) { (o.status) } }
        div.card { div { "Turns running" } div.big { (o.running) } div { (o.queued) " queued" } }
        div.card { div { "Today" } div.big { (o.turns_today) } div { (format!("${:.4}", o.cost_today)) } }
        div.card { div { "Up" } div.big { (o.uptime_secs / 60) " min" } }
        h2 { "Alerts" }
        @if o.alerts.is_empty() { p { "None." } }
        @for alert in &o.alerts { p { strong { (alert.0) } " " (alert.1) br; em { (alert.2) } } }
        h2 { "Components" }
        table { @for (name, status) in &o.components { tr { td { (name) } td class=(status) { (status) } } } }
    }
}

pub fn overview(o: &Overview, points: &[HealthPoint], turns_per_hour: &[f64]) -> Markup {
    let series = |f: &dyn Fn(&HealthPoint) -> f64| points.iter().map(f).collect::<Vec<f64>>();
    let body = html! {
        div #live { (overview_fragment(o)) }
        h2 { "The last 24 hours" }
        @if points.is_empty() { p { "No history yet: a point is kept every minute." } }
        @else {
            (sparkline("Health score", &series(&|p| f64::from(p.score)), ""))
            (sparkline("Memory", &series(&|p| f64::from(p.rss_mb)), "MiB"))
            (sparkline("CPU", &series(&|p| f64::from(p.cpu_percent)), "%"))
            (sparkline("Child processes", &series(&|p| f64::from(p.children)), ""))
        }
        (sparkline("Turns per hour", turns_per_hour, ""))
    };
    layout(
        "Overview",
        body,
        Live::Stream("/ui/events?page=overview".to_owned()),
    )
}

fn totals_table(title: &str, rows: Vec<(String, RunTotals)>) -> Markup {
    html! {
        h2 { (title) }
        table {
            tr { th { (title) } th { "turns" } th { "failed" } th { "cost $" } th { "tokens in" } th { "tokens out" } th { "avg s" } }
            @for (label, t) in rows {
                tr {
                    td { (label) } td { (t.turns) } td { (t.failed) } td { (format!("{:.4}", t.cost_usd)) }
                    td { (t.input_tokens) } td { (t.output_tokens) } td { (format!("{:.1}", t.mean_duration_ms() / 1000.0)) }
                }
            }
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

pub fn usage(days: u32, analytics: &RunAnalytics, saved: Option<&Saving>) -> Markup {
    let named = |map: &std::collections::BTreeMap<String, RunTotals>| {
        map.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    let mut by_day = named(&analytics.by_day);
    by_day.push(("total".to_owned(), analytics.all.clone()));
    let body = html! {
        p { "Days: " a href="/ui/usage?days=1" { "1" } " · " a href="/ui/usage?days=7" { "7" } " · " a href="/ui/usage?days=30" { "30" } " (now " (days) ")" }
        @if let Some(s) = saved {
            p.card {
                "Routing: paid " strong { (format!("${:.4}", s.actual)) } "; every turn on "
                (s.model) " would have cost " strong { (format!("${:.4}", s.on_biggest)) }
                " (at the configured prices): saved "
                strong { (format!("${:.4}", s.on_biggest - s.actual)) }
                @if s.on_biggest > 0.0 { " (" (format!("{:.0}%", (s.on_biggest - s.actual) / s.on_biggest * 100.0)) ")" }
            }
        }
        (totals_table("day", by_day))
        (totals_table("model", named(&analytics.by_model)))
        (totals_table("class", named(&analytics.by_class)))
        (totals_table("effort", named(&analytics.by_effort)))
    };
    layout("Usage", body, Live::No)
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

pub fn jobs(view: &JobsView, csrf: &str, notice: Option<&str>) -> Markup {
    let body = html! {
        @if let Some(notice) = notice { p { strong { (notice) } } }
        table {
            tr { th { "job" } th { "schedule" } th { "last run" } th { "outcome" } th { "took" } th { "next run" } th {} }
            @for job in &view.jobs {
                tr {
                    td { (job.name) } td { (job.schedule) }
                    td { (job.last.as_ref().map_or("never".to_owned(), |r| when(r.started_ms))) }
                    td { (job.last.as_ref().map_or("-", |r| r.outcome.as_str())) }
                    td { (job.last.as_ref().map_or("-".to_owned(), took)) }
                    td { (job.next.map_or("-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string())) }
                    td {
                        form method="post" action="/ui/jobs/run" {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="job" value=(job.name);
                            button type="submit" { "Run now" }
                        }
                    }
                }
            }
        }
        h2 { "Recent runs" }
        @if view.runs.is_empty() { p { "None recorded yet." } }
        @else {
            table.runs {
                tr { th { "job" } th { "started" } th { "took" } th { "outcome" } th { "what happened" } }
                @for run in &view.runs {
                    tr { td { (run.job) } td { (when(run.started_ms)) } td { (took(run)) } td { (run.outcome.as_str()) } td { (run.detail) } }
                }
            }
        }
        h2 { "Daydream" }
        @if view.chart { img src="/ui/reports/chart.png" alt="turns per day and health over time" style="max-width:100%"; }
        @match &view.latest {
            Some(html) => div.report { (PreEscaped(html)) },
            None => p { "No report yet: the daydream writes one every run." },
        }
        @if !view.reports.is_empty() {
            h3 { "Earlier reports" }
            ul { @for name in &view.reports { li { a href={ "/ui/reports/" (name) } { (name) } } } }
        }
    };
    layout("Jobs", body, Live::No)
}

/// One archived daydream report.
pub fn report(name: &str, html: &str) -> Markup {
    let body = html! {
        p { a href="/ui/jobs" { "← Jobs" } " · " (name) }
        div.report { (PreEscaped(html)) }
    };
    layout("Daydream report", body, Live::No)
}

fn when(ms: u64) -> String {
    let secs = ms / 1000;
    format!(
        "{} {:02}:{:02} UTC",
        valor_protocol::time::civil_date(ms),
        secs / 3600 % 24,
        secs / 60 % 60
    )
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
    html! {
        @if rows.is_empty() { p { "No chat yet." } }
        @else {
            table {
                tr { th { "chat" } th { "session" } th { "last message" } th { "messages" } th { "turns (30 d)" } th { "cost $" } th { "context before → after" } th { "now" } th {} }
                @for row in rows {
                    tr {
                        td { (row.chat_id) }
                        td { code { (row.session.as_deref().map_or("-", |s| s.get(..8).unwrap_or(s))) } }
                        td { (when(row.last_at_ms)) } td { (row.messages) } td { (row.turns) }
                        td { (format!("{:.4}", row.cost_usd)) }
                        td { @if let Some((mb, ma, tb, ta)) = row.context { (mb) " → " (ma) " msgs, " (tb) " → " (ta) " tokens" } @else { "-" } }
                        td.now {
                            @if let Some(p) = &row.running { (progress(p, now_ms)) }
                            @if row.pending > usize::from(row.running.is_some()) {
                                " " (row.pending - usize::from(row.running.is_some())) " waiting"
                            }
                            @if row.pending == 0 { "idle" }
                        }
                        td {
                            @if row.pending > 0 {
                                form method="post" action="/ui/chats/stop" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="chat_id" value=(row.chat_id);
                                    button type="submit" { "Stop" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn chats(rows: &[ChatRow], csrf: &str, notice: Option<&str>, now_ms: u64) -> Markup {
    let body = html! {
        @if let Some(notice) = notice { p { strong { (notice) } } }
        div #live { (chats_fragment(rows, csrf, now_ms)) }
    };
    layout(
        "Chats",
        body,
        Live::Stream("/ui/events?page=chats".to_owned()),
    )
}

pub fn alerts(rows: &[AlertRow]) -> Markup {
    let body = html! {
        @if rows.is_empty() { p { "No alert in the last 30 days." } }
        @else {
            table {
                tr { th { "raised" } th { "severity" } th { "what" } th { "what to do" } th { "what was done" } th { "cleared" } }
                @for row in rows {
                    tr {
                        td { (when(row.raised_ms)) } td { (row.severity) } td { (row.message) } td { (row.action) }
                        td { @for (i, (at, what)) in row.done.iter().enumerate() { @if i > 0 { br; } (what) " (" (when(*at)) ")" } }
                        td {
                            (row.cleared_ms.map_or("active".to_owned(), when))
                            @if row.ended_by_restart { " (Valor stopped)" }
                        }
                    }
                }
            }
        }
    };
    layout("Alerts", body, Live::No)
}

fn chat_name(chat_id: Option<i64>) -> String {
    chat_id.map_or_else(|| "shared".to_owned(), |c| format!("chat {c}"))
}

pub fn memory(
    query: &str,
    hits: &[MemoryRow],
    learnings: &[LearningRow],
    csrf: &str,
    notice: Option<&str>,
) -> Markup {
    let body = html! {
        @if let Some(notice) = notice { p { strong { (notice) } } }
        form method="get" action="/ui/memory" {
            input type="search" name="q" value=(query) placeholder="search memory (words or meaning)" size="50";
            button type="submit" { "Search" }
        }
        @if !query.is_empty() {
            h2 { "Found" }
            @if hits.is_empty() { p { "Nothing matches." } }
            table {
                @for hit in hits {
                    tr {
                        td { a href={ "/ui/memory/" (hit.id) } { "#" (hit.id) } } td { (hit.kind) } td { (chat_name(hit.chat_id)) }
                        td { (valor_protocol::time::civil_date(hit.at_ms)) } td { strong { (hit.title) } br; (hit.text) }
                    }
                }
            }
        }
        h2 { "Learnings" }
        @if learnings.is_empty() { p { "None yet." } }
        table {
            tr { th { "chat" } th { "#" } th { "category" } th { "confidence" } th { "seen" } th { "learning" } th {} }
            @for l in learnings {
                tr {
                    td { (chat_name(l.chat_id)) } td { (l.number) } td { (l.category) } td { (format!("{:.2}", l.confidence)) }
                    td { (l.times_seen) }
                    td {
                        (l.content)
                        details {
                            summary { "history" }
                            (l.origin) ", made " (when(l.created_ms))
                            @if l.updated_ms > l.created_ms { ", last changed " (when(l.updated_ms)) }
                            @if !l.sources.is_empty() { br; "seen in: " (l.sources.join(", ")) }
                        }
                    }
                    td {
                        @if let Some(why) = &l.retired { em { "retired: " (why) } }
                        @else if let Some(chat) = l.chat_id {
                            form method="post" action="/ui/learnings/forget" {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="chat_id" value=(chat);
                                input type="hidden" name="number" value=(l.number);
                                button type="submit" { "Forget" }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Memory", body, Live::No)
}

pub fn memory_one(row: &MemoryRow) -> Markup {
    let body = html! {
        p { "#" (row.id) " · " (row.kind) " · " (chat_name(row.chat_id)) " · " (valor_protocol::time::civil_date(row.at_ms)) }
        h2 { (row.title) }
        pre style="white-space:pre-wrap" { (row.text) }
    };
    layout("Memory", body, Live::No)
}

/// The live part of the Logs page.
pub fn logs_fragment(lines: &[crate::logs::LogLine]) -> Markup {
    html! {
        pre style="white-space:pre-wrap;background:#fff;border:1px solid #dde;padding:8px" {
            @for line in lines {
                (when(line.at_ms)) " " (line.level) " " (line.target)
                @if let Some(chat) = line.chat_id { " chat=" (chat) }
                " " (line.text) "\n"
            }
        }
    }
}

pub fn logs(lines: &[crate::logs::LogLine], level: &str, chat: Option<i64>) -> Markup {
    let body = html! {
        form method="get" action="/ui/logs" {
            "Level "
            select name="level" {
                @for name in ["error", "warn", "info", "debug", "trace"] {
                    option value=(name) selected[name == level] { (name) }
                }
            }
            " Chat " input type="text" name="chat" size="14" value=(chat.map(|c| c.to_string()).unwrap_or_default());
            " " button type="submit" { "Show" }
            " (newest last, live)"
        }
        div #live { (logs_fragment(lines)) }
    };
    let chat = chat.map(|c| format!("&chat={c}")).unwrap_or_default();
    layout(
        "Logs",
        body,
        Live::Stream(format!("/ui/events?page=logs&level={level}{chat}")),
    )
}

/// A page for a browser that is not logged in (or whose link was spent).
pub fn refused(why: &str) -> Markup {
    layout(
        "Log in",
        html! { p { (why) } p { "Run " code { "valor dashboard" } " on the machine Valor runs on for a login link." } },
        Live::No,
    )
}
