//! Spend caps end to end: `valor run` on the embedded store and on PostgreSQL, the real Claude
//! Code CLI on the fake Anthropic API (each reply costing what the script says), the fake Bot
//! API. A cap warns at 80%, stops a run that crosses it, refuses the next one, [Allow more]
//! lifts it (approvers and admins only, a chat's cap only from that chat), background work
//! counts, `/cost` tells; the account's usage limit is told until when and the message is
//! answered by itself when it resets.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use valor_fakes::anthropic::{FakeAnthropic, Reply, Turn};
use valor_fakes::telegram::{BotMessage, FakeTelegram};

use crate::support::{Service, fresh_database};
use crate::telegram_run::run_with;

/// 150k input tokens on sonnet: $0.45 a reply. "spend slowly" starts a reply as costly and
/// then stalls (a run that is still writing when it crosses its cap).
fn model(turn: &Turn) -> Reply {
    let text = turn.last_user_text.clone().unwrap_or_default();
    // A session summary's prompt quotes the session; a chat's turn carries its request.
    if !text.contains("USER_REQUEST") {
        return Reply::text("A summary of the session.");
    }
    let request = valor_core::inject::user_request(&text).to_owned();
    if request.contains("spend slowly") {
        let partial = Reply::Partial(vec!["Working on it".to_owned()], Duration::from_secs(60));
        return Reply::costing(partial, 150_000, 0, 0, 0);
    }
    if request.contains("spend") {
        return Reply::costing(Reply::text("Spent."), 150_000, 0, 0, 0);
    }
    Reply::text("A summary of the session.")
}

fn wait_until<T>(service: &Service, what: &str, found: impl Fn() -> Option<T>) -> T {
    crate::approvals_run::wait_until(service, what, Duration::from_secs(60), found)
}

/// Budget notices in `chat` (messages with an [Allow more] button), oldest first.
fn notices(telegram: &FakeTelegram, chat: i64) -> Vec<BotMessage> {
    (telegram.messages(chat).into_iter())
        .filter(|m| (m.reply_markup.as_ref()).is_some_and(|k| k.to_string().contains("\"bu:")))
        .collect()
}

fn texts(telegram: &FakeTelegram, chat: i64) -> Vec<String> {
    telegram
        .messages(chat)
        .into_iter()
        .map(|m| m.visible)
        .collect()
}

/// Says `text` in chat 100 and waits until the chat holds `after` more messages ending in one
/// that contains `needle`; the chat's texts.
fn say(telegram: &FakeTelegram, service: &Service, text: &str, needle: &str) -> Vec<String> {
    let before = texts(telegram, 100).len();
    telegram.user_says(100, 100, text);
    wait_until(service, &format!("{needle:?} after {text:?}"), || {
        let now = texts(telegram, 100);
        (now[before.min(now.len())..]
            .iter()
            .any(|t| t.contains(needle)))
        .then_some(now)
    })
}

fn press(
    telegram: &FakeTelegram,
    service: &Service,
    chat: i64,
    user: i64,
    on: &BotMessage,
    data: &str,
) -> String {
    let query = telegram.user_presses(chat, user, on.message_id, data);
    wait_until(service, "the press answered", || {
        telegram.callback_answer(&query)
    })
}

/// `valor run` with a $1 daily cap per chat, user 300 an admin, 301 an approver; on
/// PostgreSQL when `database` is given.
fn start(
    dir: &Path,
    telegram: &FakeTelegram,
    anthropic: &FakeAnthropic,
    database: Option<&str>,
) -> Service {
    let mut cmd = run_with(dir, telegram, anthropic);
    cmd.env("VALOR__BUDGET__USD__CHAT_DAILY", "1.0")
        .env("VALOR__BUDGET__ALLOW_STEP_USD", "1.0")
        .env("VALOR__ACCESS__ADMINS", "[300]")
        .env("VALOR__ACCESS__APPROVERS", "[301]")
        .env("VALOR__TELEGRAM__ALLOWED_USERS", "[100, 101]")
        .env("VALOR__ROUTING__SHORT_CHAT__MODEL", "sonnet")
        .env("VALOR__ROUTING__DEVELOPMENT__MODEL", "sonnet")
        .env("VALOR__MEMORY__SUMMARIZE_WITH", "haiku")
        .env("VALOR__LEARNING__ENABLED", "false")
        .env("VALOR__APPROVALS__ENABLED", "false");
    if let Some(database) = database {
        cmd.env("VALOR__CLUSTER__ENABLED", "true")
            .env("VALOR__CLUSTER__NODE_ID", "solo")
            .env("VALOR_DATABASE_URL", database);
    }
    Service::start(&mut cmd)
}

