//! Learnings: what a chat taught Valor and the user agreed to keep (seed 003's learnings
//! engine). Each is a record here plus a searchable `learning` memory with the same id; the
//! record keeps what search does not need: category, confidence, how often it was seen, where
//! it came from, and its retirement. A retired learning keeps its record (history) and loses
//! its memory: it is gone from search and from the context of later turns.

use crate::records::{MemoryKind, MemoryRecord};
use crate::store::{Store, decode, encode, id_key};
use crate::{InvalidMemory, StoreError};
pub use valor_protocol::learnings::{Category, LearningRecord, Retirement, confidence_for, rank};

fn number_key(chat_id: Option<i64>) -> Vec<u8> {
    let mut key = b"learning_number:".to_vec();
    key.extend_from_slice(&id_key(chat_id.unwrap_or(0)));
    key
}

impl Store {
    /// Adds a learning: its searchable memory (which gives it its id), its number in the chat
    /// and its record; flushed before returning.
    pub fn add_learning(&self, mut record: LearningRecord) -> Result<LearningRecord, StoreError> {
        if record.content.trim().is_empty() {
            return Err(StoreError::Invalid(InvalidMemory::EmptyText {
                kind: MemoryKind::Learning,
            }));
        }
        record.retired = None;
        record.number = self.next_learning_number(record.chat_id)?;
        let memory = self.write_memory(MemoryRecord {
            id: 0,
            ..record.memory()
        })?;
        record.id = memory.id;
        self.learning_records
            .insert(record.id.to_be_bytes(), encode(&record))?;
        self.flush()?;
        Ok(record)
    }

