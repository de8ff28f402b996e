//! Records kept in the store. Stored as JSON so new optional fields do not break old data.

use crate::message::Role;
use crate::{Severity, ToolCallRecord, TurnErrorKind, Usage};
use serde::{Deserialize, Serialize};

/// One message of a chat, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub chat_id: i64,
    /// Increases with every message of the store, so it orders a chat's messages.
    pub seq: u64,
    pub role: Role,
    pub text: String,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Who wrote it (user messages).
    pub user_id: Option<i64>,
    pub username: Option<String>,
    /// Where it came from (e.g. `tg:<update_id>`): a message is stored once per source.
    #[serde(default)]
    pub source: Option<String>,
}

impl StoredMessage {
    /// A message said now in `chat_id` by `author` (none: Valor), from update `source`; the
    /// store gives it its seq.
    pub fn said(
        chat_id: i64,
        role: crate::Role,
        text: &str,
        author: Option<&crate::Author>,
        source: Option<&str>,
    ) -> StoredMessage {
        StoredMessage {
            chat_id,
            seq: 0,
            role,
            text: text.to_owned(),
            at_ms: crate::time::now_ms(),
            user_id: author.map(|a| a.user_id),
            username: author.and_then(|a| a.username.clone()),
            source: source.map(str::to_owned),
        }
    }
}

/// What the store knows of a chat as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRecord {
    pub chat_id: i64,
    /// Unix milliseconds of its first and latest stored message.
    pub first_at_ms: u64,
    pub last_at_ms: u64,
    pub messages: u64,
    /// Its name on Telegram (a group's title, a person's name), as last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// A Telegram message accepted but not yet answered; replayed after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    pub update_id: i64,
    pub chat_id: i64,
    pub user_id: i64,
    pub username: Option<String>,
    pub text: String,
    /// The chat is private (one user) rather than a group.
    pub private: bool,
    /// The chat's name on Telegram (a group's title, a person's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_title: Option<String>,
    /// A photo or document that came with it, downloaded by the chat's worker (not by the
    /// loop that takes updates in, which a 20 MB download would hold up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<InboxFile>,
}

/// A file a message carries, as Telegram names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxFile {
    /// Telegram's file id (for getFile).
    pub id: String,
    pub size: u32,
    /// The name it is saved under (before sanitising).
    pub name: String,
    /// How the turn names it: "a photo", "the file report.pdf".
    pub what: String,
}

/// A chat's Claude Code session, resumed on its next turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session_id: String,
    /// Unix milliseconds of the last turn in this session.
    pub updated_at_ms: u64,
    pub turns: u64,
}

/// Why a run failed, for analytics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    pub kind: TurnErrorKind,
    pub severity: Severity,
    pub detail: String,
}

/// One run of the backend (a turn), for `valor stats` and the daydream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub chat_id: i64,
    /// The Telegram user whose message started it (`None`: background work, a console run).
    #[serde(default)]
    pub user_id: Option<i64>,
    pub session_id: String,
    pub model: String,
    /// The routing class (`short_chat`, `development`, ...).
    pub class: String,
    /// The reasoning effort the route asked for (empty: the backend's default; runs recorded
    /// before it was kept).
    #[serde(default)]
    pub effort: String,
    /// Unix milliseconds when the run started.
    pub started_at_ms: u64,
    pub duration_ms: u64,
    pub api_duration_ms: u64,
    pub cost_usd: f64,
    pub usage: Usage,
    pub num_turns: u32,
    pub tool_calls: Vec<ToolCallRecord>,
    pub warm: bool,
    pub error: Option<RunError>,
}

impl RunRecord {
    /// Whether the turn failed: an error other than a denied tool (a turn whose tool was denied
    /// still answered). The one definition `valor stats`, `/status` and the daydream share.
    pub fn failed(&self) -> bool {
        self.error
            .as_ref()
            .is_some_and(|e| e.kind != TurnErrorKind::ToolDenied)
    }

    /// The error's key as every report names it (`overloaded`, `tool_denied`, ...).
    pub fn error_key(&self) -> Option<&'static str> {
        self.error.as_ref().map(|e| e.kind.as_str())
    }
}

/// What a turn said, kept apart from its figures ([`RunRecord`]) so reading the figures stays
/// cheap: the prompt as sent, the answer, each tool call's input; secrets redacted and each
/// text cut to a bound before it is stored, and only the latest turns kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnText {
    pub chat_id: i64,
    /// The run's start (with `chat_id`, the turn's key).
    pub started_at_ms: u64,
    pub prompt: String,
    pub answer: String,
    /// (tool call id, input as JSON).
    pub tool_inputs: Vec<(String, String)>,
}

/// A logged-in dashboard browser, kept so a restart does not log the operator out. The key
/// is the SHA-256 of the cookie's value: the store never holds a usable cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardSession {
    pub key: String,
    pub csrf: String,
    /// Unix milliseconds.
    pub started_ms: u64,
    pub last_seen_ms: u64,
    /// The browser's `User-Agent`, cut short, so the operator can tell sessions apart.
    pub agent: String,
}

