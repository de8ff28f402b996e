//! The watcher's cost per user message (it runs on every one, beside the turn).
//! `cargo bench -p valor-learn --bench watcher`.

use criterion::{Criterion, criterion_group, criterion_main};

fn watcher(c: &mut Criterion) {
    let set: Vec<&str> = include_str!("../tests/data/triggers.tsv")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t').map(|(_, text)| text))
        .collect();
    // The first call compiles the patterns once per process.
    let _ = valor_learn::detect("warm up");
    c.bench_function(
        "watcher: one labelled message (average over the set)",
        |b| {
            let mut next = set.iter().cycle();
            b.iter(|| valor_learn::detect(next.next().copied().unwrap_or_default()))
        },
    );
    let long = "We talked through the release plan and the open bugs today. ".repeat(60)
        + "We're switching from Bootstrap to Tailwind.";
    c.bench_function("watcher: a 3,700-character message", |b| {
        b.iter(|| valor_learn::detect(&long))
    });
}

criterion_group!(benches, watcher);
criterion_main!(benches);
