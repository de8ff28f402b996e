//! The watcher's cost per user message (it runs on every one, beside the turn).
//! `cargo bench -p valor-learn --bench watcher`. With the classifier, the message's embedding
//! is given: recall computes it for the same turn, so only what the watcher adds is counted
//! (target ≤ 1 ms p50).

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use valor_learn::detector::{Detector, HELD_OUT_SET, TRAINING_SET, labelled};

fn watcher(c: &mut Criterion) {
    let rows = [TRAINING_SET, HELD_OUT_SET]
        .into_iter()
        .flat_map(|set| labelled(set).unwrap_or_default())
        .collect::<Vec<_>>();
    let set: Vec<&str> = rows.iter().map(|r| r.1).collect();
    // The first call compiles the patterns once per process.
    let _ = valor_learn::detect("warm up");
    c.bench_function(
        "watcher: rules, one labelled message (average over the sets)",
        |b| {
            let mut next = set.iter().cycle();
            b.iter(|| valor_learn::detect(next.next().copied().unwrap_or_default()))
        },
    );
    let long = "We talked through the release plan and the open bugs today. ".repeat(60)
        + "We're switching from Bootstrap to Tailwind.";
    c.bench_function("watcher: rules, a 3,700-character message", |b| {
        b.iter(|| valor_learn::detect(&long))
    });

    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    let Ok(embedder) = valor_embed::Embedder::load(&model) else {
        eprintln!(
            "no embedding model at {}: the classifier is not measured",
            model.display()
        );
        return;
    };
    let Ok(vectors) = embedder.embed(&set) else {
        return;
    };
    let embed = |texts: &[&str]| embedder.embed(texts).ok();
    let detector = Detector::builtin();
    // Per message, not averaged: what the classifier adds to the rules, p50 and p99.
    let mut added = Vec::with_capacity(set.len() * 5);
    for _ in 0..5 {
        for (text, vector) in set.iter().zip(&vectors) {
            let started = std::time::Instant::now();
            let _ = valor_learn::detect(text);
            let rules = started.elapsed();
            let started = std::time::Instant::now();
            let _ = detector.detect(text, Some(vector), &embed);
            added.push(started.elapsed().saturating_sub(rules).as_secs_f64() * 1e6);
        }
    }
    added.sort_by(f64::total_cmp);
    let at = |p: f64| added[((added.len() - 1) as f64 * p) as usize];
    println!(
        "watcher: the classifier adds p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs a message over {} messages (target p50 ≤ 1 ms)",
        at(0.5),
        at(0.9),
        at(0.99),
        added.len()
    );
    c.bench_function(
        "watcher: rules + classifier, one labelled message, its embedding given",
        |b| {
            let mut next = set.iter().zip(&vectors).cycle();
            b.iter(|| {
                let (text, vector) = next.next().unwrap_or((&"", &vectors[0]));
                detector.detect(text, Some(vector), &embed)
            })
        },
    );
}

criterion_group!(benches, watcher);
criterion_main!(benches);
