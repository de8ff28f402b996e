//! What a tool makes for the chat (a created image, a bug report's screenshot), handed to the
//! agent to send. The tool answers the model at once; sending is the channel's job.

use std::sync::Arc;

/// A picture for a chat: its bytes, read by the tool through the no-follow helper (a path
/// would be opened again later, when the chat may have swapped it for a link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub chat_id: i64,
    pub png: Vec<u8>,
    pub caption: String,
}

/// Who sends deliveries (the Telegram channel, in `valor run`).
pub type Deliver = Arc<dyn Fn(Delivery) + Send + Sync>;
