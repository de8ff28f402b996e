//! The cluster's figures on a real PostgreSQL: `cargo bench -p valor-store-pg --bench cluster`
//! (it starts a throwaway server with scripts/postgres unless VALOR_TEST_DATABASE_URL names one).
//!
//! 1. Queue overhead: an update accepted → its turn started on an idle worker (woken by
//!    NOTIFY), p50 and p99 of 400.
//! 2. Drain: 120 chats × 3 turns, each turn waiting 2 s on "the model", by 1, 2 and 3 workers
//!    with the same concurrency limit each: the speed-up from 1 to 3.
//! 3. Failover: a worker dies holding a chat; how long until another worker starts its turn.
//! 4. Memory search at 100,000 documents with the query's embedding: p50 and p99 of 200.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use valor_memory::Filter;
use valor_memory::port::{DocumentStore, EmbeddingStore};
use valor_protocol::records::{InboxEntry, MemoryKind, MemoryRecord, StoredVector};
use valor_store_pg::search::PgQuery;
use valor_store_pg::wake::Wake;
use valor_store_pg::{PgOptions, PgStore};

const LEASE: Duration = Duration::from_secs(5);

fn entry(update_id: i64, chat_id: i64) -> InboxEntry {
    InboxEntry {
        update_id,
        chat_id,
        user_id: 1,
        username: None,
        text: format!("update {update_id}"),
        private: true,
        chat_title: None,
        file: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The server: the one named, or a throwaway one (stopped when dropped).
struct Server {
    url: String,
    dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres");
            let _ = std::process::Command::new(script)
                .args(["stop", dir.path().join("pg").to_str().unwrap()])
                .status();
        }
    }
}

