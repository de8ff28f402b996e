//! Valor's store. sled is the source of truth; one process owns the database and other
//! processes reach it through that process.
//!
//! - [`store`]: opening, the schema version and its migrations, flushing.
//! - [`records`]: the typed records kept: chat messages, Claude sessions per chat, runs
//!   (analytics), and the process groups Valor started.

mod error;
pub mod records;
pub mod store;

pub use error::StoreError;
pub use records::{InboxEntry, ProcessRecord, RunError, RunRecord, SessionRecord, StoredMessage};
pub use store::{SCHEMA_VERSION, Store};
