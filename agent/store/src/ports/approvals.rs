//! The approvals audit log (`valor_core::approvals::ApprovalLog`): one record per approval,
//! keyed by its id (ids grow with time), kept 90 days.

use async_trait::async_trait;
use valor_core::approvals::ApprovalLog;
use valor_protocol::StoreFailure;
use valor_protocol::approval::{ApprovalRecord, Decision};

use crate::store::{decode, encode};
use crate::{Store, StoreError};

/// How long a decision stays in the log.
const KEPT_MS: u64 = 90 * 86_400_000;
/// Records `latest` looks through at most for one chat's.
const MAX_SCAN: usize = 20_000;

impl Store {
    fn approval(&self, id: u64) -> Result<Option<ApprovalRecord>, StoreError> {
        (self.approvals.get(id.to_be_bytes())?)
            .map(|bytes| decode("approval", &bytes))
            .transpose()
    }

    /// Writes a record, and drops those older than [`KEPT_MS`] (the caller commits).
    fn put_approval(&self, record: &ApprovalRecord) -> Result<(), StoreError> {
        self.approvals
            .insert(record.id.to_be_bytes(), encode(record))?;
        let cutoff = record.asked_ms.saturating_sub(KEPT_MS).saturating_mul(4096);
        let old: Vec<sled::IVec> = self
            .approvals
            .range(..cutoff.to_be_bytes())
            .keys()
            .take(256)
            .collect::<Result<_, _>>()?;
        for key in old {
            self.approvals.remove(key)?;
        }
        Ok(())
    }

    /// Decides `id` unless it is decided (compare-and-swap: a second answer changes nothing).
    fn settle_approval(
        &self,
        id: u64,
        decision: Decision,
        by: Option<i64>,
        at_ms: u64,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        loop {
            let Some(old) = self.approvals.get(id.to_be_bytes())? else {
                return Ok(None);
            };
            let mut record: ApprovalRecord = decode("approval", &old)?;
            if record.decision.is_some() {
                return Ok(Some(record));
            }
            record.decision = Some(decision);
            record.by = by;
            record.decided_ms = Some(at_ms);
            let swapped = self.approvals.compare_and_swap(
                id.to_be_bytes(),
                Some(old),
                Some(encode(&record)),
            )?;
            if swapped.is_ok() {
                return Ok(Some(record));
            }
        }
    }

    /// The newest records first (of one chat, or all).
    pub fn latest_approvals(
        &self,
        chat_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let mut found = Vec::new();
        for entry in self.approvals.iter().rev().take(MAX_SCAN) {
            let (_, bytes) = entry?;
            let record: ApprovalRecord = decode("approval", &bytes)?;
            if chat_id.is_none_or(|chat| chat == record.chat_id) {
                found.push(record);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Every record, oldest first (dumps).
    pub fn all_approvals(&self) -> impl Iterator<Item = Result<ApprovalRecord, StoreError>> + '_ {
        self.approvals
            .iter()
            .values()
            .map(|bytes| decode("approval", &bytes?))
    }

    /// Loads a dumped record as it was.
    pub fn load_approval(&self, record: &ApprovalRecord) -> Result<(), StoreError> {
        self.approvals
            .insert(record.id.to_be_bytes(), encode(record))?;
        Ok(())
    }
}

#[async_trait]
impl ApprovalLog for Store {
    async fn record(&self, record: &ApprovalRecord) -> Result<(), StoreFailure> {
        let record = record.clone();
        self.blocking(move |s| s.put_approval(&record)).await?;
        Ok(self.commit().await?)
    }

    async fn settle(
        &self,
        id: u64,
        decision: Decision,
        by: Option<i64>,
        at_ms: u64,
    ) -> Result<Option<ApprovalRecord>, StoreFailure> {
        let record = (self.blocking(move |s| s.settle_approval(id, decision, by, at_ms))).await?;
        self.commit().await?;
        Ok(record)
    }

    async fn get(&self, id: u64) -> Result<Option<ApprovalRecord>, StoreFailure> {
        Ok(self.blocking(move |s| s.approval(id)).await?)
    }

    async fn latest(
        &self,
        chat_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, StoreFailure> {
        Ok(self
            .blocking(move |s| s.latest_approvals(chat_id, limit))
            .await?)
    }
}
