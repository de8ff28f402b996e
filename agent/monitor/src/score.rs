//! The health score: four weighted components, each 0-100, and the overall status.
//!
//! A component scores 100 below its warning level, falls linearly to 50 at its critical level
//! and to 0 at twice the critical level. Its status is `ok` below warning, `degraded` from
//! warning, `unhealthy` from critical. The overall score is the weighted mean; the overall status
//! is the worse of what the score says (`[monitor.status]`) and the worst component.

use serde::Serialize;
use serde_json::{Map, Value, json};
use valor_config::MonitorConfig;

use crate::alerts::{Alert, Severity};
use crate::sample::Sample;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Degraded,
    Unhealthy,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Unhealthy => "unhealthy",
        }
    }

    /// 0 ok, 1 degraded, 2 unhealthy: the `valor health` exit code and the metric value.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// One component of the score, with the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Component {
    pub status: Status,
    /// 0-100.
    pub score: f64,
    pub weight: f64,
    #[serde(flatten)]
    pub figures: Map<String, Value>,
}

/// What /health reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    pub status: Status,
    /// 0-100.
    pub score: u8,
    /// In a fixed order: memory, cpu, sessions, alerts.
    pub components: Vec<(&'static str, Component)>,
    pub alerts: Vec<Alert>,
}

/// Score of a figure against its warning and critical levels (see the module doc).
pub fn level_score(value: f64, warn: f64, critical: f64) -> f64 {
    if !value.is_finite() || value < warn {
        return 100.0;
    }
    if value < critical {
        return 100.0 - 50.0 * (value - warn) / (critical - warn);
    }
    (50.0 - 50.0 * (value - critical) / critical).max(0.0)
}

fn level_status(value: f64, warn: f64, critical: f64) -> Status {
    if value >= critical {
        Status::Unhealthy
    } else if value >= warn {
        Status::Degraded
    } else {
        Status::Ok
    }
}

