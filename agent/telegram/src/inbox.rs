//! What the Telegram channel keeps, as it sees it: messages accepted and not yet answered (the
//! inbox, replayed after a restart), the last update taken in, the users who paired, the
//! "Remember this?" questions it asked (their message ids), and the reads behind `/status`.
//! The store implements it; names follow the store's.

use valor_store::{InboxEntry, Proposal, RunRecord, SessionRecord, Store, StoreError};

pub trait Inbox: Send + Sync {
    /// Keeps a message (durably) and notes its update as taken in.
    fn accept_update(&self, entry: &InboxEntry) -> Result<(), StoreError>;
    /// The message is answered: it leaves the inbox.
    fn finish_update(&self, update_id: i64) -> Result<(), StoreError>;
    /// Messages accepted and not yet answered, oldest first.
    fn inbox(&self) -> Result<Vec<InboxEntry>, StoreError>;
    /// Entries that could not be read and were set aside.
    fn inbox_set_aside(&self) -> usize;
    fn telegram_last_update(&self) -> Result<i64, StoreError>;
    fn set_telegram_last_update(&self, id: i64) -> Result<(), StoreError>;
    fn paired_users(&self) -> Result<Vec<i64>, StoreError>;
    fn add_paired_user(&self, user_id: i64) -> Result<(), StoreError>;
    fn remove_paired_user(&self, user_id: i64) -> Result<bool, StoreError>;
    /// Records a question as pending; returns it with its id.
    fn add_proposal(&self, proposal: Proposal) -> Result<Proposal, StoreError>;
    fn proposal(&self, id: u64) -> Result<Option<Proposal>, StoreError>;
    fn set_proposal_message(&self, id: u64, message_id: i64) -> Result<(), StoreError>;
    /// Pending questions past their time, now marked expired.
    fn expire_proposals(&self, now_ms: u64) -> Result<Vec<Proposal>, StoreError>;
    /// Removes settled questions created before `before_ms`.
    fn purge_proposals(&self, before_ms: u64) -> Result<usize, StoreError>;
    /// The chat's questions by trigger and state (`/status`).
    fn proposal_counts(
        &self,
        chat_id: i64,
    ) -> Result<std::collections::BTreeMap<(String, valor_store::ProposalState), u64>, StoreError>;
    /// The chat's Claude session (`/status`).
    fn session(&self, chat_id: i64) -> Result<Option<SessionRecord>, StoreError>;
    /// Runs since a time (`/status`: today's cost and turns).
    fn runs_since(&self, since_ms: u64) -> Result<Vec<RunRecord>, StoreError>;
}

impl Inbox for Store {
    fn accept_update(&self, entry: &InboxEntry) -> Result<(), StoreError> {
        Store::accept_update(self, entry)
    }

    fn finish_update(&self, update_id: i64) -> Result<(), StoreError> {
        Store::finish_update(self, update_id)
    }

    fn inbox(&self) -> Result<Vec<InboxEntry>, StoreError> {
        Store::inbox(self)
    }

    fn inbox_set_aside(&self) -> usize {
        Store::inbox_set_aside(self)
    }

    fn telegram_last_update(&self) -> Result<i64, StoreError> {
        Store::telegram_last_update(self)
    }

    fn set_telegram_last_update(&self, id: i64) -> Result<(), StoreError> {
        Store::set_telegram_last_update(self, id)
    }

    fn paired_users(&self) -> Result<Vec<i64>, StoreError> {
        Store::paired_users(self)
    }

    fn add_paired_user(&self, user_id: i64) -> Result<(), StoreError> {
        Store::add_paired_user(self, user_id)
    }

    fn remove_paired_user(&self, user_id: i64) -> Result<bool, StoreError> {
        Store::remove_paired_user(self, user_id)
    }

    fn add_proposal(&self, proposal: Proposal) -> Result<Proposal, StoreError> {
        Store::add_proposal(self, proposal)
    }

    fn proposal(&self, id: u64) -> Result<Option<Proposal>, StoreError> {
        Store::proposal(self, id)
    }

    fn set_proposal_message(&self, id: u64, message_id: i64) -> Result<(), StoreError> {
        Store::set_proposal_message(self, id, message_id)
    }

    fn expire_proposals(&self, now_ms: u64) -> Result<Vec<Proposal>, StoreError> {
        Store::expire_proposals(self, now_ms)
    }

    fn purge_proposals(&self, before_ms: u64) -> Result<usize, StoreError> {
        Store::purge_proposals(self, before_ms)
    }

    fn proposal_counts(
        &self,
        chat_id: i64,
    ) -> Result<std::collections::BTreeMap<(String, valor_store::ProposalState), u64>, StoreError>
    {
        Store::proposal_counts(self, Some(chat_id))
    }

    fn session(&self, chat_id: i64) -> Result<Option<SessionRecord>, StoreError> {
        Store::session(self, chat_id)
    }

    fn runs_since(&self, since_ms: u64) -> Result<Vec<RunRecord>, StoreError> {
        Store::runs_since(self, since_ms)
    }
}
