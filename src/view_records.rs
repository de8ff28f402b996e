//! What the dashboard reads of the chats: this process's sled store, or, with `[cluster]` on,
//! the cluster's database, so every node's dashboard shows every node's chats, turns,
//! memories and questions, and which node holds which chat now.

use std::collections::BTreeMap;

use valor_protocol::learnings::LearningRecord;
use valor_protocol::proposals::Proposal;
use valor_protocol::records::{ChatRecord, MemoryRecord, RunRecord, TurnText};
use valor_store::Store;
use valor_store_pg::PgStore;

/// Which runs a question keeps.
pub type RunFilter = Box<dyn Fn(&RunRecord) -> bool + Send + Sync>;

/// The reads the operator's views make; errors are the store's, said in words.
#[async_trait::async_trait]
pub trait ViewRecords: Send + Sync {
    async fn runs_since(&self, since_ms: u64) -> anyhow::Result<Vec<RunRecord>>;
    /// The latest `limit` runs `keep` keeps, newest first.
    async fn latest_runs(&self, limit: usize, keep: RunFilter) -> anyhow::Result<Vec<RunRecord>>;
    /// One run and, while it is kept, what it said.
    async fn turn(
        &self,
        started_at_ms: u64,
        chat_id: i64,
    ) -> anyhow::Result<Option<(RunRecord, Option<TurnText>)>>;
    async fn chats(&self) -> anyhow::Result<Vec<ChatRecord>>;
    async fn chat(&self, chat_id: i64) -> anyhow::Result<Option<ChatRecord>>;
    async fn document(&self, id: u64) -> anyhow::Result<Option<MemoryRecord>>;
    async fn learnings(&self) -> anyhow::Result<Vec<LearningRecord>>;
    async fn chat_memories(&self, chat_id: i64, limit: usize) -> anyhow::Result<Vec<MemoryRecord>>;
    async fn latest_proposals(&self, limit: usize) -> anyhow::Result<Vec<Proposal>>;
    /// The node holding each chat now (empty when Valor runs alone).
    async fn chat_nodes(&self) -> anyhow::Result<BTreeMap<i64, String>>;
    /// Asks the node holding the chat to stop its turn (false: no other node to ask).
    async fn stop_elsewhere(&self, chat_id: i64) -> bool;
}

#[async_trait::async_trait]
impl ViewRecords for Store {
    async fn runs_since(&self, since_ms: u64) -> anyhow::Result<Vec<RunRecord>> {
        Ok(self.blocking(move |s| s.runs_since(since_ms)).await?)
    }

    async fn latest_runs(&self, limit: usize, keep: RunFilter) -> anyhow::Result<Vec<RunRecord>> {
        Ok(self.blocking(move |s| s.latest_runs(limit, keep)).await?)
    }

    async fn turn(
        &self,
        started_at_ms: u64,
        chat_id: i64,
    ) -> anyhow::Result<Option<(RunRecord, Option<TurnText>)>> {
        let read = self.blocking(move |s| {
            Ok(match s.run_at(started_at_ms, chat_id)? {
                Some(run) => Some((run, s.turn_text(started_at_ms, chat_id)?)),
                None => None,
            })
        });
        Ok(read.await?)
    }

    async fn chats(&self) -> anyhow::Result<Vec<ChatRecord>> {
        Ok(self.blocking(|s| s.chats()).await?)
    }

    async fn chat(&self, chat_id: i64) -> anyhow::Result<Option<ChatRecord>> {
        Ok(self.blocking(move |s| s.chat(chat_id)).await?)
    }

    async fn document(&self, id: u64) -> anyhow::Result<Option<MemoryRecord>> {
        Ok(self.blocking(move |s| s.document(id)).await?)
    }

    async fn learnings(&self) -> anyhow::Result<Vec<LearningRecord>> {
        Ok(self.blocking(Store::all_learnings).await?)
    }

    async fn chat_memories(&self, chat_id: i64, limit: usize) -> anyhow::Result<Vec<MemoryRecord>> {
        Ok(self
            .blocking(move |s| s.chat_memories(chat_id, limit))
            .await?)
    }

    async fn latest_proposals(&self, limit: usize) -> anyhow::Result<Vec<Proposal>> {
        Ok(self.blocking(move |s| s.latest_proposals(limit)).await?)
    }

    async fn chat_nodes(&self) -> anyhow::Result<BTreeMap<i64, String>> {
        Ok(BTreeMap::new())
    }

    async fn stop_elsewhere(&self, _chat_id: i64) -> bool {
        false
    }
}

#[async_trait::async_trait]
impl ViewRecords for PgStore {
    async fn runs_since(&self, since_ms: u64) -> anyhow::Result<Vec<RunRecord>> {
        Ok(self.runs_between(since_ms, u64::MAX).await?)
    }

    async fn latest_runs(&self, limit: usize, keep: RunFilter) -> anyhow::Result<Vec<RunRecord>> {
        Ok(PgStore::latest_runs(self, limit, keep).await?)
    }

    async fn turn(
        &self,
        started_at_ms: u64,
        chat_id: i64,
    ) -> anyhow::Result<Option<(RunRecord, Option<TurnText>)>> {
        let Some(run) = self.run_at(started_at_ms, chat_id).await? else {
            return Ok(None);
        };
        Ok(Some((run, self.turn_text(started_at_ms, chat_id).await?)))
    }

    async fn chats(&self) -> anyhow::Result<Vec<ChatRecord>> {
        Ok(PgStore::chats(self).await?)
    }

    async fn chat(&self, chat_id: i64) -> anyhow::Result<Option<ChatRecord>> {
        Ok(PgStore::chat(self, chat_id).await?)
    }

    async fn document(&self, id: u64) -> anyhow::Result<Option<MemoryRecord>> {
        use valor_memory::port::DocumentStore as _;
        let mut found = self.documents(&[id]).await?;
        Ok(found.pop().flatten())
    }

    async fn learnings(&self) -> anyhow::Result<Vec<LearningRecord>> {
        use valor_learn::port::LearningStore as _;
        Ok(self.all_learnings().await?)
    }

    async fn chat_memories(&self, chat_id: i64, limit: usize) -> anyhow::Result<Vec<MemoryRecord>> {
        Ok(PgStore::chat_memories(self, chat_id, limit).await?)
    }

    async fn latest_proposals(&self, limit: usize) -> anyhow::Result<Vec<Proposal>> {
        Ok(PgStore::latest_proposals(self, limit).await?)
    }

    async fn chat_nodes(&self) -> anyhow::Result<BTreeMap<i64, String>> {
        Ok(self.chat_holders().await?)
    }

    async fn stop_elsewhere(&self, chat_id: i64) -> bool {
        match self.notify_stop(chat_id).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(chat_id, error = %e, "cannot ask the cluster to stop the chat's turn");
                false
            }
        }
    }
}
