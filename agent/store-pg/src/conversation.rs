//! The conversation and the session ledger on PostgreSQL: a chat's messages, where its
//! conversation starts, its Claude session, every run with what it said, and the process groups
//! each node started (a node's reaper sees only its own).

use async_trait::async_trait;
use tokio_postgres::types::Json;
use valor_claude::ledger::SessionLedger;
use valor_core::store::ConversationStore;
use valor_protocol::records::{ProcessRecord, RunRecord, SessionRecord, StoredMessage, TurnText};
use valor_protocol::{Author, ContextMessage, Role, StoreFailure};

use crate::error::{PgError, encode};
use crate::memory::{body, next_document_id, write_message};
use crate::pool::{PgStore, db_i64, from_db};

/// What a turn said is kept for the latest turns only (as in sled).
pub const TURN_TEXTS_KEPT: i64 = 2_000;

impl PgStore {
    /// Appends a message (one transaction: the message, its queue entry, its chat's count); a
    /// message whose source is stored already is not stored again.
    pub async fn append_message(&self, mut message: StoredMessage) -> Result<u64, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        if let Some(source) = &message.source {
            // Two nodes given the same update: the second waits on the first's row and finds it.
            transaction
                .execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    &[source],
                )
                .await?;
            if let Some(row) = transaction
                .query_opt("SELECT id FROM documents WHERE source = $1", &[source])
                .await?
            {
                return Ok(from_db(row.get(0)));
            }
        }
        message.seq = next_document_id(&transaction).await?;
        write_message(&transaction, &message).await?;
        transaction.commit().await?;
        self.announce(&[message.clone().into()]);
        Ok(message.seq)
    }

    /// Every run recorded in `[from_ms, to_ms)`, oldest first (analytics).
    pub async fn runs_between(&self, from_ms: u64, to_ms: u64) -> Result<Vec<RunRecord>, PgError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT body FROM runs WHERE started_at_ms >= $1 AND started_at_ms < $2
                 ORDER BY started_at_ms, chat_id",
                &[&db_i64(from_ms), &db_i64(to_ms)],
            )
            .await?;
        rows.iter().map(|row| body(row, 0, "run")).collect()
    }

    /// What the turn of `chat_id` started at `started_at_ms` said, while it is kept.
    pub async fn turn_text(
        &self,
        started_at_ms: u64,
        chat_id: i64,
    ) -> Result<Option<TurnText>, PgError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT body FROM turn_texts WHERE started_at_ms = $1 AND chat_id = $2",
                &[&db_i64(started_at_ms), &chat_id],
            )
            .await?;
        row.as_ref().map(|r| body(r, 0, "turn text")).transpose()
    }
}

#[async_trait]
impl ConversationStore for PgStore {
    async fn append(
        &self,
        chat_id: i64,
        role: Role,
        text: &str,
        author: Option<&Author>,
        source: Option<&str>,
        _durable: bool,
    ) -> Result<u64, StoreFailure> {
        // Every write commits before it returns: each message is durable.
        let message = StoredMessage::said(chat_id, role, text, author, source);
        Ok(self.append_message(message).await?)
    }

    async fn recent(
        &self,
        chat_id: i64,
        limit: usize,
    ) -> Result<Vec<ContextMessage>, StoreFailure> {
        let messages =
            valor_memory::port::DocumentStore::recent_messages(self, chat_id, limit).await?;
        Ok(messages
            .into_iter()
            .map(|m| ContextMessage {
                id: m.seq,
                role: m.role,
                text: m.text,
            })
            .collect())
    }

