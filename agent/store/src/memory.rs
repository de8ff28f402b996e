//! Long-term memory in the store: saved links, learnings and insights (one typed tree each),
//! the locator that finds any searchable document by id, the persisted embedding queue, and the
//! vectors.
//!
//! Every document (messages included) gets an id from one sequence, a locator entry and a queue
//! entry when it is written. The embedding worker takes ids from the queue and writes vectors;
//! a crash between the two leaves the id queued, so no pending work is lost.

use crate::StoreError;
use crate::records::{Document, MemoryKind, MemoryRecord, StoredMessage, StoredVector};
use crate::store::{Store, decode, encode, id_key};
pub use valor_protocol::memory::{
    InvalidMemory, MAX_DOCUMENT_ID, MAX_MEMORY_TEXT, MemoryCounts, validate,
};

/// Locator value: the kind, and for messages the chat (their key starts with it).
pub(crate) fn locator(kind: MemoryKind, chat_id: Option<i64>) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = kind.byte();
    out[1..].copy_from_slice(&id_key(chat_id.unwrap_or(0)));
    out
}

pub(crate) fn message_key(chat_id: i64, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(16);
    key.extend_from_slice(&id_key(chat_id));
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn chat_of_locator(bytes: &[u8]) -> Option<(MemoryKind, i64)> {
    let kind = MemoryKind::from_byte(*bytes.first()?)?;
    let raw: [u8; 8] = bytes.get(1..9)?.try_into().ok()?;
    Some((kind, (u64::from_be_bytes(raw) ^ (1 << 63)) as i64))
}

fn id_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

impl Store {
    fn kind_tree(&self, kind: MemoryKind) -> Option<&sled::Tree> {
        match kind {
            MemoryKind::Message => None,
            MemoryKind::Link => Some(&self.links),
            MemoryKind::Learning => Some(&self.learnings),
            MemoryKind::Insight => Some(&self.insights),
            MemoryKind::Observation => Some(&self.observations),
            MemoryKind::Summary => Some(&self.summaries),
        }
    }

    /// Saves a link, learning or insight (assigning its id when it is 0), queues it for
    /// embedding and flushes before returning: a saved memory survives a crash.
    pub fn save_memory(&self, record: MemoryRecord) -> Result<MemoryRecord, StoreError> {
        let record = self.write_memory(record)?;
        self.flush()?;
        Ok(record)
    }

    /// [`Store::save_memory`] without the flush, for imports (which flush once at the end).
    pub fn write_memory(&self, mut record: MemoryRecord) -> Result<MemoryRecord, StoreError> {
        validate(&record).map_err(StoreError::Invalid)?;
        if record.id == 0 {
            record.id = self.next_id()?;
        } else {
            self.reserve_ids_through(record.id)?;
        }
        let tree = self
            .kind_tree(record.kind)
            .ok_or(StoreError::Invalid(InvalidMemory::MessageKind))?;
        let key = record.id.to_be_bytes();
        // Locator, record, then queue entry: the embedding worker never takes a queued id whose
        // record is not written yet (it would drop it as gone); a crash before the queue entry
        // is caught at the next start by `requeue_missing`.
        self.locator
            .insert(key, &locator(record.kind, record.chat_id))?;
        tree.insert(key, encode(&record))?;
        self.embed_queue.insert(key, &[])?;
        self.announce(|| record.clone());
        Ok(record)
    }

    /// Whether document `id` may be written as a `kind` of `chat_id`: free, or already that
    /// kind of that chat (an import of the same line again). Another chat's or kind's document
    /// is never overwritten.
    pub fn id_fits(
        &self,
        id: u64,
        kind: MemoryKind,
        chat_id: Option<i64>,
    ) -> Result<bool, StoreError> {
        Ok(match self.locator.get(id.to_be_bytes())? {
            None => true,
            Some(found) => found.as_ref() == locator(kind, chat_id).as_slice(),
        })
    }

    /// Writes raw bytes as a queued saved memory (tests of damaged records).
    #[doc(hidden)]
    pub fn put_raw_memory(
        &self,
        kind: MemoryKind,
        id: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let tree = self
            .kind_tree(kind)
            .ok_or(StoreError::Invalid(InvalidMemory::MessageKind))?;
        let key = id.to_be_bytes();
        self.locator.insert(key, &locator(kind, None))?;
        tree.insert(key, bytes)?;
        self.embed_queue.insert(key, &[])?;
        Ok(())
    }

    pub fn memory_record(&self, id: u64) -> Result<Option<MemoryRecord>, StoreError> {
        for kind in MemoryKind::SAVED {
            if let Some(tree) = self.kind_tree(kind)
                && let Some(bytes) = tree.get(id.to_be_bytes())?
            {
                return decode("memory", &bytes).map(Some);
            }
        }
        Ok(None)
    }

    /// Saved memories of one kind, oldest id first.
    pub fn memory_records(&self, kind: MemoryKind) -> Result<Vec<MemoryRecord>, StoreError> {
        let Some(tree) = self.kind_tree(kind) else {
            return Ok(Vec::new());
        };
        tree.iter()
            .values()
            .map(|v| decode("memory", &v?))
            .collect()
    }

    /// A chat's latest saved memories of every kind (links, learnings, observations,
    /// summaries), newest first, at most `limit`.
    pub fn chat_memories(
        &self,
        chat_id: i64,
        limit: usize,
    ) -> Result<Vec<MemoryRecord>, StoreError> {
        let mut found = Vec::new();
        for kind in MemoryKind::SAVED {
            let Some(tree) = self.kind_tree(kind) else {
                continue;
            };
            let mut of_kind = 0;
            for value in tree.iter().values().rev() {
                let record: MemoryRecord = decode("memory", &value?)?;
                if record.chat_id == Some(chat_id) {
                    found.push(record);
                    of_kind += 1;
                    if of_kind >= limit {
                        break;
                    }
                }
            }
        }
        found.sort_by_key(|r| std::cmp::Reverse(r.at_ms));
        found.truncate(limit);
        Ok(found)
    }

    /// The newest saved memory of `kind` belonging to `chat_id` (ids grow with time).
    pub fn latest_memory(
        &self,
        kind: MemoryKind,
        chat_id: i64,
    ) -> Result<Option<MemoryRecord>, StoreError> {
        let Some(tree) = self.kind_tree(kind) else {
            return Ok(None);
        };
        for value in tree.iter().values().rev() {
            let record: MemoryRecord = decode("memory", &value?)?;
            if record.chat_id == Some(chat_id) {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    /// Saves several memories with one flush at the end.
    pub fn save_memories(
        &self,
        records: Vec<MemoryRecord>,
    ) -> Result<Vec<MemoryRecord>, StoreError> {
        let saved = records
            .into_iter()
            .map(|r| self.write_memory(r))
            .collect::<Result<Vec<_>, _>>()?;
        self.flush()?;
        Ok(saved)
    }

    /// Any searchable document by id.
    pub fn document(&self, id: u64) -> Result<Option<Document>, StoreError> {
        let Some(bytes) = self.locator.get(id.to_be_bytes())? else {
            return Ok(None);
        };
        let Some((kind, chat_id)) = chat_of_locator(&bytes) else {
            return Ok(None);
        };
        if kind == MemoryKind::Message {
            return self
                .messages
                .get(message_key(chat_id, id))?
                .map(|b| decode::<StoredMessage>("message", &b).map(Document::from))
                .transpose();
        }
        self.memory_record(id)
    }

    /// Calls `visit` with every searchable document (messages, then each saved kind) until it
    /// returns false.
    pub fn walk_documents(
        &self,
        mut visit: impl FnMut(Document) -> bool,
    ) -> Result<(), StoreError> {
        for value in self.messages.iter().values() {
            if !visit(decode::<StoredMessage>("message", &value?)?.into()) {
                return Ok(());
            }
        }
        for tree in MemoryKind::SAVED.iter().filter_map(|k| self.kind_tree(*k)) {
            for value in tree.iter().values() {
                if !visit(decode::<MemoryRecord>("memory", &value?)?) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    pub fn memory_counts(&self) -> MemoryCounts {
        MemoryCounts {
            messages: self.messages.len() as u64,
            links: self.links.len() as u64,
            learnings: self.learnings.len() as u64,
            insights: self.insights.len() as u64,
            observations: self.observations.len() as u64,
            summaries: self.summaries.len() as u64,
            vectors: self.vectors.len() as u64,
            queued: self.embed_queue.len() as u64,
        }
    }

    // -- the embedding queue -----------------------------------------------------------------

    /// Documents waiting to be embedded (a walk over the queue, which is short but while a
    /// reindex runs).
    pub fn queued_count(&self) -> u64 {
        self.embed_queue.len() as u64
    }

    /// Up to `limit` queued document ids, oldest first.
    pub fn queued_for_embedding(&self, limit: usize) -> Result<Vec<u64>, StoreError> {
        self.embed_queue
            .iter()
            .keys()
            .take(limit)
            .map(|k| Ok(id_of(&k?).unwrap_or(0)))
            .collect()
    }

    /// Queues documents for embedding (a reindex queues them all).
    pub fn queue_for_embedding(&self, ids: &[u64]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for id in ids {
            batch.insert(&id.to_be_bytes(), &[]);
        }
        self.embed_queue.apply_batch(batch)?;
        self.flush()
    }

    /// Drops ids from the queue without a vector (their document is gone).
    pub fn unqueue(&self, ids: &[u64]) -> Result<(), StoreError> {
        for id in ids {
            self.embed_queue.remove(id.to_be_bytes())?;
        }
        Ok(())
    }

    // -- vectors -------------------------------------------------------------------------------

    /// Stores vectors and takes their ids off the queue. The vector is written before the queue
    /// entry goes: a crash in between embeds the document again, never loses it.
    pub fn put_vectors(&self, vectors: &[(u64, StoredVector)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (id, vector) in vectors {
            batch.insert(&id.to_be_bytes(), vector.encode());
        }
        self.vectors.apply_batch(batch)?;
        let mut done = sled::Batch::default();
        for (id, _) in vectors {
            done.remove(&id.to_be_bytes());
        }
        self.embed_queue.apply_batch(done)?;
        Ok(())
    }

    pub fn vector(&self, id: u64) -> Result<Option<StoredVector>, StoreError> {
        Ok(self
            .vectors
            .get(id.to_be_bytes())?
            .and_then(|b| StoredVector::decode(&b)))
    }

    /// Calls `visit` with every stored vector until it returns false.
    pub fn walk_vectors(
        &self,
        mut visit: impl FnMut(u64, StoredVector) -> bool,
    ) -> Result<(), StoreError> {
        for entry in self.vectors.iter() {
            let (key, value) = entry?;
            if let (Some(id), Some(vector)) = (id_of(&key), StoredVector::decode(&value))
                && !visit(id, vector)
            {
                break;
            }
        }
        Ok(())
    }

    /// Deletes every vector (before a reindex with another model).
    pub fn clear_vectors(&self) -> Result<(), StoreError> {
        self.vectors.clear()?;
        self.flush()
    }

    /// Ids of documents that have neither a vector nor a queue entry (left so by a crash
    /// between writes), after putting them on the queue.
    pub fn requeue_missing(&self) -> Result<Vec<u64>, StoreError> {
        let mut missing = Vec::new();
        for key in self.locator.iter().keys() {
            let key = key?;
            if !self.vectors.contains_key(&key)? && !self.embed_queue.contains_key(&key)? {
                missing.extend(id_of(&key));
            }
        }
        if !missing.is_empty() {
            self.queue_for_embedding(&missing)?;
        }
        Ok(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SCHEMA_VERSION;
    use valor_protocol::Role;

    fn link(text: &str) -> MemoryRecord {
        MemoryRecord {
            id: 0,
            kind: MemoryKind::Link,
            chat_id: Some(4),
            at_ms: 1_000,
            title: "Tokio".to_owned(),
            text: text.to_owned(),
            url: Some("https://tokio.rs".to_owned()),
        }
    }

    /// The process's heap (RssAnon), in MiB.
    fn heap_mib() -> f64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib / 1024.0
    }

    /// sled's metrics are off, and the vendored sled no longer allocates their 41 histograms
    /// of 2^16 counters: opening a store takes 0.3 MiB of heap in this (debug) build; upstream
    /// wrote 21 MiB of zeros. Release builds get those pages untouched either way.
    #[test]
    fn opening_a_store_costs_little_heap() {
        let dir = tempfile::tempdir().unwrap();
        let before = heap_mib();
        let store = Store::open(dir.path()).unwrap();
        let grown = heap_mib() - before;
        assert!(grown < 8.0, "opening a store took {grown:.1} MiB of heap");
        drop(store);
    }

    /// The vendored sled's page cache evicts: reading 61 MB of vectors after a reopen grows
    /// the heap by less than 16 MB (4 MB of cache, and sled's own). Upstream sled 0.34.7
    /// keeps the pages it reads (+33 MB here with a 16 MB cache;
    /// agent/store/vendor/sled/VALOR-PATCH.md).
    #[test]
    fn reading_every_stored_vector_leaves_sleds_cache_near_its_capacity() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for chunk in 0..40u64 {
                let batch: Vec<(u64, StoredVector)> = (0..1000)
                    .map(|i| {
                        let id = chunk * 1000 + i;
                        let vector = vec![id as f32; 384];
                        (
                            id,
                            StoredVector {
                                model_id: "m".to_owned(),
                                vector,
                            },
                        )
                    })
                    .collect();
                store.put_vectors(&batch).unwrap();
            }
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let before = heap_mib();
        let mut read = 0usize;
        store
            .walk_vectors(|_, v| {
                read += v.vector.len() * 4;
                true
            })
            .unwrap();
        let grown = heap_mib() - before;
        assert_eq!(read, 40_000 * 384 * 4);
        assert!(
            grown < 16.0,
            "the heap grew by {grown:.1} MiB reading 61 MB"
        );
    }

    fn message(chat_id: i64, text: &str) -> StoredMessage {
        StoredMessage {
            chat_id,
            seq: 0,
            role: Role::User,
            text: text.to_owned(),
            at_ms: 5,
            user_id: Some(1),
            username: Some("ann".to_owned()),
            source: None,
        }
    }

    #[test]
    fn saved_memories_are_found_by_id_queued_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (link_id, message_id) = {
            let store = Store::open(dir.path()).unwrap();
            let saved = store.save_memory(link("async runtime")).unwrap();
            let said = store.append_message(message(4, "hello"), true).unwrap();
            (saved.id, said.seq)
        };
        let store = Store::open(dir.path()).unwrap();
        let document = store.document(link_id).unwrap().unwrap();
        assert_eq!(document.kind, MemoryKind::Link);
        assert_eq!(document.url.as_deref(), Some("https://tokio.rs"));
        let chat = store.chat(4).unwrap().unwrap();
        assert_eq!((chat.chat_id, chat.messages), (4, 1));
        assert_eq!(store.chats().unwrap().len(), 1);
        let said = store.document(message_id).unwrap().unwrap();
        assert_eq!(
            (said.kind, said.title.as_str()),
            (MemoryKind::Message, "ann: hello")
        );
        assert_eq!(
            store.queued_for_embedding(10).unwrap(),
            vec![link_id, message_id]
        );
        let counts = store.memory_counts();
        assert_eq!(
            (counts.documents(), counts.queued, counts.vectors),
            (2, 2, 0)
        );
        assert!(store.document(999_999).unwrap().is_none());
    }

    #[test]
    fn bad_memories_are_refused_with_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let empty = store.save_memory(link("  ")).unwrap_err();
        assert_eq!(empty.to_string(), "a link needs a text; this one is empty");
        let huge = store.save_memory(link(&"x".repeat(1 << 20))).unwrap_err();
        assert!(huge.to_string().contains("1048576 bytes"), "{huge}");
        let mut as_message = link("x");
        as_message.kind = MemoryKind::Message;
        assert!(store.save_memory(as_message).is_err());
        assert_eq!(store.memory_counts().documents(), 0);
    }

    #[test]
    fn vectors_keep_their_model_and_take_ids_off_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = store.save_memory(link("a")).unwrap().id;
        let vector = StoredVector {
            model_id: "m#1".to_owned(),
            vector: vec![0.6, 0.8],
        };
        store.put_vectors(&[(id, vector.clone())]).unwrap();
        assert_eq!(store.vector(id).unwrap(), Some(vector));
        assert!(store.queued_for_embedding(5).unwrap().is_empty());
        // A document that lost both (a crash between writes) goes back on the queue.
        store.clear_vectors().unwrap();
        assert_eq!(store.requeue_missing().unwrap(), vec![id]);
        assert_eq!(store.queued_for_embedding(5).unwrap(), vec![id]);
        assert!(StoredVector::decode(&[3, b'a']).is_none());
    }

    #[test]
    fn imported_ids_are_kept_and_new_ids_come_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut imported = message(2, "from an export");
        imported.seq = 1_000_000;
        store.import_message(&imported).unwrap();
        let fresh = store.append_message(message(2, "new"), true).unwrap();
        assert!(fresh.seq > 1_000_000, "{}", fresh.seq);
        let mut record = link("kept id");
        record.id = 5_000_000;
        assert_eq!(store.save_memory(record).unwrap().id, 5_000_000);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(store.save_memory(link("after")).unwrap().id > 5_000_000);
    }

    #[test]
    fn a_version_1_store_is_migrated_and_its_messages_queued() {
        let dir = tempfile::tempdir().unwrap();
        {
            // What version 1 wrote: messages, no locator or queue.
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("schema_version", b"1".to_vec())
                .unwrap();
            let mut old = message(3, "written by version 1");
            old.seq = 42;
            db.open_tree("messages")
                .unwrap()
                .insert(message_key(3, 42), serde_json::to_vec(&old).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.queued_for_embedding(5).unwrap(), vec![42]);
        assert_eq!(
            store.document(42).unwrap().unwrap().text,
            "written by version 1"
        );
        drop(store);
        let db = sled::open(dir.path()).unwrap();
        let version = db
            .open_tree("meta")
            .unwrap()
            .get("schema_version")
            .unwrap()
            .unwrap();
        assert_eq!(version.as_ref(), SCHEMA_VERSION.to_string().as_bytes());
    }
}
