//! The resource monitor: samples on an interval, keeps a bounded history, raises and clears
//! alerts, scores health and publishes the figures as metrics.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use valor_config::MonitorConfig;

use crate::MonitorError;
use crate::alerts::{Alert, AlertBook, AlertChange, Severity};
use crate::children::ChildRegistry;
use crate::components::{ComponentBook, ComponentState};
use crate::metrics::{Counter, Gauge, MetricsRegistry};
use crate::sample::{Sample, Sampler};
use crate::score::Status;
use crate::score::{HealthReport, assess};
use crate::server::HealthComponent;

/// Shared monitor; cheap to clone through `Arc`.
pub struct ResourceMonitor {
    config: MonitorConfig,
    sampler: Mutex<Sampler>,
    pub(crate) state: RwLock<State>,
    started: Instant,
    gauges: MonitorGauges,
    /// Alert changes as they happen, for whoever tells people about them.
    changes: tokio::sync::broadcast::Sender<AlertChange>,
    /// Where samples are kept over time, once the store is open.
    history: std::sync::OnceLock<crate::history::HealthRecorder>,
    /// The parts that report their own health, and what is known of them over time.
    components: RwLock<Vec<Arc<dyn HealthComponent>>>,
    book: Mutex<ComponentBook>,
    started_ms: u64,
    /// Moves with every sample and every look at the parts (for live views).
    pub(crate) version: tokio::sync::watch::Sender<u64>,
    /// What a sample also reads: the store's filesystem, the turns waiting.
    pub(crate) probes: crate::assess::Probes,
    /// The trends' alerts and latest findings.
    pub(crate) trends: Mutex<crate::assess::TrendBook>,
}

/// How often the parts' own health is looked at between samples: a failing part is alerted on
/// within this of its minute.
pub const COMPONENT_EVERY: Duration = Duration::from_secs(5);
/// Samples older than this many intervals mean the monitor has stalled.
const STALE_INTERVALS: u64 = 3;

#[derive(Default)]
pub(crate) struct State {
    history: VecDeque<Sample>,
    alerts: AlertBook,
    report: Option<HealthReport>,
    /// Alerts raised since start, newest last, with when they cleared.
    log: VecDeque<AlertRecord>,
    /// Kinds the operator silenced: not told to the admin chat until then (Unix ms).
    silenced: std::collections::BTreeMap<crate::AlertKind, u64>,
}

/// Alerts the log keeps at most.
const ALERT_LOG: usize = 200;

/// An alert as it happened: raised, and cleared (none while active).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlertRecord {
    pub alert: crate::Alert,
    /// Unix milliseconds.
    pub raised_ms: u64,
    pub cleared_ms: Option<u64>,
    /// Valor stopped while it was active: it ended with that run, not by recovering.
    #[serde(default)]
    pub ended_by_restart: bool,
    /// What was done about it: who was told, when (Unix milliseconds, what).
    #[serde(default)]
    pub done: Vec<(u64, String)>,
    /// When the operator acknowledged it (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_ms: Option<u64>,
    /// Alerts of its kind are not told until then (Unix ms): kept here so a silence outlives
    /// a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_until_ms: Option<u64>,
}

/// Notes a change in the log; returns the record it touched.
fn note_change(
    log: &mut VecDeque<AlertRecord>,
    change: &AlertChange,
    at_ms: u64,
) -> Option<AlertRecord> {
    let kind = match change {
        AlertChange::Raised(a) | AlertChange::Cleared(a) => a.kind,
        AlertChange::SeverityChanged { alert, .. } => alert.kind,
    };
    note_in(log, change, at_ms);
    log.iter().rev().find(|r| r.alert.kind == kind).cloned()
}

