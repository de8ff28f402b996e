//! Valor's store. sled is the source of truth; one process owns the database and other
//! processes reach it through that process.
//!
//! - [`store`]: opening, the schema version and its migrations, flushing.
//! - [`records`]: the typed records kept: chat messages, Claude sessions per chat, runs
//!   (analytics), the process groups Valor started, saved memories and vectors.
//! - [`analytics`]: the one aggregation of runs (per day, model, class, chat; errors, tools).
//! - [`secret`]: random tokens and the memory API's token file.
//! - [`jobs`]: the scheduler's runs of each job (last run, outcome), kept across restarts.
//! - [`health`]: health kept over time: the monitor's samples a minute (a day) and a quarter hour (30 days).
//! - [`learnings`]: what chats taught Valor: category, confidence, times seen, retirement.
//! - [`proposals`]: memories proposed to a user ("Remember this?"), waiting for a yes.
//! - [`memory`]: long-term memory: links, learnings and insights, the locator of every
//!   searchable document, the persisted embedding queue and the vectors.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod commit;
mod error;
pub mod health;
pub mod jobs;
pub mod learnings;
pub mod memory;
pub mod proposals;
pub use valor_protocol::records;
mod ports;

pub mod store;

pub use error::StoreError;
pub use health::{HealthPoint, Resolution};
pub use jobs::{JobOutcome, JobRunRecord};
pub use learnings::{Category, LearningRecord, Retirement, confidence_for};
pub use memory::{InvalidMemory, MAX_MEMORY_TEXT, MemoryCounts};
pub use proposals::{LearningDraft, PROPOSAL_TTL_MS, PROPOSALS_KEPT_MS, Proposal, ProposalState};
pub use records::{
    ChatRecord, Document, InboxEntry, InboxFile, MemoryKind, MemoryRecord, ProcessRecord, RunError,
    RunRecord, SessionRecord, StoredMessage, StoredVector, headline,
};
pub use store::{DocumentListener, SCHEMA_VERSION, Store};
pub use valor_protocol::analytics::{self, RunAnalytics, RunTotals};
