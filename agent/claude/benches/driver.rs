//! `cargo bench -p valor-claude --bench driver`: the driver's own costs.
//! - stream-json parse throughput (MB/s) on recorded CLI output;
//! - per-turn overhead with the real CLI against an instant fake API: spawn to first event and
//!   to the end, for a new process with `--resume` and for a warm process;
//! - wall time of a two-call turn (tool call into a real MCP server).
//!
//! `VALOR_BENCH_TURNS` (default 10) sets the turns per case; `VALOR_BENCH_RESIDENT_MB` makes
//! the bench that much larger, as Valor is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use valor_claude::ClaudeDriver;
use valor_claude::codec::{Line, LineReader, parse_line};
use valor_claude::sandbox::SandboxState;
use valor_core::Backend;
use valor_fakes::anthropic::{FakeAnthropic, Reply, Turn};
use valor_protocol::{Event, TurnRequest};

mod support;
use support::{driver, fake_mcp, sandbox};

fn fixtures() -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        all.extend(std::fs::read(entry.path()).unwrap());
    }
    all
}

async fn parse_throughput() -> (f64, f64) {
    let one = fixtures();
    let mut data = Vec::with_capacity(64 * 1024 * 1024);
    while data.len() < 64 * 1024 * 1024 {
        data.extend_from_slice(&one);
    }
    let start = Instant::now();
    let mut events = 0usize;
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        events += usize::from(parse_line(line).is_ok());
    }
    let parse_only = data.len() as f64 / 1e6 / start.elapsed().as_secs_f64();
    assert!(events > 0);

    let start = Instant::now();
    let mut reader = LineReader::new(
        tokio::io::BufReader::with_capacity(64 * 1024, &data[..]),
        4 << 20,
    );
    while let Some(line) = reader.next_line().await.unwrap() {
        if let Line::Complete(bytes) = line {
            let _ = parse_line(&bytes);
        }
    }
    let with_reader = data.len() as f64 / 1e6 / start.elapsed().as_secs_f64();
    (parse_only, with_reader)
}

fn script(turn: &Turn) -> Reply {
    if let Some((_, content, _)) = &turn.last_tool_result {
        return Reply::text(&format!("tool: {content}"));
    }
    if turn.asks("use echo") {
        return Reply::tool("mcp__fake__echo", json!({"text": "hi"}));
    }
    Reply::text("ok")
}

/// (to first event, to the end) of one turn.
async fn timed(driver: &ClaudeDriver, request: TurnRequest) -> (Duration, Duration) {
    let start = Instant::now();
    let mut stream = driver.start(request);
    let mut first = None;
    while let Some(event) = stream.next().await {
        first.get_or_insert_with(|| start.elapsed());
        match event {
            Event::Final(_) => return (first.unwrap(), start.elapsed()),
            Event::Failed { error: e, .. } => panic!("bench turn failed: {e}"),
            _ => {}
        }
    }
    panic!("no end");
}

fn median(mut values: Vec<Duration>) -> f64 {
    values.sort();
    values[values.len() / 2].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let quick = !std::env::args().any(|a| a == "--bench");
    let (parse_only, with_reader) = parse_throughput().await;
    println!(
        "stream-json codec: parse {parse_only:.0} MB/s; bounded line reader + parse {with_reader:.0} MB/s"
    );
    if quick {
        return;
    }
    let turns: usize = std::env::var("VALOR_BENCH_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    // Valor with a model and indexes loaded is hundreds of MB resident; starting a turn must
    // not cost more for it.
    let resident_mb: usize = std::env::var("VALOR_BENCH_RESIDENT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let resident = vec![1u8; resident_mb << 20];
    println!("(this process {resident_mb} MB larger: VALOR_BENCH_RESIDENT_MB)");
    let fake = FakeAnthropic::start(script).await;
    let dir = tempfile::tempdir().unwrap();

    let sandbox = sandbox(dir.path(), &fake.url).await;
    if !matches!(sandbox, SandboxState::Active(_)) {
        println!("sandboxed cases skipped, bubblewrap does not work here ({sandbox:?})");
    }
    // Each pair of cases runs interleaved (one turn of each in turn), so a drift of the machine
    // falls on both alike; the added cost is the median of the paired differences.
    for (label, keep_warm) in [("new process with --resume", false), ("warm process", true)] {
        let plain = driver(
            dir.path(),
            &format!("{label} plain"),
            &fake.url,
            keep_warm,
            SandboxState::Off,
        );
        let boxed = matches!(sandbox, SandboxState::Active(_)).then(|| {
            driver(
                dir.path(),
                &format!("{label} boxed"),
                &fake.url,
                keep_warm,
                sandbox.clone(),
            )
        });
        let chat = if keep_warm { 3 } else { 1 };
        // The first turn of a chat creates its session (and, warm, its process).
        timed(&plain, TurnRequest::new(chat, "hello")).await;
        if let Some(boxed) = &boxed {
            timed(boxed, TurnRequest::new(chat + 1, "hello")).await;
        }
        let (mut first, mut whole, mut first_boxed, mut whole_boxed, mut added) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..turns {
            let (f, w) = timed(&plain, TurnRequest::new(chat, "hello")).await;
            first.push(f);
            whole.push(w);
            if let Some(boxed) = &boxed {
                let (fb, wb) = timed(boxed, TurnRequest::new(chat + 1, "hello")).await;
                first_boxed.push(fb);
                whole_boxed.push(wb);
                added.push(wb.as_secs_f64() * 1000.0 - w.as_secs_f64() * 1000.0);
            }
        }
        // The fake API answers at once, so the whole turn is nearly all driver and CLI time.
        println!(
            "{label:<26}: start to first event {:.0} ms, whole turn {:.0} ms (median of {turns})",
            median(first),
            median(whole)
        );
        if let Some(boxed) = boxed {
            added.sort_by(f64::total_cmp);
            println!(
                "{:<26}: start to first event {:.0} ms, whole turn {:.0} ms; added by the sandbox {:+.0} ms (median of {turns} paired differences, middle half {:+.0} to {:+.0})",
                format!("{label}, sandboxed"),
                median(first_boxed),
                median(whole_boxed),
                added[added.len() / 2],
                added[added.len() / 4],
                added[added.len() * 3 / 4],
            );
            boxed.shutdown().await;
        }
        plain.shutdown().await;
    }

    match fake_mcp() {
        Some(mcp) => {
            let driver = driver(dir.path(), "two-call", &fake.url, false, sandbox.clone());
            let mut whole = Vec::new();
            for i in 0..turns {
                let mut request = TurnRequest::new(100 + i as i64, "please use echo");
                request.mcp_config = Some(
                    json!({"mcpServers": {"fake": {"type": "stdio", "command": mcp.display().to_string()}}}),
                );
                whole.push(timed(&driver, request).await.1);
            }
            println!(
                "two-call turn (tool call into a real MCP server), new process, sandbox {}: {:.0} ms wall (median of {turns})",
                sandbox.label(),
                median(whole)
            );
        }
        None => println!(
            "two-call turn: skipped (build target/debug/fake-mcp with `cargo build -p valor-fakes --bins`)"
        ),
    }
    drop(resident);
}