fn note_in(log: &mut VecDeque<AlertRecord>, change: &AlertChange, at_ms: u64) {
    match change {
        AlertChange::Raised(alert) => {
            if log.len() >= ALERT_LOG {
                log.pop_front();
            }
            log.push_back(AlertRecord {
                alert: alert.clone(),
                raised_ms: at_ms,
                cleared_ms: None,
                ended_by_restart: false,
                done: Vec::new(),
                acknowledged_ms: None,
                silenced_until_ms: None,
            });
        }
        AlertChange::SeverityChanged { alert, .. } => {
            if let Some(record) = log
                .iter_mut()
                .rev()
                .find(|r| r.alert.kind == alert.kind && r.cleared_ms.is_none())
            {
                record.alert = alert.clone();
            }
        }
        AlertChange::Cleared(alert) => {
            if let Some(record) = log
                .iter_mut()
                .rev()
                .find(|r| r.alert.kind == alert.kind && r.cleared_ms.is_none())
            {
                record.cleared_ms = Some(at_ms);
            }
        }
    }
}

struct MonitorGauges {
    score: Gauge,
    status: Gauge,
    rss: Gauge,
    cpu: Gauge,
    system_used: Gauge,
    system_total: Gauge,
    load: [Gauge; 3],
    children: Gauge,
    oldest_child: Gauge,
    alerts_warning: Gauge,
    alerts_critical: Gauge,
    uptime: Gauge,
    samples: Counter,
    sample_errors: Counter,
}

impl MonitorGauges {
    fn register(m: &MetricsRegistry) -> Result<Self, MonitorError> {
        let load = |window| {
            m.gauge(
                "valor_system_load_average",
                "Load average of the machine.",
                &[("window", window)],
            )
        };
        let alerts = |severity| {
            m.gauge(
                "valor_alerts_active",
                "Active resource alerts.",
                &[("severity", severity)],
            )
        };
        m.gauge(
            "valor_build_info",
            "Valor's version.",
            &[("version", env!("CARGO_PKG_VERSION"))],
        )?
        .set(1.0);
        Ok(MonitorGauges {
            score: m.gauge("valor_health_score", "Health score, 0-100.", &[])?,
            status: m.gauge(
                "valor_health_status",
                "Health status: 0 ok, 1 degraded, 2 unhealthy.",
                &[],
            )?,
            rss: m.gauge(
                "valor_process_resident_memory_bytes",
                "Valor's resident memory.",
                &[],
            )?,
            cpu: m.gauge(
                "valor_process_cpu_percent",
                "Valor's CPU use, percent of all cores.",
                &[],
            )?,
            system_used: m.gauge(
                "valor_system_memory_used_bytes",
                "Memory used on the machine.",
                &[],
            )?,
            system_total: m.gauge(
                "valor_system_memory_total_bytes",
                "Memory of the machine.",
                &[],
            )?,
            load: [load("1m")?, load("5m")?, load("15m")?],
            children: m.gauge(
                "valor_child_processes",
                "Live child processes Valor started.",
                &[],
            )?,
            oldest_child: m.gauge(
                "valor_oldest_child_process_seconds",
                "Age of the oldest live child process (0 when none).",
                &[],
            )?,
            alerts_warning: alerts("warning")?,
            alerts_critical: alerts("critical")?,
            uptime: m.gauge("valor_uptime_seconds", "Seconds since Valor started.", &[])?,
            samples: m.counter(
                "valor_monitor_samples_total",
                "Resource samples taken.",
                &[],
            )?,
            sample_errors: m.counter(
                "valor_monitor_sample_errors_total",
                "Resource samples that failed.",
                &[],
            )?,
        })
    }
}

impl ResourceMonitor {
    pub fn new(
        config: MonitorConfig,
        children: ChildRegistry,
        metrics: &MetricsRegistry,
    ) -> Result<Arc<Self>, MonitorError> {
        let sampler = Sampler::new(children, Duration::from_secs(config.stale_child_secs))?;
        let part_alert_after_ms = config.part_alert_after_secs.saturating_mul(1000);
        Ok(Arc::new(ResourceMonitor {
            gauges: MonitorGauges::register(metrics)?,
            config,
            sampler: Mutex::new(sampler),
            state: RwLock::new(State::default()),
            started: Instant::now(),
            changes: tokio::sync::broadcast::channel(64).0,
            history: std::sync::OnceLock::new(),
            components: RwLock::new(Vec::new()),
            book: Mutex::new(ComponentBook::new(part_alert_after_ms)),
            started_ms: valor_protocol::time::now_ms(),
            version: tokio::sync::watch::channel(0).0,
            probes: crate::assess::Probes::default(),
            trends: Mutex::new(crate::assess::TrendBook::default()),
        }))
    }

