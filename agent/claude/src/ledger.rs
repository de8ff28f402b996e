//! The session ledger: what the driver keeps of each chat and run. Each chat's Claude session
//! (resumed next turn), every run (for analytics), and the process groups it started (so the
//! reaper, also after a crash of Valor, can end what outlived its turn). The store implements
//! it; the driver, its processes and the reaper see only this.

use std::sync::Arc;

use valor_store::{ProcessRecord, RunRecord, SessionRecord, Store, StoreError};

pub trait SessionLedger: Send + Sync {
    fn session(&self, chat_id: i64) -> Result<Option<SessionRecord>, StoreError>;
    /// Saves a chat's session durably (a lost session id loses the conversation).
    fn set_session(&self, chat_id: i64, record: &SessionRecord) -> Result<(), StoreError>;
    fn clear_session(&self, chat_id: i64) -> Result<(), StoreError>;
    fn record_run(&self, run: &RunRecord) -> Result<(), StoreError>;
    fn put_process(&self, record: &ProcessRecord) -> Result<(), StoreError>;
    fn remove_process(&self, pgid: u32) -> Result<(), StoreError>;
    fn processes(&self) -> Result<Vec<ProcessRecord>, StoreError>;
    /// Everything written so far, on disk.
    fn flush(&self) -> Result<(), StoreError>;
}

/// The ledger as the driver's parts share it.
pub type Ledger = Arc<dyn SessionLedger>;

impl SessionLedger for Store {
    fn session(&self, chat_id: i64) -> Result<Option<SessionRecord>, StoreError> {
        Store::session(self, chat_id)
    }

    fn set_session(&self, chat_id: i64, record: &SessionRecord) -> Result<(), StoreError> {
        Store::set_session(self, chat_id, record)
    }

    fn clear_session(&self, chat_id: i64) -> Result<(), StoreError> {
        Store::clear_session(self, chat_id)
    }

    fn record_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        Store::record_run(self, run)
    }

    fn put_process(&self, record: &ProcessRecord) -> Result<(), StoreError> {
        Store::put_process(self, record)
    }

    fn remove_process(&self, pgid: u32) -> Result<(), StoreError> {
        Store::remove_process(self, pgid)
    }

    fn processes(&self) -> Result<Vec<ProcessRecord>, StoreError> {
        Store::processes(self)
    }

    fn flush(&self) -> Result<(), StoreError> {
        Store::flush(self)
    }
}
