//! A database of its own for each test, in the cluster scripts/test started.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use valor_store_pg::{PgOptions, PgStore};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The server's URL (the `postgres` database), from the environment.
pub fn server_url() -> String {
    std::env::var("VALOR_TEST_DATABASE_URL").expect(
        "VALOR_TEST_DATABASE_URL is not set: run scripts/test, or start a server with \
         `scripts/postgres start DIR` and export the URL it prints",
    )
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (server, _) = url.rsplit_once('/').expect("a URL with a database");
    format!("{server}/{database}")
}

/// A new, empty database; its URL.
pub async fn fresh_database() -> String {
    let url = server_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!(
        "t_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("the test database server");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    with_database(&url, &name)
}

pub fn options(node: &str) -> PgOptions {
    PgOptions {
        node_id: node.to_owned(),
        pool_size: 8,
        wait: Duration::from_secs(5),
        shared_sessions: false,
    }
}

/// A store on a new database, as node `node`.
pub async fn store(node: &str) -> (PgStore, String) {
    let url = fresh_database().await;
    let store = PgStore::connect(&url, options(node)).await.unwrap();
    (store, url)
}
