//! Valor's shared types, and nothing else (in the style of codex-rs' protocol crate): what a
//! channel asks of the conversation service and what it hears back, what a backend runs and
//! reports, what can go wrong with the message for the user, and the records every store keeps.
//! Every other crate speaks these; none needs the engine to.
//!
//! - [`op`]: [`Op`], [`UserTurn`], [`Command`], [`Author`].
//! - [`event`]: [`Event`] (one enum for the service's and the backend's events) and [`Events`].
//! - [`turn`]: [`TurnRequest`], [`TurnSummary`], [`Usage`], the routing [`Route`].
//! - [`error`]: [`TurnError`] and its kinds, each with a message for the user.
//! - [`approval`]: approvals of effects ([`approval::ApprovalAsk`], [`approval::Decision`],
//!   the audit record, the [`approval::AskPerson`] interface).
//! - [`budget`]: spend caps: whose spend, over which period, the notice a chat gets.
//! - [`question`]: "Remember this?" ([`Question`], [`Answered`]).
//! - [`message`]: [`Role`], [`ContextMessage`].
//! - [`records`]: what the store keeps (messages, runs, sessions, inbox entries, memories);
//!   [`learnings`], [`proposals`], [`jobs`], [`health`]: the records of those parts;
//!   [`memory`]: the limits of saved memories and what memory holds;
//!   [`analytics`]: the one aggregation of runs every report uses.
//! - [`store`]: [`StoreFailure`], what a store's interface reports when it cannot answer.
//! - [`pricing`]: what a run's tokens cost, while it runs.
//! - [`time`]: the wall clock and calendar dates.

pub mod access;
pub mod analytics;
pub mod approval;
pub mod budget;
pub mod dump;
pub mod error;
pub mod event;
pub mod health;
pub mod jobs;
pub mod learnings;
pub mod memory;
pub mod message;
pub mod op;
pub mod pricing;
pub mod proposals;
pub mod question;
pub mod records;
pub mod store;
pub mod time;
pub mod turn;

pub use error::{Severity, TurnError, TurnErrorKind};
pub use event::{Event, Events, Released};
pub use message::{ContextMessage, Role};
pub use op::{Author, Command, Op, Prepare, UserTurn};
pub use question::{Answered, Question};
pub use store::StoreFailure;
pub use turn::{
    RequestClass, Route, ToolCallRecord, TurnRequest, TurnSummary, Usage, WRITING_TOOLS,
};
