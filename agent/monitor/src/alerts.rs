//! Alerts: raised when a figure crosses its warning or critical level, cleared when it is back
//! below. Each carries a severity and what to do about it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use valor_config::MonitorConfig;

use crate::sample::Sample;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

/// What an alert is about; one active alert per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    ProcessMemory,
    SystemMemory,
    Cpu,
    ChildProcesses,
    StaleChildren,
    /// A part that reports its own health has not been ok for a minute.
    Telegram,
    Claude,
    MemoryIndex,
    MonitorStale,
    /// A figure unusual for its hour (`trends`).
    CostAnomaly,
    FailureAnomaly,
    DurationAnomaly,
    MemoryAnomaly,
    QueueAnomaly,
    /// Something that runs out at its present pace (`trends`).
    DiskForecast,
    MemoryForecast,
    SpendForecast,
}

impl AlertKind {
    /// What the alert is about, for people.
    pub fn describe(self) -> &'static str {
        match self {
            AlertKind::ProcessMemory => "Valor's resident memory",
            AlertKind::SystemMemory => "memory used on this machine",
            AlertKind::Cpu => "Valor's CPU use",
            AlertKind::ChildProcesses => "the number of child processes",
            AlertKind::StaleChildren => "stale child processes",
            AlertKind::Telegram => "Telegram",
            AlertKind::Claude => "the Claude Code driver",
            AlertKind::MemoryIndex => "the memory index",
            AlertKind::MonitorStale => "the resource monitor",
            AlertKind::CostAnomaly => "the cost of an hour",
            AlertKind::FailureAnomaly => "the failure rate of an hour",
            AlertKind::DurationAnomaly => "how long turns take",
            AlertKind::MemoryAnomaly => "Valor's memory for the hour",
            AlertKind::QueueAnomaly => "the queue of turns",
            AlertKind::DiskForecast => "free disk",
            AlertKind::MemoryForecast => "Valor's memory growth",
            AlertKind::SpendForecast => "the month's spend",
        }
    }

    /// What the operator should do about a part's alert.
    pub fn action(self) -> &'static str {
        match self {
            AlertKind::Telegram => {
                "Check this machine's network and the bot token (`valor doctor`); messages sent \
                 meanwhile wait at Telegram and are answered when it is back."
            }
            AlertKind::Claude => {
                "Look at the Claude component on /health and the Logs page: the API may be down \
                 or the CLI failing to start; `valor doctor` checks the CLI."
            }
            AlertKind::MemoryIndex => {
                "Search runs on keywords only until the index is back; see the memory_index \
                 component on /health and the Logs page."
            }
            AlertKind::MonitorStale => {
                "The resource monitor has stopped sampling: restart Valor at a quiet moment."
            }
            AlertKind::CostAnomaly => {
                "Open Turns on the dashboard for the hour: a chat or job may be looping; stop it                  from Chats or pause the job."
            }
            AlertKind::FailureAnomaly => {
                "Open Turns (show: errors) for the kinds of error; overloaded means the API,                  crashed or timeout a local cause in the Logs."
            }
            AlertKind::DurationAnomaly => {
                "Turns are slow: look for API retries in the Logs and for long tool calls on the                  turns' pages."
            }
            AlertKind::MemoryAnomaly | AlertKind::MemoryForecast => {
                "Restart Valor at a quiet moment; if memory keeps growing between restarts,                  report it with the output of /metrics."
            }
            AlertKind::QueueAnomaly => {
                "More turns wait than usual: raise [conversation] max_concurrent if the machine                  has room, or stop a chat's runaway turn."
            }
            AlertKind::DiskForecast => {
                "Free space on the store's disk: old daydream reports, logs and workspaces go                  first; `valor doctor` shows the paths."
            }
            AlertKind::SpendForecast => {
                "See Usage by chat and by model: move a class to a cheaper model in [routing],                  or pause the daydream."
            }
            _ => "",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub severity: Severity,
    pub message: String,
    /// What the operator should do.
    pub action: String,
    pub value: f64,
    pub threshold: f64,
    /// Unix seconds when the alert was first raised.
    pub since: u64,
}

