//! An in-memory [`MemoryStore`] for tests of memory's users (the engine, the adapters, the
//! learner) that need no disk: the same rules as the sled store (one id sequence for every
//! document, validation, the listener, the embedding queue), none of its durability.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use valor_protocol::StoreFailure;
use valor_protocol::learnings::LearningRecord;
use valor_protocol::memory::{MAX_DOCUMENT_ID, validate};
use valor_protocol::proposals::Proposal;
use valor_protocol::records::{Document, MemoryKind, MemoryRecord, StoredMessage, StoredVector};

use crate::port::{
    DocumentListener, DocumentStore, EmbeddingStore, FEED_BUFFER, Feed, MemoryArchive,
};

#[derive(Default)]
pub struct Tables {
    next_id: u64,
    pub messages: BTreeMap<u64, StoredMessage>,
    pub memories: BTreeMap<u64, MemoryRecord>,
    pub learnings: BTreeMap<u64, LearningRecord>,
    /// Questions (kept here for valor-learn's fake, which shares these tables).
    pub proposals: BTreeMap<u64, Proposal>,
    pub queue: BTreeSet<u64>,
    pub vectors: BTreeMap<u64, StoredVector>,
}

impl Tables {
    /// The next document id.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn reserve_through(&mut self, id: u64) -> Result<(), StoreFailure> {
        if id > MAX_DOCUMENT_ID {
            return Err(StoreFailure::Invalid(format!(
                "the id is above the largest a document may have ({MAX_DOCUMENT_ID})"
            )));
        }
        self.next_id = self.next_id.max(id);
        Ok(())
    }

    pub fn document(&self, id: u64) -> Option<Document> {
        (self.messages.get(&id).cloned().map(Document::from))
            .or_else(|| self.memories.get(&id).cloned())
    }
}

/// Memory's store, in memory; clones share it.
#[derive(Clone, Default)]
pub struct InMemoryStore {
    tables: Arc<Mutex<Tables>>,
    listener: Arc<Mutex<Option<DocumentListener>>>,
}

impl InMemoryStore {
    pub fn new() -> InMemoryStore {
        InMemoryStore::default()
    }

    /// The tables, for a test to read or arrange.
    pub fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the listener of a document written.
    pub fn announce(&self, document: &Document) {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(listener) = listener {
            listener(document);
        }
    }

    /// Appends a message to a chat, as the conversation does: an id, a queue entry, the
    /// listener told.
    pub fn add_message(&self, mut message: StoredMessage) -> StoredMessage {
        {
            let mut tables = self.tables();
            message.seq = tables.next_id();
            tables.queue.insert(message.seq);
            tables.messages.insert(message.seq, message.clone());
        }
        self.announce(&Document::from(message.clone()));
        message
    }

    /// Saves a memory as the store does: validated, given an id, queued, announced.
    pub fn write_memory(&self, mut record: MemoryRecord) -> Result<MemoryRecord, StoreFailure> {
        validate(&record).map_err(|e| StoreFailure::Invalid(e.to_string()))?;
        {
            let mut tables = self.tables();
            if record.id == 0 {
                record.id = tables.next_id();
            } else {
                tables.reserve_through(record.id)?;
            }
            tables.queue.insert(record.id);
            tables.memories.insert(record.id, record.clone());
        }
        self.announce(&record);
        Ok(record)
    }
}

fn feed_of<T: Send + 'static>(items: Vec<T>) -> Feed<T> {
    let (tx, rx) = tokio::sync::mpsc::channel(FEED_BUFFER);
    std::thread::spawn(move || {
        for item in items {
            if tx.blocking_send(Ok(item)).is_err() {
                return;
            }
        }
    });
    rx
}

#[async_trait]
impl DocumentStore for InMemoryStore {
    fn follow_documents(&self, listener: DocumentListener) {
        *self.listener.lock().unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }

    fn document_feed(&self) -> Feed<Document> {
        let tables = self.tables();
        let documents = (tables.messages.values().cloned().map(Document::from))
            .chain(tables.memories.values().cloned())
            .collect();
        feed_of(documents)
    }

    async fn documents(&self, ids: &[u64]) -> Result<Vec<Option<Document>>, StoreFailure> {
        let tables = self.tables();
        Ok(ids.iter().map(|id| tables.document(*id)).collect())
    }

