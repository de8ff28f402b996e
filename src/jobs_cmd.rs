//! `valor jobs`: the scheduled jobs, their schedules and missed-run policies, last and next runs.
//! From the store when no Valor runs, else from the running agent (`GET /jobs`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use valor_scheduler::{JobStatus, status_of};
use valor_store::{Store, StoreError};

#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    /// One JSON document instead of the table.
    #[arg(long)]
    json: bool,
}

pub async fn jobs(config_path: Option<PathBuf>, args: JobsArgs) -> ExitCode {
    let loaded = match crate::config_cmd::load(config_path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    match listing(&loaded).await {
        Ok(jobs) => {
            let out = if args.json {
                serde_json::to_string_pretty(&jobs).unwrap_or_default() + "\n"
            } else {
                render(&jobs)
            };
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn listing(loaded: &valor_config::Loaded) -> anyhow::Result<Vec<JobStatus>> {
    let config = &loaded.config;
    let specs = crate::jobs::specs(config)?;
    let path = &config.store.path;
    match Store::open(path) {
        Ok(store) => {
            // On several machines the cluster's jobs ran wherever their slot was granted.
            let cluster = crate::shared::cluster_store(loaded, 2).await?;
            let log = crate::jobs::job_log(config, &store, cluster.as_ref())?;
            Ok(status_of(&specs, log.as_ref(), chrono::Utc::now()).await)
        }
        Err(StoreError::Locked { .. }) => {
            crate::memory_cmd::agent_client(config, Duration::from_secs(10))
                .map_err(anyhow::Error::msg)?
                .get("/jobs")
                .await
                .map_err(anyhow::Error::msg)
        }
        Err(e) => Err(e.into()),
    }
}

fn when(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).map_or_else(
        || "?".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

fn render(jobs: &[JobStatus]) -> String {
    let mut out = format!(
        "{:<14} {:<16} {:<22} {:<20} {:<9} {}\n",
        "job", "schedule", "if missed", "last run (UTC)", "outcome", "next run (UTC)"
    );
    for job in jobs {
        let (last, outcome) = job.last.as_ref().map_or_else(
            || ("never".to_owned(), "-".to_owned()),
            |run| (when(run.started_ms), run.outcome.as_str().to_owned()),
        );
        let next = job.next.map_or_else(
            || "-".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
        );
        out.push_str(&format!(
            "{:<14} {:<16} {:<22} {:<20} {:<9} {next}\n",
            job.name, job.schedule, job.missed, last, outcome
        ));
        if let Some(run) = job.last.as_ref().filter(|r| !r.detail.is_empty()) {
            out.push_str(&format!("{:<14} {}\n", "", run.detail));
        }
    }
    out
}
