//! The Approvals page: the audit log of every effect a person was asked to allow, newest
//! first: when, which chat, what (whole, on opening it), the decision, who made it and how long
//! it took.

use std::collections::BTreeMap;

use maud::{Markup, html};
use valor_protocol::approval::ApprovalRecord;

use super::{Live, layout, scroll, time};

/// Chat ids become their names where known.
fn chat_label(chat_id: i64, names: &BTreeMap<i64, String>) -> String {
    match names.get(&chat_id) {
        Some(name) => format!("{name} ({chat_id})"),
        None => format!("chat {chat_id}"),
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    let mut cut: String = line.chars().take(100).collect();
    if cut.len() < line.len() || text.lines().nth(1).is_some() {
        cut.push('…');
    }
    cut
}

pub fn approvals_fragment(records: &[ApprovalRecord], names: &BTreeMap<i64, String>) -> Markup {
    html! {
        @if records.is_empty() { p { "No approval has been asked yet." } }
        @else {
            (scroll(html! {
                table.stack {
                    tr { th { "asked" } th { "chat" } th { "tool" } th { "what" } th { "decision" } th { "by" } th.n { "after" } }
                    @for r in records {
                        tr {
                            td data-label="asked" { (time(r.asked_ms)) }
                            td data-label="chat" { a href={ "/ui/chats/" (r.chat_id) } { (chat_label(r.chat_id, names)) } }
                            td data-label="tool" { (r.tool) " · " (r.kind.as_str()) }
                            td data-label="what" {
                                details {
                                    summary { code { (first_line(&r.what)) } }
                                    p { (r.sentence) }
                                    pre.text { (r.what) }
                                }
                            }
                            td data-label="decision" {
                                @match r.decision {
                                    Some(d) if d.allows() => span.ok { (d.words()) },
                                    Some(d) => span.bad { (d.words()) },
                                    None => em { "waiting" },
                                }
                            }
                            td data-label="by" { @match r.by { Some(user) => (user), None => "—" } }
                            td.n data-label="after" {
                                @match r.decided_ms {
                                    Some(at) => (format!("{:.1} s", at.saturating_sub(r.asked_ms) as f64 / 1000.0)),
                                    None => "—",
                                }
                            }
                        }
                    }
                }
            }))
        }
    }
}

pub fn approvals(records: &[ApprovalRecord], names: &BTreeMap<i64, String>) -> Markup {
    let body = html! {
        p { "Every tool use a person was asked to allow (commands, writes outside a workspace's source tree, hosts not on the allow-list, paid calls), and what was decided. Kept 90 days." }
        div #approvals { (approvals_fragment(records, names)) }
    };
    layout(
        "Approvals",
        "/ui/approvals",
        body,
        Live::Stream("/ui/events?page=approvals".to_owned()),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use valor_protocol::approval::{ApprovalKind, Decision};

    #[test]
    fn the_log_shows_each_decision_with_the_whole_effect_escaped() {
        let record = ApprovalRecord {
            id: 1,
            chat_id: 5,
            kind: ApprovalKind::Command,
            tool: "Bash".to_owned(),
            what: "ls\n<script>alert(1)</script>".to_owned(),
            sentence: "Runs this shell command.".to_owned(),
            asked_ms: 1_000,
            decision: Some(Decision::Deny),
            by: Some(42),
            decided_ms: Some(3_500),
            node: None,
        };
        let names = BTreeMap::from([(5, "Team".to_owned())]);
        let html = approvals(&[record], &names).into_string();
        assert!(html.contains("Team (5)"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains(">denied<") && html.contains(">42<") && html.contains("2.5 s"),
            "{html}"
        );
        let empty = approvals(&[], &names).into_string();
        assert!(empty.contains("No approval has been asked yet."));
    }
}
