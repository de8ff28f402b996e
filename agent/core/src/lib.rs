//! Valor's conversation engine and the seams it owns.
//!
//! - [`approvals`]: approvals of effects: the audit log's interface, grants for the session,
//!   waiting for a person's decision (the service asks through the running turn's events).
//! - [`budget`]: spend caps: every run counted and capped (before and while it runs), the
//!   counters' interface, [Allow more], `/cost`.
//! - [`backend`]: the `Backend` trait that runs one model turn and streams its events. The
//!   Claude Code driver implements it. The types every crate shares (ops, events, requests,
//!   errors, records) are in `valor-protocol`.
//! - [`conversation`]: the conversation service every channel submits its ops to: a queue per
//!   chat, one concurrency limit, interrupts, `/new`, "Remember this?" and its answers.
//! - [`context`]: the context window: priority retention, extractive summaries, token budget.
//! - [`engine`]: one turn from a user's message to the stored reply, for every channel.
//! - [`inject`]: the CONTEXT_DATA block that carries chat, user and history into the prompt.
//! - [`observe`]: observations of what a turn did (files, commands, functions, the web), typed,
//!   from its tool calls; the `CodeMap` seam they and the function-map layer read.
//! - [`learning`]: the `Learning` seam: the watcher's question, its answer, learning commands.
//! - [`recall`]: the `Recall` seam to long-term memory and the prompt budget for it.
//! - [`store`]: [`store::ConversationStore`], where the engine keeps messages, and its
//!   in-memory fake.
//! - [`status`]: one chat's status (`/status`, the dashboard) and the store's part of it.
//! - [`session`]: session summaries (asked, done, learned, left open) when a session ends.
//! - [`routing`]: the deterministic request classifier and the model/effort table.
//! - [`persona`]: the default persona prompt.
//! - [`progress`]: what each running turn is doing (session, tool calls), for the dashboard.
//! - [`scripted`]: a scripted backend for tests and benchmarks.
//! - [`transcript`]: a turn's text as it is written (previews, what a failed turn had said).

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod approvals;
pub mod backend;
pub mod budget;
pub mod context;
pub mod conversation;
pub mod engine;
pub mod inject;
pub mod learning;
pub mod observe;
pub mod persona;
pub mod progress;
pub mod recall;
pub mod routing;
pub mod scripted;
pub mod session;
pub mod status;
pub mod store;
pub mod transcript;

pub use backend::Backend;
pub use conversation::{Conversations, Notice};
pub use engine::{Engine, Turn};
pub use routing::ModelRouter;
