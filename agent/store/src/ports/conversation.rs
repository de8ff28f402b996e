//! The engine's and the conversation service's stores (`valor_core`): a chat's messages
//! ([`ConversationStore`]) and what `/status` reads of its turns ([`ChatRecords`]). Reads run on
//! the blocking pool; a durable append waits for the group commit.

use async_trait::async_trait;
use valor_core::status::{ChatRecords, ChatUsage, SessionInfo};
use valor_core::store::ConversationStore;
use valor_protocol::{Author, ContextMessage, Role, StoreFailure};

use crate::records::StoredMessage;
use crate::{RunAnalytics, Store};

#[async_trait]
impl ConversationStore for Store {
    async fn append(
        &self,
        chat_id: i64,
        role: Role,
        text: &str,
        author: Option<&Author>,
        source: Option<&str>,
        durable: bool,
    ) -> Result<u64, StoreFailure> {
        let message = StoredMessage::said(chat_id, role, text, author, source);
        let stored = self
            .blocking(move |s| s.append_message(message, false))
            .await?;
        if durable {
            self.commit().await?;
        }
        Ok(stored.seq)
    }

    async fn name_chat(&self, chat_id: i64, title: &str) -> Result<(), StoreFailure> {
        let title = title.to_owned();
        Ok(self.blocking(move |s| s.name_chat(chat_id, &title)).await?)
    }

    async fn recent(
        &self,
        chat_id: i64,
        limit: usize,
    ) -> Result<Vec<ContextMessage>, StoreFailure> {
        let messages = self
            .blocking(move |s| s.recent_messages(chat_id, limit))
            .await?;
        Ok(messages
            .into_iter()
            .map(|m| ContextMessage {
                id: m.seq,
                role: m.role,
                text: m.text,
            })
            .collect())
    }

    async fn set_conversation_start(
        &self,
        chat_id: i64,
        message_id: u64,
    ) -> Result<(), StoreFailure> {
        self.blocking(move |s| s.set_conversation_start(chat_id, message_id))
            .await?;
        Ok(self.commit().await?)
    }

    async fn conversation_start(&self, chat_id: i64) -> Result<u64, StoreFailure> {
        Ok(self
            .blocking(move |s| s.conversation_start(chat_id))
            .await?)
    }
}

#[async_trait]
impl ChatRecords for Store {
    async fn session(&self, chat_id: i64) -> Result<Option<SessionInfo>, StoreFailure> {
        let session = self.blocking(move |s| s.session(chat_id)).await?;
        Ok(session.map(|s| SessionInfo {
            session_id: s.session_id,
            turns: s.turns,
        }))
    }

    async fn usage_since(&self, chat_id: i64, since_ms: u64) -> Result<ChatUsage, StoreFailure> {
        let runs: Vec<_> = self
            .blocking(move |s| s.runs_since(since_ms))
            .await?
            .into_iter()
            .filter(|r| r.chat_id == chat_id)
            .collect();
        let totals = RunAnalytics::of(&runs).all;
        Ok(ChatUsage {
            turns: totals.turns,
            failed: totals.failed,
            cost_usd: totals.cost_usd,
            last_model: runs
                .last()
                .map(|r| r.model.clone())
                .filter(|m| !m.is_empty()),
        })
    }

    async fn questions(&self, chat_id: i64) -> Result<Option<String>, StoreFailure> {
        let counts = self
            .blocking(move |s| s.proposal_counts(Some(chat_id)))
            .await?;
        Ok((!counts.is_empty()).then(|| crate::proposals::describe_counts(&counts)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::{Duration, Instant};

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn durable_appends_that_wait_together_share_one_flush() {
        let (_dir, store) = store();
        store.stall_commits(Duration::from_millis(200));
        let (flushes_before, _) = store.commit_figures();
        let mut appends = tokio::task::JoinSet::new();
        for chat in 0..20 {
            let store = store.clone();
            appends.spawn(async move {
                store
                    .append(chat, Role::User, "hello", None, None, true)
                    .await
            });
        }
        let ids = appends.join_all().await;
        assert!(ids.iter().all(Result::is_ok), "{ids:?}");
        let (flushes, commits) = store.commit_figures();
        assert_eq!(commits, 20);
        assert!(
            flushes - flushes_before <= 3,
            "20 durable appends took {} flushes",
            flushes - flushes_before
        );
    }

    /// A stalled disk holds up the writes that wait for it, never the async thread: on a
    /// single-threaded runtime a ticker keeps its pace while a durable append waits 1.5 s.
    #[tokio::test]
    async fn a_stalled_disk_never_blocks_the_async_thread() {
        let (_dir, store) = store();
        store.stall_commits(Duration::from_millis(1500));
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append(1, Role::User, "must survive a crash", None, None, true)
                    .await
            })
        };
        let mut worst = Duration::ZERO;
        let mut last = Instant::now();
        while !writer.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            worst = worst.max(last.elapsed());
            last = Instant::now();
        }
        writer.await.unwrap().unwrap();
        assert!(
            worst < Duration::from_millis(300),
            "the async thread stalled for {worst:?}"
        );
        // And what was appended is there.
        let recent = store.recent(1, 5).await.unwrap();
        assert_eq!(recent[0].text, "must survive a crash");
    }
}
