//! Valor's Telegram channel.
//!
//! - [`approval`]: approvals asked in the chat: the whole effect (a file when long), the
//!   buttons, the reminder, the outcome.
//! - [`budget`]: spend caps in the chat: the notice with [Allow more] [Stop], the usage limit's
//!   line.
//! - [`channel`]: long polling, access, commands, restart safety; updates become ops of the
//!   conversation service and its events become messages.
//! - [`format`]: Markdown to Telegram HTML, escaped; splitting at 4096 characters on paragraph
//!   and code-fence boundaries; the plain-text fallback.
//! - [`health`]: the `telegram` component of `/health`: last good poll, failing for how long.
//! - [`inbox`]: what the channel keeps (inbox, update offset, paired users, its questions),
//!   as the `Inbox` the store implements.
//! - [`progress`]: the status line of a running turn (tools, retries, waiting) with Stop.
//! - [`photos`]: pictures the tools make, sent to their chat through its pacer.
//! - [`remember`]: "Remember this?" with [Remember] [Not now]; nothing stored unasked.
//! - [`pairing`]: one-time codes from `valor pair` that let a user join the allow-list.
//! - [`pacer`]: one pacer per chat for sends and edits together, obeying `retry_after` within a
//!   cap.
//! - [`stream`]: delivers a streamed turn into a chat: first text at once, edits at the cadence,
//!   continuation messages past 4096 characters, the exact final text.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod approval;
pub mod budget;
pub mod channel;
pub mod cluster;
pub mod format;
pub mod health;
pub mod inbox;
pub mod pacer;
pub mod pairing;
pub mod photos;
pub mod progress;
mod received;
pub mod remember;
pub mod stream;
