//! The scheduler: jobs fired by tokio-cron-scheduler, one run at a time per job, every run
//! recorded; missed runs decided once after a restart; the listing of jobs and their runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use valor_protocol::StoreFailure;
use valor_protocol::jobs::{JobOutcome, JobRunRecord};

/// The job log the scheduler keeps: every run of each job, written (and committed) when it
/// starts and when it ends, and each job's last run (its next due time and the catch-up after
/// downtime rest on it). The store implements it.
#[async_trait::async_trait]
pub trait JobLog: Send + Sync {
    async fn record(&self, run: &JobRunRecord) -> Result<(), StoreFailure>;
    async fn last_run(&self, job: &str) -> Result<Option<JobRunRecord>, StoreFailure>;
    /// A job's kept runs, newest first, at most `limit`.
    async fn runs(&self, job: &str, limit: usize) -> Result<Vec<JobRunRecord>, StoreFailure>;
    /// The jobs paused by the operator (they stay paused across restarts).
    async fn paused_jobs(&self) -> Result<Vec<String>, StoreFailure>;
    async fn set_paused(&self, job: &str, paused: bool) -> Result<(), StoreFailure>;
}

/// A job log in memory (tests).
#[derive(Default)]
pub struct InMemoryJobLog {
    runs: Mutex<Vec<JobRunRecord>>,
    paused: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl JobLog for InMemoryJobLog {
    async fn record(&self, run: &JobRunRecord) -> Result<(), StoreFailure> {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.retain(|r| !(r.job == run.job && r.started_ms == run.started_ms));
        runs.push(run.clone());
        Ok(())
    }

    async fn last_run(&self, job: &str) -> Result<Option<JobRunRecord>, StoreFailure> {
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(runs
            .iter()
            .filter(|r| r.job == job)
            .max_by_key(|r| r.started_ms)
            .cloned())
    }

    async fn runs(&self, job: &str, limit: usize) -> Result<Vec<JobRunRecord>, StoreFailure> {
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut of_job: Vec<JobRunRecord> = runs.iter().filter(|r| r.job == job).cloned().collect();
        of_job.sort_by_key(|r| std::cmp::Reverse(r.started_ms));
        of_job.truncate(limit);
        Ok(of_job)
    }

    async fn paused_jobs(&self) -> Result<Vec<String>, StoreFailure> {
        Ok(self
            .paused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
    }

    async fn set_paused(&self, job: &str, paused: bool) -> Result<(), StoreFailure> {
        let mut jobs = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.retain(|j| j != job);
        if paused {
            jobs.push(job.to_owned());
        }
        Ok(())
    }
}

use crate::missed::{MissedDecision, decide};
use crate::{MissedPolicy, Schedule};

/// The time now (tests fix it).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;
/// A job's work: `Ok(detail)` or `Err(what went wrong)`, each a line for `valor jobs`.
pub type JobFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;
type JobFn = Arc<dyn Fn(RunContext) -> JobFuture + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("there is no job called {0:?}")]
    UnknownJob(String),
    #[error("the job timer failed: {0}")]
    Timer(String),
    #[error(transparent)]
    Store(#[from] StoreFailure),
}

/// A job's name, schedule and missed-run policy.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub name: String,
    pub schedule: Schedule,
    pub missed: MissedPolicy,
    /// Runs are written to the store. A 30 s tick's are not (2,880 flushed writes a day that
    /// nobody reads); its last run is kept in memory.
    pub persist: bool,
    /// On several machines, each of its slots runs on one node (the scheduler's leader);
    /// false: it runs on every node (this node's own resources and processes).
    pub cluster_wide: bool,
}

/// Decides, on several machines, which node runs a cluster-wide job's slot (the shared store
/// implements it).
#[async_trait::async_trait]
pub trait SlotGate: Send + Sync {
    /// Whether this node runs slot `due_ms` of `job`: true on one node per slot.
    async fn claim(&self, job: &str, due_ms: u64) -> bool;
}

/// What one run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunContext {
    /// The scheduled time (for a catch-up run, in the past; none when run by hand).
    pub due: Option<DateTime<Utc>>,
    pub catch_up: bool,
}

/// A job as `valor jobs` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct JobStatus {
    pub name: String,
    pub schedule: String,
    pub missed: String,
    pub last: Option<JobRunRecord>,
    /// `None` while paused.
    pub next: Option<DateTime<Utc>>,
    /// Paused by the operator: the clock does not fire it (run now still does).
    #[serde(default)]
    pub paused: bool,
    /// How far its running run is, as the job tells it ("phase 3/6: context").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

