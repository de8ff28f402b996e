//! Embedding speed on the real model: sentences per second at batch 1, 8, 32 and 64 (the same
//! sentences and batch sizes as `scripts/bench/embed_torch.py`, the PyTorch peer), and the
//! latency of one search query.
//!
//! `cargo bench -p valor-embed --bench embed` (needs `scripts/setup` for the model).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use valor_embed::Embedder;

/// Sentences per measured pass; the PyTorch script embeds the same ones.
const SENTENCES: usize = 512;

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
}

fn throughput(c: &mut Criterion) {
    let embedder = Embedder::load(&model_dir()).expect("run scripts/setup");
    let corpus = valor_fakes::corpus::sentences(1, SENTENCES);
    let texts: Vec<&str> = corpus.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("embed");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SENTENCES as u64));
    for batch in [1, 8, 32, 64] {
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter(|| embedder.embed_in_batches(&texts, batch).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("embed_query");
    for (name, text) in [
        ("12_tokens", "Why does the billing service time out?"),
        (
            "40_tokens",
            "Our users complain that the payment webhook double charges some customers when the \
             Postgres replica is slow, can you look into it before the end of the month and \
             write a short report?",
        ),
    ] {
        group.bench_function(name, |b| b.iter(|| embedder.embed(&[text]).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
