//! The drill-down pages: the latest turns (each with its tools and what they were asked), one
//! turn whole (its prompt as sent, its answer, its tool calls), and one chat (its turns,
//! spend, learnings and memories). Valor's own runs (the daydream, session summaries) are
//! named as such and counted apart from the chats'.

use std::collections::BTreeMap;

use maud::{Markup, html};
use valor_protocol::analytics::RunTotals;
use valor_protocol::records::{RunRecord, TurnText};

use super::{Live, ago, layout, scroll, time};
use crate::{ChatRow, LearningRow, MemoryRow};

/// Which turns the Turns page lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TurnFilter {
    #[default]
    All,
    /// The chats' turns only.
    Chats,
    /// Valor's own runs only.
    Internal,
    /// Turns with an error of any kind (a denied tool included).
    Errors,
}

impl TurnFilter {
    pub const ALL: [(TurnFilter, &'static str); 4] = [
        (TurnFilter::All, "all"),
        (TurnFilter::Chats, "chats"),
        (TurnFilter::Internal, "internal"),
        (TurnFilter::Errors, "errors"),
    ];

    pub fn parse(text: Option<&str>) -> TurnFilter {
        (TurnFilter::ALL.iter())
            .find(|(_, name)| Some(*name) == text)
            .map_or(TurnFilter::All, |(f, _)| *f)
    }

    pub fn name(self) -> &'static str {
        (TurnFilter::ALL.iter())
            .find(|(f, _)| *f == self)
            .map_or("all", |(_, name)| name)
    }

    pub fn keeps(self, run: &RunRecord) -> bool {
        let internal = valor_protocol::turn::is_background_chat(run.chat_id);
        match self {
            TurnFilter::All => true,
            TurnFilter::Chats => !internal,
            TurnFilter::Internal => internal,
            TurnFilter::Errors => run.error.is_some(),
        }
    }
}

/// Who a run belongs to: the chat by name (linked to its page), or Valor's own work by name.
pub fn owner(chat_id: i64, names: &BTreeMap<i64, String>) -> Markup {
    match valor_protocol::turn::background_name(chat_id) {
        Some(name) => html! { em.internal { "internal: " (name) } },
        None => super::chat_label(chat_id, names),
    }
}

