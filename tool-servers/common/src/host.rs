//! Serving the tool servers over streamable HTTP on 127.0.0.1, behind bearer tokens that bind a
//! chat and its workspace.
//!
//! One token per chat, minted when the chat first needs tools and kept while the agent runs: a
//! warm Claude Code process keeps its MCP config for many turns, and a new token per turn would
//! force a new process each turn (0.75 s against 0.05 s). The token is random, never logged, and
//! only ever handed to the chat's own Claude Code process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::common::http_header::HEADER_SESSION_ID;
use rmcp::transport::common::server_side_http::SessionId;
use rmcp::transport::streamable_http_server::session::SessionManager as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};

use crate::Scope;

/// The tokens handed out, each with the scope it binds.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    by_token: Arc<Mutex<HashMap<String, Scope>>>,
}

impl Grants {
    /// The chat's token (the same one for every call while the agent runs).
    pub fn token_for(&self, scope: Scope) -> String {
        let mut tokens = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((token, _)) = tokens.iter().find(|(_, s)| **s == scope) {
            return token.clone();
        }
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        tokens.insert(token.clone(), scope);
        token
    }

    /// The scope a token binds. Every grant is compared in constant time (no lookup whose
    /// timing depends on how much of a guess was right).
    pub fn scope(&self, token: &str) -> Option<Scope> {
        use subtle::ConstantTimeEq as _;
        let tokens = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found = None;
        for (granted, scope) in tokens.iter() {
            if bool::from(granted.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(scope.clone());
            }
        }
        found
    }
}

/// The MCP servers this agent hosts, at `base_url` (`http://127.0.0.1:PORT`).
#[derive(Debug, Clone)]
pub struct ToolHost {
    pub base_url: String,
    pub servers: Vec<String>,
    pub grants: Grants,
}

impl ToolHost {
    /// The `--mcp-config` for a chat's Claude Code process: every hosted server, over HTTP,
    /// with the chat's token.
    pub fn mcp_config(&self, scope: Scope) -> Value {
        let token = self.grants.token_for(scope);
        let servers: serde_json::Map<String, Value> = self
            .servers
            .iter()
            .map(|name| {
                (
                    name.clone(),
                    json!({
                        "type": "http",
                        "url": format!("{}/mcp/{name}", self.base_url),
                        "headers": {"Authorization": format!("Bearer {token}")},
                    }),
                )
            })
            .collect();
        json!({ "mcpServers": servers })
    }

    /// The tool names to allow (`mcp__<server>`: every tool of each server).
    pub fn allowed_tools(&self) -> Vec<String> {
        self.servers.iter().map(|s| format!("mcp__{s}")).collect()
    }
}

/// Chats whose MCP sessions [`route`] keeps at most.
pub const DEFAULT_LIVE_CHATS: usize = 32;

/// An MCP server as an axum service at `/mcp/<name>`, answering only requests with a valid
/// token; the token's [`Scope`] goes into the request for the tools to read.
pub fn route<S>(
    name: &str,
    factory: impl Fn() -> S + Send + Sync + 'static,
    grants: Grants,
) -> axum::Router
where
    S: rmcp::ServerHandler + Send + 'static,
{
    route_with(name, factory, grants, DEFAULT_LIVE_CHATS)
}

/// [`route`] keeping the sessions of at most `live_chats` chats: past that, the session of the
/// chat that used it longest ago is closed. Valor runs at most its concurrent and warm Claude
/// processes, one session each, so a bound above their sum never closes a live one; without
/// it, 300 chats' sessions lingered for rmcp's five-minute keep-alive (~100 KB each).
pub fn route_with<S>(
    name: &str,
    factory: impl Fn() -> S + Send + Sync + 'static,
    grants: Grants,
    live_chats: usize,
) -> axum::Router
where
    S: rmcp::ServerHandler + Send + 'static,
{
    let manager = Arc::new(LocalSessionManager::default());
    let service = StreamableHttpService::new(
        move || Ok(factory()),
        Arc::clone(&manager),
        StreamableHttpServerConfig::default(),
    );
    let live = LiveSessions {
        manager,
        by_chat: Arc::new(Mutex::new(HashMap::new())),
        live_chats: live_chats.max(1),
    };
    axum::Router::new()
        .nest_service(&format!("/mcp/{name}"), service)
        .layer(axum::middleware::from_fn_with_state(
            live,
            close_replaced_sessions,
        ))
        .layer(axum::middleware::from_fn_with_state(grants, require_token))
}

