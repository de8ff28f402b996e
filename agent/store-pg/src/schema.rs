//! The schema and its migrations. Every node runs [`migrate`] at start: under a transaction-
//! scoped advisory lock, so nodes starting together migrate once and the others wait, then see
//! the new version. A database migrated by a newer Valor is refused, not misread.

use deadpool_postgres::Object;

use crate::error::PgError;

/// The schema this Valor reads and writes.
pub const SCHEMA_VERSION: i64 = 4;

/// The advisory lock's key ("valorsch" as bytes): one migration at a time, cluster-wide.
const MIGRATION_LOCK: i64 = 0x76616c6f72736368;

/// Each version's statements, in order; version N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: [&str; 4] = [V1, V2, V3, V4];

const V1: &str = r#"
CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);

-- One id sequence for every searchable document (messages and saved memories), as in sled.
CREATE SEQUENCE document_ids;
CREATE TABLE documents (
    id bigint PRIMARY KEY,
    kind smallint NOT NULL,
    chat_id bigint,
    at_ms bigint NOT NULL,
    title text NOT NULL,
    text text NOT NULL,
    url text,
    -- Messages only: who said it and the update it came from (a retried update is stored once).
    role text,
    user_id bigint,
    username text,
    source text,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || text)) STORED
);
CREATE UNIQUE INDEX documents_source ON documents (source) WHERE source IS NOT NULL;
CREATE INDEX documents_chat_kind ON documents (chat_id, kind, id);
CREATE INDEX documents_kind ON documents (kind, id);
CREATE INDEX documents_tsv ON documents USING gin (tsv);

-- Documents to embed; a node takes a batch for a while (its model embeds them), so nodes
-- draining the queue together never embed the same document twice.
CREATE TABLE embed_queue (id bigint PRIMARY KEY, claimed_by text, claimed_until timestamptz);
-- The vector as the model made it (raw) and, for a 384-dimension model, as halfvec for the
-- HNSW index; the document's chat and kind copied so a filtered search needs no join.
CREATE TABLE vectors (
    id bigint PRIMARY KEY,
    model_id text NOT NULL,
    raw real[] NOT NULL,
    embedding halfvec(384),
    chat_id bigint,
    kind smallint
);
CREATE INDEX vectors_hnsw ON vectors USING hnsw (embedding halfvec_cosine_ops);

CREATE TABLE chats (
    chat_id bigint PRIMARY KEY,
    first_at_ms bigint NOT NULL,
    last_at_ms bigint NOT NULL,
    messages bigint NOT NULL DEFAULT 0,
    title text,
    conversation_start bigint NOT NULL DEFAULT 0
);

CREATE TABLE sessions (chat_id bigint PRIMARY KEY, body jsonb NOT NULL);
CREATE TABLE runs (
    started_at_ms bigint NOT NULL,
    chat_id bigint NOT NULL,
    node text NOT NULL,
    body jsonb NOT NULL,
    PRIMARY KEY (started_at_ms, chat_id)
);
CREATE TABLE turn_texts (
    started_at_ms bigint NOT NULL,
    chat_id bigint NOT NULL,
    body jsonb NOT NULL,
    PRIMARY KEY (started_at_ms, chat_id)
);
-- Process groups are a node's own: its reaper sees only its own.
CREATE TABLE processes (node text NOT NULL, pgid bigint NOT NULL, body jsonb NOT NULL, PRIMARY KEY (node, pgid));

CREATE TABLE learnings (
    id bigint PRIMARY KEY,
    chat_id bigint,
    number bigint NOT NULL,
    body jsonb NOT NULL
);
CREATE SEQUENCE proposal_ids;
CREATE TABLE proposals (
    id bigint PRIMARY KEY,
    chat_id bigint NOT NULL,
    state text NOT NULL,
    created_ms bigint NOT NULL,
    expires_ms bigint NOT NULL,
    body jsonb NOT NULL
);
CREATE INDEX proposals_pending ON proposals (expires_ms) WHERE state = 'pending';

-- Leases: one row per chat ('chat:<id>') and per leader role ('leader:<role>'). The holder
-- keeps it while it renews before expires_at (the database's clock); every change of holder
-- raises the epoch, and a write fenced by an older epoch is refused.
-- A chat's row is made (free: expired) when its first update is accepted.
CREATE TABLE leases (
    name text PRIMARY KEY,
    chat_id bigint UNIQUE,
    holder text NOT NULL,
    epoch bigint NOT NULL,
    expires_at timestamptz NOT NULL
);

-- The work queue: every accepted update, in order per chat, until its turn is done.
CREATE TABLE chat_updates (
    id bigserial PRIMARY KEY,
    chat_id bigint NOT NULL,
    update_id bigint NOT NULL UNIQUE,
    body jsonb NOT NULL,
    accepted_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    attempts int NOT NULL DEFAULT 0,
    -- The message the answer streams into (another node taking over edits it).
    reply_message_id bigint,
    done_at timestamptz
);
CREATE INDEX chat_updates_open ON chat_updates (chat_id, id) WHERE done_at IS NULL;

-- A scheduler slot runs once cluster-wide: the leader inserts it before running.
CREATE TABLE job_slots (
    job text NOT NULL,
    due_at_ms bigint NOT NULL,
    node text NOT NULL,
    epoch bigint NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, due_at_ms)
);

