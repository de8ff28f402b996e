//! The whole shared store as [`DumpRecord`]s (`valor backup`, `valor store migrate`), and
//! taking a dump's records in with their ids. Every load is an upsert keyed by the record's
//! own id, so a migration that stopped half-way runs again from the start and ends the same.

use tokio::sync::mpsc;
use tokio_postgres::types::Json;
use valor_memory::port::{DocumentStore, EmbeddingStore, MemoryArchive};
use valor_protocol::dump::DumpRecord;
use valor_protocol::records::{MemoryKind, StoredVector};
use valor_scheduler::JobLog;
use valor_telegram::inbox::PairedUsers;

use crate::error::{PgError, encode};
use crate::memory::body;
use crate::pool::{PgStore, db_i64, from_db};

impl PgStore {
    /// Every record, in dump order, into `out` (a closed receiver stops the walk).
    pub async fn dump(&self, out: mpsc::Sender<DumpRecord>) -> Result<(), PgError> {
        macro_rules! send {
            ($record:expr) => {
                if out.send($record).await.is_err() {
                    return Ok(());
                }
            };
        }
        let mut messages = self.message_feed();
        while let Some(message) = messages.recv().await {
            send!(DumpRecord::Message(message.map_err(failed)?));
        }
        for kind in MemoryKind::SAVED {
            if kind == MemoryKind::Learning {
                continue;
            }
            for record in self.memory_records(kind).await.map_err(failed)? {
                send!(DumpRecord::Memory(record));
            }
        }
        for learning in DocumentStore::all_learnings(self).await.map_err(failed)? {
            send!(DumpRecord::Learning(learning));
        }
        let mut vectors = self.vector_feed();
        while let Some(vector) = vectors.recv().await {
            let (id, v) = vector.map_err(failed)?;
            send!(DumpRecord::Vector {
                id,
                model_id: v.model_id,
                vector: v.vector,
            });
        }
        let client = self.client().await?;
        for row in client
            .query("SELECT body FROM proposals ORDER BY id", &[])
            .await?
        {
            send!(DumpRecord::Proposal(body(&row, 0, "question")?));
        }
        for row in client
            .query("SELECT chat_id, body FROM sessions ORDER BY chat_id", &[])
            .await?
        {
            send!(DumpRecord::Session {
                chat_id: row.get(0),
                record: body(&row, 1, "session")?,
            });
        }
        drop(client);
        for run in self.runs_between(0, u64::MAX).await? {
            let text = self.turn_text(run.started_at_ms, run.chat_id).await?;
            send!(DumpRecord::Run { run, text });
        }
        let client = self.client().await?;
        for row in client
            .query(
                "SELECT chat_id, title, conversation_start FROM chats ORDER BY chat_id",
                &[],
            )
            .await?
        {
            send!(DumpRecord::Chat {
                chat_id: row.get(0),
                title: row.get(1),
                conversation_start: from_db(row.get(2)),
            });
        }
        drop(client);
        let roles: std::collections::HashMap<i64, valor_protocol::access::Role> =
            (self.paired_roles().await.map_err(failed)?)
                .into_iter()
                .collect();
        for user_id in self.paired_users().await.map_err(failed)? {
            let role = roles.get(&user_id).copied();
            send!(DumpRecord::PairedUser { user_id, role });
        }
        for run in self.all_job_runs().await? {
            send!(DumpRecord::JobRun(run));
        }
        for job in JobLog::paused_jobs(self).await.map_err(failed)? {
            send!(DumpRecord::PausedJob { job });
        }
        for approval in self.all_approvals().await? {
            send!(DumpRecord::Approval(approval));
        }
        for (counter, spent) in self.all_spend().await? {
            send!(DumpRecord::Spend { counter, spent });
        }
        Ok(())
    }

    /// Takes one dumped record in, keeping its ids.
    pub async fn load(&self, record: DumpRecord) -> Result<(), PgError> {
        match record {
            DumpRecord::Message(message) => {
                self.import_message(message).await.map_err(failed)?;
            }
            DumpRecord::Memory(memory) => self.import_memory(memory).await.map_err(failed)?,
            DumpRecord::Learning(learning) => {
                self.import_learning(learning).await.map_err(failed)?;
            }
            DumpRecord::Vector {
                id,
                model_id,
                vector,
            } => {
                let stored = StoredVector { model_id, vector };
                self.put_vectors(vec![(id, stored)]).await.map_err(failed)?;
            }
            DumpRecord::Proposal(proposal) => {
                let value = encode("question", &proposal)?;
                let client = self.client().await?;
                client
                    .execute(
                        "INSERT INTO proposals (id, chat_id, state, created_ms, expires_ms, body)
                         VALUES ($1, $2, $6::jsonb ->> 'state', $3, $4, $5)
                         ON CONFLICT (id) DO UPDATE SET state = excluded.state, body = $5",
                        &[
                            &db_i64(proposal.id),
                            &proposal.chat_id,
                            &db_i64(proposal.created_ms),
                            &db_i64(proposal.expires_ms),
                            &Json(&value),
                            &Json(&value),
                        ],
                    )
                    .await?;
                client
                    .execute(
                        "SELECT setval('proposal_ids', $1) WHERE $1 > (SELECT last_value FROM proposal_ids)",
                        &[&db_i64(proposal.id)],
                    )
                    .await?;
            }
            DumpRecord::Session { chat_id, record } => {
                valor_claude::ledger::SessionLedger::set_session(self, chat_id, &record)
                    .await
                    .map_err(failed)?;
            }
            DumpRecord::Run { run, text } => {
                let text = text.unwrap_or_else(|| valor_protocol::records::TurnText {
                    chat_id: run.chat_id,
                    started_at_ms: run.started_at_ms,
                    ..Default::default()
                });
                valor_claude::ledger::SessionLedger::record_run(self, &run, &text)
                    .await
                    .map_err(failed)?;
            }
            DumpRecord::Chat {
                chat_id,
                title,
                conversation_start,
            } => {
                let client = self.client().await?;
                client
                    .execute(
                        "INSERT INTO chats (chat_id, first_at_ms, last_at_ms, title, conversation_start)
                         VALUES ($1, 0, 0, $2, $3)
                         ON CONFLICT (chat_id) DO UPDATE SET title = COALESCE($2, chats.title),
                           conversation_start = $3",
                        &[&chat_id, &title, &db_i64(conversation_start)],
                    )
                    .await?;
            }
            DumpRecord::PairedUser { user_id, role } => match role {
                Some(role) => self.set_paired_role(user_id, role).await.map_err(failed)?,
                None => self.add_paired_user(user_id).await.map_err(failed)?,
            },
            DumpRecord::JobRun(run) => JobLog::record(self, &run).await.map_err(failed)?,
            DumpRecord::PausedJob { job } => {
                JobLog::set_paused(self, &job, true).await.map_err(failed)?;
            }
            DumpRecord::Approval(approval) => self.load_approval(&approval).await?,
            DumpRecord::Spend { counter, spent } => self.load_spend(&counter, &spent).await?,
        }
        Ok(())
    }
}

fn failed(e: valor_protocol::StoreFailure) -> PgError {
    match e {
        valor_protocol::StoreFailure::Invalid(why) => PgError::Invalid(why),
        valor_protocol::StoreFailure::Failed(why) => PgError::Store(why),
    }
}
