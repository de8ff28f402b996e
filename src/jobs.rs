//! The jobs `valor run` schedules: the resource monitor's tick, the orphan reaper, the
//! daydream, the expiry of unanswered questions and the cleanup. Their specs come from the config alone, so `valor jobs` lists them without a
//! running Valor.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use valor_config::Config;
use valor_monitor::ResourceMonitor;
use valor_protocol::StoreFailure;
use valor_protocol::jobs::JobRunRecord;
use valor_scheduler::{JobLog, JobSpec, MissedPolicy, Schedule, Scheduler};

/// How often orphaned Claude Code process groups are looked for.
const REAP_EVERY: &str = "every 1m";
/// How often questions past their time are expired (with or without a channel).
const EXPIRE_QUESTIONS_EVERY: &str = "every 30s";
/// The cleanup ends Valor's Claude Code process groups older than this.
const STALE_PROCESS_AGE: Duration = Duration::from_secs(24 * 3600);

/// The work a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    ResourceTick,
    Reaper,
    Daydream,
    Questions,
    Cleanup,
    /// Several machines: the shared queue's answered updates and run slots pruned, once.
    SharedCleanup,
}

/// Answered updates and scheduler slots the shared store keeps (a replayed update older than
/// this is long past Telegram's redelivery).
const SHARED_KEPT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The specs of the jobs, from the config (`valor jobs` lists them without a running Valor).
pub fn specs(config: &Config) -> anyhow::Result<Vec<JobSpec>> {
    Ok(table(config)?.into_iter().map(|(spec, _)| spec).collect())
}

/// Every job once: its spec and its work.
fn table(config: &Config) -> anyhow::Result<Vec<(JobSpec, Work)>> {
    let s = &config.scheduler;
    let window = Duration::from_secs(s.catch_up_window_hours.saturating_mul(3600));
    let policy = |missed: valor_config::Missed| match missed {
        valor_config::Missed::CatchUp => MissedPolicy::CatchUp { window },
        valor_config::Missed::Skip => MissedPolicy::Skip,
        valor_config::Missed::Notify => MissedPolicy::Notify,
    };
    let cleanup_missed = policy(s.cleanup_missed);
    let mut table = vec![
        (
            JobSpec {
                name: "resource-tick".to_owned(),
                schedule: Schedule::parse(&format!(
                    "every {}s",
                    config.monitor.interval_secs.max(1)
                ))?,
                missed: MissedPolicy::Skip,
                persist: false,
                cluster_wide: false,
            },
            Work::ResourceTick,
        ),
        (
            JobSpec {
                name: "reaper".to_owned(),
                schedule: Schedule::parse(REAP_EVERY)?,
                missed: MissedPolicy::Skip,
                persist: false,
                cluster_wide: false,
            },
            Work::Reaper,
        ),
        (
            JobSpec {
                name: crate::daydream::JOB.to_owned(),
                schedule: Schedule::parse(&config.daydream.schedule)
                    .context("[daydream] schedule")?,
                missed: policy(config.daydream.missed),
                persist: true,
                cluster_wide: true,
            },
            Work::Daydream,
        ),
        (
            JobSpec {
                name: "questions".to_owned(),
                schedule: Schedule::parse(EXPIRE_QUESTIONS_EVERY)?,
                missed: MissedPolicy::Skip,
                persist: false,
                cluster_wide: true,
            },
            Work::Questions,
        ),
        (
            JobSpec {
                name: "cleanup".to_owned(),
                schedule: Schedule::parse(&s.cleanup_schedule)
                    .context("[scheduler] cleanup_schedule")?,
                missed: cleanup_missed,
                persist: true,
                cluster_wide: false,
            },
            Work::Cleanup,
        ),
    ];
    if config.cluster.enabled {
        table.push((
            JobSpec {
                name: "shared-cleanup".to_owned(),
                schedule: Schedule::parse(&s.cleanup_schedule)
                    .context("[scheduler] cleanup_schedule")?,
                missed: cleanup_missed,
                persist: true,
                cluster_wide: true,
            },
            Work::SharedCleanup,
        ));
    }
    Ok(table)
}

