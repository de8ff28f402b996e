//! The pool of connections every part of the store shares, and opening it.

use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;
use valor_memory::port::DocumentListener;
use valor_protocol::records::Document;

use crate::error::PgError;
use crate::schema;

/// How this node uses the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// This node's name: it holds leases and owns its process records by it.
    pub node_id: String,
    /// Connections at most (each node's own).
    pub pool_size: usize,
    /// How long a query waits for a free connection, and a connection to open.
    pub wait: Duration,
    /// Chats' Claude homes are on a filesystem every node mounts (`[cluster] shared_dir`): a
    /// chat's session resumes on any node. False: only on the node that made it.
    pub shared_sessions: bool,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions {
            node_id: "node".to_owned(),
            pool_size: 16,
            wait: Duration::from_secs(5),
            shared_sessions: false,
        }
    }
}

/// The PostgreSQL store; clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: Pool,
    pub(crate) options: Arc<PgOptions>,
    pub(crate) config: Arc<tokio_postgres::Config>,
    /// This process's name on its leases: the node and a mark of this start, so a restarted
    /// node never continues what its previous run held (it waits for those leases to run out).
    holder: Arc<String>,
    listener: Arc<Mutex<Option<DocumentListener>>>,
}

impl PgStore {
    /// Connects, checks pgvector and brings the schema up to date (under an advisory lock:
    /// nodes starting together migrate once). Nothing is started when this fails.
    pub async fn connect(url: &str, options: PgOptions) -> Result<PgStore, PgError> {
        let config =
            tokio_postgres::Config::from_str(url).map_err(|e| PgError::BadUrl(e.to_string()))?;
        let manager = Manager::from_config(
            config.clone(),
            tls()?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.wait))
            .create_timeout(Some(options.wait))
            .build()
            .map_err(|e| PgError::Connect(e.to_string()))?;
        let options_node = options.node_id.clone();
        let store = PgStore {
            pool,
            options: Arc::new(options),
            config: Arc::new(config),
            holder: Arc::new(holder_name(&options_node)),
            listener: Arc::default(),
        };
        let mut client = store.client().await?;
        schema::migrate(&mut client).await?;
        Ok(store)
    }

    /// This node's name.
    pub fn node_id(&self) -> &str {
        &self.options.node_id
    }

    /// The name this process holds leases by.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// A connection from the pool (held until dropped), for tools that run their own SQL
    /// (`valor doctor`, backups); [`PgError::PoolExhausted`] when none is free in time.
    pub async fn connection(&self) -> Result<Object, PgError> {
        self.client().await
    }

    /// A connection from the pool.
    pub(crate) async fn client(&self) -> Result<Object, PgError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Timeout(_) => {
                PgError::PoolExhausted(self.options.wait.as_millis() as u64)
            }
            other => PgError::from(other),
        })
    }

    pub(crate) fn set_listener(&self, listener: DocumentListener) {
        *self.listener.lock().unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }

    /// Tells the listener of documents written (after they committed).
    pub(crate) fn announce(&self, documents: &[Document]) {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(listener) = listener {
            for document in documents {
                listener(document);
            }
        }
    }
}

/// TLS by rustls with the web's roots: used when the URL asks for it (`sslmode=require`) or
/// the server offers it (`prefer`, the default); a server on loopback usually does not.
pub(crate) fn tls() -> Result<MakeRustlsConnect, PgError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| PgError::Connect(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn holder_name(node: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{node}#{}-{nanos:08x}", std::process::id())
}

/// Millisecond counts as the database keeps them (ids and times fit: both < 2^63).
pub(crate) fn db_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn from_db(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
