//! The store long-term memory needs, as three small async traits (the sled implementation is
//! in `valor-store`, PostgreSQL's in the cluster mode, an in-memory one in [`crate::fake`]):
//!
//! - [`DocumentStore`]: the searchable documents (messages and saved memories), read by id,
//!   fed in full once at start and followed as they are written; the saves a turn makes.
//! - [`EmbeddingStore`]: the persisted embedding queue and the vectors.
//! - [`MemoryArchive`]: what `valor memory export` and `import` move.
//!
//! Long walks (every document, every vector) come as a [`Feed`]: a bounded channel the store
//! fills from a thread or a cursor of its own, so neither side holds the whole walk in memory
//! and no runtime thread waits on a disk.

use std::sync::Arc;

use async_trait::async_trait;
use valor_protocol::StoreFailure;
use valor_protocol::learnings::LearningRecord;
use valor_protocol::records::{Document, MemoryKind, MemoryRecord, StoredMessage, StoredVector};

/// Called with every searchable document written, by whoever writes it: the search indexes add
/// it at once, so what was just said is searchable before the write returns.
pub type DocumentListener = Arc<dyn Fn(&Document) + Send + Sync>;

/// A walk over stored items, in the store's order; an error ends it.
pub type Feed<T> = tokio::sync::mpsc::Receiver<Result<T, StoreFailure>>;

/// Items a feed holds before its producer waits for the reader.
pub const FEED_BUFFER: usize = 256;

#[async_trait]
pub trait DocumentStore: Send + Sync + 'static {
    /// From now on, `listener` hears of every document written (one listener; a second
    /// replaces the first).
    fn follow_documents(&self, listener: DocumentListener);

    /// Every searchable document: messages, then each kind of saved memory.
    fn document_feed(&self) -> Feed<Document>;

    /// The documents of `ids`, in the order asked (`None` for an id the store does not have).
    async fn documents(&self, ids: &[u64]) -> Result<Vec<Option<Document>>, StoreFailure>;

    /// The chat's last `limit` messages, oldest first.
    async fn recent_messages(
        &self,
        chat_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreFailure>;

    /// The newest saved memory of `kind` belonging to `chat_id`.
    async fn latest_memory(
        &self,
        kind: MemoryKind,
        chat_id: i64,
    ) -> Result<Option<MemoryRecord>, StoreFailure>;

    /// Saves memories (each validated, each given an id) and waits until they are on disk.
    async fn save_memories(
        &self,
        records: Vec<MemoryRecord>,
    ) -> Result<Vec<MemoryRecord>, StoreFailure>;

    /// Every learning, active or retired.
    async fn all_learnings(&self) -> Result<Vec<LearningRecord>, StoreFailure>;
}

#[async_trait]
pub trait EmbeddingStore: Send + Sync + 'static {
    /// Documents waiting to be embedded.
    async fn queued_count(&self) -> Result<u64, StoreFailure>;
    /// Up to `limit` queued document ids, oldest first.
    async fn queued_for_embedding(&self, limit: usize) -> Result<Vec<u64>, StoreFailure>;
    /// Queues documents for embedding, durably (a reindex queues them all).
    async fn queue_for_embedding(&self, ids: Vec<u64>) -> Result<(), StoreFailure>;
    /// Drops ids from the queue without a vector (their document is gone or poisoned).
    async fn unqueue(&self, ids: Vec<u64>) -> Result<(), StoreFailure>;
    /// Queues the documents that have neither a vector nor a queue entry (a crash between
    /// writes), and returns their ids.
    async fn requeue_missing(&self) -> Result<Vec<u64>, StoreFailure>;
    /// Stores vectors, then takes their ids off the queue (a crash in between embeds a
    /// document again, never loses it).
    async fn put_vectors(&self, vectors: Vec<(u64, StoredVector)>) -> Result<(), StoreFailure>;
    async fn vector(&self, id: u64) -> Result<Option<StoredVector>, StoreFailure>;
    /// Every stored vector.
    fn vector_feed(&self) -> Feed<(u64, StoredVector)>;
    /// Deletes every vector, durably (before a reindex with another model).
    async fn clear_vectors(&self) -> Result<(), StoreFailure>;
}

#[async_trait]
pub trait MemoryArchive: Send + Sync + 'static {
    /// Every message of every chat.
    fn message_feed(&self) -> Feed<StoredMessage>;
    /// Saved memories of one kind, oldest first.
    async fn memory_records(&self, kind: MemoryKind) -> Result<Vec<MemoryRecord>, StoreFailure>;
    /// Whether document `id` may be written as a `kind` of `chat_id`: free, or already that
    /// kind of that chat. Another chat's or kind's document is never overwritten.
    async fn id_fits(
        &self,
        id: u64,
        kind: MemoryKind,
        chat_id: Option<i64>,
    ) -> Result<bool, StoreFailure>;
    /// Writes a message with the id it has (later ids come after it).
    async fn import_message(&self, message: StoredMessage) -> Result<(), StoreFailure>;
    /// Writes a saved memory with the id it has (or a new one for id 0).
    async fn import_memory(&self, record: MemoryRecord) -> Result<(), StoreFailure>;
    /// Writes a learning with the id and number it has.
    async fn import_learning(&self, record: LearningRecord) -> Result<(), StoreFailure>;
    /// Waits until everything written is on disk.
    async fn flush(&self) -> Result<(), StoreFailure>;
}

/// All memory asks of a store.
pub trait MemoryStore: DocumentStore + EmbeddingStore + MemoryArchive {}

impl<T: DocumentStore + EmbeddingStore + MemoryArchive> MemoryStore for T {}

/// One document by id.
pub async fn document(store: &dyn MemoryStore, id: u64) -> Result<Option<Document>, StoreFailure> {
    Ok(store.documents(&[id]).await?.pop().flatten())
}

/// One result of a search the shared store ran.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedHit {
    pub id: u64,
    /// The fused score (reciprocal-rank fusion, as the embedded search's).
    pub score: f32,
    /// Whether the keyword ranking had it.
    pub keyword: bool,
    /// Cosine similarity to the query's embedding, when the vector ranking had it.
    pub similarity: Option<f32>,
}

/// Search run by the shared store (several machines): what any node stored is found by every
/// node as soon as it committed, which this process's own indexes cannot promise.
#[async_trait]
pub trait SharedSearch: Send + Sync + 'static {
    /// The fused keyword and vector ranking of `text` (and of `embedding`, made by `model`),
    /// best first, at most `limit`.
    async fn search_shared(
        &self,
        text: &str,
        embedding: Option<(&str, &[f32])>,
        filter: &crate::Filter,
        limit: usize,
    ) -> Result<Vec<SharedHit>, StoreFailure>;

    /// The documents `filter` keeps around `anchor` in time order: up to `before` before it,
    /// the anchor, up to `after` after it (ids). `None` when `filter` does not keep `anchor`.
    async fn timeline_shared(
        &self,
        filter: &crate::Filter,
        anchor: u64,
        before: usize,
        after: usize,
    ) -> Result<Option<Vec<u64>>, StoreFailure>;
}
