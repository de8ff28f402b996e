//! Never silent: through `valor run` (the real CLI, the fake Anthropic API, the fake Bot API),
//! each chat meets one fault: the API's 429, 400 and 529, a stream that stalls, one that is not
//! JSON (the CLI fails), one cut off while it writes, the account's usage limit, Telegram
//! refusing the formatted answer, Telegram refusing every message. Every chat ends with something it can see: the answer (as
//! text, plain text or a file) or a clear error saying what to do. None is left with only a
//! status line, or nothing.

use std::time::{Duration, Instant};

use valor_fakes::anthropic::{FakeAnthropic, Reply};
use valor_fakes::telegram::FakeTelegram;
use valor_protocol::TurnErrorKind;

use crate::support::Service;
use crate::telegram_run::run_with;

const FAULTS: [(i64, &str); 10] = [
    (301, "fault 429"),
    (302, "fault 400"),
    (303, "fault 529"),
    (304, "fault stall"),
    (305, "fault malformed"),
    (306, "fault partial"),
    (307, "markup refused"),
    (308, "everything refused"),
    (309, "all is well"),
    (310, "fault usage limit"),
];

/// What a person can read: an error's sentence, or the answer.
fn ends_visibly(telegram: &FakeTelegram, chat: i64) -> Option<String> {
    let errors = [
        TurnErrorKind::RateLimited,
        TurnErrorKind::BadRequest,
        TurnErrorKind::Overloaded,
        TurnErrorKind::Timeout,
        TurnErrorKind::Crashed,
        TurnErrorKind::Api,
    ];
    telegram.messages(chat).into_iter().rev().find_map(|m| {
        if let Some(file) = &m.document {
            let file = String::from_utf8_lossy(file).into_owned();
            return file
                .contains("answer for")
                .then_some(format!("(file) {file}"));
        }
        let text = m.visible;
        let readable = text.contains("answer for")
            || text.contains("usage limit is reached until")
            || errors.iter().any(|e| text.contains(e.user_message()));
        readable.then_some(text)
    })
}

#[test]
fn every_fault_ends_in_something_the_chat_can_see() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = runtime.block_on(async {
        let anthropic = FakeAnthropic::start(|turn| {
            let text = turn.last_user_text.clone().unwrap_or_default();
            let request = valor_core::inject::user_request(&text).to_owned();
            match request.trim() {
                "fault 429" => Reply::error(
                    429,
                    "rate_limit_error",
                    "Number of request tokens has exceeded your per-minute rate limit",
                ),
                "fault 400" => Reply::error(
                    400,
                    "invalid_request_error",
                    "messages: text content blocks must be non-empty",
                ),
                "fault 529" => Reply::overloaded(),
                "fault stall" => Reply::Stall(Duration::from_secs(120)),
                "fault usage limit" => Reply::UsageLimit {
                    resets_at_s: valor_protocol::time::now_ms() / 1000 + 3600,
                },
                "fault malformed" => Reply::MalformedSse,
                "fault partial" => Reply::Partial(
                    vec!["I was writing the answer for".to_owned()],
                    Duration::from_secs(120),
                ),
                other => Reply::text(&format!(
                    "The answer for {other:?}, with *markup* and `code`."
                )),
            }
        })
        .await;
        (anthropic, FakeTelegram::start().await)
    });
    telegram.refuse_messages(307, false);
    telegram.refuse_messages(308, true);
    let dir = tempfile::tempdir().unwrap();
    let users: Vec<String> = FAULTS.iter().map(|(chat, _)| chat.to_string()).collect();
    let mut cmd = run_with(dir.path(), &telegram, &anthropic);
    cmd.env(
        "VALOR__TELEGRAM__ALLOWED_USERS",
        format!("[{}]", users.join(",")),
    )
    .env("VALOR__TELEGRAM__DRAFTS", "false")
    .env("VALOR__CLAUDE__IDLE_TIMEOUT_SECS", "8")
    .env("VALOR__CLAUDE__MAX_CONCURRENT", "10")
    .env("CLAUDE_CODE_MAX_RETRIES", "0");
    let mut service = Service::start(&mut cmd);
    for (chat, text) in FAULTS {
        telegram.user_says(chat, chat, text);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut silent: Vec<i64> = FAULTS.iter().map(|(chat, _)| *chat).collect();
    while !silent.is_empty() && Instant::now() < deadline {
        silent.retain(|chat| ends_visibly(&telegram, *chat).is_none());
        std::thread::sleep(Duration::from_millis(200));
    }
    let shown: Vec<String> = FAULTS
        .iter()
        .map(|(chat, _)| {
            format!(
                "{chat}: {:?}",
                telegram
                    .messages(*chat)
                    .iter()
                    .map(|m| m.visible.clone())
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    assert!(
        silent.is_empty(),
        "silent chats {silent:?}:\n{}\n{}",
        shown.join("\n"),
        service.logs()
    );
    // The refused formats fell back: plain text, then a file; both counted on /metrics.
    assert!(
        ends_visibly(&telegram, 307)
            .unwrap()
            .contains("The answer for")
    );
    assert!(ends_visibly(&telegram, 308).unwrap().starts_with("(file)"));
    let (_, _, metrics) = crate::support::http_get(&service.url("/metrics"));
    assert!(
        metrics.contains("valor_telegram_send_fallbacks{to=\"document\"} 1"),
        "{metrics}"
    );
    // No status line is left behind in any chat.
    std::thread::sleep(Duration::from_secs(3));
    for (chat, _) in FAULTS {
        let left: Vec<String> = telegram
            .messages(chat)
            .into_iter()
            .map(|m| m.visible)
            .filter(|t| t.starts_with("Working:"))
            .collect();
        assert!(left.is_empty(), "chat {chat}: {left:?}");
    }
    service.signal("TERM");
    assert!(service.wait_for_exit(Duration::from_secs(10)).success());
    drop(runtime);
}
