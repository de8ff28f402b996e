//! Chat messages: the conversation store the engine writes (each message also a searchable
//! document), chats, sources already stored, where each chat's conversation starts.

use super::{Store, decode, encode, id_key};
use crate::StoreError;
use crate::records::{ChatRecord, Document, MemoryKind, StoredMessage};

impl Store {
    /// Writes a message with its locator and embedding-queue entries: locator, message, then
    /// queue entry, so the embedding worker never takes a queued id whose message is not
    /// written yet (it would drop it as gone); a crash before the queue entry is caught at the
    /// next start by `requeue_missing`.
    fn write_message(&self, message: &StoredMessage) -> Result<(), StoreError> {
        let key = message.seq.to_be_bytes();
        self.locator.insert(
            key,
            &crate::memory::locator(MemoryKind::Message, Some(message.chat_id)),
        )?;
        let fresh = self
            .messages
            .insert(
                crate::memory::message_key(message.chat_id, message.seq),
                encode(message),
            )?
            .is_none();
        self.embed_queue.insert(key, &[])?;
        if fresh {
            self.count_in_chat(message)?;
        }
        self.announce(|| Document::from(message.clone()));
        Ok(())
    }

    /// Adds a message to its chat's record.
    pub(super) fn count_in_chat(&self, message: &StoredMessage) -> Result<(), StoreError> {
        let key = id_key(message.chat_id);
        let mut record = match self.chats.get(key)? {
            Some(bytes) => decode::<ChatRecord>("chat", &bytes)?,
            None => ChatRecord {
                chat_id: message.chat_id,
                first_at_ms: message.at_ms,
                last_at_ms: message.at_ms,
                messages: 0,
                title: None,
            },
        };
        record.first_at_ms = record.first_at_ms.min(message.at_ms);
        record.last_at_ms = record.last_at_ms.max(message.at_ms);
        record.messages += 1;
        self.chats.insert(key, encode(&record))?;
        Ok(())
    }

    /// Keeps a chat's name; written only when it changed (the message that came with it has
    /// made the chat's record).
    pub fn name_chat(&self, chat_id: i64, title: &str) -> Result<(), StoreError> {
        let key = id_key(chat_id);
        let Some(bytes) = self.chats.get(key)? else {
            return Ok(());
        };
        let mut record: ChatRecord = decode("chat", &bytes)?;
        if record.title.as_deref() != Some(title) {
            record.title = Some(title.to_owned());
            self.chats.insert(key, encode(&record))?;
        }
        Ok(())
    }

    pub fn chat(&self, chat_id: i64) -> Result<Option<ChatRecord>, StoreError> {
        self.chats
            .get(id_key(chat_id))?
            .map(|bytes| decode("chat", &bytes))
            .transpose()
    }

    /// Every chat, by id.
    pub fn chats(&self) -> Result<Vec<ChatRecord>, StoreError> {
        self.chats
            .iter()
            .values()
            .map(|v| decode("chat", &v?))
            .collect()
    }

    /// Stores a message with the id it already has (an import), keeping later ids above it.
    pub fn import_message(&self, message: &StoredMessage) -> Result<(), StoreError> {
        self.reserve_ids_through(message.seq)?;
        if let Some(source) = &message.source {
            self.sources
                .insert(source.as_bytes(), &message.seq.to_be_bytes())?;
        }
        self.write_message(message)
    }

    /// Every stored message, chat by chat, oldest first within a chat.
    pub fn all_messages(&self) -> impl Iterator<Item = Result<StoredMessage, StoreError>> + '_ {
        self.messages
            .iter()
            .values()
            .map(|v| decode("message", &v.map_err(StoreError::Db)?))
    }

    /// Appends a message to its chat and returns it with its sequence number. With `durable`,
    /// it is on disk before this returns (a user's message must survive a crash right after it
    /// was accepted).
    pub fn append_message(
        &self,
        mut message: StoredMessage,
        durable: bool,
    ) -> Result<StoredMessage, StoreError> {
        // A message from a source already stored (a replayed update) is not stored again.
        if let Some(source) = &message.source
            && let Some(seq) = self.sources.get(source.as_bytes())?
        {
            message.seq = <[u8; 8]>::try_from(seq.as_ref()).map_or(0, u64::from_be_bytes);
            return Ok(message);
        }
        message.seq = self.next_id()?;
        if let Some(source) = &message.source {
            self.sources
                .insert(source.as_bytes(), &message.seq.to_be_bytes())?;
        }
        self.write_message(&message)?;
        if durable {
            self.flush()?;
        }
        Ok(message)
    }

    /// The last `limit` messages of a chat, oldest first.
    pub fn recent_messages(
        &self,
        chat_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut messages = self
            .messages
            .scan_prefix(id_key(chat_id))
            .rev()
            .take(limit)
            .map(|entry| {
                let (_, bytes) = entry?;
                decode("message", &bytes)
            })
            .collect::<Result<Vec<StoredMessage>, StoreError>>()?;
        messages.reverse();
        Ok(messages)
    }

    /// Marks where the chat's current conversation starts (`/new`); not flushed here.
    pub fn set_conversation_start(&self, chat_id: i64, message_id: u64) -> Result<(), StoreError> {
        self.conversation_starts
            .insert(id_key(chat_id), &message_id.to_be_bytes())?;
        Ok(())
    }

    /// Where the chat's current conversation starts (0: its first message).
    pub fn conversation_start(&self, chat_id: i64) -> Result<u64, StoreError> {
        let stored = self.conversation_starts.get(id_key(chat_id))?;
        Ok(stored
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }
}
