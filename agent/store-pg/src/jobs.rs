//! The scheduler's job log on PostgreSQL, for the cluster's jobs: whichever node runs a slot
//! records it here, so every node knows when the job last ran and what it did.

use async_trait::async_trait;
use tokio_postgres::types::Json;
use valor_protocol::StoreFailure;
use valor_protocol::jobs::JobRunRecord;
use valor_scheduler::JobLog;

use crate::error::{PgError, encode};
use crate::memory::body;
use crate::pool::{PgStore, db_i64};

/// Runs kept per job (as in sled); older ones go as new ones are written.
pub const KEPT_JOB_RUNS: i64 = 50;

impl PgStore {
    /// Every job's kept runs, job by job, oldest first (dumps).
    pub async fn all_job_runs(&self) -> Result<Vec<JobRunRecord>, PgError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT body FROM job_runs ORDER BY job, started_ms", &[])
            .await?;
        rows.iter().map(|row| body(row, 0, "job run")).collect()
    }
}

#[async_trait]
impl JobLog for PgStore {
    async fn record(&self, run: &JobRunRecord) -> Result<(), StoreFailure> {
        let value = encode("job run", run)?;
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(PgError::from)?;
        (transaction.execute(
            "INSERT INTO job_runs (job, started_ms, node, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT (job, started_ms) DO UPDATE SET node = $3, body = $4",
            &[
                &run.job,
                &db_i64(run.started_ms),
                &self.node_id(),
                &Json(&value),
            ],
        ))
        .await
        .map_err(PgError::from)?;
        (transaction.execute(
            "DELETE FROM job_runs WHERE job = $1 AND started_ms < (
                 SELECT min(started_ms) FROM (
                     SELECT started_ms FROM job_runs WHERE job = $1
                     ORDER BY started_ms DESC LIMIT $2) kept)",
            &[&run.job, &KEPT_JOB_RUNS],
        ))
        .await
        .map_err(PgError::from)?;
        transaction.commit().await.map_err(PgError::from)?;
        Ok(())
    }

    async fn last_run(&self, job: &str) -> Result<Option<JobRunRecord>, StoreFailure> {
        Ok(self.runs(job, 1).await?.into_iter().next())
    }

    async fn runs(&self, job: &str, limit: usize) -> Result<Vec<JobRunRecord>, StoreFailure> {
        let client = self.client().await?;
        let rows = (client.query(
            "SELECT body FROM job_runs WHERE job = $1 ORDER BY started_ms DESC LIMIT $2",
            &[&job, &db_i64(limit as u64)],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(rows
            .iter()
            .map(|row| body(row, 0, "job run"))
            .collect::<Result<_, PgError>>()?)
    }

    async fn paused_jobs(&self) -> Result<Vec<String>, StoreFailure> {
        let client = self.client().await?;
        let rows = (client.query("SELECT job FROM paused_jobs ORDER BY job", &[]))
            .await
            .map_err(PgError::from)?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn set_paused(&self, job: &str, paused: bool) -> Result<(), StoreFailure> {
        let client = self.client().await?;
        let statement = if paused {
            "INSERT INTO paused_jobs (job) VALUES ($1) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM paused_jobs WHERE job = $1"
        };
        (client.execute(statement, &[&job]))
            .await
            .map_err(PgError::from)?;
        Ok(())
    }
}
