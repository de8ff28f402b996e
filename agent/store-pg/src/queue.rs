//! The per-chat work queue. Ingress accepts each Telegram update into `chat_updates` (one
//! transaction, which also makes the chat's lease row and wakes the workers by NOTIFY). A
//! worker claims chats: free lease rows of chats with open updates are picked with
//! `FOR UPDATE SKIP LOCKED` (two workers claiming at once take different chats). While the lease lives the chat stays on
//! that worker (its warm Claude process and files are reused) and its updates are answered in
//! order; a slow chat blocks no other. Storing the answer and marking the update done is one
//! transaction fenced by the lease's epoch, as is renewing it: a worker whose lease ran out
//! (it hung, or the database thought it dead) cannot commit, and the next holder answers.

use std::time::Duration;

use tokio_postgres::types::Json;
use valor_protocol::records::{InboxEntry, StoredMessage};

use crate::error::{PgError, encode};
use crate::lease::{self, Lease, LeaseState};
use crate::memory::{body, next_document_id, write_message};
use crate::pool::PgStore;

/// The channel `LISTEN`ers hear new work on (the payload: the chat's id).
pub const WORK_CHANNEL: &str = "valor_work";

/// A chat's lease's name.
pub fn chat_lease_name(chat_id: i64) -> String {
    format!("chat:{chat_id}")
}

/// A chat this worker holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLease {
    pub chat_id: i64,
    pub lease: Lease,
}

/// An accepted update waiting for (or in) its turn.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedUpdate {
    /// Its place in the queue (order of acceptance).
    pub id: i64,
    pub entry: InboxEntry,
    /// Turns started on it so far (more than one: a worker died or failed on it).
    pub attempts: i32,
    /// The message its answer streams into, when one was sent (a later attempt edits it).
    pub reply_message_id: Option<i64>,
}

impl PgStore {
    /// Accepts an update into its chat's queue; `false` when it was accepted before (a
    /// replayed `getUpdates`, a second ingress node). Wakes the workers.
    pub async fn accept_update(&self, entry: &InboxEntry) -> Result<bool, PgError> {
        let value = encode("update", entry)?;
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let inserted = transaction
            .execute(
                "INSERT INTO chat_updates (chat_id, update_id, body) VALUES ($1, $2, $3)
                 ON CONFLICT (update_id) DO NOTHING",
                &[&entry.chat_id, &entry.update_id, &Json(&value)],
            )
            .await?;
        if inserted == 1 {
            // The chat's lease row, free, for workers to claim (kept when it exists).
            transaction
                .execute(
                    "INSERT INTO leases (name, chat_id, holder, epoch, expires_at)
                     VALUES ($1, $2, '', 0, to_timestamp(0)) ON CONFLICT (name) DO NOTHING",
                    &[&chat_lease_name(entry.chat_id), &entry.chat_id],
                )
                .await?;
            transaction
                .execute(
                    "SELECT pg_notify($1, $2)",
                    &[&WORK_CHANNEL, &entry.chat_id.to_string()],
                )
                .await?;
        }
        transaction.commit().await?;
        Ok(inserted == 1)
    }

    /// Claims up to `max` chats with open updates that no other worker holds (and renews the
    /// ones this worker holds), each for `ttl`: first those whose answer a dead worker had
    /// begun (the person saw part of it), then the oldest work.
    pub async fn claim_chats(&self, max: usize, ttl: Duration) -> Result<Vec<ChatLease>, PgError> {
        self.claim_where(max, ttl, false).await
    }

    /// Claims up to `max` chats whose answer a worker began and did not finish (it died or
    /// lost the chat): a worker takes them even when its other chats fill it.
    pub async fn claim_interrupted_chats(
        &self,
        max: usize,
        ttl: Duration,
    ) -> Result<Vec<ChatLease>, PgError> {
        self.claim_where(max, ttl, true).await
    }

    async fn claim_where(
        &self,
        max: usize,
        ttl: Duration,
        interrupted_only: bool,
    ) -> Result<Vec<ChatLease>, PgError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Only lease rows are locked here, and before any update row (as every fenced write
        // does): one lock order, no deadlock with a worker taking its chat's next update.
        let rows = transaction
            .query(
                "SELECT l.chat_id FROM leases l
                 JOIN (SELECT chat_id, min(id) AS first,
                              bool_or(started_at IS NOT NULL) AS interrupted
                       FROM chat_updates
                       WHERE done_at IS NULL GROUP BY chat_id) open ON open.chat_id = l.chat_id
                 WHERE (l.expires_at <= clock_timestamp() OR l.holder = $1)
                   AND (open.interrupted OR NOT $3)
                 ORDER BY open.interrupted DESC, open.first LIMIT $2
                 FOR UPDATE OF l SKIP LOCKED",
                &[&self.holder(), &(max as i64), &interrupted_only],
            )
            .await?;
        let chats: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
        let mut claimed = Vec::with_capacity(chats.len());
        for chat_id in chats {
            let name = chat_lease_name(chat_id);
            if let Some(epoch) = lease::grant(&transaction, &name, self.holder(), ttl).await? {
                claimed.push(ChatLease {
                    chat_id,
                    lease: Lease { name, epoch },
                });
            }
        }
        transaction.commit().await?;
        for chat in &claimed {
            tracing::debug!(chat_id = chat.chat_id, epoch = chat.lease.epoch, node = %self.node_id(), "chat claimed");
        }
        Ok(claimed)
    }

