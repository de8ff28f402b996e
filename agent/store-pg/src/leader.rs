//! Leader leases: what one node does for the whole cluster. The Telegram poller (only the
//! holder calls `getUpdates`), the scheduler's cluster-wide jobs and `setWebhook` each have a
//! lease in the same table as the chats'. A scheduler slot is claimed under the leader's lease
//! with a UNIQUE `(job, due_at)`: a leader deposed mid-run cannot run the same slot twice, and
//! the next leader runs the next slot. Nodes also say they are alive ([`PgStore::heartbeat`]).

use std::time::Duration;

use crate::error::PgError;
use crate::lease::{self, Lease, LeaseState};
use crate::pool::{PgStore, db_i64};

/// The roles one node holds for the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaderRole {
    /// Calls `getUpdates` (a 409 from Telegram means another poller: leadership is lost).
    Poller,
    /// Runs the cluster-wide jobs (daydream, question expiry, pruning).
    Scheduler,
    /// Calls `setWebhook` (every ingress node accepts the webhook's posts).
    Webhook,
}

impl LeaderRole {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaderRole::Poller => "poller",
            LeaderRole::Scheduler => "scheduler",
            LeaderRole::Webhook => "webhook",
        }
    }

    fn lease_name(self) -> String {
        format!("leader:{}", self.as_str())
    }
}

/// A node the cluster has heard from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeState {
    pub node: String,
    pub role: String,
    /// Milliseconds since it was last heard from.
    pub seen_ms_ago: i64,
}

impl PgStore {
    /// Takes the role, or renews it when this node leads already: the lease, or `None` while
    /// another node leads.
    pub async fn lead(&self, role: LeaderRole, ttl: Duration) -> Result<Option<Lease>, PgError> {
        let name = role.lease_name();
        let client = self.client().await?;
        let epoch = lease::grant(&client, &name, self.holder(), ttl).await?;
        if let Some(epoch) = epoch {
            tracing::debug!(role = role.as_str(), epoch, node = %self.node_id(), "leading");
        }
        Ok(epoch.map(|epoch| Lease { name, epoch }))
    }

    /// Renews leadership held at `lease`'s epoch; [`PgError::Fenced`] when it was lost.
    pub async fn renew_lead(&self, lease: &Lease, ttl: Duration) -> Result<(), PgError> {
        let client = self.client().await?;
        lease::extend(&client, lease, self.holder(), ttl).await
    }

    /// Steps down (Telegram said 409, or this node stops): another node may lead at once.
    pub async fn resign(&self, lease: &Lease) -> Result<bool, PgError> {
        let client = self.client().await?;
        lease::give_up(&client, lease, self.holder()).await
    }

    /// Claims slot `due_at_ms` of `job` for this run; `false` when it ran already (on any
    /// node). Fenced by the scheduler's lease: a deposed leader claims nothing.
    pub async fn claim_slot(
        &self,
        lease: &Lease,
        job: &str,
        due_at_ms: u64,
    ) -> Result<bool, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        lease::fence(&transaction, lease, self.holder()).await?;
        let inserted = transaction
            .execute(
                "INSERT INTO job_slots (job, due_at_ms, node, epoch) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (job, due_at_ms) DO NOTHING",
                &[&job, &db_i64(due_at_ms), &self.node_id(), &lease.epoch],
            )
            .await?;
        transaction.commit().await?;
        Ok(inserted == 1)
    }

    /// The slots of `job` that ran, oldest first, with the node that ran each.
    pub async fn slots_run(&self, job: &str) -> Result<Vec<(u64, String)>, PgError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT due_at_ms, node FROM job_slots WHERE job = $1 ORDER BY due_at_ms",
                &[&job],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (crate::pool::from_db(r.get(0)), r.get(1)))
            .collect())
    }

    /// Who leads each role.
    pub async fn leaders(&self) -> Result<Vec<LeaseState>, PgError> {
        let client = self.client().await?;
        lease::leases_named(&**client, "leader:").await
    }

    /// Says this node is alive, in `role` (`all`, `ingress`, `worker`).
    pub async fn heartbeat(&self, role: &str) -> Result<(), PgError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO nodes (node, role, started_at, seen_at)
                 VALUES ($1, $2, clock_timestamp(), clock_timestamp())
                 ON CONFLICT (node) DO UPDATE SET role = $2, seen_at = clock_timestamp()",
                &[&self.node_id(), &role],
            )
            .await?;
        Ok(())
    }

    /// Every node heard from, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeState>, PgError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT node, role, (extract(epoch FROM clock_timestamp() - seen_at) * 1000)::bigint
                 FROM nodes ORDER BY node",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| NodeState {
                node: r.get(0),
                role: r.get(1),
                seen_ms_ago: r.get(2),
            })
            .collect())
    }
}
