//! Bad input and faults: a clear error and nothing lost.

use std::time::Duration;

use valor_memory::port::DocumentStore;
use valor_protocol::StoreFailure;
use valor_store_contract::message;
use valor_store_pg::{PgError, PgOptions, PgStore, SCHEMA_VERSION};

use crate::support::{fresh_database, options, server_url, store};

#[tokio::test]
async fn a_malformed_url_or_an_unreachable_server_is_a_clear_error_without_the_password() {
    let bad = PgStore::connect("mysql://nope", options("n")).await;
    assert!(matches!(bad, Err(PgError::BadUrl(_))), "{:?}", bad.err());

    let quick = PgOptions {
        wait: Duration::from_secs(2),
        ..options("n")
    };
    // Port 1 on loopback: nothing listens.
    let down = PgStore::connect("postgres://valor:hunter2secret@127.0.0.1:1/valor", quick).await;
    let error = down.err().expect("no server");
    let text = error.to_string();
    assert!(matches!(error, PgError::Connect(_)), "{text}");
    assert!(text.contains("cannot reach the database"), "{text}");
    assert!(
        !text.contains("hunter2secret"),
        "the password leaked: {text}"
    );
}

#[tokio::test]
async fn nodes_starting_together_migrate_once() {
    let url = fresh_database().await;
    let starts = (0..4).map(|n| PgStore::connect(&url, options(&format!("n{n}"))));
    let stores: Vec<PgStore> = futures_util::future::join_all(starts)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    let connection = stores[0].connection().await.unwrap();
    assert_eq!(
        valor_store_pg::schema::version(&connection).await.unwrap(),
        SCHEMA_VERSION
    );
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_valor_is_refused() {
    let (store, url) = store("n").await;
    let connection = store.connection().await.unwrap();
    connection
        .execute(
            "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
            &[],
        )
        .await
        .unwrap();
    let refused = PgStore::connect(&url, options("m")).await;
    match refused {
        Err(PgError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (99, SCHEMA_VERSION));
        }
        other => panic!("{:?}", other.err()),
    }
}

#[tokio::test]
async fn a_full_pool_is_a_clear_error_and_frees_up() {
    let url = fresh_database().await;
    let one = PgOptions {
        pool_size: 1,
        wait: Duration::from_millis(200),
        ..options("n")
    };
    let store = PgStore::connect(&url, one).await.unwrap();
    let held = store.connection().await.unwrap();
    let starved = store.recent_messages(1, 5).await;
    match starved {
        Err(StoreFailure::Failed(why)) => {
            assert!(why.contains("no database connection free"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    drop(held);
    assert!(store.recent_messages(1, 5).await.unwrap().is_empty());
}

#[tokio::test]
async fn connections_killed_under_the_store_fail_one_call_and_lose_nothing() {
    let (store, url) = store("n").await;
    let kept = store.append_message(message(3, "kept")).await.unwrap();
    let database = url.rsplit_once('/').unwrap().1.to_owned();
    let (admin, connection) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&database],
        )
        .await
        .unwrap();
    // The pool notices a dead connection when it is used: that call fails visibly...
    let mut failures = 0;
    let mut said = None;
    for _ in 0..10 {
        match store.recent_messages(3, 5).await {
            Ok(messages) => {
                said = Some(messages);
                break;
            }
            Err(StoreFailure::Failed(_)) => failures += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    // ...and the next one gets a new connection; what was committed is there.
    let said = said.expect("the store recovers");
    assert!(failures <= 8, "{failures} failures");
    assert_eq!(said.iter().map(|m| m.seq).collect::<Vec<_>>(), [kept]);
}
