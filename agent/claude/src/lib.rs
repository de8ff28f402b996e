//! Valor's Claude Code CLI driver.
//!
//! - [`codec`]: stream-json lines into typed events, with a bounded line reader.

pub mod codec;