    fn next_learning_number(&self, chat_id: Option<i64>) -> Result<u64, StoreError> {
        let next = self
            .learning_records
            .update_and_fetch(number_key(chat_id), |old| {
                let current = old
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_be_bytes);
                Some((current + 1).to_be_bytes().to_vec())
            })?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(1, u64::from_be_bytes);
        Ok(next)
    }

    /// Saves a changed record (reinforced, renamed); flushed.
    pub fn update_learning(&self, record: &LearningRecord) -> Result<(), StoreError> {
        self.learning_records
            .insert(record.id.to_be_bytes(), encode(record))?;
        self.flush()
    }

    /// Stores a record as it is (an import): its memory too while it is active.
    pub fn import_learning(&self, record: &LearningRecord) -> Result<(), StoreError> {
        if record.is_active() {
            self.write_memory(record.memory())?;
        } else {
            self.reserve_ids_through(record.id)?;
        }
        let key = number_key(record.chat_id);
        let known = self
            .learning_records
            .get(&key)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        if record.number > known {
            self.learning_records
                .insert(key, &record.number.to_be_bytes())?;
        }
        self.learning_records
            .insert(record.id.to_be_bytes(), encode(record))?;
        Ok(())
    }

    pub fn learning(&self, id: u64) -> Result<Option<LearningRecord>, StoreError> {
        self.learning_records
            .get(id.to_be_bytes())?
            .map(|b| decode("learning", &b))
            .transpose()
    }

    /// Every learning record (retired ones too), by id.
    pub fn all_learnings(&self) -> Result<Vec<LearningRecord>, StoreError> {
        self.learning_records
            .iter()
            .filter_map(|entry| match entry {
                // The per-chat number counters share the tree; records have 8-byte keys.
                Ok((key, _)) if key.len() != 8 => None,
                Ok((_, value)) => Some(decode("learning", &value)),
                Err(e) => Some(Err(e.into())),
            })
            .collect()
    }

    /// Retires a learning: the record stays (history) with why; its memory and vector go, so
    /// search and later turns no longer see it. Returns the record as it is now, or `None` if
    /// there is no such learning; retiring a retired one changes nothing.
    pub fn retire_learning(
        &self,
        id: u64,
        reason: &str,
        replaced_by: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<LearningRecord>, StoreError> {
        let Some(mut record) = self.learning(id)? else {
            return Ok(None);
        };
        if record.is_active() {
            record.retired = Some(Retirement {
                at_ms: now_ms,
                reason: reason.to_owned(),
                replaced_by,
            });
            record.updated_ms = now_ms;
            // The record first: a crash in between leaves a retired record whose memory is
            // removed again at the next start (see `remove_retired_memories`).
            self.learning_records
                .insert(id.to_be_bytes(), encode(&record))?;
            self.forget_document(id)?;
            self.flush()?;
        }
        Ok(Some(record))
    }

    /// Removes a saved memory from search: its record, locator, vector and queue entry.
    fn forget_document(&self, id: u64) -> Result<(), StoreError> {
        let key = id.to_be_bytes();
        self.learnings.remove(key)?;
        self.locator.remove(key)?;
        self.vectors.remove(key)?;
        self.embed_queue.remove(key)?;
        Ok(())
    }

    /// Learnings saved before they had records (schema 2) get one: category guessed, seen
    /// once.
    pub(crate) fn record_plain_learnings(&self) -> Result<(), StoreError> {
        for value in self.learnings.iter().values() {
            let memory: MemoryRecord = decode("memory", &value?)?;
            if self
                .learning_records
                .contains_key(memory.id.to_be_bytes())?
            {
                continue;
            }
            let record = LearningRecord {
                id: memory.id,
                number: self.next_learning_number(memory.chat_id)?,
                ..LearningRecord::new(
                    memory.chat_id,
                    Category::guess(&memory.text),
                    &memory.text,
                    "",
                    false,
                    memory.at_ms,
                )
            };
            self.learning_records
                .insert(memory.id.to_be_bytes(), encode(&record))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(chat_id: i64, content: &str) -> LearningRecord {
        LearningRecord::new(
            Some(chat_id),
            Category::Decision,
            content,
            "tg:1",
            false,
            10,
        )
    }

    #[test]
    fn confidence_climbs_the_ladder_of_seed_003() {
        let ladder: Vec<f32> = (1..=6).map(|t| confidence_for(t, false)).collect();
        assert_eq!(ladder, [0.5, 0.7, 0.85, 0.85, 0.95, 0.95]);
        assert_eq!(confidence_for(1, true), 1.0);
        let mut record = draft(1, "We use sled");
        for (source, want) in [
            ("tg:2", 0.7),
            ("tg:3", 0.85),
            ("tg:4", 0.85),
            ("tg:5", 0.95),
        ] {
            record.reinforce(source, 20);
            assert_eq!(record.confidence, want);
        }
        assert_eq!(record.times_seen, 5);
        assert_eq!(record.sources.len(), 5);
    }

    #[test]
    fn learnings_are_numbered_per_chat_and_retire_into_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = store.add_learning(draft(1, "We use Bootstrap")).unwrap();
        let other_chat = store.add_learning(draft(2, "We use Go")).unwrap();
        let second = store
            .add_learning(draft(1, "We deploy on Fridays"))
            .unwrap();
        assert_eq!((first.number, other_chat.number, second.number), (1, 1, 2));
        assert!(store.document(first.id).unwrap().is_some());
        assert_eq!(store.memory_counts().learnings, 3);

        let retired = store
            .retire_learning(first.id, "replaced by #3", Some(99), 50)
            .unwrap()
            .unwrap();
        assert!(!retired.is_active());
        assert_eq!(store.document(first.id).unwrap(), None);
        assert_eq!(store.memory_counts().learnings, 2);
        let of_chat_1: Vec<LearningRecord> = (store.all_learnings().unwrap().into_iter())
            .filter(|l| l.chat_id == Some(1))
            .collect();
        let active: Vec<u64> = (of_chat_1.iter())
            .filter(|l| l.is_active())
            .map(|l| l.number)
            .collect();
        assert_eq!(active, [2]);
        assert_eq!(of_chat_1.len(), 2);
        // Numbers are never reused, across a restart too.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.add_learning(draft(1, "third")).unwrap().number, 3);
        assert_eq!(store.all_learnings().unwrap().len(), 4);
    }

    #[test]
    fn learnings_saved_before_records_get_one_at_migration() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let plain = store
            .save_memory(MemoryRecord {
                id: 0,
                kind: MemoryKind::Learning,
                chat_id: Some(5),
                at_ms: 77,
                title: "Deploys".to_owned(),
                text: "Deploys go through CI only".to_owned(),
                url: None,
            })
            .unwrap();
        store.record_plain_learnings().unwrap();
        store.record_plain_learnings().unwrap();
        let records = store.all_learnings().unwrap();
        assert_eq!(records.len(), 1, "once, however often it runs");
        let record = &records[0];
        assert_eq!(
            (record.id, record.number, record.times_seen),
            (plain.id, 1, 1)
        );
        assert_eq!((record.confidence, record.created_ms), (0.5, 77));
        assert_eq!(record.content, "Deploys go through CI only");
    }

    #[test]
    fn an_empty_learning_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(matches!(
            store.add_learning(draft(1, "  ")),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn categories_are_guessed_from_the_words() {
        assert_eq!(Category::guess("Watch out for timezones"), Category::Gotcha);
        assert_eq!(
            Category::guess("We always prefix tables with app_"),
            Category::Convention
        );
        assert_eq!(
            Category::guess("We use the tokio crate"),
            Category::Dependency
        );
        assert_eq!(Category::guess("Ship on Mondays"), Category::Decision);
        assert_eq!(Category::parse(" Gotcha "), Some(Category::Gotcha));
    }
}
