//! Memory at 100k documents: store fill, index build, save and reload, RSS, and search latency
//! with the query embedding included (hybrid, filtered, keyword-only), plus recall@10 at that
//! size. One-shot measurements with percentiles, so not criterion's loop.
//!
//! `cargo bench -p valor-memory --bench memory` (needs scripts/setup for the model).
//!
//! The 100k vectors are 5,000 real all-MiniLM-L6-v2 embeddings of the chat corpus, each used 20
//! times with small noise (embedding 100k sentences would take the bench ~7 minutes on 2 cores);
//! search cost depends on the graph's size and dimension, and the noise keeps the data clustered
//! as real embeddings are. Every document's text is its own corpus sentence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use valor_embed::{Embedder, cosine};
use valor_memory::{Filter, Memory, MemorySettings, Query};
use valor_protocol::Role;
use valor_store::{Store, StoredMessage, StoredVector};

const DOCUMENTS: usize = 100_000;
const BASE: usize = 5_000;
const QUERIES: usize = 300;

/// A figure of /proc/self/status, in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

/// RSS, and what it is made of: the heap (anonymous) and mapped files (the model's and the
/// index's pages, which the kernel can take back).
fn rss_line(label: &str) {
    println!(
        "{label:<44} {:>7.1} MiB (heap {:.1}, files {:.1}; peak {:.1})",
        rss_mib(),
        status_mib("RssAnon:"),
        status_mib("RssFile:"),
        status_mib("VmHWM:")
    );
}

