//! The health server: `GET /` (a page for people), `GET /health` (JSON), `GET /metrics` (Prometheus text), `GET /ready`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::MonitorError;
use crate::metrics::{MetricsRegistry, TEXT_FORMAT};
use crate::monitor::ResourceMonitor;
use crate::score::Status;

/// A part of Valor that reports its own component on /health (the Claude driver, memory...).
pub trait HealthComponent: Send + Sync {
    fn name(&self) -> &'static str;
    /// Its status and figures now. Cheap: called on every /health request.
    fn check(&self) -> (Status, Map<String, Value>);
}

/// What the handlers read.
#[derive(Clone)]
pub struct HealthState {
    pub monitor: Arc<ResourceMonitor>,
    pub metrics: MetricsRegistry,
    /// True while Valor accepts work; false before start-up completes and during shutdown.
    pub ready: Arc<AtomicBool>,
    /// Brings gauges other parts keep up to date before `/metrics` renders them (figures
    /// read from the store when asked for, not on a timer).
    pub refresh: Vec<Arc<dyn Fn() + Send + Sync>>,
    /// Whether the dashboard is served under `/ui/` (the home page links its login).
    pub dashboard: bool,
}

pub fn router(state: HealthState) -> Router {
    Router::new()
        .route("/", get(crate::home::home))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .with_state(state)
}

/// Binds the listener (separately from serving, so start-up fails fast on a taken port).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MonitorError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MonitorError::Bind { addr, source })
}

/// Serves until `shutdown` is cancelled, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), MonitorError> {
    // Without TCP_NODELAY a streamed (SSE) answer waits out the peer's delayed ACK: an MCP tool
    // call over this server took 44 ms instead of about 1 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(MonitorError::Serve)
}

/// The /health body and its HTTP status.
pub fn health_body(state: &HealthState) -> (StatusCode, Value) {
    let monitor = &state.monitor;
    let uptime_secs = monitor.uptime().as_secs();
    let version = env!("CARGO_PKG_VERSION");
    let (Some(report), Some(sample)) = (monitor.report(), monitor.latest()) else {
        let body = json!({
            "status": Status::Unhealthy, "score": 0, "version": version,
            "uptime_secs": uptime_secs, "components": {}, "alerts": [],
            "reason": "no resource sample has been taken yet",
        });
        return (StatusCode::SERVICE_UNAVAILABLE, body);
    };

    let mut status = report.status;
    let mut components = Map::new();
    for (name, component) in &report.components {
        components.insert(
            (*name).to_owned(),
            serde_json::to_value(component).unwrap_or(Value::Null),
        );
    }
    for part in monitor.check_components() {
        status = status.max(part.status);
        let mut figures = part.figures;
        figures.insert(
            "status".to_owned(),
            serde_json::to_value(part.status).unwrap_or(Value::Null),
        );
        figures.insert("status_since_ms".to_owned(), json!(part.since_ms));
        if let Some((at_ms, text)) = part.last_error {
            figures.insert("last_error".to_owned(), json!(text));
            figures.insert("last_error_at_ms".to_owned(), json!(at_ms));
        }
        components.insert(part.name, Value::Object(figures));
    }

    let body = json!({
        "status": status,
        "score": report.score,
        "version": version,
        "uptime_secs": uptime_secs,
        "sampled_at": sample.taken_at,
        "components": components,
        "alerts": monitor.active_alerts(),
    });
    let code = if status == Status::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, body)
}

async fn health(State(state): State<HealthState>) -> Response {
    let (code, body) = health_body(&state);
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<HealthState>) -> Response {
    state.monitor.refresh_gauges();
    if !state.refresh.is_empty() {
        let refresh = state.refresh.clone();
        // They may read the store: off the async threads.
        let _ = tokio::task::spawn_blocking(move || refresh.iter().for_each(|f| f())).await;
    }
    (
        [(header::CONTENT_TYPE, TEXT_FORMAT)],
        state.metrics.render(),
    )
        .into_response()
}

/// 200 while Valor accepts work, else 503; the parts' own components (Telegram's polling,
/// the driver, memory) are shown beside it, so a probe sees what is stuck.
async fn ready(State(state): State<HealthState>) -> Response {
    let ready = state.ready.load(Ordering::Acquire);
    let mut body = json!({ "ready": ready });
    let mut components = Map::new();
    for part in state.monitor.check_components() {
        let mut figures = part.figures;
        figures.insert(
            "status".to_owned(),
            serde_json::to_value(part.status).unwrap_or(Value::Null),
        );
        components.insert(part.name, Value::Object(figures));
    }
    body["components"] = Value::Object(components);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}
