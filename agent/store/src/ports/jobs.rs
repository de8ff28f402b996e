//! The scheduler's job log (`valor_scheduler::JobLog`): each run, committed as it starts and
//! as it ends, so a crash shows a run as interrupted, never as missing.

use async_trait::async_trait;
use valor_protocol::StoreFailure;
use valor_protocol::jobs::JobRunRecord;
use valor_scheduler::JobLog;

use crate::Store;

#[async_trait]
impl JobLog for Store {
    async fn record(&self, run: &JobRunRecord) -> Result<(), StoreFailure> {
        let run = run.clone();
        self.blocking(move |s| s.record_job_run(&run)).await?;
        Ok(self.commit().await?)
    }

    async fn last_run(&self, job: &str) -> Result<Option<JobRunRecord>, StoreFailure> {
        let job = job.to_owned();
        Ok(self.blocking(move |s| s.last_job_run(&job)).await?)
    }

    async fn runs(&self, job: &str, limit: usize) -> Result<Vec<JobRunRecord>, StoreFailure> {
        let job = job.to_owned();
        Ok(self.blocking(move |s| s.job_runs(&job, limit)).await?)
    }

    async fn paused_jobs(&self) -> Result<Vec<String>, StoreFailure> {
        Ok(self.blocking(Store::paused_jobs).await?)
    }

    async fn set_paused(&self, job: &str, paused: bool) -> Result<(), StoreFailure> {
        let job = job.to_owned();
        self.blocking(move |s| s.set_job_paused(&job, paused))
            .await?;
        Ok(self.commit().await?)
    }
}
