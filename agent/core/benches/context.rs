//! `cargo bench -p valor-core --bench context`: context compression of a long chat.
//! Target (DESIGN.md): 1000 messages in < 0.5 ms, >= 97% fewer tokens, every CRITICAL and HIGH
//! message kept (seed: 5.8 ms in Python).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use valor_core::context::{ContextLimits, SummaryCache, example_chat, optimize, optimize_with};

fn compression(c: &mut Criterion) {
    let limits = ContextLimits::default();
    for n in [100, 1000, 5000] {
        let chat = example_chat(n);
        let (_, figures) = optimize(&chat, &limits);
        println!(
            "{n} messages: {} -> {} items, {} -> {} tokens ({:.1}% fewer)",
            figures.messages_before,
            figures.messages_after,
            figures.tokens_before,
            figures.tokens_after,
            figures.reduction() * 100.0
        );
        c.bench_function(&format!("optimize {n} messages, cold"), |b| {
            b.iter(|| optimize(std::hint::black_box(&chat), &limits))
        });
        // A turn of a running chat: the summaries of the previous turn are kept, the newest
        // message has arrived.
        c.bench_function(&format!("optimize {n} messages, summaries kept"), |b| {
            b.iter_batched(
                || {
                    let mut cache = SummaryCache::default();
                    optimize_with(&chat[..n - 1], &limits, &mut cache);
                    cache
                },
                |mut cache| optimize_with(std::hint::black_box(&chat), &limits, &mut cache),
                criterion::BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, compression);
criterion_main!(benches);
