//! Memory end to end on a tiny generated BERT: embedding from the persisted queue, hybrid and
//! keyword search, filters, restart, a damaged index, a changed model, a missing model, export
//! and import, hostile input, and a writer killed with SIGKILL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use valor_core::recall::Recall;
use valor_memory::transfer;
use valor_memory::turn::MemoryHealth;
use valor_memory::{Filter, Memory, MemorySettings, MemoryState, Query, SearchMode};
use valor_monitor::{HealthComponent, Status};
use valor_protocol::Role;
use valor_store::{MemoryKind, MemoryRecord, Store, StoredMessage};

pub(crate) struct Setup {
    dir: tempfile::TempDir,
    model: PathBuf,
}

impl Setup {
    pub(crate) fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        valor_embed::tiny::write_tiny_model(&model, 1).unwrap();
        Setup { dir, model }
    }

    fn store_path(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn open_with(&self, model: &Path) -> Opened {
        let store = Store::open(&self.store_path()).unwrap();
        let memory = Memory::open(
            Arc::new(store.clone()),
            MemorySettings::beside(&self.store_path(), model.to_owned()),
        )
        .unwrap();
        Opened { memory, store }
    }

    pub(crate) fn open(&self) -> Opened {
        self.open_with(&self.model)
    }
}

/// Memory over a sled store, with the store at hand for arranging and checking.
#[derive(Clone)]
pub(crate) struct Opened {
    pub(crate) memory: Memory,
    pub(crate) store: Store,
}

impl Opened {
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }
}

impl std::ops::Deref for Opened {
    type Target = Memory;
    fn deref(&self) -> &Memory {
        &self.memory
    }
}

pub(crate) fn message(chat_id: i64, text: &str, at_ms: u64) -> StoredMessage {
    StoredMessage {
        chat_id,
        seq: 0,
        role: Role::User,
        text: text.to_owned(),
        at_ms,
        user_id: Some(1),
        username: Some("ann".to_owned()),
        source: None,
    }
}

pub(crate) fn saved(
    kind: MemoryKind,
    chat_id: Option<i64>,
    title: &str,
    text: &str,
) -> MemoryRecord {
    MemoryRecord {
        id: 0,
        kind,
        chat_id,
        at_ms: 5_000,
        title: title.to_owned(),
        text: text.to_owned(),
        url: None,
    }
}

/// A few chats' worth of documents; returns the id of the billing message.
pub(crate) fn fill(memory: &Opened) -> u64 {
    let store = memory.store();
    let billing = store
        .append_message(
            message(1, "the billing service crashes on empty carts", 1_000),
            true,
        )
        .unwrap()
        .seq;
    store
        .append_message(message(1, "book a table for friday", 2_000), true)
        .unwrap();
    store
        .append_message(message(2, "billing in chat two is private", 3_000), true)
        .unwrap();
    store
        .save_memory(saved(
            MemoryKind::Link,
            Some(1),
            "Tokio tutorial",
            "async rust with tokio",
        ))
        .unwrap();
    store
        .save_memory(saved(
            MemoryKind::Insight,
            None,
            "Billing errors",
            "billing timeout errors doubled this week",
        ))
        .unwrap();
    billing
}

