//! What the channel needs when Valor runs on several machines (the shared store implements
//! it): the per-chat work queue a worker claims chats from, and the poller's leadership.
//!
//! - [`ChatQueue`]: accepted updates wait in a shared queue; a worker claims a chat (a lease),
//!   answers its updates in order and marks each done under that lease. A worker whose lease
//!   ran out is refused (fenced): the chat has moved to another worker.
//! - [`Leadership`]: only the leader calls `getUpdates` (Telegram answers a second poller with
//!   409); another ingress node takes over when the leader's lease runs out.

use async_trait::async_trait;
use tokio::sync::mpsc;
use valor_protocol::StoreFailure;
use valor_protocol::records::InboxEntry;

/// A chat this worker holds (the lease's epoch fences what it writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedChat {
    pub chat_id: i64,
    pub epoch: i64,
}

/// An accepted update, taken for its turn.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedTurn {
    /// Its place in the shared queue.
    pub queue_id: i64,
    pub entry: InboxEntry,
    /// Turns started on it (more than one: the worker before died or lost the chat).
    pub attempts: i32,
    /// The message an earlier attempt's answer streamed into (edited, not sent again).
    pub reply_message_id: Option<i64>,
}

/// What woke a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueWake {
    Work(i64),
    Stop(i64),
}

#[async_trait]
pub trait ChatQueue: Send + Sync {
    /// Claims up to `max` chats with waiting updates that no other worker holds (those whose
    /// answer a dead worker had begun first).
    async fn claim(&self, max: usize) -> Result<Vec<ClaimedChat>, StoreFailure>;
    /// Claims up to `max` chats whose answer a worker began and did not finish: taken even by
    /// a full worker, so the person who saw part of an answer is not left behind the queue.
    async fn claim_interrupted(&self, max: usize) -> Result<Vec<ClaimedChat>, StoreFailure> {
        let _ = max;
        Ok(Vec::new())
    }
    /// The chat's next update, in order, marked started; `None` when none waits.
    async fn next_turn(&self, chat: &ClaimedChat) -> Result<Option<QueuedTurn>, StoreFailure>;
    /// Remembers the message the update's answer streams into.
    async fn note_reply(
        &self,
        chat: &ClaimedChat,
        queue_id: i64,
        message_id: i64,
    ) -> Result<(), StoreFailure>;
    /// Marks the update answered; an error when the chat is no longer this worker's.
    async fn finish_turn(&self, chat: &ClaimedChat, queue_id: i64) -> Result<(), StoreFailure>;
    /// Keeps the chat; false when it was lost (the lease ran out and another worker took it).
    async fn renew(&self, chat: &ClaimedChat) -> bool;
    /// Lets the chat go (idle, or this worker stops).
    async fn release(&self, chat: &ClaimedChat);
    /// Asks whichever worker runs the chat's turn to stop it.
    async fn stop(&self, chat_id: i64) -> Result<(), StoreFailure>;
    /// New work and Stop as they happen (`None`: not available; polling only).
    async fn wakes(&self) -> Option<mpsc::Receiver<QueueWake>>;
    /// How soon a chat with waiting work that another worker holds is free to claim (its
    /// lease runs out: that worker may be dead); `None`: no such chat. A worker claims it then,
    /// not at its next tick.
    async fn next_free(&self) -> Option<std::time::Duration> {
        None
    }
}

#[async_trait]
pub trait Leadership: Send + Sync {
    /// Takes or keeps the poller's role; whether this node leads.
    async fn lead(&self) -> bool;
    /// Gives the role up (Telegram said another poller runs, or this node stops).
    async fn resign(&self);
}
