//! One reading of Valor's own resources and the machine's, taken with sysinfo.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sysinfo::{
    MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System,
};

use crate::MonitorError;
use crate::children::ChildRegistry;

/// Figures at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the Unix epoch.
    pub taken_at: u64,
    /// Valor's resident memory.
    pub rss_bytes: u64,
    /// Valor's CPU use since the previous sample, percent of all cores (0-100).
    pub cpu_percent: f64,
    pub system_memory_total_bytes: u64,
    pub system_memory_used_bytes: u64,
    /// 1, 5 and 15 minute load averages.
    pub load_average: [f64; 3],
    /// Live child processes Valor started.
    pub children: usize,
    /// Age of the oldest live child.
    pub oldest_child_secs: Option<u64>,
    /// Live children older than the stale limit.
    pub stale_children: usize,
    /// The store's filesystem: (free, total) bytes, when it is watched.
    pub disk: Option<(u64, u64)>,
    /// Turns waiting (for their chat or a slot), when the conversation service is watched.
    pub queued: usize,
}

impl Sample {
    pub fn system_memory_used_percent(&self) -> f64 {
        if self.system_memory_total_bytes == 0 {
            return 0.0;
        }
        self.system_memory_used_bytes as f64 * 100.0 / self.system_memory_total_bytes as f64
    }

    pub fn rss_mb(&self) -> f64 {
        self.rss_bytes as f64 / (1024.0 * 1024.0)
    }
}

/// Takes samples; keeps sysinfo's state between them (CPU use is a difference).
pub struct Sampler {
    system: System,
    pid: Pid,
    cores: f64,
    children: ChildRegistry,
    stale_after: Duration,
}

impl Sampler {
    pub fn new(children: ChildRegistry, stale_after: Duration) -> Result<Self, MonitorError> {
        let system = System::new().map_err(|e| MonitorError::Sample(e.to_string()))?;
        let pid = sysinfo::get_current_pid().map_err(|e| MonitorError::Sample(e.to_string()))?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        Ok(Sampler {
            system,
            pid,
            cores,
            children,
            stale_after,
        })
    }

    /// Reads the figures now. Only Valor's process and its registered children are refreshed,
    /// never the whole process table: sampling stays cheap and small.
    pub fn sample(&mut self) -> Result<Sample, MonitorError> {
        let now = SystemTime::now();
        let kind = ProcessRefreshKind::nothing().with_memory().with_cpu();
        self.system
            .refresh_processes_specifics(ProcessesToUpdate::Some(&[self.pid]), true, kind);
        let own = self
            .system
            .process(self.pid)
            .ok_or_else(|| MonitorError::Sample("Valor's own process is not visible".to_owned()))?;
        let rss_bytes = own.memory();
        let cpu_percent = (f64::from(own.cpu_usage()) / self.cores).clamp(0.0, 100.0);

        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let load = System::load_average().map_err(|e| MonitorError::Sample(e.to_string()))?;

        let records = self.children.snapshot();
        let pids: Vec<Pid> = records.iter().map(|c| Pid::from_u32(c.pid)).collect();
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::nothing(),
        );
        let ages: Vec<Duration> = records
            .iter()
            .filter(|c| {
                self.system.process(Pid::from_u32(c.pid)).is_some_and(|p| {
                    !matches!(p.status(), ProcessStatus::Zombie | ProcessStatus::Dead)
                })
            })
            .map(|c| now.duration_since(c.started).unwrap_or_default())
            .collect();

        Ok(Sample {
            taken_at: now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
            rss_bytes,
            cpu_percent,
            system_memory_total_bytes: self.system.total_memory(),
            system_memory_used_bytes: self.system.used_memory(),
            load_average: [load.one, load.five, load.fifteen],
            children: ages.len(),
            oldest_child_secs: ages.iter().max().map(Duration::as_secs),
            stale_children: ages.iter().filter(|age| **age >= self.stale_after).count(),
            disk: None,
            queued: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_own_process_and_live_children() {
        let children = ChildRegistry::new();
        let mut sampler = Sampler::new(children.clone(), Duration::from_secs(3600)).unwrap();
        let first = sampler.sample().unwrap();
        assert!(first.rss_bytes > 1024 * 1024, "{first:?}");
        assert!(first.system_memory_total_bytes >= first.system_memory_used_bytes);
        assert_eq!(first.children, 0);
        assert_eq!(first.oldest_child_secs, None);

        let mut young = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut old = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let _young = children.register(young.id(), "sleep");
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        let _old = children.register_started_at(old.id(), "sleep", two_hours_ago);
        let with_children = sampler.sample().unwrap();
        assert_eq!(with_children.children, 2);
        assert!(with_children.oldest_child_secs.unwrap() >= 7200);
        assert_eq!(with_children.stale_children, 1);

        // A child that has exited and been reaped no longer counts, even if still registered.
        old.kill().unwrap();
        old.wait().unwrap();
        let after_exit = sampler.sample().unwrap();
        assert_eq!(after_exit.children, 1);
        assert_eq!(after_exit.stale_children, 0);
        young.kill().unwrap();
        young.wait().unwrap();
    }
}
