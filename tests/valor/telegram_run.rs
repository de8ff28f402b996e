//! `valor run` in Telegram: fake Bot API, real Claude Code CLI, fake Anthropic API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use crate::support::{Service, valor};
use valor_fakes::anthropic::{FakeAnthropic, Reply};
use valor_fakes::telegram::FakeTelegram;

/// `valor run` talking to the fake Telegram (user 100 allowed) and the fake Anthropic API.
pub(crate) fn run_with(
    dir: &std::path::Path,
    telegram: &FakeTelegram,
    anthropic: &FakeAnthropic,
) -> std::process::Command {
    let mut cmd = valor(dir);
    cmd.arg("run")
        .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
        .env("TELEGRAM_BOT_TOKEN", &telegram.token)
        .env("VALOR__TELEGRAM__API_URL", &telegram.url)
        .env("VALOR__TELEGRAM__ALLOWED_USERS", "[100]")
        .env("VALOR__TELEGRAM__POLL_TIMEOUT_SECS", "1")
        .env("ANTHROPIC_BASE_URL", &anthropic.url)
        .env("ANTHROPIC_API_KEY", "sk-ant-test")
        .env("CLAUDE_CODE_MAX_RETRIES", "1");
    cmd
}

/// The visible texts of `chat`, oldest first.
fn texts_of(telegram: &FakeTelegram, chat: i64) -> Vec<String> {
    telegram
        .messages(chat)
        .into_iter()
        .map(|m| m.visible)
        .collect()
}

/// Waits (a minute at most) until chat 100's texts satisfy `done`; returns them.
fn wait_for_chat(
    telegram: &FakeTelegram,
    service: &Service,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    wait_for(telegram, service, 100, what, done)
}

