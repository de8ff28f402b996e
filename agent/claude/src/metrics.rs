//! The driver's counters on /metrics, and its component on /health.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value, json};
use valor_monitor::{Counter, Gauge, MetricsRegistry, MonitorError};
use valor_protocol::TurnErrorKind;

use crate::sandbox::SandboxState;

/// The turn-duration histogram's buckets, in seconds.
const DURATION_BOUNDS: [f64; 12] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0,
];

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
    pub budget_closes: Counter,
    pub budget_waits: Counter,
    pub resident: Gauge,
    /// MCP servers that failed in the latest turn (empty when they all started).
    last_failed_mcp: Arc<Mutex<Vec<String>>>,
    sandbox: Arc<Mutex<SandboxHealth>>,
}

/// The sandbox as /health shows it.
#[derive(Debug, Clone, Default)]
struct SandboxHealth {
    label: &'static str,
    reason: Option<String>,
    status: Option<valor_monitor::Status>,
    /// How each sandbox's memory and processes are limited (a cgroup, or rlimits only).
    limits: Option<String>,
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
            budget_closes: m.counter(
                "valor_claude_budget_closes_total",
                "Warm Claude Code processes closed early to keep within the memory budget.",
                &[],
            )?,
            budget_waits: m.counter(
                "valor_claude_budget_waits_total",
                "Turns that waited for memory ([claude] process_memory_mb).",
                &[],
            )?,
            resident: m.gauge(
                "valor_claude_resident_bytes",
                "Resident memory of the running and warm Claude Code processes, last measured.",
                &[],
            )?,
            last_failed_mcp: Arc::new(Mutex::new(Vec::new())),
            sandbox: Arc::new(Mutex::new(SandboxHealth {
                label: "off",
                ..SandboxHealth::default()
            })),
        })
    }

    /// What the component says of the sandbox: unsandboxed because bubblewrap does not work is
    /// degraded (`auto`) or unhealthy (`required`: no turn runs).
    pub fn set_sandbox(&self, state: &SandboxState) {
        let health = match state {
            SandboxState::Active(sandbox) => SandboxHealth {
                label: state.label(),
                limits: Some(sandbox.limits_mode()),
                ..SandboxHealth::default()
            },
            SandboxState::Off => SandboxHealth {
                label: state.label(),
                ..SandboxHealth::default()
            },
            SandboxState::Unavailable { reason, required } => SandboxHealth {
                label: state.label(),
                reason: Some(reason.clone()),
                status: Some(if *required {
                    valor_monitor::Status::Unhealthy
                } else {
                    valor_monitor::Status::Degraded
                }),
                limits: None,
            },
        };
        *self.sandbox.lock().unwrap_or_else(PoisonError::into_inner) = health;
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

    /// A finished run's cost, tokens and duration, by source (a chat's turn or Valor's own
    /// work): what the dashboard's figures are, for Prometheus and Grafana.
    pub fn record_run(&self, run: &valor_protocol::records::RunRecord) {
        let source = if valor_protocol::turn::is_background_chat(run.chat_id) {
            "internal"
        } else {
            "chat"
        };
        let m = &self.registry;
        if let Ok(cost) = m.float_counter(
            "valor_cost_usd_total",
            "Dollars spent on Claude runs, as the CLI reports them.",
            &[("source", source)],
        ) {
            cost.add(run.cost_usd);
        }
        let u = &run.usage;
        for (kind, tokens) in [
            ("input", u.input_tokens),
            ("output", u.output_tokens),
            ("cache_read", u.cache_read_input_tokens),
            ("cache_write", u.cache_creation_input_tokens),
        ] {
            if let Ok(counter) = m.counter(
                "valor_tokens_total",
                "Tokens of Claude runs by kind.",
                &[("source", source), ("kind", kind)],
            ) {
                counter.inc_by(tokens);
            }
        }
        if let Ok(took) = m.histogram(
            "valor_turn_duration_seconds",
            "How long Claude runs took, start to answer.",
            &[("source", source)],
            &DURATION_BOUNDS,
        ) {
            took.observe(run.duration_ms as f64 / 1000.0);
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
    pub fn health(&self) -> (valor_monitor::Status, Map<String, Value>) {
        let failed = self
            .last_failed_mcp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let sandbox = self
            .sandbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mcp_status = if failed.is_empty() {
            valor_monitor::Status::Ok
        } else {
            valor_monitor::Status::Degraded
        };
        let status = sandbox.status.map_or(mcp_status, |s| s.max(mcp_status));
        let figures = json!({
            "sandbox": sandbox.label,
            "sandbox_problem": sandbox.reason,
            "sandbox_limits": sandbox.limits,
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
        (status, map)
    }
}

impl valor_monitor::HealthComponent for DriverMetrics {
    fn name(&self) -> &'static str {
        "claude"
    }

    fn check(&self) -> (valor_monitor::Status, Map<String, Value>) {
        self.health()
    }
}
