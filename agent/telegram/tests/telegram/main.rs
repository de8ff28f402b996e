//! The Telegram channel's tests, one test program: the channel end to end, the fake Bot API itself, streaming.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod channel;
mod fake_bot_api;
mod learning;
mod load;
mod streaming;
