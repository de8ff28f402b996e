//! Valor's shared store for several machines: PostgreSQL 15 with pgvector 0.8, behind the same
//! store interfaces as the embedded sled store, plus what only a shared store can do.
//!
//! - [`PgStore`]: a pool of connections; opening it checks pgvector and runs the migrations
//!   under an advisory lock (several nodes start at once) ([`schema`]).
//! - The store interfaces: the conversation and the session ledger ([`conversation`]),
//!   memory's documents, embedding queue, vectors and archive ([`memory`]), learnings and
//!   questions ([`learn`]), the Telegram channel's inbox, paired users and questions
//!   ([`telegram`]).
//! - [`search`]: memory search across nodes: an HNSW index over `halfvec(384)` and a
//!   `tsvector` GIN index, fused by reciprocal rank as the embedded search does.
//! - [`queue`]: the per-chat work queue: one lease row per chat, claimed with
//!   `FOR UPDATE SKIP LOCKED`, expiring by the database's clock and fenced by an epoch.
//! - [`leader`]: leader leases (the Telegram poller, the scheduler, the webhook) in the same
//!   table, and the scheduler's slots, each run once cluster-wide.
//! - [`wake`]: `LISTEN/NOTIFY`: new work and Stop reach every node at once.
//! - [`spend`]: the spend counters every node adds to (`[budget]`'s caps).
//! - [`jobs`]: the scheduler's job log for the cluster's jobs (every node reads their last run).
//! - [`view`]: what the operator's views read of the whole cluster.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod approvals;
pub mod conversation;
mod error;
pub mod intake;
pub mod jobs;
pub mod leader;
pub mod learn;
pub mod lease;
pub mod memory;
mod pool;
pub mod queue;
pub mod schema;
pub mod search;
pub mod spend;
pub mod telegram;
pub mod transfer;
pub mod view;
pub mod wake;

pub use error::PgError;
pub use pool::{PgOptions, PgStore};
pub use schema::SCHEMA_VERSION;
