//! What a sandbox costs to start: `/bin/true` run plainly, then in the sandbox with each part
//! added (the walls; its own user as root; a cgroup; the network bridge), to the program's exit.
//! `cargo bench -p valor-sandbox --bench launch` (`VALOR_BENCH_RUNS`, default 30;
//! `VALOR_BENCH_RESIDENT_MB` makes the launching process that much larger, as Valor is).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use valor_sandbox::{Bind, Launch, Limits, Sandbox};

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runs: usize = std::env::var("VALOR_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let sandbox = Sandbox::new(valor_sandbox::locate_bwrap(), valor_sandbox::locate_init())
        .expect("build valor-sandbox-init: cargo build --release -p valor-sandbox --bins");
    let dir = tempfile::tempdir().unwrap();
    let root = rustix::process::geteuid().is_root();
    let chats = valor_chatfs::ChatFs::new(
        dir.path().join("ws"),
        dir.path().join("homes"),
        valor_chatfs::ChatFs::sandbox_owner(true, 2_000_000),
    );
    let workspace = chats.workspace(1).unwrap();

    let mut plain = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        std::process::Command::new("/bin/true").status().unwrap();
        plain.push(started.elapsed());
    }
    println!(
        "/bin/true, plain: {:.2} ms (median of {runs})",
        median(plain)
    );

    // The sandbox before this one (Valor 2026-12-05): bubblewrap with PID, IPC, UTS namespaces,
    // the system and the chat's folders bound by path; no user or network namespace, no
    // seccomp, no cgroup, no bridge.
    let mut before = Vec::new();
    for _ in 0..runs {
        let mut command = std::process::Command::new(valor_sandbox::locate_bwrap());
        command.args([
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ]);
        for dir in ["/usr", "/bin", "/sbin", "/lib", "/lib64"] {
            match std::fs::read_link(dir) {
                Ok(target) => command.arg("--symlink").arg(target).arg(dir),
                Err(_) => command.args(["--ro-bind", dir, dir]),
            };
        }
        command.args(["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]);
        command.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
        command
            .arg("--bind")
            .arg(workspace.path())
            .arg(workspace.path());
        command
            .arg("--chdir")
            .arg(workspace.path())
            .args(["--", "/bin/true"]);
        let started = Instant::now();
        assert!(command.status().unwrap().success());
        before.push(started.elapsed());
    }
    println!(
        "/bin/true in the sandbox as it was before (pid/ipc/uts namespaces, binds by path): {:.2} ms",
        median(before)
    );

    let variants: [(&str, bool, bool, bool); 5] = [
        (
            "walls only (user, pid, net namespaces, seccomp)",
            false,
            false,
            false,
        ),
        ("+ its own user (as root)", true, false, false),
        ("+ a cgroup", true, true, false),
        (
            "+ the network bridge (the socket handed to Valor)",
            true,
            true,
            true,
        ),
        (
            "+ a Claude turn's binds and files (HOME, CLI folder, 6 files)",
            true,
            true,
            true,
        ),
    ];
    // Valor with a model and indexes loaded is hundreds of MB resident; a launch must not cost
    // more for it (a fork would copy its page tables).
    let resident_mb: usize = std::env::var("VALOR_BENCH_RESIDENT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let resident = vec![1u8; resident_mb << 20];
    let home = chats.home(1).unwrap();
    home.create_dir_all(".claude").unwrap();
    let cli = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for (label, own_user, cgroup, bridge) in variants {
        let full = label.contains("Claude");
        if own_user && !root {
            continue;
        }
        let mut samples = Vec::new();
        for _ in 0..runs {
            let launch = Launch {
                name: "bench",
                program: PathBuf::from("/bin/true"),
                args: Vec::new(),
                env: vec![("PATH".into(), "/usr/bin:/bin".into())],
                binds: if full {
                    vec![
                        Bind::dir(&workspace, true).unwrap(),
                        Bind::dir(&home, true).unwrap(),
                        Bind::path(&cli, &cli, false).unwrap(),
                    ]
                } else {
                    vec![Bind::dir(&workspace, true).unwrap()]
                },
                data: if full {
                    [
                        "/etc/claude-code/managed-settings.json",
                        "/run/valor/mcp.json",
                        "/run/valor/persona.md",
                    ]
                    .into_iter()
                    .map(PathBuf::from)
                    .chain(
                        [".claude/settings.json", ".bashrc", ".profile"]
                            .map(|f| home.path().join(f)),
                    )
                    .map(|target| valor_sandbox::DataFile {
                        target,
                        bytes: b"{}".to_vec(),
                    })
                    .collect()
                } else {
                    Vec::new()
                },
                chdir: Some(workspace.path().to_owned()),
                listen_port: bridge.then_some(41000),
                keep_fds: Vec::new(),
                run_as: if own_user { chats.owner() } else { None },
                limits: Limits::default(),
                own_cgroup: cgroup,
            };
            let started = Instant::now();
            let mut launched = sandbox.launch(launch).await.unwrap();
            drop(launched.child.stdin.take());
            launched.child.wait().await.unwrap();
            samples.push(started.elapsed());
        }
        println!(
            "/bin/true in the sandbox, {label}: {:.2} ms",
            median(samples)
        );
    }
    println!("(this process {resident_mb} MB larger: VALOR_BENCH_RESIDENT_MB)");
    drop(resident);
}