struct Entry {
    spec: JobSpec,
    run: JobFn,
    /// Held while a run is going: a second firing is skipped, not overlapped.
    running: tokio::sync::Mutex<()>,
    last: Mutex<Option<JobRunRecord>>,
    paused: std::sync::atomic::AtomicBool,
}

/// Where running jobs tell how far they are; cleared when a run ends. Cloned into a job's work
/// before it is added.
#[derive(Clone)]
pub struct JobProgress {
    notes: Arc<Mutex<std::collections::BTreeMap<String, String>>>,
    version: tokio::sync::watch::Sender<u64>,
}

impl JobProgress {
    /// Notes how far `job`'s run is (a line, cut to 200 characters).
    pub fn note(&self, job: &str, text: &str) {
        let text: String = text.chars().take(200).collect();
        (self.notes.lock().unwrap_or_else(PoisonError::into_inner)).insert(job.to_owned(), text);
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn clear(&self, job: &str) {
        (self.notes.lock().unwrap_or_else(PoisonError::into_inner)).remove(job);
    }

    fn of(&self, job: &str) -> Option<String> {
        (self.notes.lock().unwrap_or_else(PoisonError::into_inner))
            .get(job)
            .cloned()
    }
}

pub struct Scheduler {
    entries: Vec<Arc<Entry>>,
    log: Arc<dyn JobLog>,
    clock: Clock,
    notify: Option<Arc<dyn Fn(String) + Send + Sync>>,
    /// Moves whenever a run is recorded (started, finished, decided), a running job tells
    /// its progress, or a job is paused or resumed, for live views.
    version: tokio::sync::watch::Sender<u64>,
    progress: JobProgress,
    /// Several machines: who runs a cluster-wide job's slot.
    gate: Option<Arc<dyn SlotGate>>,
}

fn millis(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp_millis()).unwrap_or(0)
}

fn from_millis(ms: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)
}

/// The listing of `specs` from their recorded runs (used by `valor jobs` when no Valor runs).
pub async fn status_of(specs: &[JobSpec], log: &dyn JobLog, now: DateTime<Utc>) -> Vec<JobStatus> {
    let paused = log.paused_jobs().await.unwrap_or_default();
    let mut listed = Vec::with_capacity(specs.len());
    for spec in specs {
        let last = if spec.persist {
            log.last_run(&spec.name).await.ok().flatten()
        } else {
            None
        };
        let mut job = status(spec, last, now);
        if paused.contains(&spec.name) {
            job.paused = true;
            job.next = None;
        }
        listed.push(job);
    }
    listed
}

fn status(spec: &JobSpec, last: Option<JobRunRecord>, now: DateTime<Utc>) -> JobStatus {
    let next = match spec.schedule {
        // An interval counts from its last run.
        Schedule::Every(_) => last
            .as_ref()
            .and_then(|l| from_millis(l.started_ms))
            .map_or(spec.schedule.next_after(now), |at| {
                spec.schedule.next_after(at).map(|n| n.max(now))
            }),
        Schedule::Cron { .. } => spec.schedule.next_after(now),
    };
    JobStatus {
        name: spec.name.clone(),
        schedule: spec.schedule.to_string(),
        missed: spec.missed.to_string(),
        last,
        next,
        paused: false,
        progress: None,
    }
}

impl Scheduler {
    pub fn new(log: Arc<dyn JobLog>, clock: Clock) -> Scheduler {
        let version = tokio::sync::watch::channel(0).0;
        Scheduler {
            entries: Vec::new(),
            log,
            clock,
            notify: None,
            progress: JobProgress {
                notes: Arc::default(),
                version: version.clone(),
            },
            version,
            gate: None,
        }
    }

    /// On several machines: cluster-wide jobs run only where `gate` grants their slot.
    pub fn gate(&mut self, gate: Arc<dyn SlotGate>) {
        self.gate = Some(gate);
    }

