//! What a running turn is doing, for the operator's dashboard: its session, model, the tool
//! calls so far and whether the answer is being written. Kept per chat by
//! [`Conversations`](crate::Conversations) while the turn runs.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use valor_protocol::Event;

/// Tool calls a progress keeps (the latest); `tool_calls` still counts all.
pub const KEPT_TOOL_CALLS: usize = 12;

/// A tool call of the running turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolStep {
    pub id: String,
    pub name: String,
    /// `None` while it runs; then whether it succeeded.
    pub ok: Option<bool>,
}

/// A running turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnProgress {
    /// Unix milliseconds it started (its slot taken).
    pub started_ms: u64,
    /// The backend session, once it is up.
    pub session_id: Option<String>,
    pub model: Option<String>,
    /// The latest [`KEPT_TOOL_CALLS`] calls, oldest first.
    pub tools: Vec<ToolStep>,
    pub tool_calls: usize,
    /// The model is writing its answer (text has arrived since the last tool call).
    pub writing: bool,
    /// The API failed and the backend is retrying: which attempt.
    pub retrying: Option<u32>,
}

impl TurnProgress {
    /// Takes in one of the turn's events.
    pub fn note(&mut self, event: &Event) {
        match event {
            Event::Started {
                session_id, model, ..
            } => {
                self.session_id = Some(session_id.clone());
                self.model = Some(model.clone());
            }
            Event::ToolCall { id, name, .. } => {
                self.tool_calls += 1;
                self.writing = false;
                self.retrying = None;
                if self.tools.len() == KEPT_TOOL_CALLS {
                    self.tools.remove(0);
                }
                self.tools.push(ToolStep {
                    id: id.clone(),
                    name: name.clone(),
                    ok: None,
                });
            }
            Event::ToolResult { id, ok, .. } => {
                if let Some(step) = self.tools.iter_mut().rev().find(|s| &s.id == id) {
                    step.ok = Some(*ok);
                }
            }
            Event::TextDelta(_) => {
                self.writing = true;
                self.retrying = None;
            }
            Event::Retrying { attempt, .. } => self.retrying = Some(*attempt),
            _ => {}
        }
    }
}

/// The running turns' progress, by chat, and a version that moves whenever a turn starts,
/// changes what it shows or ends (the dashboard renders again on that, not on a timer).
pub struct ProgressBoard {
    turns: Mutex<HashMap<i64, TurnProgress>>,
    version: tokio::sync::watch::Sender<u64>,
}

impl Default for ProgressBoard {
    fn default() -> Self {
        ProgressBoard {
            turns: Mutex::default(),
            version: tokio::sync::watch::channel(0).0,
        }
    }
}

impl ProgressBoard {
    fn turns(&self) -> std::sync::MutexGuard<'_, HashMap<i64, TurnProgress>> {
        self.turns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn moved(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Moves whenever what the board shows changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub fn begin(&self, chat_id: i64, started_ms: u64) {
        self.turns().insert(
            chat_id,
            TurnProgress {
                started_ms,
                ..TurnProgress::default()
            },
        );
        self.moved();
    }

    pub fn note(&self, chat_id: i64, event: &Event) {
        let changed = match self.turns().get_mut(&chat_id) {
            Some(progress) => {
                let before = (progress.tool_calls, progress.writing, progress.retrying);
                let model_known = progress.model.is_some();
                let result_known = progress.tools.iter().filter(|t| t.ok.is_some()).count();
                progress.note(event);
                before != (progress.tool_calls, progress.writing, progress.retrying)
                    || model_known != progress.model.is_some()
                    || result_known != progress.tools.iter().filter(|t| t.ok.is_some()).count()
            }
            None => false,
        };
        // A text delta changes nothing shown once the answer is being written.
        if changed {
            self.moved();
        }
    }

    pub fn end(&self, chat_id: i64) {
        self.turns().remove(&chat_id);
        self.moved();
    }

    pub fn get(&self, chat_id: i64) -> Option<TurnProgress> {
        self.turns().get(&chat_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn call(id: &str) -> Event {
        Event::ToolCall {
            id: id.to_owned(),
            name: format!("tool_{id}"),
            input: serde_json::json!({}),
        }
    }

    #[test]
    fn a_progress_follows_the_session_the_tools_and_the_writing() {
        let board = ProgressBoard::default();
        board.begin(7, 1_000);
        board.note(
            7,
            &Event::Started {
                session_id: "s-1".to_owned(),
                model: "haiku".to_owned(),
                failed_mcp_servers: Vec::new(),
            },
        );
        board.note(7, &call("a"));
        let running = board.get(7).unwrap();
        assert_eq!(running.session_id.as_deref(), Some("s-1"));
        assert_eq!(running.tools[0].ok, None, "the call is still running");
        board.note(
            7,
            &Event::ToolResult {
                id: "a".to_owned(),
                ok: false,
                content: String::new(),
            },
        );
        board.note(7, &Event::TextDelta("Hi".to_owned()));
        let p = board.get(7).unwrap();
        assert_eq!(
            (p.tools[0].ok, p.writing, p.tool_calls),
            (Some(false), true, 1)
        );
        assert!(board.get(8).is_none(), "another chat has no progress");
        let seen = *board.subscribe().borrow();
        board.note(7, &Event::TextDelta("more".to_owned()));
        assert_eq!(*board.subscribe().borrow(), seen, "nothing shown changed");
        board.end(7);
        assert_ne!(
            *board.subscribe().borrow(),
            seen,
            "the end moves the version"
        );
        assert!(board.get(7).is_none());
    }

    #[test]
    fn only_the_latest_tool_calls_are_kept_and_all_are_counted() {
        let mut p = TurnProgress::default();
        for i in 0..(KEPT_TOOL_CALLS + 5) {
            p.note(&call(&i.to_string()));
        }
        assert_eq!(p.tools.len(), KEPT_TOOL_CALLS);
        assert_eq!(p.tool_calls, KEPT_TOOL_CALLS + 5);
        assert_eq!(p.tools[0].id, "5");
    }
}
