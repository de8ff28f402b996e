//! Memories proposed to a user ("Remember this?") and waiting for an answer. Nothing proposed is
//! stored as a memory until the user says yes; a question expires after its time, and each is
//! settled once (a second tap finds it settled).

use crate::StoreError;
use crate::store::{Store, decode, encode};
pub use valor_protocol::proposals::{
    LearningDraft, PROPOSAL_TTL_MS, PROPOSALS_KEPT_MS, Proposal, ProposalState, describe_counts,
};

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
        let before = proposal.settle(accept, now_ms);
        if before == ProposalState::Pending {
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

    /// Opens a declined or expired proposal of `chat_id` again (the operator changes its
    /// answer); whether it was.
    pub fn reopen_proposal(&self, id: u64, chat_id: i64, now_ms: u64) -> Result<bool, StoreError> {
        let key = id.to_be_bytes();
        let Some(bytes) = self.proposals.get(key)? else {
            return Ok(false);
        };
        let mut proposal: Proposal = decode("proposal", &bytes)?;
        if proposal.chat_id != chat_id || !proposal.reopen(now_ms) {
            return Ok(false);
        }
        if (self.proposals)
            .compare_and_swap(key, Some(bytes), Some(encode(&proposal)))?
            .is_err()
        {
            return self.reopen_proposal(id, chat_id, now_ms);
        }
        self.flush()?;
        Ok(true)
    }

    /// The latest questions, newest first, at most `limit` (every state).
    pub fn latest_proposals(&self, limit: usize) -> Result<Vec<Proposal>, StoreError> {
        (self.proposals.iter().rev().take(limit))
            .map(|entry| decode("proposal", &entry?.1))
            .collect()
    }

    /// Marks pending proposals past their time expired and returns them (a channel takes the
    /// buttons off their questions).
    pub fn expire_proposals(&self, now_ms: u64) -> Result<Vec<Proposal>, StoreError> {
        let mut expired = Vec::new();
        for entry in self.proposals.iter() {
            let (key, bytes) = entry?;
            let mut proposal: Proposal = decode("proposal", &bytes)?;
            if proposal.state != ProposalState::Pending || now_ms <= proposal.expires_ms {
                continue;
            }
            proposal.state = ProposalState::Expired;
            // Settled meanwhile by a press: that press wins.
            if self
                .proposals
                .compare_and_swap(key, Some(bytes), Some(encode(&proposal)))?
                .is_ok()
            {
                expired.push(proposal);
            }
        }
        if !expired.is_empty() {
            self.flush()?;
        }
        Ok(expired)
    }

    /// Removes settled and expired proposals created before `before_ms`; returns how many.
    pub fn purge_proposals(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut old = Vec::new();
        for entry in self.proposals.iter() {
            let (key, bytes) = entry?;
            let proposal: Proposal = decode("proposal", &bytes)?;
            if proposal.state != ProposalState::Pending && proposal.created_ms < before_ms {
                old.push(key);
            }
        }
        for key in &old {
            self.proposals.remove(key)?;
        }
        Ok(old.len())
    }

    /// Questions kept (those of the last [`PROPOSALS_KEPT_MS`]) in each state, by trigger (the
    /// memory kind for those no trigger asked), of one chat or all: the learning figures.
    pub fn proposal_counts(
        &self,
        chat_id: Option<i64>,
    ) -> Result<std::collections::BTreeMap<(String, ProposalState), u64>, StoreError> {
        let mut counts = std::collections::BTreeMap::new();
        for entry in self.proposals.iter() {
            let (_, bytes) = entry?;
            let proposal: Proposal = decode("proposal", &bytes)?;
            if chat_id.is_some_and(|c| c != proposal.chat_id) {
                continue;
            }
            let trigger = (proposal.learning.as_ref())
                .and_then(|l| l.trigger.clone())
                .unwrap_or_else(|| proposal.kind.as_str().to_owned());
            *counts.entry((trigger, proposal.state)).or_default() += 1;
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Category, MemoryKind};

    fn asked(store: &Store, chat_id: i64, created_ms: u64) -> Proposal {
        store
            .add_proposal(Proposal {
                id: 0,
                chat_id,
                text: "We use sled.".into(),
                kind: MemoryKind::Learning,
                source: "tg:1".into(),
                created_ms,
                expires_ms: created_ms + PROPOSAL_TTL_MS,
                message_id: Some(5),
                state: ProposalState::Pending,
                asked_of: None,
                learning: Some(LearningDraft {
                    category: Category::Decision,
                    trigger: Some("decided_to_use".into()),
                    detected_pct: 90,
                    source_message: None,
                    replaces: None,
                }),
            })
            .unwrap()
    }

    #[test]
    fn a_declined_question_reopens_for_its_chat_only_and_the_latest_list_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let declined = asked(&store, 1, 0);
        let open = asked(&store, 1, 10);
        store.settle_proposal(declined.id, 1, false, 1).unwrap();
        assert!(
            !store.reopen_proposal(declined.id, 2, 5).unwrap(),
            "another chat's"
        );
        assert!(!store.reopen_proposal(open.id, 1, 5).unwrap(), "still open");
        assert!(store.reopen_proposal(declined.id, 1, 5).unwrap());
        let reopened = store.proposal(declined.id).unwrap().unwrap();
        assert_eq!(
            (reopened.state, reopened.expires_ms),
            (ProposalState::Pending, 5 + PROPOSAL_TTL_MS)
        );
        let ids: Vec<u64> = store
            .latest_proposals(10)
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ids, [open.id, declined.id]);
        assert_eq!(store.latest_proposals(1).unwrap().len(), 1);
    }

    #[test]
    fn questions_past_their_time_expire_once_and_old_settled_ones_are_purged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let old = asked(&store, 1, 0);
        let answered = asked(&store, 1, 0);
        let fresh = asked(&store, 2, 1_000_000);
        store.settle_proposal(answered.id, 1, true, 1).unwrap();
        let expired = store.expire_proposals(PROPOSAL_TTL_MS + 1).unwrap();
        assert_eq!(expired.iter().map(|p| p.id).collect::<Vec<_>>(), [old.id]);
        assert!(
            store
                .expire_proposals(PROPOSAL_TTL_MS + 2)
                .unwrap()
                .is_empty(),
            "once"
        );
        let counts = store.proposal_counts(Some(1)).unwrap();
        assert_eq!(
            counts[&("decided_to_use".to_owned(), ProposalState::Expired)],
            1
        );
        assert_eq!(
            counts[&("decided_to_use".to_owned(), ProposalState::Accepted)],
            1
        );
        assert_eq!(
            store.proposal_counts(None).unwrap().values().sum::<u64>(),
            3
        );
        assert_eq!(
            store.purge_proposals(500_000).unwrap(),
            2,
            "the settled ones"
        );
        assert!(store.proposal(fresh.id).unwrap().is_some(), "pending stays");
    }
}
