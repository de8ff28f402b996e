//! The look at the history every few minutes: the runs of the last four weeks and the health
//! points, through `valor_monitor::trends::assess`, into the monitor (alerts, the Overview).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use valor_monitor::ResourceMonitor;
use valor_monitor::trends::{HISTORY_DAYS, assess};
use valor_protocol::health::Resolution;
use valor_store::Store;

/// How often the history is looked at; the first look comes this long after start too (the
/// store and the monitor are busy starting before).
const EVERY: Duration = Duration::from_secs(300);
const FIRST_AFTER: Duration = Duration::from_secs(30);
const DAY_MS: u64 = 86_400_000;

/// Looks at the history until `shutdown`.
pub async fn watch(
    monitor: Arc<ResourceMonitor>,
    store: Store,
    thresholds: valor_config::MonitorThresholds,
    shutdown: CancellationToken,
) {
    let mut wait = FIRST_AFTER;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = EVERY;
        look(&monitor, &store, &thresholds).await;
    }
}

/// One look: read the history, judge it off the async threads, hand the findings over.
pub async fn look(
    monitor: &ResourceMonitor,
    store: &Store,
    thresholds: &valor_config::MonitorThresholds,
) {
    let now = valor_protocol::time::now_ms();
    let since = now.saturating_sub((HISTORY_DAYS + 1) * DAY_MS);
    let runs = match store.blocking(move |s| s.runs_since(since)).await {
        Ok(runs) => runs,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the runs for the trends");
            return;
        }
    };
    // Quarter hours for the weeks, minutes for the last day (finer where it is kept).
    let day_ago = now.saturating_sub(DAY_MS);
    let mut points = monitor.health_points(Resolution::QuarterHour, since).await;
    points.retain(|p| p.at_ms < day_ago);
    points.extend(monitor.health_points(Resolution::Minute, day_ago).await);
    let (critical, spend) = (
        thresholds.rss_critical_mb as f64,
        thresholds.monthly_spend_warn_usd,
    );
    let judged =
        tokio::task::spawn_blocking(move || assess(&runs, &points, now, critical, spend)).await;
    match judged {
        Ok(findings) => {
            for a in &findings.anomalies {
                tracing::warn!(metric = ?a.metric, value = a.value, median = a.median, z = a.z, "unusual for the hour");
            }
            monitor.take_findings(findings);
        }
        Err(e) => tracing::error!(error = %e, "the trends could not be judged"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use valor_protocol::records::RunRecord;

    fn run(at: u64, cost: f64) -> RunRecord {
        serde_json::from_value(serde_json::json!({
            "chat_id": 1, "session_id": "s", "model": "m", "class": "", "started_at_ms": at,
            "duration_ms": 9000, "api_duration_ms": 0, "cost_usd": cost,
            "usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                      "cache_creation_input_tokens": 0},
            "num_turns": 1, "tool_calls": [], "warm": false, "error": null,
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_planted_spike_in_the_store_is_alerted_with_its_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = valor_protocol::time::now_ms();
        let last_hour = now / 3_600_000 * 3_600_000 - 3_600_000;
        for day in 1..=(HISTORY_DAYS) {
            for i in 0..3 {
                store
                    .record_run(&run(last_hour - day * DAY_MS + i * 60_000, 0.05))
                    .unwrap();
            }
        }
        for i in 0..3 {
            store.record_run(&run(last_hour + i * 60_000, 2.0)).unwrap();
        }
        let monitor = ResourceMonitor::new(
            valor_config::MonitorConfig::default(),
            valor_monitor::ChildRegistry::new(),
            &valor_monitor::MetricsRegistry::new(),
        )
        .unwrap();
        look(
            &monitor,
            &store,
            &valor_config::MonitorThresholds::default(),
        )
        .await;
        let findings = monitor.findings();
        assert_eq!(findings.anomalies.len(), 1, "{findings:?}");
        assert_eq!(findings.anomalies[0].value, 6.0);
        let alerts = monitor.active_alerts();
        assert_eq!(alerts[0].kind, valor_monitor::AlertKind::CostAnomaly);
        assert!(
            alerts[0].message.contains("was $6.00") && alerts[0].message.contains("is $0.15"),
            "{}",
            alerts[0].message
        );
        // A quiet hour afterwards: it clears.
        let dir2 = tempfile::tempdir().unwrap();
        let empty = Store::open(dir2.path()).unwrap();
        look(
            &monitor,
            &empty,
            &valor_config::MonitorThresholds::default(),
        )
        .await;
        assert!(monitor.active_alerts().is_empty());
    }
}