/// Waits (a minute at most) until `chat`'s texts satisfy `done`; returns them.
pub(crate) fn wait_for(
    telegram: &FakeTelegram,
    service: &Service,
    chat: i64,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let texts = texts_of(telegram, chat);
        if done(&texts) {
            return texts;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {texts:?}\n{}",
            service.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

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
    let mut service = Service::start(&mut run_with(dir.path(), &telegram, &anthropic));
    telegram.user_says(100, 100, "say hello");
    wait_for_chat(&telegram, &service, "no answer", |t| {
        t.last().is_some_and(|t| t == "Hello from the fake.")
    });
    // The prompt Claude got carried the chat and the user's words.
    let prompt = anthropic.requests()[0].last_user_text.clone().unwrap();
    assert!(
        prompt.contains("CHAT_ID=100") && prompt.contains("USER_REQUEST: say hello"),
        "{prompt}"
    );

    // The turn's context figures are on /metrics.
    let (_, _, metrics) = crate::support::http_get(&service.url("/metrics"));
    assert!(
        metrics.contains("\nvalor_context_tokens_before "),
        "{metrics}"
    );

    // `valor stats` reads through the running agent (it holds the store); the run has its
    // routing class and effort.
    let deadline = Instant::now() + Duration::from_secs(20);
    let stats = loop {
        let (out, stdout, stderr) =
            crate::support::output(valor(dir.path()).args(["stats", "--json", "--days", "1"]));
        assert!(out.status.success(), "{stderr}");
        let stats: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        if stats["all"]["turns"] == 1 {
            break stats;
        }
        assert!(Instant::now() < deadline, "{stats}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(stats["by_class"]["short_chat"]["turns"], 1, "{stats}");
    assert_eq!(stats["by_effort"]["low"]["turns"], 1, "{stats}");
    let (out, text, stderr) =
        crate::support::output(valor(dir.path()).args(["stats", "--by", "chat", "--days", "1"]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        text.contains("\nchat ") && text.contains("\n100 "),
        "{text}"
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
    assert!(
        !logs.contains("unsandboxed"),
        "bubblewrap works here: {logs}"
    );
    assert_everything_private(&dir.path().join(".local/share/valor"));
    drop(runtime);
}

/// Every folder and file Valor made below `root` is its user's alone (what Claude Code writes
/// inside a chat's own HOME is behind that HOME's 0700).
fn assert_everything_private(root: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mut checked = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        checked += 1;
        let inside_a_home = path.parent().and_then(|p| p.file_name()) == Some("homes".as_ref());
        if meta.is_dir() && !inside_a_home {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    for expected in ["store", "workspaces/chat_100", "homes/chat_100"] {
        assert!(
            root.join(expected).exists(),
            "{expected} missing below {}",
            root.display()
        );
    }
    assert!(checked > 10, "only {checked} paths checked");
}

use valor_fakes::telegram::TINY_PNG as PNG;

/// The whole path of a tool: the real CLI, given the agent's per-chat MCP config, calls
/// `create_image` on the server `valor run` hosts; the image (from a fake OpenAI) is saved in
/// the chat's workspace and reaches the fake Telegram chat as a photo, then the answer follows.
#[test]
fn a_picture_the_model_makes_with_a_hosted_tool_reaches_the_chat_as_a_photo() {
    use base64::Engine as _;
    use serde_json::json;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram, openai) = runtime.block_on(async {
        let anthropic = FakeAnthropic::start(|turn| {
            if let Some((_, content, is_error)) = &turn.last_tool_result {
                return Reply::text(&format!("Done ({is_error}): {content}"));
            }
            if turn.asks("draw") && turn.tools.iter().any(|t| t == "mcp__social__create_image") {
                return Reply::tool(
                    "mcp__social__create_image",
                    json!({"prompt": "a red cat on a sofa", "chat_id": 100}),
                );
            }
            Reply::text("no tool offered")
        })
        .await;
        let openai = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/images/generations"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "created": 1_790_000_000,
                "data": [{"b64_json": base64::engine::general_purpose::STANDARD.encode(PNG)}],
                "usage": {"total_tokens": 100, "input_tokens": 10, "output_tokens": 90},
            })))
            .expect(1)
            .mount(&openai)
            .await;
        (anthropic, FakeTelegram::start().await, openai)
    });
    let dir = tempfile::tempdir().unwrap();
    let workspaces = dir.path().join("workspaces");
    let mut service = Service::start(
        run_with(dir.path(), &telegram, &anthropic)
            .env("VALOR__CLAUDE__WORKSPACES_DIR", &workspaces)
            .env(
                "VALOR__TOOLS__OPENAI__BASE_URL",
                format!("{}/v1", openai.uri()),
            )
            .env("OPENAI_API_KEY", "sk-openai-test"),
    );
    telegram.user_says(100, 100, "draw me a cat please");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut allowed = false;
    loop {
        let messages = telegram.messages(100);
        // A picture costs money: it is asked about first, and allowed here.
        if !allowed
            && let Some(question) = messages.iter().find(|m| {
                m.reply_markup
                    .as_ref()
                    .is_some_and(|k| k.to_string().contains("\"ap:"))
            })
        {
            assert!(
                question.visible.contains("costs money"),
                "{}",
                question.visible
            );
            let allow = crate::approvals_run::button(question, "o");
            telegram.user_presses(100, 100, question.message_id, &allow);
            allowed = true;
        }
        let photo = messages.iter().find(|m| m.photo.is_some());
        let answered = messages.last().is_some_and(|m| {
            m.visible
                .starts_with("Done (false): Image created and sent")
        });
        if let (Some(photo), true) = (photo, answered) {
            assert_eq!(photo.photo.as_deref(), Some(PNG));
            assert_eq!(photo.visible, "a red cat on a sofa");
            break;
        }
        let texts: Vec<String> = messages.into_iter().map(|m| m.visible).collect();
        assert!(
            Instant::now() < deadline,
            "no photo: {texts:?}\n{:?}\n{}",
            anthropic
                .requests()
                .iter()
                .map(|r| r.tools.clone())
                .collect::<Vec<_>>(),
            service.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The image is in chat 100's workspace.
    let images: Vec<_> = std::fs::read_dir(workspaces.join("chat_100/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(images.len(), 1);
    assert_eq!(std::fs::read(&images[0]).unwrap(), PNG);

    service.signal("TERM");
    assert!(
        service.wait_for_exit(Duration::from_secs(5)).success(),
        "{}",
        service.logs()
    );
    drop(runtime);
}

/// The telegram tool server, hosted by `valor run`, reads the chat's own history from memory.
#[test]
fn the_model_searches_the_chats_history_through_the_hosted_server() {
    use serde_json::json;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = runtime.block_on(async {
        let anthropic = FakeAnthropic::start(|turn| {
            if let Some((_, content, is_error)) = &turn.last_tool_result {
                return Reply::text(&format!("Found ({is_error}): {content}"));
            }
            if turn.asks("what did I say") {
                return Reply::tool(
                    "mcp__telegram__search_conversation_history",
                    json!({"query": "harbour", "chat_id": 100}),
                );
            }
            Reply::text("Noted.")
        })
        .await;
        (anthropic, FakeTelegram::start().await)
    });
    let dir = tempfile::tempdir().unwrap();
    let mut service = Service::start(&mut run_with(dir.path(), &telegram, &anthropic));
    telegram.user_says(100, 100, "The meeting point is the blue harbour crane.");
    wait_for_chat(&telegram, &service, "the first answer", |t| {
        t.last().is_some_and(|t| t == "Noted.")
    });
    telegram.user_says(100, 100, "what did I say about the meeting?");
    let all = wait_for_chat(&telegram, &service, "the search", |t| {
        t.last().is_some_and(|t| t.starts_with("Found"))
    });
    let found = all.last().unwrap();
    assert!(found.starts_with("Found (false): "), "{found}");
    assert!(
        found.contains("The meeting point is the blue harbour crane."),
        "{found}"
    );
    service.signal("TERM");
    assert!(service.wait_for_exit(Duration::from_secs(5)).success());
    drop(runtime);
}

/// `#123`-style ids in a tool's answer, in order.
fn ids_in(text: &str) -> Vec<u64> {
    text.split('#')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// The memory server's three layers through the real CLI: search → timeline → get finds what
/// was said, and another chat reaches none of it through any of the three.
#[test]
fn the_model_reads_memory_in_three_layers_and_never_another_chats() {
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    // What the memory tools answered, in order; the id chat 100's search found first.
    let answers: Arc<Mutex<Vec<String>>> = Arc::default();
    let found: Arc<Mutex<Option<u64>>> = Arc::default();
    let (anthropic, telegram) = runtime.block_on(async {
        let (answers, found) = (answers.clone(), found.clone());
        let anthropic = FakeAnthropic::start(move |turn| {
            if let Some((_, content, _)) = &turn.last_tool_result {
                answers.lock().unwrap().push(content.clone());
                let ids = ids_in(content);
                if content.contains(" hits, best first") {
                    *found.lock().unwrap() = ids.first().copied();
                    return Reply::tool(
                        "mcp__memory__timeline",
                        json!({"anchor_id": ids[0], "chat_id": 100, "before": 3, "after": 3}),
                    );
                }
                if content.starts_with("Around #") {
                    return Reply::tool(
                        "mcp__memory__get",
                        json!({"ids": ids[1..], "chat_id": 100}),
                    );
                }
                if content.contains("records (cap") && content.contains("0 of 1") {
                    let id = ids_in(content).last().copied().unwrap();
                    return Reply::tool(
                        "mcp__memory__timeline",
                        json!({"anchor_id": id, "chat_id": 200}),
                    );
                }
                if content.contains("has no entry") {
                    return Reply::tool(
                        "mcp__memory__search",
                        json!({"query": "upload bug", "chat_id": 100}),
                    );
                }
                return Reply::text(&format!("Fetched: {content}"));
            }
            if turn.asks("how did we fix the upload bug") {
                return Reply::tool(
                    "mcp__memory__search",
                    json!({"query": "upload bug proxy timeout", "chat_id": 100}),
                );
            }
            if turn.asks("peek") {
                let id = found.lock().unwrap().unwrap();
                return Reply::tool("mcp__memory__get", json!({"ids": [id], "chat_id": 200}));
            }
            Reply::text("Noted.")
        })
        .await;
        (anthropic, FakeTelegram::start().await)
    });
    let dir = tempfile::tempdir().unwrap();
    let mut service = Service::start(&mut run_with(dir.path(), &telegram, &anthropic));
    telegram.user_says(
        100,
        100,
        "The upload bug was the proxy timeout of 30 seconds.",
    );
    wait_for_chat(&telegram, &service, "the first answer", |t| {
        t.last().is_some_and(|t| t == "Noted.")
    });
    telegram.user_says(
        200,
        100,
        "Chat two's upload bug note: the vault code is 4417.",
    );
    wait_for(&telegram, &service, 200, "chat two's answer", |t| {
        t.last().is_some_and(|t| t == "Noted.")
    });

    telegram.user_says(100, 100, "how did we fix the upload bug?");
    let all = wait_for_chat(&telegram, &service, "the three layers", |t| {
        t.last().is_some_and(|t| t.starts_with("Fetched"))
    });
    let fetched = all.last().unwrap();
    assert!(
        fetched.contains("the proxy timeout of 30 seconds"),
        "{fetched}"
    );
    {
        let answers = answers.lock().unwrap();
        assert_eq!(answers.len(), 3, "{answers:?}");
        assert!(answers[0].contains(" message ~"), "{}", answers[0]);
        assert!(answers[1].starts_with("Around #"), "{}", answers[1]);
        assert!(answers.iter().all(|a| !a.contains("4417")), "{answers:?}");
    }

    telegram.user_says(200, 100, "peek at the other chat");
    wait_for(&telegram, &service, 200, "the peek", |t| {
        t.last().is_some_and(|t| t.starts_with("Fetched"))
    });
    let answers = answers.lock().unwrap();
    let peek = &answers[3..];
    assert_eq!(peek.len(), 3, "{peek:?}");
    assert!(peek[0].contains("Not in this chat's memory"), "{}", peek[0]);
    assert!(peek[1].contains("has no entry"), "{}", peek[1]);
    assert!(peek[2].contains("out of reach"), "{}", peek[2]);
    assert!(
        peek.iter().all(|a| !a.contains("proxy timeout")),
        "{peek:?}"
    );
    drop(answers);
    service.signal("TERM");
    assert!(service.wait_for_exit(Duration::from_secs(5)).success());
    drop(runtime);
}

/// Learning end to end: the watcher asks after the answer, a yes keeps the learning, the next
/// turn's prompt to Claude carries it, and `valor learnings` reads it through the running
/// agent (list) and from the store once Valor is stopped (export).
#[test]
fn a_learning_confirmed_in_one_turn_is_in_the_next_turns_prompt() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = runtime.block_on(async {
        (
            FakeAnthropic::start(|_| Reply::text("Noted.")).await,
            FakeTelegram::start().await,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let mut service = Service::start(&mut run_with(dir.path(), &telegram, &anthropic));
    let switch = "We're switching from Bootstrap to Tailwind.";
    telegram.user_says(100, 100, switch);
    let question = format!("Remember this?\n\n{switch}");
    wait_for_chat(&telegram, &service, "the question", |t| {
        t.contains(&question)
    });
    let asked = telegram
        .messages(100)
        .into_iter()
        .find(|m| m.visible == question)
        .unwrap();
    let yes = asked.reply_markup.unwrap()["inline_keyboard"][0][0]["callback_data"]
        .as_str()
        .unwrap()
        .to_owned();
    telegram.user_presses(100, 100, asked.message_id, &yes);
    let kept = format!("Remembered as #1 (dependency): {switch}");
    wait_for_chat(&telegram, &service, "the outcome", |t| t.contains(&kept));

    // The learning figures: on /metrics, in /status, and the workspace's insights file.
    let (_, _, metrics) = crate::support::http_get(&service.url("/metrics"));
    assert!(
        metrics.contains("valor_learning_questions{trigger=\"switching\",state=\"accepted\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("valor_learning_questions{trigger=\"bug_fixed\",state=\"expired\"} 0\n"),
        "every type shows: {metrics}"
    );
    telegram.user_says(100, 100, "/status");
    wait_for_chat(&telegram, &service, "the status", |t| {
        t.iter().any(|t| {
            t.contains("Remember this? (30 days): asked 1: 1 accepted, 0 declined, 0 expired, 0 open; switching 1")
        })
    });
    let insights = dir
        .path()
        .join(".local/share/valor/workspaces/chat_100/LEARNED_INSIGHTS.md");
    let text = std::fs::read_to_string(&insights).unwrap();
    assert!(text.contains(switch), "{text}");

    telegram.user_says(100, 100, "Which CSS framework do we use?");
    wait_for_chat(&telegram, &service, "the second answer", |t| {
        t.iter().filter(|t| *t == "Noted.").count() == 2
    });
    let prompt = anthropic
        .requests()
        .into_iter()
        .filter_map(|r| r.last_user_text)
        .find(|p| p.contains("USER_REQUEST: Which CSS framework"))
        .unwrap();
    assert!(
        prompt.contains(&format!(
            "LEARNINGS (confirmed by the user; they hold unless the user says otherwise):\n\
             - #1 [dependency, confidence 0.50] {switch}\n"
        )),
        "{prompt}"
    );

    // While Valor runs, the CLI goes through its memory API.
    let (out, stdout, stderr) =
        crate::support::output(valor(dir.path()).args(["learnings", "list"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        format!("chat 100 #1 [dependency] 0.50 seen 1×  {switch}\n")
    );
    service.signal("TERM");
    assert!(service.wait_for_exit(Duration::from_secs(5)).success());

    let exported = dir.path().join("exported");
    let (out, stdout, stderr) = crate::support::output(
        valor(dir.path())
            .args(["learnings", "export", "--out"])
            .arg(&exported),
    );
    assert!(out.status.success(), "{stderr}");
    let file = exported.join("chat-100/LEARNED_INSIGHTS.md");
    assert_eq!(stdout.trim(), file.display().to_string());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&format!("- **#1** {switch}")), "{text}");
    drop(runtime);
}

/// `valor pair --revoke` beside a running Valor: the paired user is refused from the next
/// message on, without a restart.
#[test]
fn a_revoked_pairing_takes_effect_at_once() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = runtime.block_on(async {
        (
            FakeAnthropic::start(|_| Reply::text("hello, paired friend")).await,
            FakeTelegram::start().await,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    {
        let store = valor_store::Store::open(&dir.path().join(".local/share/valor/store")).unwrap();
        store.add_paired_user(555).unwrap();
    }
    let mut service = Service::start(&mut run_with(dir.path(), &telegram, &anthropic));
    telegram.user_says(555, 555, "hi");
    let answered = |t: &FakeTelegram| {
        t.messages(555)
            .iter()
            .any(|m| m.visible == "hello, paired friend")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answered(&telegram) {
        assert!(Instant::now() < deadline, "{}", service.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (out, stdout, stderr) = crate::support::output(valor(dir.path()).args(["pair", "--list"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("555\tpaired"), "{stdout}");
    let (out, stdout, stderr) =
        crate::support::output(valor(dir.path()).args(["pair", "--revoke", "555"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Revoked"), "{stdout}");
    telegram.user_says(555, 555, "still there?");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let texts: Vec<String> = telegram
            .messages(555)
            .into_iter()
            .map(|m| m.visible)
            .collect();
        if texts
            .iter()
            .any(|t| t.contains("only talk to people I know"))
        {
            assert_eq!(
                texts
                    .iter()
                    .filter(|t| *t == "hello, paired friend")
                    .count(),
                1,
                "{texts:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{texts:?}\n{}", service.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    service.signal("TERM");
    assert!(service.wait_for_exit(Duration::from_secs(5)).success());
    drop(runtime);
}

/// An alert (a Claude process past `children_warn = 1` while a turn runs) and its recovery
/// (the process gone after the turn) reach the admin chat once each.
#[test]
fn an_alert_and_its_recovery_reach_the_admin_chat_once_each() {
    use serde_json::json;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = runtime.block_on(async {
        let anthropic = FakeAnthropic::start(|turn| {
            if turn.last_tool_result.is_some() {
                return Reply::text("Waited.");
            }
            if turn.asks("wait a moment") {
                return Reply::tool("Bash", json!({"command": "sleep 3"}));
            }
            Reply::text("Noted.")
        })
        .await;
        (anthropic, FakeTelegram::start().await)
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = run_with(dir.path(), &telegram, &anthropic);
    cmd.env("VALOR__MONITOR__INTERVAL_SECS", "1")
        .env("VALOR__MONITOR__THRESHOLDS__CHILDREN_WARN", "1")
        .env("VALOR__ADMIN__CHAT", "100")
        .env("VALOR__CLAUDE__MAX_WARM", "0")
        // The command is refused at once, as it was before approvals (no one is asked).
        .env("VALOR__APPROVALS__ENABLED", "false");
    let mut service = Service::start(&mut cmd);
    telegram.user_says(100, 100, "wait a moment please");
    let alert = |t: &String| t.starts_with("⚠️ Warning: Child processes Valor started");
    let recovered = |t: &String| t.starts_with("✅ Recovered: the number of child processes");
    wait_for_chat(&telegram, &service, "the alert and its recovery", |t| {
        t.iter().any(alert) && t.iter().any(recovered) && t.iter().any(|t| t == "Waited.")
    });
    // A few more samples: nothing is told twice.
    std::thread::sleep(Duration::from_secs(3));
    let texts = texts_of(&telegram, 100);
    assert_eq!(texts.iter().filter(|t| alert(t)).count(), 1, "{texts:?}");
    assert_eq!(
        texts.iter().filter(|t| recovered(t)).count(),
        1,
        "{texts:?}"
    );
    let told = texts.iter().find(|t| alert(t)).unwrap();
    assert!(told.contains("What to do: Check for stuck turns"), "{told}");
    service.signal("TERM");
    assert!(service.wait_for_exit(Duration::from_secs(5)).success());
    // The samples were kept in the store (the health history outlives the process).
    let store = valor_store::Store::open(&dir.path().join(".local/share/valor/store")).unwrap();
    let minutes = store
        .health_points(valor_store::Resolution::Minute, 0)
        .unwrap();
    let samples: u32 = minutes.iter().map(|p| u32::from(p.samples)).sum();
    assert!(samples >= 5, "{minutes:?}");
    assert!(
        minutes.iter().any(|p| p.children >= 1),
        "the turn's process: {minutes:?}"
    );
    drop(runtime);
}