/// Each chat's live MCP session on one server. A chat has one Claude process at a time, and a
/// process opens its session once, when it starts: a new session for a chat means the process
/// that held the old one is gone. The old session is closed then, instead of lingering for
/// rmcp's five-minute keep-alive (with a new process per turn, that kept about 80 KB a turn).
#[derive(Clone)]
struct LiveSessions {
    manager: Arc<LocalSessionManager>,
    /// Each chat's session and when the chat last used it.
    by_chat: Arc<Mutex<HashMap<i64, (SessionId, std::time::Instant)>>>,
    live_chats: usize,
}

impl LiveSessions {
    /// Marks `chat`'s session used at `now`, if `session` is the one it holds.
    fn touch(&self, chat: i64, session: &str, now: std::time::Instant) {
        let mut by_chat = self.by_chat.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((held, used)) = by_chat.get_mut(&chat)
            && &**held == session
        {
            *used = now;
        }
    }

    /// Records `session` as `chat`'s latest; returns the sessions to close: the chat's previous
    /// one, and the least recently used chat's when more chats than allowed hold one.
    fn record(
        &self,
        chat: i64,
        session: SessionId,
        now: std::time::Instant,
    ) -> Vec<(i64, SessionId)> {
        let mut by_chat = self.by_chat.lock().unwrap_or_else(PoisonError::into_inner);
        let mut closing = Vec::new();
        if let Some((old, _)) = by_chat.insert(chat, (session.clone(), now))
            && old != session
        {
            closing.push((chat, old));
        }
        while by_chat.len() > self.live_chats {
            let Some(oldest) = (by_chat.iter())
                .filter(|(c, _)| **c != chat)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(c, _)| *c)
            else {
                break;
            };
            if let Some((old, _)) = by_chat.remove(&oldest) {
                closing.push((oldest, old));
            }
        }
        closing
    }
}

async fn close_replaced_sessions(
    State(live): State<LiveSessions>,
    request: Request,
    next: Next,
) -> Response {
    let chat = request.extensions().get::<Scope>().map(|s| s.chat_id);
    // A request in a session the chat holds marks it used (a live process calls its tools).
    if let (Some(chat), Some(session)) = (
        chat,
        (request.headers().get(HEADER_SESSION_ID)).and_then(|v| v.to_str().ok()),
    ) {
        live.touch(chat, session, std::time::Instant::now());
    }
    let response = next.run(request).await;
    let session = (response.headers().get(HEADER_SESSION_ID))
        .and_then(|v| v.to_str().ok())
        .map(SessionId::from);
    if let (Some(chat), Some(session)) = (chat, session) {
        let closing = live.record(chat, session, std::time::Instant::now());
        if !closing.is_empty() {
            tokio::spawn(async move {
                for (chat_id, old) in closing {
                    if let Err(e) = live.manager.close_session(&old).await {
                        tracing::debug!(chat_id, error = %e, "cannot close an MCP session");
                    }
                }
            });
        }
    }
    response
}

async fn require_token(State(grants): State<Grants>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // From a chat's sandbox, the token must be that chat's own.
    let tenant = request
        .extensions()
        .get::<valor_sandbox::Tenant>()
        .map(|t| t.0);
    let scope = token
        .and_then(|t| grants.scope(t))
        .filter(|scope| tenant.is_none_or(|chat| chat == scope.chat_id));
    match scope {
        Some(scope) => {
            request.extensions_mut().insert(scope);
            next.run(request).await
        }
        None => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "a valid bearer token is needed"})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn live(chats: usize) -> LiveSessions {
        LiveSessions {
            manager: Arc::new(LocalSessionManager::default()),
            by_chat: Arc::new(Mutex::new(HashMap::new())),
            live_chats: chats,
        }
    }

    #[test]
    fn a_chats_new_session_closes_its_old_one_and_the_longest_unused_chat_goes_first() {
        let live = live(2);
        let id = |s: &str| SessionId::from(s);
        let start = std::time::Instant::now();
        let at = |secs: u64| start + std::time::Duration::from_secs(secs);
        assert!(live.record(1, id("a"), at(0)).is_empty());
        assert!(
            live.record(1, id("a"), at(0)).is_empty(),
            "the same session again"
        );
        assert_eq!(live.record(1, id("b"), at(1)), [(1, id("a"))]);
        assert!(live.record(2, id("c"), at(2)).is_empty());
        // Chat 1 sending chat 2's session id does not mark chat 1's session used: chat 1 is
        // still the longest unused.
        live.touch(1, "c", at(3));
        assert_eq!(live.record(3, id("d"), at(4)), [(1, id("b"))]);
        // Chat 2 calls a tool in its own session: chat 3 is now the longest unused.
        live.touch(2, "c", at(5));
        assert_eq!(live.record(4, id("e"), at(6)), [(3, id("d"))]);
        let held: Vec<i64> = {
            let mut chats: Vec<i64> = live.by_chat.lock().unwrap().keys().copied().collect();
            chats.sort();
            chats
        };
        assert_eq!(held, [2, 4]);
    }
}
