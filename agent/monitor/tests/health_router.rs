//! The health router in process: statuses, codes, bodies, metrics and readiness.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use valor_config::MonitorConfig;
use valor_monitor::{
    ChildRegistry, HealthComponent, HealthState, MetricsRegistry, ResourceMonitor, Sample, Status,
    router,
};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sample(rss_mb: u64, cpu: f64, system_used_percent: u64) -> Sample {
    Sample {
        taken_at: now(),
        rss_bytes: rss_mb * 1024 * 1024,
        cpu_percent: cpu,
        system_memory_total_bytes: 100,
        system_memory_used_bytes: system_used_percent,
        load_average: [0.5, 0.4, 0.3],
        children: 0,
        oldest_child_secs: None,
        stale_children: 0,
        disk: None,
        queued: 0,
    }
}

fn state() -> HealthState {
    let metrics = MetricsRegistry::new();
    let monitor =
        ResourceMonitor::new(MonitorConfig::default(), ChildRegistry::new(), &metrics).unwrap();
    HealthState {
        monitor,
        metrics,
        ready: Arc::new(AtomicBool::new(false)),
        refresh: Vec::new(),
        dashboard: false,
    }
}

/// A part whose status the test sets (0 ok, 1 degraded, 2 unhealthy).
struct Fixed(Arc<std::sync::atomic::AtomicU8>);

impl Fixed {
    fn new(status: Status) -> (Arc<Fixed>, Arc<std::sync::atomic::AtomicU8>) {
        let cell = Arc::new(std::sync::atomic::AtomicU8::new(status.code()));
        (Arc::new(Fixed(Arc::clone(&cell))), cell)
    }
}

impl HealthComponent for Fixed {
    fn name(&self) -> &'static str {
        "extra"
    }
    fn check(&self) -> (Status, serde_json::Map<String, Value>) {
        let mut figures = serde_json::Map::new();
        figures.insert("answer".to_owned(), Value::from(42));
        let status = match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => Status::Ok,
            1 => Status::Degraded,
            _ => Status::Unhealthy,
        };
        (status, figures)
    }
}

#[tokio::test]
async fn components_added_by_other_parts_show_and_count() {
    let state = state();
    state.monitor.record(sample(20, 1.0, 30));
    let (part, cell) = Fixed::new(Status::Degraded);
    state.monitor.add_component(part);
    let (code, body) = health(&state).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["status"], "degraded");
    let extra = &body["components"]["extra"];
    assert_eq!(
        (&extra["status"], &extra["answer"]),
        (&"degraded".into(), &42.into())
    );
    assert_eq!(
        extra["last_error"], "answer=42",
        "a part not ok without an error: its figures"
    );
    assert!(extra["status_since_ms"].as_u64().unwrap() > 0, "{extra}");
    cell.store(
        Status::Unhealthy.code(),
        std::sync::atomic::Ordering::Relaxed,
    );
    let (code, body) = health(&state).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unhealthy"))
    );
}

async fn get(state: &HealthState, path: &str) -> (StatusCode, String, String) {
    let response = router(state.clone())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

async fn health(state: &HealthState) -> (StatusCode, Value) {
    let (code, content_type, body) = get(state, "/health").await;
    assert_eq!(content_type, "application/json");
    (code, serde_json::from_str(&body).unwrap())
}

#[tokio::test]
async fn ok_is_200_with_every_component() {
    let state = state();
    state.monitor.record(sample(20, 1.0, 30));
    let (code, body) = health(&state).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["score"], 100);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_secs"].is_u64());
    for name in ["ram", "cpu", "child_processes", "alerts", "monitor"] {
        assert_eq!(body["components"][name]["status"], "ok", "{name}: {body}");
    }
    assert_eq!(body["components"]["ram"]["rss_bytes"], 20 * 1024 * 1024);
    assert_eq!(body["components"]["cpu"]["load_average"][0], 0.5);
    assert_eq!(body["components"]["ram"]["weight"], 0.35);
    assert_eq!(body["alerts"], Value::Array(vec![]));
}