    async fn recent_messages(
        &self,
        chat_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreFailure> {
        let tables = self.tables();
        let mut recent: Vec<StoredMessage> = (tables.messages.values().rev())
            .filter(|m| m.chat_id == chat_id)
            .take(limit)
            .cloned()
            .collect();
        recent.reverse();
        Ok(recent)
    }

    async fn latest_memory(
        &self,
        kind: MemoryKind,
        chat_id: i64,
    ) -> Result<Option<MemoryRecord>, StoreFailure> {
        Ok((self.tables().memories.values().rev())
            .find(|m| m.kind == kind && m.chat_id == Some(chat_id))
            .cloned())
    }

    async fn save_memories(
        &self,
        records: Vec<MemoryRecord>,
    ) -> Result<Vec<MemoryRecord>, StoreFailure> {
        records.into_iter().map(|r| self.write_memory(r)).collect()
    }

    async fn all_learnings(&self) -> Result<Vec<LearningRecord>, StoreFailure> {
        Ok(self.tables().learnings.values().cloned().collect())
    }
}

#[async_trait]
impl EmbeddingStore for InMemoryStore {
    async fn queued_count(&self) -> Result<u64, StoreFailure> {
        Ok(self.tables().queue.len() as u64)
    }

    async fn queued_for_embedding(&self, limit: usize) -> Result<Vec<u64>, StoreFailure> {
        Ok(self.tables().queue.iter().take(limit).copied().collect())
    }

    async fn queue_for_embedding(&self, ids: Vec<u64>) -> Result<(), StoreFailure> {
        self.tables().queue.extend(ids);
        Ok(())
    }

    async fn unqueue(&self, ids: Vec<u64>) -> Result<(), StoreFailure> {
        let mut tables = self.tables();
        for id in ids {
            tables.queue.remove(&id);
        }
        Ok(())
    }

    async fn requeue_missing(&self) -> Result<Vec<u64>, StoreFailure> {
        let mut tables = self.tables();
        let missing: Vec<u64> = (tables.messages.keys().chain(tables.memories.keys()))
            .filter(|id| !tables.vectors.contains_key(id) && !tables.queue.contains(id))
            .copied()
            .collect();
        tables.queue.extend(missing.iter().copied());
        Ok(missing)
    }

    async fn put_vectors(&self, vectors: Vec<(u64, StoredVector)>) -> Result<(), StoreFailure> {
        let mut tables = self.tables();
        for (id, vector) in vectors {
            tables.vectors.insert(id, vector);
            tables.queue.remove(&id);
        }
        Ok(())
    }

    async fn vector(&self, id: u64) -> Result<Option<StoredVector>, StoreFailure> {
        Ok(self.tables().vectors.get(&id).cloned())
    }

    fn vector_feed(&self) -> Feed<(u64, StoredVector)> {
        let vectors = (self.tables().vectors.iter())
            .map(|(id, v)| (*id, v.clone()))
            .collect();
        feed_of(vectors)
    }

    async fn clear_vectors(&self) -> Result<(), StoreFailure> {
        self.tables().vectors.clear();
        Ok(())
    }
}

#[async_trait]
impl MemoryArchive for InMemoryStore {
    fn message_feed(&self) -> Feed<StoredMessage> {
        feed_of(self.tables().messages.values().cloned().collect())
    }

    async fn memory_records(&self, kind: MemoryKind) -> Result<Vec<MemoryRecord>, StoreFailure> {
        Ok((self.tables().memories.values())
            .filter(|m| m.kind == kind)
            .cloned()
            .collect())
    }

    async fn id_fits(
        &self,
        id: u64,
        kind: MemoryKind,
        chat_id: Option<i64>,
    ) -> Result<bool, StoreFailure> {
        Ok(match self.tables().document(id) {
            None => true,
            Some(found) => found.kind == kind && found.chat_id == chat_id,
        })
    }

    async fn import_message(&self, message: StoredMessage) -> Result<(), StoreFailure> {
        {
            let mut tables = self.tables();
            tables.reserve_through(message.seq)?;
            tables.queue.insert(message.seq);
            tables.messages.insert(message.seq, message.clone());
        }
        self.announce(&Document::from(message));
        Ok(())
    }

    async fn import_memory(&self, record: MemoryRecord) -> Result<(), StoreFailure> {
        self.write_memory(record).map(drop)
    }

    async fn import_learning(&self, record: LearningRecord) -> Result<(), StoreFailure> {
        if record.is_active() {
            self.write_memory(record.memory())?;
        } else {
            self.tables().reserve_through(record.id)?;
        }
        self.tables().learnings.insert(record.id, record);
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreFailure> {
        Ok(())
    }
}
