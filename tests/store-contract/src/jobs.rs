//! The scheduler's job log: a run written as it starts and again as it ends is one run; a job's
//! runs come newest first, the oldest going past the kept number; pauses are kept.

use std::sync::Arc;

use valor_protocol::jobs::{JobOutcome, JobRunRecord};
use valor_scheduler::JobLog;

fn run(job: &str, started_ms: u64, outcome: JobOutcome) -> JobRunRecord {
    JobRunRecord {
        job: job.to_owned(),
        started_ms,
        finished_ms: (outcome != JobOutcome::Running).then_some(started_ms + 5),
        outcome,
        detail: format!("{job} at {started_ms}"),
        due_ms: Some(started_ms),
    }
}

/// `kept`: the runs a store keeps per job (`None`: all).
pub async fn job_log_contract(log: Arc<dyn JobLog>, kept: Option<usize>) {
    assert_eq!(log.last_run("daydream").await.unwrap(), None);
    log.record(&run("daydream", 100, JobOutcome::Running))
        .await
        .unwrap();
    let finished = run("daydream", 100, JobOutcome::Ok);
    log.record(&finished).await.unwrap();
    log.record(&run("cleanup", 150, JobOutcome::Failed))
        .await
        .unwrap();
    assert_eq!(
        log.last_run("daydream").await.unwrap(),
        Some(finished.clone()),
        "the end of a run replaces its start"
    );
    assert_eq!(log.runs("daydream", 10).await.unwrap(), vec![finished]);

    for started in 200..260 {
        log.record(&run("daydream", started, JobOutcome::Ok))
            .await
            .unwrap();
    }
    let latest = log.runs("daydream", 3).await.unwrap();
    let starts: Vec<u64> = latest.iter().map(|r| r.started_ms).collect();
    assert_eq!(starts, [259, 258, 257], "newest first");
    if let Some(kept) = kept {
        let all = log.runs("daydream", 1_000).await.unwrap();
        assert_eq!(all.len(), kept, "older runs go");
        assert_eq!(all.last().unwrap().started_ms, 260 - kept as u64);
    }
    assert_eq!(log.runs("cleanup", 10).await.unwrap().len(), 1);

    assert!(log.paused_jobs().await.unwrap().is_empty());
    log.set_paused("daydream", true).await.unwrap();
    log.set_paused("daydream", true).await.unwrap();
    log.set_paused("cleanup", true).await.unwrap();
    log.set_paused("cleanup", false).await.unwrap();
    assert_eq!(log.paused_jobs().await.unwrap(), ["daydream"]);
}
