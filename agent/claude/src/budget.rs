//! The memory budget of Claude processes: each warm CLI holds about 200 MB, so on a small
//! server a handful of warm processes is the whole machine. The driver measures the resident
//! memory of every process group it runs (running and warm) before it starts another; past
//! the budget it closes warm ones first, least recently used, and then the turn waits.

use std::collections::HashMap;

/// The budget when `[claude] process_memory_mb` is 0: a quarter of the machine's memory.
pub fn budget_bytes(configured_mb: u64) -> u64 {
    if configured_mb > 0 {
        return configured_mb.saturating_mul(1024 * 1024);
    }
    machine_memory_bytes().map_or(2 * 1024 * 1024 * 1024, |total| total / 4)
}

/// `MemTotal` of /proc/meminfo.
pub fn machine_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resident bytes of each process group in `pgids`: the sum over its members (a sandboxed
/// CLI is bubblewrap, its init and the program). One pass over /proc.
pub fn group_rss(pgids: &[u32]) -> HashMap<u32, u64> {
    let mut rss: HashMap<u32, u64> = pgids.iter().map(|p| (*p, 0)).collect();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return rss;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(pgid) = parse_pgrp(&stat)
            && let Some(total) = rss.get_mut(&pgid)
        {
            *total += resident_bytes(pid).unwrap_or(0);
        }
    }
    rss
}

/// The process group from a /proc/<pid>/stat line. The command name may hold spaces and
/// parentheses: fields are counted after its last `)`.
fn parse_pgrp(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state, ppid, pgrp.
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// `VmRSS` of /proc/<pid>/status.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Whether one more process fits: `used` bytes held by `live` processes, the next one
/// estimated at their average. A turn with nothing else running always fits.
pub fn fits(used: u64, live: usize, budget: u64) -> bool {
    if live == 0 {
        return true;
    }
    let estimate = used / live as u64;
    used.saturating_add(estimate) <= budget
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_names() {
        let line = "4242 (node (claude) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 11 0 \
                    100 1234567 5000 18446744073709551615";
        assert_eq!(parse_pgrp(line), Some(4242));
        assert_eq!(parse_pgrp("garbage"), None);
    }

    #[test]
    fn our_own_group_is_measured() {
        let own = nix::unistd::getpgrp().as_raw() as u32;
        let rss = group_rss(&[own]);
        assert!(rss[&own] > 1024 * 1024, "{rss:?}");
    }

    #[test]
    fn one_more_fits_by_the_average_and_a_lone_turn_always_runs() {
        let mb = 1024 * 1024;
        assert!(fits(0, 0, 0));
        assert!(fits(400 * mb, 2, 600 * mb));
        assert!(!fits(401 * mb, 2, 600 * mb));
        assert!(budget_bytes(512) == 512 * mb);
        assert!(budget_bytes(0) >= 64 * mb);
    }
}
