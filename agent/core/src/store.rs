//! Where the engine keeps a chat's messages ([`ConversationStore`]; the store implements it,
//! the tests use [`InMemoryStore`]).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
pub use valor_protocol::StoreFailure;
use valor_protocol::{Author, ContextMessage, Role};

/// Where the engine keeps messages.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Appends a message and returns its id (ids grow). A message with a `source` already
    /// stored is not stored again (its id is returned). With `durable` it is on disk first.
    async fn append(
        &self,
        chat_id: i64,
        role: Role,
        text: &str,
        author: Option<&Author>,
        source: Option<&str>,
        durable: bool,
    ) -> Result<u64, StoreFailure>;

    /// The last `limit` messages of a chat, oldest first.
    async fn recent(&self, chat_id: i64, limit: usize)
    -> Result<Vec<ContextMessage>, StoreFailure>;

    /// Marks where the chat's current conversation starts (`/new`); persisted.
    async fn set_conversation_start(
        &self,
        chat_id: i64,
        message_id: u64,
    ) -> Result<(), StoreFailure>;

    /// Where the chat's current conversation starts (0: its first message).
    async fn conversation_start(&self, chat_id: i64) -> Result<u64, StoreFailure>;

    /// Keeps the chat's name (a Telegram group's title) for the pages that list chats;
    /// written only when it changed.
    async fn name_chat(&self, chat_id: i64, title: &str) -> Result<(), StoreFailure> {
        let _ = (chat_id, title);
        Ok(())
    }
}

/// An in-memory conversation store (tests and benchmarks): messages with their durability.
#[derive(Default)]
pub struct InMemoryStore {
    messages: Mutex<Vec<(i64, ContextMessage, bool)>>,
    starts: Mutex<HashMap<i64, u64>>,
    /// The id each source was stored as (a replayed update is stored once).
    sources: Mutex<HashMap<String, u64>>,
    /// Every chat name written, in order.
    names: Mutex<Vec<(i64, String)>>,
}

#[async_trait]
impl ConversationStore for InMemoryStore {
    async fn append(
        &self,
        chat_id: i64,
        role: Role,
        text: &str,
        _: Option<&Author>,
        source: Option<&str>,
        durable: bool,
    ) -> Result<u64, StoreFailure> {
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = source.and_then(|s| sources.get(s)) {
            return Ok(*id);
        }
        let mut messages = self.messages.lock().unwrap_or_else(PoisonError::into_inner);
        let id = messages.len() as u64 + 1;
        if let Some(source) = source {
            sources.insert(source.to_owned(), id);
        }
        messages.push((
            chat_id,
            ContextMessage {
                id,
                role,
                text: text.to_owned(),
            },
            durable,
        ));
        Ok(id)
    }

    async fn recent(
        &self,
        chat_id: i64,
        limit: usize,
    ) -> Result<Vec<ContextMessage>, StoreFailure> {
        let messages = self.messages.lock().unwrap_or_else(PoisonError::into_inner);
        let mine: Vec<ContextMessage> = messages
            .iter()
            .filter(|(c, ..)| *c == chat_id)
            .map(|(_, m, _)| m.clone())
            .collect();
        Ok(mine[mine.len().saturating_sub(limit)..].to_vec())
    }

    async fn set_conversation_start(
        &self,
        chat_id: i64,
        message_id: u64,
    ) -> Result<(), StoreFailure> {
        self.starts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(chat_id, message_id);
        Ok(())
    }

    async fn name_chat(&self, chat_id: i64, title: &str) -> Result<(), StoreFailure> {
        (self.names.lock().unwrap_or_else(PoisonError::into_inner))
            .push((chat_id, title.to_owned()));
        Ok(())
    }

    async fn conversation_start(&self, chat_id: i64) -> Result<u64, StoreFailure> {
        Ok(self
            .starts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&chat_id)
            .copied()
            .unwrap_or(0))
    }
}

impl InMemoryStore {
    /// Every chat name written, in order.
    pub fn names(&self) -> Vec<(i64, String)> {
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every message: its chat, itself, and whether it was written durably.
    pub fn messages(&self) -> Vec<(i64, ContextMessage, bool)> {
        self.messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
