//! `cargo bench --bench approval`: the permission round-trip. `valor run` (the real Claude Code
//! CLI on the fake Anthropic API, the fake Bot API with Telegram's limits) is asked to run a
//! command in each of `VALOR_APPROVAL_ROUNDS` chats (default 20), one after another; measured:
//! from the moment the fake model hands the CLI its `Bash` tool use to the moment the approval
//! question (with its buttons) reaches the Bot API. That is the CLI reading the tool use and
//! calling its permission tool, plus Valor: the permission tool, the conversation service, the
//! chat's pacer, the send. Target: p99 <= 300 ms (a bound on Valor's part, which is less).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{env_or, start_with, valor_pid};
use valor_fakes::anthropic::{FakeAnthropic, Reply};
use valor_fakes::telegram::FakeTelegram;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rounds = env_or("VALOR_APPROVAL_ROUNDS", 20);
    let served: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = runtime.block_on({
        let served = Arc::clone(&served);
        async move {
            let anthropic = FakeAnthropic::start(move |turn| {
                if turn.last_tool_result.is_some() {
                    return Reply::text("done");
                }
                let text = turn.last_user_text.clone().unwrap_or_default();
                match text.rfind("run touch ") {
                    Some(at) => {
                        let command = text[at + 4..].lines().next().unwrap_or_default().to_owned();
                        served
                            .lock()
                            .unwrap()
                            .insert(command.clone(), Instant::now());
                        Reply::tool("Bash", serde_json::json!({"command": command}))
                    }
                    None => Reply::text("ok"),
                }
            })
            .await;
            (anthropic, FakeTelegram::start().await)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_with(dir.path(), &telegram, &anthropic, rounds, &[]);
    let pid = valor_pid(&child);
    let mut took = Vec::new();
    for chat in 1..=rounds as i64 {
        let command = format!("touch marker-{chat}");
        telegram.user_says(chat, chat, &format!("please run {command}"));
        let deadline = Instant::now() + Duration::from_secs(120);
        let question = loop {
            let found = telegram.messages(chat).into_iter().find(|m| {
                m.reply_markup
                    .as_ref()
                    .is_some_and(|k| k.to_string().contains("\"ap:"))
            });
            if let Some(question) = found {
                break question;
            }
            assert!(
                Instant::now() < deadline,
                "no approval question in chat {chat}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let asked = served.lock().unwrap()[&command];
        took.push(question.sent_at.into_std().saturating_duration_since(asked));
        let keyboard = question.reply_markup.unwrap().to_string();
        let start = keyboard.find("ap:").unwrap();
        let id: String = keyboard[start + 3..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        telegram.user_presses(chat, chat, question.message_id, &format!("ap:{id}:d"));
    }
    took.sort();
    let at = |q: f64| took[((took.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "approval: tool use -> question at the Bot API over {} rounds: p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        took.len(),
        at(0.5).as_secs_f64() * 1000.0,
        at(0.95).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0,
        took.last().unwrap().as_secs_f64() * 1000.0,
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
}
