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

/// A private server of this test's own (it is stopped and started again).
fn private_server(dir: &std::path::Path, port: u16, command: &str) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres");
    let out = std::process::Command::new(script)
        .args([command, dir.join("pg").to_str().unwrap(), &port.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn the_database_down_mid_turn_fails_the_write_visibly_and_the_turn_is_retried() {
    use std::os::unix::fs::PermissionsExt as _;
    use valor_protocol::records::InboxEntry;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = private_server(dir.path(), port, "start");
    let quick = PgOptions {
        wait: Duration::from_secs(2),
        ..options("w1")
    };
    let store = PgStore::connect(&url, quick.clone()).await.unwrap();
    let entry = InboxEntry {
        update_id: 1,
        chat_id: 7,
        user_id: 1,
        username: None,
        text: "hello".to_owned(),
        private: true,
        chat_title: None,
        file: None,
    };
    store.accept_update(&entry).await.unwrap();
    let lease = Duration::from_secs(2);
    let chat = store.claim_chats(1, lease).await.unwrap().remove(0);
    let turn = store.next_update(&chat).await.unwrap().unwrap();

    // The database goes away while the turn runs: marking it done fails, visibly.
    private_server(dir.path(), port, "stop");
    let failed = store.finish_update(&chat, turn.id, None, lease).await;
    assert!(
        matches!(
            failed,
            Err(PgError::Connect(_) | PgError::Database(_) | PgError::PoolExhausted(_))
        ),
        "{failed:?}"
    );

    // Back: the pool recovers, the update is still open, and after the lease it is retried.
    private_server(dir.path(), port, "start");
    let mut open = None;
    for _ in 0..20 {
        if let Ok(n) = store.open_updates().await {
            open = Some(n);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(open, Some(1), "nothing lost");
    tokio::time::sleep(lease).await;
    let other = PgStore::connect(&url, options("w2")).await.unwrap();
    let again = other.claim_chats(1, lease).await.unwrap().remove(0);
    let retried = other.next_update(&again).await.unwrap().unwrap();
    assert_eq!((retried.id, retried.attempts), (turn.id, 2));
    other
        .finish_update(&again, retried.id, None, lease)
        .await
        .unwrap();
    assert_eq!(other.open_updates().await.unwrap(), 0);
    private_server(dir.path(), port, "stop");
}