/// Set in the child process that measures a Valor-like process: the bench's own copies of the
/// vectors and texts (hundreds of MiB) stay in the parent.
const CHILD: &str = "VALOR_MEMORY_BENCH_STORE";

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn latency(label: &str, runtime: &tokio::runtime::Runtime, memory: &Memory, queries: &[Query]) {
    let mut times = Vec::with_capacity(queries.len());
    for query in queries {
        let started = Instant::now();
        let result = runtime.block_on(memory.search(query)).unwrap();
        times.push(started.elapsed());
        assert!(!result.hits.is_empty() || !query.filter.is_open());
    }
    times.sort();
    println!(
        "{label:<44} p50 {:>6.2} ms   p99 {:>6.2} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
}

fn noisy(base: &[f32], seed: &mut valor_fakes::corpus::Rng) -> Vec<f32> {
    let mut v: Vec<f32> = base
        .iter()
        .map(|x| x + (seed.below(2001) as f32 / 1000.0 - 1.0) * 0.02)
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is ignored.
    let model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    if let Some(store_path) = std::env::var_os(CHILD) {
        measure_restart(Path::new(&store_path), &model_dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _entered = runtime.enter();
    println!("memory benchmark: {DOCUMENTS} documents, {QUERIES} queries");
    println!(
        "RSS at start                                 {:>7.1} MiB",
        rss_mib()
    );

    let started = Instant::now();
    let embedder = Embedder::load(&model_dir).expect("run scripts/setup");
    println!(
        "model load                                   {:>7.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let model_id = embedder.model_id().to_owned();
    let corpus = valor_fakes::corpus::sentences(21, DOCUMENTS);
    let base_texts: Vec<&str> = corpus[..BASE].iter().map(String::as_str).collect();
    let started = Instant::now();
    let base = embedder.embed_in_batches(&base_texts, 64).unwrap();
    println!(
        "embed {BASE} corpus sentences (batch 64)        {:>7.1} s ({:.0}/s)",
        started.elapsed().as_secs_f64(),
        BASE as f64 / started.elapsed().as_secs_f64()
    );
    drop(embedder);

    // Fill the store: 100k messages over 50 chats, and their vectors.
    let started = Instant::now();
    let mut vectors = Vec::with_capacity(DOCUMENTS);
    let mut by_id: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    {
        let store = Store::open(&store_path).unwrap();
        let mut rng = valor_fakes::corpus::Rng::new(5);
        let mut batch = Vec::new();
        for (i, text) in corpus.iter().enumerate() {
            let message = store
                .append_message(
                    StoredMessage {
                        chat_id: (i % 50) as i64,
                        seq: 0,
                        role: if i % 2 == 0 {
                            Role::User
                        } else {
                            Role::Assistant
                        },
                        text: text.clone(),
                        at_ms: 1_790_000_000_000 + i as u64 * 60_000,
                        user_id: Some(1),
                        username: Some("ann".to_owned()),
                        source: None,
                    },
                    false,
                )
                .unwrap();
            let vector = noisy(&base[i % BASE], &mut rng);
            by_id.insert(message.seq, i);
            vectors.push(vector.clone());
            batch.push((
                message.seq,
                StoredVector {
                    model_id: model_id.clone(),
                    vector,
                },
            ));
            if batch.len() == 1000 {
                store.put_vectors(&batch).unwrap();
                batch.clear();
            }
        }
        store.put_vectors(&batch).unwrap();
        store.flush().unwrap();
    }
    println!(
        "store {DOCUMENTS} messages + vectors               {:>7.1} s",
        started.elapsed().as_secs_f64()
    );

    let settings = MemorySettings::beside(&store_path, model_dir.clone());
    let open = || {
        let started = Instant::now();
        let memory = Memory::open(
            Arc::new(Store::open(&store_path).unwrap()),
            settings.clone(),
        )
        .unwrap();
        (memory, started.elapsed())
    };
    let (memory, opened) = open();
    println!(
        "open: catalogue + keyword index of 100k       {:>7.0} ms",
        opened.as_secs_f64() * 1000.0
    );
    let started = Instant::now();
    runtime.block_on(memory.prepare());
    println!(
        "build the HNSW index from the store           {:>7.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    runtime.block_on(memory.save_if_dirty());
    println!(
        "save the index                                {:>7.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    drop(memory);

    // A restart, searched in a process of its own: its RSS is what Valor holds at 100k.
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD, &store_path)
        .status()
        .unwrap();
    assert!(status.success(), "the measuring process failed");

    let (memory, _) = open();
    runtime.block_on(memory.prepare());
    let query_texts = valor_fakes::corpus::sentences(22, QUERIES);
    let queries: Vec<Query> = query_texts
        .iter()
        .map(|t| Query::new(t.clone(), 10))
        .collect();
    let embedder = Embedder::load(&model_dir).unwrap();
    // Recall@10 of the graph at this size, against exact search (ties count).
    let sample: Vec<&str> = query_texts.iter().take(100).map(String::as_str).collect();
    let query_vectors = embedder.embed(&sample).unwrap();
    let index_memory = &memory;
    // Strict: a hit counts when its exact cosine reaches the exact 10th's. Within the
    // quantization: when it comes within 0.01 of it (the quantized vectors' error), since
    // this corpus holds each vector twenty times with a little noise, near-duplicates whose
    // order the quantized vectors cannot tell.
    let (mut strict, mut within) = (0, 0);
    for q in &query_vectors {
        let mut exact: Vec<f32> = vectors.iter().map(|v| cosine(q, v)).collect();
        exact.sort_by(|a, b| b.total_cmp(a));
        let tenth = exact[9];
        for (id, _) in index_memory.vector_hits(q, 10) {
            let similarity = cosine(q, &vectors[by_id[&id]]);
            strict += usize::from(similarity >= tenth - 1e-5);
            within += usize::from(similarity >= tenth - 0.01);
        }
    }
    println!(
        "recall@10 of the vector index (100 queries)   {:>7.3} strict, {:.3} within 0.01",
        strict as f64 / 1000.0,
        within as f64 / 1000.0
    );
    drop(memory);

    // Keyword-only: the model missing.
    let settings = MemorySettings::beside(&store_path, dir.path().join("no-model"));
    let memory = Memory::open(Arc::new(Store::open(&store_path).unwrap()), settings).unwrap();
    runtime.block_on(memory.prepare());
    latency(
        "keyword-only search (no model)",
        &runtime,
        &memory,
        &queries,
    );
}

/// The measuring process: opens the 100k store as Valor does after a restart and searches it.
fn measure_restart(store_path: &Path, model_dir: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _entered = runtime.enter();
    rss_line("RSS of the measuring process at start");
    let settings = MemorySettings::beside(store_path, model_dir.to_owned());
    let open = || {
        let started = Instant::now();
        let memory =
            Memory::open(Arc::new(Store::open(store_path).unwrap()), settings.clone()).unwrap();
        (memory, started.elapsed())
    };
    let (memory, opened) = open();
    runtime.block_on(memory.loaded());
    rss_line("RSS, catalogue and keyword index loaded");
    let started = Instant::now();
    runtime.block_on(memory.prepare());
    println!(
        "restart: open {:>5.0} ms + model and index reload {:>5.0} ms",
        opened.as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(memory.indexed_vectors(), DOCUMENTS);
    rss_line("RSS, model loaded and 100k indexed");

    let query_texts = valor_fakes::corpus::sentences(22, QUERIES);
    let queries: Vec<Query> = query_texts
        .iter()
        .map(|t| Query::new(t.clone(), 10))
        .collect();
    {
        // The parts of a search, alone: what the hybrid number is made of.
        let mut embed_times = Vec::new();
        let mut graph_times = Vec::new();
        for text in &query_texts {
            let started = Instant::now();
            let q = memory.embed(&[text.as_str()]).unwrap().pop().unwrap();
            embed_times.push(started.elapsed());
            let started = Instant::now();
            let _ = memory.vector_hits(&q, 50);
            graph_times.push(started.elapsed());
        }
        for (label, mut times) in [
            ("  query embedding alone", embed_times),
            ("  HNSW search (50 candidates)", graph_times),
        ] {
            times.sort();
            println!(
                "{label:<44} p50 {:>6.2} ms   p99 {:>6.2} ms",
                percentile(&times, 0.5),
                percentile(&times, 0.99)
            );
        }
    }
    latency(
        "hybrid search (query embedding included)",
        &runtime,
        &memory,
        &queries,
    );
    let filtered: Vec<Query> = query_texts
        .iter()
        .enumerate()
        .map(|(i, t)| Query {
            text: t.clone(),
            filter: Filter {
                chat_id: Some((i % 50) as i64),
                include_shared: true,
                ..Filter::default()
            },
            limit: 10,
        })
        .collect();
    latency(
        "hybrid search, one chat of 50 (2k docs)",
        &runtime,
        &memory,
        &filtered,
    );
    {
        // The memory tools' `search`: one chat's view, index lines, the embedding included.
        let mut times = Vec::new();
        for (i, text) in query_texts.iter().enumerate() {
            let query = valor_memory::disclosure::IndexQuery {
                text: text.clone(),
                limit: 10,
                ..Default::default()
            };
            let started = Instant::now();
            let lines = runtime
                .block_on(memory.index_search((i % 50) as i64, &query))
                .unwrap();
            times.push(started.elapsed());
            assert!(!lines.is_empty());
        }
        times.sort();
        println!(
            "{:<44} p50 {:>6.2} ms   p99 {:>6.2} ms   (target p50 ≤ 15 ms)",
            "memory tool search, one chat's view",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }

    rss_line("RSS after the searches");
}
