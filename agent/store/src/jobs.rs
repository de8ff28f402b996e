//! The scheduler's job runs. A run is written (and flushed) when it starts and again when it
//! ends, so after a crash the last run of a job shows as interrupted, never as missing, and a
//! restart knows when each job last ran.

use crate::StoreError;
use crate::store::{Store, decode, encode};
pub use valor_protocol::jobs::{JobOutcome, JobRunRecord};

/// Runs kept per job; older ones are dropped as new ones are written.
pub const KEPT_RUNS: usize = 50;

fn key(job: &str, started_ms: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(job.len() + 9);
    key.extend_from_slice(job.as_bytes());
    key.push(0);
    key.extend_from_slice(&started_ms.to_be_bytes());
    key
}

/// Where the paused jobs are kept (in the `meta` tree).
const PAUSED_KEY: &[u8] = b"paused_jobs";

impl Store {
    /// The jobs paused by the operator.
    pub fn paused_jobs(&self) -> Result<Vec<String>, StoreError> {
        (self.meta.get(PAUSED_KEY)?).map_or(Ok(Vec::new()), |bytes| decode("paused jobs", &bytes))
    }

    /// Pauses or resumes a job (the caller commits).
    pub fn set_job_paused(&self, job: &str, paused: bool) -> Result<(), StoreError> {
        let mut jobs = self.paused_jobs()?;
        jobs.retain(|j| j != job);
        if paused {
            jobs.push(job.to_owned());
        }
        self.meta.insert(PAUSED_KEY, encode(&jobs))?;
        Ok(())
    }

    /// Writes a run (a new one, or the end of one already written); the caller commits (the
    /// scheduler decides on missed runs from this after a restart).
    pub fn record_job_run(&self, run: &JobRunRecord) -> Result<(), StoreError> {
        self.job_runs
            .insert(key(&run.job, run.started_ms), encode(run))?;
        let mut prefix = run.job.as_bytes().to_vec();
        prefix.push(0);
        let count = self.job_runs.scan_prefix(&prefix).count();
        if count > KEPT_RUNS {
            let old: Vec<sled::IVec> = self
                .job_runs
                .scan_prefix(&prefix)
                .keys()
                .take(count - KEPT_RUNS)
                .collect::<Result<_, _>>()?;
            for k in old {
                self.job_runs.remove(k)?;
            }
        }
        Ok(())
    }

    /// A job's runs, newest first, at most `limit`.
    pub fn job_runs(&self, job: &str, limit: usize) -> Result<Vec<JobRunRecord>, StoreError> {
        let mut prefix = job.as_bytes().to_vec();
        prefix.push(0);
        self.job_runs
            .scan_prefix(&prefix)
            .rev()
            .take(limit)
            .map(|entry| {
                let (_, bytes) = entry?;
                decode("job run", &bytes)
            })
            .collect()
    }

    /// Every job's kept runs, job by job, oldest first.
    pub fn all_job_runs(&self) -> impl Iterator<Item = Result<JobRunRecord, StoreError>> + '_ {
        self.job_runs
            .iter()
            .values()
            .map(|bytes| decode("job run", &bytes?))
    }

    /// A job's latest run.
    pub fn last_job_run(&self, job: &str) -> Result<Option<JobRunRecord>, StoreError> {
        Ok(self.job_runs(job, 1)?.into_iter().next())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(job: &str, started_ms: u64, outcome: JobOutcome) -> JobRunRecord {
        JobRunRecord {
            job: job.to_owned(),
            started_ms,
            finished_ms: None,
            outcome,
            detail: String::new(),
            due_ms: None,
        }
    }

    #[test]
    fn runs_survive_a_reopen_newest_first_and_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for i in 0..60 {
                store
                    .record_job_run(&run("daydream", 1000 + i, JobOutcome::Ok))
                    .unwrap();
            }
            // A job whose name is a prefix of another's keeps its own runs.
            store
                .record_job_run(&run("day", 5, JobOutcome::Failed))
                .unwrap();
            let mut running = run("daydream", 2000, JobOutcome::Running);
            store.record_job_run(&running).unwrap();
            running.outcome = JobOutcome::Ok;
            running.finished_ms = Some(2500);
            store.record_job_run(&running).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let runs = store.job_runs("daydream", 100).unwrap();
        assert_eq!(runs.len(), KEPT_RUNS);
        assert_eq!(runs[0].started_ms, 2000);
        assert_eq!(runs[0].finished_ms, Some(2500));
        assert_eq!(runs[1].started_ms, 1059);
        assert_eq!(
            store.last_job_run("day").unwrap().unwrap().outcome,
            JobOutcome::Failed
        );
        assert!(store.last_job_run("cleanup").unwrap().is_none());
    }
}
