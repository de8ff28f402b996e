//! `cargo bench --bench load`: hundreds of chats at once. `valor run` (the fake Bot API with
//! Telegram's limits, the real Claude Code CLI on the fake Anthropic API) gets one message from
//! each of `VALOR_LOAD_CHATS` chats (default 300) in the same instant and answers them all.
//! Reported: the time until every chat has its answer (drain), Valor's peak RSS (sampled every
//! 100 ms, not the CLIs'), the 429s Telegram answered (target 0) and the status lines dropped.
//! Targets (300 chats): drain no slower than 183 s, peak RSS at most 150 MB, no 429.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{answering_fakes, env_or, rss_kib, start_with, valor_pid};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let chats = env_or("VALOR_LOAD_CHATS", 300);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = runtime.block_on(answering_fakes());
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_with(dir.path(), &telegram, &anthropic, chats, &[]);
    let pid = valor_pid(&child);
    let idle = rss_kib(pid);
    let started = Instant::now();
    for chat in 1..=chats as i64 {
        telegram.user_says(chat, chat, &format!("hello from chat {chat}"));
    }
    let answered = |chat: i64| {
        telegram
            .messages(chat)
            .iter()
            .any(|m| m.visible.starts_with("answer to"))
    };
    let mut peak = idle;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut done = 0;
    while done < chats {
        assert!(Instant::now() < deadline, "not every chat was answered");
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss_kib(pid));
        done = (1..=chats as i64).filter(|c| answered(*c)).count();
    }
    let drain = started.elapsed();
    let floods = telegram.errors(429).len();
    println!(
        "load: {chats} chats at once answered in {:.0} s; Valor's RSS {:.1} MiB idle, {:.1} MiB at peak; {floods} × 429",
        drain.as_secs_f64(),
        idle as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
}
