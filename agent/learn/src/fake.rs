//! Learning's stores in memory, over memory's fake ([`InMemoryStore`]), for tests that need
//! no disk: the same rules as the sled store (numbers per chat, retirement takes a learning's
//! document out of search, a question settles once and only in its chat).

use async_trait::async_trait;
use valor_memory::fake::InMemoryStore;
use valor_protocol::StoreFailure;
use valor_protocol::learnings::{LearningRecord, Retirement};
use valor_protocol::proposals::{Proposal, ProposalState};
use valor_protocol::records::{MemoryKind, MemoryRecord, StoredVector};

use crate::port::{LearningStore, ProposalStore};

#[async_trait]
impl LearningStore for InMemoryStore {
    async fn all_learnings(&self) -> Result<Vec<LearningRecord>, StoreFailure> {
        Ok(self.tables().learnings.values().cloned().collect())
    }

    async fn add_learning(
        &self,
        mut record: LearningRecord,
    ) -> Result<LearningRecord, StoreFailure> {
        if record.content.trim().is_empty() {
            return Err(StoreFailure::Invalid(
                "a learning needs a text; this one is empty".to_owned(),
            ));
        }
        record.retired = None;
        let memory = self.write_memory(MemoryRecord {
            id: 0,
            ..record.memory()
        })?;
        let mut tables = self.tables();
        record.id = memory.id;
        record.number = (tables.learnings.values())
            .filter(|l| l.chat_id == record.chat_id)
            .map(|l| l.number)
            .max()
            .unwrap_or(0)
            + 1;
        tables.learnings.insert(record.id, record.clone());
        Ok(record)
    }

    async fn update_learning(&self, record: LearningRecord) -> Result<(), StoreFailure> {
        self.tables().learnings.insert(record.id, record);
        Ok(())
    }

    async fn retire_learning(
        &self,
        id: u64,
        reason: String,
        replaced_by: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<LearningRecord>, StoreFailure> {
        let mut tables = self.tables();
        let Some(record) = tables.learnings.get_mut(&id) else {
            return Ok(None);
        };
        if record.is_active() {
            record.retired = Some(Retirement {
                at_ms: now_ms,
                reason,
                replaced_by,
            });
            record.updated_ms = now_ms;
        }
        let record = record.clone();
        if tables
            .memories
            .get(&id)
            .is_some_and(|m| m.kind == MemoryKind::Learning)
        {
            tables.memories.remove(&id);
            tables.vectors.remove(&id);
            tables.queue.remove(&id);
        }
        Ok(Some(record))
    }

    async fn learning_vector(&self, id: u64) -> Result<Option<StoredVector>, StoreFailure> {
        Ok(self.tables().vectors.get(&id).cloned())
    }
}

#[async_trait]
impl ProposalStore for InMemoryStore {
    async fn add_proposal(&self, mut proposal: Proposal) -> Result<Proposal, StoreFailure> {
        let mut tables = self.tables();
        proposal.id = tables
            .proposals
            .keys()
            .next_back()
            .map_or(1, |last| last + 1);
        proposal.state = ProposalState::Pending;
        tables.proposals.insert(proposal.id, proposal.clone());
        Ok(proposal)
    }

    async fn proposal(&self, id: u64) -> Result<Option<Proposal>, StoreFailure> {
        Ok(self.tables().proposals.get(&id).cloned())
    }

    async fn settle_proposal(
        &self,
        id: u64,
        chat_id: i64,
        accept: bool,
        now_ms: u64,
    ) -> Result<Option<(ProposalState, Proposal)>, StoreFailure> {
        let mut tables = self.tables();
        let Some(proposal) = tables.proposals.get_mut(&id) else {
            return Ok(None);
        };
        if proposal.chat_id != chat_id {
            return Ok(None);
        }
        let before = proposal.settle(accept, now_ms);
        Ok(Some((before, proposal.clone())))
    }

    async fn reopen_proposal(
        &self,
        id: u64,
        chat_id: i64,
        now_ms: u64,
    ) -> Result<bool, StoreFailure> {
        let mut tables = self.tables();
        Ok((tables.proposals.get_mut(&id))
            .filter(|p| p.chat_id == chat_id)
            .is_some_and(|p| p.reopen(now_ms)))
    }

    async fn expire_proposals(&self, now_ms: u64) -> Result<Vec<Proposal>, StoreFailure> {
        let mut expired = Vec::new();
        for proposal in self.tables().proposals.values_mut() {
            if proposal.state == ProposalState::Pending && now_ms > proposal.expires_ms {
                proposal.state = ProposalState::Expired;
                expired.push(proposal.clone());
            }
        }
        Ok(expired)
    }

    async fn purge_proposals(&self, before_ms: u64) -> Result<usize, StoreFailure> {
        let mut tables = self.tables();
        let before = tables.proposals.len();
        tables
            .proposals
            .retain(|_, p| p.state == ProposalState::Pending || p.created_ms >= before_ms);
        Ok(before - tables.proposals.len())
    }
}
