//! `valor run` in Telegram: fake Bot API, real Claude Code CLI, fake Anthropic API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::{Service, valor};
use valor_fakes::anthropic::{FakeAnthropic, Reply};
use valor_fakes::telegram::FakeTelegram;

#[test]
fn valor_run_answers_a_friend_in_telegram_through_the_real_cli() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = runtime.block_on(async {
        (
            FakeAnthropic::start(|_| Reply::chunks(&["Hello", " from", " the fake."])).await,
            FakeTelegram::start().await,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let mut service = Service::start(
        valor(dir.path())
            .arg("run")
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
            .env("TELEGRAM_BOT_TOKEN", &telegram.token)
            .env("VALOR__TELEGRAM__API_URL", &telegram.url)
            .env("VALOR__TELEGRAM__ALLOWED_USERS", "[100]")
            .env("VALOR__TELEGRAM__POLL_TIMEOUT_SECS", "1")
            .env("ANTHROPIC_BASE_URL", &anthropic.url)
            .env("ANTHROPIC_API_KEY", "sk-ant-test")
            .env("CLAUDE_CODE_MAX_RETRIES", "1"),
    );
    telegram.user_says(100, 100, "say hello");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let texts: Vec<String> = telegram
            .messages(100)
            .into_iter()
            .map(|m| m.visible)
            .collect();
        if texts.last().is_some_and(|t| t == "Hello from the fake.") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer: {texts:?}\n{}",
            service.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The prompt Claude got carried the chat and the user's words.
    let prompt = anthropic.requests()[0].last_user_text.clone().unwrap();
    assert!(
        prompt.contains("CHAT_ID=100") && prompt.contains("USER_REQUEST: say hello"),
        "{prompt}"
    );

    // The turn's context figures are on /metrics.
    let (_, _, metrics) = support::http_get(&service.url("/metrics"));
    assert!(
        metrics.contains("\nvalor_context_tokens_before "),
        "{metrics}"
    );

    service.signal("TERM");
    assert!(
        service.wait_for_exit(Duration::from_secs(5)).success(),
        "{}",
        service.logs()
    );
    let logs = service.logs();
    assert!(logs.contains("Telegram is on"), "{logs}");
    assert!(
        !logs.contains(&telegram.token),
        "the bot token leaked into the logs"
    );
    drop(runtime);
}
