//! Records kept in the store. Stored as JSON so new optional fields do not break old data.

use serde::{Deserialize, Serialize};
use valor_core::context::Role;
use valor_core::{Severity, ToolCallRecord, TurnErrorKind, Usage};

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
    pub session_id: String,
    pub model: String,
    /// The routing class (`short_chat`, `development`, ...).
    pub class: String,
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