    /// Whether this node runs `entry`'s slot due at `due` (always, alone or for a node job).
    /// A slot is the due time floored to the job's period (an `every` job fires on each node's
    /// own rhythm) or to the second (a cron job fires on the same second everywhere).
    async fn granted(&self, entry: &Entry, due: DateTime<Utc>) -> bool {
        let Some(gate) = &self.gate else { return true };
        if !entry.spec.cluster_wide {
            return true;
        }
        let due_ms = millis(due);
        let slot = match &entry.spec.schedule {
            Schedule::Every(every) => {
                let period = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
                due_ms - due_ms % period
            }
            Schedule::Cron { .. } => due_ms - due_ms % 1_000,
        };
        gate.claim(&entry.spec.name, slot).await
    }
    pub fn progress(&self) -> JobProgress {
        self.progress.clone()
    }

    /// Pauses a job (the clock no longer fires it; run now still does) or resumes it; kept
    /// in the job log, so it stays so after a restart.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), SchedulerError> {
        let entry = self.entry(name)?;
        self.log.set_paused(name, paused).await?;
        entry
            .paused
            .store(paused, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(job = name, paused, "job paused or resumed by the operator");
        self.version.send_modify(|v| *v = v.wrapping_add(1));
        Ok(())
    }

    /// Takes up the pauses kept in the job log (at start).
    pub async fn restore_paused(&self) -> Result<(), SchedulerError> {
        let paused = self.log.paused_jobs().await?;
        for entry in &self.entries {
            let is = paused.contains(&entry.spec.name);
            entry.paused.store(is, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether the job is paused now. A cluster-wide job may have been paused or resumed on
    /// another node: its pause is read from the shared log (kept if the log cannot be read).
    async fn is_paused(&self, entry: &Entry) -> bool {
        if entry.spec.cluster_wide && self.gate.is_some() {
            match self.log.paused_jobs().await {
                Ok(paused) => {
                    let is = paused.contains(&entry.spec.name);
                    entry.paused.store(is, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(job = %entry.spec.name, error = %e, "cannot read whether the job is paused");
                }
            }
        }
        entry.paused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Moves whenever a run is recorded.
    pub fn updates(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Adds a job and the work it does.
    pub fn add(
        &mut self,
        spec: JobSpec,
        run: impl Fn(RunContext) -> JobFuture + Send + Sync + 'static,
    ) {
        self.entries.push(Arc::new(Entry {
            spec,
            run: Arc::new(run),
            running: tokio::sync::Mutex::new(()),
            last: Mutex::new(None),
            paused: std::sync::atomic::AtomicBool::new(false),
        }));
    }

    /// Who is told about missed runs under the `notify` policy, and about a job that starts
    /// failing (the admin chat).
    pub fn on_notify(&mut self, notify: Arc<dyn Fn(String) + Send + Sync>) {
        self.notify = Some(notify);
    }

    pub fn specs(&self) -> Vec<JobSpec> {
        self.entries.iter().map(|e| e.spec.clone()).collect()
    }

    fn entry(&self, name: &str) -> Result<&Arc<Entry>, SchedulerError> {
        self.entries
            .iter()
            .find(|e| e.spec.name == name)
            .ok_or_else(|| SchedulerError::UnknownJob(name.to_owned()))
    }

    async fn record(&self, entry: &Entry, run: &JobRunRecord) {
        *entry.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(run.clone());
        if entry.spec.persist
            && let Err(e) = self.log.record(run).await
        {
            tracing::error!(job = %run.job, error = %e, "cannot record a job run");
        }
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    async fn last_run(&self, entry: &Entry) -> Option<JobRunRecord> {
        let in_memory = entry
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // A cluster-wide job may have run on another node since: the shared log says.
        let elsewhere = entry.spec.cluster_wide && self.gate.is_some();
        if (in_memory.is_some() && !elsewhere) || !entry.spec.persist {
            return in_memory;
        }
        match self.log.last_run(&entry.spec.name).await {
            Ok(Some(logged)) => Some(logged),
            Ok(None) => in_memory,
            Err(e) => {
                tracing::warn!(job = %entry.spec.name, error = %e, "cannot read the job's last run");
                in_memory
            }
        }
    }

    /// Every job's kept runs, newest first, at most `limit`.
    pub async fn runs(&self, limit: usize) -> Vec<JobRunRecord> {
        let mut all = Vec::new();
        for entry in &self.entries {
            match self.log.runs(&entry.spec.name, limit).await {
                Ok(runs) => all.extend(runs),
                Err(e) => {
                    tracing::warn!(job = %entry.spec.name, error = %e, "cannot read the job's runs");
                }
            }
        }
        all.sort_by_key(|r| std::cmp::Reverse(r.started_ms));
        all.truncate(limit);
        all
    }

    /// Records a run that was decided, not run (a missed run skipped or reported).
    async fn record_decided(
        &self,
        entry: &Entry,
        now: DateTime<Utc>,
        outcome: JobOutcome,
        due: DateTime<Utc>,
        detail: String,
    ) {
        let run = JobRunRecord {
            job: entry.spec.name.clone(),
            started_ms: millis(now),
            finished_ms: Some(millis(now)),
            outcome,
            detail,
            due_ms: Some(millis(due)),
        };
        self.record(entry, &run).await;
    }

    /// Runs a job now unless it is still running (then the firing is recorded as skipped).
    pub async fn fire(
        &self,
        name: &str,
        context: RunContext,
    ) -> Result<JobRunRecord, SchedulerError> {
        let entry = Arc::clone(self.entry(name)?);
        let started = (self.clock)();
        let mut run = JobRunRecord {
            job: name.to_owned(),
            started_ms: millis(started),
            finished_ms: None,
            outcome: JobOutcome::Running,
            detail: String::new(),
            due_ms: context.due.map(millis),
        };
        let Ok(_guard) = entry.running.try_lock() else {
            run.outcome = JobOutcome::Skipped;
            run.finished_ms = Some(run.started_ms);
            run.detail = "the previous run is still going".to_owned();
            tracing::warn!(job = name, "job still running; this firing is skipped");
            self.record(&entry, &run).await;
            return Ok(run);
        };
        let failed_before =
            (self.last_run(&entry).await).is_some_and(|last| last.outcome == JobOutcome::Failed);
        self.record(&entry, &run).await;
        let result = (entry.run)(context).await;
        self.progress.clear(name);
        run.finished_ms = Some(millis((self.clock)()));
        match result {
            Ok(detail) => {
                run.outcome = JobOutcome::Ok;
                run.detail = detail;
            }
            Err(error) => {
                tracing::warn!(job = name, %error, "job failed");
                run.outcome = JobOutcome::Failed;
                run.detail = error;
            }
        }
        self.record(&entry, &run).await;
        // A job that starts failing is told to whoever owns it (the admin chat), once: not
        // again while it keeps failing.
        if run.outcome == JobOutcome::Failed
            && !failed_before
            && let Some(notify) = &self.notify
        {
            notify(format!(
                "⚠️ The scheduled job \"{name}\" failed: {}. It runs again on its schedule; `valor jobs` shows its runs.",
                run.detail
            ));
        }
        Ok(run)
    }

    /// After a start: each job's missed run decided by its policy, acted on and recorded.
    pub async fn catch_up(&self) -> Vec<(String, MissedDecision)> {
        let now = (self.clock)();
        let mut decisions = Vec::new();
        for entry in &self.entries {
            let name = entry.spec.name.clone();
            if self.is_paused(entry).await {
                tracing::info!(job = %name, "paused: no catch-up");
                continue;
            }
            let last = self.last_run(entry).await;
            // A cluster-wide job's run may be going on another node: not this start's to end.
            let shared = entry.spec.cluster_wide && self.gate.is_some();
            if !shared && let Some(run) = last.as_ref().filter(|r| r.outcome == JobOutcome::Running)
            {
                // It was running when Valor stopped: say so in its record.
                let mut ended = run.clone();
                ended.outcome = JobOutcome::Failed;
                ended.detail = "interrupted: Valor stopped during this run".to_owned();
                self.record(entry, &ended).await;
            }
            let last_started = last.as_ref().and_then(|r| from_millis(r.started_ms));
            let decision = decide(&entry.spec.schedule, entry.spec.missed, last_started, now);
            // Run, skipped or reported: one node decides a missed cluster-wide slot, once.
            let due = match &decision {
                MissedDecision::UpToDate => None,
                MissedDecision::RunNow { due }
                | MissedDecision::Skip { due, .. }
                | MissedDecision::Notify { due } => Some(*due),
            };
            if let Some(due) = due
                && !self.granted(entry, due).await
            {
                tracing::info!(job = %name, due = %due, "another node decided this missed slot");
                decisions.push((name, MissedDecision::UpToDate));
                continue;
            }
            match &decision {
                MissedDecision::UpToDate => {}
                MissedDecision::RunNow { due } => {
                    tracing::info!(job = %name, due = %due, "catching up a run missed while down");
                    if let Err(e) = self
                        .fire(
                            &name,
                            RunContext {
                                due: Some(*due),
                                catch_up: true,
                            },
                        )
                        .await
                    {
                        tracing::error!(job = %name, error = %e, "catch-up run failed to start");
                    }
                }
                MissedDecision::Skip { due, reason } => {
                    tracing::warn!(job = %name, due = %due, %reason, "missed run skipped");
                    self.record_decided(entry, now, JobOutcome::Skipped, *due, reason.clone())
                        .await;
                }
                MissedDecision::Notify { due } => {
                    let next = entry
                        .spec
                        .schedule
                        .next_after(now)
                        .map_or_else(|| "none".to_owned(), |n| n.to_rfc3339());
                    let message = format!(
                        "The {name} run due at {} was missed while Valor was down. Next run: \
                         {next}.",
                        due.format("%Y-%m-%d %H:%M UTC")
                    );
                    tracing::warn!(job = %name, due = %due, "missed run reported");
                    match &self.notify {
                        Some(notify) => notify(message.clone()),
                        None => tracing::warn!(%message, "no admin chat to tell"),
                    }
                    self.record_decided(entry, now, JobOutcome::Notified, *due, message)
                        .await;
                }
            }
            decisions.push((name, decision));
        }
        decisions
    }

    /// Every job and its last and next run.
    pub async fn status(&self) -> Vec<JobStatus> {
        let now = (self.clock)();
        let mut listed = Vec::with_capacity(self.entries.len());
        for entry in &self.entries {
            let mut job = status(&entry.spec, self.last_run(entry).await, now);
            if self.is_paused(entry).await {
                job.paused = true;
                job.next = None;
            }
            let running = job
                .last
                .as_ref()
                .is_some_and(|r| r.outcome == JobOutcome::Running);
            job.progress = self.progress.of(&entry.spec.name).filter(|_| running);
            listed.push(job);
        }
        listed
    }

    /// Fires the jobs by the clock until `shutdown`; first decides on runs missed while down.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), SchedulerError> {
        let timer =
            |e: tokio_cron_scheduler::JobSchedulerError| SchedulerError::Timer(e.to_string());
        if let Err(e) = self.restore_paused().await {
            tracing::error!(error = %e, "cannot read which jobs are paused; none is");
        }
        let mut jobs = JobScheduler::new().await.map_err(timer)?;
        for entry in &self.entries {
            let this = Arc::clone(&self);
            let name = entry.spec.name.clone();
            let fire = move |_id, _jobs| -> Pin<Box<dyn Future<Output = ()> + Send>> {
                let this = Arc::clone(&this);
                let name = name.clone();
                Box::pin(async move {
                    let Ok(entry) = this.entry(&name) else { return };
                    if this.is_paused(entry).await {
                        tracing::debug!(job = %name, "paused: this firing is skipped");
                        return;
                    }
                    let now = (this.clock)();
                    if !this.granted(entry, now).await {
                        tracing::debug!(job = %name, "another node runs this slot");
                        return;
                    }
                    let context = RunContext {
                        due: Some(now),
                        catch_up: false,
                    };
                    if let Err(e) = this.fire(&name, context).await {
                        tracing::error!(job = %name, error = %e, "cannot run a job");
                    }
                })
            };
            let job = match &entry.spec.schedule {
                Schedule::Cron { text, .. } => Job::new_async(text.as_str(), fire),
                Schedule::Every(every) => Job::new_repeated_async(*every, fire),
            }
            .map_err(timer)?;
            jobs.add(job).await.map_err(timer)?;
        }
        jobs.start().await.map_err(timer)?;
        tracing::info!(jobs = self.entries.len(), "scheduler started");
        tokio::select! {
            _ = self.catch_up() => {}
            () = shutdown.cancelled() => {}
        }
        shutdown.cancelled().await;
        jobs.shutdown().await.map_err(timer)?;
        Ok(())
    }
}

/// `GET /jobs` on the agent's HTTP server, behind the memory API's token: the listing while the
/// agent holds the store.
pub fn router(scheduler: Arc<Scheduler>, token: String) -> axum::Router {
    use valor_monitor::auth::{BearerGate, require_bearer};
    axum::Router::new()
        .route(
            "/jobs",
            axum::routing::get(move || {
                let scheduler = Arc::clone(&scheduler);
                async move { axum::Json(scheduler.status().await) }
            }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            BearerGate::new(
                &token,
                "missing or wrong token (it is in the file <store>.api-token)",
            ),
            require_bearer,
        ))
}
