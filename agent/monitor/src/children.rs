//! The child processes Valor started (Claude Code sessions, browsers), so the monitor can count
//! them and tell their age. Spawners register a pid and keep the guard for the child's lifetime.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// One registered child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRecord {
    pub pid: u32,
    /// What it is, e.g. `claude` or `chromium`.
    pub label: String,
    pub started: SystemTime,
}

/// Shared registry of live children; clones point at the same set.
#[derive(Debug, Clone, Default)]
pub struct ChildRegistry {
    children: Arc<Mutex<BTreeMap<u32, ChildRecord>>>,
}

/// Removes its child from the registry when dropped.
#[derive(Debug)]
#[must_use = "dropping the guard unregisters the child at once"]
pub struct ChildGuard {
    registry: ChildRegistry,
    pid: u32,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.pid);
    }
}

impl ChildRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a child started now.
    pub fn register(&self, pid: u32, label: impl Into<String>) -> ChildGuard {
        self.register_started_at(pid, label, SystemTime::now())
    }

    /// Registers a child with a known start time.
    pub fn register_started_at(
        &self,
        pid: u32,
        label: impl Into<String>,
        started: SystemTime,
    ) -> ChildGuard {
        self.lock().insert(
            pid,
            ChildRecord {
                pid,
                label: label.into(),
                started,
            },
        );
        ChildGuard {
            registry: self.clone(),
            pid,
        }
    }

    /// The registered children, oldest pid first.
    pub fn snapshot(&self) -> Vec<ChildRecord> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, ChildRecord>> {
        self.children.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_unregisters_on_drop() {
        let registry = ChildRegistry::new();
        let a = registry.register(10, "claude");
        let b = registry.register(11, "chromium");
        assert_eq!(
            registry
                .snapshot()
                .iter()
                .map(|c| c.pid)
                .collect::<Vec<_>>(),
            [10, 11]
        );
        drop(a);
        assert_eq!(registry.snapshot()[0].label, "chromium");
        drop(b);
        assert!(registry.snapshot().is_empty());
    }
}
