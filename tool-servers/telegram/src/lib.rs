//! Valor's `telegram` MCP server: the conversation so far, for the model to look back on.
//!
//! - `search_conversation_history(query, chat_id)`: the chat's messages that match, best first
//!   (the agent's hybrid memory search: keywords and meaning).
//! - `get_conversation_context(hours_back, chat_id)`: what was said in the chat in the last
//!   hours, oldest first.
//!
//! The server reads through [`History`], which the agent implements over its memory store; the
//! crate itself stays free of the store and the embedding model.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod server;

pub use server::{History, HistoryLine, TelegramServer};
