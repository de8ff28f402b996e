//! What the PostgreSQL store reports. Its interfaces answer with [`StoreFailure`] as every
//! store does; opening, the queue and the leases say more.

use valor_protocol::StoreFailure;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL does not parse (its text is not repeated: it may hold a password).
    #[error("VALOR_DATABASE_URL is not a PostgreSQL URL: {0}")]
    BadUrl(String),
    #[error("cannot reach the database: {0}")]
    Connect(String),
    /// Every connection is in use and none came back in time.
    #[error(
        "no database connection free within {0} ms (pool_size too small, or the database is stuck)"
    )]
    PoolExhausted(u64),
    #[error("the database failed: {}", crate::schema::db_message(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error(
        "the pgvector extension is missing: {0} (install it: scripts/setup builds pgvector 0.8.0)"
    )]
    NoPgvector(String),
    /// A newer Valor migrated the database; this one would misread it.
    #[error(
        "the database's schema is version {found}, newer than this Valor's {supported}: upgrade Valor on this node"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("a stored {what} is unreadable: {why}")]
    Corrupt { what: &'static str, why: String },
    /// This node's lease ran out (another node holds it now): what it was about to commit is
    /// refused.
    #[error("the lease {name} is no longer held by this node (epoch {epoch})")]
    Fenced { name: String, epoch: i64 },
    #[error("{0}")]
    Invalid(String),
    /// A store interface's own failure, passed on.
    #[error("{0}")]
    Store(String),
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(error: deadpool_postgres::PoolError) -> PgError {
        match error {
            deadpool_postgres::PoolError::Timeout(_) => PgError::PoolExhausted(0),
            deadpool_postgres::PoolError::Backend(e) => PgError::Connect(e.to_string()),
            other => PgError::Connect(other.to_string()),
        }
    }
}

impl From<PgError> for StoreFailure {
    fn from(error: PgError) -> StoreFailure {
        match error {
            PgError::Invalid(why) => StoreFailure::Invalid(why),
            other => StoreFailure::failed(other),
        }
    }
}

/// A JSON column's value as a record.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    value: serde_json::Value,
) -> Result<T, PgError> {
    serde_json::from_value(value).map_err(|e| PgError::Corrupt {
        what,
        why: e.to_string(),
    })
}

/// A record as a JSON column's value.
pub(crate) fn encode<T: serde::Serialize>(
    what: &'static str,
    record: &T,
) -> Result<serde_json::Value, PgError> {
    serde_json::to_value(record).map_err(|e| PgError::Corrupt {
        what,
        why: e.to_string(),
    })
}
