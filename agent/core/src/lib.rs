//! Valor's conversation engine and the seams it owns.
//!
//! - [`backend`]: the `Backend` trait that runs one model turn and streams [`TurnEvent`]s, with
//!   the request and summary types. The Claude Code driver implements it.
//! - [`conversation`]: the conversation service every channel submits its ops to: a queue per
//!   chat, one concurrency limit, interrupts, `/new`, "Remember this?" and its answers.
//! - [`context`]: the context window: priority retention, extractive summaries, token budget.
//! - [`engine`]: one turn from a user's message to the stored reply, for every channel.
//! - [`error`]: [`TurnError`], what can go wrong in a turn, each with a message for the user.
//! - [`inject`]: the CONTEXT_DATA block that carries chat, user and history into the prompt.
//! - [`observe`]: observations of what a turn did (files, commands, functions, the web), typed,
//!   from its tool calls; the `CodeMap` seam they and the function-map layer read.
//! - [`learning`]: the `Learning` seam: the watcher's question, its answer, learning commands.
//! - [`recall`]: the `Recall` seam to long-term memory and the prompt budget for it.
//! - [`session`]: session summaries (asked, done, learned, left open) when a session ends.
//! - [`routing`]: the deterministic request classifier and the model/effort table.
//! - [`persona`]: the default persona prompt.
//! - [`progress`]: what each running turn is doing (session, tool calls), for the dashboard.
//! - [`scripted`]: a scripted backend for tests and benchmarks.
//! - [`time`]: calendar dates from Unix milliseconds.
//! - [`transcript`]: a turn's text as it is written (previews, what a failed turn had said).

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod backend;
pub mod context;
pub mod conversation;
pub mod engine;
pub mod error;
pub mod inject;
pub mod learning;
pub mod observe;
pub mod persona;
pub mod progress;
pub mod recall;
pub mod routing;
pub mod scripted;
pub mod session;
pub mod time;
pub mod transcript;

pub use backend::{
    Backend, ToolCallRecord, TurnEvent, TurnRequest, TurnStream, TurnSummary, Usage,
};
pub use conversation::{Conversations, Event, Events, Op, UserTurn};
pub use error::{Severity, TurnError, TurnErrorKind};
pub use routing::{ModelRouter, RequestClass, Route};
