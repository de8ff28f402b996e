//! `cargo bench -p valor-claude --bench cost`: what Valor records a run cost, against what it
//! did cost, over `VALOR_BENCH_RUNS` (default 100) runs of the real CLI on the fake API.
//!
//! Every request the fake answers reports tokens of every kind (seeded, varied by run), on
//! haiku, sonnet or opus; runs have one to three model calls (tool calls into the fake MCP
//! server), in new processes and in warm ones (several turns a process). What a run cost is
//! summed from what the fake reported for the requests it made, at the published prices; that
//! is set beside:
//! - the run's recorded cost (the ledger's `cost_usd`: the CLI's `total_cost_usd`, this turn's);
//! - the estimate the budget counts while the run goes (each message's tokens, priced);
//! - the CLI's raw `total_cost_usd` (in a warm process the process's total so far).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use valor_claude::sandbox::SandboxState;
use valor_core::Backend;
use valor_fakes::anthropic::{FakeAnthropic, Reply, Turn};
use valor_protocol::pricing::Prices;
use valor_protocol::{Event, TurnRequest, Usage};

mod support;
use support::{driver, fake_mcp, sandbox};

/// The published prices (dollars per million tokens), as `[routing] prices` has them.
fn prices() -> Prices {
    Prices::published()
}

/// A small seeded generator (the runs are the same on every machine).
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

/// What the fake reported, request by request: (model, tokens).
type Reported = Arc<Mutex<Vec<(String, Usage)>>>;

fn script(reported: Reported) -> impl Fn(&Turn) -> Reply + Send + Sync + 'static {
    move |turn: &Turn| {
        let mut seed = turn.index as u64 * 7919 + 17;
        // Under 200k in all: more is "Prompt is too long" to the CLI.
        let usage = Usage {
            input_tokens: 1_000 + next(&mut seed) % 60_000,
            output_tokens: 10 + next(&mut seed) % 8_000,
            cache_read_input_tokens: next(&mut seed) % 100_000,
            cache_creation_input_tokens: next(&mut seed) % 30_000,
        };
        reported
            .lock()
            .unwrap()
            .push((turn.model.clone(), usage.clone()));
        // Calls still to make: asked in the prompt ("calls 3"), then counted down through the
        // echo tool's input.
        let left = match &turn.last_tool_result {
            Some((_, content, _)) => content.trim_start_matches("echo: ").parse().unwrap_or(1),
            None => (turn.last_user_text.as_deref())
                .and_then(|t| t.rsplit("calls ").next()?.get(..1)?.parse::<u64>().ok())
                .unwrap_or(1),
        };
        let reply = if left > 1 && turn.tools.iter().any(|t| t == "mcp__fake__echo") {
            Reply::tool("mcp__fake__echo", json!({"text": (left - 1).to_string()}))
        } else {
            Reply::text("done")
        };
        Reply::costing(
            reply,
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_input_tokens,
            usage.cache_creation_input_tokens,
        )
    }
}

struct Measured {
    expected: f64,
    recorded: f64,
    estimate: f64,
    raw: f64,
}

fn off(value: f64, expected: f64) -> f64 {
    (value - expected).abs() / expected * 100.0
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runs: usize = (std::env::var("VALOR_BENCH_RUNS").ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let reported: Reported = Arc::default();
    let fake = FakeAnthropic::start(script(Arc::clone(&reported))).await;
    let dir = tempfile::tempdir().unwrap();
    let probed = sandbox(dir.path(), &fake.url).await;
    let boxed = matches!(probed, SandboxState::Active(_));
    // Without the sandbox (its init not built for this profile) the figures are the same.
    let sandbox = if boxed { probed } else { SandboxState::Off };
    let mcp = fake_mcp();
    let mut measured = Vec::new();
    let mut seed = 42u64;
    // Warm processes: a chat's turns run in one process, five turns a chat.
    for (label, keep_warm) in [("new", false), ("warm", true)] {
        let driver = driver(dir.path(), label, &fake.url, keep_warm, sandbox.clone());
        driver.price_unfinished_runs(prices());
        for i in 0..runs / 2 {
            let model = ["haiku", "sonnet", "opus"][next(&mut seed) as usize % 3];
            let calls = if mcp.is_some() {
                1 + next(&mut seed) % 3
            } else {
                1
            };
            let chat = if keep_warm {
                1_000 + (i / 5) as i64
            } else {
                2_000 + i as i64
            };
            let mut request = TurnRequest::new(chat, format!("run {i}, calls {calls}"));
            request.model = Some(model.to_owned());
            if let Some(mcp) = &mcp {
                request.mcp_config = Some(
                    json!({"mcpServers": {"fake": {"type": "stdio", "command": mcp.display().to_string()}}}),
                );
            }
            let before = reported.lock().unwrap().len();
            let mut stream = driver.start(request);
            let mut messages: BTreeMap<u32, (String, Usage)> = BTreeMap::new();
            let mut recorded = None;
            while let Some(event) = stream.next().await {
                match event {
                    Event::Usage {
                        message,
                        model,
                        usage,
                    } => {
                        messages.insert(message, (model, usage));
                    }
                    Event::Final(summary) => recorded = Some(summary.cost_usd),
                    Event::Failed { error, .. } => panic!("run {i} failed: {error}"),
                    _ => {}
                }
            }
            let expected: f64 = (reported.lock().unwrap()[before..].iter())
                .map(|(model, usage)| prices().cost(model, usage))
                .sum();
            let estimate: f64 = (messages.values()).map(|(m, u)| prices().cost(m, u)).sum();
            let recorded = recorded.unwrap();
            if off(estimate, expected) > 1.0 {
                let sent: Vec<String> = (reported.lock().unwrap()[before..].iter())
                    .map(|(m, u)| format!("{m} {}", u.input_tokens))
                    .collect();
                let seen: Vec<String> = (messages.values())
                    .map(|(m, u)| format!("{m} {}", u.input_tokens))
                    .collect();
                // A call the CLI makes beside the conversation shows in no stream event.
                eprintln!(
                    "run {i} ({label}): the fake answered {sent:?}, the stream showed {seen:?}"
                );
            }
            let raw_before: f64 = measured
                .iter()
                .filter(|m: &&(i64, Measured)| keep_warm && m.0 == chat)
                .map(|m| m.1.recorded)
                .sum();
            measured.push((
                chat,
                Measured {
                    expected,
                    recorded,
                    estimate,
                    raw: raw_before + recorded,
                },
            ));
        }
        driver.shutdown().await;
    }
    let report = |what: &str, value: fn(&Measured) -> f64| {
        let mut errors: Vec<f64> = (measured.iter())
            .map(|(_, m)| off(value(m), m.expected))
            .collect();
        errors.sort_by(f64::total_cmp);
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        let within = errors.iter().filter(|e| **e <= 1.0).count();
        println!(
            "{what:<44}: mean {mean:.4}% off, worst {:.4}%, {within}/{} within ±1%",
            errors[errors.len() - 1],
            errors.len()
        );
    };
    let spent: f64 = measured.iter().map(|(_, m)| m.expected).sum();
    println!(
        "{} runs ({} model calls, ${spent:.2} in all), sandbox {}, tool calls {}",
        measured.len(),
        reported.lock().unwrap().len(),
        if boxed { "on" } else { "off" },
        if mcp.is_some() {
            "on"
        } else {
            "off (build fake-mcp)"
        },
    );
    report("recorded cost (the ledger)", |m| m.recorded);
    report("estimate while it runs (the budget)", |m| m.estimate);
    report("the CLI's raw total_cost_usd (before the fix)", |m| m.raw);
}
