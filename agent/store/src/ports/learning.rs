//! Learning's stores (`valor_learn::LearningStore`, `valor_learn::ProposalStore`): the learning
//! records and the "Remember this?" questions. Reads and writes run on the blocking pool.

use async_trait::async_trait;
use valor_learn::port::{LearningStore, ProposalStore};
use valor_protocol::StoreFailure;
use valor_protocol::learnings::LearningRecord;
use valor_protocol::proposals::{Proposal, ProposalState};
use valor_protocol::records::StoredVector;

use crate::Store;

#[async_trait]
impl LearningStore for Store {
    async fn all_learnings(&self) -> Result<Vec<LearningRecord>, StoreFailure> {
        Ok(self.blocking(Store::all_learnings).await?)
    }

    async fn add_learning(&self, record: LearningRecord) -> Result<LearningRecord, StoreFailure> {
        Ok(self.blocking(move |s| s.add_learning(record)).await?)
    }

    async fn update_learning(&self, record: LearningRecord) -> Result<(), StoreFailure> {
        Ok(self.blocking(move |s| s.update_learning(&record)).await?)
    }

    async fn retire_learning(
        &self,
        id: u64,
        reason: String,
        replaced_by: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<LearningRecord>, StoreFailure> {
        Ok(self
            .blocking(move |s| s.retire_learning(id, &reason, replaced_by, now_ms))
            .await?)
    }

    async fn learning_vector(&self, id: u64) -> Result<Option<StoredVector>, StoreFailure> {
        Ok(self.blocking(move |s| s.vector(id)).await?)
    }
}

#[async_trait]
impl ProposalStore for Store {
    async fn add_proposal(&self, proposal: Proposal) -> Result<Proposal, StoreFailure> {
        Ok(self.blocking(move |s| s.add_proposal(proposal)).await?)
    }

    async fn proposal(&self, id: u64) -> Result<Option<Proposal>, StoreFailure> {
        Ok(self.blocking(move |s| s.proposal(id)).await?)
    }

    async fn settle_proposal(
        &self,
        id: u64,
        chat_id: i64,
        accept: bool,
        now_ms: u64,
    ) -> Result<Option<(ProposalState, Proposal)>, StoreFailure> {
        Ok(self
            .blocking(move |s| s.settle_proposal(id, chat_id, accept, now_ms))
            .await?)
    }

    async fn reopen_proposal(
        &self,
        id: u64,
        chat_id: i64,
        now_ms: u64,
    ) -> Result<bool, StoreFailure> {
        Ok(self
            .blocking(move |s| s.reopen_proposal(id, chat_id, now_ms))
            .await?)
    }

    async fn expire_proposals(&self, now_ms: u64) -> Result<Vec<Proposal>, StoreFailure> {
        Ok(self.blocking(move |s| s.expire_proposals(now_ms)).await?)
    }

    async fn purge_proposals(&self, before_ms: u64) -> Result<usize, StoreFailure> {
        Ok(self.blocking(move |s| s.purge_proposals(before_ms)).await?)
    }
}
