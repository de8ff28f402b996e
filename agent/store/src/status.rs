//! What the store knows of one chat's turns, for its status (`valor_core::status::ChatRecords`):
//! its Claude session, today's runs, the questions asked of it. Read on the blocking pool.

use async_trait::async_trait;
use valor_core::engine::StoreFailure;
use valor_core::status::{ChatRecords, ChatUsage, SessionInfo};

use crate::{RunAnalytics, Store, StoreError};

fn failure(e: StoreError) -> StoreFailure {
    StoreFailure(e.to_string())
}

/// Runs a read of the store on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    store: &Store,
    read: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreFailure> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || read(&store))
        .await
        .map_err(|e| StoreFailure(format!("a store task failed: {e}")))?
        .map_err(failure)
}

#[async_trait]
impl ChatRecords for Store {
    async fn session(&self, chat_id: i64) -> Result<Option<SessionInfo>, StoreFailure> {
        let session = blocking(self, move |s| s.session(chat_id)).await?;
        Ok(session.map(|s| SessionInfo {
            session_id: s.session_id,
            turns: s.turns,
        }))
    }

    async fn usage_since(&self, chat_id: i64, since_ms: u64) -> Result<ChatUsage, StoreFailure> {
        let runs: Vec<_> = blocking(self, move |s| s.runs_since(since_ms))
            .await?
            .into_iter()
            .filter(|r| r.chat_id == chat_id)
            .collect();
        let totals = RunAnalytics::of(&runs).all;
        Ok(ChatUsage {
            turns: totals.turns,
            failed: totals.failed,
            cost_usd: totals.cost_usd,
            last_model: runs
                .last()
                .map(|r| r.model.clone())
                .filter(|m| !m.is_empty()),
        })
    }

    async fn questions(&self, chat_id: i64) -> Result<Option<String>, StoreFailure> {
        let counts = blocking(self, move |s| s.proposal_counts(Some(chat_id))).await?;
        Ok((!counts.is_empty()).then(|| crate::proposals::describe_counts(&counts)))
    }
}
