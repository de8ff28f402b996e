//! Learnings and "Remember this?" questions on PostgreSQL. A learning's number is the next of
//! its chat's, taken under a lock on that chat so two nodes never give the same one; a question
//! is settled once, whichever node the press reaches first.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::Json;
use valor_learn::port::{LearningStore, ProposalStore};
use valor_protocol::StoreFailure;
use valor_protocol::learnings::{LearningRecord, Retirement};
use valor_protocol::proposals::{Proposal, ProposalState};
use valor_protocol::records::{MemoryRecord, StoredVector};

use crate::error::{PgError, encode};
use crate::memory::{body, forget_document, reserve_through, write_memory};
use crate::pool::{PgStore, db_i64, from_db};

fn state_text(state: ProposalState) -> &'static str {
    match state {
        ProposalState::Pending => "pending",
        ProposalState::Accepted => "accepted",
        ProposalState::Declined => "declined",
        ProposalState::Expired => "expired",
    }
}

pub(crate) async fn all_learnings(store: &PgStore) -> Result<Vec<LearningRecord>, PgError> {
    let client = store.client().await?;
    let rows = client
        .query("SELECT body FROM learnings ORDER BY id", &[])
        .await?;
    rows.iter().map(|row| body(row, 0, "learning")).collect()
}

async fn put_learning<C: GenericClient>(
    client: &C,
    record: &LearningRecord,
) -> Result<(), PgError> {
    let value = encode("learning", record)?;
    client
        .execute(
            "INSERT INTO learnings (id, chat_id, number, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET chat_id = $2, number = $3, body = $4",
            &[
                &db_i64(record.id),
                &record.chat_id,
                &db_i64(record.number),
                &Json(&value),
            ],
        )
        .await?;
    Ok(())
}

async fn lock_numbers<C: GenericClient>(client: &C, chat_id: Option<i64>) -> Result<(), PgError> {
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('learning numbers ' || COALESCE($1::bigint::text, 'none'), 0))",
            &[&chat_id],
        )
        .await?;
    Ok(())
}

pub(crate) async fn import_learning(
    store: &PgStore,
    record: LearningRecord,
) -> Result<(), PgError> {
    let mut client = store.client().await?;
    let transaction = client.transaction().await?;
    let memory = if record.is_active() {
        Some(write_memory(&transaction, record.memory()).await?)
    } else {
        reserve_through(&transaction, record.id).await?;
        None
    };
    put_learning(&transaction, &record).await?;
    transaction.commit().await?;
    if let Some(memory) = memory {
        store.announce(&[memory]);
    }
    Ok(())
}

#[async_trait]
impl LearningStore for PgStore {
    async fn all_learnings(&self) -> Result<Vec<LearningRecord>, StoreFailure> {
        Ok(all_learnings(self).await?)
    }

    async fn add_learning(
        &self,
        mut record: LearningRecord,
    ) -> Result<LearningRecord, StoreFailure> {
        if record.content.trim().is_empty() {
            return Err(StoreFailure::Invalid("a learning needs text".to_owned()));
        }
        record.retired = None;
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(PgError::from)?;
        lock_numbers(&transaction, record.chat_id).await?;
        let last: i64 = (transaction.query_one(
            "SELECT COALESCE(max(number), 0) FROM learnings WHERE chat_id IS NOT DISTINCT FROM $1",
            &[&record.chat_id],
        ))
        .await
        .map_err(PgError::from)?
        .get(0);
        record.number = from_db(last) + 1;
        let memory = write_memory(
            &transaction,
            MemoryRecord {
                id: 0,
                ..record.memory()
            },
        )
        .await?;
        record.id = memory.id;
        put_learning(&transaction, &record).await?;
        transaction.commit().await.map_err(PgError::from)?;
        self.announce(&[memory]);
        Ok(record)
    }

    async fn update_learning(&self, record: LearningRecord) -> Result<(), StoreFailure> {
        let client = self.client().await?;
        put_learning(&client, &record).await?;
        Ok(())
    }

    async fn retire_learning(
        &self,
        id: u64,
        reason: String,
        replaced_by: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<LearningRecord>, StoreFailure> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(PgError::from)?;
        let row = (transaction.query_opt(
            "SELECT body FROM learnings WHERE id = $1 FOR UPDATE",
            &[&db_i64(id)],
        ))
        .await
        .map_err(PgError::from)?;
        let Some(row) = row else { return Ok(None) };
        let mut record: LearningRecord = body(&row, 0, "learning")?;
        if record.is_active() {
            record.retired = Some(Retirement {
                at_ms: now_ms,
                reason,
                replaced_by,
            });
            record.updated_ms = now_ms;
            put_learning(&transaction, &record).await?;
            forget_document(&transaction, id).await?;
            transaction.commit().await.map_err(PgError::from)?;
        }
        Ok(Some(record))
    }

