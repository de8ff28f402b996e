//! Health history over 30 days: a sample every 30 s through the recorder into a real store.
//! Reports what the history holds (keys and values), the store's size on disk, and the cost of
//! one sample. `cargo bench -p valor-monitor --bench history`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use valor_monitor::Sample;
use valor_monitor::history::HealthRecorder;
use valor_protocol::health::Resolution;
use valor_store::Store;

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = Store::open(&path).unwrap();
    let empty = dir_size(&path);
    let recorder = HealthRecorder::start(Arc::new(store.clone()));
    let start = 1_800_000_000u64;
    let samples = 30 * 24 * 120; // every 30 s for 30 days
    let started = Instant::now();
    for i in 0..samples {
        let sample = Sample {
            taken_at: start + i * 30,
            rss_bytes: (150 + i % 50) * 1024 * 1024,
            cpu_percent: (i % 17) as f64,
            system_memory_total_bytes: 24 << 30,
            system_memory_used_bytes: 8 << 30,
            load_average: [0.5; 3],
            children: (i % 5) as usize,
            oldest_child_secs: None,
            stale_children: 0,
            disk: None,
            queued: 0,
        };
        recorder.add(&sample, 90 - (i % 10) as u8);
        // The recorder's writer keeps up with a sample every 30 s; a tight loop waits for it.
        if i % 64 == 0 {
            recorder.flushed().await;
        }
    }
    recorder.flushed().await;
    let per_sample = started.elapsed().as_secs_f64() * 1e6 / samples as f64;
    store.flush().unwrap();
    let minutes = store.health_points(Resolution::Minute, 0).unwrap().len();
    let quarters = store
        .health_points(Resolution::QuarterHour, 0)
        .unwrap()
        .len();
    println!("health history after 30 days of samples every 30 s ({samples} samples)");
    println!("  points kept: {minutes} a minute (a day), {quarters} a quarter hour (30 days)");
    println!(
        "  keys and values       {:>8.1} KiB   (target: ≤ 5 MB per 30 days)",
        store.health_bytes() as f64 / 1024.0
    );
    println!(
        "  store on disk         {:>8.1} KiB   (an empty store: {:.1} KiB)",
        dir_size(&path) as f64 / 1024.0,
        empty as f64 / 1024.0
    );
    println!("  cost of one sample    {per_sample:>8.1} µs");
}
