//! The session ledger the Claude driver keeps: each chat's Claude session, every run (for
//! analytics), and the process groups started (so a later Valor can end what outlived a crash).

use super::{Store, decode, encode, id_key};
use crate::StoreError;
use crate::records::{ProcessRecord, RunRecord, SessionRecord, TurnText};

/// The turns whose text (prompt, answer, tool inputs) is kept: the latest this many.
pub const KEPT_TURN_TEXTS: u64 = 2_000;

/// Where the number of kept turn texts is kept (in `meta`), so opening the store does not
/// walk the texts to count them.
const TURN_TEXTS_COUNT_KEY: &[u8] = b"turn_texts_count";

/// The number of kept turn texts: as kept, or counted once (a store from before the count).
pub(super) fn turn_text_count(meta: &sled::Tree, texts: &sled::Tree) -> Result<u64, StoreError> {
    if let Some(bytes) = meta.get(TURN_TEXTS_COUNT_KEY)?
        && let Ok(count) = <[u8; 8]>::try_from(bytes.as_ref())
    {
        return Ok(u64::from_be_bytes(count));
    }
    let count = texts.len() as u64;
    meta.insert(TURN_TEXTS_COUNT_KEY, &count.to_be_bytes())?;
    Ok(count)
}

/// A turn's key: its start, then its chat (two chats' turns may start in the same
/// millisecond; one chat's cannot, its turns run one at a time).
fn turn_key(started_at_ms: u64, chat_id: i64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&started_at_ms.to_be_bytes());
    key[8..].copy_from_slice(&id_key(chat_id));
    key
}

impl Store {
    pub fn session(&self, chat_id: i64) -> Result<Option<SessionRecord>, StoreError> {
        self.sessions
            .get(id_key(chat_id))?
            .map(|bytes| decode("session", &bytes))
            .transpose()
    }

    /// Saves a chat's session (the caller commits: a lost session id loses the conversation).
    pub fn set_session(&self, chat_id: i64, record: &SessionRecord) -> Result<(), StoreError> {
        self.sessions.insert(id_key(chat_id), encode(record))?;
        Ok(())
    }

    pub fn clear_session(&self, chat_id: i64) -> Result<(), StoreError> {
        self.sessions.remove(id_key(chat_id))?;
        Ok(())
    }

    // -- Runs (analytics) ------------------------------------------------------------------

