//! The Telegram channel's stores on PostgreSQL. The inbox is the work queue itself: an
//! accepted update is an open row of `chat_updates`, answered when its row is done, so an
//! update accepted by any ingress node is seen by every node. The update offset is kept in
//! `meta`, and only ever moves forward.

use async_trait::async_trait;
use tokio_postgres::types::Json;
use valor_learn::port::ProposalStore;
use valor_protocol::StoreFailure;
use valor_protocol::proposals::Proposal;
use valor_protocol::records::InboxEntry;
use valor_telegram::inbox::{Inbox, PairedUsers, QuestionMessages};

use crate::error::{PgError, encode};
use crate::memory::body;
use crate::pool::{PgStore, db_i64};

#[async_trait]
impl Inbox for PgStore {
    async fn accept_update(&self, entry: &InboxEntry) -> Result<(), StoreFailure> {
        PgStore::accept_update(self, entry).await?;
        self.set_last_update(entry.update_id).await
    }

    async fn finish_update(&self, update_id: i64) -> Result<(), StoreFailure> {
        let client = self.client().await?;
        (client.execute(
            "UPDATE chat_updates SET done_at = clock_timestamp()
             WHERE update_id = $1 AND done_at IS NULL",
            &[&update_id],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(())
    }

    async fn inbox(&self) -> Result<Vec<InboxEntry>, StoreFailure> {
        let client = self.client().await?;
        let rows = (client.query(
            "SELECT body FROM chat_updates WHERE done_at IS NULL ORDER BY id",
            &[],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(rows
            .iter()
            .map(|r| body(r, 0, "update"))
            .collect::<Result<Vec<_>, PgError>>()?)
    }

    fn inbox_set_aside(&self) -> usize {
        // A row that does not decode fails its read loudly instead of being set aside.
        0
    }

    async fn last_update(&self) -> Result<i64, StoreFailure> {
        let client = self.client().await?;
        let row = (client.query_opt(
            "SELECT value FROM meta WHERE key = 'telegram_last_update'",
            &[],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(row
            .and_then(|r| r.get::<_, String>(0).parse().ok())
            .unwrap_or(0))
    }

    async fn set_last_update(&self, id: i64) -> Result<(), StoreFailure> {
        let client = self.client().await?;
        (client.execute(
            "INSERT INTO meta (key, value) VALUES ('telegram_last_update', $1)
             ON CONFLICT (key) DO UPDATE SET value = $1
             WHERE meta.value::bigint < $1::text::bigint",
            &[&id.to_string()],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(())
    }
}

#[async_trait]
impl PairedUsers for PgStore {
    async fn paired_users(&self) -> Result<Vec<i64>, StoreFailure> {
        let client = self.client().await?;
        let rows = (client.query(
            "SELECT user_id FROM paired_users ORDER BY paired_at, user_id",
            &[],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn add_paired_user(&self, user_id: i64) -> Result<(), StoreFailure> {
        let client = self.client().await?;
        (client.execute(
            "INSERT INTO paired_users (user_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&user_id],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(())
    }

    async fn remove_paired_user(&self, user_id: i64) -> Result<bool, StoreFailure> {
        let client = self.client().await?;
        let removed = (client.execute("DELETE FROM paired_users WHERE user_id = $1", &[&user_id]))
            .await
            .map_err(PgError::from)?;
        Ok(removed == 1)
    }

    async fn paired_roles(&self) -> Result<Vec<(i64, valor_protocol::access::Role)>, StoreFailure> {
        let client = self.client().await?;
        let rows = (client.query(
            "SELECT user_id, role FROM paired_users WHERE role <> 'chatter' ORDER BY user_id",
            &[],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let role: String = r.get(1);
                Some((r.get(0), valor_protocol::access::Role::parse(&role)?))
            })
            .collect())
    }

    async fn set_paired_role(
        &self,
        user_id: i64,
        role: valor_protocol::access::Role,
    ) -> Result<(), StoreFailure> {
        let client = self.client().await?;
        (client.execute(
            "INSERT INTO paired_users (user_id, role) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE SET role = $2",
            &[&user_id, &role.as_str()],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(())
    }
}

#[async_trait]
impl QuestionMessages for PgStore {
    async fn add_proposal(&self, proposal: Proposal) -> Result<Proposal, StoreFailure> {
        ProposalStore::add_proposal(self, proposal).await
    }

    async fn proposal(&self, id: u64) -> Result<Option<Proposal>, StoreFailure> {
        ProposalStore::proposal(self, id).await
    }

    async fn set_proposal_message(&self, id: u64, message_id: i64) -> Result<(), StoreFailure> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(PgError::from)?;
        let row = (transaction.query_opt(
            "SELECT body FROM proposals WHERE id = $1 FOR UPDATE",
            &[&db_i64(id)],
        ))
        .await
        .map_err(PgError::from)?;
        let Some(row) = row else { return Ok(()) };
        let mut proposal: Proposal = body(&row, 0, "question")?;
        proposal.message_id = Some(message_id);
        let value = encode("question", &proposal)?;
        (transaction.execute(
            "UPDATE proposals SET body = $2 WHERE id = $1",
            &[&db_i64(id), &Json(&value)],
        ))
        .await
        .map_err(PgError::from)?;
        transaction.commit().await.map_err(PgError::from)?;
        Ok(())
    }
}
