//! `cargo bench --bench soak`: memory that stays flat. `valor run` answers 2,000 turns in six
//! chats (the fake Bot API, the real Claude Code CLI on the fake Anthropic API, warm processes
//! kept), each chat sending its next message when the last is answered; Valor's own RSS (not
//! the CLIs') is read every 250 turns. Target: after the first 250 turns RSS grows by at most
//! 5%. `VALOR_SOAK_TURNS` (default 2000) and `VALOR_SOAK_CHATS` (default 6) tune it;
//! `VALOR_SOAK_HEAPTRACK=<file>` runs Valor under heaptrack (`heaptrack_print <file>.zst` then
//! shows what was still allocated at the end, and where: Valor is killed, not stopped, so
//! that is everything a long run holds).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{answering_fakes, env_or, rss_kib, start, status_kib, valor_pid};
use valor_fakes::telegram::FakeTelegram;

/// Answers chat `chat` has got (each answer starts with "answer").
fn answered(telegram: &FakeTelegram, chat: i64) -> usize {
    (telegram.messages(chat).iter())
        .filter(|m| m.visible.starts_with("answer "))
        .count()
}

fn main() {
    let turns = env_or("VALOR_SOAK_TURNS", 2000);
    let chats = env_or("VALOR_SOAK_CHATS", 6);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = runtime.block_on(answering_fakes());
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path(), &telegram, &anthropic, chats);
    let pid = valor_pid(&child);
    let started = Instant::now();
    let mut sent = vec![0usize; chats];
    let mut samples: Vec<(usize, u64)> = vec![(0, rss_kib(pid))];
    let mut done = 0;
    let deadline = Instant::now() + Duration::from_secs(3600);
    while done < turns {
        assert!(Instant::now() < deadline, "the soak did not finish");
        done = 0;
        for chat in 0..chats {
            let id = chat as i64 + 1;
            let got = answered(&telegram, id);
            done += got;
            if got == sent[chat] && sent.iter().sum::<usize>() < turns {
                sent[chat] += 1;
                telegram.user_says(id, id, &format!("message {} of chat {id}", sent[chat]));
            }
        }
        if done >= (samples.len()) * 250 && done > 0 {
            samples.push((done, rss_kib(pid)));
            println!(
                "{done:>5} turns  {:>7.1} MiB (heap {:.1}, files {:.1})  ({:.0} s)",
                samples.last().unwrap().1 as f64 / 1024.0,
                status_kib(pid, "RssAnon:") as f64 / 1024.0,
                status_kib(pid, "RssFile:") as f64 / 1024.0,
                started.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if samples.last().is_some_and(|(n, _)| *n < done) {
        samples.push((done, rss_kib(pid)));
    }
    let after_250 = samples.iter().find(|(n, _)| *n >= 250).map_or(0, |s| s.1);
    let last = samples.last().unwrap().1;
    let growth = (last as f64 - after_250 as f64) / after_250.max(1) as f64 * 100.0;
    println!(
        "soak: {turns} turns in {chats} chats in {:.0} s; RSS {:.1} MiB at start, {:.1} MiB after 250 turns, {:.1} MiB at the end: {growth:+.1}% after the first 250 (target: within 5%)",
        started.elapsed().as_secs_f64(),
        samples[0].1 as f64 / 1024.0,
        after_250 as f64 / 1024.0,
        last as f64 / 1024.0,
    );
    // Under heaptrack a SIGKILL keeps everything live at the end as "leaked": what a long run
    // holds, not what a clean shutdown frees.
    let signal = if std::env::var_os("VALOR_SOAK_HEAPTRACK").is_some() {
        "-KILL"
    } else {
        "-TERM"
    };
    let _ = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
}
