//! `valor doctor`'s checks of the shared database when `[cluster] enabled`: it is reachable,
//! pgvector is there, the schema is one this Valor reads, and who holds which lease.

use std::time::Duration;

use valor_config::Loaded;
use valor_store_pg::SCHEMA_VERSION;
use valor_store_pg::schema::{Inspection, inspect};

use crate::doctor::{Check, Outcome};

/// How long the doctor waits for the database.
const WAIT: Duration = Duration::from_secs(5);

pub async fn checks(loaded: &Loaded) -> Vec<Check> {
    let cluster = &loaded.config.cluster;
    if !cluster.enabled {
        return Vec::new();
    }
    let mut checks = vec![shared_dir(loaded)];
    checks.extend(database(loaded).await);
    checks
}

/// Where the chats' folders are: on a shared filesystem (a moved chat resumes its session) or
/// this machine's own (it starts a fresh one, its history re-injected).
fn shared_dir(loaded: &Loaded) -> Check {
    let claude = &loaded.config.claude;
    let outcome = match &loaded.config.cluster.shared_dir {
        None => Outcome::Warn {
            found: "no [cluster] shared_dir: a chat that moves to another node starts a fresh \
                    Claude session (its history re-injected from the store)"
                .to_owned(),
            fix: "mount one filesystem on every node and set [cluster] shared_dir to it, to keep \
                  sessions and files across nodes"
                .to_owned(),
        },
        Some(dir) if !dir.is_dir() => Outcome::Fail {
            found: format!("{} is not a folder here", dir.display()),
            fix: "mount the shared filesystem there on this node (or correct [cluster] shared_dir)"
                .to_owned(),
        },
        Some(dir) => Outcome::Pass(format!(
            "{}: workspaces in {}, homes in {}",
            dir.display(),
            claude.workspaces_dir.display(),
            claude.homes_dir.display()
        )),
    };
    Check {
        name: "shared_dir",
        outcome,
    }
}

async fn database(loaded: &Loaded) -> Vec<Check> {
    let cluster = &loaded.config.cluster;
    let Some(url) = &loaded.secrets.database_url else {
        return vec![fail(
            "database",
            "[cluster] is enabled but VALOR_DATABASE_URL is not set".to_owned(),
            "export VALOR_DATABASE_URL=postgres://USER:PASSWORD@HOST:5432/DATABASE (scripts/postgres \
             start DIR prints one for a local server)",
        )];
    };
    match inspect(url.expose(), WAIT).await {
        Ok(found) => judge(&found, &cluster.resolved_node_id()),
        Err(e) => vec![fail(
            "database",
            e.to_string(),
            "start PostgreSQL 15 (scripts/postgres start DIR), or correct VALOR_DATABASE_URL",
        )],
    }
}

fn fail(name: &'static str, found: String, fix: &str) -> Check {
    Check {
        name,
        outcome: Outcome::Fail {
            found,
            fix: fix.to_owned(),
        },
    }
}

fn judge(found: &Inspection, node: &str) -> Vec<Check> {
    let mut checks = vec![Check {
        name: "database",
        outcome: Outcome::Pass(format!("PostgreSQL {} reachable", found.server)),
    }];
    checks.push(Check {
        name: "pgvector",
        outcome: match (&found.pgvector, found.pgvector_available) {
            (Some(version), _) => Outcome::Pass(format!("pgvector {version}")),
            (None, true) => Outcome::Pass(
                "pgvector is available; the first node to start installs it".to_owned(),
            ),
            (None, false) => Outcome::Fail {
                found: "the server has no pgvector extension".to_owned(),
                fix: "install pgvector 0.8 on the database server (scripts/setup builds it)"
                    .to_owned(),
            },
        },
    });
    checks.push(Check {
        name: "schema",
        outcome: match found.schema_version {
            0 => Outcome::Pass(format!(
                "empty; the first node to start creates schema version {SCHEMA_VERSION}"
            )),
            v if v == SCHEMA_VERSION => Outcome::Pass(format!("version {v}")),
            v if v < SCHEMA_VERSION => Outcome::Pass(format!(
                "version {v}; this Valor migrates it to {SCHEMA_VERSION} when it starts"
            )),
            v => Outcome::Fail {
                found: format!("version {v}, newer than this Valor's {SCHEMA_VERSION}"),
                fix: "upgrade Valor on this node to the version the other nodes run".to_owned(),
            },
        },
    });
    let leaders: Vec<String> = (found.leases.iter())
        .filter(|l| l.name.starts_with("leader:") && l.expires_in_ms > 0)
        .map(|l| {
            format!(
                "{} by {}",
                &l.name["leader:".len()..],
                holder_node(&l.holder)
            )
        })
        .collect();
    let chats = (found.leases.iter())
        .filter(|l| l.name.starts_with("chat:") && l.expires_in_ms > 0)
        .count();
    let duplicate = found.live_nodes.iter().any(|n| n == node);
    let summary = format!(
        "{} live node(s) [{}]; leaders: {}; {chats} chat(s) held",
        found.live_nodes.len(),
        found.live_nodes.join(", "),
        if leaders.is_empty() {
            "none".to_owned()
        } else {
            leaders.join(", ")
        },
    );
    checks.push(Check {
        name: "leases",
        outcome: if duplicate {
            Outcome::Warn {
                found: format!("{summary}; a live node is named {node} already"),
                fix: "nothing to do if that is this machine's `valor run`; otherwise give this \
                      node its own [cluster] node_id"
                    .to_owned(),
            }
        } else {
            Outcome::Pass(summary)
        },
    });
    checks
}

/// The node of a lease holder (`node#start`).
fn holder_node(holder: &str) -> &str {
    holder.split_once('#').map_or(holder, |(node, _)| node)
}
