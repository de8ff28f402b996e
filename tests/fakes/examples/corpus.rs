//! Prints the benchmark corpus, one sentence per line, for peers measured outside Rust
//! (`scripts/bench/embed_torch.py`): `cargo run -p valor-fakes --example corpus -- SEED COUNT`.

fn main() {
    let mut args = std::env::args().skip(1);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let count = args.next().and_then(|a| a.parse().ok()).unwrap_or(512);
    for sentence in valor_fakes::corpus::sentences(seed, count) {
        println!("{sentence}");
    }
}
