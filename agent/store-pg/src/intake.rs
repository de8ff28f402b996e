//! The channel's cluster ports ([`ChatQueue`], [`Leadership`]) over the queue and the leases,
//! and the chat records `/status` reads.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use valor_core::status::{ChatRecords, ChatUsage, SessionInfo};
use valor_protocol::StoreFailure;
use valor_protocol::analytics::RunAnalytics;
use valor_protocol::proposals::{Proposal, ProposalState, describe_counts};
use valor_telegram::cluster::{ChatQueue, ClaimedChat, Leadership, QueueWake, QueuedTurn};

use crate::error::PgError;
use crate::leader::LeaderRole;
use crate::lease::Lease;
use crate::memory::body;
use crate::pool::{PgStore, db_i64};
use crate::queue::{ChatLease, chat_lease_name};
use crate::wake::Wake;

/// The work queue as a worker's channel claims from it.
pub struct PgChatQueue {
    store: PgStore,
    /// How long a claim or renewal holds a chat.
    chat_lease: Duration,
}

impl PgChatQueue {
    pub fn new(store: PgStore, chat_lease: Duration) -> PgChatQueue {
        PgChatQueue { store, chat_lease }
    }
}

fn lease_of(chat: &ClaimedChat) -> ChatLease {
    ChatLease {
        chat_id: chat.chat_id,
        lease: Lease {
            name: chat_lease_name(chat.chat_id),
            epoch: chat.epoch,
        },
    }
}

fn claimed_chat(chat: ChatLease) -> ClaimedChat {
    ClaimedChat {
        chat_id: chat.chat_id,
        epoch: chat.lease.epoch,
    }
}

#[async_trait]
impl ChatQueue for PgChatQueue {
    async fn claim(&self, max: usize) -> Result<Vec<ClaimedChat>, StoreFailure> {
        let claimed = self.store.claim_chats(max, self.chat_lease).await?;
        Ok(claimed.into_iter().map(claimed_chat).collect())
    }

    async fn claim_interrupted(&self, max: usize) -> Result<Vec<ClaimedChat>, StoreFailure> {
        let claimed = (self.store)
            .claim_interrupted_chats(max, self.chat_lease)
            .await?;
        Ok(claimed.into_iter().map(claimed_chat).collect())
    }

    async fn next_turn(&self, chat: &ClaimedChat) -> Result<Option<QueuedTurn>, StoreFailure> {
        let next = self.store.next_update(&lease_of(chat)).await?;
        Ok(next.map(|u| QueuedTurn {
            queue_id: u.id,
            entry: u.entry,
            attempts: u.attempts,
            reply_message_id: u.reply_message_id,
        }))
    }

    async fn note_reply(
        &self,
        chat: &ClaimedChat,
        queue_id: i64,
        message_id: i64,
    ) -> Result<(), StoreFailure> {
        Ok(self
            .store
            .note_reply(&lease_of(chat), queue_id, message_id)
            .await?)
    }

    async fn finish_turn(&self, chat: &ClaimedChat, queue_id: i64) -> Result<(), StoreFailure> {
        (self.store)
            .finish_update(&lease_of(chat), queue_id, None, self.chat_lease)
            .await?;
        Ok(())
    }

    async fn renew(&self, chat: &ClaimedChat) -> bool {
        match self
            .store
            .renew_chat(&lease_of(chat), self.chat_lease)
            .await
        {
            Ok(()) => true,
            Err(PgError::Fenced { .. }) => false,
            // The database is away: the lease may still hold; the next renewal tells.
            Err(e) => {
                tracing::warn!(chat_id = chat.chat_id, error = %e, "cannot renew the chat's lease");
                true
            }
        }
    }

    async fn release(&self, chat: &ClaimedChat) {
        if let Err(e) = self.store.release_chat(&lease_of(chat)).await {
            tracing::warn!(chat_id = chat.chat_id, error = %e, "cannot let the chat go; its lease runs out");
        }
    }

    async fn stop(&self, chat_id: i64) -> Result<(), StoreFailure> {
        Ok(self.store.notify_stop(chat_id).await?)
    }

    async fn next_free(&self) -> Option<Duration> {
        match self.store.next_chat_free().await {
            Ok(free_in) => free_in,
            Err(e) => {
                tracing::debug!(error = %e, "cannot ask when the next held chat frees up");
                None
            }
        }
    }

