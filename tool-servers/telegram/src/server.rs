//! The MCP server: the tools, their parameters and the text the model reads back.

use std::sync::Arc;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, schemars, tool, tool_router};
use serde::Deserialize;
use valor_tools::{ScopeSource, ToolError};

/// Results `search_conversation_history` gives by default, and at most.
const DEFAULT_RESULTS: usize = 10;
const MAX_RESULTS: usize = 50;
/// The furthest `get_conversation_context` looks back (a week), and the most lines it gives.
const MAX_HOURS: u32 = 24 * 7;
const MAX_LINES: usize = 200;
/// A line longer than this is cut in the context listing (the model can search for the rest).
const LINE_CHARS: usize = 600;

/// One message as the tools show it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryLine {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// "user", "assistant" or a username.
    pub who: String,
    pub text: String,
    /// Relevance for search results (higher is better); `None` for a time listing.
    pub score: Option<f32>,
}

/// Where the history comes from (the agent's memory). Errors are messages for the user.
#[async_trait::async_trait]
pub trait History: Send + Sync {
    /// The chat's messages matching `query`, best first.
    async fn search(
        &self,
        chat_id: i64,
        query: &str,
        limit: usize,
    ) -> Result<Vec<HistoryLine>, String>;
    /// The chat's messages at or after `since_ms`, oldest first, at most `limit` (the newest).
    async fn since(
        &self,
        chat_id: i64,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<HistoryLine>, String>;
}

#[derive(Clone)]
pub struct TelegramServer {
    history: Arc<dyn History>,
    scopes: ScopeSource,
    /// The clock, in Unix milliseconds (tests fix it).
    now_ms: Arc<dyn Fn() -> u64 + Send + Sync>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SearchParams {
    /// Words or a description of what was said, e.g. "the database we picked".
    pub query: String,
    /// The current conversation's chat id.
    pub chat_id: i64,
    /// How many messages to return (default 10, at most 50).
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ContextParams {
    /// How far back to read, in hours (1 to 168).
    pub hours_back: u32,
    /// The current conversation's chat id.
    pub chat_id: i64,
}

type ToolResult = Result<String, String>;

#[tool_router(server_handler)]
impl TelegramServer {
    #[tool(
        description = "Search this chat's earlier messages (both sides) by words or meaning. Use it when the user refers to something said before that is not in the current context: \"what did we decide about X\", \"the link I sent last week\"."
    )]
    async fn search_conversation_history(
        &self,
        Parameters(p): Parameters<SearchParams>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let scope = self.scopes.resolve(&context, p.chat_id)?;
        Ok(self.search(scope.chat_id, &p.query, p.limit).await?)
    }

    #[tool(
        description = "Read what was said in this chat over the last hours, oldest first. Use it to catch up on a conversation (\"where were we\", \"summarise today\") rather than to find one detail."
    )]
    async fn get_conversation_context(
        &self,
        Parameters(p): Parameters<ContextParams>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let scope = self.scopes.resolve(&context, p.chat_id)?;
        Ok(self.context(scope.chat_id, p.hours_back).await?)
    }
}

impl TelegramServer {
    /// The tools with their descriptions and schemas, as MCP clients list them.
    pub fn tools() -> Vec<rmcp::model::Tool> {
        Self::tool_router().list_all()
    }

    pub fn new(history: Arc<dyn History>, scopes: ScopeSource) -> TelegramServer {
        TelegramServer {
            history,
            scopes,
            now_ms: Arc::new(valor_protocol::time::now_ms),
        }
    }

    /// Reads the time from `now_ms` instead of the system clock.
    pub fn with_clock(mut self, now_ms: Arc<dyn Fn() -> u64 + Send + Sync>) -> Self {
        self.now_ms = now_ms;
        self
    }

    pub async fn search(
        &self,
        chat_id: i64,
        query: &str,
        limit: Option<usize>,
    ) -> Result<String, ToolError> {
        if query.trim().is_empty() {
            return Err(ToolError::Invalid("the query is empty".to_owned()));
        }
        let limit = limit.unwrap_or(DEFAULT_RESULTS).clamp(1, MAX_RESULTS);
        let found = (self.history.search(chat_id, query, limit).await).map_err(ToolError::Io)?;
        if found.is_empty() {
            return Ok(format!("Nothing in this chat's history matches {query:?}."));
        }
        let now = (self.now_ms)();
        let mut out = format!("{} messages match {query:?}, best first:\n", found.len());
        for line in &found {
            out.push_str(&format!(
                "\n[{}] {}: {}",
                ago(now, line.at_ms),
                line.who,
                line.text.trim()
            ));
        }
        Ok(out)
    }

    pub async fn context(&self, chat_id: i64, hours_back: u32) -> Result<String, ToolError> {
        if hours_back == 0 || hours_back > MAX_HOURS {
            return Err(ToolError::Invalid(format!(
                "hours_back must be between 1 and {MAX_HOURS}, not {hours_back}"
            )));
        }
        let now = (self.now_ms)();
        let since = now.saturating_sub(u64::from(hours_back) * 3_600_000);
        let lines =
            (self.history.since(chat_id, since, MAX_LINES + 1).await).map_err(ToolError::Io)?;
        if lines.is_empty() {
            return Ok(format!(
                "Nothing was said in this chat in the last {hours_back} hours."
            ));
        }
        let cut = lines.len() > MAX_LINES;
        let shown = &lines[lines.len().saturating_sub(MAX_LINES)..];
        let mut out = format!(
            "The last {hours_back} hours of this chat ({} messages{}), oldest first:\n",
            shown.len(),
            if cut { ", the newest only" } else { "" }
        );
        for line in shown {
            let text: String = line.text.trim().chars().take(LINE_CHARS).collect();
            let more = if line.text.trim().chars().count() > LINE_CHARS {
                "…"
            } else {
                ""
            };
            out.push_str(&format!(
                "\n[{}] {}: {text}{more}",
                ago(now, line.at_ms),
                line.who
            ));
        }
        Ok(out)
    }
}

/// Runs a history read off the async threads (a search embeds the query: milliseconds of CPU).
/// "5 min ago", "3 h ago", "2 days ago".
fn ago(now_ms: u64, at_ms: u64) -> String {
    let minutes = now_ms.saturating_sub(at_ms) / 60_000;
    match minutes {
        0 => "just now".to_owned(),
        1..=59 => format!("{minutes} min ago"),
        60..=2879 => format!("{} h ago", minutes / 60),
        _ => format!("{} days ago", minutes / 1440),
    }
}
