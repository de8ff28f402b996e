//! Memories proposed to a user ("Remember this?") and waiting for an answer. Nothing proposed is
//! stored as a memory until the user says yes; a question expires after its time, and each is
//! settled once (a second tap finds it settled).

use serde::{Deserialize, Serialize};

use crate::store::{Store, decode, encode};
use crate::{Category, MemoryKind, StoreError};

/// How long a question waits for its answer.
pub const PROPOSAL_TTL_MS: u64 = 10 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

impl Proposal {
    /// The question a channel asks about it.
    pub fn question(&self) -> valor_core::learning::Question {
        valor_core::learning::Question {
            id: self.id,
            chat_id: self.chat_id,
            text: self.text.clone(),
        }
    }
}

impl Store {
    /// Records a new pending proposal and returns it with its id.
    pub fn add_proposal(&self, mut proposal: Proposal) -> Result<Proposal, StoreError> {
        proposal.id = self.db.generate_id()? + 1;
        proposal.state = ProposalState::Pending;
        self.proposals
            .insert(proposal.id.to_be_bytes(), encode(&proposal))?;
        self.flush()?;
        Ok(proposal)
    }

    pub fn proposal(&self, id: u64) -> Result<Option<Proposal>, StoreError> {
        self.proposals
            .get(id.to_be_bytes())?
            .map(|bytes| decode("proposal", &bytes))
            .transpose()
    }

    /// Notes the question's message.
    pub fn set_proposal_message(&self, id: u64, message_id: i64) -> Result<(), StoreError> {
        if let Some(mut proposal) = self.proposal(id)? {
            proposal.message_id = Some(message_id);
            self.proposals.insert(id.to_be_bytes(), encode(&proposal))?;
        }
        Ok(())
    }

    /// Settles a pending proposal at `now_ms`: `accept` true stores nothing here (the caller
    /// saves the memory), it only moves the state, once. Returns the proposal as it was before
    /// (so a caller sees `Accepted` on a double tap) with the state it has now.
    pub fn settle_proposal(
        &self,
        id: u64,
        chat_id: i64,
        accept: bool,
        now_ms: u64,
    ) -> Result<Option<(ProposalState, Proposal)>, StoreError> {
        let key = id.to_be_bytes();
        let Some(bytes) = self.proposals.get(key)? else {
            return Ok(None);
        };
        let mut proposal: Proposal = decode("proposal", &bytes)?;
        // Only the chat it was asked in settles it: another chat sees no such question.
        if proposal.chat_id != chat_id {
            return Ok(None);
        }
        let before = proposal.state;
        if before == ProposalState::Pending {
            proposal.state = if now_ms > proposal.expires_ms {
                ProposalState::Expired
            } else if accept {
                ProposalState::Accepted
            } else {
                ProposalState::Declined
            };
            // Compare-and-swap: two taps at once settle it once.
            if self
                .proposals
                .compare_and_swap(key, Some(bytes), Some(encode(&proposal)))?
                .is_err()
            {
                return self.settle_proposal(id, chat_id, accept, now_ms);
            }
            self.flush()?;
        }
        Ok(Some((before, proposal)))
    }
}
