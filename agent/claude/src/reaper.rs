//! The reaper: ends Claude Code process groups that outlived their turn. Every group Valor
//! starts is recorded in the store until it has ended, so the reaper also finds what a Valor
//! that crashed (or was killed) left running, and never touches anyone else's processes: a
//! record names the group's leader by pid *and* start time, and records of another boot are
//! dropped.

use std::time::Duration;

use nix::sys::signal::Signal;
use valor_monitor::ChildRegistry;
use valor_protocol::records::ProcessRecord;

use crate::ledger::Ledger;

use crate::metrics::DriverMetrics;
use crate::process::{boot_id, group_members, now_ms, signal_group, start_ticks};

/// What one pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReapReport {
    /// Groups that were still running and were ended.
    pub killed: Vec<u32>,
    /// Records whose processes were already gone (removed).
    pub cleared: usize,
}

pub struct Reaper {
    store: Ledger,
    children: ChildRegistry,
    metrics: Option<DriverMetrics>,
    grace: Duration,
}

impl Reaper {
    pub fn new(
        store: Ledger,
        children: ChildRegistry,
        metrics: Option<DriverMetrics>,
        grace: Duration,
    ) -> Reaper {
        Reaper {
            store,
            children,
            metrics,
            grace,
        }
    }

    /// One pass over the records. `older_than` limits it to groups started that long ago or
    /// earlier (the daydream's 24 h cleanup); `None` takes every group that outlived its turn.
    pub async fn reap(&self, older_than: Option<Duration>) -> ReapReport {
        let records = match self.store.processes().await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "reaper cannot read the process records");
                return ReapReport::default();
            }
        };
        let live: Vec<u32> = self.children.snapshot().iter().map(|c| c.pid).collect();
        let this_boot = boot_id().unwrap_or_default();
        let mut report = ReapReport::default();
        for record in records {
            // A group a turn of this Valor still runs is not an orphan.
            if record.owner_pid == std::process::id() && live.contains(&record.pgid) {
                continue;
            }
            if let Some(age) = older_than
                && now_ms().saturating_sub(record.started_at_ms) < age.as_millis() as u64
            {
                continue;
            }
            if record.boot_id != this_boot || !still_ours(&record) {
                report.cleared += 1;
                self.forget(record.pgid).await;
                continue;
            }
            tracing::warn!(pgid = record.pgid, chat_id = ?record.chat_id, owner = record.owner_pid,
                label = %record.label, age_secs = now_ms().saturating_sub(record.started_at_ms) / 1000,
                "ending a process group that outlived its turn (or its Valor)");
            signal_group(record.pgid, Signal::SIGTERM);
            let deadline = tokio::time::Instant::now() + self.grace;
            while !group_members(record.pgid).is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            signal_group(record.pgid, Signal::SIGKILL);
            report.killed.push(record.pgid);
            if let Some(metrics) = &self.metrics {
                metrics.orphans_reaped.inc();
            }
            self.forget(record.pgid).await;
        }
        if let Err(e) = self.store.commit().await {
            tracing::warn!(error = %e, "reaper cannot commit the store");
        }
        report
    }

    /// Reaps every `period` until `shutdown`.
    pub async fn run(self, period: Duration, shutdown: tokio_util::sync::CancellationToken) {
        let mut interval = tokio::time::interval(period);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = interval.tick() => {
                    let report = self.reap(None).await;
                    if !report.killed.is_empty() {
                        tracing::warn!(killed = report.killed.len(), "reaped orphaned Claude Code processes");
                    }
                }
            }
        }
    }

    async fn forget(&self, pgid: u32) {
        if let Err(e) = self.store.remove_process(pgid).await {
            tracing::warn!(pgid, error = %e, "cannot remove a process record");
        }
    }
}

