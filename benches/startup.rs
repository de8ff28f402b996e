//! `cargo bench --bench startup`: how fast `valor run` answers its first /health, and how much
//! memory an idle instance holds. Targets (DESIGN.md): start to /health 200 <= 200 ms, idle RSS
//! <= 15 MB. `VALOR_BENCH_RUNS` (default 20) and `VALOR_BENCH_IDLE_SECS` (default 60) tune it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn spawn(addr: SocketAddr, dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_valor"))
        .arg("run")
        .current_dir(dir)
        .env("HOME", dir)
        .env("VALOR__HEALTH__BIND", addr.to_string())
        .env("VALOR__LOG__FILTER", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// One GET; `Some(body)` when the answer is 200.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .starts_with("HTTP/1.1 200")
        .then(|| response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned())
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank]
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: do a single quick pass then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = if quick {
        1
    } else {
        env_or("VALOR_BENCH_RUNS", 20)
    };
    let idle_secs = if quick {
        1
    } else {
        env_or("VALOR_BENCH_IDLE_SECS", 60)
    };
    let dir = std::env::temp_dir().join(format!("valor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let mut startup_ms = Vec::new();
    for _ in 0..runs {
        let addr = free_addr();
        let start = Instant::now();
        let child = spawn(addr, &dir);
        loop {
            if get(addr, "/health").is_some() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no /health within 10 s"
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        startup_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        stop(child);
    }
    startup_ms.sort_by(f64::total_cmp);

    let addr = free_addr();
    let child = spawn(addr, &dir);
    while get(addr, "/health").is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_secs(idle_secs));
    let rss = rss_kib(child.id());
    stop(child);
    let _ = std::fs::remove_dir_all(&dir);

    println!("valor run, {runs} starts (release build if run with cargo bench):");
    println!(
        "  start to first /health 200: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms   (target <= 200 ms)",
        percentile(&startup_ms, 0.5),
        percentile(&startup_ms, 0.95),
        startup_ms[startup_ms.len() - 1]
    );
    println!(
        "  idle RSS after {idle_secs} s: {:.1} MiB   (target <= 15 MB)",
        rss as f64 / 1024.0
    );
}