#[tokio::test]
async fn degraded_is_200_and_lists_the_alert_with_its_action() {
    let state = state();
    state.monitor.record(sample(20, 85.0, 30));
    let (code, body) = health(&state).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["components"]["cpu"]["status"], "degraded");
    let alert = &body["alerts"][0];
    assert_eq!(alert["kind"], "cpu");
    assert_eq!(alert["severity"], "warning");
    assert!(
        alert["action"]
            .as_str()
            .unwrap()
            .contains("runaway session")
    );
}

#[tokio::test]
async fn unhealthy_is_503() {
    let state = state();
    state.monitor.record(sample(2000, 99.0, 99));
    let (code, body) = health(&state).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unhealthy");
    assert!(body["score"].as_u64().unwrap() < 50, "{body}");
    assert_eq!(body["alerts"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn recovery_clears_the_alerts() {
    let state = state();
    state.monitor.record(sample(2000, 99.0, 99));
    state.monitor.record(sample(20, 1.0, 30));
    let (code, body) = health(&state).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["alerts"], Value::Array(vec![]));
}

#[tokio::test]
async fn no_sample_yet_is_503_with_a_reason() {
    let state = state();
    let (code, body) = health(&state).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["reason"], "no resource sample has been taken yet");
}

#[tokio::test]
async fn a_stalled_monitor_degrades_health() {
    let state = state();
    let mut old = sample(20, 1.0, 30);
    old.taken_at -= 600;
    state.monitor.record(old);
    let (code, body) = health(&state).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["components"]["monitor"]["status"], "degraded");
    assert!(
        body["components"]["monitor"]["sample_age_secs"]
            .as_u64()
            .unwrap()
            >= 600
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let state = state();
    state.monitor.record(sample(20, 1.0, 30));
    let (code, content_type, text) = get(&state, "/metrics").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    for line in [
        "# TYPE valor_health_score gauge",
        "valor_health_score 100",
        "valor_process_resident_memory_bytes 20971520",
        "valor_process_cpu_percent 1",
        "# TYPE valor_uptime_seconds gauge",
        "valor_system_load_average{window=\"1m\"} 0.5",
        "valor_build_info{version=\"",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // A later part adds a counter to the same registry and it shows up.
    state
        .metrics
        .counter("valor_turns_total", "Turns run.", &[("outcome", "ok")])
        .unwrap()
        .inc();
    let (_, _, text) = get(&state, "/metrics").await;
    assert!(
        text.contains("valor_turns_total{outcome=\"ok\"} 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn ready_follows_the_flag() {
    let state = state();
    let ready = |body: &str| serde_json::from_str::<Value>(body).unwrap()["ready"].clone();
    let (code, _, body) = get(&state, "/ready").await;
    assert_eq!(
        (code, ready(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, Value::Bool(false))
    );
    state
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    let (code, _, body) = get(&state, "/ready").await;
    assert_eq!((code, ready(&body)), (StatusCode::OK, Value::Bool(true)));
    // The parts' components show beside it (Telegram's polling, say).
    state.monitor.add_component(Fixed::new(Status::Degraded).0);
    let (code, _, body) = get(&state, "/ready").await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["components"]["extra"]["status"], "degraded");
    assert_eq!(body["components"]["extra"]["answer"], 42);
}

#[tokio::test]
async fn the_root_is_a_page_that_says_what_valor_is_and_links_onward() {
    let state = state();
    state.monitor.record(sample(20, 1.0, 30));
    let (code, content_type, body) = get(&state, "/").await;
    assert_eq!(code, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(body.contains("Valor is a chat-bot agent"), "{body}");
    assert!(body.contains(">ok</span>"), "{body}");
    for link in ["/health", "/metrics", "/ready"] {
        assert!(body.contains(&format!("href=\"{link}\"")), "{link}: {body}");
    }
}
