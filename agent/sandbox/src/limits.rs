//! Limits per sandbox: memory, processes and a CPU share in a cgroup of its own (cgroup v2
//! where a subtree is delegated to Valor, else the v1 memory, pids and cpu hierarchies Valor
//! may write), file size and core dumps by rlimit always, and processes by rlimit where no
//! cgroup can be had (said so on /health).

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::SandboxError;

/// What one sandbox may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory of every process in the sandbox together (its `/tmp` included).
    pub memory_mb: u64,
    /// Processes and threads at once.
    pub processes: u64,
    /// CPU share against other sandboxes (cgroup v2 weight, 1-10000; 100 is even).
    pub cpu_weight: u64,
    /// The workspace's size on disk, and the largest file any process may write.
    pub disk_mb: u64,
    /// The sandbox's private `/tmp` (memory, counted in `memory_mb`).
    pub tmp_mb: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 2048,
            processes: 512,
            cpu_weight: 100,
            disk_mb: 1024,
            tmp_mb: 512,
        }
    }
}

/// How limits are kept on this machine, found once at start.
#[derive(Debug)]
pub enum Cgroups {
    /// A cgroup v2 subtree Valor may write: each sandbox gets `base/sandbox-<id>`.
    V2 { base: PathBuf },
    /// cgroup v1 hierarchies Valor may write, each with its own `valor-<pid>` folder.
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
        cpu: Option<PathBuf>,
    },
    /// No cgroup: rlimits only.
    Unavailable { reason: String },
}

/// Limits a sandbox went over while a turn ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitEvents {
    /// Processes the kernel killed for memory.
    pub oom_kills: u64,
    /// Times a new process or thread was refused.
    pub process_refusals: u64,
}

/// One sandbox's cgroup(s); killed and removed when dropped.
#[derive(Debug)]
pub struct Cgroup {
    v2: bool,
    dirs: Vec<(Controller, PathBuf)>,
    /// `cgroup.procs` of each, opened before the sandbox starts so the starting process can
    /// join them without opening anything.
    pub(crate) procs: Vec<File>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controller {
    Unified,
    Memory,
    Pids,
    Cpu,
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl Cgroups {
    /// Finds what this process may use: a delegated v2 subtree, else writable v1 hierarchies.
    pub fn detect() -> Cgroups {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        match v2(&own) {
            Ok(base) => Cgroups::V2 { base },
            Err(v2_reason) => {
                let found = |name| v1(&own, &mountinfo, name);
                let (memory, pids, cpu) = (found("memory"), found("pids"), found("cpu"));
                if memory.is_some() || pids.is_some() {
                    return Cgroups::V1 { memory, pids, cpu };
                }
                Cgroups::Unavailable {
                    reason: format!(
                        "no cgroup Valor may write ({v2_reason}; no writable v1 memory or pids hierarchy)"
                    ),
                }
            }
        }
    }

    /// What /health and `valor doctor` say.
    pub fn describe(&self) -> String {
        match self {
            Cgroups::V2 { base } => format!("cgroup v2 at {} (memory, pids, cpu)", base.display()),
            Cgroups::V1 { memory, pids, cpu } => {
                let names: Vec<&str> = [("memory", memory), ("pids", pids), ("cpu", cpu)]
                    .into_iter()
                    .filter(|(_, dir)| dir.is_some())
                    .map(|(name, _)| name)
                    .collect();
                format!("cgroup v1 ({})", names.join(", "))
            }
            Cgroups::Unavailable { reason } => {
                format!("rlimits only (processes, file size; memory is not limited): {reason}")
            }
        }
    }

    /// Whether memory is limited per sandbox.
    pub fn limits_memory(&self) -> bool {
        matches!(
            self,
            Cgroups::V2 { .. }
                | Cgroups::V1 {
                    memory: Some(_),
                    ..
                }
        )
    }

    /// Whether processes are limited per sandbox (else by rlimit, per user).
    pub fn limits_processes(&self) -> bool {
        matches!(self, Cgroups::V2 { .. } | Cgroups::V1 { pids: Some(_), .. })
    }

    /// A cgroup for one sandbox with `limits` written; `None` without cgroups.
    pub fn create(&self, name: &str, limits: &Limits) -> Result<Option<Cgroup>, SandboxError> {
        let leaf = format!("{name}-{}", uuid::Uuid::new_v4().simple());
        let mut cgroup = Cgroup {
            v2: matches!(self, Cgroups::V2 { .. }),
            dirs: Vec::new(),
            procs: Vec::new(),
        };
        let memory = limits.memory_mb.saturating_mul(1024 * 1024).to_string();
        match self {
            Cgroups::Unavailable { .. } => return Ok(None),
            Cgroups::V2 { base } => {
                let dir = cgroup.make(Controller::Unified, base, &leaf)?;
                write(&dir, "memory.max", &memory)?;
                write_optional(&dir, "memory.swap.max", "0");
                write(&dir, "pids.max", &limits.processes.to_string())?;
                write_optional(
                    &dir,
                    "cpu.weight",
                    &limits.cpu_weight.clamp(1, 10_000).to_string(),
                );
            }
            Cgroups::V1 {
                memory: m,
                pids,
                cpu,
            } => {
                if let Some(base) = m {
                    let dir = cgroup.make(Controller::Memory, base, &leaf)?;
                    write(&dir, "memory.limit_in_bytes", &memory)?;
                    write_optional(&dir, "memory.memsw.limit_in_bytes", &memory);
                    write_optional(&dir, "memory.swappiness", "0");
                }
                if let Some(base) = pids {
                    let dir = cgroup.make(Controller::Pids, base, &leaf)?;
                    write(&dir, "pids.max", &limits.processes.to_string())?;
                }
                if let Some(base) = cpu {
                    let dir = cgroup.make(Controller::Cpu, base, &leaf)?;
                    // v1 shares: 1024 is even, as weight 100 is in v2.
                    let shares = (limits.cpu_weight.clamp(1, 10_000) * 1024 / 100).max(2);
                    write_optional(&dir, "cpu.shares", &shares.to_string());
                }
            }
        }
        for (_, dir) in &cgroup.dirs {
            let path = dir.join("cgroup.procs");
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|source| SandboxError::Cgroup { path, source })?;
            cgroup.procs.push(file);
        }
        Ok(Some(cgroup))
    }
}

impl Drop for Cgroups {
    /// Valor's own v1 folders go with it (the sandboxes' are gone by then).
    fn drop(&mut self) {
        if let Cgroups::V1 { memory, pids, cpu } = self {
            for base in [memory, pids, cpu].into_iter().flatten() {
                let _ = std::fs::remove_dir(base);
            }
        }
    }
}

impl Cgroup {
    fn make(
        &mut self,
        controller: Controller,
        base: &Path,
        leaf: &str,
    ) -> Result<PathBuf, SandboxError> {
        let dir = base.join(leaf);
        std::fs::create_dir(&dir).map_err(|source| SandboxError::Cgroup {
            path: dir.clone(),
            source,
        })?;
        self.dirs.push((controller, dir.clone()));
        Ok(dir)
    }