    /// Takes a sample now and records it. sysinfo reads /proc synchronously, a few hundred
    /// microseconds for Valor's own process.
    pub fn tick(&self) -> Result<HealthReport, MonitorError> {
        let sample = self
            .sampler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sample();
        match sample {
            Ok(mut sample) => {
                self.probes.read_into(&mut sample);
                Ok(self.record(sample))
            }
            Err(e) => {
                self.gauges.sample_errors.inc();
                Err(e)
            }
        }
    }

    /// Records a sample: history, alerts, score, metrics. Public so callers can feed samples.
    pub fn record(&self, sample: Sample) -> HealthReport {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        for change in state.alerts.evaluate(&sample, &self.config) {
            self.announce(&mut state, change, sample.taken_at.saturating_mul(1000));
        }
        let report = assess(&sample, &state.alerts.active(), &self.config);
        self.publish(&sample, &report);
        if let Some(history) = self.history.get() {
            history.add(&sample, report.score);
        }
        if state.history.len() >= self.config.history_len {
            state.history.pop_front();
        }
        state.history.push_back(sample);
        state.report = Some(report.clone());
        self.version.send_modify(|v| *v = v.wrapping_add(1));
        report
    }

    /// Logs an alert change, keeps it in the log and the store, and tells whoever listens.
    pub(crate) fn announce(&self, state: &mut State, change: AlertChange, at_ms: u64) {
        log_change(&change);
        let record = note_change(&mut state.log, &change, at_ms);
        if let (Some(history), Some(record)) = (self.history.get(), record) {
            history.keep_alert(&record);
        }
        // Nobody listening is fine: the change is logged and on /health.
        let _ = self.changes.send(change);
    }

    /// Moves with every sample and every look at the parts.
    pub fn updates(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// When this monitor (Valor) started, Unix milliseconds.
    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }

    /// Adds a part that reports its own health (`/health`, the Overview, its alerts).
    pub fn add_component(&self, component: Arc<dyn HealthComponent>) {
        (self
            .components
            .write()
            .unwrap_or_else(PoisonError::into_inner))
        .push(component);
    }

    /// Every part now, the monitor itself first: each part's check taken in, alerts raised
    /// for parts not ok for a minute and cleared for those back. Cheap: each check reads a
    /// few figures kept in memory.
    pub fn check_components(&self) -> Vec<ComponentState> {
        let now_ms = valor_protocol::time::now_ms();
        let mut checks = vec![self.own_check(now_ms)];
        let parts = self
            .components
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for part in parts {
            let (status, figures) = part.check();
            checks.push((part.name().to_owned(), status, figures));
        }
        let checked = (self.book.lock().unwrap_or_else(PoisonError::into_inner)).update(
            checks,
            self.started_ms,
            now_ms,
        );
        if !checked.changes.is_empty() {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            for change in checked.changes {
                self.announce(&mut state, change, now_ms);
            }
        }
        // Only what a page shows moves the version: a page that reads the parts must not
        // wake itself (and every other page) again.
        if checked.moved {
            self.version.send_modify(|v| *v = v.wrapping_add(1));
        }
        checked.states
    }

    /// The monitor as a part: degraded when its latest sample is older than three intervals.
    fn own_check(
        &self,
        now_ms: u64,
    ) -> (String, Status, serde_json::Map<String, serde_json::Value>) {
        let interval = self.interval().as_secs();
        let age = self
            .latest()
            .map(|s| (now_ms / 1000).saturating_sub(s.taken_at));
        let status = match age {
            Some(age) if age <= interval * STALE_INTERVALS => Status::Ok,
            _ => Status::Degraded,
        };
        let mut figures = serde_json::Map::new();
        figures.insert("sample_age_secs".into(), serde_json::json!(age));
        figures.insert("interval_secs".into(), serde_json::json!(interval));
        ("monitor".to_owned(), status, figures)
    }

