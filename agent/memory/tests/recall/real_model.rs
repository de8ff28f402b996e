//! The real all-MiniLM-L6-v2 (installed by scripts/setup) on a realistic corpus: the HNSW index
//! finds what exact search finds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use valor_embed::{Embedder, cosine};
use valor_memory::vector::VectorIndex;

const DOCUMENTS: usize = 3_000;
const QUERIES: usize = 200;
const K: usize = 10;

#[test]
fn hnsw_recall_at_10_is_at_least_095_against_exact_search() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    let embedder = Embedder::load(&model).expect("run scripts/setup");
    let corpus = valor_fakes::corpus::sentences(11, DOCUMENTS);
    let texts: Vec<&str> = corpus.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let vectors = embedder.embed_in_batches(&texts, 64).unwrap();
    eprintln!("embedded {DOCUMENTS} in {:?}", started.elapsed());
    let queries = valor_fakes::corpus::sentences(12, QUERIES);
    let query_texts: Vec<&str> = queries.iter().map(String::as_str).collect();
    let query_vectors = embedder.embed(&query_texts).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let index = VectorIndex::create(
        &dir.path().join("index"),
        embedder.model_id(),
        embedder.dim(),
    )
    .unwrap();
    let items: Vec<(u64, Vec<f32>)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u64, v.clone()))
        .collect();
    let started = std::time::Instant::now();
    assert_eq!(index.insert(&items).unwrap(), DOCUMENTS);
    eprintln!("indexed in {:?}", started.elapsed());

    let mut found = 0;
    for query in &query_vectors {
        let mut exact: Vec<f32> = vectors.iter().map(|v| cosine(query, v)).collect();
        exact.sort_by(|a, b| b.total_cmp(a));
        // Ties count: a hit as close as the exact 10th is a correct answer (the corpus has
        // near-duplicates, as chats do).
        let tenth = exact[K - 1] - 1e-5;
        let hits = index.search(query, K, None);
        found += hits
            .iter()
            .filter(|(id, _)| cosine(query, &vectors[*id as usize]) >= tenth)
            .count();
    }
    let recall = found as f64 / (QUERIES * K) as f64;
    eprintln!("recall@10 = {recall:.4} over {QUERIES} queries, {DOCUMENTS} documents");
    assert!(recall >= 0.95, "recall@10 = {recall:.4}");
}
