//! What the operator's views (the dashboard, `valor jobs`) read of the whole cluster: every
//! node's chats, turns, memories and questions, and which node holds which chat now.

use std::collections::BTreeMap;

use valor_protocol::proposals::Proposal;
use valor_protocol::records::{ChatRecord, MemoryKind, MemoryRecord, RunRecord};

use crate::error::PgError;
use crate::memory::{DOCUMENT_COLUMNS, body, document_of};
use crate::pool::{PgStore, db_i64, from_db};

/// Runs read per page while looking for the latest a filter keeps.
const RUN_PAGE: i64 = 500;
/// Runs looked at in all for one such question: a filter that keeps almost nothing does not
/// read a year of turns.
const RUNS_SCANNED: usize = 20_000;

fn chat_of(row: &tokio_postgres::Row) -> ChatRecord {
    ChatRecord {
        chat_id: row.get(0),
        first_at_ms: from_db(row.get(1)),
        last_at_ms: from_db(row.get(2)),
        messages: from_db(row.get(3)),
        title: row.get(4),
    }
}

/// The node part of a lease holder's name (`node#start`).
fn node_of(holder: &str) -> &str {
    holder.split_once('#').map_or(holder, |(node, _)| node)
}

impl PgStore {
    /// Every chat anyone wrote in, latest activity first.
    pub async fn chats(&self) -> Result<Vec<ChatRecord>, PgError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT chat_id, first_at_ms, last_at_ms, messages, title FROM chats
                 ORDER BY last_at_ms DESC",
                &[],
            )
            .await?;
        Ok(rows.iter().map(chat_of).collect())
    }

    pub async fn chat(&self, chat_id: i64) -> Result<Option<ChatRecord>, PgError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT chat_id, first_at_ms, last_at_ms, messages, title FROM chats
                 WHERE chat_id = $1",
                &[&chat_id],
            )
            .await?;
        Ok(row.as_ref().map(chat_of))
    }

    /// The latest `limit` runs `keep` keeps, newest first (of the latest 20,000 at most).
    pub async fn latest_runs(
        &self,
        limit: usize,
        keep: impl Fn(&RunRecord) -> bool,
    ) -> Result<Vec<RunRecord>, PgError> {
        let client = self.client().await?;
        let mut found = Vec::new();
        let mut before = (i64::MAX, i64::MAX);
        let mut scanned = 0;
        while found.len() < limit && scanned < RUNS_SCANNED {
            let rows = client
                .query(
                    "SELECT started_at_ms, chat_id, body FROM runs
                     WHERE (started_at_ms, chat_id) < ($1, $2)
                     ORDER BY started_at_ms DESC, chat_id DESC LIMIT $3",
                    &[&before.0, &before.1, &RUN_PAGE],
                )
                .await?;
            let Some(last) = rows.last() else { break };
            before = (last.get(0), last.get(1));
            scanned += rows.len();
            for row in &rows {
                let run: RunRecord = body(row, 2, "run")?;
                if keep(&run) {
                    found.push(run);
                    if found.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(found)
    }

    /// The run of `chat_id` that started at `started_at_ms`.
    pub async fn run_at(
        &self,
        started_at_ms: u64,
        chat_id: i64,
    ) -> Result<Option<RunRecord>, PgError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT body FROM runs WHERE started_at_ms = $1 AND chat_id = $2",
                &[&db_i64(started_at_ms), &chat_id],
            )
            .await?;
        row.as_ref().map(|r| body(r, 0, "run")).transpose()
    }

    /// A chat's latest saved memories of every kind, newest first, at most `limit` of each.
    pub async fn chat_memories(
        &self,
        chat_id: i64,
        limit: usize,
    ) -> Result<Vec<MemoryRecord>, PgError> {
        let client = self.client().await?;
        let mut found = Vec::new();
        for kind in MemoryKind::SAVED {
            let rows = client
                .query(
                    &format!(
                        "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE chat_id = $1 AND kind = $2
                         ORDER BY id DESC LIMIT $3"
                    ),
                    &[&chat_id, &i16::from(kind.byte()), &db_i64(limit as u64)],
                )
                .await?;
            for row in &rows {
                found.push(document_of(row)?);
            }
        }
        found.sort_by_key(|m| std::cmp::Reverse(m.id));
        Ok(found)
    }

    /// The latest "Remember this?" questions, newest first.
    pub async fn latest_proposals(&self, limit: usize) -> Result<Vec<Proposal>, PgError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT body FROM proposals ORDER BY id DESC LIMIT $1",
                &[&db_i64(limit as u64)],
            )
            .await?;
        rows.iter().map(|r| body(r, 0, "question")).collect()
    }

    /// The chats a node holds now, and which node.
    pub async fn chat_holders(&self) -> Result<BTreeMap<i64, String>, PgError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT chat_id, holder FROM leases
                 WHERE chat_id IS NOT NULL AND expires_at > now()",
                &[],
            )
            .await?;
        Ok((rows.iter())
            .map(|row| {
                let holder: String = row.get(1);
                (row.get(0), node_of(&holder).to_owned())
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::node_of;

    #[test]
    fn a_holder_is_named_by_its_node() {
        assert_eq!(node_of("worker-2#4242-17"), "worker-2");
        assert_eq!(node_of("plain"), "plain");
    }
}
