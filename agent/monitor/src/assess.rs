//! The monitor's side of the trends: what a sample reads besides Valor's process (free space
//! on the store's filesystem, turns waiting), and the findings of a look at the history
//! (`trends::assess`, run by the binary every few minutes) turned into alerts with the numbers
//! behind them and kept for the Overview.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock, PoisonError};

use crate::ResourceMonitor;
use crate::alerts::{Alert, AlertBook, AlertKind, Severity};
use crate::sample::Sample;
use crate::trends::{Findings, Metric, Resource};

/// Counts the turns waiting (the conversation service's queue).
pub type QueueProbe = Arc<dyn Fn() -> usize + Send + Sync>;

/// What a sample reads besides Valor's process, once told where.
#[derive(Default)]
pub struct Probes {
    disk: OnceLock<PathBuf>,
    queue: OnceLock<QueueProbe>,
}

impl Probes {
    /// Fills the sample's free disk and queue (statvfs is one system call).
    pub(crate) fn read_into(&self, sample: &mut Sample) {
        if let Some(path) = self.disk.get() {
            match nix::sys::statvfs::statvfs(path) {
                // The field types differ by platform (u32 on some 32-bit ones).
                #[allow(clippy::unnecessary_cast)]
                Ok(fs) => {
                    let block = fs.fragment_size() as u64;
                    sample.disk = Some((
                        fs.blocks_available() as u64 * block,
                        fs.blocks() as u64 * block,
                    ));
                }
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "cannot read free disk")
                }
            }
        }
        if let Some(queue) = self.queue.get() {
            sample.queued = queue();
        }
    }
}

/// The trends' active alerts and what the latest look found.
#[derive(Debug, Default)]
pub struct TrendBook {
    alerts: AlertBook,
    findings: Findings,
}

/// Forecasts closer than these are warnings, and closer still critical (ms).
const DISK_WARN_MS: u64 = 7 * 86_400_000;
const DISK_CRITICAL_MS: u64 = 86_400_000;
const MEMORY_WARN_MS: u64 = 86_400_000;
const MEMORY_CRITICAL_MS: u64 = 2 * 3_600_000;
const SPEND_CRITICAL_MS: u64 = 3 * 86_400_000;

fn anomaly_kind(metric: Metric) -> AlertKind {
    match metric {
        Metric::Cost => AlertKind::CostAnomaly,
        Metric::FailureRate => AlertKind::FailureAnomaly,
        Metric::Duration => AlertKind::DurationAnomaly,
        Metric::Memory => AlertKind::MemoryAnomaly,
        Metric::Queue => AlertKind::QueueAnomaly,
    }
}

fn forecast_kind(resource: Resource) -> AlertKind {
    match resource {
        Resource::Disk => AlertKind::DiskForecast,
        Resource::Memory => AlertKind::MemoryForecast,
        Resource::Spend => AlertKind::SpendForecast,
    }
}

const TREND_KINDS: [AlertKind; 8] = [
    AlertKind::CostAnomaly,
    AlertKind::FailureAnomaly,
    AlertKind::DurationAnomaly,
    AlertKind::MemoryAnomaly,
    AlertKind::QueueAnomaly,
    AlertKind::DiskForecast,
    AlertKind::MemoryForecast,
    AlertKind::SpendForecast,
];