    async fn wakes(&self) -> Option<mpsc::Receiver<QueueWake>> {
        let mut wakes = match self.store.listen().await {
            Ok(wakes) => wakes,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for new work; polling");
                return None;
            }
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            while let Some(wake) = wakes.recv().await {
                let wake = match wake {
                    Wake::Work { chat_id } => QueueWake::Work(chat_id),
                    Wake::Stop { chat_id } => QueueWake::Stop(chat_id),
                };
                if tx.send(wake).await.is_err() {
                    return;
                }
            }
        });
        Some(rx)
    }
}

/// A leader role as the channel (or the scheduler) holds it.
pub struct PgLeadership {
    store: PgStore,
    role: LeaderRole,
    ttl: Duration,
    held: Mutex<Option<Lease>>,
}

impl PgLeadership {
    pub fn new(store: PgStore, role: LeaderRole, ttl: Duration) -> PgLeadership {
        PgLeadership {
            store,
            role,
            ttl,
            held: Mutex::new(None),
        }
    }

    /// The lease while this node leads.
    pub fn lease(&self) -> Option<Lease> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Leadership for PgLeadership {
    async fn lead(&self) -> bool {
        let lease = match self.store.lead(self.role, self.ttl).await {
            Ok(lease) => lease,
            Err(e) => {
                // Unsure whether the lease holds: do not act as leader.
                tracing::warn!(role = self.role.as_str(), error = %e, "cannot take or renew the leader's lease");
                None
            }
        };
        let leading = lease.is_some();
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = lease;
        leading
    }

    async fn resign(&self) {
        let held = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(lease) = held
            && let Err(e) = self.store.resign(&lease).await
        {
            tracing::warn!(role = self.role.as_str(), error = %e, "cannot resign; the lease runs out");
        }
    }
}

/// The scheduler's slots: a cluster-wide job's slot runs on the scheduler's leader, once.
pub struct PgSlotGate {
    leadership: PgLeadership,
}

impl PgSlotGate {
    pub fn new(store: PgStore, ttl: Duration) -> PgSlotGate {
        PgSlotGate {
            leadership: PgLeadership::new(store, LeaderRole::Scheduler, ttl),
        }
    }
}

#[async_trait]
impl valor_scheduler::SlotGate for PgSlotGate {
    async fn claim(&self, job: &str, due_ms: u64) -> bool {
        if !self.leadership.lead().await {
            return false;
        }
        let Some(lease) = self.leadership.lease() else {
            return false;
        };
        match self.leadership.store.claim_slot(&lease, job, due_ms).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(job, error = %e, "cannot claim the job's slot; not running it");
                false
            }
        }
    }
}

#[async_trait]
impl ChatRecords for PgStore {
    async fn session(&self, chat_id: i64) -> Result<Option<SessionInfo>, StoreFailure> {
        let session = valor_claude::ledger::SessionLedger::session(self, chat_id).await?;
        Ok(session.map(|s| SessionInfo {
            session_id: s.session_id,
            turns: s.turns,
        }))
    }

    async fn usage_since(&self, chat_id: i64, since_ms: u64) -> Result<ChatUsage, StoreFailure> {
        let client = self.client().await?;
        let rows = (client.query(
            "SELECT body FROM runs WHERE chat_id = $1 AND started_at_ms >= $2
             ORDER BY started_at_ms",
            &[&chat_id, &db_i64(since_ms)],
        ))
        .await
        .map_err(PgError::from)?;
        let runs = rows
            .iter()
            .map(|r| body(r, 0, "run"))
            .collect::<Result<Vec<valor_protocol::records::RunRecord>, PgError>>()?;
        let totals = RunAnalytics::of(&runs).all;
        Ok(ChatUsage {
            turns: totals.turns,
            failed: totals.failed,
            cost_usd: totals.cost_usd,
            last_model: (runs.last().map(|r| r.model.clone())).filter(|m| !m.is_empty()),
        })
    }

    async fn questions(&self, chat_id: i64) -> Result<Option<String>, StoreFailure> {
        let client = self.client().await?;
        let rows = (client.query("SELECT body FROM proposals WHERE chat_id = $1", &[&chat_id]))
            .await
            .map_err(PgError::from)?;
        let mut counts = std::collections::BTreeMap::<(String, ProposalState), u64>::new();
        for row in &rows {
            let proposal: Proposal = body(row, 0, "question")?;
            let trigger = (proposal.learning.as_ref())
                .and_then(|l| l.trigger.clone())
                .unwrap_or_else(|| proposal.kind.as_str().to_owned());
            *counts.entry((trigger, proposal.state)).or_default() += 1;
        }
        Ok((!counts.is_empty()).then(|| describe_counts(&counts)))
    }
}