    async fn learning_vector(&self, id: u64) -> Result<Option<StoredVector>, StoreFailure> {
        valor_memory::port::EmbeddingStore::vector(self, id).await
    }
}

async fn put_proposal<C: GenericClient>(client: &C, proposal: &Proposal) -> Result<(), PgError> {
    let value = encode("question", proposal)?;
    client
        .execute(
            "INSERT INTO proposals (id, chat_id, state, created_ms, expires_ms, body)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET state = $3, expires_ms = $5, body = $6",
            &[
                &db_i64(proposal.id),
                &proposal.chat_id,
                &state_text(proposal.state),
                &db_i64(proposal.created_ms),
                &db_i64(proposal.expires_ms),
                &Json(&value),
            ],
        )
        .await?;
    Ok(())
}

/// A question of `chat_id`, locked for this transaction (`None`: none, or another chat's).
async fn locked_proposal<C: GenericClient>(
    client: &C,
    id: u64,
    chat_id: i64,
) -> Result<Option<Proposal>, PgError> {
    let row = client
        .query_opt(
            "SELECT body FROM proposals WHERE id = $1 AND chat_id = $2 FOR UPDATE",
            &[&db_i64(id), &chat_id],
        )
        .await?;
    row.as_ref().map(|r| body(r, 0, "question")).transpose()
}

#[async_trait]
impl ProposalStore for PgStore {
    async fn add_proposal(&self, mut proposal: Proposal) -> Result<Proposal, StoreFailure> {
        let client = self.client().await?;
        let id: i64 = (client.query_one("SELECT nextval('proposal_ids')", &[]))
            .await
            .map_err(PgError::from)?
            .get(0);
        proposal.id = from_db(id);
        proposal.state = ProposalState::Pending;
        put_proposal(&client, &proposal).await?;
        Ok(proposal)
    }

    async fn proposal(&self, id: u64) -> Result<Option<Proposal>, StoreFailure> {
        let client = self.client().await?;
        let row = (client.query_opt("SELECT body FROM proposals WHERE id = $1", &[&db_i64(id)]))
            .await
            .map_err(PgError::from)?;
        Ok(row.as_ref().map(|r| body(r, 0, "question")).transpose()?)
    }

    async fn settle_proposal(
        &self,
        id: u64,
        chat_id: i64,
        accept: bool,
        now_ms: u64,
    ) -> Result<Option<(ProposalState, Proposal)>, StoreFailure> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(PgError::from)?;
        let Some(mut proposal) = locked_proposal(&transaction, id, chat_id).await? else {
            return Ok(None);
        };
        let before = proposal.settle(accept, now_ms);
        if before == ProposalState::Pending {
            put_proposal(&transaction, &proposal).await?;
            transaction.commit().await.map_err(PgError::from)?;
        }
        Ok(Some((before, proposal)))
    }

    async fn reopen_proposal(
        &self,
        id: u64,
        chat_id: i64,
        now_ms: u64,
    ) -> Result<bool, StoreFailure> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(PgError::from)?;
        let Some(mut proposal) = locked_proposal(&transaction, id, chat_id).await? else {
            return Ok(false);
        };
        if !proposal.reopen(now_ms) {
            return Ok(false);
        }
        put_proposal(&transaction, &proposal).await?;
        transaction.commit().await.map_err(PgError::from)?;
        Ok(true)
    }

    async fn expire_proposals(&self, now_ms: u64) -> Result<Vec<Proposal>, StoreFailure> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(PgError::from)?;
        // SKIP LOCKED: a question being settled right now is that press's.
        let rows = (transaction.query(
            "SELECT body FROM proposals WHERE state = 'pending' AND expires_ms < $1
             ORDER BY id FOR UPDATE SKIP LOCKED",
            &[&db_i64(now_ms)],
        ))
        .await
        .map_err(PgError::from)?;
        let mut expired = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut proposal: Proposal = body(row, 0, "question")?;
            proposal.state = ProposalState::Expired;
            put_proposal(&transaction, &proposal).await?;
            expired.push(proposal);
        }
        transaction.commit().await.map_err(PgError::from)?;
        Ok(expired)
    }

    async fn purge_proposals(&self, before_ms: u64) -> Result<usize, StoreFailure> {
        let client = self.client().await?;
        let purged = (client.execute(
            "DELETE FROM proposals WHERE state <> 'pending' AND created_ms < $1",
            &[&db_i64(before_ms)],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(purged as usize)
    }
}
