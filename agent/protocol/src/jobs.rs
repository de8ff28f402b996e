//! The scheduler's runs of each job.

use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    /// Started and not (yet) finished; after a restart: interrupted.
    Running,
    Ok,
    Failed,
    /// Not run, on purpose (still running from before, not ready, skipped by its policy).
    Skipped,
    /// A run missed while Valor was down was reported instead of run.
    Notified,
}

impl JobOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Running => "running",
            JobOutcome::Ok => "ok",
            JobOutcome::Failed => "failed",
            JobOutcome::Skipped => "skipped",
            JobOutcome::Notified => "notified",
        }
    }
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRunRecord {
    pub job: String,
    /// Unix milliseconds.
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub outcome: JobOutcome,
    /// What happened, in a line (a report path, the reason for a skip, an error).
    pub detail: String,
    /// The scheduled time this run was for (a catch-up run's is in the past).
    #[serde(default)]
    pub due_ms: Option<u64>,
}