/// A turn's address.
pub fn turn_href(run: &RunRecord) -> String {
    format!("/ui/turns/{}/{}", run.started_at_ms, run.chat_id)
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn outcome(run: &RunRecord) -> Markup {
    match &run.error {
        None => html! { span.ok { "ok" } },
        Some(e) if !run.failed() => html! { span.degraded title=(e.detail) { (e.kind.as_str()) } },
        Some(e) => html! { span.unhealthy title=(e.detail) { (e.kind.as_str()) } },
    }
}

/// The tools a run called, each with what it was asked, in short.
fn tools(run: &RunRecord) -> Markup {
    html! {
        @if run.tool_calls.is_empty() { "-" }
        @for call in &run.tool_calls {
            div.tool {
                span class=(if call.ok { "ok" } else { "unhealthy" }) { (call.name) (if call.ok { "" } else { " ✗" }) }
                @if !call.input.is_empty() { " " code { (call.input) } }
            }
        }
    }
}

/// The table of turns (the Turns page, a chat's page): newest first.
pub fn turns_table(runs: &[RunRecord], names: &BTreeMap<i64, String>, now_ms: u64) -> Markup {
    html! {
        @if runs.is_empty() { p { "No turn yet." } }
        @else {
            (scroll(html! {
                table.stack.turns {
                    tr {
                        th { "when" } th { "chat" } th { "model" } th { "class · effort" } th.n { "took" }
                        th.n { "tokens in" } th.n { "tokens out" } th.n { "cost" } th { "tools" } th { "outcome" }
                    }
                    @for run in runs {
                        tr {
                            td data-label="when" { a href=(turn_href(run)) { (time(run.started_at_ms)) } " " (ago(run.started_at_ms, now_ms)) }
                            td data-label="chat" { (owner(run.chat_id, names)) }
                            td data-label="model" { (if run.model.is_empty() { "-" } else { &run.model }) }
                            td data-label="class · effort" { (if run.class.is_empty() { "-" } else { &run.class }) " · " (if run.effort.is_empty() { "default" } else { &run.effort }) }
                            td.n data-label="took" { (seconds(run.duration_ms)) }
                            td.n data-label="tokens in" { (run.usage.input_tokens + run.usage.cache_read_input_tokens) }
                            td.n data-label="tokens out" { (run.usage.output_tokens) }
                            td.n data-label="cost" { (format!("${:.4}", run.cost_usd)) }
                            td.tools data-label="tools" { (tools(run)) }
                            td data-label="outcome" { (outcome(run)) }
                        }
                    }
                }
            }))
        }
    }
}

/// The live part of the Turns page.
pub fn turns_fragment(runs: &[RunRecord], names: &BTreeMap<i64, String>, now_ms: u64) -> Markup {
    turns_table(runs, names, now_ms)
}

pub fn turns(
    runs: &[RunRecord],
    names: &BTreeMap<i64, String>,
    filter: TurnFilter,
    limit: usize,
    now_ms: u64,
) -> Markup {
    let body = html! {
        p.range {
            "Show: "
            @for (f, name) in TurnFilter::ALL {
                a href={ "/ui/turns?show=" (name) } aria-current=[(f == filter).then_some("true")] { (name) }
            }
        }
        div #turns { (turns_fragment(runs, names, now_ms)) }
        p { small { "The latest " (limit) " turns; a turn's prompt, answer and tool inputs are kept for the latest 2000 turns, secrets redacted." } }
    };
    layout(
        "Turns",
        "/ui/turns",
        body,
        Live::Stream(format!("/ui/events?page=turns&show={}", filter.name())),
    )
}

/// One turn whole: its figures, prompt, answer and tool calls.
pub fn turn(run: &RunRecord, text: Option<&TurnText>, names: &BTreeMap<i64, String>) -> Markup {
    let inputs: BTreeMap<&str, &str> = (text.iter())
        .flat_map(|t| t.tool_inputs.iter())
        .map(|(id, input)| (id.as_str(), input.as_str()))
        .collect();
    let u = &run.usage;
    let body = html! {
        div.cards {
            div.card { div { "Chat" } div { (owner(run.chat_id, names)) } }
            div.card { div { "Started" } div { (time(run.started_at_ms)) } }
            div.card { div { "Took" } div.big { (seconds(run.duration_ms)) } div { (seconds(run.api_duration_ms)) " in the API · " (run.num_turns) " model turns" } }
            div.card { div { "Cost" } div.big { (format!("${:.4}", run.cost_usd)) } }
            div.card { div { "Outcome" } div.big { (outcome(run)) } }
        }
        table {
            tr { th { "model" } td { (if run.model.is_empty() { "-" } else { &run.model }) } }
            tr { th { "class · effort" } td { (if run.class.is_empty() { "-" } else { &run.class }) " · " (if run.effort.is_empty() { "default" } else { &run.effort }) } }
            tr { th { "tokens" } td { (u.input_tokens) " in, " (u.cache_read_input_tokens) " from cache, " (u.cache_creation_input_tokens) " to cache, " (u.output_tokens) " out" } }
            tr { th { "session" } td { code { (run.session_id) } (if run.warm { " (warm process)" } else { "" }) } }
            @if let Some(e) = &run.error { tr { th { "error" } td { (e.kind.as_str()) ": " (e.detail) } } }
        }
        @match text {
            None => p.notice { "This turn's prompt, answer and tool inputs are no longer kept (only the latest 2000 turns' are)." },
            Some(text) => {
                h2 { "Prompt, as sent" }
                pre.text { (text.prompt) }
                h2 { "Answer" }
                @if text.answer.is_empty() { p { "No answer." } } @else { pre.text { (text.answer) } }
            }
        }
        h2 { "Tool calls" }
        @if run.tool_calls.is_empty() { p { "None." } }
        @else {
            (scroll(html! {
                table.stack {
                    tr { th.n { "#" } th { "tool" } th { "outcome" } th { "input" } }
                    @for (i, call) in run.tool_calls.iter().enumerate() {
                        tr {
                            td.n data-label="#" { (i + 1) }
                            td data-label="tool" { (call.name) }
                            td data-label="outcome" { @if call.ok { span.ok { "ok" } } @else { span.unhealthy { "failed or denied" } } }
                            td data-label="input" { pre.text { (inputs.get(call.id.as_str()).copied().unwrap_or(&call.input)) } }
                        }
                    }
                }
            }))
        }
    };
    layout("Turn", "/ui/turns", body, Live::No)
}

/// What a chat's page shows.
#[derive(Debug, Clone, Default)]
pub struct ChatView {
    pub chat_id: i64,
    pub name: Option<String>,
    /// Its row of the Chats page, when it has one.
    pub row: Option<ChatRow>,
    /// Its figures over the last 30 days.
    pub totals: RunTotals,
    /// Its latest turns, newest first.
    pub turns: Vec<RunRecord>,
    pub learnings: Vec<LearningRow>,
    pub memories: Vec<MemoryRow>,
}

/// The live part of a chat's page: its figures and turns.
pub fn chat_fragment(
    view: &ChatView,
    charts: &[crate::charts::Chart<'_>],
    names: &BTreeMap<i64, String>,
    now_ms: u64,
) -> Markup {
    let t = &view.totals;
    html! {
        div.cards {
            div.card { div { "Turns (30 d)" } div.big { (t.turns) } div { (t.failed) " failed" } }
            div.card { div { "Spend (30 d)" } div.big { (format!("${:.4}", t.cost_usd)) } div { (t.input_tokens) " in · " (t.output_tokens) " out" } }
            @if let Some(row) = &view.row {
                div.card { div { "Messages" } div.big { (row.messages) } div { "last " (ago(row.last_at_ms, now_ms)) } }
                div.card { div { "Now" } div.big { (if row.pending == 0 { "idle" } else if row.running.is_some() { "running" } else { "waiting" }) } div { (row.pending) " pending" @if let Some(node) = &row.node { " · held by " (node) } } }
            }
        }
        div.cards { @for chart in charts { (crate::charts::render(chart)) } }
        h2 { "Latest turns" }
        (turns_table(&view.turns, names, now_ms))
    }
}

pub fn chat(
    view: &ChatView,
    charts: &[crate::charts::Chart<'_>],
    names: &BTreeMap<i64, String>,
    now_ms: u64,
) -> Markup {
    let title = match &view.name {
        Some(name) => format!("{name} ({})", view.chat_id),
        None => format!("Chat {}", view.chat_id),
    };
    let body = html! {
        div #chat { (chat_fragment(view, charts, names, now_ms)) }
        h2 { "Learnings" }
        @if view.learnings.is_empty() { p { "None." } }
        @else {
            (scroll(html! {
                table.stack {
                    tr { th.n { "#" } th { "category" } th.n { "confidence" } th { "learning" } th { "state" } }
                    @for l in &view.learnings {
                        tr {
                            td.n data-label="#" { (l.number) } td data-label="category" { (l.category) }
                            td.n data-label="confidence" { (format!("{:.2}", l.confidence)) } td data-label="learning" { (l.content) }
                            td data-label="state" { @match &l.retired { Some(why) => em { "retired: " (why) }, None => "kept" } }
                        }
                    }
                }
            }))
            p { a href="/ui/memory" { "Forget one on the Memory page" } }
        }
        h2 { "Memories" }
        @if view.memories.is_empty() { p { "None." } }
        @else {
            (scroll(html! {
                table.stack {
                    tr { th { "when" } th { "kind" } th { "memory" } }
                    @for m in &view.memories {
                        tr {
                            td data-label="when" { (time(m.at_ms)) } td data-label="kind" { (m.kind) }
                            td data-label="memory" { a href={ "/ui/memory/" (m.id) } { (m.title) } }
                        }
                    }
                }
            }))
        }
    };
    layout(
        &title,
        "/ui/chats",
        body,
        Live::Stream(format!("/ui/events?page=chat&chat={}", view.chat_id)),
    )
}
