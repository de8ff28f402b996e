//! Group commit: every write that must be on disk before it is acknowledged (a user's message,
//! an accepted update, a chat's session) asks one committer thread for a flush. Requests that
//! arrive while a flush runs share the next one, so a burst of accepted updates costs one or
//! two fsyncs, not one each, and no fsync ever runs on the async threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::StoreError;

type Waiter = oneshot::Sender<Result<(), String>>;

/// The committer of one store; clones share its thread, which ends (releasing the database)
/// when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Committer {
    thread: Arc<Thread>,
    figures: Arc<Figures>,
}

struct Thread {
    requests: Option<mpsc::Sender<Waiter>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Thread {
    fn drop(&mut self) {
        // No more requests: the thread finishes the flush it may be in and ends.
        drop(self.requests.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[derive(Default)]
struct Figures {
    flushes: AtomicU64,
    requests: AtomicU64,
    /// Milliseconds each flush is held back (a slow disk, injected by tests).
    delay_ms: AtomicU64,
}

impl Committer {
    /// Starts the committer thread for `db`; it ends when the last clone is dropped.
    pub(crate) fn start(db: sled::Db) -> Result<Committer, StoreError> {
        let (requests, waiting) = mpsc::channel::<Waiter>();
        let figures = Arc::new(Figures::default());
        let seen = Arc::clone(&figures);
        let handle = std::thread::Builder::new()
            .name("valor-store-commit".to_owned())
            .spawn(move || commit_loop(&db, &waiting, &seen))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(Committer {
            thread: Arc::new(Thread {
                requests: Some(requests),
                handle: Some(handle),
            }),
            figures,
        })
    }

    /// Waits until everything written before this call is on disk.
    pub(crate) async fn commit(&self) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        self.figures.requests.fetch_add(1, Ordering::Relaxed);
        let stopped = || StoreError::Io("the store's committer has stopped".to_owned());
        (self.thread.requests.as_ref())
            .ok_or_else(stopped)?
            .send(done)
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?.map_err(StoreError::Io)
    }

    /// (flushes done, commits asked for) so far.
    pub(crate) fn figures(&self) -> (u64, u64) {
        (
            self.figures.flushes.load(Ordering::Relaxed),
            self.figures.requests.load(Ordering::Relaxed),
        )
    }

    /// Holds every flush back by `delay` (tests: a disk that stalls).
    pub(crate) fn slow_down(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.figures.delay_ms.store(ms, Ordering::Relaxed);
    }
}

/// One flush for every request waiting when it starts.
fn commit_loop(db: &sled::Db, waiting: &mpsc::Receiver<Waiter>, figures: &Figures) {
    while let Ok(first) = waiting.recv() {
        let mut batch = vec![first];
        batch.extend(waiting.try_iter());
        let delay = figures.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
        figures.flushes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, "the store could not write to disk");
        }
        for waiter in batch {
            let _ = waiter.send(result.clone());
        }
    }
}
