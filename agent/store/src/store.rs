//! Opening the database, the schema version, and the typed trees. What each part of Valor
//! keeps is in a file of its own: [`ledger`] (the driver's sessions, runs and process groups),
//! [`inbox`] (the channel's accepted messages, update offset and paired users), [`messages`]
//! (the conversation store the engine writes).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;
use crate::records::{Document, MemoryKind, StoredMessage};

/// The schema this build writes. Older stores are migrated on open; newer ones are refused.
pub const SCHEMA_VERSION: u32 = 3;

const META: &str = "meta";
const SCHEMA_KEY: &[u8] = b"schema_version";
const SESSIONS: &str = "claude_sessions";
const RUNS: &str = "runs";
const TURN_TEXTS: &str = "turn_texts";
const PROCESSES: &str = "processes";
const MESSAGES: &str = "messages";
const CONVERSATION_STARTS: &str = "conversation_starts";
const TELEGRAM: &str = "telegram";
const INBOX: &str = "telegram_inbox";
const SOURCES: &str = "message_sources";
const CHATS: &str = "chats";
const LINKS: &str = "links";
const LEARNINGS: &str = "learnings";
const INSIGHTS: &str = "insights";
const OBSERVATIONS: &str = "observations";
const SUMMARIES: &str = "session_summaries";
const HEALTH: &str = "health_history";
const LOCATOR: &str = "memory_locator";
const VECTORS: &str = "memory_vectors";
const EMBED_QUEUE: &str = "embed_queue";
const JOB_RUNS: &str = "job_runs";
const APPROVALS: &str = "approvals";
const SPEND: &str = "spend";
const DASHBOARD_SESSIONS: &str = "dashboard_sessions";
const PROPOSALS: &str = "proposals";
const LEARNING_RECORDS: &str = "learning_records";
const ID_OFFSET_KEY: &[u8] = b"id_offset";
pub use valor_protocol::memory::MAX_DOCUMENT_ID;

/// The store; cheap to clone (sled handles are shared).
#[derive(Clone)]
pub struct Store {
    pub(crate) db: sled::Db,
    path: PathBuf,
    sessions: sled::Tree,
    runs: sled::Tree,
    turn_texts: sled::Tree,
    /// How many turn texts are kept (counted at open; the oldest go past the bound).
    turn_text_count: Arc<AtomicU64>,
    processes: sled::Tree,
    pub(crate) messages: sled::Tree,
    conversation_starts: sled::Tree,
    telegram: sled::Tree,
    inbox: sled::Tree,
    sources: sled::Tree,
    chats: sled::Tree,
    pub(crate) links: sled::Tree,
    pub(crate) learnings: sled::Tree,
    pub(crate) insights: sled::Tree,
    pub(crate) observations: sled::Tree,
    pub(crate) summaries: sled::Tree,
    pub(crate) health: sled::Tree,
    pub(crate) locator: sled::Tree,
    pub(crate) vectors: sled::Tree,
    pub(crate) embed_queue: sled::Tree,
    pub(crate) job_runs: sled::Tree,
    /// The approvals audit log, by id (ids are ordered by time).
    pub(crate) approvals: sled::Tree,
    /// Spend counters by period and scope (`day:2026-12-08:chat:42`).
    pub(crate) spend: sled::Tree,
    dashboard_sessions: sled::Tree,
    pub(crate) proposals: sled::Tree,
    pub(crate) learning_records: sled::Tree,
    pub(crate) meta: sled::Tree,
    /// Added to sled's id sequence so ids stay above every imported id.
    id_offset: Arc<AtomicU64>,
    listener: Arc<RwLock<Option<DocumentListener>>>,
    /// Inbox writes still to fail (fault injection for tests of the channel's resilience).
    inbox_faults: Arc<AtomicU64>,
    /// Durable writes wait for it: one flush for all that wait together.
    pub(crate) committer: crate::commit::Committer,
}

pub use valor_memory::port::DocumentListener;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Keys of i64 ids sort numerically (sign bit flipped, big-endian).
pub(crate) fn id_key(id: i64) -> [u8; 8] {
    ((id as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain records cannot fail (no maps with non-string keys).
    serde_json::to_vec(value).unwrap_or_default()
}

pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt { what, source })
}

/// sled's page cache.
pub(crate) const CACHE_BYTES: u64 = 1024 * 1024;

