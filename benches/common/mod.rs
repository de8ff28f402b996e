//! What the benches that run `valor run` against the fakes share.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use valor_fakes::anthropic::{FakeAnthropic, Reply};
use valor_fakes::telegram::FakeTelegram;

/// The fake Anthropic API (every answer starts with "answer") and the fake Bot API.
pub async fn answering_fakes() -> (FakeAnthropic, FakeTelegram) {
    let anthropic = FakeAnthropic::start(|turn| {
        let asked = turn.last_user_text.clone().unwrap_or_default();
        Reply::text(&format!("answer to {} characters", asked.len()))
    })
    .await;
    (anthropic, FakeTelegram::start().await)
}

pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A figure of /proc/<pid>/status in KiB (`RssAnon:` is the heap, `RssFile:` mapped files).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The pid of `valor` itself (under heaptrack it is heaptrack's child).
pub fn valor_pid(child: &Child) -> u32 {
    let own = child.id();
    let Ok(comm) = std::fs::read_to_string(format!("/proc/{own}/comm")) else {
        return own;
    };
    if comm.trim() == "valor" {
        return own;
    }
    for _ in 0..200 {
        let children =
            std::fs::read_to_string(format!("/proc/{own}/task/{own}/children")).unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "valor" {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    own
}

pub fn start(
    dir: &Path,
    telegram: &FakeTelegram,
    anthropic: &FakeAnthropic,
    chats: usize,
) -> Child {
    start_with(dir, telegram, anthropic, chats, &[])
}

/// [`start`] with more environment (configuration overrides).
pub fn start_with(
    dir: &Path,
    telegram: &FakeTelegram,
    anthropic: &FakeAnthropic,
    chats: usize,
    env: &[(&str, &str)],
) -> Child {
    let users: Vec<String> = (1..=chats).map(|c| c.to_string()).collect();
    let mut cmd = match std::env::var("VALOR_SOAK_HEAPTRACK") {
        Ok(out) => {
            let mut cmd = Command::new("heaptrack");
            cmd.arg("-o").arg(out).arg(env!("CARGO_BIN_EXE_valor"));
            cmd
        }
        Err(_) => Command::new(env!("CARGO_BIN_EXE_valor")),
    };
    cmd.arg("run")
        .current_dir(dir)
        .env("HOME", dir)
        .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
        .env("VALOR__LOG__FILTER", "info")
        .env(
            "VALOR__MEMORY__MODEL_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2"),
        )
        .env(
            "VALOR__CLAUDE__BINARY",
            Path::new(env!("CARGO_MANIFEST_DIR")).join(valor_claude::binary::LOCAL_INSTALL),
        )
        .env("TELEGRAM_BOT_TOKEN", &telegram.token)
        .env("VALOR__TELEGRAM__API_URL", &telegram.url)
        .env(
            "VALOR__TELEGRAM__ALLOWED_USERS",
            format!("[{}]", users.join(",")),
        )
        .env("VALOR__TELEGRAM__POLL_TIMEOUT_SECS", "1")
        .env("ANTHROPIC_BASE_URL", &anthropic.url)
        .env("ANTHROPIC_API_KEY", "sk-ant-test")
        .env("CLAUDE_CODE_MAX_RETRIES", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("health server listening") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("valor run did not start");
    child
}
