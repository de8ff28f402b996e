//! Group commit: every write that must be on disk before it is acknowledged (a user's message,
//! an accepted update, a chat's session) waits for a flush. One flush runs at a time, on the
//! blocking pool; the writes that arrive while it runs share the next one, so a burst of
//! accepted updates costs one or two fsyncs, not one each, and no fsync runs on an async
//! thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::StoreError;

/// Set while a caller flushes for others; a caller dropped mid-flush (its task cancelled)
/// hands the turn on: the others look again and one of them flushes.
struct Flushing<'a>(&'a Committer);

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        self.0.state().flushing = false;
        self.0.shared.done.send_modify(|_| {});
    }
}

/// The committer of one store; clones share it.
#[derive(Clone)]
pub(crate) struct Committer {
    db: sled::Db,
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// (commits covered so far, the error of the flush that covered the last of them).
    done: watch::Sender<(u64, Option<String>)>,
    flushes: AtomicU64,
    /// Milliseconds each flush is held back (a slow disk, injected by tests).
    delay_ms: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Commits asked for so far (each caller's ticket).
    requested: u64,
    /// A flush is running.
    flushing: bool,
}

impl Committer {
    pub(crate) fn new(db: sled::Db) -> Committer {
        Committer {
            db,
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                done: watch::channel((0, None)).0,
                flushes: AtomicU64::new(0),
                delay_ms: AtomicU64::new(0),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until everything written before this call is on disk.
    pub(crate) async fn commit(&self) -> Result<(), StoreError> {
        let mut done = self.shared.done.subscribe();
        let ticket = {
            let mut state = self.state();
            state.requested += 1;
            state.requested
        };
        loop {
            let target = {
                let mut state = self.state();
                let (covered, error) = done.borrow_and_update().clone();
                if covered >= ticket {
                    return error.map_or(Ok(()), |e| Err(StoreError::Io(e)));
                }
                if state.flushing {
                    None
                } else {
                    state.flushing = true;
                    Some(state.requested)
                }
            };
            match target {
                // This caller flushes for itself and every one that asked before it.
                Some(target) => {
                    let flushing = Flushing(self);
                    let error = self.flush().await.err();
                    std::mem::forget(flushing);
                    self.state().flushing = false;
                    self.shared.done.send_replace((target, error.clone()));
                    return error.map_or(Ok(()), |e| Err(StoreError::Io(e)));
                }
                // Another caller's flush runs: wait for it, then look again.
                None => {
                    if done.changed().await.is_err() {
                        return Err(StoreError::Io("the store's committer is gone".to_owned()));
                    }
                }
            }
        }
    }

    /// One flush on the blocking pool.
    async fn flush(&self) -> Result<(), String> {
        let (db, shared) = (self.db.clone(), Arc::clone(&self.shared));
        let flushed = tokio::task::spawn_blocking(move || {
            let delay = shared.delay_ms.load(Ordering::Relaxed);
            if delay > 0 {
                std::thread::sleep(Duration::from_millis(delay));
            }
            shared.flushes.fetch_add(1, Ordering::Relaxed);
            db.flush().map(|_| ()).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("the flush task failed: {e}"))?;
        if let Err(e) = &flushed {
            tracing::error!(error = %e, "the store could not write to disk");
        }
        flushed
    }

    /// (flushes done, commits asked for) so far.
    pub(crate) fn figures(&self) -> (u64, u64) {
        (
            self.shared.flushes.load(Ordering::Relaxed),
            self.state().requested,
        )
    }

    /// Holds every flush back by `delay` (tests: a disk that stalls).
    pub(crate) fn slow_down(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::Relaxed);
    }
}
