//! `LISTEN/NOTIFY`: new work and Stop reach every node as they happen. A dedicated connection
//! (not the pool's) listens; its notifications arrive on a bounded channel. When the
//! connection drops the channel closes: the caller polls (the safety net) and listens again.

use futures_util::future::poll_fn;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use crate::error::PgError;
use crate::pool::PgStore;
use crate::queue::WORK_CHANNEL;

/// The channel Stop travels on (the payload: the chat's id).
pub const STOP_CHANNEL: &str = "valor_stop";

/// Notifications a listener keeps before it drops the newest (polling catches up).
const WAKE_BUFFER: usize = 1_024;

/// What woke a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// An update was accepted for this chat.
    Work { chat_id: i64 },
    /// Someone asked to stop this chat's turn (whichever node runs it stops it).
    Stop { chat_id: i64 },
}

impl PgStore {
    /// Listens for work and Stop on a connection of its own.
    pub async fn listen(&self) -> Result<mpsc::Receiver<Wake>, PgError> {
        let (client, mut connection) = self
            .config
            .connect(crate::pool::tls()?)
            .await
            .map_err(|e| PgError::Connect(crate::schema::db_message(&e)))?;
        let (tx, rx) = mpsc::channel(WAKE_BUFFER);
        let sender = tx.clone();
        let node = self.node_id().to_owned();
        tokio::spawn(async move {
            while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
                let notification = match message {
                    Ok(AsyncMessage::Notification(n)) => n,
                    Ok(_) => continue,
                    Err(error) => {
                        tracing::warn!(node = %node, %error, "the database's notifications stopped");
                        return;
                    }
                };
                let Ok(chat_id) = notification.payload().parse::<i64>() else {
                    continue;
                };
                let wake = match notification.channel() {
                    WORK_CHANNEL => Wake::Work { chat_id },
                    STOP_CHANNEL => Wake::Stop { chat_id },
                    _ => continue,
                };
                if sender.is_closed() {
                    return;
                }
                let _ = sender.try_send(wake);
            }
        });
        client
            .batch_execute(&format!("LISTEN {WORK_CHANNEL}; LISTEN {STOP_CHANNEL}"))
            .await?;
        // The connection lives as long as its client: dropped when nobody listens any more.
        let closed = tx.clone();
        tokio::spawn(async move {
            closed.closed().await;
            drop(client);
        });
        Ok(rx)
    }

    /// Asks whichever node runs `chat_id`'s turn to stop it.
    pub async fn notify_stop(&self, chat_id: i64) -> Result<(), PgError> {
        let client = self.client().await?;
        client
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&STOP_CHANNEL, &chat_id.to_string()],
            )
            .await?;
        Ok(())
    }
}