/// A process group Valor started, kept until the group has ended, so a later Valor (after a
/// crash) can find and end what outlived its turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// Process group id (= the leader's pid).
    pub pgid: u32,
    /// The leader's start time as the kernel counts it (clock ticks since boot), to tell a
    /// reused pid from ours.
    pub start_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id` when it started: records from another boot are stale.
    pub boot_id: String,
    /// The Valor process that started it.
    pub owner_pid: u32,
    pub label: String,
    pub chat_id: Option<i64>,
    pub started_at_ms: u64,
}

/// What a memory is. Every kind is searchable; messages come from the conversation, the others
/// are saved on purpose (a link the user shared, a learning, a daydream insight) or kept by
/// Valor itself (an observation of what a turn did, the summary of a session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryKind {
    Message,
    Link,
    Learning,
    Insight,
    Observation,
    Summary,
}

impl MemoryKind {
    pub const ALL: [MemoryKind; 6] = [
        MemoryKind::Message,
        MemoryKind::Link,
        MemoryKind::Learning,
        MemoryKind::Insight,
        MemoryKind::Observation,
        MemoryKind::Summary,
    ];
    /// Every kind but messages: the kinds kept as memory records.
    pub const SAVED: [MemoryKind; 5] = [
        MemoryKind::Link,
        MemoryKind::Learning,
        MemoryKind::Insight,
        MemoryKind::Observation,
        MemoryKind::Summary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MemoryKind::Message => "message",
            MemoryKind::Link => "link",
            MemoryKind::Learning => "learning",
            MemoryKind::Insight => "insight",
            MemoryKind::Observation => "observation",
            MemoryKind::Summary => "summary",
        }
    }

    pub fn parse(text: &str) -> Option<MemoryKind> {
        MemoryKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The kind as one byte (a store's compact key).
    pub fn byte(self) -> u8 {
        match self {
            MemoryKind::Message => 0,
            MemoryKind::Link => 1,
            MemoryKind::Learning => 2,
            MemoryKind::Insight => 3,
            MemoryKind::Observation => 4,
            MemoryKind::Summary => 5,
        }
    }

    pub fn from_byte(byte: u8) -> Option<MemoryKind> {
        MemoryKind::ALL.into_iter().find(|k| k.byte() == byte)
    }
}

impl std::fmt::Display for MemoryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A saved link, learning or insight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryRecord {
    /// When saving a memory, 0 asks the store to assign one.
    pub id: u64,
    pub kind: MemoryKind,
    /// The chat it belongs to; `None` for what is not about one chat (daydream insights).
    pub chat_id: Option<i64>,
    /// Unix milliseconds.
    pub at_ms: u64,
    pub title: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Anything searchable, as the search indexes and the memory API see it: a saved memory, or
/// a message in the same shape (kind `message`, its seq as id, a title cut from its text).
pub type Document = MemoryRecord;

impl From<StoredMessage> for Document {
    fn from(m: StoredMessage) -> Document {
        let who = match m.role {
            Role::User => m.username.clone().unwrap_or_else(|| "user".to_owned()),
            Role::Assistant => "Valor".to_owned(),
            Role::System => "system".to_owned(),
        };
        Document {
            id: m.seq,
            kind: MemoryKind::Message,
            chat_id: Some(m.chat_id),
            at_ms: m.at_ms,
            title: format!("{who}: {}", headline(&m.text, 60)),
            text: m.text,
            url: None,
        }
    }
}

/// The first line of `text`, cut at a word boundary to at most `max` characters.
pub fn headline(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.chars().count() <= max {
        return line.to_owned();
    }
    let cut: String = line.chars().take(max).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
    format!("{}…", cut.trim_end())
}

/// An embedding as stored: which model made it and its length travel with every vector, so
/// vectors of another model are never compared with this one's.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVector {
    pub model_id: String,
    pub vector: Vec<f32>,
}

impl StoredVector {
    /// The vector as bytes: the model id's length and bytes, the dimension, the values.
    pub fn encode(&self) -> Vec<u8> {
        let model = self.model_id.as_bytes();
        let model_len = model.len().min(255);
        let mut out = Vec::with_capacity(1 + model_len + 4 + self.vector.len() * 4);
        out.push(model_len as u8);
        out.extend_from_slice(&model[..model_len]);
        out.extend_from_slice(&(self.vector.len() as u32).to_le_bytes());
        for v in &self.vector {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<StoredVector> {
        let (&model_len, rest) = bytes.split_first()?;
        let model_len = usize::from(model_len);
        let model_id = std::str::from_utf8(rest.get(..model_len)?).ok()?.to_owned();
        let rest = rest.get(model_len..)?;
        let dim = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let data = rest.get(4..)?;
        if data.len() != dim * 4 {
            return None;
        }
        let vector = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Some(StoredVector { model_id, vector })
    }

    pub fn dim(&self) -> usize {
        self.vector.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(error: Option<TurnErrorKind>) -> RunRecord {
        RunRecord {
            chat_id: 1,
            user_id: None,
            session_id: String::new(),
            model: String::new(),
            class: String::new(),
            effort: String::new(),
            started_at_ms: 0,
            duration_ms: 0,
            api_duration_ms: 0,
            cost_usd: 0.0,
            usage: Usage::default(),
            num_turns: 1,
            tool_calls: Vec::new(),
            warm: false,
            error: error.map(|kind| RunError {
                kind,
                severity: kind.severity(),
                detail: String::new(),
            }),
        }
    }

    #[test]
    fn a_denied_tool_is_recorded_but_not_a_failed_turn() {
        assert!(!run(None).failed());
        assert_eq!(run(None).error_key(), None);
        let denied = run(Some(TurnErrorKind::ToolDenied));
        assert!(!denied.failed(), "the turn still answered");
        assert_eq!(denied.error_key(), Some("tool_denied"));
        let overloaded = run(Some(TurnErrorKind::Overloaded));
        assert!(overloaded.failed());
        assert_eq!(overloaded.error_key(), Some("overloaded"));
    }
}
