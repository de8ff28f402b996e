//! The session ledger: what the driver keeps of each chat and run. Each chat's Claude session
//! (resumed next turn), every run (for analytics), and the process groups it started (so the
//! reaper, also after a crash of Valor, can end what outlived its turn). The store implements
//! it; the driver, its processes and the reaper see only this. [`InMemoryLedger`] serves tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use valor_protocol::StoreFailure;
use valor_protocol::records::{ProcessRecord, RunRecord, SessionRecord, TurnText};

#[async_trait]
pub trait SessionLedger: Send + Sync {
    async fn session(&self, chat_id: i64) -> Result<Option<SessionRecord>, StoreFailure>;
    async fn set_session(&self, chat_id: i64, record: &SessionRecord) -> Result<(), StoreFailure>;
    async fn clear_session(&self, chat_id: i64) -> Result<(), StoreFailure>;
    /// Records a run's figures and what it said (kept apart; only the latest turns' text).
    async fn record_run(&self, run: &RunRecord, text: &TurnText) -> Result<(), StoreFailure>;
    async fn put_process(&self, record: &ProcessRecord) -> Result<(), StoreFailure>;
    async fn remove_process(&self, pgid: u32) -> Result<(), StoreFailure>;
    async fn processes(&self) -> Result<Vec<ProcessRecord>, StoreFailure>;
    /// Everything written so far, on disk (a lost session id loses the conversation).
    async fn commit(&self) -> Result<(), StoreFailure>;
}

/// The ledger as the driver's parts share it.
pub type Ledger = Arc<dyn SessionLedger>;

/// A ledger in memory (tests).
#[derive(Default)]
pub struct InMemoryLedger {
    sessions: Mutex<BTreeMap<i64, SessionRecord>>,
    runs: Mutex<Vec<RunRecord>>,
    texts: Mutex<Vec<TurnText>>,
    processes: Mutex<BTreeMap<u32, ProcessRecord>>,
}

impl InMemoryLedger {
    pub fn runs(&self) -> Vec<RunRecord> {
        lock(&self.runs).clone()
    }

    pub fn texts(&self) -> Vec<TurnText> {
        lock(&self.texts).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl SessionLedger for InMemoryLedger {
    async fn session(&self, chat_id: i64) -> Result<Option<SessionRecord>, StoreFailure> {
        Ok(lock(&self.sessions).get(&chat_id).cloned())
    }

    async fn set_session(&self, chat_id: i64, record: &SessionRecord) -> Result<(), StoreFailure> {
        lock(&self.sessions).insert(chat_id, record.clone());
        Ok(())
    }

    async fn clear_session(&self, chat_id: i64) -> Result<(), StoreFailure> {
        lock(&self.sessions).remove(&chat_id);
        Ok(())
    }

    async fn record_run(&self, run: &RunRecord, text: &TurnText) -> Result<(), StoreFailure> {
        lock(&self.runs).push(run.clone());
        lock(&self.texts).push(text.clone());
        Ok(())
    }

    async fn put_process(&self, record: &ProcessRecord) -> Result<(), StoreFailure> {
        lock(&self.processes).insert(record.pgid, record.clone());
        Ok(())
    }

    async fn remove_process(&self, pgid: u32) -> Result<(), StoreFailure> {
        lock(&self.processes).remove(&pgid);
        Ok(())
    }

    async fn processes(&self) -> Result<Vec<ProcessRecord>, StoreFailure> {
        Ok(lock(&self.processes).values().cloned().collect())
    }

    async fn commit(&self) -> Result<(), StoreFailure> {
        Ok(())
    }
}