/// A change in the set of active alerts, for logging.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertChange {
    Raised(Alert),
    /// Severity went up or down; the alert stays active.
    SeverityChanged {
        from: Severity,
        alert: Alert,
    },
    Cleared(Alert),
}

/// The active alerts.
#[derive(Debug, Default, Clone)]
pub struct AlertBook {
    active: BTreeMap<AlertKind, Alert>,
}

struct Reading {
    kind: AlertKind,
    value: f64,
    warn: f64,
    critical: f64,
    unit: &'static str,
    what: &'static str,
    action: &'static str,
}

impl AlertBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Active alerts, most severe first.
    pub fn active(&self) -> Vec<Alert> {
        let mut alerts: Vec<Alert> = self.active.values().cloned().collect();
        alerts.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.kind.cmp(&b.kind)));
        alerts
    }

    /// Compares a sample with the thresholds and updates the active alerts.
    pub fn evaluate(&mut self, sample: &Sample, config: &MonitorConfig) -> Vec<AlertChange> {
        let t = &config.thresholds;
        let readings = [
            Reading {
                kind: AlertKind::ProcessMemory,
                value: sample.rss_mb(),
                warn: t.rss_warn_mb as f64,
                critical: t.rss_critical_mb as f64,
                unit: "MiB",
                what: "Valor's resident memory",
                action: "Restart Valor at a quiet moment; if memory keeps growing between restarts, \
                         report it with the output of /metrics.",
            },
            Reading {
                kind: AlertKind::SystemMemory,
                value: sample.system_memory_used_percent(),
                warn: t.system_memory_warn_percent,
                critical: t.system_memory_critical_percent,
                unit: "%",
                what: "Memory used on this machine",
                action: "Stop programs this machine does not need, or give it more memory; new \
                         Claude Code sessions may fail to start.",
            },
            Reading {
                kind: AlertKind::Cpu,
                value: sample.cpu_percent,
                warn: t.cpu_warn_percent,
                critical: t.cpu_critical_percent,
                unit: "% of all cores",
                what: "Valor's CPU use",
                action: "Look for a runaway session in /health and stop it; replies will be slow \
                         until the load drops.",
            },
            Reading {
                kind: AlertKind::ChildProcesses,
                value: sample.children as f64,
                warn: t.children_warn as f64,
                critical: t.children_critical as f64,
                unit: "processes",
                what: "Child processes Valor started",
                action: "Check for stuck turns; each child ends with its turn or its timeout. \
                         Restart Valor if the count does not fall.",
            },
        ];

        let mut changes = Vec::new();
        for r in &readings {
            let severity = if r.value >= r.critical {
                Some((Severity::Critical, r.critical))
            } else if r.value >= r.warn {
                Some((Severity::Warning, r.warn))
            } else {
                None
            };
            let alert = severity.map(|(severity, threshold)| Alert {
                kind: r.kind,
                severity,
                message: format!(
                    "{} is {:.1} {}, at or above the {} level of {} {}",
                    r.what,
                    r.value,
                    r.unit,
                    match severity {
                        Severity::Warning => "warning",
                        Severity::Critical => "critical",
                    },
                    threshold,
                    r.unit
                ),
                action: r.action.to_owned(),
                value: r.value,
                threshold,
                since: sample.taken_at,
            });
            self.update(r.kind, alert, &mut changes);
        }

        let stale = (sample.stale_children > 0).then(|| Alert {
            kind: AlertKind::StaleChildren,
            severity: Severity::Warning,
            message: format!(
                "{} child process(es) have run longer than {} s (oldest {} s)",
                sample.stale_children,
                config.stale_child_secs,
                sample.oldest_child_secs.unwrap_or_default()
            ),
            action:
                "A child this old is most likely stuck: stop its turn, or restart Valor to end \
                     it."
                .to_owned(),
            value: sample.stale_children as f64,
            threshold: config.stale_child_secs as f64,
            since: sample.taken_at,
        });
        self.update(AlertKind::StaleChildren, stale, &mut changes);
        changes
    }

    /// Puts `now` in place of the alert of `kind` (none: cleared), noting the change.
    pub(crate) fn update(
        &mut self,
        kind: AlertKind,
        now: Option<Alert>,
        changes: &mut Vec<AlertChange>,
    ) {
        match (self.active.remove(&kind), now) {
            (None, None) => {}
            (None, Some(alert)) => {
                changes.push(AlertChange::Raised(alert.clone()));
                self.active.insert(kind, alert);
            }
            (Some(old), None) => changes.push(AlertChange::Cleared(old)),
            (Some(old), Some(mut alert)) => {
                alert.since = old.since;
                if old.severity != alert.severity {
                    changes.push(AlertChange::SeverityChanged {
                        from: old.severity,
                        alert: alert.clone(),
                    });
                }
                self.active.insert(kind, alert);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(rss_mb: u64, cpu: f64) -> Sample {
        Sample {
            taken_at: 1000,
            rss_bytes: rss_mb * 1024 * 1024,
            cpu_percent: cpu,
            system_memory_total_bytes: 100,
            system_memory_used_bytes: 50,
            load_average: [0.0; 3],
            children: 0,
            oldest_child_secs: None,
            stale_children: 0,
            disk: None,
            queued: 0,
        }
    }

    #[test]
    fn raised_escalated_eased_and_cleared() {
        let config = MonitorConfig::default();
        let mut book = AlertBook::new();
        assert!(book.evaluate(&sample(100, 1.0), &config).is_empty());

        let changes = book.evaluate(&sample(600, 1.0), &config);
        let [AlertChange::Raised(alert)] = changes.as_slice() else {
            panic!("{changes:?}")
        };
        assert_eq!(alert.kind, AlertKind::ProcessMemory);
        assert_eq!(alert.severity, Severity::Warning);
        assert_eq!(
            alert.message,
            "Valor's resident memory is 600.0 MiB, at or above the warning level of 512 MiB"
        );
        assert!(alert.action.starts_with("Restart Valor"));

        let mut later = sample(2000, 1.0);
        later.taken_at = 2000;
        let changes = book.evaluate(&later, &config);
        let [AlertChange::SeverityChanged { from, alert }] = changes.as_slice() else {
            panic!("{changes:?}")
        };
        assert_eq!(
            (*from, alert.severity),
            (Severity::Warning, Severity::Critical)
        );
        assert_eq!(
            alert.since, 1000,
            "an alert keeps the time it was first raised"
        );

        assert!(
            book.evaluate(&later, &config).is_empty(),
            "no change, no event"
        );
        assert_eq!(book.active().len(), 1);

        let changes = book.evaluate(&sample(100, 1.0), &config);
        assert!(
            matches!(changes.as_slice(), [AlertChange::Cleared(a)] if a.kind == AlertKind::ProcessMemory)
        );
        assert!(book.active().is_empty());
    }

    #[test]
    fn several_alerts_sort_most_severe_first() {
        let config = MonitorConfig::default();
        let mut book = AlertBook::new();
        let mut s = sample(600, 99.0);
        s.stale_children = 1;
        s.children = 1;
        s.oldest_child_secs = Some(90_000);
        s.system_memory_used_bytes = 96;
        book.evaluate(&s, &config);
        let kinds: Vec<(AlertKind, Severity)> =
            book.active().iter().map(|a| (a.kind, a.severity)).collect();
        assert_eq!(
            kinds,
            [
                (AlertKind::SystemMemory, Severity::Critical),
                (AlertKind::Cpu, Severity::Critical),
                (AlertKind::ProcessMemory, Severity::Warning),
                (AlertKind::StaleChildren, Severity::Warning),
            ]
        );
    }
}