pub(crate) async fn embed_all(memory: &Memory) {
    memory.work_until_idle(&|_, _| {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_embedded_from_the_queue_and_found_by_hybrid_search_with_filters() {
    let setup = Setup::new();
    let memory = setup.open();
    let billing = fill(&memory);
    // Before any embedding: keywords answer at once.
    let early = memory
        .search(&Query::new("billing crashes", 5))
        .await
        .unwrap();
    assert_eq!(early.mode, SearchMode::KeywordOnly);
    assert_eq!(early.hits[0].id, billing);

    embed_all(&memory).await;
    assert_eq!(memory.state(), MemoryState::Ready);
    let counts = memory.counts();
    assert_eq!((counts.vectors, counts.queued), (5, 0));
    assert_eq!(memory.indexed_vectors(), 5);

    // The tiny model's vectors carry little meaning: the keyword match stays near the top and
    // every hit now has a similarity from the vector ranking.
    let result = memory
        .search(&Query::new("billing crashes", 5))
        .await
        .unwrap();
    assert_eq!(result.mode, SearchMode::Hybrid);
    assert!(
        result.hits[..2]
            .iter()
            .any(|h| h.id == billing && h.keyword_match),
        "{result:?}"
    );
    assert!(result.hits.iter().all(|h| h.similarity.is_some()));

    let in_chat_one = Query {
        text: "billing".to_owned(),
        filter: Filter {
            chat_id: Some(1),
            ..Filter::default()
        },
        limit: 10,
    };
    let hits = memory.search(&in_chat_one).await.unwrap().hits;
    assert!(hits.iter().all(|h| h.chat_id == Some(1)), "{hits:?}");
    let insights = Query {
        text: "billing".to_owned(),
        filter: Filter {
            kinds: vec![MemoryKind::Insight],
            ..Filter::default()
        },
        limit: 10,
    };
    let hits = memory.search(&insights).await.unwrap().hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].kind, MemoryKind::Insight);
    let early_only = Query {
        text: "billing".to_owned(),
        filter: Filter {
            until_ms: Some(2_500),
            ..Filter::default()
        },
        limit: 10,
    };
    assert!(
        memory
            .search(&early_only)
            .await
            .unwrap()
            .hits
            .iter()
            .all(|h| h.at_ms < 2_500)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_recalls_its_own_chat_and_shared_memories_only() {
    let setup = Setup::new();
    let memory = setup.open();
    let billing = fill(&memory);
    embed_all(&memory).await;
    let recalled = memory.recall(1, "billing errors", &[]).await;
    let ids: Vec<u64> = recalled.iter().map(|r| r.id).collect();
    assert!(ids.contains(&billing), "{recalled:?}");
    assert!(
        recalled.iter().any(|r| r.kind == "insight"),
        "shared insight: {recalled:?}"
    );
    assert!(
        recalled.iter().all(|r| !r.title.contains("private")),
        "another chat's message leaked: {recalled:?}"
    );
    // What the prompt already carries is left out.
    let again = memory.recall(1, "billing errors", &[billing]).await;
    assert!(again.iter().all(|r| r.id != billing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_gets_its_chats_and_shared_active_learnings_by_confidence() {
    use valor_store::{Category, LearningRecord};
    let setup = Setup::new();
    let memory = setup.open();
    let store = memory.store();
    let learn = |chat: Option<i64>, text: &str, manual: bool| {
        let record = LearningRecord::new(chat, Category::Decision, text, "tg:1", manual, 5);
        store.add_learning(record).unwrap()
    };
    learn(Some(1), "Ours, seen once", false);
    learn(Some(1), "Ours, typed by hand", true);
    learn(None, "Shared by every chat", false);
    learn(Some(2), "Another chat's", false);
    let retired = learn(Some(1), "Ours, retired", true);
    store
        .retire_learning(retired.id, "forgotten", None, 6)
        .unwrap();
    let texts: Vec<String> = memory
        .learnings(1)
        .await
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(
        texts,
        [
            "Ours, typed by hand",
            "Ours, seen once",
            "Shared by every chat"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_survives_a_restart_and_a_damaged_one_is_rebuilt_from_the_store() {
    let setup = Setup::new();
    {
        let memory = setup.open();
        fill(&memory);
        embed_all(&memory).await;
    }
    let index_dir = MemorySettings::beside(&setup.store_path(), setup.model.clone()).index_dir;
    assert!(index_dir.join("index.json").is_file());

    let memory = setup.open();
    memory.prepare().await;
    assert_eq!(memory.indexed_vectors(), 5);
    embed_all(&memory).await;
    assert_eq!(
        memory.embedded(),
        0,
        "nothing embedded twice after a restart"
    );
    // A run that wrote a vector and died before saving the index: its mark makes the next
    // start add the vector from the store.
    let late = memory
        .store()
        .append_message(message(3, "written after the last save", 4_000), false)
        .unwrap()
        .seq;
    let vector = memory
        .embed(&["written after the last save"])
        .unwrap()
        .remove(0);
    let model_id = memory.model_id().unwrap();
    drop(memory);
    std::fs::write(index_dir.join("unsaved"), b"").unwrap();
    {
        let store = valor_store::Store::open(&setup.store_path()).unwrap();
        store
            .put_vectors(&[(late, valor_store::StoredVector { model_id, vector })])
            .unwrap();
    }
    let memory = setup.open();
    memory.prepare().await;
    assert_eq!(memory.indexed_vectors(), 6);
    assert_eq!(memory.embedded(), 0);
    drop(memory);

    // Damage the saved vectors: the checksum catches it and the index is rebuilt from sled.
    let vectors = index_dir.join("vectors.bin");
    let mut bytes = std::fs::read(&vectors).unwrap();
    bytes[10] ^= 0x40;
    std::fs::write(&vectors, bytes).unwrap();
    let memory = setup.open();
    memory.prepare().await;
    assert_eq!(memory.indexed_vectors(), 6);
    assert_eq!(memory.embedded(), 0);
    let hits = memory.search(&Query::new("tokio", 3)).await.unwrap();
    assert_eq!(hits.mode, SearchMode::Hybrid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_model_reindexes_everything_and_a_missing_one_leaves_keywords() {
    let setup = Setup::new();
    {
        let memory = setup.open();
        fill(&memory);
        embed_all(&memory).await;
    }
    let other = setup.dir.path().join("other-model");
    valor_embed::tiny::write_tiny_model(&other, 2).unwrap();
    let memory = setup.open_with(&other);
    memory.prepare().await;
    assert!(
        matches!(memory.state(), MemoryState::ModelMismatch { .. }),
        "{:?}",
        memory.state()
    );
    let health = MemoryHealth(memory.memory.clone()).check();
    assert_eq!(health.0, Status::Degraded);
    embed_all(&memory).await;
    assert_eq!(memory.state(), MemoryState::Ready);
    let model = memory.model_id().unwrap();
    let mut models = Vec::new();
    memory
        .store()
        .walk_vectors(|_, v| {
            models.push(v.model_id);
            true
        })
        .unwrap();
    assert_eq!(models.len(), 5);
    assert!(models.iter().all(|m| *m == model));
    drop(memory);

    // No model at all: keyword search, a clear reason on /health, and recall still answers.
    let memory = setup.open_with(&setup.dir.path().join("no-model"));
    memory.prepare().await;
    let (status, figures) = MemoryHealth(memory.memory.clone()).check();
    assert_eq!(status, Status::Degraded);
    assert_eq!(figures["search"], "keyword_only");
    assert!(
        figures["reason"]
            .as_str()
            .unwrap()
            .contains("scripts/setup")
    );
    let result = memory.search(&Query::new("tokio", 3)).await.unwrap();
    assert_eq!(result.mode, SearchMode::KeywordOnly);
    assert_eq!(result.hits[0].title, "Tokio tutorial");
    assert!(!memory.recall(1, "tokio", &[]).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_worker_embeds_new_documents_without_being_asked() {
    let setup = Setup::new();
    let memory = setup.open();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(memory.memory.clone().run_worker(shutdown.clone()));
    fill(&memory);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while memory.counts().vectors < 5 || memory.state() != MemoryState::Ready {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            memory.counts()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    worker.await.unwrap();
    drop(memory);
    // The worker saved the index on its way out.
    let memory = setup.open();
    memory.prepare().await;
    assert_eq!(memory.indexed_vectors(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_queued_record_is_set_aside_and_does_not_block_the_queue() {
    let setup = Setup::new();
    let memory = setup.open();
    memory.prepare().await;
    memory
        .store()
        .put_raw_memory(MemoryKind::Link, 7_000, b"\x00 not a record")
        .unwrap();
    fill(&memory);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(memory.memory.clone().run_worker(shutdown.clone()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while memory.counts().vectors < 5 || memory.set_aside() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}, set aside {}",
            memory.counts(),
            memory.set_aside()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(memory.counts().queued, 0, "{:?}", memory.counts());
    assert_eq!(memory.set_aside(), 1);
    shutdown.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_is_exact_and_bad_files_import_nothing() {
    let setup = Setup::new();
    let memory = setup.open();
    fill(&memory);
    let mut exported = Vec::new();
    let moved = transfer::export(memory.store(), &mut exported)
        .await
        .unwrap();
    assert_eq!((moved.messages, moved.memories), (3, 2));

    let target = tempfile::tempdir().unwrap();
    let store = Store::open(target.path()).unwrap();
    transfer::import(&store, &mut exported.as_slice())
        .await
        .unwrap();
    let mut again = Vec::new();
    transfer::export(&store, &mut again).await.unwrap();
    assert_eq!(
        String::from_utf8(again).unwrap(),
        String::from_utf8(exported.clone()).unwrap()
    );
    // Imported documents are queued for embedding and new ids come after theirs.
    assert_eq!(store.memory_counts().queued, 5);

    let empty = tempfile::tempdir().unwrap();
    let store = Store::open(empty.path()).unwrap();
    let mut bad = exported.clone();
    bad.extend_from_slice(b"{\"type\":\"memory\",\"id\":0,\"kind\":\"link\",\"chat_id\":null,\"at_ms\":1,\"title\":\"t\",\"text\":\"\"}\n");
    bad.extend_from_slice(&[0xff, 0xfe, b'\n']);
    let err = transfer::import(&store, &mut bad.as_slice())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2 bad line(s), the first: line 6: a link needs a text"),
        "{err}"
    );
    let err = transfer::import(&store, &mut &b"\n{not json\n"[..])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2: not a memory line"), "{err}");
    let err = transfer::import(&store, &mut &[b'{', 0xc3, b'\n'][..])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 1: not UTF-8"), "{err}");
    assert_eq!(store.memory_counts().documents(), 0, "nothing imported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_cannot_overwrite_another_chats_documents_or_push_ids_too_far() {
    let setup = Setup::new();
    let memory = setup.open();
    let store = memory.store();
    // A fresh store's first id is 0, which an import line takes as "give me a new id".
    store
        .save_memory(saved(MemoryKind::Link, None, "first", "the first"))
        .unwrap();
    let victim = store
        .save_memory(saved(
            MemoryKind::Link,
            Some(7),
            "chat 7's link",
            "private to chat 7",
        ))
        .unwrap();
    let line = |id: u64, chat: i64, kind: &str| {
        format!(
            "{{\"type\":\"memory\",\"id\":{id},\"kind\":\"{kind}\",\"chat_id\":{chat},\"at_ms\":1,\"title\":\"t\",\"text\":\"planted\"}}\n"
        )
    };
    for (bad, expected) in [
        (line(victim.id, 8, "link"), "already another chat's"),
        (
            line(victim.id, 7, "insight"),
            "already another chat's or another kind's",
        ),
        (line(u64::MAX, 8, "link"), "beyond the largest"),
        (
            format!("{}{}", line(900, 8, "link"), line(900, 9, "link")),
            "stands twice",
        ),
    ] {
        let result = transfer::import(store, &mut bad.as_bytes()).await;
        let err = match result {
            Err(e) => e.to_string(),
            Ok(moved) => panic!("{bad} was imported: {moved:?}"),
        };
        assert!(err.contains(expected), "{bad}: {err}");
    }
    let kept = store.memory_record(victim.id).unwrap().unwrap();
    assert_eq!(kept.text, "private to chat 7");
    assert_eq!(kept.chat_id, Some(7));
    assert!(
        store.memory_record(900).unwrap().is_none(),
        "nothing imported"
    );
    // The same chat's own line imports again, the same.
    transfer::import(store, &mut line(victim.id, 7, "link").as_bytes())
        .await
        .unwrap();
    // New ids still work after the refused ones.
    let next = store
        .save_memory(saved(MemoryKind::Link, Some(7), "next", "a later link"))
        .unwrap();
    assert!(next.id > victim.id && next.id < 1 << 48, "{}", next.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_huge_inputs_are_handled() {
    let setup = Setup::new();
    let memory = setup.open();
    let huge = format!("{} billing", "word ".repeat(200_000));
    let id = memory
        .store()
        .append_message(message(1, &huge, 1), true)
        .unwrap()
        .seq;
    memory
        .store()
        .append_message(message(1, "", 2), true)
        .unwrap();
    embed_all(&memory).await;
    assert_eq!(memory.counts().vectors, 2);
    assert!(
        memory
            .search(&Query::new("", 5))
            .await
            .unwrap()
            .hits
            .is_empty()
    );
    let result = memory.search(&Query::new(huge.clone(), 5)).await.unwrap();
    assert_eq!(result.hits[0].id, id);
    assert!(result.hits[0].snippet.len() < 400);
}

/// Not a test on its own: the writer the SIGKILL test runs in a child process.
#[test]
#[ignore = "the writer process of a_writer_killed_mid_write_loses_nothing_it_acknowledged"]
fn child_writer() {
    let Ok(path) = std::env::var("VALOR_TEST_WRITER_STORE") else {
        return;
    };
    let store = Store::open(Path::new(&path)).unwrap();
    for i in 0.. {
        let record = store
            .save_memory(saved(
                MemoryKind::Learning,
                Some(1),
                &format!("learning {i}"),
                "tokio billing",
            ))
            .unwrap();
        println!("acked {}", record.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_mid_write_loses_nothing_it_acknowledged() {
    let setup = Setup::new();
    {
        let memory = setup.open();
        fill(&memory);
        embed_all(&memory).await;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "memory::child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VALOR_TEST_WRITER_STORE", setup.store_path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 300 {
        let line = lines.next().unwrap().unwrap();
        if let Some(id) = line.strip_prefix("acked ") {
            acked.push(id.parse::<u64>().unwrap());
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let memory = setup.open();
    for id in &acked {
        assert!(memory.store().document(*id).unwrap().is_some(), "lost {id}");
    }
    embed_all(&memory).await;
    assert!(memory.counts().vectors >= 5 + 300);
    assert_eq!(memory.indexed_vectors() as u64, memory.counts().vectors);
    let hits = memory
        .search(&Query {
            text: "learning".to_owned(),
            filter: Filter {
                kinds: vec![MemoryKind::Learning],
                ..Filter::default()
            },
            limit: 5,
        })
        .await
        .unwrap();
    assert_eq!(hits.mode, SearchMode::Hybrid);
    assert_eq!(hits.hits.len(), 5);
}

#[tokio::test]
async fn an_unauthenticated_64_mb_upload_is_refused_without_being_read() {
    use futures_util::StreamExt as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = Store::open(&path).unwrap();
    let memory = Memory::open(
        Arc::new(store),
        MemorySettings::beside(&path, dir.path().join("no-model")),
    )
    .unwrap();
    let app = valor_memory::api::router(memory, "the-right-token".to_owned());
    for (auth, route) in [
        (None, "/memory/import"),
        (Some("Bearer wrong-token"), "/memory/import"),
        (Some("Bearer the-right-tokeX"), "/memory/save"),
    ] {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&pulled);
        // 64 chunks of 1 MiB, made only as the server reads them.
        let body = futures_util::stream::iter(0..64).map(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(vec![b'x'; 1 << 20]))
        });
        let mut request =
            axum::http::Request::post(route).header("content-length", (64u64 << 20).to_string());
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let request = request.body(axum::body::Body::from_stream(body)).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        assert_eq!(
            pulled.load(Ordering::SeqCst),
            0,
            "{auth:?}: the body was read"
        );
    }
    // The right token gets through (and the body is read).
    let request = axum::http::Request::get("/memory/stats")
        .header("authorization", "Bearer the-right-token")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(request).await.unwrap().status(), 200);
}
