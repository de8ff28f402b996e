//! The Telegram channel's stores (`valor_telegram::inbox`): the inbox and the update offset,
//! the paired users, the questions asked. Every write a restart must see is committed before
//! it is acknowledged; an accepted update shares its flush with every other one waiting.

use async_trait::async_trait;
use valor_protocol::StoreFailure;
use valor_protocol::proposals::Proposal;
use valor_protocol::records::InboxEntry;
use valor_telegram::inbox::{Inbox, PairedUsers, QuestionMessages};

use crate::Store;

#[async_trait]
impl Inbox for Store {
    async fn accept_update(&self, entry: &InboxEntry) -> Result<(), StoreFailure> {
        let entry = entry.clone();
        self.blocking(move |s| s.accept_update(&entry)).await?;
        Ok(self.commit().await?)
    }

    async fn finish_update(&self, update_id: i64) -> Result<(), StoreFailure> {
        self.blocking(move |s| s.finish_update(update_id)).await?;
        Ok(self.commit().await?)
    }

    async fn inbox(&self) -> Result<Vec<InboxEntry>, StoreFailure> {
        Ok(self.blocking(Store::inbox).await?)
    }

    fn inbox_set_aside(&self) -> usize {
        Store::inbox_set_aside(self)
    }

    async fn last_update(&self) -> Result<i64, StoreFailure> {
        Ok(self.blocking(Store::telegram_last_update).await?)
    }

    async fn set_last_update(&self, id: i64) -> Result<(), StoreFailure> {
        self.blocking(move |s| s.set_telegram_last_update(id))
            .await?;
        Ok(self.commit().await?)
    }
}

#[async_trait]
impl PairedUsers for Store {
    async fn paired_users(&self) -> Result<Vec<i64>, StoreFailure> {
        Ok(self.blocking(Store::paired_users).await?)
    }

    async fn add_paired_user(&self, user_id: i64) -> Result<(), StoreFailure> {
        self.blocking(move |s| s.add_paired_user(user_id)).await?;
        Ok(self.commit().await?)
    }

    async fn remove_paired_user(&self, user_id: i64) -> Result<bool, StoreFailure> {
        let removed = self
            .blocking(move |s| s.remove_paired_user(user_id))
            .await?;
        self.commit().await?;
        Ok(removed)
    }

    async fn paired_roles(&self) -> Result<Vec<(i64, valor_protocol::access::Role)>, StoreFailure> {
        Ok(self.blocking(Store::paired_roles).await?)
    }

    async fn set_paired_role(
        &self,
        user_id: i64,
        role: valor_protocol::access::Role,
    ) -> Result<(), StoreFailure> {
        self.blocking(move |s| s.set_paired_role(user_id, role))
            .await?;
        Ok(self.commit().await?)
    }
}

#[async_trait]
impl QuestionMessages for Store {
    async fn add_proposal(&self, proposal: Proposal) -> Result<Proposal, StoreFailure> {
        Ok(self.blocking(move |s| s.add_proposal(proposal)).await?)
    }

    async fn proposal(&self, id: u64) -> Result<Option<Proposal>, StoreFailure> {
        Ok(self.blocking(move |s| s.proposal(id)).await?)
    }

    async fn set_proposal_message(&self, id: u64, message_id: i64) -> Result<(), StoreFailure> {
        Ok(self
            .blocking(move |s| s.set_proposal_message(id, message_id))
            .await?)
    }
}