/// The scheduler with every job's work attached.
pub fn scheduler(
    config: &Config,
    agent: &crate::agent::Agent,
    secrets: &valor_config::Secrets,
    monitor: &Arc<ResourceMonitor>,
    report_sender: Option<crate::daydream::Sender>,
    conversations: &valor_core::Conversations,
) -> anyhow::Result<Scheduler> {
    let log = job_log(config, &agent.store, agent.shared.cluster.as_ref())?;
    let mut scheduler = Scheduler::new(log, Arc::new(chrono::Utc::now));
    if let Some(pg) = &agent.shared.cluster {
        // Several machines: the daydream and question expiry run once per slot, on the
        // scheduler's leader; the tick, the reaper and the cleanup on every node.
        let lease = std::time::Duration::from_secs(config.cluster.leader_lease_secs);
        scheduler.gate(Arc::new(valor_store_pg::intake::PgSlotGate::new(
            pg.clone(),
            lease,
        )));
    }
    for (spec, work) in table(config)? {
        match work {
            Work::ResourceTick => {
                let monitor = Arc::clone(monitor);
                scheduler.add(spec, move |_| {
                    let monitor = Arc::clone(&monitor);
                    // Sampling reads /proc and the store writes: off the async threads.
                    Box::pin(async move {
                        tokio::task::spawn_blocking(move || monitor.tick())
                            .await
                            .map_err(|e| e.to_string())?
                            .map(|report| {
                                format!("{} (score {})", report.status.as_str(), report.score)
                            })
                            .map_err(|e| e.to_string())
                    })
                });
            }
            Work::Reaper => {
                let reaper = Arc::new(agent.reaper());
                scheduler.add(spec, move |_| {
                    let reaper = Arc::clone(&reaper);
                    Box::pin(async move {
                        let report = reaper.reap(None).await;
                        if !report.killed.is_empty() {
                            tracing::warn!(
                                killed = report.killed.len(),
                                "reaped orphaned Claude Code processes"
                            );
                        }
                        Ok(format!(
                            "{} ended, {} records cleared",
                            report.killed.len(),
                            report.cleared
                        ))
                    })
                });
            }
            Work::Daydream => {
                let host = Arc::new(crate::daydream::AgentHost {
                    store: agent.store.clone(),
                    monitor: Arc::clone(monitor),
                    reaper: agent.reaper(),
                    monitor_config: config.monitor.clone(),
                    report_chat: config.admin.chat,
                    send: report_sender.clone(),
                });
                let daydream = Arc::new(crate::daydream::daydream(
                    config,
                    secrets,
                    Arc::clone(&host),
                    agent,
                    conversations.background(),
                )?);
                let store = agent.store.clone();
                let cache = crate::daydream::cache_path(config);
                let progress = scheduler.progress();
                let name = spec.name.clone();
                let skips = Arc::new(crate::daydream::SkipNotice::default());
                scheduler.add(spec, move |_| {
                    let (daydream, store, cache) =
                        (Arc::clone(&daydream), store.clone(), cache.clone());
                    let (progress, name) = (progress.clone(), name.clone());
                    let (host, skips) = (Arc::clone(&host), Arc::clone(&skips));
                    Box::pin(async move {
                        // Each phase as it starts, live on the dashboard's Jobs page.
                        let tell = move |phase: valor_daydream::run::Phase, what: &str| {
                            let total = valor_daydream::run::Phase::ALL.len();
                            let line = format!(
                                "phase {}/{total}: {} — {what}",
                                phase.number(),
                                phase.as_str()
                            );
                            progress.note(&name, &line);
                        };
                        let done =
                            crate::daydream::run_once(&daydream, &store, &cache, &tell).await;
                        // Found nothing to do: the report chat hears of it (a failure is told by
                        // the scheduler).
                        if let Ok(line) = &done {
                            skips
                                .after_run(host.report_chat, host.send.as_ref(), line)
                                .await;
                        }
                        done
                    })
                });
            }
            Work::Questions => {
                let conversations = conversations.clone();
                scheduler.add(spec, move |_| {
                    let conversations = conversations.clone();
                    Box::pin(async move {
                        let expired = conversations.expire_questions().await;
                        Ok(format!("{expired} question(s) expired"))
                    })
                });
            }
            Work::SharedCleanup => {
                let Some(pg) = agent.shared.cluster.clone() else {
                    continue;
                };
                scheduler.add(spec, move |_| {
                    let pg = pg.clone();
                    Box::pin(async move {
                        let pruned = pg.prune(SHARED_KEPT).await.map_err(|e| e.to_string())?;
                        Ok(format!(
                            "{pruned} answered updates and run slots over 7 days forgotten"
                        ))
                    })
                });
            }
            Work::Cleanup => {
                let reaper = Arc::new(agent.reaper());
                scheduler.add(spec, move |_| {
                    let reaper = Arc::clone(&reaper);
                    Box::pin(async move {
                        let report = reaper.reap(Some(STALE_PROCESS_AGE)).await;
                        let profiles =
                            remove_stale_temp_dirs(&std::env::temp_dir(), valor_tool_dev::browser::PROFILE_PREFIX, STALE_PROCESS_AGE);
                        Ok(format!(
                            "{} Claude Code process groups over 24 h ended, {profiles} stale browser profiles removed",
                            report.killed.len()
                        ))
                    })
                });
            }
        }
    }
    Ok(scheduler)
}

