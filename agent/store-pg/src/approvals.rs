//! The approvals audit log on PostgreSQL: every node's approvals in one table, so a button
//! pressed on the node that takes Telegram's updates decides an approval another node asked
//! (the first decision wins: the update only takes a row not yet decided).

use async_trait::async_trait;
use tokio_postgres::types::Json;
use valor_core::approvals::ApprovalLog;
use valor_protocol::StoreFailure;
use valor_protocol::approval::{ApprovalRecord, Decision};

use crate::error::{PgError, encode};
use crate::memory::body;
use crate::pool::{PgStore, db_i64};

/// How long a decision stays in the log.
const KEPT_MS: u64 = 90 * 86_400_000;

impl PgStore {
    /// Every record, oldest first (dumps).
    pub async fn all_approvals(&self) -> Result<Vec<ApprovalRecord>, PgError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT body FROM approvals ORDER BY id", &[])
            .await?;
        rows.iter().map(|row| body(row, 0, "approval")).collect()
    }

    /// Loads a dumped record as it was.
    pub async fn load_approval(&self, record: &ApprovalRecord) -> Result<(), PgError> {
        let value = encode("approval", record)?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO approvals (id, chat_id, decided, body) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET decided = $3, body = $4",
                &[
                    &db_i64(record.id),
                    &record.chat_id,
                    &record.decision.is_some(),
                    &Json(&value),
                ],
            )
            .await?;
        Ok(())
    }
}

#[async_trait]
impl ApprovalLog for PgStore {
    async fn record(&self, record: &ApprovalRecord) -> Result<(), StoreFailure> {
        self.load_approval(record).await?;
        let cutoff = record.asked_ms.saturating_sub(KEPT_MS).saturating_mul(4096);
        let client = self.client().await?;
        (client.execute("DELETE FROM approvals WHERE id < $1", &[&db_i64(cutoff)]))
            .await
            .map_err(PgError::from)?;
        Ok(())
    }

    async fn settle(
        &self,
        id: u64,
        decision: Decision,
        by: Option<i64>,
        at_ms: u64,
    ) -> Result<Option<ApprovalRecord>, StoreFailure> {
        let client = self.client().await?;
        let decided = serde_json::json!({
            "decision": decision,
            "by": by,
            "decided_ms": at_ms,
        });
        // Only an undecided row changes; either way the row as it stands is read back.
        (client.execute(
            "UPDATE approvals SET decided = true, body = body || $2
             WHERE id = $1 AND NOT decided",
            &[&db_i64(id), &Json(&decided)],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(self.get(id).await?)
    }

    async fn get(&self, id: u64) -> Result<Option<ApprovalRecord>, StoreFailure> {
        let client = self.client().await?;
        let row = (client.query_opt("SELECT body FROM approvals WHERE id = $1", &[&db_i64(id)]))
            .await
            .map_err(PgError::from)?;
        Ok(row.map(|row| body(&row, 0, "approval")).transpose()?)
    }

    async fn latest(
        &self,
        chat_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, StoreFailure> {
        let client = self.client().await?;
        let limit = db_i64(limit as u64);
        let rows =
            match chat_id {
                Some(chat) => client
                    .query(
                        "SELECT body FROM approvals WHERE chat_id = $1 ORDER BY id DESC LIMIT $2",
                        &[&chat, &limit],
                    )
                    .await,
                None => {
                    client
                        .query(
                            "SELECT body FROM approvals ORDER BY id DESC LIMIT $1",
                            &[&limit],
                        )
                        .await
                }
            }
            .map_err(PgError::from)?;
        Ok(rows
            .iter()
            .map(|row| body(row, 0, "approval"))
            .collect::<Result<_, PgError>>()?)
    }
}
