//! Process groups: every Claude Code run is the leader of its own group, so MCP servers and
//! tools it starts are stopped with it. Each group is registered with the monitor (counts and
//! ages on /health) and recorded in the store until it has ended, so a Valor that crashed can
//! find and end what it left behind (see [`crate::reaper`]).

use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use valor_monitor::{ChildGuard, ChildRegistry};
use valor_protocol::records::ProcessRecord;

use crate::ledger::Ledger;
pub(crate) use valor_protocol::time::now_ms;

/// A live process group; ended (SIGKILL to the group) and forgotten when dropped.
pub struct ProcessGroup {
    pgid: u32,
    store: Option<Ledger>,
    _registered: ChildGuard,
}

impl ProcessGroup {
    /// Takes charge of the group led by `pid` (spawned with its own process group); its record
    /// is committed before this returns, so a crash now cannot orphan it.
    pub async fn adopt(
        pid: u32,
        label: &str,
        chat_id: Option<i64>,
        children: &ChildRegistry,
        store: Option<&Ledger>,
    ) -> ProcessGroup {
        let registered = children.register(pid, label);
        if let Some(store) = store {
            let record = record_of(pid, label, chat_id);
            if let Err(e) = store.put_process(&record).await {
                tracing::warn!(pgid = pid, error = %e, "cannot record the process group; a crash now could orphan it");
            }
        }
        ProcessGroup {
            pgid: pid,
            store: store.cloned(),
            _registered: registered,
        }
    }

    /// [`ProcessGroup::adopt`] from code that cannot wait (a browser launched by a tool): the
    /// record is written in the background. A group that ends before its record is written
    /// leaves a record the next reaper pass clears (it finds the group gone).
    pub fn adopt_detached(
        pid: u32,
        label: &str,
        chat_id: Option<i64>,
        children: &ChildRegistry,
        store: Option<&Ledger>,
    ) -> ProcessGroup {
        let group = ProcessGroup {
            pgid: pid,
            store: store.cloned(),
            _registered: children.register(pid, label),
        };
        if let (Some(store), Ok(runtime)) = (store.cloned(), tokio::runtime::Handle::try_current())
        {
            let record = record_of(pid, label, chat_id);
            runtime.spawn(async move {
                if let Err(e) = store.put_process(&record).await {
                    tracing::warn!(pgid = pid, error = %e, "cannot record the process group");
                }
            });
        }
        group
    }

    pub fn pgid(&self) -> u32 {
        self.pgid
    }

    /// Sends `signal` to the whole group; false when the group is gone.
    pub fn signal(&self, signal: Signal) -> bool {
        signal_group(self.pgid, signal)
    }
}

/// The record of a group this Valor started now.
fn record_of(pid: u32, label: &str, chat_id: Option<i64>) -> ProcessRecord {
    ProcessRecord {
        pgid: pid,
        start_ticks: start_ticks(pid).unwrap_or(0),
        boot_id: boot_id().unwrap_or_default(),
        owner_pid: std::process::id(),
        label: label.to_owned(),
        chat_id,
        started_at_ms: now_ms(),
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // Whatever of the group is still running (an MCP server that ignored SIGINT, a tool's
        // child) ends with it.
        signal_group(self.pgid, Signal::SIGKILL);
        // The record goes in the background (a drop cannot wait); one left behind by a Valor
        // stopping now is cleared by the next reaper pass, which finds the group gone.
        let (Some(store), Ok(runtime)) =
            (self.store.clone(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let pgid = self.pgid;
        runtime.spawn(async move {
            if let Err(e) = store.remove_process(pgid).await {
                tracing::warn!(pgid, error = %e, "cannot remove the process record");
            }
        });
    }
}

/// Waits (up to `limit`) until nothing of group `pgid` is alive. A sandbox's processes die a
/// moment after its bubblewrap leader; the caller returns only once they are gone.
pub async fn wait_group_gone(pgid: u32, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if group_members(pgid).is_empty() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends `signal` to process group `pgid`; false when no such group exists.
pub fn signal_group(pgid: u32, signal: Signal) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    if raw <= 1 {
        return false;
    }
    killpg(Pid::from_raw(raw), signal).is_ok()
}

/// Stops a group: SIGTERM, then SIGKILL if anything of it is left after `grace`. Returns when
/// the leader has exited (its `wait` is the caller's `exited` future).
pub async fn terminate<F: std::future::Future>(group: &ProcessGroup, grace: Duration, exited: F) {
    if !group.signal(Signal::SIGTERM) {
        return;
    }
    tokio::pin!(exited);
    if tokio::time::timeout(grace, &mut exited).await.is_err() {
        tracing::warn!(
            pgid = group.pgid(),
            grace_secs = grace.as_secs(),
            "process group ignored SIGTERM; killing it"
        );
        group.signal(Signal::SIGKILL);
        let _ = exited.await;
    }
}

/// A process's start time in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// This boot's id.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Pids of live (non-zombie) processes in process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let pgid = pgid.to_string();
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(close) = stat.rfind(')') else {
                return false;
            };
            let mut fields = stat[close + 2..].split_whitespace();
            let state = fields.next();
            let group = fields.nth(1);
            state != Some("Z") && group == Some(pgid.as_str())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_identify_a_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let ticks = start_ticks(child.id()).unwrap();
        assert!(ticks > 0);
        assert_eq!(start_ticks(child.id()), Some(ticks));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(start_ticks(child.id()), None);
        assert_eq!(boot_id().unwrap().len(), 36);
    }
}
