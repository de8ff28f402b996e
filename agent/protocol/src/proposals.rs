//! Memories proposed to a user ("Remember this?") and waiting for an answer.

use serde::{Deserialize, Serialize};

use crate::learnings::Category;
use crate::records::MemoryKind;

/// How long a question waits for its answer.
pub const PROPOSAL_TTL_MS: u64 = 10 * 60 * 1000;
/// How long settled questions are kept (for the learning figures) before they are purged.
pub const PROPOSALS_KEPT_MS: u64 = 30 * 24 * 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalState {
    Pending,
    Accepted,
    Declined,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: u64,
    pub chat_id: i64,
    /// What would be remembered.
    pub text: String,
    /// The kind of memory it becomes.
    pub kind: MemoryKind,
    /// Where it came from ("daydream dd-...", a message).
    pub source: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// The question's message in the chat, once sent.
    pub message_id: Option<i64>,
    pub state: ProposalState,
    /// The user whose message it came from: in a group only they (or an admin) settle it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_of: Option<i64>,
    /// For a learning: how it was found and what it would replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning: Option<LearningDraft>,
}

/// What a proposed learning carries besides its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearningDraft {
    pub category: Category,
    /// The watcher's trigger (`switching`, `bug_fixed`, ...).
    pub trigger: Option<String>,
    /// The watcher's confidence, in percent.
    pub detected_pct: u8,
    /// The user's message it was found in.
    pub source_message: Option<String>,
    /// What it would replace: "Bootstrap" in "we're switching from Bootstrap to Tailwind".
    pub replaces: Option<String>,
}

impl ProposalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalState::Pending => "pending",
            ProposalState::Accepted => "accepted",
            ProposalState::Declined => "declined",
            ProposalState::Expired => "expired",
        }
    }
}

/// The questions' figures in a line: "asked 5: 2 accepted, 1 declined, 1 expired, 1 open;
/// switching 3, bug_fixed 2".
pub fn describe_counts(
    counts: &std::collections::BTreeMap<(String, ProposalState), u64>,
) -> String {
    let mut by_state = std::collections::BTreeMap::<ProposalState, u64>::new();
    let mut by_trigger = std::collections::BTreeMap::<&str, u64>::new();
    for ((trigger, state), n) in counts {
        *by_state.entry(*state).or_default() += n;
        *by_trigger.entry(trigger.as_str()).or_default() += n;
    }
    let asked: u64 = by_state.values().sum();
    let state = |s: ProposalState| by_state.get(&s).copied().unwrap_or(0);
    let mut line = format!(
        "asked {asked}: {} accepted, {} declined, {} expired, {} open",
        state(ProposalState::Accepted),
        state(ProposalState::Declined),
        state(ProposalState::Expired),
        state(ProposalState::Pending)
    );
    if !by_trigger.is_empty() {
        let types: Vec<String> = by_trigger.iter().map(|(t, n)| format!("{t} {n}")).collect();
        line.push_str(&format!("; {}", types.join(", ")));
    }
    line
}

impl Proposal {
    /// Settles it at `now_ms` if it is pending: accepted or declined, or expired when it is
    /// past its time whatever the answer. Returns the state it had (so a second tap sees
    /// `Accepted`). Every store settles through this.
    pub fn settle(&mut self, accept: bool, now_ms: u64) -> ProposalState {
        let before = self.state;
        if before == ProposalState::Pending {
            self.state = if now_ms > self.expires_ms {
                ProposalState::Expired
            } else if accept {
                ProposalState::Accepted
            } else {
                ProposalState::Declined
            };
        }
        before
    }

    /// Opens a declined or expired question again (the operator changes its answer), with a
    /// fresh time to answer; whether it was reopened.
    pub fn reopen(&mut self, now_ms: u64) -> bool {
        if matches!(self.state, ProposalState::Declined | ProposalState::Expired) {
            self.state = ProposalState::Pending;
            self.expires_ms = now_ms + PROPOSAL_TTL_MS;
            return true;
        }
        false
    }

    /// The line that takes its question's place once it expired unanswered.
    pub fn expired_line(&self) -> String {
        format!("Not stored (the question expired): {}", self.text)
    }

    /// The question a channel asks about it.
    pub fn question(&self) -> crate::Question {
        crate::Question {
            id: self.id,
            chat_id: self.chat_id,
            text: self.text.clone(),
            asked_of: self.asked_of,
        }
    }
}
