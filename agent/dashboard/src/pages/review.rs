//! What the operator reviews and decides: alerts (active first, acknowledge, silence, flapping
//! grouped), Memory (search with scores and filters, questions to accept or decline,
//! learnings to forget).

use maud::{Markup, html};

use super::{Live, layout, notice, scroll, time};
use crate::{AlertRow, LearningRow, MemoryQuery, MemoryRow, QuestionRow, SilenceRow};

/// How long a silence lasts: (hours, label).
const SILENCES: [(u32, &str); 3] = [(1, "1 h"), (8, "8 h"), (24, "24 h")];

/// A small POST form of hidden fields and one button.
fn action(path: &str, csrf: &str, fields: &[(&str, String)], label: &str) -> Markup {
    html! {
        form.inline method="post" action=(path) {
            input type="hidden" name="csrf" value=(csrf);
            @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
            button type="submit" { (label) }
        }
    }
}

/// The live part of the Alerts page: active first (acknowledge, silence), the silences in
/// force, then past alerts newest first, repeats within the hour (flapping) in one row.
pub fn alerts_fragment(rows: &[AlertRow], silences: &[SilenceRow], csrf: &str) -> Markup {
    let (active, past): (Vec<&AlertRow>, Vec<&AlertRow>) =
        rows.iter().partition(|r| r.cleared_ms.is_none());
    let groups = group_flapping(&past);
    html! {
        h2 { "Active" }
        @if active.is_empty() { p.ok { "No active alert." } }
        @for row in &active {
            div id={ "alert-" (row.raised_ms) } class={ "alert " (row.severity.to_ascii_lowercase()) } {
                strong { (row.severity) } " " (row.message) " · since " (time(row.raised_ms))
                br; small { (row.action) }
                @for (at, what) in &row.done { br; small { (what) " (" (time(*at)) ")" } }
                div.actions {
                    @match row.acknowledged_ms {
                        Some(at) => { small { "acknowledged " (time(at)) } }
                        None => (action("/ui/alerts/acknowledge", csrf, &[("kind", row.kind.clone())], "Acknowledge")),
                    }
                    " Silence: "
                    @for (hours, label) in SILENCES {
                        (action("/ui/alerts/silence", csrf, &[("kind", row.kind.clone()), ("hours", hours.to_string())], label))
                    }
                }
            }
        }
        @if !silences.is_empty() {
            h2 { "Silenced" }
            @for s in silences {
                p {
                    (s.kind) ": not told to the admin chat until " (time(s.until_ms)) " "
                    (action("/ui/alerts/silence", csrf, &[("kind", s.kind.clone()), ("hours", "0".to_owned())], "Lift"))
                }
            }
        }
        h2 { "Past (30 days)" }
        @if groups.is_empty() { p { "No alert in the last 30 days." } }
        @for (row, repeats) in &groups {
            div id={ "alert-" (row.raised_ms) } class="alert cleared" {
                span class=(row.severity) { (row.severity) } " " (row.message)
                br; small {
                    "raised " (time(row.raised_ms))
                    @if let Some(cleared) = row.cleared_ms { ", cleared " (time(cleared)) }
                    @if row.ended_by_restart { " (Valor stopped)" }
                    @if *repeats > 1 { " · flapping: " (repeats) " times within the hour" }
                }
                @for (at, what) in &row.done { br; small { (what) " (" (time(*at)) ")" } }
            }
        }
    }
}

/// Past alerts with their repeats folded in: one of a kind raised again within an hour of the
/// previous is counted, not listed. (newest first, count).
fn group_flapping<'a>(past: &[&'a AlertRow]) -> Vec<(&'a AlertRow, usize)> {
    let mut groups: Vec<(&AlertRow, usize)> = Vec::new();
    for row in past {
        match groups.last_mut() {
            Some((head, count))
                if head.kind == row.kind
                    && head.raised_ms.saturating_sub(row.raised_ms)
                        <= 3_600_000 * (*count as u64) =>
            {
                *count += 1;
            }
            _ => groups.push((row, 1)),
        }
    }
    groups
}

pub fn alerts(
    rows: &[AlertRow],
    silences: &[SilenceRow],
    csrf: &str,
    notice_text: Option<&str>,
) -> Markup {
    let body = html! {
        (notice(notice_text))
        div #alerts { (alerts_fragment(rows, silences, csrf)) }
    };
    layout(
        "Alerts",
        "/ui/alerts",
        body,
        Live::Stream("/ui/events?page=alerts".to_owned()),
    )
}

fn chat_name(chat_id: Option<i64>) -> String {
    chat_id.map_or_else(|| "shared".to_owned(), |c| format!("chat {c}"))
}

/// What the Memory page shows.
pub struct MemoryView<'a> {
    pub query: &'a MemoryQuery,
    pub hits: &'a [MemoryRow],
    pub questions: &'a [QuestionRow],
    pub learnings: &'a [LearningRow],
}