    /// Every active alert, the resources' and the parts', most severe first.
    pub fn active_alerts(&self) -> Vec<Alert> {
        let mut alerts = self.read().alerts.active();
        let book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        alerts.extend(book.active());
        alerts.extend(self.trend_alerts());
        alerts.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.kind.cmp(&b.kind)));
        alerts
    }

    fn publish(&self, sample: &Sample, report: &HealthReport) {
        let g = &self.gauges;
        g.samples.inc();
        g.score.set(f64::from(report.score));
        g.status.set(f64::from(report.status.code()));
        g.rss.set(sample.rss_bytes as f64);
        g.cpu.set(sample.cpu_percent);
        g.system_used.set(sample.system_memory_used_bytes as f64);
        g.system_total.set(sample.system_memory_total_bytes as f64);
        for (gauge, value) in g.load.iter().zip(sample.load_average) {
            gauge.set(value);
        }
        g.children.set(sample.children as f64);
        g.oldest_child
            .set(sample.oldest_child_secs.unwrap_or_default() as f64);
        let critical = report
            .alerts
            .iter()
            .filter(|a| a.severity == Severity::Critical)
            .count();
        g.alerts_critical.set(critical as f64);
        g.alerts_warning
            .set((report.alerts.len() - critical) as f64);
    }

    /// Keeps every later sample over time through `recorder` (set once; a second call is
    /// ignored).
    pub async fn keep_history(&self, recorder: crate::history::HealthRecorder) {
        let now_ms = valor_protocol::time::now_ms();
        recorder.close_left_open(now_ms, ALERT_LOG).await;
        // Silences still in force come back (the newest record of a kind says).
        let mut seen = std::collections::BTreeSet::new();
        let kept = recorder.alerts(ALERT_LOG).await;
        {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            for record in kept {
                if seen.insert(record.alert.kind)
                    && let Some(until) = record.silenced_until_ms.filter(|u| *u > now_ms)
                {
                    state.silenced.insert(record.alert.kind, until);
                    // Its record is where the silence is changed or lifted later.
                    state.log.push_front(record);
                }
            }
        }
        let _ = self.history.set(recorder);
    }

    /// Kept points of `resolution` since `since_ms` (none without a store).
    pub async fn health_points(
        &self,
        resolution: valor_protocol::health::Resolution,
        since_ms: u64,
    ) -> Vec<valor_protocol::health::HealthPoint> {
        match self.history.get() {
            Some(history) => history.points(resolution, since_ms).await,
            None => Vec::new(),
        }
    }

    /// Alert changes (raised, severity changed, cleared) from now on; a receiver that falls
    /// more than 64 behind skips the oldest.
    pub fn alert_changes(&self) -> tokio::sync::broadcast::Receiver<AlertChange> {
        self.changes.subscribe()
    }

    /// Alerts (at most 200), newest first, with when they cleared: those kept in the store
    /// (earlier runs' too) once history is kept, else those raised since start.
    pub async fn alert_log(&self) -> Vec<AlertRecord> {
        match self.history.get() {
            Some(history) => history.alerts(ALERT_LOG).await,
            None => self.read().log.iter().rev().cloned().collect(),
        }
    }

    /// Notes what was done about the alert of `kind` (the latest one), e.g. that the admin
    /// chat was told, for the dashboard's Alerts page.
    pub fn note_done(&self, kind: crate::AlertKind, what: &str) {
        self.change_latest(kind, |record, at_ms| {
            if record.done.len() < 20 {
                record.done.push((at_ms, what.to_owned()));
            }
        });
    }

    /// Changes the latest alert of `kind` (kept in the store too); whether there was one.
    fn change_latest(
        &self,
        kind: crate::AlertKind,
        change: impl FnOnce(&mut AlertRecord, u64),
    ) -> bool {
        let at_ms = valor_protocol::time::now_ms();
        let record = {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            let Some(record) = state.log.iter_mut().rev().find(|r| r.alert.kind == kind) else {
                return false;
            };
            change(record, at_ms);
            record.clone()
        };
        if let Some(history) = self.history.get() {
            history.keep_alert(&record);
        }
        true
    }

    /// The operator has seen the active alert of `kind`: noted on it; whether one was active.
    pub fn acknowledge(&self, kind: crate::AlertKind) -> bool {
        let active = self.read().alerts.active().iter().any(|a| a.kind == kind);
        active
            && self.change_latest(kind, |record, at_ms| {
                record.acknowledged_ms.get_or_insert(at_ms);
                if record.done.len() < 20 {
                    record
                        .done
                        .push((at_ms, "acknowledged on the dashboard".to_owned()));
                }
            })
    }

    /// Alerts of `kind` are not told to the admin chat until `until_ms` (0: told again now);
    /// they still show on the dashboard.
    pub fn silence(&self, kind: crate::AlertKind, until_ms: u64) {
        {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            if until_ms == 0 {
                state.silenced.remove(&kind);
            } else {
                state.silenced.insert(kind, until_ms);
            }
        }
        // Kept on the kind's latest alert, so it outlives a restart.
        self.change_latest(kind, |record, _| {
            record.silenced_until_ms = (until_ms > 0).then_some(until_ms);
        });
    }

    /// The silences in force at `now_ms`: (kind, until).
    pub fn silences(&self, now_ms: u64) -> Vec<(crate::AlertKind, u64)> {
        (self.read().silenced.iter())
            .filter(|(_, until)| **until > now_ms)
            .map(|(kind, until)| (*kind, *until))
            .collect()
    }

    /// Whether alerts of `kind` are silenced at `now_ms`.
    pub fn is_silenced(&self, kind: crate::AlertKind, now_ms: u64) -> bool {
        self.read()
            .silenced
            .get(&kind)
            .is_some_and(|until| *until > now_ms)
    }

    /// The latest report, if a sample has been taken.
    pub fn report(&self) -> Option<HealthReport> {
        self.read().report.clone()
    }

    /// The latest sample.
    pub fn latest(&self) -> Option<Sample> {
        self.read().history.back().cloned()
    }

    /// Samples kept, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.read().history.iter().cloned().collect()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Refreshes figures computed on demand (uptime) before metrics are rendered.
    pub fn refresh_gauges(&self) {
        self.gauges.uptime.set(self.uptime().as_secs_f64().floor());
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.config.interval_secs)
    }

    /// Samples every interval, starting one interval from now (the caller takes the first
    /// sample with [`ResourceMonitor::tick`] before serving), until `shutdown` is cancelled.
    /// A sample that fails is logged and counted; the last good report stays in place (and
    /// /health shows its age).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let period = self.interval();
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = interval.tick() => {
                    if let Err(e) = self.tick() {
                        tracing::warn!(error = %e, "resource sample failed");
                    }
                }
            }
        }
        tracing::debug!("resource monitor stopped");
    }

    /// Looks at the parts every [`COMPONENT_EVERY`] until `shutdown`, so a part's alert comes
    /// within seconds of its minute (the resource tick is every 30 s).
    pub async fn watch_components(self: Arc<Self>, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(COMPONENT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = every.tick() => {
                    self.check_components();
                }
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }
}

