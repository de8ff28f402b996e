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
    pub approvals: Arc<dyn valor_core::approvals::ApprovalLog>,
    /// Spend counters (`[budget]`): every node adds to the same ones.
    pub spend: Arc<dyn valor_core::budget::SpendLog>,
    /// The cluster's database, when `[cluster]` is on.
    pub cluster: Option<PgStore>,
}

/// The cluster's database for a one-off command (`valor stats`, `valor jobs`): `None` when
/// `[cluster]` is off; an error when it is on and cannot be reached.
pub async fn cluster_store(
    loaded: &valor_config::Loaded,
    pool_size: usize,
) -> anyhow::Result<Option<PgStore>> {
    let config = &loaded.config;
    if !config.cluster.enabled {
        return Ok(None);
    }
    let url = (loaded.secrets.database_url.as_ref())
        .context("[cluster] is enabled but VALOR_DATABASE_URL is not set")?;
    let options = PgOptions {
        node_id: config.cluster.resolved_node_id(),
        pool_size,
        wait: Duration::from_secs(10),
        shared_sessions: config.cluster.shared_dir.is_some(),
    };
    let pg = PgStore::connect(url.expose(), options)
        .await
        .context("cannot open the cluster's database")?;
    Ok(Some(pg))
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
            approvals: Arc::new(store.clone()),
            spend: Arc::new(store.clone()),
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
            shared_sessions: cluster.shared_dir.is_some(),
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
            approvals: Arc::new(pg.clone()),
            spend: Arc::new(pg.clone()),
            cluster: Some(pg),
        })
    }
}
