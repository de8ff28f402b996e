//! Approvals of effects: the conversation service asks the person reading the chat (through the
//! running turn's events, so whichever channel shows the turn shows the question), waits for a
//! decision or the timeout, and keeps every decision in the audit log.
//!
//! A decision may come from another machine (the button pressed on the node that takes
//! Telegram's updates): then the log is where it is written, and the node that asked reads it
//! there (first decision wins, in the store).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::oneshot;
use valor_protocol::StoreFailure;
use valor_protocol::approval::{ApprovalAsk, ApprovalRecord, Decision};

/// What the audit log keeps: every approval asked and how it was decided (the store implements
/// it; both stores keep it).
#[async_trait]
pub trait ApprovalLog: Send + Sync {
    /// Keeps a new record (decided already, or waiting).
    async fn record(&self, record: &ApprovalRecord) -> Result<(), StoreFailure>;
    /// Decides `id` unless it is decided already; the record as it stands after (`None`: no
    /// such approval).
    async fn settle(
        &self,
        id: u64,
        decision: Decision,
        by: Option<i64>,
        at_ms: u64,
    ) -> Result<Option<ApprovalRecord>, StoreFailure>;
    async fn get(&self, id: u64) -> Result<Option<ApprovalRecord>, StoreFailure>;
    /// The newest first, of one chat or all.
    async fn latest(
        &self,
        chat_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, StoreFailure>;
}

/// How approvals behave.
#[derive(Debug, Clone)]
pub struct ApprovalSettings {
    /// No answer in this long denies.
    pub timeout: Duration,
    /// An "allow for the session" lapses when unused this long (or at `/new`).
    pub grant_idle: Duration,
    /// Decisions may be written by another node: the log is read while waiting.
    pub shared: bool,
    /// This node's name, kept with what it asks.
    pub node: Option<String>,
    /// A reminder follows an open question after this long.
    pub remind_after: Option<Duration>,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings {
            timeout: Duration::from_secs(300),
            grant_idle: Duration::from_secs(3600),
            shared: false,
            node: None,
            remind_after: Some(Duration::from_secs(120)),
        }
    }
}

/// How often a node that asked reads the shared log for a decision made elsewhere.
const SHARED_POLL: Duration = Duration::from_millis(300);
/// Exact grants one chat keeps at most (the oldest go).
const MAX_GRANTS_PER_CHAT: usize = 256;
/// Chats with grants kept at most.
const MAX_GRANT_CHATS: usize = 4096;
/// What of an effect the audit log keeps.
const KEPT_WHAT: usize = 4000;

type Answer = (Decision, Option<i64>);

struct Waiting {
    chat_id: i64,
    answer: oneshot::Sender<Answer>,
}

/// The approvals of one service.
pub(crate) struct Approvals {
    pub(crate) settings: ApprovalSettings,
    log: OnceLock<Arc<dyn ApprovalLog>>,
    waiting: Mutex<HashMap<u64, Waiting>>,
    grants: Mutex<HashMap<i64, HashMap<String, Instant>>>,
}

/// How a wait for a decision ended.
pub(crate) enum Waited {
    Answered(Answer),
    TimedOut,
    Stopped,
}

