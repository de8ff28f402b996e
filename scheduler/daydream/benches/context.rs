//! Phase 3 (context gathering) over six workspaces the size of this repository: six local git
//! clones of it. Target (DESIGN.md): <= 1 s; the seed's Python took ~3 s.
//! `cargo bench -p valor-daydream --bench context`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use valor_daydream::{GitJail, MapCache};

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
    let cache_file = dir.path().join("codemap.json");
    // git as Valor runs it: in a sandbox of its own when one can be had here.
    let jail = match valor_sandbox::Sandbox::new(
        valor_sandbox::locate_bwrap(),
        valor_sandbox::locate_init(),
    ) {
        Ok(sandbox) if valor_sandbox::locate_init().is_file() => GitJail::Sandboxed {
            sandbox: std::sync::Arc::new(sandbox),
            chats: None,
        },
        _ => {
            println!("git runs unsandboxed: build valor-sandbox-init (cargo build --bins)");
            GitJail::Bare
        }
    };
    for warm in [false, true] {
        let mut samples: Vec<Duration> = Vec::new();
        let mut summary = String::new();
        for _ in 0..7 {
            // Cold: the first daydream, nothing parsed before. Warm: the next one, six hours
            // later, with the files unchanged (the cache read back from disk each time).
            let cache = MapCache::default();
            // The cache file is read inside the timing: a restarted Valor reads it too.
            let started = Instant::now();
            let cache = if warm {
                MapCache::load(&cache_file)
            } else {
                cache
            };
            let contexts =
                valor_daydream::gather_workspaces(&workspaces, since, now, &cache, &jail);
            let elapsed = started.elapsed();
            cache.save(&cache_file).unwrap();
            samples.push(elapsed);
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
            "daydream phase 3, 6 workspaces, {} ({summary}): median {} ms (min {}, max {}, n={})",
            if warm {
                "warm: files unchanged since the last daydream"
            } else {
                "cold: first daydream"
            },
            samples[samples.len() / 2].as_millis(),
            samples[0].as_millis(),
            samples[samples.len() - 1].as_millis(),
            samples.len()
        );
    }
}
