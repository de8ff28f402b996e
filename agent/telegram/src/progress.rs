//! The status line of a running turn: what Claude is doing now (a tool call, a retry, a wait),
//! one message edited in place through the chat's pacer, with a **Stop** button. It is deleted
//! when the answer is there, so no extra message stays behind.

use serde_json::Value;
use teloxide::RequestError;
use teloxide::payloads::{EditMessageTextSetters as _, SendMessageSetters as _};
use teloxide::requests::Requester;
use teloxide::types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup, MessageId};
use tokio::time::{Duration, Instant};

use crate::pacer::{ChatPacer, Permit};

/// The Stop button's callback data: it stops the running turn of the chat it is pressed in.
pub const STOP_DATA: &str = "stop";

/// A status line changes at most this often (it shares the chat's pacer with the answer).
pub const STATUS_EVERY: Duration = Duration::from_secs(2);

/// The first line of a turn waits this long: a tool use that needs an approval asks within
/// it, and the question (the message that matters) then goes first instead of a second
/// behind the line in the chat's pacer.
pub const FIRST_LINE_AFTER: Duration = Duration::from_millis(300);

/// A wait shows in the status line once it has lasted this long.
pub const WAIT_WORTH_SHOWING: Duration = Duration::from_millis(1500);

/// What a tool call is doing, in a few words ("reading src/main.rs", "searching the web").
pub fn describe(name: &str, input: &Value) -> String {
    let arg = |key: &str| input.get(key).and_then(Value::as_str).map(|s| short(s, 60));
    let file = || {
        arg("file_path")
            .or_else(|| arg("notebook_path"))
            .or_else(|| arg("path"))
    };
    let tool = name.rsplit("__").next().unwrap_or(name);
    match name {
        "Read" => file().map_or_else(|| "reading a file".to_owned(), |f| format!("reading {f}")),
        "Edit" | "MultiEdit" | "Write" | "NotebookEdit" => {
            file().map_or_else(|| "editing a file".to_owned(), |f| format!("editing {f}"))
        }
        "Bash" => arg("description").map_or_else(
            || "running a command".to_owned(),
            |d| format!("running: {d}"),
        ),
        "Grep" | "Glob" => "searching the code".to_owned(),
        "WebSearch" => "searching the web".to_owned(),
        "WebFetch" => "reading a web page".to_owned(),
        "Task" | "Agent" => "working on a sub-task".to_owned(),
        _ if tool == "search_current_info" => "searching the web".to_owned(),
        _ if tool.contains("screenshot") => "taking a screenshot".to_owned(),
        _ if tool == "create_image" => "drawing a picture".to_owned(),
        _ if tool == "save_link" => "saving a link".to_owned(),
        _ if tool.contains("conversation") => "looking through our conversation".to_owned(),
        _ => format!("using {}", short(tool, 40)),
    }
}

/// One line of at most `max` characters.
fn short(text: &str, max: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The status message of one turn.
#[derive(Debug, Default)]
pub struct StatusLine {
    message: Option<MessageId>,
    shown: String,
    wanted: Option<String>,
    /// When it may change next.
    due: Option<Instant>,
}

impl StatusLine {
    /// What the line should say; shown after [`FIRST_LINE_AFTER`] the first time, then every
    /// [`STATUS_EVERY`].
    pub fn set(&mut self, text: String) {
        self.wanted = Some(format!("Working: {}", valor_redact::redact(&text)));
        if self.due.is_none() {
            let now = Instant::now();
            self.due = Some(if self.message.is_none() {
                now + FIRST_LINE_AFTER
            } else {
                now + STATUS_EVERY
            });
        }
    }

    /// A wait worth showing only if it lasts: shown after [`WAIT_WORTH_SHOWING`] unless the
    /// turn starts first (most slot waits are short, and a line sent then deleted would cost
    /// two of the chat's messages for nothing).
    pub fn set_waiting(&mut self, text: String) {
        self.wanted = Some(format!("Working: {text}"));
        if self.due.is_none() {
            let wait = if self.message.is_none() {
                WAIT_WORTH_SHOWING
            } else {
                STATUS_EVERY
            };
            self.due = Some(Instant::now() + wait);
        }
    }

    /// The turn is running: a wait not shown yet is not shown at all.
    pub fn started(&mut self) {
        if self.message.is_none() {
            self.wanted = None;
            self.due = None;
        }
    }

    /// When [`StatusLine::show`] has something to do.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Sends or edits the line (a progress update: skipped during a flood wait).
    pub async fn show<R: Requester<Err = RequestError>>(
        &mut self,
        bot: &R,
        chat: ChatId,
        pacer: &ChatPacer,
    ) {
        self.due = None;
        let Some(text) = self.wanted.take() else {
            return;
        };
        if text == self.shown || pacer.acquire(false).await == Permit::Skip {
            return;
        }
        let stop = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("Stop", STOP_DATA)]]);
        let result = match self.message {
            Some(id) => bot
                .edit_message_text(chat, id, text.clone())
                .reply_markup(stop)
                .await
                .map(|m| m.id),
            None => bot
                .send_message(chat, text.clone())
                .reply_markup(stop)
                .await
                .map(|m| m.id),
        };
        match result {
            Ok(id) => {
                self.message = Some(id);
                self.shown = text;
            }
            Err(RequestError::RetryAfter(wait)) => pacer.flood_wait(wait.duration()),
            Err(e) => tracing::warn!(chat_id = chat.0, error = %e, "cannot show the status line"),
        }
    }

    /// Deletes the line once the answer is there.
    pub async fn clear<R: Requester<Err = RequestError>>(
        &mut self,
        bot: &R,
        chat: ChatId,
        pacer: &ChatPacer,
    ) {
        self.due = None;
        self.wanted = None;
        let Some(id) = self.message.take() else {
            return;
        };
        let deleted = pacer
            .send_essential(|| bot.delete_message(chat, id).into_future())
            .await;
        if let Err(e) = deleted {
            tracing::warn!(chat_id = chat.0, error = %e, "cannot remove the status line");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_calls_read_as_what_they_do() {
        assert_eq!(
            describe("Read", &json!({"file_path": "src/main.rs"})),
            "reading src/main.rs"
        );
        assert_eq!(
            describe(
                "Bash",
                &json!({"command": "cargo test", "description": "run the tests"})
            ),
            "running: run the tests"
        );
        assert_eq!(
            describe("mcp__social__search_current_info", &json!({"query": "x"})),
            "searching the web"
        );
        assert_eq!(
            describe("mcp__dev__execute_bug_report_with_screenshot", &json!({})),
            "taking a screenshot"
        );
        assert_eq!(
            describe("mcp__notion__query_notion_projects", &json!({})),
            "using query_notion_projects"
        );
        let long = describe(
            "Read",
            &json!({"file_path": format!("{}\nx", "a".repeat(200))}),
        );
        assert!(long.chars().count() < 80 && !long.contains('\n'), "{long}");
    }
}