impl Approvals {
    pub(crate) fn new(settings: ApprovalSettings) -> Approvals {
        Approvals {
            settings,
            log: OnceLock::new(),
            waiting: Mutex::new(HashMap::new()),
            grants: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn set_log(&self, log: Arc<dyn ApprovalLog>) {
        let _ = self.log.set(log);
    }

    pub(crate) fn log(&self) -> Option<&Arc<dyn ApprovalLog>> {
        self.log.get()
    }

    /// An id unique across nodes and ordered by time (milliseconds, then 12 random bits).
    pub(crate) fn new_id() -> u64 {
        let random = u64::from(random_bits()) & 0xfff;
        valor_protocol::time::now_ms() * 4096 + random
    }

    /// Whether an earlier "allow for the session" covers `ask` (and it is used now).
    pub(crate) fn granted(&self, ask: &ApprovalAsk) -> bool {
        let mut grants = self.grants();
        let Some(chat) = grants.get_mut(&ask.chat_id) else {
            return false;
        };
        let idle = self.settings.grant_idle;
        chat.retain(|_, used| used.elapsed() < idle);
        match chat.get_mut(&grant_key(ask)) {
            Some(used) => {
                *used = Instant::now();
                true
            }
            None => false,
        }
    }

    pub(crate) fn grant(&self, ask: &ApprovalAsk) {
        let mut grants = self.grants();
        if grants.len() >= MAX_GRANT_CHATS && !grants.contains_key(&ask.chat_id) {
            let stalest = grants
                .iter()
                .map(|(chat, g)| (*chat, g.values().max().copied()))
                .min_by_key(|(_, used)| *used)
                .map(|(chat, _)| chat);
            if let Some(chat) = stalest {
                grants.remove(&chat);
            }
        }
        let chat = grants.entry(ask.chat_id).or_default();
        if chat.len() >= MAX_GRANTS_PER_CHAT
            && let Some(oldest) = chat.iter().min_by_key(|(_, u)| **u).map(|(k, _)| k.clone())
        {
            chat.remove(&oldest);
        }
        chat.insert(grant_key(ask), Instant::now());
    }

    /// `/new`: the chat's session grants end.
    pub(crate) fn end_grants(&self, chat_id: i64) {
        self.grants().remove(&chat_id);
    }

    pub(crate) fn open(&self, id: u64, chat_id: i64) -> oneshot::Receiver<Answer> {
        let (answer, rx) = oneshot::channel();
        self.waiting_map().insert(id, Waiting { chat_id, answer });
        rx
    }

    /// Whether an approval of the chat waits for its answer here.
    pub(crate) fn waiting_in(&self, chat_id: i64) -> bool {
        self.waiting_map().values().any(|w| w.chat_id == chat_id)
    }

    pub(crate) fn close(&self, id: u64) {
        self.waiting_map().remove(&id);
    }

    /// Hands a person's decision to the wait on this node: `None` when no wait here has that
    /// id, `Some(false)` when it is another chat's.
    pub(crate) fn answer_here(
        &self,
        id: u64,
        chat_id: i64,
        decision: Decision,
        by: Option<i64>,
    ) -> Option<bool> {
        let mut waiting = self.waiting_map();
        let open = waiting.get(&id)?;
        if open.chat_id != chat_id {
            return Some(false);
        }
        let open = waiting.remove(&id)?;
        let _ = open.answer.send((decision, by));
        Some(true)
    }

    /// Waits for the answer: from this node, from the shared log, or none in time.
    pub(crate) async fn wait(
        &self,
        id: u64,
        mut here: oneshot::Receiver<Answer>,
        deadline: tokio::time::Instant,
        stopped: tokio_util::sync::CancellationToken,
    ) -> Waited {
        let shared = self.log().filter(|_| self.settings.shared).cloned();
        loop {
            let poll = tokio::time::sleep(if shared.is_some() {
                SHARED_POLL
            } else {
                Duration::from_secs(3600)
            });
            tokio::select! {
                answer = &mut here => return match answer {
                    Ok(answer) => Waited::Answered(answer),
                    Err(_) => Waited::Stopped,
                },
                () = tokio::time::sleep_until(deadline) => return Waited::TimedOut,
                () = stopped.cancelled() => return Waited::Stopped,
                () = poll => {
                    if let Some(log) = &shared
                        && let Ok(Some(record)) = log.get(id).await
                        && let Some(decision) = record.decision
                    {
                        return Waited::Answered((decision, record.by));
                    }
                }
            }
        }
    }

    fn waiting_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiting>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn grants(&self) -> std::sync::MutexGuard<'_, HashMap<i64, HashMap<String, Instant>>> {
        self.grants.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A grant is for exactly this tool and these bytes.
fn grant_key(ask: &ApprovalAsk) -> String {
    format!("{}\u{0}{}", ask.tool, ask.exact)
}

/// 16 random bits from the OS's hasher seed (no extra dependency for a tie-breaker).
fn random_bits() -> u16 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(valor_protocol::time::now_ms());
    (hasher.finish() & 0xffff) as u16
}

/// The record the audit log keeps of `ask` (its effect redacted and cut).
pub(crate) fn record_of(
    id: u64,
    ask: &ApprovalAsk,
    node: Option<&str>,
    decided: Option<Decision>,
) -> ApprovalRecord {
    let now = valor_protocol::time::now_ms();
    let what = valor_redact::redact(&ask.what)
        .chars()
        .take(KEPT_WHAT)
        .collect::<String>();
    ApprovalRecord {
        id,
        chat_id: ask.chat_id,
        kind: ask.kind,
        tool: ask.tool.clone(),
        what,
        sentence: ask.sentence.clone(),
        asked_ms: now,
        decision: decided,
        by: None,
        decided_ms: decided.map(|_| now),
        node: node.map(str::to_owned),
    }
}

/// The line that replaces an approval's question once decided.
pub(crate) fn settled_line(decision: Decision, by: Option<i64>, ask: &ApprovalAsk) -> String {
    let mark = if decision.allows() { "✅" } else { "⛔" };
    let who = by.map(|id| format!(" by {id}")).unwrap_or_default();
    format!(
        "{mark} {} {}{who}: {}",
        capitalised(ask.kind.as_str()),
        decision.words(),
        first_line(&ask.what)
    )
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().chain(chars).collect::<String>()
    })
}

