//! `[cluster]`: Valor on several machines, sharing one PostgreSQL (+ pgvector). Off by default:
//! one process with the embedded sled store, as before. The database's URL is a secret and
//! comes from the environment only (`VALOR_DATABASE_URL`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterRole {
    /// Takes Telegram's updates in and answers them (one machine can be the whole cluster).
    #[default]
    All,
    /// Takes updates in (the poller's leader, or the webhook) and queues them; runs no turns.
    Ingress,
    /// Runs turns for the chats it claims from the queue; takes no updates in.
    Worker,
}

impl ClusterRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterRole::All => "all",
            ClusterRole::Ingress => "ingress",
            ClusterRole::Worker => "worker",
        }
    }

    /// Whether this node takes updates in.
    pub fn ingests(self) -> bool {
        matches!(self, ClusterRole::All | ClusterRole::Ingress)
    }

    /// Whether this node runs turns.
    pub fn works(self) -> bool {
        matches!(self, ClusterRole::All | ClusterRole::Worker)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Share the store through PostgreSQL (`VALOR_DATABASE_URL`); false: the embedded store.
    pub enabled: bool,
    pub role: ClusterRole,
    /// This node's name, unique in the cluster (empty: the host's name).
    pub node_id: String,
    /// Database connections this node opens at most.
    pub pool_size: usize,
    /// A chat stays on the worker that claimed it while the worker renews this lease; a dead
    /// worker's chats move after it runs out.
    pub chat_lease_secs: u64,
    /// A worker keeps an idle chat (its warm Claude process and files) this long, then lets
    /// it go.
    pub chat_idle_keep_secs: u64,
    /// The poller's, the scheduler's and the webhook's leader hold their role this long
    /// unless renewed.
    pub leader_lease_secs: u64,
    /// Workspaces and Claude homes on a filesystem every node mounts: a chat that moves keeps
    /// its session. Without it a moved chat starts a fresh session with its context
    /// re-injected from the store.
    pub shared_dir: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            role: ClusterRole::All,
            node_id: String::new(),
            pool_size: 16,
            chat_lease_secs: 30,
            chat_idle_keep_secs: 300,
            leader_lease_secs: 15,
            shared_dir: None,
        }
    }
}

impl ClusterConfig {
    /// The node's name: `node_id`, else the host's name.
    pub fn resolved_node_id(&self) -> String {
        if !self.node_id.is_empty() {
            return self.node_id.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "valor".to_owned())
    }
}

/// The `[cluster]` values types cannot check.
pub(crate) fn validate(
    c: &ClusterConfig,
    claude: &crate::ClaudeConfig,
    problems: &mut Vec<(String, String)>,
) {
    if let Some(shared) = &c.shared_dir {
        shared_dir(shared, claude, problems);
    }
    let id_ok = c.node_id.len() <= 64
        && (c.node_id.chars())
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'));
    if !id_ok {
        problems.push((
            "cluster.node_id".to_owned(),
            "use at most 64 letters, digits, '.', '_' or '-'".to_owned(),
        ));
    }
    let ranges = [
        (
            "cluster.pool_size",
            c.pool_size as u64,
            1,
            256,
            "connections",
        ),
        (
            "cluster.chat_lease_secs",
            c.chat_lease_secs,
            5,
            3_600,
            "seconds",
        ),
        (
            "cluster.chat_idle_keep_secs",
            c.chat_idle_keep_secs,
            0,
            86_400,
            "seconds",
        ),
        (
            "cluster.leader_lease_secs",
            c.leader_lease_secs,
            3,
            600,
            "seconds",
        ),
    ];
    for (key, value, min, max, unit) in ranges {
        if !(min..=max).contains(&value) {
            problems.push((
                key.to_owned(),
                format!("must be {min}-{max} {unit}, not {value}"),
            ));
        }
    }
}

/// `shared_dir` is a place every node names alike (absolute, or under `~/`), and the chats'
/// folders set by hand are beneath it: a chat's files must be where any node looks.
fn shared_dir(
    shared: &std::path::Path,
    claude: &crate::ClaudeConfig,
    problems: &mut Vec<(String, String)>,
) {
    if !(shared.is_absolute() || shared.starts_with("~")) {
        problems.push((
            "cluster.shared_dir".to_owned(),
            format!(
                "must be an absolute path every node mounts alike, not {:?}",
                shared.display().to_string()
            ),
        ));
        return;
    }
    let defaults = crate::ClaudeConfig::default();
    let folders = [
        (
            "claude.workspaces_dir",
            &claude.workspaces_dir,
            &defaults.workspaces_dir,
        ),
        ("claude.homes_dir", &claude.homes_dir, &defaults.homes_dir),
    ];
    for (key, folder, default) in folders {
        if folder != default && !folder.starts_with(shared) {
            problems.push((
                key.to_owned(),
                format!(
                    "is {:?}, outside [cluster] shared_dir {:?}: a chat moving to another node \
                     would not find its files (leave it unset to put it there)",
                    folder.display().to_string(),
                    shared.display().to_string()
                ),
            ));
        }
    }
}
