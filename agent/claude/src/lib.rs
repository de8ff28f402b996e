//! Valor's Claude Code CLI driver.
//!
//! - [`codec`]: stream-json lines into typed events, with a bounded line reader.
//! - [`spawn`]: the command line, the filtered environment, the per-turn MCP config file.
//! - [`process`]: process groups: registered, recorded, stopped with SIGTERM then SIGKILL.
//! - [`failure`]: when a run has failed, and why.
//! - [`binary`]: where the `claude` program is.

pub mod binary;
pub mod codec;
mod error;
pub mod failure;
pub mod process;
pub mod spawn;

pub use error::ClaudeError;
