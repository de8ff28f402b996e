//! This node in the cluster (`[cluster]`): how the Telegram channel takes part, the heartbeat,
//! and the `cluster` component of `/health` (this node, the live nodes, who leads what, which
//! node holds which chats).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use valor_config::Config;
use valor_monitor::score::Status;
use valor_store_pg::PgStore;

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
        // Beyond the warm Claude processes kept, an idle chat held buys nothing.
        max_idle: config.claude.max_warm.max(1),
        renew_every: chat_lease / 3,
        tick: Duration::from_secs(1),
        // A poll ends well within the leader's lease, so the leader renews it in time.
        leader_poll_secs: u32::try_from((c.leader_lease_secs / 3).max(1)).unwrap_or(5),
    }
}

/// How often a node says it is alive and reads the cluster's state.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// The cluster as this node last read it.
#[derive(Default)]
struct View {
    read_at: Option<Instant>,
    fields: Map<String, Value>,
    error: Option<String>,
}

/// The `cluster` component of `/health`.
pub struct ClusterHealth {
    node: String,
    role: &'static str,
    view: Mutex<View>,
}

impl ClusterHealth {
    pub fn new(config: &Config) -> Arc<ClusterHealth> {
        Arc::new(ClusterHealth {
            node: config.cluster.resolved_node_id(),
            role: config.cluster.role.as_str(),
            view: Mutex::new(View::default()),
        })
    }

    async fn refresh(&self, pg: &PgStore) {
        let read = async {
            pg.heartbeat(self.role).await?;
            let nodes = pg.nodes().await?;
            let leaders = pg.leaders().await?;
            let chats = pg.chat_leases().await?;
            Ok::<_, valor_store_pg::PgError>((nodes, leaders, chats))
        };
        let read = read.await;
        let mut view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        match read {
            Ok((nodes, leaders, chats)) => {
                let node_of = |holder: &str| holder.split('#').next().unwrap_or("").to_owned();
                let mut held: BTreeMap<String, u64> = BTreeMap::new();
                for chat in chats.iter().filter(|c| c.expires_in_ms > 0) {
                    *held.entry(node_of(&chat.holder)).or_default() += 1;
                }
                let leading: Map<String, Value> = (leaders.iter())
                    .filter(|l| l.expires_in_ms > 0)
                    .map(|l| {
                        (
                            l.name.trim_start_matches("leader:").to_owned(),
                            json!(node_of(&l.holder)),
                        )
                    })
                    .collect();
                let mut fields = Map::new();
                fields.insert("nodes".to_owned(), json!(nodes));
                fields.insert("leaders".to_owned(), Value::Object(leading));
                fields.insert("chats_held".to_owned(), json!(held));
                *view = View {
                    read_at: Some(Instant::now()),
                    fields,
                    error: None,
                };
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster: cannot say this node is alive");
                view.error = Some(e.to_string());
            }
        }
    }
}

impl valor_monitor::server::HealthComponent for ClusterHealth {
    fn name(&self) -> &'static str {
        "cluster"
    }

    fn check(&self) -> (Status, Map<String, Value>) {
        let view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        let mut fields = view.fields.clone();
        fields.insert("node".to_owned(), json!(self.node));
        fields.insert("role".to_owned(), json!(self.role));
        let fresh = view.read_at.is_some_and(|at| at.elapsed() < HEARTBEAT * 3);
        let status = match (&view.error, fresh) {
            (None, true) => Status::Ok,
            (Some(error), _) => {
                fields.insert("error".to_owned(), json!(error));
                Status::Degraded
            }
            (None, false) => Status::Degraded,
        };
        (status, fields)
    }
}

/// Says this node is alive and reads the cluster's state until `shutdown`.
pub async fn heartbeat(
    pg: PgStore,
    health: Arc<ClusterHealth>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        health.refresh(&pg).await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
}
