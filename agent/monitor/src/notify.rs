//! Alerts that reach someone: warning and critical alerts, and their recovery, told to the
//! admin chat with what to do, at most one message per alert per cooldown. A flapping figure
//! (raised, cleared, raised again within the cooldown) makes one message, not a stream; a
//! recovery is told only for an alert that was told; an escalation to critical always is.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::alerts::{Alert, AlertChange, AlertKind, Severity};

/// Who hears about alerts: a chat's sender (the Telegram pacer).
pub type AlertSender = Arc<dyn Fn(String) + Send + Sync>;

/// Decides which alert changes become messages.
#[derive(Debug)]
pub struct AlertNotifier {
    cooldown: Duration,
    /// When each kind was last told, and whether its current alert was told.
    told: BTreeMap<AlertKind, (Instant, bool)>,
}

fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Warning => "Warning",
        Severity::Critical => "CRITICAL",
    }
}

fn raised_text(alert: &Alert) -> String {
    format!(
        "⚠️ {}: {}\nWhat to do: {}",
        severity_word(alert.severity),
        alert.message,
        alert.action
    )
}

impl AlertNotifier {
    pub fn new(cooldown: Duration) -> AlertNotifier {
        AlertNotifier {
            cooldown,
            told: BTreeMap::new(),
        }
    }

    /// The message for `change` at `now`, if one is due.
    pub fn message(&mut self, change: &AlertChange, now: Instant) -> Option<String> {
        match change {
            AlertChange::Raised(alert) => {
                let recent = self
                    .told
                    .get(&alert.kind)
                    .is_some_and(|(at, _)| now.duration_since(*at) < self.cooldown);
                if recent {
                    // Still note that this alert was not told, so its recovery is not either.
                    if let Some(entry) = self.told.get_mut(&alert.kind) {
                        entry.1 = false;
                    }
                    return None;
                }
                self.told.insert(alert.kind, (now, true));
                Some(raised_text(alert))
            }
            AlertChange::SeverityChanged { from, alert } => {
                if alert.severity == Severity::Critical && *from == Severity::Warning {
                    self.told.insert(alert.kind, (now, true));
                    return Some(raised_text(alert));
                }
                None
            }
            AlertChange::Cleared(alert) => {
                let told = self.told.get_mut(&alert.kind)?;
                if !told.1 {
                    return None;
                }
                told.1 = false;
                Some(format!(
                    "✅ Recovered: {} is back to normal.",
                    alert.kind.describe()
                ))
            }
        }
    }

