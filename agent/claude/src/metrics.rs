//! The driver's counters on /metrics, and its component on /health.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value, json};
use valor_core::TurnErrorKind;
use valor_monitor::{Counter, Gauge, MetricsRegistry, MonitorError};

#[derive(Clone)]
pub struct DriverMetrics {
    registry: MetricsRegistry,
    pub active: Gauge,
    pub warm: Gauge,
    pub mcp_failures: Counter,
    pub malformed_lines: Counter,
    pub oversized_lines: Counter,
    pub resume_fallbacks: Counter,
    pub orphans_reaped: Counter,
    /// MCP servers that failed in the latest turn (empty when they all started).
    last_failed_mcp: Arc<Mutex<Vec<String>>>,
}

impl DriverMetrics {
    pub fn register(m: &MetricsRegistry) -> Result<DriverMetrics, MonitorError> {
        Ok(DriverMetrics {
            registry: m.clone(),
            active: m.gauge(
                "valor_claude_runs_active",
                "Claude Code runs in progress.",
                &[],
            )?,
            warm: m.gauge(
                "valor_claude_warm_processes",
                "Warm Claude Code processes kept for active chats.",
                &[],
            )?,
            mcp_failures: m.counter(
                "valor_claude_mcp_server_failures_total",
                "MCP servers Claude Code reported as failed at the start of a turn.",
                &[],
            )?,
            malformed_lines: m.counter(
                "valor_claude_malformed_lines_total",
                "stream-json lines that were not valid events.",
                &[],
            )?,
            oversized_lines: m.counter(
                "valor_claude_oversized_lines_total",
                "stream-json lines over the length limit, skipped.",
                &[],
            )?,
            resume_fallbacks: m.counter(
                "valor_claude_resume_fallbacks_total",
                "Turns that started a new session because the old one was unknown.",
                &[],
            )?,
            orphans_reaped: m.counter(
                "valor_claude_orphans_reaped_total",
                "Claude Code process groups that outlived their turn and were ended.",
                &[],
            )?,
            last_failed_mcp: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Counts a run by outcome (`ok` or the error kind).
    pub fn count_outcome(&self, error: Option<TurnErrorKind>) {
        let outcome = error.map_or("ok", TurnErrorKind::as_str);
        if let Ok(counter) = self.registry.counter(
            "valor_claude_runs_total",
            "Claude Code runs by outcome.",
            &[("outcome", outcome)],
        ) {
            counter.inc();
        }
    }

    pub fn record_mcp_state(&self, failed: &[String]) {
        *self
            .last_failed_mcp
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = failed.to_vec();
    }

    /// The `claude` component of /health: degraded while the latest turn ran without an MCP
    /// server it was configured with (a turn silently missing its tools).
    pub fn health(&self) -> (bool, Map<String, Value>) {
        let failed = self
            .last_failed_mcp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let figures = json!({
            "runs_active": self.active.get(),
            "warm_processes": self.warm.get(),
            "mcp_server_failures_total": self.mcp_failures.get(),
            "mcp_servers_failed_last_turn": failed,
            "orphans_reaped_total": self.orphans_reaped.get(),
            "resume_fallbacks_total": self.resume_fallbacks.get(),
        });
        let map = match figures {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        (failed.is_empty(), map)
    }
}

impl valor_monitor::HealthComponent for DriverMetrics {
    fn name(&self) -> &'static str {
        "claude"
    }

    fn check(&self) -> (valor_monitor::Status, Map<String, Value>) {
        let (healthy, figures) = self.health();
        let status = if healthy {
            valor_monitor::Status::Ok
        } else {
            valor_monitor::Status::Degraded
        };
        (status, figures)
    }
}