/// Opens the database. sled releases its file lock from a background thread shortly after the
/// last handle is dropped, so a lock held by this process's (or a just-exited process's) old
/// handle is waited out for up to a second before the store is reported in use.
fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    const TRIES: u32 = 50;
    for attempt in 1..=TRIES {
        let opened = sled::Config::new()
            .path(path)
            // sled's default cache is 1 GiB. Valor's hot records (recent messages, sessions,
            // the inbox) are small, and the files stay in the kernel's page cache: 1 MiB keeps
            // the heap from growing with the database (the vendored sled honours it). At 4 MiB
            // a 2,000-turn soak still grew by the cache filling up.
            .cache_capacity(CACHE_BYTES)
            // What must survive a crash is committed (flushed) when written: the periodic
            // flush is a backstop. At sled's 500 ms its thread (and the segment cleaning it
            // does on every wake, through the small cache) was 1.2% of a core of an idle
            // Valor with 10k turns; at 2 s it is 0.3% (`cargo bench --bench dashboard`).
            .flush_every_ms(Some(2000))
            .open();
        match opened {
            Ok(db) => return Ok(db),
            // sled reports a held lock only as this text in an `Other` I/O error.
            Err(sled::Error::Io(io)) if io.to_string().starts_with("could not acquire lock") => {
                if attempt == TRIES {
                    return Err(StoreError::Locked {
                        path: path.to_owned(),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(source) => {
                return Err(StoreError::Open {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
    Err(StoreError::Locked {
        path: path.to_owned(),
    })
}

impl Store {
    /// Opens (creating) the store at `path`, migrating an older schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Err(e) = std::fs::create_dir_all(path) {
            return Err(StoreError::Open {
                path: path.to_owned(),
                source: sled::Error::Io(e),
            });
        }
        let db = open_db(path)?;
        let meta = db.open_tree(META)?;
        let found = match meta.get(SCHEMA_KEY)? {
            Some(bytes) => decode::<u32>("schema version", &bytes)?,
            None => 0,
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let turn_texts = db.open_tree(TURN_TEXTS)?;
        let store = Store {
            sessions: db.open_tree(SESSIONS)?,
            runs: db.open_tree(RUNS)?,
            turn_text_count: Arc::new(AtomicU64::new(ledger::turn_text_count(&meta, &turn_texts)?)),
            turn_texts,
            processes: db.open_tree(PROCESSES)?,
            messages: db.open_tree(MESSAGES)?,
            conversation_starts: db.open_tree(CONVERSATION_STARTS)?,
            telegram: db.open_tree(TELEGRAM)?,
            inbox: db.open_tree(INBOX)?,
            sources: db.open_tree(SOURCES)?,
            chats: db.open_tree(CHATS)?,
            links: db.open_tree(LINKS)?,
            learnings: db.open_tree(LEARNINGS)?,
            insights: db.open_tree(INSIGHTS)?,
            observations: db.open_tree(OBSERVATIONS)?,
            summaries: db.open_tree(SUMMARIES)?,
            health: db.open_tree(HEALTH)?,
            locator: db.open_tree(LOCATOR)?,
            vectors: db.open_tree(VECTORS)?,
            embed_queue: db.open_tree(EMBED_QUEUE)?,
            job_runs: db.open_tree(JOB_RUNS)?,
            approvals: db.open_tree(APPROVALS)?,
            spend: db.open_tree(SPEND)?,
            dashboard_sessions: db.open_tree(DASHBOARD_SESSIONS)?,
            proposals: db.open_tree(PROPOSALS)?,
            learning_records: db.open_tree(LEARNING_RECORDS)?,
            inbox_faults: Arc::new(AtomicU64::new(0)),
            committer: crate::commit::Committer::new(db.clone()),
            id_offset: Arc::new(AtomicU64::new(match meta.get(ID_OFFSET_KEY)? {
                Some(bytes) => decode::<u64>("id offset", &bytes)?,
                None => 0,
            })),
            meta,
            listener: Arc::new(RwLock::new(None)),
            path: path.to_owned(),
            db,
        };
        if found < SCHEMA_VERSION {
            store.migrate(found)?;
            tracing::info!(from = found, to = SCHEMA_VERSION, path = %path.display(), "store schema migrated");
        }
        Ok(store)
    }

    /// Brings a store of an older schema up to [`SCHEMA_VERSION`], one version at a time, and
    /// records each step so an interrupted migration resumes where it stopped.
    fn migrate(&self, mut version: u32) -> Result<(), StoreError> {
        while version < SCHEMA_VERSION {
            match version {
                // 0: a new store, nothing to convert.
                0 => {}
                // 1 -> 2: long-term memory. Messages stored before it become searchable: each
                // gets a locator entry and goes on the embedding queue.
                1 => {
                    for value in self.messages.iter().values() {
                        let message: StoredMessage = decode("message", &value?)?;
                        let key = message.seq.to_be_bytes();
                        self.locator.insert(
                            key,
                            &crate::memory::locator(MemoryKind::Message, Some(message.chat_id)),
                        )?;
                        self.embed_queue.insert(key, &[])?;
                        self.count_in_chat(&message)?;
                    }
                }
                // 2 -> 3: learnings get records (category, confidence, times seen, number).
                2 => self.record_plain_learnings()?,
                _ => {}
            }
            version += 1;
            self.meta.insert(SCHEMA_KEY, encode(&version))?;
            self.db.flush()?;
        }
        Ok(())
    }

    /// Calls `listener` with every searchable document written from now on (replacing the
    /// listener set before).
    pub fn set_listener(&self, listener: DocumentListener) {
        *self
            .listener
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }

    pub(crate) fn announce(&self, document: impl FnOnce() -> Document) {
        let listener = self
            .listener
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(listener) = listener {
            listener(&document());
        }
    }

    /// A new id for a document: above every id handed out or imported before.
    pub(crate) fn next_id(&self) -> Result<u64, StoreError> {
        self.db
            .generate_id()?
            .checked_add(self.id_offset.load(Ordering::SeqCst))
            .filter(|id| *id <= MAX_DOCUMENT_ID)
            .ok_or(StoreError::Invalid(
                crate::memory::InvalidMemory::IdTooLarge,
            ))
    }

    /// Makes sure later ids come after `id` (an imported document keeps its id).
    pub(crate) fn reserve_ids_through(&self, id: u64) -> Result<(), StoreError> {
        if id > MAX_DOCUMENT_ID {
            return Err(StoreError::Invalid(
                crate::memory::InvalidMemory::IdTooLarge,
            ));
        }
        let floor = id + 1;
        if self.id_offset.fetch_max(floor, Ordering::SeqCst) < floor {
            self.meta.insert(ID_OFFSET_KEY, encode(&floor))?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes everything to disk. Call before acknowledging what must not be lost. Blocking:
    /// async callers use [`Store::commit`].
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Waits until everything written so far is on disk, sharing one flush with every write
    /// that waits at the same time; never blocks an async thread.
    pub async fn commit(&self) -> Result<(), StoreError> {
        self.committer.commit().await
    }

    /// (flushes done, commits asked for) by [`Store::commit`] so far.
    pub fn commit_figures(&self) -> (u64, u64) {
        self.committer.figures()
    }

    /// Holds every commit's flush back by `delay`: a stalled disk, for tests and benches.
    pub fn stall_commits(&self, delay: std::time::Duration) {
        self.committer.slow_down(delay);
    }

    /// Runs `work` on the store on the blocking pool (sled may wait on the disk).
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| StoreError::Io(format!("a store task failed: {e}")))?
    }
}

mod dashboard;
mod inbox;
mod ledger;
mod messages;
mod transfer;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{InboxEntry, ProcessRecord, RunRecord, SessionRecord};
    use valor_protocol::Usage;

    fn run(chat_id: i64, started_at_ms: u64) -> RunRecord {
        RunRecord {
            chat_id,
            user_id: None,
            session_id: "s".to_owned(),
            model: "m".to_owned(),
            class: "short_chat".to_owned(),
            effort: String::new(),
            started_at_ms,
            duration_ms: 10,
            api_duration_ms: 5,
            cost_usd: 0.01,
            usage: Usage::default(),
            num_turns: 1,
            tool_calls: Vec::new(),
            warm: false,
            error: None,
        }
    }

    #[test]
    fn sessions_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let record = SessionRecord {
            session_id: "abc".to_owned(),
            updated_at_ms: 5,
            turns: 2,
        };
        {
            let store = Store::open(dir.path()).unwrap();
            store.set_session(-100123, &record).unwrap();
            store.set_session(7, &record).unwrap();
            store.clear_session(7).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.session(-100123).unwrap(), Some(record));
        assert_eq!(store.session(7).unwrap(), None);
    }

    #[test]
    fn runs_read_back_in_time_order_from_a_point() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for t in [300, 100, 200, 200] {
            store.record_run(&run(1, t)).unwrap();
        }
        let times: Vec<u64> = store
            .runs_since(150)
            .unwrap()
            .iter()
            .map(|r| r.started_at_ms)
            .collect();
        assert_eq!(times, [200, 200, 300]);
    }

    fn message(chat_id: i64, text: &str) -> StoredMessage {
        StoredMessage {
            source: None,
            chat_id,
            seq: 0,
            role: valor_protocol::Role::User,
            text: text.to_owned(),
            at_ms: 1,
            user_id: Some(7),
            username: Some("ann".to_owned()),
        }
    }

    #[test]
    fn messages_read_back_per_chat_newest_n_oldest_first_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for i in 0..5 {
                store
                    .append_message(message(-100, &format!("group {i}")), false)
                    .unwrap();
                store
                    .append_message(message(100, &format!("private {i}")), i == 4)
                    .unwrap();
            }
        }
        let store = Store::open(dir.path()).unwrap();
        let texts: Vec<String> = store
            .recent_messages(100, 3)
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(texts, ["private 2", "private 3", "private 4"]);
        assert_eq!(store.recent_messages(-100, 10).unwrap().len(), 5);
        assert!(store.recent_messages(5, 10).unwrap().is_empty());
        let seqs: Vec<u64> = store
            .recent_messages(-100, 10)
            .unwrap()
            .iter()
            .map(|m| m.seq)
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_source_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut m = message(1, "hello");
        m.source = Some("tg:5".to_owned());
        let first = store.append_message(m.clone(), true).unwrap();
        let again = store.append_message(m, true).unwrap();
        assert_eq!(first.seq, again.seq);
        assert_eq!(store.recent_messages(1, 10).unwrap().len(), 1);
    }

    #[test]
    fn the_inbox_keeps_accepted_updates_until_answered() {
        let dir = tempfile::tempdir().unwrap();
        let entry = |id| InboxEntry {
            chat_title: None,
            update_id: id,
            chat_id: 1,
            user_id: 1,
            username: None,
            text: format!("m{id}"),
            private: true,
            file: None,
        };
        {
            let store = Store::open(dir.path()).unwrap();
            store.accept_update(&entry(7)).unwrap();
            store.accept_update(&entry(8)).unwrap();
            store.finish_update(7).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.inbox().unwrap(), vec![entry(8)]);
        assert_eq!(store.telegram_last_update().unwrap(), 8);
    }

    #[test]
    fn telegram_state_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.telegram_last_update().unwrap(), 0);
            store.set_telegram_last_update(41).unwrap();
            store.add_paired_user(-5).unwrap();
            store.add_paired_user(99).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.telegram_last_update().unwrap(), 41);
        let mut users = store.paired_users().unwrap();
        users.sort();
        assert_eq!(users, [-5, 99]);
    }

    #[test]
    fn process_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let record = ProcessRecord {
            pgid: 4242,
            start_ticks: 99,
            boot_id: "b".to_owned(),
            owner_pid: 1,
            label: "claude".to_owned(),
            chat_id: Some(3),
            started_at_ms: 1,
        };
        store.put_process(&record).unwrap();
        assert_eq!(store.processes().unwrap(), vec![record]);
        store.remove_process(4242).unwrap();
        assert!(store.processes().unwrap().is_empty());
    }

    #[test]
    fn a_newer_schema_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree(META)
                .unwrap()
                .insert(SCHEMA_KEY, b"99".to_vec())
                .unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("has schema version 99, newer than this Valor understands (3)"),
            "{err}"
        );
    }

    #[test]
    fn a_second_open_of_the_same_path_is_reported_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        // sled locks per process: a second process is refused. Within one process sled
        // refuses too (the lock file is held), which is what this checks.
        match Store::open(dir.path()) {
            Err(StoreError::Locked { .. }) => {}
            other => panic!("expected Locked, got {other:?}"),
        }
    }
}
