use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store at {} is in use by another process (is another Valor running?)",
        path.display()
    )]
    Locked { path: PathBuf },

    #[error("cannot open the store at {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    #[error(
        "the store at {} has schema version {found}, newer than this Valor understands \
         ({supported}); upgrade Valor or point [store] path elsewhere",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("store operation failed: {0}")]
    Db(#[from] sled::Error),

    #[error("{0}")]
    Invalid(#[from] crate::memory::InvalidMemory),

    #[error("a stored {what} record cannot be read: {source}")]
    Corrupt {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// Writing to disk (the committer) or a task of the store failed.
    #[error("the store could not finish: {0}")]
    Io(String),
}

impl From<StoreError> for valor_protocol::StoreFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(invalid) => {
                valor_protocol::StoreFailure::Invalid(invalid.to_string())
            }
            other => valor_protocol::StoreFailure::Failed(other.to_string()),
        }
    }
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Locked { .. } | StoreError::Db(_) | StoreError::Io(_)
        )
    }
}
