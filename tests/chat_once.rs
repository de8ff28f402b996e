//! `valor chat --once` and `valor stats` through the real Claude Code CLI and the fake API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Output;

use support::{output, valor};
use valor_fakes::anthropic::{FakeAnthropic, Reply, Turn};

fn script(turn: &Turn) -> Reply {
    if turn.asks("overload") {
        return Reply::overloaded();
    }
    let history = turn.body["messages"].to_string();
    if turn.asks("what was the word") && history.contains("apple") {
        return Reply::chunks(&["The word", " was apple."]);
    }
    Reply::chunks(&["Hello", " from", " the fake."])
}

/// Runs `valor` with the fake API and a private store, off the async runtime.
async fn run_valor(
    fake: &FakeAnthropic,
    dir: &std::path::Path,
    args: &[&str],
) -> (Output, String, String) {
    let mut cmd = valor(dir);
    cmd.args(args)
        .env("ANTHROPIC_BASE_URL", &fake.url)
        .env("ANTHROPIC_API_KEY", "sk-ant-test")
        .env("CLAUDE_CODE_MAX_RETRIES", "1")
        .env("VALOR__MEMORY__PATH", dir.join("store"))
        .env("VALOR__CLAUDE__WORKSPACES_DIR", dir.join("workspaces"));
    tokio::task::spawn_blocking(move || output(&mut cmd))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_once_answers_on_stdout_and_continues_the_conversation() {
    let fake = FakeAnthropic::start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run_valor(
        &fake,
        dir.path(),
        &["chat", "--once", "remember the word apple"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "Hello from the fake.\n");

    let (out, stdout, stderr) =
        run_valor(&fake, dir.path(), &["chat", "--once", "what was the word?"]).await;
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "The word was apple.\n");

    // The router sent the short chat to the configured model (the CLI expands the alias).
    let model = &fake.requests()[0].model;
    assert!(model.contains("haiku"), "{model}");

    // --new starts over.
    let (_, stdout, _) = run_valor(
        &fake,
        dir.path(),
        &["chat", "--new", "--once", "what was the word?"],
    )
    .await;
    assert_eq!(stdout, "Hello from the fake.\n");

    let (out, stdout, stderr) = run_valor(&fake, dir.path(), &["stats", "--days", "1"]).await;
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("total") && l.split_whitespace().nth(1) == Some("3")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_turn_exits_non_zero_with_the_users_message() {
    let fake = FakeAnthropic::start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) =
        run_valor(&fake, dir.path(), &["chat", "--once", "overload please"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "(Claude API busy (529), retry 1 of 1)\nClaude is overloaded right now. Please send your \
         message again in a minute.\n"
    );
    let (_, stdout, _) = run_valor(&fake, dir.path(), &["stats"]).await;
    assert!(stdout.contains("errors: overloaded 1"), "{stdout}");
}