    /// Appends a run. Keys are (start time, sequence) so runs read back in time order.
    pub fn record_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let seq = self.db.generate_id()?;
        let mut key = Vec::with_capacity(16);
        key.extend_from_slice(&run.started_at_ms.to_be_bytes());
        key.extend_from_slice(&seq.to_be_bytes());
        self.runs.insert(key, encode(run))?;
        Ok(())
    }

    /// Keeps a turn's text; past [`KEPT_TURN_TEXTS`] the oldest goes.
    pub fn keep_turn_text(&self, text: &TurnText) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let key = turn_key(text.started_at_ms, text.chat_id);
        if self.turn_texts.insert(key, encode(text))?.is_none() {
            self.turn_text_count.fetch_add(1, Ordering::Relaxed);
        }
        while self.turn_text_count.load(Ordering::Relaxed) > KEPT_TURN_TEXTS {
            if self.turn_texts.pop_min()?.is_none() {
                break;
            }
            self.turn_text_count.fetch_sub(1, Ordering::Relaxed);
        }
        // Written with the texts (a crash between the two leaves the bound off by a turn).
        let count = self.turn_text_count.load(Ordering::Relaxed);
        self.meta
            .insert(TURN_TEXTS_COUNT_KEY, &count.to_be_bytes())?;
        Ok(())
    }

    /// A turn's text, while it is kept.
    pub fn turn_text(
        &self,
        started_at_ms: u64,
        chat_id: i64,
    ) -> Result<Option<TurnText>, StoreError> {
        (self.turn_texts.get(turn_key(started_at_ms, chat_id))?)
            .map(|bytes| decode("turn text", &bytes))
            .transpose()
    }

    /// The run of a chat that started at `started_at_ms`.
    pub fn run_at(
        &self,
        started_at_ms: u64,
        chat_id: i64,
    ) -> Result<Option<RunRecord>, StoreError> {
        let next = started_at_ms.saturating_add(1).to_be_bytes();
        for entry in self.runs.range(started_at_ms.to_be_bytes()..next) {
            let (_, bytes) = entry?;
            let run: RunRecord = decode("run", &bytes)?;
            if run.chat_id == chat_id {
                return Ok(Some(run));
            }
        }
        Ok(None)
    }

    /// The latest `limit` runs that `keep` keeps, newest first.
    pub fn latest_runs(
        &self,
        limit: usize,
        keep: impl Fn(&RunRecord) -> bool,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let mut runs = Vec::new();
        for entry in self.runs.iter().rev() {
            let (_, bytes) = entry?;
            let run: RunRecord = decode("run", &bytes)?;
            if keep(&run) {
                runs.push(run);
                if runs.len() >= limit {
                    break;
                }
            }
        }
        Ok(runs)
    }

    /// Runs that started at or after `since_ms`, oldest first.
    pub fn runs_since(&self, since_ms: u64) -> Result<Vec<RunRecord>, StoreError> {
        self.runs
            .range(since_ms.to_be_bytes()..)
            .map(|entry| {
                let (_, bytes) = entry?;
                decode("run", &bytes)
            })
            .collect()
    }

    // -- Process groups --------------------------------------------------------------------

    /// Records a started process group (the caller commits, so a crash right after cannot
    /// lose it).
    pub fn put_process(&self, record: &ProcessRecord) -> Result<(), StoreError> {
        self.processes
            .insert(u64::from(record.pgid).to_be_bytes(), encode(record))?;
        Ok(())
    }

    pub fn remove_process(&self, pgid: u32) -> Result<(), StoreError> {
        self.processes.remove(u64::from(pgid).to_be_bytes())?;
        Ok(())
    }

    pub fn processes(&self) -> Result<Vec<ProcessRecord>, StoreError> {
        self.processes
            .iter()
            .map(|entry| {
                let (_, bytes) = entry?;
                decode("process", &bytes)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Document, MemoryKind, StoredMessage};
    use valor_protocol::message::Role;

    fn run(chat_id: i64, started_at_ms: u64) -> RunRecord {
        RunRecord {
            chat_id,
            user_id: None,
            session_id: "s".to_owned(),
            model: "m".to_owned(),
            class: String::new(),
            effort: String::new(),
            started_at_ms,
            duration_ms: 10,
            api_duration_ms: 5,
            cost_usd: 0.01,
            usage: valor_protocol::Usage::default(),
            num_turns: 1,
            tool_calls: Vec::new(),
            warm: false,
            error: None,
        }
    }

    fn text(chat_id: i64, started_at_ms: u64) -> TurnText {
        TurnText {
            chat_id,
            started_at_ms,
            prompt: format!("prompt {started_at_ms}"),
            ..TurnText::default()
        }
    }

    #[test]
    fn only_the_latest_turn_texts_are_kept_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for at in 1..=KEPT_TURN_TEXTS + 5 {
                store.keep_turn_text(&text(-100, at)).unwrap();
            }
            assert_eq!(store.turn_texts.len() as u64, KEPT_TURN_TEXTS);
            assert_eq!(store.turn_text(5, -100).unwrap(), None, "the oldest went");
            assert_eq!(store.turn_text(6, -100).unwrap(), Some(text(-100, 6)));
            // Written again (a retry's record) is not counted twice.
            store.keep_turn_text(&text(-100, 6)).unwrap();
            assert_eq!(store.turn_text(6, -100).unwrap(), Some(text(-100, 6)));
            // The count is kept, so opening the store reads it instead of walking the texts.
            let kept = store.meta.get(TURN_TEXTS_COUNT_KEY).unwrap().unwrap();
            assert_eq!(kept.as_ref(), KEPT_TURN_TEXTS.to_be_bytes());
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        store.keep_turn_text(&text(7, u64::MAX)).unwrap();
        assert_eq!(
            store.turn_texts.len() as u64,
            KEPT_TURN_TEXTS,
            "counted at open"
        );
        assert_eq!(store.turn_text(6, -100).unwrap(), None);
        assert_eq!(
            store.turn_text(u64::MAX, 7).unwrap(),
            Some(text(7, u64::MAX))
        );
    }

    #[test]
    fn a_store_from_before_the_kept_count_is_counted_once_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for at in 1..=3 {
                store.keep_turn_text(&text(1, at)).unwrap();
            }
            store.meta.remove(TURN_TEXTS_COUNT_KEY).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store
                .turn_text_count
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        assert!(
            store.meta.get(TURN_TEXTS_COUNT_KEY).unwrap().is_some(),
            "kept from now on"
        );
    }

    #[test]
    fn a_turn_is_found_by_its_start_and_chat_and_the_latest_read_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (chat, at) in [(1, 100), (2, 100), (-5, 100), (1, 200), (2, 300)] {
            store.record_run(&run(chat, at)).unwrap();
        }
        assert_eq!(store.run_at(100, -5).unwrap(), Some(run(-5, 100)));
        assert_eq!(store.run_at(100, 2).unwrap(), Some(run(2, 100)));
        assert_eq!(store.run_at(101, 2).unwrap(), None);
        assert_eq!(store.run_at(200, 2).unwrap(), None);
        let latest = store.latest_runs(2, |r| r.chat_id == 1).unwrap();
        assert_eq!(latest, [run(1, 200), run(1, 100)]);
        let all: Vec<u64> = (store.latest_runs(10, |_| true).unwrap().iter())
            .map(|r| r.started_at_ms)
            .collect();
        assert_eq!(all, [300, 200, 100, 100, 100]);
    }

    #[test]
    fn a_chat_is_named_once_it_has_a_message_and_its_memories_read_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.name_chat(9, "before any message").unwrap();
        assert_eq!(store.chat(9).unwrap(), None, "no record is made by a name");
        let message = StoredMessage {
            chat_id: 9,
            seq: 0,
            role: Role::User,
            text: "hi".to_owned(),
            at_ms: 1,
            user_id: None,
            username: None,
            source: None,
        };
        store.append_message(message, false).unwrap();
        store.name_chat(9, "Ops").unwrap();
        assert_eq!(
            store.chat(9).unwrap().unwrap().title.as_deref(),
            Some("Ops")
        );
        store.name_chat(9, "Ops (renamed)").unwrap();
        assert_eq!(
            store.chats().unwrap()[0].title.as_deref(),
            Some("Ops (renamed)")
        );

        let memory = |chat_id, at_ms, kind| Document {
            id: 0,
            kind,
            chat_id,
            at_ms,
            title: format!("{kind:?} {at_ms}"),
            text: "some text".to_owned(),
            url: None,
        };
        for (chat, at, kind) in [
            (Some(9), 10, MemoryKind::Link),
            (Some(8), 20, MemoryKind::Link),
            (Some(9), 30, MemoryKind::Summary),
            (None, 40, MemoryKind::Insight),
            (Some(9), 50, MemoryKind::Observation),
        ] {
            store.save_memory(memory(chat, at, kind)).unwrap();
        }
        let mine: Vec<u64> = (store.chat_memories(9, 2).unwrap().iter())
            .map(|m| m.at_ms)
            .collect();
        assert_eq!(mine, [50, 30]);
    }
}