    async fn set_conversation_start(
        &self,
        chat_id: i64,
        message_id: u64,
    ) -> Result<(), StoreFailure> {
        let client = self.client().await?;
        let now = db_i64(valor_protocol::time::now_ms());
        (client.execute(
            "INSERT INTO chats (chat_id, first_at_ms, last_at_ms, conversation_start)
             VALUES ($1, $2, $2, $3)
             ON CONFLICT (chat_id) DO UPDATE SET conversation_start = $3",
            &[&chat_id, &now, &db_i64(message_id)],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(())
    }

    async fn conversation_start(&self, chat_id: i64) -> Result<u64, StoreFailure> {
        let client = self.client().await?;
        let row = (client.query_opt(
            "SELECT conversation_start FROM chats WHERE chat_id = $1",
            &[&chat_id],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(row.map_or(0, |r| from_db(r.get(0))))
    }

    async fn name_chat(&self, chat_id: i64, title: &str) -> Result<(), StoreFailure> {
        let client = self.client().await?;
        let now = db_i64(valor_protocol::time::now_ms());
        (client.execute(
            "INSERT INTO chats (chat_id, first_at_ms, last_at_ms, title) VALUES ($1, $2, $2, $3)
             ON CONFLICT (chat_id) DO UPDATE SET title = $3
             WHERE chats.title IS DISTINCT FROM $3",
            &[&chat_id, &now, &title],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(())
    }
}

#[async_trait]
impl SessionLedger for PgStore {
    async fn session(&self, chat_id: i64) -> Result<Option<SessionRecord>, StoreFailure> {
        let client = self.client().await?;
        // Claude Code keeps a session's transcript in the chat's HOME: without homes every node
        // mounts, only the node that made the session can resume it (elsewhere the chat starts
        // a fresh one, its context re-injected from the store).
        let row = (client.query_opt(
            "SELECT body FROM sessions WHERE chat_id = $1 AND ($2 OR body->>'node' = $3)",
            &[
                &chat_id,
                &self.options.shared_sessions,
                &self.options.node_id,
            ],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(row.as_ref().map(|r| body(r, 0, "session")).transpose()?)
    }

    async fn set_session(&self, chat_id: i64, record: &SessionRecord) -> Result<(), StoreFailure> {
        let mut value = encode("session", record)?;
        if let Some(fields) = value.as_object_mut() {
            fields.insert("node".to_owned(), self.options.node_id.clone().into());
        }
        let client = self.client().await?;
        (client.execute(
            "INSERT INTO sessions (chat_id, body) VALUES ($1, $2)
             ON CONFLICT (chat_id) DO UPDATE SET body = $2",
            &[&chat_id, &Json(&value)],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(())
    }

    async fn clear_session(&self, chat_id: i64) -> Result<(), StoreFailure> {
        let client = self.client().await?;
        (client.execute("DELETE FROM sessions WHERE chat_id = $1", &[&chat_id]))
            .await
            .map_err(PgError::from)?;
        Ok(())
    }

    async fn record_run(&self, run: &RunRecord, text: &TurnText) -> Result<(), StoreFailure> {
        let run_value = encode("run", run)?;
        let text_value = encode("turn text", text)?;
        let started = db_i64(run.started_at_ms);
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(PgError::from)?;
        (transaction.execute(
            "INSERT INTO runs (started_at_ms, chat_id, node, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT (started_at_ms, chat_id) DO UPDATE SET body = $4, node = $3",
            &[&started, &run.chat_id, &self.node_id(), &Json(&run_value)],
        ))
        .await
        .map_err(PgError::from)?;
        (transaction.execute(
            "INSERT INTO turn_texts (started_at_ms, chat_id, body) VALUES ($1, $2, $3)
             ON CONFLICT (started_at_ms, chat_id) DO UPDATE SET body = $3",
            &[&started, &run.chat_id, &Json(&text_value)],
        ))
        .await
        .map_err(PgError::from)?;
        (transaction.execute(
            "DELETE FROM turn_texts WHERE started_at_ms < (
               SELECT started_at_ms FROM turn_texts ORDER BY started_at_ms DESC
               OFFSET $1 LIMIT 1)",
            &[&(TURN_TEXTS_KEPT - 1)],
        ))
        .await
        .map_err(PgError::from)?;
        transaction.commit().await.map_err(PgError::from)?;
        Ok(())
    }

    async fn put_process(&self, record: &ProcessRecord) -> Result<(), StoreFailure> {
        let value = encode("process", record)?;
        let client = self.client().await?;
        (client.execute(
            "INSERT INTO processes (node, pgid, body) VALUES ($1, $2, $3)
             ON CONFLICT (node, pgid) DO UPDATE SET body = $3",
            &[&self.node_id(), &i64::from(record.pgid), &Json(&value)],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(())
    }

    async fn remove_process(&self, pgid: u32) -> Result<(), StoreFailure> {
        let client = self.client().await?;
        (client.execute(
            "DELETE FROM processes WHERE node = $1 AND pgid = $2",
            &[&self.node_id(), &i64::from(pgid)],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(())
    }

    async fn processes(&self) -> Result<Vec<ProcessRecord>, StoreFailure> {
        let client = self.client().await?;
        let rows = (client.query(
            "SELECT body FROM processes WHERE node = $1 ORDER BY pgid",
            &[&self.node_id()],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(rows
            .iter()
            .map(|r| body(r, 0, "process"))
            .collect::<Result<Vec<_>, PgError>>()?)
    }

    async fn commit(&self) -> Result<(), StoreFailure> {
        Ok(())
    }
}