/// The alerts the findings call for, by kind.
fn alerts_of(findings: &Findings) -> Vec<(AlertKind, Alert)> {
    let now = findings.at_ms;
    let mut alerts = Vec::new();
    for a in &findings.anomalies {
        let kind = anomaly_kind(a.metric);
        alerts.push((
            kind,
            Alert {
                kind,
                severity: Severity::Warning,
                message: a.describe(),
                action: kind.action().to_owned(),
                value: a.value,
                threshold: a.median,
                since: now / 1000,
            },
        ));
    }
    for f in &findings.forecasts {
        let Some(eta) = f.eta_ms else { continue };
        let left = eta.saturating_sub(now);
        let (warn, critical) = match f.resource {
            Resource::Disk => (DISK_WARN_MS, DISK_CRITICAL_MS),
            Resource::Memory => (MEMORY_WARN_MS, MEMORY_CRITICAL_MS),
            // Any date within the month is worth a warning.
            Resource::Spend => (u64::MAX, SPEND_CRITICAL_MS),
        };
        if left > warn {
            continue;
        }
        let kind = forecast_kind(f.resource);
        alerts.push((
            kind,
            Alert {
                kind,
                severity: if left <= critical {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                message: f.describe(now),
                action: kind.action().to_owned(),
                value: f.now,
                threshold: f.limit,
                since: now / 1000,
            },
        ));
    }
    alerts
}

impl ResourceMonitor {
    /// Samples read free space on the filesystem of `path` (the store's).
    pub fn watch_disk(&self, path: PathBuf) {
        let _ = self.probes.disk.set(path);
    }

    /// Samples read the turns waiting from `probe`.
    pub fn watch_queue(&self, probe: QueueProbe) {
        let _ = self.probes.queue.set(probe);
    }

    /// Takes in a look at the history: its alerts raised, changed or cleared (told like every
    /// alert), its findings kept for the Overview.
    pub fn take_findings(&self, findings: Findings) {
        let wanted = alerts_of(&findings);
        let mut changes = Vec::new();
        {
            let mut book = self.trends.lock().unwrap_or_else(PoisonError::into_inner);
            for kind in TREND_KINDS {
                let alert = (wanted.iter())
                    .find(|(k, _)| *k == kind)
                    .map(|(_, a)| a.clone());
                book.alerts.update(kind, alert, &mut changes);
            }
            book.findings = findings;
        }
        if !changes.is_empty() {
            let at_ms = valor_protocol::time::now_ms();
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            for change in changes {
                self.announce(&mut state, change, at_ms);
            }
        }
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// What the latest look at the history found.
    pub fn findings(&self) -> Findings {
        (self.trends.lock().unwrap_or_else(PoisonError::into_inner))
            .findings
            .clone()
    }

    pub(crate) fn trend_alerts(&self) -> Vec<Alert> {
        (self.trends.lock().unwrap_or_else(PoisonError::into_inner))
            .alerts
            .active()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::trends::{Anomaly, Forecast};

    fn monitor() -> Arc<ResourceMonitor> {
        ResourceMonitor::new(
            valor_config::MonitorConfig::default(),
            crate::ChildRegistry::new(),
            &crate::MetricsRegistry::new(),
        )
        .unwrap()
    }

    #[test]
    fn findings_become_alerts_with_their_numbers_and_clear_when_gone() {
        let monitor = monitor();
        let mut changes = monitor.alert_changes();
        let now = 1_796_650_000_000;
        let findings = Findings {
            at_ms: now,
            anomalies: vec![Anomaly {
                metric: Metric::Cost,
                hour_ms: now / 3_600_000 * 3_600_000 - 3_600_000,
                value: 4.2,
                median: 0.3,
                mad: 0.05,
                days: 28,
                z: 9.1,
            }],
            forecasts: vec![
                Forecast {
                    resource: Resource::Disk,
                    now: 900.0,
                    limit: 0.0,
                    trend: -1000.0,
                    eta_ms: Some(now + 21 * 3_600_000),
                },
                Forecast {
                    resource: Resource::Memory,
                    now: 300.0,
                    limit: 1024.0,
                    trend: 5.0,
                    eta_ms: Some(now + 100 * 86_400_000),
                },
                Forecast {
                    resource: Resource::Spend,
                    now: 10.0,
                    limit: 0.0,
                    trend: 40.0,
                    eta_ms: None,
                },
            ],
        };
        monitor.take_findings(findings.clone());
        let active = monitor.active_alerts();
        let kinds: Vec<AlertKind> = active.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            [AlertKind::DiskForecast, AlertKind::CostAnomaly],
            "most severe first"
        );
        assert_eq!(active[0].severity, Severity::Critical, "full within a day");
        assert!(
            active[1].message.contains("was $4.20")
                && active[1].message.contains("median over 28 days is $0.30"),
            "{}",
            active[1].message
        );
        assert!(matches!(
            changes.try_recv(),
            Ok(crate::alerts::AlertChange::Raised(_))
        ));
        assert_eq!(monitor.findings(), findings);
        // The next look finds nothing: both clear.
        monitor.take_findings(Findings {
            at_ms: now + 600_000,
            ..Findings::default()
        });
        assert!(monitor.active_alerts().is_empty());
        let log = block_on(monitor.alert_log());
        assert!(log.iter().all(|r| r.cleared_ms.is_some()), "{log:?}");
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_sample_reads_free_disk_and_the_queue_once_told_where() {
        let monitor = monitor();
        let dir = tempfile::tempdir().unwrap();
        monitor.watch_disk(dir.path().to_owned());
        monitor.watch_queue(Arc::new(|| 3));
        monitor.tick().unwrap();
        let sample = monitor.latest().unwrap();
        let (free, total) = sample.disk.unwrap();
        assert!(free > 0 && total >= free, "{free} of {total}");
        assert_eq!(sample.queued, 3);
    }
}