/// Whether the recorded group still exists and is the one we started: its leader has the
/// recorded start time, or the leader is gone but members of the group remain (a group id
/// cannot be reused while any member lives).
fn still_ours(record: &ProcessRecord) -> bool {
    match start_ticks(record.pgid) {
        Some(ticks) => ticks == record.start_ticks,
        None => !group_members(record.pgid).is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn_group() -> std::process::Child {
        use std::os::unix::process::CommandExt as _;
        std::process::Command::new("sh")
            .args(["-c", "sleep 60 & sleep 60"])
            .process_group(0)
            .spawn()
            .unwrap()
    }

    fn record(pid: u32, ticks: u64, boot: String, age_ms: u64) -> ProcessRecord {
        ProcessRecord {
            pgid: pid,
            start_ticks: ticks,
            boot_id: boot,
            owner_pid: 1, // a Valor that is gone
            label: "claude".to_owned(),
            chat_id: Some(1),
            started_at_ms: now_ms() - age_ms,
        }
    }

    #[tokio::test]
    async fn orphans_of_a_crashed_valor_are_ended_and_strangers_left_alone() {
        let _dir = tempfile::tempdir().unwrap();
        let store: Ledger = std::sync::Arc::new(crate::ledger::InMemoryLedger::default());
        let mut orphan = spawn_group();
        let mut stranger = spawn_group();
        std::thread::sleep(Duration::from_millis(100));
        let boot = boot_id().unwrap();
        store
            .put_process(&record(
                orphan.id(),
                start_ticks(orphan.id()).unwrap(),
                boot.clone(),
                1000,
            ))
            .await
            .unwrap();
        // Same pid as a record, but another start time: a reused pid, not ours.
        store
            .put_process(&record(stranger.id(), 1, boot.clone(), 1000))
            .await
            .unwrap();
        // A record from another boot.
        store
            .put_process(&record(999_999, 5, "old-boot".to_owned(), 1000))
            .await
            .unwrap();

        let reaper = Reaper::new(
            store.clone(),
            ChildRegistry::new(),
            None,
            Duration::from_secs(2),
        );
        let report = reaper.reap(None).await;
        assert_eq!(report.killed, [orphan.id()]);
        assert_eq!(report.cleared, 2);
        assert!(store.processes().await.unwrap().is_empty());
        orphan.wait().unwrap();
        assert!(
            group_members(orphan.id()).is_empty(),
            "the whole group ended"
        );
        assert!(
            stranger.try_wait().unwrap().is_none(),
            "a stranger is never touched"
        );
        stranger.kill().unwrap();
        stranger.wait().unwrap();
        signal_group(stranger.id(), Signal::SIGKILL);
    }

    #[tokio::test]
    async fn live_turns_and_young_groups_are_spared() {
        let _dir = tempfile::tempdir().unwrap();
        let store: Ledger = std::sync::Arc::new(crate::ledger::InMemoryLedger::default());
        let mut mine = spawn_group();
        let children = ChildRegistry::new();
        let _registered = children.register(mine.id(), "claude");
        let mut own = record(
            mine.id(),
            start_ticks(mine.id()).unwrap(),
            boot_id().unwrap(),
            1000,
        );
        own.owner_pid = std::process::id();
        store.put_process(&own).await.unwrap();
        let reaper = Reaper::new(store.clone(), children, None, Duration::from_secs(1));
        assert!(
            reaper.reap(None).await.killed.is_empty(),
            "a running turn's group is not an orphan"
        );

        // With an age limit, a young orphan is left for later.
        let mut young = spawn_group();
        std::thread::sleep(Duration::from_millis(50));
        store
            .put_process(&record(
                young.id(),
                start_ticks(young.id()).unwrap(),
                boot_id().unwrap(),
                1000,
            ))
            .await
            .unwrap();
        let report = reaper.reap(Some(Duration::from_secs(24 * 3600))).await;
        assert!(report.killed.is_empty());
        assert_eq!(store.processes().await.unwrap().len(), 2);
        for child in [&mut mine, &mut young] {
            signal_group(child.id(), Signal::SIGKILL);
            child.wait().unwrap();
        }
    }

    /// The daydream's pre-cleanup: groups of ours older than 24 h end; a younger one of ours and
    /// a stranger's `sleep` are left running.
    #[tokio::test]
    async fn the_24_hour_cleanup_ends_only_our_old_groups() {
        let _dir = tempfile::tempdir().unwrap();
        let store: Ledger = std::sync::Arc::new(crate::ledger::InMemoryLedger::default());
        let mut old = spawn_group();
        let mut young = spawn_group();
        let mut stranger = spawn_group();
        std::thread::sleep(Duration::from_millis(100));
        let boot = boot_id().unwrap();
        let day = 24 * 3600 * 1000;
        for (child, age) in [(&old, day + 3_600_000), (&young, 3_600_000)] {
            store
                .put_process(&record(
                    child.id(),
                    start_ticks(child.id()).unwrap(),
                    boot.clone(),
                    age,
                ))
                .await
                .unwrap();
        }
        let reaper = Reaper::new(
            store.clone(),
            ChildRegistry::new(),
            None,
            Duration::from_secs(2),
        );
        let report = reaper.reap(Some(Duration::from_secs(24 * 3600))).await;
        assert_eq!(report.killed, [old.id()]);
        old.wait().unwrap();
        assert!(
            young.try_wait().unwrap().is_none(),
            "younger than a day: spared"
        );
        assert!(
            stranger.try_wait().unwrap().is_none(),
            "not ours: never touched"
        );
        for child in [&mut young, &mut stranger] {
            signal_group(child.id(), Signal::SIGKILL);
            child.wait().unwrap();
        }
    }
}
