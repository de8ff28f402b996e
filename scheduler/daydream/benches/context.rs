//! Phase 3 (context gathering) over six workspaces the size of this repository: six local git
//! clones of it. Target (DESIGN.md): <= 1 s; the seed's Python took ~3 s.
//! `cargo bench -p valor-daydream --bench context`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let workspaces: Vec<PathBuf> = (0..6)
        .map(|i| {
            let target = dir.path().join(format!("ws{i}"));
            let status = std::process::Command::new("git")
                .args(["clone", "--quiet", "--local"])
                .arg(&repo)
                .arg(&target)
                .status()
                .unwrap();
            assert!(status.success());
            target
        })
        .collect();
    let now = chrono::Utc::now();
    let since = Some(now - chrono::Duration::days(3));
    let mut samples: Vec<Duration> = Vec::new();
    let mut summary = String::new();
    for _ in 0..7 {
        let started = Instant::now();
        let contexts = valor_daydream::gather_workspaces(&workspaces, since, now);
        samples.push(started.elapsed());
        let files: usize = contexts.iter().map(|c| c.code.files.len()).sum();
        let functions: usize = contexts
            .iter()
            .flat_map(|c| &c.code.files)
            .map(|f| f.functions.len())
            .sum();
        let changed: usize = contexts.iter().map(|c| c.changed_functions.len()).sum();
        summary = format!("{files} files, {functions} functions, {changed} changed functions");
    }
    samples.sort();
    println!(
        "daydream phase 3, 6 workspaces ({summary}): median {} ms (min {}, max {}, n={})",
        samples[samples.len() / 2].as_millis(),
        samples[0].as_millis(),
        samples[samples.len() - 1].as_millis(),
        samples.len()
    );
}
