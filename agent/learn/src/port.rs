//! The store learning needs, as small async traits (sled's implementation is in `valor-store`,
//! an in-memory one in [`crate::fake`]):
//!
//! - [`LearningStore`]: the learning records (numbered per chat, retired ones kept) and the
//!   vectors memory embedded for them.
//! - [`ProposalStore`]: the "Remember this?" questions, pending until answered or expired.
//!
//! [`LearnStore`] is both, and memory's documents (a yes to a link or an insight saves it as
//! it is).

use async_trait::async_trait;
use valor_memory::DocumentStore;
use valor_protocol::StoreFailure;
use valor_protocol::learnings::LearningRecord;
use valor_protocol::proposals::{Proposal, ProposalState};
use valor_protocol::records::StoredVector;

#[async_trait]
pub trait LearningStore: Send + Sync + 'static {
    /// Every learning record, active or retired, of every chat and of none.
    async fn all_learnings(&self) -> Result<Vec<LearningRecord>, StoreFailure>;

    /// The learnings of `chat_id` (`None`: those of no chat), by number; retired ones too with
    /// `retired`.
    async fn learnings_of(
        &self,
        chat_id: Option<i64>,
        retired: bool,
    ) -> Result<Vec<LearningRecord>, StoreFailure> {
        let mut found: Vec<LearningRecord> = (self.all_learnings().await?.into_iter())
            .filter(|l| l.chat_id == chat_id && (retired || l.is_active()))
            .collect();
        found.sort_by_key(|l| l.number);
        Ok(found)
    }

    /// Adds a learning: its searchable memory gives it its id, the chat's next number is
    /// its number; on disk before this returns.
    async fn add_learning(&self, record: LearningRecord) -> Result<LearningRecord, StoreFailure>;

    /// Saves a changed record (reinforced, contradicted), durably.
    async fn update_learning(&self, record: LearningRecord) -> Result<(), StoreFailure>;

    /// Retires learning `id` (kept in history, gone from search): the record as retired, or
    /// `None` when there is no such active learning.
    async fn retire_learning(
        &self,
        id: u64,
        reason: String,
        replaced_by: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<LearningRecord>, StoreFailure>;

    /// The vector memory embedded for document `id`, if any.
    async fn learning_vector(&self, id: u64) -> Result<Option<StoredVector>, StoreFailure>;
}

#[async_trait]
pub trait ProposalStore: Send + Sync + 'static {
    /// Records a pending question and gives it its id.
    async fn add_proposal(&self, proposal: Proposal) -> Result<Proposal, StoreFailure>;

    async fn proposal(&self, id: u64) -> Result<Option<Proposal>, StoreFailure>;

    /// Settles question `id` of `chat_id` once: the state it had and the proposal as it is
    /// now; `None` when there is no such question of that chat.
    async fn settle_proposal(
        &self,
        id: u64,
        chat_id: i64,
        accept: bool,
        now_ms: u64,
    ) -> Result<Option<(ProposalState, Proposal)>, StoreFailure>;

    /// Opens question `id` of `chat_id` again when it was declined or expired (the operator
    /// changes its answer); whether it was.
    async fn reopen_proposal(
        &self,
        id: u64,
        chat_id: i64,
        now_ms: u64,
    ) -> Result<bool, StoreFailure>;

    /// Marks the pending questions past their time as expired and returns them.
    async fn expire_proposals(&self, now_ms: u64) -> Result<Vec<Proposal>, StoreFailure>;

    /// Forgets settled questions created before `before_ms`; how many.
    async fn purge_proposals(&self, before_ms: u64) -> Result<usize, StoreFailure>;
}

/// All learning asks of a store.
pub trait LearnStore: LearningStore + ProposalStore + DocumentStore {}

impl<T: LearningStore + ProposalStore + DocumentStore> LearnStore for T {}
