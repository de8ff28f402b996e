//! The agent's HTTP app: every route `valor run` serves on its one port, put together in one
//! place so it can be tested without a socket (`oneshot`).
//!
//! - `/health`, `/metrics`, `/ready`: open (the monitor's router).
//! - `/memory/*`: the memory API, behind the store's token.
//! - `/jobs`: the scheduler's jobs, behind the same token.
//! - `/ui/`: the operator's dashboard (a login link from `valor dashboard`, then a session
//!   cookie; `/ui/login-link` behind the store's token).
//! - `/runs`: the recorded runs (`valor stats` while this process holds the store), behind the
//!   same token.
//! - `/mcp/<server>`: the hosted tool servers, each request behind a token bound to one chat.
//! - `/telegram/paired`: pairings (`valor pair --list`, `--revoke`), behind the store's token,
//!   when Telegram is on.

use std::sync::Arc;

use axum::Router;
use valor_memory::Memory;
use valor_monitor::{HealthState, server};
use valor_scheduler::Scheduler;

/// What the app is made of.
pub struct AppParts {
    pub health: HealthState,
    pub memory: Memory,
    /// The store `/runs` reads.
    pub store: valor_store::Store,
    /// The store's API token (`<store>.api-token`).
    pub token: String,
    /// The hosted tool servers' routes.
    pub tools: Router,
    pub scheduler: Arc<Scheduler>,
    /// Telegram's pairing routes, when Telegram is on.
    pub telegram: Option<Router>,
    /// What the dashboard (`/ui/`) shows; `None`: no dashboard (`[health] dashboard = false`).
    pub dashboard: Option<Arc<dyn valor_dashboard::Source>>,
    /// The versions of what the dashboard shows (fed by the agent's parts).
    pub pulse: valor_dashboard::live::Pulse,
    /// `[health] dashboard_secure_cookie`.
    pub secure_cookie: bool,
}