fn search_form(q: &MemoryQuery) -> Markup {
    html! {
        form.search method="get" action="/ui/memory" {
            input type="search" name="q" value=(q.text) placeholder="search memory (words or meaning)" size="40";
            select name="kind" title="kind" {
                option value="" { "any kind" }
                @for kind in valor_protocol::records::MemoryKind::ALL.map(|k| k.as_str()) {
                    option value=(kind) selected[q.kind.as_deref() == Some(kind)] { (kind) }
                }
            }
            input type="text" name="chat" value=[q.chat] placeholder="chat id" size="12" inputmode="numeric";
            select name="days" title="from the last" {
                option value="" { "any time" }
                @for d in [1, 7, 30, 90] { option value=(d) selected[q.days == Some(d)] { "last " (d) " d" } }
            }
            button type="submit" { "Search" }
        }
    }
}

fn questions_table(questions: &[QuestionRow], csrf: &str) -> Markup {
    html! {
        h2 { "Remember this? — open and declined questions" }
        @if questions.is_empty() { p { "None." } }
        @else {
            (scroll(html! {
                table.stack {
                    tr { th { "asked" } th { "chat" } th { "would remember" } th { "why" } th { "state" } th {} }
                    @for q in questions {
                        tr {
                            td data-label="asked" { (time(q.created_ms)) }
                            td data-label="chat" { a href={ "/ui/chats/" (q.chat_id) } { "chat " (q.chat_id) } }
                            td data-label="would remember" {
                                (q.text)
                                @if let Some(m) = &q.source_message { br; small { "from: " (m) } }
                            }
                            td data-label="why" { (q.why) }
                            td data-label="state" { span class=(q.state) { (q.state) } }
                            td {
                                @let fields = [("chat_id", q.chat_id.to_string()), ("id", q.id.to_string())];
                                @if q.state != "accepted" {
                                    (action("/ui/questions/decide", csrf, &[fields[0].clone(), fields[1].clone(), ("yes", "true".to_owned())], "Accept"))
                                }
                                @if q.state == "pending" {
                                    (action("/ui/questions/decide", csrf, &[fields[0].clone(), fields[1].clone(), ("yes", "false".to_owned())], "Decline"))
                                }
                            }
                        }
                    }
                }
            }))
        }
    }
}

fn learnings_table(learnings: &[LearningRow], csrf: &str) -> Markup {
    html! {
        h2 { "Learnings" }
        @if learnings.is_empty() { p { "None yet." } }
        @else { (scroll(html! {
            table.stack {
                tr { th { "chat" } th.n { "#" } th { "category" } th.n { "confidence" } th.n { "seen" } th { "learning" } th {} }
                @for l in learnings {
                    tr {
                        td data-label="chat" { (chat_name(l.chat_id)) } td.n data-label="#" { (l.number) } td data-label="category" { (l.category) }
                        td.n data-label="confidence" { (format!("{:.2}", l.confidence)) }
                        td.n data-label="seen" { (l.times_seen) }
                        td data-label="learning" {
                            (l.content)
                            details {
                                summary { "history" }
                                (l.origin) ", made " (super::when(l.created_ms))
                                @if l.updated_ms > l.created_ms { ", last changed " (super::when(l.updated_ms)) }
                                @if !l.sources.is_empty() { br; "seen in: " (l.sources.join(", ")) }
                            }
                        }
                        td {
                            @if let Some(why) = &l.retired { em { "retired: " (why) } }
                            @else if let Some(chat) = l.chat_id {
                                (action("/ui/learnings/forget", csrf, &[("chat_id", chat.to_string()), ("number", l.number.to_string())], "Forget"))
                            }
                        }
                    }
                }
            }
        })) }
    }
}

pub fn memory(view: &MemoryView<'_>, csrf: &str, notice_text: Option<&str>) -> Markup {
    let q = view.query;
    let body = html! {
        (notice(notice_text))
        (search_form(q))
        @if !q.text.is_empty() {
            h2 { "Found" }
            @if view.hits.is_empty() { p { "Nothing matches." } }
            @else {
                (scroll(html! {
                    table.stack.hits {
                        tr { th { "memory" } th { "kind" } th { "chat" } th { "when" } th.n { "score" } th.n { "similarity" } th { "words" } }
                        @for hit in view.hits {
                            tr {
                                td data-label="memory" { a href={ "/ui/memory/" (hit.id) } { strong { (hit.title) } } br; small { (hit.text) } }
                                td data-label="kind" { (hit.kind) } td data-label="chat" { (chat_name(hit.chat_id)) }
                                td data-label="when" { (time(hit.at_ms)) }
                                td.n data-label="score" { (hit.score.map_or("-".to_owned(), |s| format!("{s:.4}"))) }
                                td.n data-label="similarity" { (hit.similarity.map_or("-".to_owned(), |s| format!("{s:.3}"))) }
                                td data-label="words" { (if hit.keyword { "match" } else { "-" }) }
                            }
                        }
                    }
                }))
            }
        }
        (questions_table(view.questions, csrf))
        (learnings_table(view.learnings, csrf))
    };
    layout("Memory", "/ui/memory", body, Live::No)
}

pub fn memory_one(row: &MemoryRow) -> Markup {
    let body = html! {
        p { "#" (row.id) " · " (row.kind) " · " (chat_name(row.chat_id)) " · " (time(row.at_ms)) }
        h2 { (row.title) }
        pre.text { (row.text) }
    };
    layout("Memory", "/ui/memory", body, Live::No)
}