    /// The limits hit so far.
    pub fn events(&self) -> LimitEvents {
        let mut events = LimitEvents::default();
        for (controller, dir) in &self.dirs {
            match controller {
                Controller::Unified => {
                    events.oom_kills = counter(&dir.join("memory.events"), "oom_kill");
                    events.process_refusals = counter(&dir.join("pids.events"), "max");
                }
                Controller::Memory => {
                    events.oom_kills = counter(&dir.join("memory.oom_control"), "oom_kill");
                }
                Controller::Pids => {
                    events.process_refusals = counter(&dir.join("pids.events"), "max");
                }
                Controller::Cpu => {}
            }
        }
        events
    }

    /// Every process in the sandbox's cgroup (host pids).
    pub fn pids(&self) -> Vec<u32> {
        let Some((_, dir)) = self.dirs.first() else {
            return Vec::new();
        };
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Kills everything in it (`cgroup.kill` in v2, each process in v1).
    pub fn kill_all(&self) {
        if self.v2
            && let Some((_, dir)) = self.dirs.first()
            && write(dir, "cgroup.kill", "1").is_ok()
        {
            return;
        }
        for _ in 0..8 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                crate::procs::kill(pid);
            }
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.kill_all();
        self.procs.clear();
        for (_, dir) in self.dirs.drain(..) {
            // A killed process leaves its cgroup a moment later: try a few times, briefly.
            for attempt in 0..50 {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) if attempt < 49 => {
                        std::thread::sleep(std::time::Duration::from_millis(2))
                    }
                    Err(e) => {
                        tracing::debug!(path = %dir.display(), error = %e, "cgroup left behind; removed at the next start");
                    }
                }
            }
        }
    }
}