/// The first line, at most 80 characters (the question above showed it whole).
fn first_line(text: &str) -> String {
    let mut lines = text.lines();
    let first = crate::observe::cut(lines.next().unwrap_or_default(), 80);
    match lines.next() {
        Some(_) if !first.ends_with('…') => format!("{first}…"),
        _ => first,
    }
}

/// A decision made by people only (the buttons).
pub(crate) fn is_personal(decision: Decision) -> bool {
    matches!(
        decision,
        Decision::AllowOnce | Decision::AllowSession | Decision::Deny
    )
}

/// What to tell the presser.
pub(crate) fn decided_word(decision: Decision) -> String {
    match decision {
        Decision::AllowOnce => "Allowed once.".to_owned(),
        Decision::AllowSession => "Allowed for this session.".to_owned(),
        _ => "Denied.".to_owned(),
    }
}

/// The audit log in memory (tests, `valor chat` without a store of its own).
#[derive(Default)]
pub struct InMemoryApprovalLog {
    records: Mutex<std::collections::BTreeMap<u64, ApprovalRecord>>,
}

impl InMemoryApprovalLog {
    fn records(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, ApprovalRecord>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl ApprovalLog for InMemoryApprovalLog {
    async fn record(&self, record: &ApprovalRecord) -> Result<(), StoreFailure> {
        self.records().insert(record.id, record.clone());
        Ok(())
    }

    async fn settle(
        &self,
        id: u64,
        decision: Decision,
        by: Option<i64>,
        at_ms: u64,
    ) -> Result<Option<ApprovalRecord>, StoreFailure> {
        let mut records = self.records();
        let Some(record) = records.get_mut(&id) else {
            return Ok(None);
        };
        if record.decision.is_none() {
            record.decision = Some(decision);
            record.by = by;
            record.decided_ms = Some(at_ms);
        }
        Ok(Some(record.clone()))
    }

    async fn get(&self, id: u64) -> Result<Option<ApprovalRecord>, StoreFailure> {
        Ok(self.records().get(&id).cloned())
    }

    async fn latest(
        &self,
        chat_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, StoreFailure> {
        Ok(self
            .records()
            .values()
            .rev()
            .filter(|r| chat_id.is_none_or(|chat| chat == r.chat_id))
            .take(limit)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
#[path = "approvals_tests.rs"]
mod tests;