    /// Tells `send` about the changes on `changes` until `shutdown`; each message sent is
    /// noted on its alert in `monitor` (what was done about it).
    pub async fn run(
        mut self,
        mut changes: broadcast::Receiver<AlertChange>,
        send: AlertSender,
        monitor: Option<std::sync::Arc<crate::ResourceMonitor>>,
        shutdown: CancellationToken,
    ) {
        loop {
            let change = tokio::select! {
                () = shutdown.cancelled() => return,
                change = changes.recv() => change,
            };
            match change {
                Ok(change) => {
                    let kind = match &change {
                        AlertChange::Raised(a) | AlertChange::Cleared(a) => a.kind,
                        AlertChange::SeverityChanged { alert, .. } => alert.kind,
                    };
                    let now_ms = valor_protocol::time::now_ms();
                    if let Some(monitor) = &monitor
                        && monitor.is_silenced(kind, now_ms)
                    {
                        // Silenced by the operator: shown on the dashboard, not told.
                        if matches!(change, AlertChange::Raised(_)) {
                            monitor.note_done(kind, "not told: silenced on the dashboard");
                        }
                        continue;
                    }
                    if let Some(text) = self.message(&change, Instant::now()) {
                        send(text);
                        if let Some(monitor) = &monitor {
                            let (kind, what) = match &change {
                                AlertChange::Cleared(a) => {
                                    (a.kind, "recovery told to the admin chat")
                                }
                                AlertChange::Raised(a)
                                | AlertChange::SeverityChanged { alert: a, .. } => {
                                    (a.kind, "told to the admin chat")
                                }
                            };
                            monitor.note_done(kind, what);
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "alert changes came faster than they were told");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::tests::sample_at;

    fn alert(kind: AlertKind, severity: Severity) -> Alert {
        Alert {
            kind,
            severity,
            message: "Valor's resident memory is 600 MiB (warning at 512 MiB)".to_owned(),
            action: "Restart Valor at a quiet moment.".to_owned(),
            value: 600.0,
            threshold: 512.0,
            since: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_alert_and_its_recovery_are_told_once_each_within_the_cooldown() {
        let mut notifier = AlertNotifier::new(Duration::from_secs(3600));
        let memory = alert(AlertKind::ProcessMemory, Severity::Warning);
        let raised = AlertChange::Raised(memory.clone());
        let cleared = AlertChange::Cleared(memory.clone());

        let first = notifier.message(&raised, Instant::now()).unwrap();
        assert_eq!(
            first,
            "⚠️ Warning: Valor's resident memory is 600 MiB (warning at 512 MiB)\nWhat to do: Restart Valor at a quiet moment."
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            notifier.message(&cleared, Instant::now()).as_deref(),
            Some("✅ Recovered: Valor's resident memory is back to normal.")
        );
        // Flapping within the hour: neither the raise nor its recovery again.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(notifier.message(&raised, Instant::now()), None);
        assert_eq!(notifier.message(&cleared, Instant::now()), None);
        // An escalation to critical is always told; other kinds have their own cooldown.
        let critical = alert(AlertKind::ProcessMemory, Severity::Critical);
        let escalated = AlertChange::SeverityChanged {
            from: Severity::Warning,
            alert: critical.clone(),
        };
        assert!(
            notifier
                .message(&escalated, Instant::now())
                .unwrap()
                .starts_with("⚠️ CRITICAL")
        );
        let calmer = AlertChange::SeverityChanged {
            from: Severity::Critical,
            alert: memory.clone(),
        };
        assert_eq!(notifier.message(&calmer, Instant::now()), None);
        let cpu = AlertChange::Raised(alert(AlertKind::Cpu, Severity::Warning));
        assert!(notifier.message(&cpu, Instant::now()).is_some());
        // After the cooldown the same alert is told again.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(notifier.message(&raised, Instant::now()).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_notifier_sends_what_the_monitor_publishes_and_notes_it_on_the_alert() {
        let monitor = monitor();
        let rx = monitor.alert_changes();
        let sent: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let into = Arc::clone(&sent);
        let send: AlertSender = Arc::new(move |text| {
            into.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(text)
        });
        let stop = CancellationToken::new();
        let notifier = AlertNotifier::new(Duration::from_secs(60));
        let task = tokio::spawn(notifier.run(rx, send, Some(Arc::clone(&monitor)), stop.clone()));
        monitor.record(sample_at(600, 1)); // raised
        monitor.record(sample_at(5, 2)); // cleared
        while sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
            < 2
        {
            tokio::task::yield_now().await;
        }
        stop.cancel();
        task.await.ok();
        let sent = sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        assert!(sent[0].starts_with("⚠️ Warning"), "{sent:?}");
        assert!(sent[1].starts_with("✅ Recovered"), "{sent:?}");
        let done: Vec<String> = monitor.alert_log().await[0]
            .done
            .iter()
            .map(|d| d.1.clone())
            .collect();
        assert_eq!(
            done,
            ["told to the admin chat", "recovery told to the admin chat"]
        );
    }

    /// A monitor with the default configuration.
    fn monitor() -> Arc<crate::ResourceMonitor> {
        crate::ResourceMonitor::new(
            valor_config::MonitorConfig::default(),
            crate::ChildRegistry::new(),
            &crate::MetricsRegistry::new(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn lock<T: Clone>(m: &std::sync::Mutex<T>) -> T {
        m.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silenced_alert_is_shown_not_told_and_an_acknowledged_one_says_so() {
        let monitor = monitor();
        let now = valor_protocol::time::now_ms();
        monitor.silence(AlertKind::ProcessMemory, now + 3_600_000);
        assert_eq!(
            monitor.silences(now),
            [(AlertKind::ProcessMemory, now + 3_600_000)]
        );
        assert!(
            monitor.silences(now + 3_600_000).is_empty(),
            "over after its hour"
        );
        let rx = monitor.alert_changes();
        let sent: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let into = Arc::clone(&sent);
        let send: AlertSender = Arc::new(move |text| {
            into.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(text)
        });
        let stop = CancellationToken::new();
        let notifier = AlertNotifier::new(Duration::from_secs(60));
        let task = tokio::spawn(notifier.run(rx, send, Some(Arc::clone(&monitor)), stop.clone()));
        assert!(
            !monitor.acknowledge(AlertKind::ProcessMemory),
            "nothing active yet"
        );
        monitor.record(sample_at(600, 1)); // raised, silenced
        while monitor
            .alert_log()
            .await
            .first()
            .is_none_or(|r| r.done.is_empty())
        {
            tokio::task::yield_now().await;
        }
        assert!(lock(&sent).is_empty(), "silenced: {:?}", lock(&sent));
        assert!(monitor.acknowledge(AlertKind::ProcessMemory));
        let record = monitor.alert_log().await.remove(0);
        assert!(record.acknowledged_ms.is_some());
        let done: Vec<String> = record.done.iter().map(|d| d.1.clone()).collect();
        assert_eq!(
            done,
            [
                "not told: silenced on the dashboard",
                "acknowledged on the dashboard"
            ]
        );
        // Silence lifted: the next alert is told.
        monitor.silence(AlertKind::ProcessMemory, 0);
        monitor.record(sample_at(5, 2)); // cleared (not told: its raise was not)
        monitor.record(sample_at(600, 3)); // raised again
        while lock(&sent).is_empty() {
            tokio::task::yield_now().await;
        }
        stop.cancel();
        task.await.ok();
        assert!(
            lock(&sent)[0].starts_with("⚠️ Warning"),
            "{:?}",
            lock(&sent)
        );
    }

    #[tokio::test]
    async fn a_silence_outlives_a_restart_and_a_lifted_one_does_not_come_back() {
        let log = Arc::new(crate::history::InMemoryHealthLog::default());
        let start = monitor;
        let now = valor_protocol::time::now_ms();
        let until = now + 8 * 3_600_000;
        {
            let monitor = start();
            monitor
                .keep_history(crate::history::HealthRecorder::start(log.clone()))
                .await;
            monitor.record(sample_at(600, 1)); // a memory alert
            monitor.silence(AlertKind::ProcessMemory, until);
            monitor.alert_log().await; // written
        }
        let monitor = start();
        monitor
            .keep_history(crate::history::HealthRecorder::start(log.clone()))
            .await;
        assert_eq!(monitor.silences(now), [(AlertKind::ProcessMemory, until)]);
        assert!(monitor.is_silenced(AlertKind::ProcessMemory, now));
        monitor.silence(AlertKind::ProcessMemory, 0);
        monitor.alert_log().await;
        let again = start();
        again
            .keep_history(crate::history::HealthRecorder::start(log))
            .await;
        assert!(again.silences(now).is_empty(), "lifted stays lifted");
    }
}