-- The Telegram users who paired.
CREATE TABLE paired_users (user_id bigint PRIMARY KEY, paired_at timestamptz NOT NULL DEFAULT now());

-- Nodes say they are alive (the cluster's list on /health and the dashboard).
CREATE TABLE nodes (
    node text PRIMARY KEY,
    role text NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at timestamptz NOT NULL
);
"#;

/// Version 2: the cluster's job log. A cluster-wide job's slot runs on one node; every node
/// reads when it last ran (its next due time, the catch-up after downtime) from here.
const V2: &str = r#"
CREATE TABLE job_runs (
    job text NOT NULL,
    started_ms bigint NOT NULL,
    node text NOT NULL,
    body jsonb NOT NULL,
    PRIMARY KEY (job, started_ms)
);
CREATE TABLE paused_jobs (job text PRIMARY KEY);
"#;

/// Version 3: the approvals audit log. The node that asks waits for the decision; a press on
/// another node writes it here (the first decision wins).
const V3: &str = r#"
CREATE TABLE approvals (
    id bigint PRIMARY KEY,
    chat_id bigint NOT NULL,
    decided boolean NOT NULL,
    body jsonb NOT NULL
);
CREATE INDEX approvals_chat ON approvals (chat_id, id DESC);
ALTER TABLE paired_users ADD COLUMN role text NOT NULL DEFAULT 'chatter';
"#;

/// Version 4: spend counters, one row per period and scope (`day:2026-12-08:chat:42`); every
/// node adds to the same ones.
const V4: &str = r#"
CREATE TABLE spend (
    counter text PRIMARY KEY,
    usd double precision NOT NULL DEFAULT 0,
    tokens bigint NOT NULL DEFAULT 0,
    allowed_usd double precision NOT NULL DEFAULT 0,
    allowed_tokens bigint NOT NULL DEFAULT 0,
    warned boolean NOT NULL DEFAULT false,
    stopped boolean NOT NULL DEFAULT false
);
"#;

/// Brings the schema up to [`SCHEMA_VERSION`]; refuses a newer one.
pub async fn migrate(client: &mut Object) -> Result<(), PgError> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    transaction
        .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
        .await
        .map_err(|e| PgError::NoPgvector(db_message(&e)))?;
    let found = version_in(&*transaction).await?;
    if found > SCHEMA_VERSION {
        return Err(PgError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, statements) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        tracing::info!(version, "migrating the database's schema");
        transaction.batch_execute(statements).await?;
        transaction
            .execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&version.to_string()],
            )
            .await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// The schema version the database has (0: none yet).
pub async fn version(client: &Object) -> Result<i64, PgError> {
    version_in(&***client).await
}

async fn version_in<C: tokio_postgres::GenericClient>(client: &C) -> Result<i64, PgError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('meta') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .await?;
    let Some(row) = row else { return Ok(0) };
    let text: String = row.get(0);
    text.parse().map_err(|_| PgError::Corrupt {
        what: "schema version",
        why: text,
    })
}

/// A database error's own message (tokio-postgres's Display says only "db error").
pub(crate) fn db_message(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map_or_else(|| error.to_string(), |db| db.message().to_owned())
}

/// What `valor doctor` reports of a database, read without changing it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// The server's version (`15.18 (Debian ...)`).
    pub server: String,
    /// pgvector's version, when the extension is installed in this database.
    pub pgvector: Option<String>,
    /// Whether the server has pgvector to install (`CREATE EXTENSION` would work).
    pub pgvector_available: bool,
    /// The schema's version (0: not migrated yet).
    pub schema_version: i64,
    /// Every lease (`leader:*`, `chat:*`) as it stands.
    pub leases: Vec<crate::lease::LeaseState>,
    /// Nodes heard from in the last `NODE_FRESH_SECS`.
    pub live_nodes: Vec<String>,
}

/// A node not heard from for this long is not counted as live.
pub const NODE_FRESH_SECS: i64 = 120;

/// Connects once (no pool, no migration) and reads what [`Inspection`] holds.
pub async fn inspect(url: &str, wait: std::time::Duration) -> Result<Inspection, PgError> {
    let mut config = <tokio_postgres::Config as std::str::FromStr>::from_str(url)
        .map_err(|e| PgError::BadUrl(e.to_string()))?;
    config.connect_timeout(wait);
    let (client, connection) = config
        .connect(crate::pool::tls()?)
        .await
        .map_err(|e| PgError::Connect(db_message(&e)))?;
    let driver = tokio::spawn(connection);
    let server: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    let pgvector = client
        .query_opt(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    let pgvector_available = client
        .query_opt(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'",
            &[],
        )
        .await?
        .is_some();
    let schema_version = version_in(&client).await?;
    let (leases, live_nodes) = if schema_version >= 1 {
        let leases = crate::lease::leases_named(&client, "").await?;
        let rows = client
            .query(
                "SELECT node FROM nodes
                 WHERE seen_at > clock_timestamp() - $1 * interval '1 second' ORDER BY node",
                &[&(NODE_FRESH_SECS as f64)],
            )
            .await?;
        (leases, rows.iter().map(|r| r.get(0)).collect())
    } else {
        (Vec::new(), Vec::new())
    };
    drop(client);
    driver.abort();
    Ok(Inspection {
        server,
        pgvector,
        pgvector_available,
        schema_version,
        leases,
        live_nodes,
    })
}