fn server() -> Server {
    if let Ok(url) = std::env::var("VALOR_TEST_DATABASE_URL") {
        return Server { url, dir: None };
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres");
    let out = std::process::Command::new(script)
        .args(["start", dir.path().join("pg").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    Server {
        url,
        dir: Some(dir),
    }
}

async fn database(server: &Server, name: &str) -> String {
    let (client, connection) = tokio_postgres::connect(&server.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    format!("{}/{name}", server.url.rsplit_once('/').unwrap().0)
}

async fn node(url: &str, name: &str, pool: usize) -> PgStore {
    let options = PgOptions {
        node_id: name.to_owned(),
        pool_size: pool,
        wait: Duration::from_secs(30),
        shared_sessions: false,
    };
    PgStore::connect(url, options).await.unwrap()
}

async fn queue_overhead(server: &Server) {
    let url = database(server, "bench_queue").await;
    let ingress = node(&url, "in", 4).await;
    let worker = node(&url, "w", 4).await;
    let mut wakes = worker.listen().await.unwrap();
    let mut took = Vec::new();
    for n in 0..400_i64 {
        let chat = n % 40;
        let started = Instant::now();
        ingress.accept_update(&entry(n + 1, chat)).await.unwrap();
        // The idle worker: woken, claims the chat, takes the update (its turn starts).
        loop {
            match wakes.recv().await {
                Some(Wake::Work { .. }) => break,
                Some(Wake::Stop { .. }) => {}
                None => panic!("the notifications stopped"),
            }
        }
        let held = worker.claim_chats(1, LEASE).await.unwrap().remove(0);
        let turn = worker.next_update(&held).await.unwrap().unwrap();
        took.push(started.elapsed());
        worker
            .finish_update(&held, turn.id, None, LEASE)
            .await
            .unwrap();
        worker.release_chat(&held).await.unwrap();
    }
    took.sort();
    println!(
        "queue overhead (accepted → turn started, idle worker): p50 {:.1} ms, p99 {:.1} ms (targets ≤ 20, ≤ 100)",
        percentile(&took, 0.5).as_secs_f64() * 1e3,
        percentile(&took, 0.99).as_secs_f64() * 1e3
    );
}

/// One worker: claims chats up to `limit` turns at once, each turn waiting `model`.
async fn worker_loop(
    store: PgStore,
    limit: usize,
    model: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let running = Arc::new(tokio::sync::Semaphore::new(limit));
    let held = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    while !stop.is_cancelled() {
        let free = running.available_permits();
        let claimed = if free > 0 {
            store.claim_chats(free, LEASE).await.unwrap()
        } else {
            Vec::new()
        };
        let mut took = false;
        for chat in claimed {
            if !held.lock().unwrap().insert(chat.chat_id) {
                continue;
            }
            took = true;
            let permit = Arc::clone(&running).acquire_owned().await.unwrap();
            let (store, held) = (store.clone(), Arc::clone(&held));
            tokio::spawn(async move {
                while let Some(turn) = store.next_update(&chat).await.unwrap() {
                    tokio::time::sleep(model).await;
                    store
                        .finish_update(&chat, turn.id, None, LEASE)
                        .await
                        .unwrap();
                }
                store.release_chat(&chat).await.unwrap();
                held.lock().unwrap().remove(&chat.chat_id);
                drop(permit);
            });
        }
        if !took {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn drain(server: &Server, workers: usize) -> Duration {
    let url = database(server, &format!("bench_drain_{workers}")).await;
    let ingress = node(&url, "in", 4).await;
    let mut update = 0;
    for turn in 0..3 {
        for chat in 0..120 {
            update += 1;
            let _ = turn;
            ingress.accept_update(&entry(update, chat)).await.unwrap();
        }
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    for n in 0..workers {
        let store = node(&url, &format!("w{n}"), 12).await;
        tokio::spawn(worker_loop(store, 10, Duration::from_secs(2), stop.clone()));
    }
    // A worker's task that failed would leave updates open for ever: bounded.
    while ingress.open_updates().await.unwrap() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the drain stalled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    stop.cancel();
    took
}

async fn failover(server: &Server) -> Duration {
    let url = database(server, "bench_failover").await;
    let dead = node(&url, "dead", 2).await;
    let alive = node(&url, "alive", 2).await;
    dead.accept_update(&entry(1, 7)).await.unwrap();
    let held = dead.claim_chats(1, LEASE).await.unwrap().remove(0);
    dead.next_update(&held).await.unwrap().unwrap();
    // It dies here (no release); the other worker looks every second, as the channel does.
    let died = Instant::now();
    loop {
        if let Some(chat) = alive.claim_chats(1, LEASE).await.unwrap().pop() {
            alive.next_update(&chat).await.unwrap().unwrap();
            return died.elapsed();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn unit(seed: u64) -> Vec<f32> {
    let mut rng = valor_fakes::corpus::Rng::new(seed);
    let raw: Vec<f32> = (0..384)
        .map(|_| (rng.below(2001) as f32 - 1000.0) / 1000.0)
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    raw.iter().map(|x| x / norm).collect()
}

async fn search(server: &Server) {
    const DOCUMENTS: usize = 100_000;
    let url = database(server, "bench_search").await;
    let store = node(&url, "a", 8).await;
    let started = Instant::now();
    // Loaded without the HNSW index, which is built once at the end (as a migration does):
    // inserting into it row by row took ten minutes.
    let connection = store.connection().await.unwrap();
    connection
        .batch_execute("DROP INDEX vectors_hnsw")
        .await
        .unwrap();
    let corpus = valor_fakes::corpus::sentences(41, DOCUMENTS);
    for (batch, texts) in corpus.chunks(1_000).enumerate() {
        let records = texts
            .iter()
            .enumerate()
            .map(|(i, text)| MemoryRecord {
                id: 0,
                kind: MemoryKind::Insight,
                chat_id: Some(((batch * 1_000 + i) % 300) as i64),
                at_ms: 1_000,
                title: text.chars().take(40).collect(),
                text: text.clone(),
                url: None,
            })
            .collect();
        let saved = store.save_memories(records).await.unwrap();
        let vectors = saved
            .iter()
            .map(|r| {
                (
                    r.id,
                    StoredVector {
                        model_id: "m".to_owned(),
                        vector: unit(r.id),
                    },
                )
            })
            .collect();
        store.put_vectors(vectors).await.unwrap();
    }
    connection
        .batch_execute(
            "SET maintenance_work_mem = '1GB';
             CREATE INDEX vectors_hnsw ON vectors USING hnsw (embedding halfvec_cosine_ops);
             ANALYZE",
        )
        .await
        .unwrap();
    drop(connection);
    println!(
        "loaded {DOCUMENTS} documents with vectors in {:.0} s (the HNSW index built last)",
        started.elapsed().as_secs_f64()
    );
    let queries = valor_fakes::corpus::sentences(42, 200);
    let mut took = Vec::new();
    let mut chat_took = Vec::new();
    for (n, text) in queries.iter().enumerate() {
        let vector = unit(1_000_000 + n as u64);
        let open = Filter::default();
        let started = Instant::now();
        let hits = store
            .search(&PgQuery {
                text,
                embedding: Some(("m", &vector)),
                filter: &open,
                limit: 10,
            })
            .await
            .unwrap();
        took.push(started.elapsed());
        assert_eq!(hits.len(), 10);
        let mine = Filter {
            chat_id: Some((n % 300) as i64),
            ..Filter::default()
        };
        let started = Instant::now();
        let hits = store
            .search(&PgQuery {
                text,
                embedding: Some(("m", &vector)),
                filter: &mine,
                limit: 10,
            })
            .await
            .unwrap();
        chat_took.push(started.elapsed());
        assert_eq!(hits.len(), 10);
    }
    took.sort();
    chat_took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "memory search at 100k (hybrid, with the query's embedding): p50 {:.1} ms, p99 {:.1} ms (target p50 ≤ 20); one chat's: p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&took, 0.5)),
        ms(percentile(&took, 0.99)),
        ms(percentile(&chat_took, 0.5)),
        ms(percentile(&chat_took, 0.99))
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = server();
    runtime.block_on(async {
        let only = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
        let wants = |part: &str| only.as_deref().is_none_or(|o| o == part);
        if wants("queue") {
            queue_overhead(&server).await;
        }
        if wants("drain") {
            let mut times = Vec::new();
            for workers in 1..=3 {
                let took = drain(&server, workers).await;
                println!("drain of 120 chats × 3 turns (2 s each, 10 at once per worker), {workers} worker(s): {:.1} s", took.as_secs_f64());
                times.push(took);
            }
            println!(
                "speed-up from 1 to 3 workers: {:.2}× (target ≥ 2.7×)",
                times[0].as_secs_f64() / times[2].as_secs_f64()
            );
        }
        if wants("failover") {
            let took = failover(&server).await;
            println!(
                "failover: the dead worker's chat started again after {:.1} s (lease {} s; target ≤ lease + 2 s)",
                took.as_secs_f64(),
                LEASE.as_secs()
            );
        }
        if wants("search") {
            search(&server).await;
        }
    });
}