fn log_change(change: &AlertChange) {
    match change {
        AlertChange::Raised(a) => tracing::warn!(
            alert = ?a.kind, severity = ?a.severity, value = a.value, threshold = a.threshold,
            action = %a.action, "alert raised: {}", a.message
        ),
        AlertChange::SeverityChanged { from, alert: a } => tracing::warn!(
            alert = ?a.kind, from = ?from, severity = ?a.severity, value = a.value,
            "alert changed severity: {}", a.message
        ),
        AlertChange::Cleared(a) => {
            tracing::info!(alert = ?a.kind, "alert cleared")
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::score::Status;

    /// A sample of `rss_mb` taken at `taken_at`, the rest quiet (the notifier's tests too).
    pub(crate) fn sample_at(rss_mb: u64, taken_at: u64) -> Sample {
        Sample {
            taken_at,
            rss_bytes: rss_mb * 1024 * 1024,
            cpu_percent: 0.0,
            system_memory_total_bytes: 100,
            system_memory_used_bytes: 10,
            load_average: [0.0; 3],
            children: 0,
            oldest_child_secs: None,
            stale_children: 0,
            disk: None,
            queued: 0,
        }
    }

    fn sample(rss_mb: u64) -> Sample {
        sample_at(rss_mb, 1)
    }

    #[tokio::test]
    async fn history_is_bounded_and_metrics_follow_the_last_sample() {
        let config = MonitorConfig {
            history_len: 3,
            ..MonitorConfig::default()
        };
        let metrics = MetricsRegistry::new();
        let monitor = ResourceMonitor::new(config, ChildRegistry::new(), &metrics).unwrap();
        for rss in [1, 2, 3, 4, 600] {
            monitor.record(sample(rss));
        }
        let kept: Vec<u64> = monitor
            .history()
            .iter()
            .map(|s| s.rss_bytes >> 20)
            .collect();
        assert_eq!(kept, [3, 4, 600]);
        let report = monitor.report().unwrap();
        assert_eq!(report.status, Status::Degraded);
        let text = metrics.render();
        assert!(
            text.contains("valor_process_resident_memory_bytes 629145600\n"),
            "{text}"
        );
        assert!(
            text.contains("valor_alerts_active{severity=\"warning\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("valor_health_status 1\n"), "{text}");
        assert!(text.contains("valor_monitor_samples_total 5\n"), "{text}");

        monitor.record(sample(5));
        assert!(
            metrics
                .render()
                .contains("valor_alerts_active{severity=\"warning\"} 0\n")
        );
        assert_eq!(monitor.report().unwrap().status, Status::Ok);
        // The alert stays in the log with when it cleared; a new one comes first.
        let mut again = sample(2000);
        again.taken_at = 9;
        monitor.record(again);
        let log = monitor.alert_log().await;
        assert_eq!(log.len(), 2);
        assert_eq!((log[1].raised_ms, log[1].cleared_ms), (1000, Some(1000)));
        assert_eq!(log[0].cleared_ms, None);
        assert_eq!(log[0].alert.severity, crate::Severity::Critical);
    }

    #[tokio::test]
    async fn past_alerts_are_kept_across_a_restart() {
        #![allow(clippy::unwrap_used)]
        let log: Arc<dyn crate::history::HealthLog> =
            Arc::new(crate::history::InMemoryHealthLog::default());
        let start = |log: &Arc<dyn crate::history::HealthLog>| {
            let monitor = ResourceMonitor::new(
                MonitorConfig::default(),
                ChildRegistry::new(),
                &MetricsRegistry::new(),
            )
            .unwrap();
            let recorder = crate::history::HealthRecorder::start(Arc::clone(log));
            (monitor, recorder)
        };
        let (monitor, recorder) = start(&log);
        monitor.keep_history(recorder).await;
        monitor.record(sample(600)); // raised
        monitor.record(sample(5)); // cleared
        let mut again = sample(600);
        again.taken_at = 9;
        monitor.record(again); // raised again, left active
        monitor.alert_log().await;
        drop(monitor);

        let (monitor, recorder) = start(&log);
        monitor.keep_history(recorder).await;
        let log = monitor.alert_log().await;
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(
            (log[1].cleared_ms, log[1].ended_by_restart),
            (Some(1000), false)
        );
        assert!(log[0].cleared_ms.is_some(), "the run that watched it ended");
        assert!(log[0].ended_by_restart);
        assert_eq!(log[0].raised_ms, 9000);
    }

    #[tokio::test(start_paused = true)]
    async fn run_samples_on_the_interval_until_cancelled() {
        let config = MonitorConfig {
            interval_secs: 30,
            ..MonitorConfig::default()
        };
        let monitor =
            ResourceMonitor::new(config, ChildRegistry::new(), &MetricsRegistry::new()).unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(Arc::clone(&monitor).run(shutdown.clone()));
        tokio::time::sleep(Duration::from_secs(95)).await;
        // Ticks at 30, 60 and 90 s.
        assert_eq!(monitor.history().len(), 3);
        shutdown.cancel();
        task.await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(monitor.history().len(), 3, "no samples after shutdown");
    }
}