/// Removes folders in `temp` named `prefix*` not touched for `age`: what a killed Valor left
/// behind (browser profiles, daydream runs; their prefixes are their creators'). A live one is
/// written to, which keeps it young.
pub fn remove_stale_temp_dirs(temp: &std::path::Path, prefix: &str, age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return 0;
    };
    let old = |entry: &std::fs::DirEntry| {
        (entry.metadata().and_then(|m| m.modified()).ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age)
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter(|e| old(e) && std::fs::remove_dir_all(e.path()).is_ok())
        .count()
}

/// The job log on several machines: a cluster-wide job's runs and pause in the cluster's
/// database (its slots run on whichever node leads; every node reads when it last ran), a
/// node's own jobs' in this node's store.
pub struct ClusterJobLog {
    pub local: Arc<dyn JobLog>,
    pub shared: Arc<dyn JobLog>,
    /// The cluster-wide jobs' names.
    pub cluster_wide: Vec<String>,
}

impl ClusterJobLog {
    fn of(&self, job: &str) -> &dyn JobLog {
        if self.cluster_wide.iter().any(|name| name == job) {
            self.shared.as_ref()
        } else {
            self.local.as_ref()
        }
    }
}

#[async_trait::async_trait]
impl JobLog for ClusterJobLog {
    async fn record(&self, run: &JobRunRecord) -> Result<(), StoreFailure> {
        self.of(&run.job).record(run).await
    }

    async fn last_run(&self, job: &str) -> Result<Option<JobRunRecord>, StoreFailure> {
        self.of(job).last_run(job).await
    }

    async fn runs(&self, job: &str, limit: usize) -> Result<Vec<JobRunRecord>, StoreFailure> {
        self.of(job).runs(job, limit).await
    }

    async fn paused_jobs(&self) -> Result<Vec<String>, StoreFailure> {
        let mut paused: Vec<String> = (self.local.paused_jobs().await?.into_iter())
            .filter(|job| !self.cluster_wide.contains(job))
            .collect();
        paused.extend(
            (self.shared.paused_jobs().await?.into_iter())
                .filter(|job| self.cluster_wide.contains(job)),
        );
        Ok(paused)
    }

    async fn set_paused(&self, job: &str, paused: bool) -> Result<(), StoreFailure> {
        self.of(job).set_paused(job, paused).await
    }
}

/// Where the scheduler keeps its job runs: this node's store, or, on several machines, the
/// cluster's jobs in the shared database.
pub fn job_log(
    config: &Config,
    store: &valor_store::Store,
    cluster: Option<&valor_store_pg::PgStore>,
) -> anyhow::Result<Arc<dyn JobLog>> {
    let local: Arc<dyn JobLog> = Arc::new(store.clone());
    let Some(pg) = cluster else {
        return Ok(local);
    };
    let cluster_wide = (table(config)?.into_iter())
        .filter(|(spec, _)| spec.cluster_wide)
        .map(|(spec, _)| spec.name)
        .collect();
    Ok(Arc::new(ClusterJobLog {
        local,
        shared: Arc::new(pg.clone()),
        cluster_wide,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_old_folders_of_the_prefix_are_removed() {
        let temp = tempfile::tempdir().unwrap();
        let make = |name: &str, age_secs: u64| {
            let dir = temp.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("Local State"), "{}").unwrap();
            let when = std::time::SystemTime::now() - Duration::from_secs(age_secs);
            std::fs::File::open(&dir)
                .unwrap()
                .set_modified(when)
                .unwrap();
        };
        make("valor-chromium-old", 2 * 86_400);
        make("valor-chromium-new", 60);
        make("someone-elses-old", 2 * 86_400);
        assert_eq!(
            remove_stale_temp_dirs(temp.path(), "valor-chromium-", STALE_PROCESS_AGE),
            1
        );
        let mut left: Vec<String> = std::fs::read_dir(temp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["someone-elses-old", "valor-chromium-new"]);
    }

    #[test]
    fn the_specs_come_from_the_config() {
        let mut config = Config::default();
        config.scheduler.cleanup_schedule = "0 0 3 * * *".to_owned();
        config.scheduler.cleanup_missed = valor_config::Missed::Notify;
        let jobs = specs(&config).unwrap();
        let names: Vec<&str> = jobs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "resource-tick",
                "reaper",
                "daydream",
                "questions",
                "cleanup"
            ]
        );
        assert_eq!(jobs[2].schedule.to_string(), "0 0 */6 * * *");
        assert_eq!(jobs[4].schedule.to_string(), "0 0 3 * * *");
        assert_eq!(jobs[4].missed, MissedPolicy::Notify);
        config.scheduler.cleanup_schedule = "0 0 3 * *".to_owned();
        let error = format!("{:#}", specs(&config).unwrap_err());
        assert!(error.contains("[scheduler] cleanup_schedule"), "{error}");
    }
}
