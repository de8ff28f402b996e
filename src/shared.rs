//! The stores the chats share: the embedded sled store of this one process, or, with
//! `[cluster] enabled`, PostgreSQL, which every node of the cluster reads and writes. Each part
//! gets the interface it needs; only this wiring names the concrete stores.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use valor_claude::ledger::Ledger;
use valor_config::{Config, Secret};
use valor_core::engine::ConversationStore;
use valor_core::status::ChatRecords;
use valor_learn::port::LearnStore;
use valor_memory::MemoryStore;
use valor_store::Store;
use valor_store_pg::{PgOptions, PgStore};
use valor_telegram::inbox::TelegramStore;

#[derive(Clone)]
pub struct Shared {
    pub conversation: Arc<dyn ConversationStore>,
    pub ledger: Ledger,
    pub memory: Arc<dyn MemoryStore>,
    pub learn: Arc<dyn LearnStore>,
    pub telegram: Arc<dyn TelegramStore>,
    pub records: Arc<dyn ChatRecords>,
    /// The cluster's database, when `[cluster]` is on.
    pub cluster: Option<PgStore>,
}

impl Shared {
    /// Everything in this process's sled store.
    pub fn embedded(store: &Store) -> Shared {
        Shared {
            conversation: Arc::new(store.clone()),
            ledger: Arc::new(store.clone()),
            memory: Arc::new(store.clone()),
            learn: Arc::new(store.clone()),
            telegram: Arc::new(store.clone()),
            records: Arc::new(store.clone()),
            cluster: None,
        }
    }

    /// The embedded store, or the cluster's database when `[cluster]` is on (connected, its
    /// schema up to date; an error when it cannot be reached: nothing starts without it).
    pub async fn open(
        config: &Config,
        database_url: Option<&Secret>,
        store: &Store,
    ) -> anyhow::Result<Shared> {
        let cluster = &config.cluster;
        if !cluster.enabled {
            return Ok(Shared::embedded(store));
        }
        let url = database_url.context(
            "[cluster] is enabled but VALOR_DATABASE_URL is not set (postgres://USER:PASSWORD@HOST:5432/DATABASE)",
        )?;
        let options = PgOptions {
            node_id: cluster.resolved_node_id(),
            pool_size: cluster.pool_size,
            wait: Duration::from_secs(10),
        };
        let node = options.node_id.clone();
        let pg = PgStore::connect(url.expose(), options)
            .await
            .context("cannot open the cluster's database")?;
        tracing::info!(node = %node, role = cluster.role.as_str(), "cluster: the shared store is PostgreSQL");
        if cluster.shared_dir.is_none() {
            tracing::info!(
                "cluster: no [cluster] shared_dir; a chat that moves to another node starts a fresh Claude session, its context re-injected from the store"
            );
        }
        Ok(Shared {
            conversation: Arc::new(pg.clone()),
            ledger: Arc::new(pg.clone()),
            memory: Arc::new(pg.clone()),
            learn: Arc::new(pg.clone()),
            telegram: Arc::new(pg.clone()),
            records: Arc::new(pg.clone()),
            cluster: Some(pg),
        })
    }
}

/// How the Telegram channel takes part in the cluster: the shared queue, the poller's
/// leadership on ingress nodes, turns on worker nodes.
pub fn channel_cluster(config: &Config, pg: &PgStore) -> valor_telegram::channel::ClusterSetup {
    use valor_store_pg::intake::{PgChatQueue, PgLeadership};
    let c = &config.cluster;
    let chat_lease = Duration::from_secs(c.chat_lease_secs);
    let leader_lease = Duration::from_secs(c.leader_lease_secs);
    // With a webhook, the leader only registers it (every ingress node takes posts).
    let role = if config.telegram.webhook_url.is_empty() {
        valor_store_pg::leader::LeaderRole::Poller
    } else {
        valor_store_pg::leader::LeaderRole::Webhook
    };
    let leadership = c.role.ingests().then(|| {
        Arc::new(PgLeadership::new(pg.clone(), role, leader_lease))
            as Arc<dyn valor_telegram::cluster::Leadership>
    });
    valor_telegram::channel::ClusterSetup {
        queue: Arc::new(PgChatQueue::new(pg.clone(), chat_lease)),
        leadership,
        works: c.role.works(),
        // Turns this node runs at once: a chat claimed beyond them would wait here while
        // another worker idles.
        max_chats: config.claude.max_concurrent.max(1),
        idle_keep: Duration::from_secs(c.chat_idle_keep_secs),
        renew_every: chat_lease / 3,
        tick: Duration::from_secs(1),
        // A poll ends well within the leader's lease, so the leader renews it in time.
        leader_poll_secs: u32::try_from((c.leader_lease_secs / 3).max(1)).unwrap_or(5),
    }
}

/// How often a node says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Says this node is alive until `shutdown` (`/health` and `valor doctor` list the live nodes).
pub async fn heartbeat(
    pg: PgStore,
    role: valor_config::ClusterRole,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        if let Err(e) = pg.heartbeat(role.as_str()).await {
            tracing::warn!(error = %e, "cluster: cannot say this node is alive");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
}
