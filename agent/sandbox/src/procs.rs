//! The processes of one sandbox, found from outside: by its cgroup, or, without one, by its PID
//! namespace. A turn's leftovers (a server a tool started in the background, a detached shell)
//! are the processes that were not there when the turn began; they end with the turn.

use std::collections::HashSet;
use std::path::Path;

use crate::Cgroup;

/// A process as `(pid, start time in clock ticks since boot)`: a pid alone can be reused.
pub type ProcessId = (u32, u64);

/// Every process of the sandbox led by `leader` (bubblewrap's outer process), the leader and
/// bubblewrap's own init inside left out.
pub fn members(leader: u32, cgroup: Option<&Cgroup>) -> Vec<ProcessId> {
    let inner_init = children(leader).into_iter().next();
    let pids: Vec<u32> = match cgroup {
        Some(cgroup) => cgroup.pids(),
        None => match inner_init.and_then(pid_namespace) {
            Some(namespace) => all_pids()
                .into_iter()
                .filter(|pid| pid_namespace(*pid) == Some(namespace))
                .collect(),
            None => Vec::new(),
        },
    };
    pids.into_iter()
        .filter(|pid| *pid != leader && Some(*pid) != inner_init)
        .filter_map(|pid| {
            let (state, start) = state_and_start(pid)?;
            // A killed process stays a zombie until bubblewrap's init reaps it.
            (state != 'Z').then_some((pid, start))
        })
        .collect()
}

/// Kills every process of the sandbox that is not in `keep`; returns how many.
pub fn kill_newcomers(leader: u32, cgroup: Option<&Cgroup>, keep: &HashSet<ProcessId>) -> usize {
    let mut killed: HashSet<ProcessId> = HashSet::new();
    // A process may fork while its parent is killed: look again until nothing new is found.
    for _ in 0..8 {
        let newcomers: Vec<ProcessId> = members(leader, cgroup)
            .into_iter()
            .filter(|p| !keep.contains(p) && !killed.contains(p))
            .collect();
        if newcomers.is_empty() {
            break;
        }
        for process in newcomers {
            kill(process.0);
            killed.insert(process);
        }
    }
    // SIGKILL takes effect a moment later: the caller sees them gone.
    for _ in 0..200 {
        let left = members(leader, cgroup)
            .into_iter()
            .any(|p| killed.contains(&p));
        if !left {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    killed.len()
}

/// SIGKILL to one process (gone already is fine).
pub(crate) fn kill(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Children of `pid` (from `/proc/<pid>/task/<pid>/children`).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn pid_namespace(pid: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|m| m.ino())
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Field 22 of `/proc/<pid>/stat` (after the command name, which may hold spaces).
pub fn start_ticks(pid: u32) -> Option<u64> {
    state_and_start(pid).map(|(_, start)| start)
}

/// The state letter (field 3) and start time (field 22) of `/proc/<pid>/stat`.
fn state_and_start(pid: u32) -> Option<(char, u64)> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_survive_a_name_with_spaces() {
        let own = start_ticks(std::process::id()).unwrap();
        assert!(own > 0);
        assert!(start_ticks(u32::MAX - 7).is_none());
    }
}
