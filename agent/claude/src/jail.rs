//! One sandboxed Claude process's sandbox, as its turns use it: the API token is good only while
//! a turn runs; the limits are watched while it runs (a turn that goes over one ends with a
//! clear message); whatever the turn started is ended when it ends, while the process itself
//! (and the MCP servers it started with) stays warm for the next turn.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use valor_chatfs::ChatDir;
use valor_protocol::TurnErrorKind;
use valor_sandbox::procs::{ProcessId, kill_newcomers, members};
use valor_sandbox::{Cgroup, LimitEvents, Limits, Serving};

use crate::proxy::TurnToken;

/// How often a running turn's limits are looked at (events are cheap; the workspace's size is
/// looked at every fifth time).
pub const WATCH_EVERY: Duration = Duration::from_secs(1);
const DISK_EVERY: u32 = 5;

/// A limit a turn went over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitHit {
    pub kind: TurnErrorKind,
    pub detail: String,
}

/// The sandbox of one Claude process.
pub struct Jail {
    chat_id: i64,
    leader: u32,
    cgroup: Option<Arc<Cgroup>>,
    token: Arc<TurnToken>,
    workspace: Arc<ChatDir>,
    limits: Limits,
    /// Processes there when the turn's run began (the CLI and its MCP servers).
    residents: HashSet<ProcessId>,
    /// The cgroup's counters when the turn began.
    baseline: LimitEvents,
    watched: u32,
    _serving: Serving,
}

impl Jail {
    pub fn new(
        chat_id: i64,
        leader: u32,
        cgroup: Option<Cgroup>,
        serving: Serving,
        token: Arc<TurnToken>,
        workspace: ChatDir,
        limits: Limits,
    ) -> Jail {
        Jail {
            chat_id,
            leader,
            cgroup: cgroup.map(Arc::new),
            token,
            workspace: Arc::new(workspace),
            limits,
            residents: HashSet::new(),
            baseline: LimitEvents::default(),
            watched: 0,
            _serving: serving,
        }
    }

    /// The usage window the API last reported through this sandbox's proxy, taken.
    pub fn usage_window(&self) -> Option<(String, Option<u64>)> {
        self.token.take_usage_window()
    }

    /// A turn begins: the API accepts the process's token from now on.
    pub fn begin_turn(&mut self) {
        self.baseline = self.events();
        self.watched = 0;
        self.token.set_active(true);
    }

    /// The turn's run has begun (its `init` line): what runs now is the CLI and its MCP
    /// servers; anything started later belongs to the turn.
    pub async fn note_residents(&mut self) {
        let (leader, cgroup) = (self.leader, self.cgroup.clone());
        let members = tokio::task::spawn_blocking(move || members(leader, cgroup.as_deref()))
            .await
            .unwrap_or_default();
        self.residents = members.into_iter().collect();
    }

    /// A limit the running turn went over, if any (the workspace's size every fifth look).
    pub async fn check(&mut self) -> Option<LimitHit> {
        if let Some(hit) = self.check_events() {
            return Some(hit);
        }
        self.watched += 1;
        if self.watched.is_multiple_of(DISK_EVERY) {
            return self.check_disk().await;
        }
        None
    }

    /// At the turn's end: every limit, the workspace's size too when `wrote` (tools ran).
    pub async fn check_all(&mut self, wrote: bool) -> Option<LimitHit> {
        match self.check_events() {
            Some(hit) => Some(hit),
            None if wrote => self.check_disk().await,
            None => None,
        }
    }

    fn check_events(&self) -> Option<LimitHit> {
        let events = self.events();
        if events.oom_kills > self.baseline.oom_kills {
            return Some(LimitHit {
                kind: TurnErrorKind::MemoryLimit,
                detail: format!(
                    "the sandbox went over {} MB; the kernel ended a process",
                    self.limits.memory_mb
                ),
            });
        }
        if events.process_refusals > self.baseline.process_refusals {
            return Some(LimitHit {
                kind: TurnErrorKind::ProcessLimit,
                detail: format!(
                    "the sandbox tried to run more than {} processes",
                    self.limits.processes
                ),
            });
        }
        None
    }

    /// Whether the workspace is over its size on disk.
    pub async fn check_disk(&self) -> Option<LimitHit> {
        let workspace = Arc::clone(&self.workspace);
        let limit = self.limits.disk_mb.saturating_mul(1024 * 1024);
        let started = Instant::now();
        let used = tokio::task::spawn_blocking(move || workspace.disk_usage())
            .await
            .ok()?
            .ok()?;
        tracing::trace!(
            chat_id = self.chat_id,
            used,
            ms = started.elapsed().as_millis() as u64,
            "workspace size"
        );
        (used >= limit).then(|| LimitHit {
            kind: TurnErrorKind::DiskLimit,
            detail: format!(
                "the workspace takes {} MB on disk, the limit is {} MB",
                used / (1024 * 1024),
                self.limits.disk_mb
            ),
        })
    }

    /// The turn is over: its token stops counting and what it left running ends.
    pub async fn end_turn(&mut self) {
        self.token.set_active(false);
        let (leader, keep, cgroup) = (self.leader, self.residents.clone(), self.cgroup.clone());
        let chat_id = self.chat_id;
        let killed =
            tokio::task::spawn_blocking(move || kill_newcomers(leader, cgroup.as_deref(), &keep))
                .await
                .unwrap_or(0);
        if killed > 0 {
            tracing::info!(chat_id, killed, "ended what the turn left running");
        }
    }

    fn events(&self) -> LimitEvents {
        self.cgroup
            .as_deref()
            .map(Cgroup::events)
            .unwrap_or_default()
    }
}
