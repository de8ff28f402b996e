//! What the Telegram channel keeps, as three small stores (the store implements them,
//! [`InMemoryInbox`] serves tests):
//! - [`Inbox`]: messages accepted and not yet answered (replayed after a restart) and the last
//!   update taken in;
//! - [`PairedUsers`]: the users who paired;
//! - [`QuestionMessages`]: the "Remember this?" questions the channel asked, with their
//!   message ids (so their buttons can be taken away).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use valor_protocol::StoreFailure;
use valor_protocol::access::Role;
use valor_protocol::proposals::Proposal;
use valor_protocol::records::InboxEntry;

#[async_trait]
pub trait Inbox: Send + Sync {
    /// Keeps a message and notes its update as taken in; on disk before this returns.
    async fn accept_update(&self, entry: &InboxEntry) -> Result<(), StoreFailure>;
    /// The message is answered: it leaves the inbox.
    async fn finish_update(&self, update_id: i64) -> Result<(), StoreFailure>;
    /// Messages accepted and not yet answered, oldest first.
    async fn inbox(&self) -> Result<Vec<InboxEntry>, StoreFailure>;
    /// Entries that could not be read and were set aside.
    fn inbox_set_aside(&self) -> usize;
    async fn last_update(&self) -> Result<i64, StoreFailure>;
    async fn set_last_update(&self, id: i64) -> Result<(), StoreFailure>;
}

#[async_trait]
pub trait PairedUsers: Send + Sync {
    async fn paired_users(&self) -> Result<Vec<i64>, StoreFailure>;
    async fn add_paired_user(&self, user_id: i64) -> Result<(), StoreFailure>;
    /// False when the user was not paired.
    async fn remove_paired_user(&self, user_id: i64) -> Result<bool, StoreFailure>;
    /// The paired users with more than the chatter's role.
    async fn paired_roles(&self) -> Result<Vec<(i64, Role)>, StoreFailure>;
    /// Gives a paired user a role (their pairing code's).
    async fn set_paired_role(&self, user_id: i64, role: Role) -> Result<(), StoreFailure>;
}

#[async_trait]
pub trait QuestionMessages: Send + Sync {
    /// Records a question as pending; returns it with its id.
    async fn add_proposal(&self, proposal: Proposal) -> Result<Proposal, StoreFailure>;
    async fn proposal(&self, id: u64) -> Result<Option<Proposal>, StoreFailure>;
    async fn set_proposal_message(&self, id: u64, message_id: i64) -> Result<(), StoreFailure>;
}

/// All three in memory (tests).
#[derive(Default)]
pub struct InMemoryInbox {
    entries: Mutex<BTreeMap<i64, InboxEntry>>,
    last: Mutex<i64>,
    paired: Mutex<Vec<i64>>,
    roles: Mutex<BTreeMap<i64, Role>>,
    proposals: Mutex<BTreeMap<u64, Proposal>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl Inbox for InMemoryInbox {
    async fn accept_update(&self, entry: &InboxEntry) -> Result<(), StoreFailure> {
        lock(&self.entries).insert(entry.update_id, entry.clone());
        let mut last = lock(&self.last);
        *last = (*last).max(entry.update_id);
        Ok(())
    }

    async fn finish_update(&self, update_id: i64) -> Result<(), StoreFailure> {
        lock(&self.entries).remove(&update_id);
        Ok(())
    }

    async fn inbox(&self) -> Result<Vec<InboxEntry>, StoreFailure> {
        Ok(lock(&self.entries).values().cloned().collect())
    }

    fn inbox_set_aside(&self) -> usize {
        0
    }

    async fn last_update(&self) -> Result<i64, StoreFailure> {
        Ok(*lock(&self.last))
    }

    async fn set_last_update(&self, id: i64) -> Result<(), StoreFailure> {
        *lock(&self.last) = id;
        Ok(())
    }
}

#[async_trait]
impl PairedUsers for InMemoryInbox {
    async fn paired_users(&self) -> Result<Vec<i64>, StoreFailure> {
        Ok(lock(&self.paired).clone())
    }

    async fn add_paired_user(&self, user_id: i64) -> Result<(), StoreFailure> {
        let mut paired = lock(&self.paired);
        if !paired.contains(&user_id) {
            paired.push(user_id);
        }
        Ok(())
    }

    async fn remove_paired_user(&self, user_id: i64) -> Result<bool, StoreFailure> {
        let mut paired = lock(&self.paired);
        let before = paired.len();
        paired.retain(|u| *u != user_id);
        lock(&self.roles).remove(&user_id);
        Ok(paired.len() < before)
    }

    async fn paired_roles(&self) -> Result<Vec<(i64, Role)>, StoreFailure> {
        Ok(lock(&self.roles)
            .iter()
            .filter(|(_, role)| **role > Role::Chatter)
            .map(|(user, role)| (*user, *role))
            .collect())
    }

    async fn set_paired_role(&self, user_id: i64, role: Role) -> Result<(), StoreFailure> {
        lock(&self.roles).insert(user_id, role);
        Ok(())
    }
}

#[async_trait]
impl QuestionMessages for InMemoryInbox {
    async fn add_proposal(&self, mut proposal: Proposal) -> Result<Proposal, StoreFailure> {
        let mut proposals = lock(&self.proposals);
        proposal.id = proposals.keys().next_back().map_or(1, |id| id + 1);
        proposals.insert(proposal.id, proposal.clone());
        Ok(proposal)
    }

    async fn proposal(&self, id: u64) -> Result<Option<Proposal>, StoreFailure> {
        Ok(lock(&self.proposals).get(&id).cloned())
    }

    async fn set_proposal_message(&self, id: u64, message_id: i64) -> Result<(), StoreFailure> {
        if let Some(proposal) = lock(&self.proposals).get_mut(&id) {
            proposal.message_id = Some(message_id);
        }
        Ok(())
    }
}

/// All the channel keeps, as one handle (whatever implements the three).
pub trait TelegramStore: Inbox + PairedUsers + QuestionMessages {}

impl<T: Inbox + PairedUsers + QuestionMessages> TelegramStore for T {}
