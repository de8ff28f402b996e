//! The jobs `valor run` schedules: the resource monitor's tick, the orphan reaper, the
//! daydream and the cleanup. Their specs come from the config alone, so `valor jobs` lists them without a
//! running Valor.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use valor_config::Config;
use valor_monitor::ResourceMonitor;
use valor_scheduler::{JobSpec, MissedPolicy, Schedule, Scheduler};

/// How often orphaned Claude Code process groups are looked for.
const REAP_EVERY: &str = "every 1m";
/// The cleanup ends Valor's Claude Code process groups older than this.
const STALE_PROCESS_AGE: Duration = Duration::from_secs(24 * 3600);

pub fn specs(config: &Config) -> anyhow::Result<Vec<JobSpec>> {
    let s = &config.scheduler;
    let window = Duration::from_secs(s.catch_up_window_hours.saturating_mul(3600));
    let cleanup_missed = MissedPolicy::parse(&s.cleanup_missed, window).with_context(|| {
        format!(
            "[scheduler] cleanup_missed: unknown policy {:?}",
            s.cleanup_missed
        )
    })?;
    Ok(vec![
        JobSpec {
            name: "resource-tick".to_owned(),
            schedule: Schedule::parse(&format!("every {}s", config.monitor.interval_secs.max(1)))?,
            missed: MissedPolicy::Skip,
            persist: false,
        },
        JobSpec {
            name: "reaper".to_owned(),
            schedule: Schedule::parse(REAP_EVERY)?,
            missed: MissedPolicy::Skip,
            persist: false,
        },
        JobSpec {
            name: crate::daydream::JOB.to_owned(),
            schedule: Schedule::parse(&config.daydream.schedule).context("[daydream] schedule")?,
            missed: MissedPolicy::parse(&config.daydream.missed, window).with_context(|| {
                format!(
                    "[daydream] missed: unknown policy {:?}",
                    config.daydream.missed
                )
            })?,
            persist: true,
        },
        JobSpec {
            name: "cleanup".to_owned(),
            schedule: Schedule::parse(&s.cleanup_schedule)
                .context("[scheduler] cleanup_schedule")?,
            missed: cleanup_missed,
            persist: true,
        },
    ])
}

/// The scheduler with every job's work attached.
pub fn scheduler(
    config: &Config,
    agent: &crate::agent::Agent,
    secrets: &valor_config::Secrets,
    monitor: &Arc<ResourceMonitor>,
    report_sender: Option<crate::daydream::Sender>,
) -> anyhow::Result<Scheduler> {
    let mut scheduler = Scheduler::new(Arc::new(agent.store.clone()), Arc::new(chrono::Utc::now));
    for spec in specs(config)? {
        match spec.name.as_str() {
            "resource-tick" => {
                let monitor = Arc::clone(monitor);
                scheduler.add(spec, move |_| {
                    let outcome = monitor
                        .tick()
                        .map(|report| {
                            format!("{} (score {})", report.status.as_str(), report.score)
                        })
                        .map_err(|e| e.to_string());
                    Box::pin(async move { outcome })
                });
            }
            "reaper" => {
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
            crate::daydream::JOB => {
                let host = Arc::new(crate::daydream::AgentHost {
                    store: agent.store.clone(),
                    monitor: Arc::clone(monitor),
                    reaper: agent.reaper(),
                    monitor_config: config.monitor.clone(),
                    report_chat: config.daydream.report_chat,
                    send: report_sender.clone(),
                });
                let daydream = Arc::new(crate::daydream::daydream(config, secrets, host, agent)?);
                let store = agent.store.clone();
                let cache = crate::daydream::cache_path(config);
                scheduler.add(spec, move |_| {
                    let (daydream, store, cache) =
                        (Arc::clone(&daydream), store.clone(), cache.clone());
                    Box::pin(async move {
                        crate::daydream::run_once(&daydream, &store, &cache, &|_, _| {}).await
                    })
                });
            }
            "cleanup" => {
                let reaper = Arc::new(agent.reaper());
                scheduler.add(spec, move |_| {
                    let reaper = Arc::clone(&reaper);
                    Box::pin(async move {
                        let report = reaper.reap(Some(STALE_PROCESS_AGE)).await;
                        let profiles =
                            remove_stale_browser_profiles(&std::env::temp_dir(), STALE_PROCESS_AGE);
                        Ok(format!(
                            "{} Claude Code process groups over 24 h ended, {profiles} stale browser profiles removed",
                            report.killed.len()
                        ))
                    })
                });
            }
            other => anyhow::bail!("no work is defined for the job {other:?}"),
        }
    }
    Ok(scheduler)
}

/// Removes Chromium profiles (`valor-chromium-*` in `temp`) not touched for `age`: a Valor
/// that was killed cannot remove its own. A live browser writes to its profile, which keeps it
/// young.
pub fn remove_stale_browser_profiles(temp: &std::path::Path, age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("valor-chromium-") {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age);
        if old && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_old_browser_profiles_are_removed() {
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
            remove_stale_browser_profiles(temp.path(), STALE_PROCESS_AGE),
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
        config.scheduler.cleanup_missed = "notify".to_owned();
        let jobs = specs(&config).unwrap();
        let names: Vec<&str> = jobs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["resource-tick", "reaper", "daydream", "cleanup"]);
        assert_eq!(jobs[2].schedule.to_string(), "0 0 */6 * * *");
        assert_eq!(jobs[3].schedule.to_string(), "0 0 3 * * *");
        assert_eq!(jobs[3].missed, MissedPolicy::Notify);
        config.scheduler.cleanup_schedule = "0 0 3 * *".to_owned();
        let error = format!("{:#}", specs(&config).unwrap_err());
        assert!(error.contains("[scheduler] cleanup_schedule"), "{error}");
    }
}