pub fn app(parts: AppParts) -> Router {
    let store = parts.store;
    let sessions: Arc<dyn valor_dashboard::auth::SessionBook> =
        Arc::new(crate::dashboard::StoredSessions(store.clone()));
    let dashboard = (parts.dashboard).map(|source| {
        valor_dashboard::router(valor_dashboard::Parts {
            source,
            api_token: parts.token.clone(),
            logs: crate::logging::ring(),
            sessions: Some(sessions),
            secure_cookie: parts.secure_cookie,
            pulse: parts.pulse,
        })
    });
    server::router(parts.health)
        .merge(valor_memory::api::router(parts.memory, parts.token.clone()))
        .merge(parts.tools)
        .merge(crate::stats::router(store, parts.token.clone()))
        .merge(dashboard.unwrap_or_default())
        .merge(valor_scheduler::router(parts.scheduler, parts.token))
        .merge(parts.telegram.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;
    use valor_monitor::{ChildRegistry, MetricsRegistry, ResourceMonitor};

    use super::*;

    struct World {
        _dir: tempfile::TempDir,
        app: Router,
        token: String,
        ready: Arc<AtomicBool>,
        grant: valor_core::engine::ToolGrant,
    }

    async fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut config = valor_config::Config::default();
        config.store.path = dir.path().join("store");
        config.memory.model_dir = dir.path().join("no-model");
        config.claude.workspaces_dir = dir.path().join("workspaces");
        config.claude.homes_dir = dir.path().join("homes");
        config.claude.sandbox = valor_config::SandboxMode::Off;
        let metrics = MetricsRegistry::new();
        let children = ChildRegistry::new();
        let monitor =
            ResourceMonitor::new(config.monitor.clone(), children.clone(), &metrics).unwrap();
        monitor.tick().unwrap();
        let agent = crate::agent::Agent::build(&config, None, &metrics, children, false)
            .await
            .unwrap();
        let token = valor_config::tokens::api_token(&config.store.path).unwrap();
        let grants = valor_tools::host::Grants::default();
        let tools = crate::tool_servers::tool_grant(&config, "http://127.0.0.1:1", &grants);
        let secrets = valor_config::Secrets::default();
        let hosted = crate::tool_servers::host_tools(
            &config,
            &secrets,
            &agent,
            &grants,
            None,
            &crate::tool_servers::People::default(),
        )
        .unwrap();
        let ready = Arc::new(AtomicBool::new(true));
        let scheduler = Arc::new(Scheduler::new(
            Arc::new(agent.store.clone()),
            Arc::new(chrono::Utc::now),
        ));
        let conversations = agent.conversations(&config, &metrics, None).unwrap();
        let dashboard = Arc::new(crate::dashboard::AgentView {
            monitor: Arc::clone(&monitor),
            conversations,
            records: agent.view_records(),
            scheduler: Arc::clone(&scheduler),
            memory: agent.memory.clone(),
            baseline: crate::dashboard::baseline(&config.routing),
            reports_dir: config.daydream.logs_dir.clone(),
        });
        let app = app(AppParts {
            health: HealthState {
                monitor,
                metrics,
                ready: Arc::clone(&ready),
                refresh: Vec::new(),
                dashboard: true,
            },
            memory: agent.memory.clone(),
            store: agent.store.clone(),
            token: token.clone(),
            tools: hosted.routes,
            scheduler,
            telegram: None,
            dashboard: Some(dashboard),
            pulse: valor_dashboard::live::Pulse::default(),
            secure_cookie: false,
        });
        World {
            _dir: dir,
            app,
            token,
            ready,
            grant: tools(42),
        }
    }

    async fn call(app: &Router, method: &str, path: &str, token: Option<&str>) -> StatusCode {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(Body::from(
                r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
            ))
            .unwrap();
        app.clone().oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn health_is_open_and_readiness_follows_the_flag() {
        let w = world().await;
        assert_eq!(call(&w.app, "GET", "/health", None).await, StatusCode::OK);
        assert_eq!(call(&w.app, "GET", "/metrics", None).await, StatusCode::OK);
        assert_eq!(call(&w.app, "GET", "/ready", None).await, StatusCode::OK);
        w.ready.store(false, Ordering::Release);
        assert_eq!(
            call(&w.app, "GET", "/ready", None).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn the_dashboard_needs_a_session_that_only_the_stores_token_can_start() {
        let w = world().await;
        // The store's token is not a session: pages need the cookie a login link gives.
        assert_eq!(
            call(&w.app, "GET", "/ui/", Some(&w.token)).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&w.app, "POST", "/ui/login-link", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&w.app, "POST", "/ui/login-link", Some("forged")).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&w.app, "POST", "/ui/login-link", Some(&w.token)).await,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn memory_and_jobs_need_the_stores_token() {
        let w = world().await;
        for path in ["/memory/stats", "/jobs", "/runs?since_ms=0"] {
            assert_eq!(
                call(&w.app, "GET", path, None).await,
                StatusCode::UNAUTHORIZED,
                "{path}"
            );
            assert_eq!(
                call(&w.app, "GET", path, Some("forged")).await,
                StatusCode::UNAUTHORIZED,
                "{path}"
            );
            assert_eq!(
                call(&w.app, "GET", path, Some(&w.token)).await,
                StatusCode::OK,
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn a_tool_server_takes_only_a_chats_own_token_and_not_the_stores() {
        let w = world().await;
        let chat_token = w.grant.mcp_config["mcpServers"]["social"]["headers"]["Authorization"]
            .as_str()
            .expect("a bearer header in the chat's MCP config")
            .trim_start_matches("Bearer ")
            .to_owned();
        assert_eq!(
            call(&w.app, "POST", "/mcp/social", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&w.app, "POST", "/mcp/social", Some(&w.token)).await,
            StatusCode::UNAUTHORIZED,
            "the store's token opens no tool server"
        );
        let status = call(&w.app, "POST", "/mcp/social", Some(&chat_token)).await;
        assert!(status.is_success(), "{status}");
    }

    #[tokio::test]
    async fn without_telegram_there_are_no_pairing_routes() {
        let w = world().await;
        assert_eq!(
            call(&w.app, "GET", "/telegram/paired", Some(&w.token)).await,
            StatusCode::NOT_FOUND
        );
    }
}