fn caps_hold(database: Option<&str>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = runtime.block_on(async {
        (
            FakeAnthropic::start(model).await,
            FakeTelegram::start().await,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let service = start(dir.path(), &telegram, &anthropic, database);

    // $0.45: under 80%, nothing said about money.
    say(&telegram, &service, "spend one", "Spent.");
    assert!(notices(&telegram, 100).is_empty());
    // $0.90: past 80%, the chat and the admin are told (once), with [Allow +$1.00] [Stop].
    say(&telegram, &service, "spend two", "Spent.");
    let warning = wait_until(&service, "the 80% notice", || notices(&telegram, 100).pop());
    assert!(
        warning.visible.contains("90% of this chat's daily cap"),
        "{}",
        warning.visible
    );
    let keyboard = warning.reply_markup.clone().unwrap().to_string();
    assert!(
        keyboard.contains("Allow +$1.00") && keyboard.contains("\"stop\""),
        "{keyboard}"
    );
    let told = wait_until(&service, "the admin told", || notices(&telegram, 300).pop());
    assert!(
        told.visible.contains("a run of chat 100"),
        "{}",
        told.visible
    );

    // $1.35: the run crosses the cap while it writes and is stopped (not after its 60 s stall).
    let started = Instant::now();
    let chat = say(
        &telegram,
        &service,
        "spend slowly",
        "spending cap is reached",
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let spent = notices(&telegram, 100).pop().unwrap();
    assert!(
        spent.visible.contains("is spent: $1.35 of $1.00"),
        "{}",
        spent.visible
    );
    assert!(
        !spent
            .reply_markup
            .as_ref()
            .unwrap()
            .to_string()
            .contains("\"stop\"")
    );
    // Stopped as its first message began (what it had written, if anything, stays).
    let last = chat.last().unwrap();
    assert!(
        last.ends_with("or the operator raises [budget]."),
        "{chat:?}"
    );
    // The next message starts no run at all.
    let asked = anthropic.requests().len();
    say(&telegram, &service, "spend four", "spending cap is reached");
    assert_eq!(
        anthropic.requests().len(),
        asked,
        "no request reached the API"
    );

    // /cost tells the chat what it spent against its cap.
    let cost = say(&telegram, &service, "/cost", "This chat, today");
    let cost = cost.last().unwrap();
    assert!(
        cost.contains("This chat, today: $1.35") && cost.contains("of $1.00"),
        "{cost}"
    );

    // [Allow more]: a chatter may not; an approver may not raise another chat's cap from a
    // chat of their own; an admin may, from their chat.
    let data = "bu:chat:100:day";
    let word = press(&telegram, &service, 100, 100, &spent, data);
    assert!(word.contains("Only an approver or an admin"), "{word}");
    let word = press(&telegram, &service, 301, 301, &spent, data);
    assert!(word.contains("not this chat's"), "{word}");
    // Nor Valor's overall cap, or a user's: those are an admin's.
    for forged in ["bu:global:day", "bu:user:100:day"] {
        let word = press(&telegram, &service, 301, 301, &spent, forged);
        assert!(word.contains("not this chat's"), "{forged}: {word}");
    }
    let word = press(&telegram, &service, 300, 300, &told, data);
    assert!(
        word.contains("Allowed $1.00 more") && word.contains("$2.00"),
        "{word}"
    );
    // $1.80 of $2.00: answered.
    say(&telegram, &service, "spend five", "Spent.");

    // Background work counts: a new session's model-written summary of the last one (its
    // session ends as the next one begins).
    let summaries_before = anthropic.requests().len();
    telegram.user_says(100, 100, "/new");
    say(&telegram, &service, "spend six", "spending cap is reached");
    wait_until(&service, "the summary run", || {
        (anthropic.requests().iter().skip(summaries_before))
            .any(|t| t.model.contains("haiku"))
            .then_some(())
    });
    let mut service = service;
    let job_spent = wait_until(&service, "the summary's spend counted", || {
        let page = crate::cluster_run::logged_in_page(
            crate::support::valor(dir.path()).arg("dashboard"),
            "/ui/usage",
        );
        page.contains("session summary").then_some(page)
    });
    assert!(
        job_spent.contains("$2.25 of $2.00"),
        "the chat's cap on the Usage page"
    );
    service.signal("TERM");
    assert!(service.wait_for_exit(Duration::from_secs(15)).success());
}

#[test]
fn caps_warn_stop_refuse_and_lift_on_the_embedded_store() {
    caps_hold(None);
}

#[test]
fn caps_warn_stop_refuse_and_lift_on_postgresql() {
    caps_hold(Some(&fresh_database()));
}

/// The subscription's window is spent for the first request; the message is answered by
/// itself when it resets (alone, though Valor restarted in between; in a cluster, by the
/// worker holding the chat).
#[test]
fn a_usage_limit_is_told_until_when_and_the_message_is_answered_then() {
    usage_limit_waits(None);
}

#[test]
fn a_usage_limit_holds_the_chat_on_postgresql_until_it_resets() {
    usage_limit_waits(Some(&fresh_database()));
}

fn usage_limit_waits(database: Option<&str>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The window is spent from the message's first request until 4 s later.
    let resets: Arc<std::sync::OnceLock<u64>> = Arc::default();
    let (limited, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (l, a, r) = (
        Arc::clone(&limited),
        Arc::clone(&answered),
        Arc::clone(&resets),
    );
    let (anthropic, telegram) = runtime.block_on(async {
        let anthropic = FakeAnthropic::start(move |turn: &Turn| {
            // Wherever the CLI puts the message (the last user turn, or before its reminders).
            if !turn.body["messages"].to_string().contains("hello there") {
                return Reply::text("ok");
            }
            let now_s = valor_protocol::time::now_ms() / 1000;
            let resets_at_s = *r.get_or_init(|| now_s + 4);
            if now_s < resets_at_s {
                l.fetch_add(1, Ordering::SeqCst);
                Reply::UsageLimit { resets_at_s }
            } else {
                a.fetch_add(1, Ordering::SeqCst);
                Reply::text("Answered after the reset.")
            }
        })
        .await;
        (anthropic, FakeTelegram::start().await)
    });
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut cmd = run_with(dir.path(), &telegram, &anthropic);
        cmd.env("VALOR__LEARNING__ENABLED", "false");
        if let Some(database) = database {
            cmd.env("VALOR__CLUSTER__ENABLED", "true")
                .env("VALOR__CLUSTER__NODE_ID", "solo")
                .env("VALOR__CLUSTER__CHAT_LEASE_SECS", "5")
                .env("VALOR_DATABASE_URL", database);
        }
        Service::start(&mut cmd)
    };
    let mut service = start();
    telegram.user_says(100, 100, "hello there");
    let told = wait_until(&service, "the usage limit told", || {
        texts(&telegram, 100)
            .into_iter()
            .find(|t| t.contains("usage limit"))
    });
    let resets_at_s = *resets.get().unwrap();
    let until =
        valor_protocol::time::clock_time(resets_at_s * 1000, valor_protocol::time::now_ms());
    assert!(
        told.contains(&format!("until {until}")) && told.contains("continue then"),
        "{told}"
    );
    // Alone, Valor restarts meanwhile: the message waits in its inbox and is answered all the
    // same. In a cluster the chat's runner holds the chat until the reset (the same message
    // stays first in the chat's queue).
    if database.is_none() {
        service.signal("TERM");
        assert!(service.wait_for_exit(Duration::from_secs(15)).success());
        service = start();
    }
    let answer = wait_until(&service, "the answer after the reset", || {
        texts(&telegram, 100)
            .into_iter()
            .find(|t| t.contains("Answered after the reset"))
    });
    assert!(
        valor_protocol::time::now_ms() / 1000 >= resets_at_s,
        "not before the reset: {answer}"
    );
    // Before the reset only the first run tried (the CLI's own retry of the 429 included, and
    // the restart's replay if it came before the reset); one answer after it.
    let tries = limited.load(Ordering::SeqCst);
    let most = if database.is_some() { 2 } else { 4 };
    assert!(
        tries <= most,
        "{tries} requests before the reset: tried again and again"
    );
    assert_eq!(
        answered.load(Ordering::SeqCst),
        1,
        "one answer after the reset"
    );
    let answers = texts(&telegram, 100)
        .into_iter()
        .filter(|t| t.contains("Answered after"))
        .count();
    assert_eq!(answers, 1, "answered once");
}
