//! Long-term memory's store (`valor_memory::MemoryStore`): documents, the embedding queue and
//! vectors, and the archive. Reads and writes run on the blocking pool; saves wait for the
//! group commit. Long walks are fed from a thread of their own through a bounded channel.

use async_trait::async_trait;
use valor_memory::port::{
    DocumentListener, DocumentStore, EmbeddingStore, FEED_BUFFER, Feed, MemoryArchive,
};
use valor_protocol::StoreFailure;
use valor_protocol::learnings::LearningRecord;
use valor_protocol::records::{Document, MemoryKind, MemoryRecord, StoredMessage, StoredVector};

use crate::{Store, StoreError};

/// Feeds what `walk` visits through a bounded channel, from a thread of its own (a walk of
/// 100k documents must not hold a blocking-pool thread while a slow reader catches up, nor
/// need a runtime to start). The walk stops when the reader goes.
fn feed<T: Send + 'static>(
    store: &Store,
    walk: impl FnOnce(&Store, &mut dyn FnMut(T) -> bool) -> Result<(), StoreError> + Send + 'static,
) -> Feed<T> {
    let (tx, rx) = tokio::sync::mpsc::channel(FEED_BUFFER);
    let store = store.clone();
    let spawned = std::thread::Builder::new()
        .name("store-feed".to_owned())
        .spawn({
            let tx = tx.clone();
            move || {
                let mut send = |item: T| tx.blocking_send(Ok(item)).is_ok();
                if let Err(e) = walk(&store, &mut send) {
                    let _ = tx.blocking_send(Err(e.into()));
                }
            }
        });
    if let Err(e) = spawned {
        let _ = tx.try_send(Err(StoreFailure::failed(format!(
            "cannot start a walk over the store: {e}"
        ))));
    }
    rx
}

#[async_trait]
impl DocumentStore for Store {
    fn follow_documents(&self, listener: DocumentListener) {
        self.set_listener(listener);
    }

    fn document_feed(&self) -> Feed<Document> {
        feed(self, |store, send| store.walk_documents(send))
    }

    async fn documents(&self, ids: &[u64]) -> Result<Vec<Option<Document>>, StoreFailure> {
        let ids = ids.to_vec();
        Ok(self
            .blocking(move |s| ids.iter().map(|id| s.document(*id)).collect())
            .await?)
    }

    async fn recent_messages(
        &self,
        chat_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreFailure> {
        Ok(self
            .blocking(move |s| s.recent_messages(chat_id, limit))
            .await?)
    }

    async fn latest_memory(
        &self,
        kind: MemoryKind,
        chat_id: i64,
    ) -> Result<Option<MemoryRecord>, StoreFailure> {
        Ok(self
            .blocking(move |s| s.latest_memory(kind, chat_id))
            .await?)
    }

    async fn save_memories(
        &self,
        records: Vec<MemoryRecord>,
    ) -> Result<Vec<MemoryRecord>, StoreFailure> {
        let saved = self
            .blocking(move |s| {
                (records.into_iter())
                    .map(|r| s.write_memory(r))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        self.commit().await?;
        Ok(saved)
    }

    async fn all_learnings(&self) -> Result<Vec<LearningRecord>, StoreFailure> {
        Ok(self.blocking(Store::all_learnings).await?)
    }
}

#[async_trait]
impl EmbeddingStore for Store {
    async fn queued_count(&self) -> Result<u64, StoreFailure> {
        Ok(self.blocking(|s| Ok(s.queued_count())).await?)
    }

    async fn queued_for_embedding(&self, limit: usize) -> Result<Vec<u64>, StoreFailure> {
        Ok(self
            .blocking(move |s| s.queued_for_embedding(limit))
            .await?)
    }

    async fn queue_for_embedding(&self, ids: Vec<u64>) -> Result<(), StoreFailure> {
        Ok(self.blocking(move |s| s.queue_for_embedding(&ids)).await?)
    }

    async fn unqueue(&self, ids: Vec<u64>) -> Result<(), StoreFailure> {
        Ok(self.blocking(move |s| s.unqueue(&ids)).await?)
    }

    async fn requeue_missing(&self) -> Result<Vec<u64>, StoreFailure> {
        Ok(self.blocking(Store::requeue_missing).await?)
    }

    async fn put_vectors(&self, vectors: Vec<(u64, StoredVector)>) -> Result<(), StoreFailure> {
        Ok(self.blocking(move |s| s.put_vectors(&vectors)).await?)
    }

    async fn vector(&self, id: u64) -> Result<Option<StoredVector>, StoreFailure> {
        Ok(self.blocking(move |s| s.vector(id)).await?)
    }

    fn vector_feed(&self) -> Feed<(u64, StoredVector)> {
        feed(self, |store, send| {
            store.walk_vectors(|id, vector| send((id, vector)))
        })
    }

    async fn clear_vectors(&self) -> Result<(), StoreFailure> {
        Ok(self.blocking(Store::clear_vectors).await?)
    }
}

#[async_trait]
impl MemoryArchive for Store {
    fn message_feed(&self) -> Feed<StoredMessage> {
        feed(self, |store, send| {
            for message in store.all_messages() {
                if !send(message?) {
                    break;
                }
            }
            Ok(())
        })
    }

    async fn memory_records(&self, kind: MemoryKind) -> Result<Vec<MemoryRecord>, StoreFailure> {
        Ok(self.blocking(move |s| s.memory_records(kind)).await?)
    }

    async fn id_fits(
        &self,
        id: u64,
        kind: MemoryKind,
        chat_id: Option<i64>,
    ) -> Result<bool, StoreFailure> {
        Ok(self.blocking(move |s| s.id_fits(id, kind, chat_id)).await?)
    }

    async fn import_message(&self, message: StoredMessage) -> Result<(), StoreFailure> {
        Ok(self.blocking(move |s| s.import_message(&message)).await?)
    }

    async fn import_memory(&self, record: MemoryRecord) -> Result<(), StoreFailure> {
        Ok(self
            .blocking(move |s| s.write_memory(record).map(drop))
            .await?)
    }

    async fn import_learning(&self, record: LearningRecord) -> Result<(), StoreFailure> {
        Ok(self.blocking(move |s| s.import_learning(&record)).await?)
    }

    async fn flush(&self) -> Result<(), StoreFailure> {
        Ok(self.commit().await?)
    }
}
