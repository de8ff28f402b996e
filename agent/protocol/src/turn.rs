//! One turn as a backend sees it: the request, what a finished one reports, the routing
//! decision it carries.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The chat model-written session summaries run in: no user's chat (Telegram's ids are far
/// from `i64::MIN`), so nothing of it is shown anywhere and no chat's session is disturbed.
pub const SUMMARY_CHAT_ID: i64 = i64::MIN + 7;
/// The chat the daydream's analysis runs under.
pub const DAYDREAM_CHAT_ID: i64 = i64::MIN + 6;

/// Whether runs of this chat are Valor's own background work (summaries, the daydream): they
/// cost what they cost, but they are no chat's usage.
pub fn is_background_chat(chat_id: i64) -> bool {
    background_name(chat_id).is_some()
}

/// What Valor's own background work under this chat id is called on every page.
pub fn background_name(chat_id: i64) -> Option<&'static str> {
    match chat_id {
        SUMMARY_CHAT_ID => Some("session summary"),
        DAYDREAM_CHAT_ID => Some("daydream"),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestClass {
    ShortChat,
    Development,
    Complex,
    Diagnosis,
}

impl RequestClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestClass::ShortChat => "short_chat",
            RequestClass::Development => "development",
            RequestClass::Complex => "complex",
            RequestClass::Diagnosis => "diagnosis",
        }
    }
}

/// The choice for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub class: RequestClass,
    /// `None`: the backend's default.
    pub model: Option<String>,
    pub effort: Option<String>,
}

/// One turn to run.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub chat_id: i64,
    /// Who asked (their spend counts against `[budget]`'s per-user caps); `None`: Valor's own
    /// background work or the console.
    pub user_id: Option<i64>,
    /// The user's message, with any context block already added.
    pub prompt: String,
    /// Appended to the backend's system prompt (the persona).
    pub system_append: Option<String>,
    /// Tools allowed for this turn on top of the configured ones.
    pub extra_allowed_tools: Vec<String>,
    /// MCP servers for this turn (`{"mcpServers": {...}}`), if any.
    pub mcp_config: Option<Value>,
    /// The MCP tool Claude Code asks before a tool use its rules do not allow outright
    /// (`--permission-prompt-tool`); `None`: such uses are refused.
    pub permission_tool: Option<String>,
    /// Tools left out of the allowed ones so that every use reaches the permission tool
    /// (which runs, asks a person about, or refuses it).
    pub gated_tools: Vec<String>,
    /// Model and effort; `None` leaves the backend's default.
    pub model: Option<String>,
    pub effort: Option<String>,
    /// The routing class, recorded with the run.
    pub class: Option<RequestClass>,
    /// Start a new session instead of resuming the chat's.
    pub fresh_session: bool,
    /// Only tools that read: the configured ones minus those that write files or run
    /// commands (the daydream's analysis of workspaces it did not write).
    pub read_only: bool,
    /// Cancelling stops the turn (`/stop`).
    pub cancel: CancellationToken,
}

/// Tools that change files or run commands: left out of a read-only turn.
pub const WRITING_TOOLS: [&str; 6] = ["Edit", "Write", "MultiEdit", "NotebookEdit", "Bash", "Task"];

impl TurnRequest {
    /// Applies a routing decision.
    pub fn routed(mut self, route: Route) -> Self {
        self.model = route.model;
        self.effort = route.effort;
        self.class = Some(route.class);
        self
    }

    pub fn new(chat_id: i64, prompt: impl Into<String>) -> Self {
        TurnRequest {
            chat_id,
            user_id: None,
            prompt: prompt.into(),
            system_append: None,
            extra_allowed_tools: Vec::new(),
            mcp_config: None,
            permission_tool: None,
            gated_tools: Vec::new(),
            model: None,
            effort: None,
            class: None,
            fresh_session: false,
            read_only: false,
            cancel: CancellationToken::new(),
        }
    }
}

/// Token counts of a turn.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
}

/// One tool call and whether it worked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    pub id: String,
    pub name: String,
    pub ok: bool,
    /// What it was asked, in short (secrets redacted): the command, the path, the query.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub input: String,
}

/// What a finished turn reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnSummary {
    pub session_id: String,
    /// The final answer text.
    pub text: String,
    pub model: String,
    pub cost_usd: f64,
    pub usage: Usage,
    pub duration_ms: u64,
    pub api_duration_ms: u64,
    pub num_turns: u32,
    pub tool_calls: Vec<ToolCallRecord>,
    /// Tools the model wanted but was not allowed to use.
    pub permission_denials: Vec<String>,
    /// MCP servers that failed to start: the turn ran without their tools.
    pub failed_mcp_servers: Vec<String>,
    /// Whether the turn ran in a warm process.
    pub warm: bool,
}

impl TurnSummary {
    /// A finished one-call turn that answered `text` (scripted backends, tests).
    pub fn of_text(
        session_id: impl Into<String>,
        model: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        TurnSummary {
            session_id: session_id.into(),
            text: text.into(),
            model: model.into(),
            cost_usd: 0.0,
            usage: Usage::default(),
            duration_ms: 0,
            api_duration_ms: 0,
            num_turns: 1,
            tool_calls: Vec::new(),
            permission_denials: Vec::new(),
            failed_mcp_servers: Vec::new(),
            warm: false,
        }
    }
}
