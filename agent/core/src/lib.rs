//! Valor's conversation engine and the seams it owns.
//!
//! - [`backend`]: the `Backend` trait that runs one model turn and streams [`TurnEvent`]s, with
//!   the request and summary types. The Claude Code driver implements it.
//! - [`context`]: the context window: priority retention, extractive summaries, token budget.
//! - [`engine`]: one turn from a user's message to the stored reply, for every channel.
//! - [`error`]: [`TurnError`], what can go wrong in a turn, each with a message for the user.
//! - [`inject`]: the CONTEXT_DATA block that carries chat, user and history into the prompt.
//! - [`recall`]: the `Recall` seam to long-term memory and the prompt budget for it.
//! - [`routing`]: the deterministic request classifier and the model/effort table.
//! - [`persona`]: the default persona prompt.
//! - [`scripted`]: a scripted backend for tests and benchmarks.
//! - [`time`]: calendar dates from Unix milliseconds.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod backend;
pub mod context;
pub mod engine;
pub mod error;
pub mod inject;
pub mod persona;
pub mod recall;
pub mod routing;
pub mod scripted;
pub mod time;

pub use backend::{
    Backend, ToolCallRecord, TurnEvent, TurnRequest, TurnStream, TurnSummary, Usage,
};
pub use error::{Severity, TurnError, TurnErrorKind};
pub use routing::{ModelRouter, RequestClass, Route};
