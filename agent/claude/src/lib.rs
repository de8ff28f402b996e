//! Valor's Claude Code CLI driver.
//!
//! - [`driver`]: [`ClaudeDriver`], the `Backend`: process management per chat (sessions, warm
//!   processes within the memory budget, kill), every run recorded for analytics. Queues and
//!   the concurrency limit are the conversation service's (core).
//! - [`budget`]: the memory budget of running and warm processes, by measured RSS.
//! - [`session`]: one Claude Code process and the reading of a turn from it (timeouts, cancel).
//! - [`codec`]: stream-json lines into typed events, with a bounded line reader.
//! - [`spawn`]: the command line, the filtered environment, the per-turn MCP config file.
//! - [`process`]: process groups: registered, recorded, stopped with SIGTERM then SIGKILL.
//! - [`reaper`]: ends recorded groups that outlived their turn, also after a crash of Valor.
//! - [`ledger`]: the session ledger the driver keeps (sessions, runs, process groups).
//! - [`failure`]: when a run has failed, and why.
//! - [`metrics`]: counters on /metrics and the `claude` component on /health.
//! - [`binary`]: where the `claude` program is.
//! - [`sandbox`]: one sandbox per process (valor-sandbox): its chat's workspace and HOME, no
//!   privilege, its own network with only Valor's socket, Valor's settings, no secret, limits.
//! - [`jail`]: a sandboxed process's turns: the API token per turn, limits watched, leftovers
//!   ended.
//! - [`proxy`]: the model API proxy a sandbox talks to (real credentials added outside).
//! - [`runtime`]: Valor's private runtime folder for the per-turn MCP configs.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod binary;
pub mod budget;
pub mod codec;
pub mod driver;
mod error;
pub mod failure;
pub mod jail;
pub mod ledger;
pub mod metrics;
pub mod process;
pub mod proxy;
pub mod reaper;
pub mod runtime;
pub mod sandbox;
pub mod session;
pub mod spawn;

pub use driver::{ClaudeDriver, DriverSetup};
pub use error::ClaudeError;