/// A delegated cgroup v2 subtree: Valor's own cgroup, writable, with the memory and pids
/// controllers. Valor moves itself into a leaf (`valor-agent`) so its cgroup may hand the
/// controllers down (a cgroup with processes cannot), then sandboxes are its siblings.
fn v2(own: &str) -> Result<PathBuf, String> {
    let root = Path::new(CGROUP_ROOT);
    if !root.join("cgroup.controllers").is_file() {
        return Err("no unified cgroup v2 hierarchy at /sys/fs/cgroup".to_owned());
    }
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup v2 membership in /proc/self/cgroup")?;
    let mut base = root.join(path.trim_start_matches('/'));
    if base.file_name().is_some_and(|n| n == "valor-agent") {
        base.pop();
    }
    let controllers = std::fs::read_to_string(base.join("cgroup.controllers"))
        .map_err(|e| format!("{}: {e}", base.display()))?;
    for needed in ["memory", "pids"] {
        if !controllers.split_whitespace().any(|c| c == needed) {
            return Err(format!(
                "the {needed} controller is not delegated to {}",
                base.display()
            ));
        }
    }
    let enabled = std::fs::read_to_string(base.join("cgroup.subtree_control")).unwrap_or_default();
    if !["memory", "pids"]
        .iter()
        .all(|c| enabled.split_whitespace().any(|e| e == *c))
    {
        let agent = base.join("valor-agent");
        match std::fs::create_dir(&agent) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("{} is not Valor's to write: {e}", base.display())),
        }
        write(&agent, "cgroup.procs", &std::process::id().to_string())
            .map_err(|e| format!("cannot move Valor into {}: {e}", agent.display()))?;
        let wanted: Vec<&str> = ["+memory", "+pids", "+cpu"]
            .into_iter()
            .filter(|c| controllers.split_whitespace().any(|have| have == &c[1..]))
            .collect();
        write(&base, "cgroup.subtree_control", &wanted.join(" ")).map_err(|e| {
            format!(
                "cannot hand the controllers down in {}: {e}",
                base.display()
            )
        })?;
    }
    remove_stale(&base, "sandbox-");
    Ok(base)
}

/// A writable v1 hierarchy for `controller`: `<mount>/<own path>/valor-<pid>`.
fn v1(own: &str, mountinfo: &str, controller: &str) -> Option<PathBuf> {
    let own_dir = v1_own_dir(own, mountinfo, controller)?;
    remove_stale(&own_dir, "valor-");
    // One folder per `Cgroups` (a process may have more than one: chats, the browser).
    let base = own_dir.join(format!(
        "valor-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir(&base).ok().map(|()| base)
}

/// This process's cgroup in the v1 hierarchy of `controller`, from /proc/self/cgroup and the
/// hierarchy's mount point in /proc/self/mountinfo.
fn v1_own_dir(own: &str, mountinfo: &str, controller: &str) -> Option<PathBuf> {
    let path = own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
        names.split(',').any(|n| n == controller).then_some(path)
    })?;
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split_whitespace();
        let (fstype, _, options) = (right.next()?, right.next()?, right.next()?);
        let point = left.split_whitespace().nth(4)?;
        (fstype == "cgroup" && options.split(',').any(|o| o == controller)).then_some(point)
    })?;
    Some(Path::new(mount).join(path.trim_start_matches('/')))
}

/// Removes empty cgroups a crashed Valor left (`valor-<dead pid>-<id>` and its sandboxes).
fn remove_stale(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        if prefix == "valor-" {
            let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if alive || pid.is_none() {
                continue;
            }
            if let Ok(children) = std::fs::read_dir(entry.path()) {
                for child in children.flatten().filter(|c| c.path().is_dir()) {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
        }
        let _ = std::fs::remove_dir(entry.path());
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), SandboxError> {
    let path = dir.join(file);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| SandboxError::Cgroup { path, source })
}

fn write_optional(dir: &Path, file: &str, value: &str) {
    if dir.join(file).exists()
        && let Err(e) = write(dir, file, value)
    {
        tracing::debug!(error = %e, "an optional cgroup setting was not taken");
    }
}

/// `name N` from a cgroup events file.
fn counter(path: &Path, name: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_hierarchy_is_found_from_the_process_and_the_mounts() {
        let own = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/\n";
        let mountinfo = "31 25 0:27 / /sys/fs/cgroup/memory rw,relatime shared:10 - cgroup cgroup rw,memory\n\
                         33 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        assert_eq!(
            v1_own_dir(own, mountinfo, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"))
        );
        assert_eq!(
            v1_own_dir(own, mountinfo, "cpu"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(v1_own_dir(own, mountinfo, "pids"), None, "not mounted");
    }

    #[test]
    fn counters_are_read_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(counter(&dir.path().join("memory.events"), "oom_kill"), 1);
        assert_eq!(counter(&dir.path().join("memory.events"), "max"), 4);
        assert_eq!(counter(&dir.path().join("missing"), "max"), 0);
    }
}
