//! The Claude driver's ledger (`valor_claude::ledger::SessionLedger`): chats' sessions, runs
//! and the process groups Valor started.

use async_trait::async_trait;
use valor_claude::ledger::SessionLedger;
use valor_protocol::StoreFailure;
use valor_protocol::records::{ProcessRecord, RunRecord, SessionRecord, TurnText};

use crate::Store;

#[async_trait]
impl SessionLedger for Store {
    async fn session(&self, chat_id: i64) -> Result<Option<SessionRecord>, StoreFailure> {
        Ok(self.blocking(move |s| s.session(chat_id)).await?)
    }

    async fn set_session(&self, chat_id: i64, record: &SessionRecord) -> Result<(), StoreFailure> {
        let record = record.clone();
        self.blocking(move |s| s.set_session(chat_id, &record))
            .await?;
        Ok(self.commit().await?)
    }

    async fn clear_session(&self, chat_id: i64) -> Result<(), StoreFailure> {
        self.blocking(move |s| s.clear_session(chat_id)).await?;
        Ok(self.commit().await?)
    }

    async fn record_run(&self, run: &RunRecord, text: &TurnText) -> Result<(), StoreFailure> {
        let (run, text) = (run.clone(), text.clone());
        Ok(self
            .blocking(move |s| {
                s.record_run(&run)?;
                s.keep_turn_text(&text)
            })
            .await?)
    }

    async fn put_process(&self, record: &ProcessRecord) -> Result<(), StoreFailure> {
        let record = record.clone();
        self.blocking(move |s| s.put_process(&record)).await?;
        Ok(self.commit().await?)
    }

    async fn remove_process(&self, pgid: u32) -> Result<(), StoreFailure> {
        Ok(self.blocking(move |s| s.remove_process(pgid)).await?)
    }

    async fn processes(&self) -> Result<Vec<ProcessRecord>, StoreFailure> {
        Ok(self.blocking(Store::processes).await?)
    }

    async fn commit(&self) -> Result<(), StoreFailure> {
        Ok(Store::commit(self).await?)
    }
}
