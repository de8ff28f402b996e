//! The session ledger the Claude driver keeps: each chat's Claude session, every run (for
//! analytics), and the process groups started (so a later Valor can end what outlived a crash).

use super::{Store, decode, encode, id_key};
use crate::StoreError;
use crate::records::{ProcessRecord, RunRecord, SessionRecord};

impl Store {
    pub fn session(&self, chat_id: i64) -> Result<Option<SessionRecord>, StoreError> {
        self.sessions
            .get(id_key(chat_id))?
            .map(|bytes| decode("session", &bytes))
            .transpose()
    }

    /// Saves a chat's session (the caller commits: a lost session id loses the conversation).
    pub fn set_session(&self, chat_id: i64, record: &SessionRecord) -> Result<(), StoreError> {
        self.sessions.insert(id_key(chat_id), encode(record))?;
        Ok(())
    }

    pub fn clear_session(&self, chat_id: i64) -> Result<(), StoreError> {
        self.sessions.remove(id_key(chat_id))?;
        Ok(())
    }

    // -- Runs (analytics) ------------------------------------------------------------------

    /// Appends a run. Keys are (start time, sequence) so runs read back in time order.
    pub fn record_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let seq = self.db.generate_id()?;
        let mut key = Vec::with_capacity(16);
        key.extend_from_slice(&run.started_at_ms.to_be_bytes());
        key.extend_from_slice(&seq.to_be_bytes());
        self.runs.insert(key, encode(run))?;
        Ok(())
    }

    /// Runs that started at or after `since_ms`, oldest first.
    pub fn runs_since(&self, since_ms: u64) -> Result<Vec<RunRecord>, StoreError> {
        self.runs
            .range(since_ms.to_be_bytes()..)
            .map(|entry| {
                let (_, bytes) = entry?;
                decode("run", &bytes)
            })
            .collect()
    }

    // -- Process groups --------------------------------------------------------------------

    /// Records a started process group (the caller commits, so a crash right after cannot
    /// lose it).
    pub fn put_process(&self, record: &ProcessRecord) -> Result<(), StoreError> {
        self.processes
            .insert(u64::from(record.pgid).to_be_bytes(), encode(record))?;
        Ok(())
    }

    pub fn remove_process(&self, pgid: u32) -> Result<(), StoreError> {
        self.processes.remove(u64::from(pgid).to_be_bytes())?;
        Ok(())
    }

    pub fn processes(&self) -> Result<Vec<ProcessRecord>, StoreError> {
        self.processes
            .iter()
            .map(|entry| {
                let (_, bytes) = entry?;
                decode("process", &bytes)
            })
            .collect()
    }
}