    /// How soon the first chat with open updates that another process holds is free to claim
    /// (its lease runs out); `None`: no such chat.
    pub async fn next_chat_free(&self) -> Result<Option<Duration>, PgError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT EXTRACT(EPOCH FROM min(l.expires_at) - clock_timestamp())::float8
                 FROM leases l
                 WHERE l.chat_id IS NOT NULL AND l.expires_at > clock_timestamp()
                   AND l.holder <> $1
                   AND EXISTS (SELECT 1 FROM chat_updates u
                               WHERE u.chat_id = l.chat_id AND u.done_at IS NULL)",
                &[&self.holder()],
            )
            .await?;
        let secs: Option<f64> = row.get(0);
        Ok(secs.map(|s| Duration::from_secs_f64(s.max(0.0))))
    }

    /// The chat's oldest open update, marked started (one more attempt); `None` when its
    /// queue is empty. Fenced.
    pub async fn next_update(&self, chat: &ChatLease) -> Result<Option<QueuedUpdate>, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        lease::fence(&transaction, &chat.lease, self.holder()).await?;
        let row = transaction
            .query_opt(
                "UPDATE chat_updates SET started_at = clock_timestamp(), attempts = attempts + 1
                 WHERE id = (SELECT id FROM chat_updates WHERE chat_id = $1 AND done_at IS NULL
                             ORDER BY id LIMIT 1)
                 RETURNING id, body, attempts, reply_message_id",
                &[&chat.chat_id],
            )
            .await?;
        transaction.commit().await?;
        row.map(|r| {
            Ok(QueuedUpdate {
                id: r.get(0),
                entry: body(&r, 1, "update")?,
                attempts: r.get(2),
                reply_message_id: r.get(3),
            })
        })
        .transpose()
    }

    /// Remembers the message an update's answer streams into (a later attempt, on any node,
    /// edits it rather than sending a second answer). Fenced.
    pub async fn note_reply(
        &self,
        chat: &ChatLease,
        update: i64,
        message_id: i64,
    ) -> Result<(), PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        lease::fence(&transaction, &chat.lease, self.holder()).await?;
        transaction
            .execute(
                "UPDATE chat_updates SET reply_message_id = $3 WHERE id = $1 AND chat_id = $2",
                &[&update, &chat.chat_id, &message_id],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Stores the answer, marks the update done and renews the lease for `ttl`: one
    /// transaction, fenced. The answer's message id.
    pub async fn finish_update(
        &self,
        chat: &ChatLease,
        update: i64,
        answer: Option<StoredMessage>,
        ttl: Duration,
    ) -> Result<Option<u64>, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        lease::fence(&transaction, &chat.lease, self.holder()).await?;
        let mut stored = None;
        if let Some(mut message) = answer {
            message.seq = next_document_id(&transaction).await?;
            write_message(&transaction, &message).await?;
            stored = Some(message);
        }
        let marked = transaction
            .execute(
                "UPDATE chat_updates SET done_at = clock_timestamp()
                 WHERE id = $1 AND chat_id = $2 AND done_at IS NULL",
                &[&update, &chat.chat_id],
            )
            .await?;
        if marked != 1 {
            return Err(PgError::Invalid(format!(
                "update {update} of chat {} is not open",
                chat.chat_id
            )));
        }
        lease::extend(&transaction, &chat.lease, self.holder(), ttl).await?;
        transaction.commit().await?;
        let id = stored.as_ref().map(|m| m.seq);
        if let Some(message) = stored {
            self.announce(&[message.into()]);
        }
        Ok(id)
    }

    /// Renews a chat's lease for `ttl` (while a long turn runs). Fenced.
    pub async fn renew_chat(&self, chat: &ChatLease, ttl: Duration) -> Result<(), PgError> {
        let client = self.client().await?;
        lease::extend(&client, &chat.lease, self.holder(), ttl).await
    }

    /// Lets a chat go (idle past `chat_idle_keep_secs`, or this node stops): another worker
    /// may claim it at once.
    pub async fn release_chat(&self, chat: &ChatLease) -> Result<bool, PgError> {
        let client = self.client().await?;
        lease::give_up(&client, &chat.lease, self.holder()).await
    }

    /// Updates accepted and not yet answered.
    pub async fn open_updates(&self) -> Result<i64, PgError> {
        let client = self.client().await?;
        Ok(client
            .query_one(
                "SELECT count(*) FROM chat_updates WHERE done_at IS NULL",
                &[],
            )
            .await?
            .get(0))
    }

    /// Every chat's lease (which node runs which chat).
    pub async fn chat_leases(&self) -> Result<Vec<LeaseState>, PgError> {
        let client = self.client().await?;
        lease::leases_named(&**client, "chat:").await
    }

    /// Forgets updates answered, and scheduler slots run, before `older_than` ago (the queue
    /// keeps recent updates so a replayed one is still recognised); how many rows went.
    pub async fn prune(&self, older_than: Duration) -> Result<u64, PgError> {
        let client = self.client().await?;
        let millis = lease::millis(older_than);
        let updates = client
            .execute(
                "DELETE FROM chat_updates
                 WHERE done_at < clock_timestamp() - $1 * interval '1 millisecond'",
                &[&millis],
            )
            .await?;
        let slots = client
            .execute(
                "DELETE FROM job_slots
                 WHERE started_at < clock_timestamp() - $1 * interval '1 millisecond'",
                &[&millis],
            )
            .await?;
        Ok(updates + slots)
    }
}
