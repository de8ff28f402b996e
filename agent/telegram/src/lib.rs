//! Valor's Telegram channel.
//!
//! - [`format`]: Markdown to Telegram HTML, escaped; splitting at 4096 characters on paragraph
//!   and code-fence boundaries; the plain-text fallback.
//! - [`pacer`]: one pacer per chat for sends and edits together, obeying `retry_after` within a
//!   cap.

pub mod format;
pub mod pacer;
