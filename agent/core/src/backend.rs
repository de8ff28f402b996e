//! The `Backend` seam: runs one model turn and yields its events as they arrive.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::TurnError;

/// One turn to run.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub chat_id: i64,
    /// The user's message, with any context block already added.
    pub prompt: String,
    /// Appended to the backend's system prompt (the persona).
    pub system_append: Option<String>,
    /// Tools allowed for this turn on top of the configured ones.
    pub extra_allowed_tools: Vec<String>,
    /// MCP servers for this turn (`{"mcpServers": {...}}`), if any.
    pub mcp_config: Option<Value>,
    /// Model and effort; `None` leaves the backend's default.
    pub model: Option<String>,
    pub effort: Option<String>,
    /// The routing class, recorded with the run.
    pub class: Option<crate::routing::RequestClass>,
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
    pub fn routed(mut self, route: crate::routing::Route) -> Self {
        self.model = route.model;
        self.effort = route.effort;
        self.class = Some(route.class);
        self
    }

    pub fn new(chat_id: i64, prompt: impl Into<String>) -> Self {
        TurnRequest {
            chat_id,
            prompt: prompt.into(),
            system_append: None,
            extra_allowed_tools: Vec::new(),
            mcp_config: None,
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

/// Events of a turn, in order. The last is `Finished` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    /// Waiting for a free slot; `position` 1 is next.
    Queued {
        position: usize,
    },
    /// The backend session is up.
    Started {
        session_id: String,
        model: String,
        failed_mcp_servers: Vec<String>,
    },
    /// A new model message begins: text shown so far belongs to an earlier message.
    MessageStart,
    /// Text as the model writes it.
    TextDelta(String),
    /// A whole text block (the deltas of one block, joined).
    Text(String),
    ToolCall {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        id: String,
        ok: bool,
        content: String,
    },
    /// The API failed and the backend is retrying.
    Retrying {
        attempt: u32,
        max_retries: u32,
        delay_ms: u64,
        status: Option<u16>,
    },
    Finished(TurnSummary),
    Failed(TurnError),
}

impl TurnEvent {
    pub fn is_terminal(&self) -> bool {
        matches!(self, TurnEvent::Finished(_) | TurnEvent::Failed(_))
    }
}

/// The events of one running turn.
#[derive(Debug)]
pub struct TurnStream {
    rx: mpsc::Receiver<TurnEvent>,
}

impl TurnStream {
    /// A stream and the sender a backend feeds.
    pub fn channel(capacity: usize) -> (mpsc::Sender<TurnEvent>, TurnStream) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, TurnStream { rx })
    }

    /// The next event; `None` after the terminal one.
    pub async fn next(&mut self) -> Option<TurnEvent> {
        self.rx.recv().await
    }

    /// Drains the stream: the summary, or the error. Text deltas are dropped.
    pub async fn finish(mut self) -> Result<TurnSummary, TurnError> {
        while let Some(event) = self.next().await {
            match event {
                TurnEvent::Finished(summary) => return Ok(summary),
                TurnEvent::Failed(error) => return Err(error),
                _ => {}
            }
        }
        Err(TurnError::new(
            crate::error::TurnErrorKind::Crashed,
            "the backend ended the turn without a result",
        ))
    }
}

/// Runs model turns. `start` returns at once; events arrive on the stream while the turn runs.
pub trait Backend: Send + Sync {
    fn start(&self, request: TurnRequest) -> TurnStream;
}