fn figures(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Builds the report for a sample and the active alerts.
pub fn assess(sample: &Sample, alerts: &[Alert], config: &MonitorConfig) -> HealthReport {
    let t = &config.thresholds;
    let w = &config.weights;

    let rss_mb = sample.rss_mb();
    let sys_pct = sample.system_memory_used_percent();
    let memory = Component {
        status: level_status(rss_mb, t.rss_warn_mb as f64, t.rss_critical_mb as f64).max(
            level_status(
                sys_pct,
                t.system_memory_warn_percent,
                t.system_memory_critical_percent,
            ),
        ),
        score: level_score(rss_mb, t.rss_warn_mb as f64, t.rss_critical_mb as f64).min(
            level_score(
                sys_pct,
                t.system_memory_warn_percent,
                t.system_memory_critical_percent,
            ),
        ),
        weight: w.ram,
        figures: figures(json!({
            "rss_bytes": sample.rss_bytes,
            "system_memory_used_bytes": sample.system_memory_used_bytes,
            "system_memory_total_bytes": sample.system_memory_total_bytes,
            "system_memory_used_percent": round1(sys_pct),
        })),
    };

    let cpu = Component {
        status: level_status(
            sample.cpu_percent,
            t.cpu_warn_percent,
            t.cpu_critical_percent,
        ),
        score: level_score(
            sample.cpu_percent,
            t.cpu_warn_percent,
            t.cpu_critical_percent,
        ),
        weight: w.cpu,
        figures: figures(json!({
            "cpu_percent": round1(sample.cpu_percent),
            "load_average": sample.load_average.map(round2),
        })),
    };

    let children = sample.children as f64;
    let (mut sessions_status, mut sessions_score) = (
        level_status(children, t.children_warn as f64, t.children_critical as f64),
        level_score(children, t.children_warn as f64, t.children_critical as f64),
    );
    if sample.stale_children > 0 {
        sessions_status = sessions_status.max(Status::Degraded);
        sessions_score = sessions_score.min(50.0);
    }
    let sessions = Component {
        status: sessions_status,
        score: sessions_score,
        weight: w.child_processes,
        figures: figures(json!({
            "child_processes": sample.children,
            "oldest_child_secs": sample.oldest_child_secs,
            "stale_child_processes": sample.stale_children,
        })),
    };

    let warnings = alerts
        .iter()
        .filter(|a| a.severity == Severity::Warning)
        .count();
    let criticals = alerts.len() - warnings;
    let alerts_component = Component {
        status: if alerts.is_empty() {
            Status::Ok
        } else {
            Status::Degraded
        },
        score: (100.0 - 15.0 * warnings as f64 - 40.0 * criticals as f64).max(0.0),
        weight: w.alerts,
        figures: figures(json!({ "warning": warnings, "critical": criticals })),
    };

    let components = vec![
        ("ram", memory),
        ("cpu", cpu),
        ("child_processes", sessions),
        ("alerts", alerts_component),
    ];
    let total_weight: f64 = components.iter().map(|(_, c)| c.weight).sum();
    let weighted: f64 = components.iter().map(|(_, c)| c.score * c.weight).sum();
    let score = if total_weight > 0.0 {
        (weighted / total_weight).round().clamp(0.0, 100.0) as u8
    } else {
        100
    };
    let worst_component = components
        .iter()
        .map(|(_, c)| c.status)
        .max()
        .unwrap_or(Status::Ok);
    HealthReport {
        status: score_status(score, config).max(worst_component),
        score,
        components,
        alerts: alerts.to_vec(),
    }
}

fn score_status(score: u8, config: &MonitorConfig) -> Status {
    if score < config.status.unhealthy_below {
        Status::Unhealthy
    } else if score < config.status.degraded_below {
        Status::Degraded
    } else {
        Status::Ok
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertBook;

    #[test]
    fn level_score_table() {
        let table = [
            // (value, warn, critical, expected)
            (0.0, 80.0, 95.0, 100.0),
            (79.9, 80.0, 95.0, 100.0),
            (80.0, 80.0, 95.0, 100.0),
            (87.5, 80.0, 95.0, 75.0),
            (95.0, 80.0, 95.0, 50.0),
            (142.5, 80.0, 95.0, 25.0),
            (190.0, 80.0, 95.0, 0.0),
            (1e9, 80.0, 95.0, 0.0),
            (f64::NAN, 80.0, 95.0, 100.0),
            (768.0, 512.0, 1024.0, 75.0),
        ];
        for (value, warn, critical, expected) in table {
            let got = level_score(value, warn, critical);
            assert!(
                (got - expected).abs() < 1e-9,
                "level_score({value}, {warn}, {critical}) = {got}, want {expected}"
            );
        }
    }

    fn sample() -> Sample {
        Sample {
            taken_at: 1,
            rss_bytes: 10 * 1024 * 1024,
            cpu_percent: 1.0,
            system_memory_total_bytes: 1000,
            system_memory_used_bytes: 300,
            load_average: [0.1, 0.2, 0.3],
            children: 0,
            oldest_child_secs: None,
            stale_children: 0,
            disk: None,
            queued: 0,
        }
    }

    fn report(s: &Sample) -> HealthReport {
        let config = MonitorConfig::default();
        let mut book = AlertBook::new();
        book.evaluate(s, &config);
        assess(s, &book.active(), &config)
    }

    #[test]
    fn idle_is_ok_with_full_score() {
        let r = report(&sample());
        assert_eq!((r.status, r.score), (Status::Ok, 100));
        let names: Vec<&str> = r.components.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["ram", "cpu", "child_processes", "alerts"]);
    }

    #[test]
    fn score_and_status_table() {
        // (rss MiB, cpu %, system used of 1000, children, stale) -> (status, score)
        let table = [
            ((10, 1.0, 300, 0, 0), (Status::Ok, 100)),
            // CPU at 87.5 %: cpu 75, alerts 85 -> 100*.35 + 75*.25 + 100*.2 + 85*.2 = 90.75
            ((10, 87.5, 300, 0, 0), (Status::Degraded, 91)),
            // RSS at 768 MiB: memory 75, alerts 85 -> 26.25 + 25 + 20 + 17 = 88.25
            ((768, 1.0, 300, 0, 0), (Status::Degraded, 88)),
            // machine memory at 97 %: memory 48.95, alerts 60 (one critical)
            // -> 17.13 + 25 + 20 + 12 = 74.13, and an unhealthy component
            ((10, 1.0, 970, 0, 0), (Status::Unhealthy, 74)),
            // everything critical: memory 0, cpu 47.37, sessions 0, alerts 0 -> 11.84
            ((3000, 100.0, 1000, 40, 1), (Status::Unhealthy, 12)),
            // one stale child: sessions capped at 50, alerts 85
            ((10, 1.0, 300, 1, 1), (Status::Degraded, 87)),
        ];
        for ((rss, cpu, used, children, stale), expected) in table {
            let mut s = sample();
            s.rss_bytes = rss * 1024 * 1024;
            s.cpu_percent = cpu;
            s.system_memory_used_bytes = used;
            s.children = children;
            s.stale_children = stale;
            s.oldest_child_secs = (children > 0).then_some(100_000);
            let r = report(&s);
            assert_eq!(
                (r.status, r.score),
                expected,
                "input rss={rss} cpu={cpu} used={used} children={children} stale={stale}"
            );
        }
    }

    #[test]
    fn weights_change_the_score() {
        let mut config = MonitorConfig::default();
        config.weights.cpu = 0.0;
        config.weights.alerts = 0.0;
        let mut s = sample();
        s.cpu_percent = 100.0;
        let r = assess(&s, &[], &config);
        assert_eq!(
            r.score, 100,
            "a component with weight 0 does not move the score"
        );
        assert_eq!(r.status, Status::Unhealthy, "but its status still counts");
    }
}
