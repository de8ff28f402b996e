//! Valor's memory search. The store holds every document, vector and the embedding queue;
//! this crate keeps the search indexes in step with it and answers queries.
//!
//! - [`port`]: the store memory needs ([`MemoryStore`]: documents, embeddings, the archive),
//!   async; sled's implementation is in valor-store, an in-memory one in [`fake`].
//! - [`service`]: [`Memory`], the indexes, searching, and the background worker that embeds
//!   queued documents and keeps the vector index saved.
//! - [`keyword`]: BM25 keyword search, which works with no model at all.
//! - [`vector`]: the HNSW vector index in memory-mapped files beside the store, checked on
//!   reload.
//! - [`search`]: queries, hits and reciprocal-rank fusion.
//! - [`query_cache`]: the latest queries' embeddings, computed once for recall and the watcher.
//! - [`catalogue`]: kind, chat and time of each document, for filters.
//! - [`turn`]: memory for a turn's prompt (the engine's `Recall`) and the `/health` component.
//! - [`disclosure`]: the three layers of the `memory` tools: index, timeline, full records.
//! - [`history`]: a chat's history as tools read it (search, or messages since a time).
//! - [`api`]: the HTTP routes other processes reach memory through while the agent owns it.
//! - [`client`]: the client of those routes, for `valor` commands while `valor run` owns the
//!   store.
//! - [`transfer`]: JSONL export and import.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod api;
pub mod catalogue;
pub mod client;
pub mod disclosure;
pub mod fake;
pub mod history;
pub mod keyword;
pub mod port;
pub mod query_cache;
pub mod search;
pub mod service;
pub mod transfer;
pub mod turn;
pub mod vector;

pub use catalogue::Filter;
pub use port::{DocumentStore, EmbeddingStore, MemoryArchive, MemoryStore};
pub use search::{Hit, Query, SearchMode, SearchResult};
pub use service::{Memory, MemoryError, MemorySettings, MemoryState};
