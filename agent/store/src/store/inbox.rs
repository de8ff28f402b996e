//! The Telegram channel's part: messages accepted and not yet answered (the inbox), the last
//! update taken in, and the users who paired.

use super::{Store, decode, encode};
use crate::StoreError;
use crate::records::InboxEntry;
use std::sync::atomic::Ordering;

const LAST_UPDATE_KEY: &[u8] = b"last_update_id";
const PAIRED_PREFIX: &[u8] = b"paired:";
/// Inbox entries that could not be read, kept aside (by update id) instead of blocking the rest.
const SET_ASIDE_PREFIX: &[u8] = b"inbox-set-aside:";

impl Store {
    /// The last Telegram update fully taken in (its message stored), or 0.
    pub fn telegram_last_update(&self) -> Result<i64, StoreError> {
        Ok(self
            .telegram
            .get(LAST_UPDATE_KEY)?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_ref()).ok())
            .map_or(0, i64::from_be_bytes))
    }

    /// Records that update `id` was taken in (the caller commits, so a restart never takes it
    /// in twice).
    pub fn set_telegram_last_update(&self, id: i64) -> Result<(), StoreError> {
        self.inbox_fault()?;
        self.telegram.insert(LAST_UPDATE_KEY, &id.to_be_bytes())?;
        Ok(())
    }

    /// Makes the next `n` inbox writes fail as a broken disk would (tests only).
    #[doc(hidden)]
    pub fn fail_next_inbox_writes(&self, n: u64) {
        self.inbox_faults.store(n, Ordering::SeqCst);
    }

    fn inbox_fault(&self) -> Result<(), StoreError> {
        let injected = self
            .inbox_faults
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if injected {
            return Err(StoreError::Db(sled::Error::Io(std::io::Error::other(
                "injected inbox write failure",
            ))));
        }
        Ok(())
    }

    /// Accepts an update into the inbox and records it as taken in (the caller commits both
    /// in one flush).
    pub fn accept_update(&self, entry: &InboxEntry) -> Result<(), StoreError> {
        self.inbox_fault()?;
        self.inbox
            .insert(entry.update_id.to_be_bytes(), encode(entry))?;
        self.telegram
            .insert(LAST_UPDATE_KEY, &entry.update_id.to_be_bytes())?;
        Ok(())
    }

    /// Removes an answered update from the inbox.
    pub fn finish_update(&self, update_id: i64) -> Result<(), StoreError> {
        self.inbox.remove(update_id.to_be_bytes())?;
        Ok(())
    }

    /// Updates accepted but not yet answered, oldest first. An entry that cannot be read is
    /// moved aside (logged, kept under `inbox-set-aside:`) so the rest are still answered.
    pub fn inbox(&self) -> Result<Vec<InboxEntry>, StoreError> {
        let mut entries = Vec::new();
        for entry in self.inbox.iter() {
            let (key, bytes) = entry?;
            match decode::<InboxEntry>("inbox entry", &bytes) {
                Ok(entry) => entries.push(entry),
                Err(e) => {
                    tracing::error!(error = %e, "an inbox entry cannot be read; set aside");
                    let mut aside = SET_ASIDE_PREFIX.to_vec();
                    aside.extend_from_slice(&key);
                    self.telegram.insert(aside, bytes)?;
                    self.inbox.remove(key)?;
                }
            }
        }
        Ok(entries)
    }

    /// How many inbox entries were set aside as unreadable.
    pub fn inbox_set_aside(&self) -> usize {
        self.telegram.scan_prefix(SET_ASIDE_PREFIX).count()
    }

    /// Writes raw bytes as an inbox entry (tests of damaged stores).
    #[doc(hidden)]
    pub fn put_raw_inbox_entry(&self, update_id: i64, bytes: &[u8]) -> Result<(), StoreError> {
        self.inbox.insert(update_id.to_be_bytes(), bytes)?;
        Ok(())
    }

    /// Users who joined the allow-list by pairing.
    pub fn paired_users(&self) -> Result<Vec<i64>, StoreError> {
        self.telegram
            .scan_prefix(PAIRED_PREFIX)
            .keys()
            .map(|key| {
                let key = key?;
                Ok(<[u8; 8]>::try_from(&key[PAIRED_PREFIX.len()..]).map_or(0, i64::from_be_bytes))
            })
            .collect()
    }

    /// Pairs a user (a chatter; a role they had is kept).
    pub fn add_paired_user(&self, user_id: i64) -> Result<(), StoreError> {
        let mut key = PAIRED_PREFIX.to_vec();
        key.extend_from_slice(&user_id.to_be_bytes());
        let _kept = self
            .telegram
            .compare_and_swap(key, None::<&[u8]>, Some(&[][..]))?;
        Ok(())
    }

    /// The paired users' roles above chatter (the role is the paired key's value).
    pub fn paired_roles(&self) -> Result<Vec<(i64, valor_protocol::access::Role)>, StoreError> {
        let mut roles = Vec::new();
        for entry in self.telegram.scan_prefix(PAIRED_PREFIX) {
            let (key, value) = entry?;
            let user =
                <[u8; 8]>::try_from(&key[PAIRED_PREFIX.len()..]).map_or(0, i64::from_be_bytes);
            let role = std::str::from_utf8(&value)
                .ok()
                .and_then(valor_protocol::access::Role::parse)
                .unwrap_or_default();
            if role > valor_protocol::access::Role::Chatter {
                roles.push((user, role));
            }
        }
        Ok(roles)
    }

    /// Pairs a user with `role`.
    pub fn set_paired_role(
        &self,
        user_id: i64,
        role: valor_protocol::access::Role,
    ) -> Result<(), StoreError> {
        let mut key = PAIRED_PREFIX.to_vec();
        key.extend_from_slice(&user_id.to_be_bytes());
        self.telegram.insert(key, role.as_str().as_bytes())?;
        Ok(())
    }

    /// Takes a paired user off the allow-list; false when they were not paired.
    pub fn remove_paired_user(&self, user_id: i64) -> Result<bool, StoreError> {
        let mut key = PAIRED_PREFIX.to_vec();
        key.extend_from_slice(&user_id.to_be_bytes());
        Ok(self.telegram.remove(key)?.is_some())
    }
}
