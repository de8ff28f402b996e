//! What a store's interface reports when it cannot answer. Each part of Valor defines the
//! store it needs as a trait of its own; every implementation (sled, PostgreSQL, the in-memory
//! fakes of the tests) answers with this.

/// A store that could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreFailure {
    /// What was asked is not allowed (a memory too long, an id too large): the caller's to fix;
    /// the text says what.
    #[error("{0}")]
    Invalid(String),
    /// The store failed (disk, database, corrupt data).
    #[error("the store failed: {0}")]
    Failed(String),
}

impl StoreFailure {
    pub fn failed(why: impl std::fmt::Display) -> StoreFailure {
        StoreFailure::Failed(why.to_string())
    }
}
