//! Approvals end to end: `valor run`, the real Claude Code CLI (its `--permission-prompt-tool`
//! calling Valor's permission tool) on the fake Anthropic API, the fake Bot API. Allow once,
//! allow for the session, deny, the timeout (with its reminder), writes in and out of the
//! source tree, roles in a group, and a bypass corpus that must never ride on a granted command.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use valor_fakes::anthropic::{FakeAnthropic, Reply};
use valor_fakes::telegram::{BotMessage, FakeTelegram};
use valor_protocol::approval::Decision;

use crate::support::Service;
use crate::telegram_run::run_with;

/// The text between `open` and `close`, the last one (history may hold earlier ones).
fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.rfind(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

/// The model: `RUN<<cmd>>RUN` runs a command, `WRITE<<path>>WRITE` writes a file; a tool's
/// result is told back as "tool said: …".
async fn model() -> FakeAnthropic {
    FakeAnthropic::start(|turn| {
        if let Some((_, content, is_error)) = &turn.last_tool_result {
            let first = content.lines().next().unwrap_or_default();
            return Reply::text(&format!("tool said (error {is_error}): {first}"));
        }
        let text = turn.last_user_text.clone().unwrap_or_default();
        // Only the message itself counts, not the history the prompt quotes before it.
        let text = valor_core::inject::user_request(&text).to_owned();
        // The newest marker counts (the prompt may quote earlier messages).
        let run_at = text.rfind("RUN<<");
        let write_at = text.rfind("WRITE<<").max(text.rfind("IMAGE<<"));
        if run_at > write_at
            && let Some(command) = between(&text, "RUN<<", ">>RUN")
        {
            return Reply::tool(
                "Bash",
                json!({"command": command, "description": "Does what you asked"}),
            );
        }
        if let Some(prompt) = between(&text, "IMAGE<<", ">>IMAGE") {
            return Reply::tool(
                "mcp__social__create_image",
                json!({"prompt": prompt, "chat_id": 100}),
            );
        }
        if let Some(path) = between(&text, "WRITE<<", ">>WRITE") {
            return Reply::tool("Write", json!({"file_path": path, "content": "planted"}));
        }
        Reply::text("Nothing to do.")
    })
    .await
}

/// The approval questions in `chat` (messages with approval buttons), oldest first.
fn questions(telegram: &FakeTelegram, chat: i64) -> Vec<BotMessage> {
    telegram
        .messages(chat)
        .into_iter()
        .filter(|m| {
            m.reply_markup
                .as_ref()
                .is_some_and(|k| k.to_string().contains("\"ap:"))
        })
        .collect()
}

/// The button data of `question` for `code` (o, s, d).
pub(crate) fn button(question: &BotMessage, code: &str) -> String {
    let keyboard = question.reply_markup.as_ref().unwrap().to_string();
    let start = keyboard.find("ap:").unwrap();
    let id: String = keyboard[start + 3..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    format!("ap:{id}:{code}")
}

pub(crate) fn wait_until<T>(
    service: &Service,
    what: &str,
    limit: Duration,
    found: impl Fn() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}\n{}", service.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Chat<'a> {
    telegram: &'a FakeTelegram,
    service: &'a Service,
    chat: i64,
}

impl Chat<'_> {
    fn texts(&self) -> Vec<String> {
        self.telegram
            .messages(self.chat)
            .into_iter()
            .map(|m| m.visible)
            .collect()
    }

    /// Says `text` as `user`; waits for a new approval question and returns it.
    fn ask(&self, user: i64, text: &str) -> BotMessage {
        let before = questions(self.telegram, self.chat).len();
        self.telegram.user_says(self.chat, user, text);
        wait_until(
            self.service,
            &format!("a question for {text:?}"),
            Duration::from_secs(60),
            || questions(self.telegram, self.chat).into_iter().nth(before),
        )
    }

    /// Presses `code` on `question` as `user`; what the press was answered.
    fn press(&self, user: i64, question: &BotMessage, code: &str) -> String {
        let query = self.telegram.user_presses(
            self.chat,
            user,
            question.message_id,
            &button(question, code),
        );
        wait_until(
            self.service,
            "the press answered",
            Duration::from_secs(30),
            || self.telegram.callback_answer(&query),
        )
    }

    /// Waits for an open question that contains `needle`.
    fn question_with(&self, needle: &str) -> BotMessage {
        wait_until(
            self.service,
            &format!("a question with {needle:?}"),
            Duration::from_secs(60),
            || {
                questions(self.telegram, self.chat)
                    .into_iter()
                    .find(|q| q.visible.contains(needle))
            },
        )
    }

    /// Waits for the `n`th "tool said" answer (counting from 1); returns it.
    fn tool_said(&self, n: usize) -> String {
        wait_until(
            self.service,
            &format!("tool answer {n}"),
            Duration::from_secs(60),
            || {
                self.texts()
                    .into_iter()
                    .filter(|t| t.starts_with("tool said"))
                    .nth(n - 1)
            },
        )
    }

    /// Waits until the question's buttons are gone and it reads as its outcome.
    fn settled(&self, question: &BotMessage) -> String {
        wait_until(
            self.service,
            "the question settled",
            Duration::from_secs(30),
            || {
                self.telegram
                    .messages(self.chat)
                    .into_iter()
                    .find(|m| m.message_id == question.message_id)
                    .filter(|m| {
                        !m.reply_markup
                            .as_ref()
                            .is_some_and(|k| k.to_string().contains("ap:"))
                    })
                    .map(|m| m.visible)
            },
        )
    }
}

fn workspace(dir: &Path, chat: i64) -> PathBuf {
    dir.join(format!(".local/share/valor/workspaces/chat_{chat}"))
}

/// `valor run` for these tests: a 10 s timeout with a reminder at 4 s, user 300 an approver,
/// users 100 and 101 chatters, a paid image API that is never reached.
fn start(dir: &Path, telegram: &FakeTelegram, anthropic: &FakeAnthropic) -> Service {
    let mut cmd = run_with(dir, telegram, anthropic);
    // A turn is idle after 5 s of silence, but not while a person decides (10 s to answer).
    cmd.env("VALOR__APPROVALS__APPROVAL_TIMEOUT_SECS", "10")
        .env("VALOR__CLAUDE__IDLE_TIMEOUT_SECS", "5")
        .env("OPENAI_API_KEY", "sk-openai-test")
        .env("VALOR__TOOLS__OPENAI__BASE_URL", "http://127.0.0.1:9")
        .env("VALOR__APPROVALS__REMIND_AFTER_SECS", "4")
        .env("VALOR__ACCESS__APPROVERS", "[300]")
        .env("VALOR__TELEGRAM__ALLOWED_USERS", "[100, 101]");
    Service::start(&mut cmd)
}

/// The fakes and [`start`]ed service of one test.
fn started() -> (
    tokio::runtime::Runtime,
    FakeAnthropic,
    FakeTelegram,
    tempfile::TempDir,
    Service,
) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) =
        runtime.block_on(async { (model().await, FakeTelegram::start().await) });
    let dir = tempfile::tempdir().unwrap();
    let service = start(dir.path(), &telegram, &anthropic);
    (runtime, anthropic, telegram, dir, service)
}

/// Stops the service; its audit log, newest first.
fn audit(mut service: Service, dir: &Path) -> Vec<valor_protocol::approval::ApprovalRecord> {
    service.signal("TERM");
    assert!(service.wait_for_exit(Duration::from_secs(10)).success());
    let store = valor_store::Store::open(&dir.join(".local/share/valor/store")).unwrap();
    store.latest_approvals(None, 100).unwrap()
}

fn count(log: &[valor_protocol::approval::ApprovalRecord], decision: Decision) -> usize {
    log.iter().filter(|r| r.decision == Some(decision)).count()
}

/// Allow once, deny, allow exactly this for the session; the bypass corpus, all asked, none run.
#[test]
fn commands_ask_once_for_the_session_or_denied_and_nothing_rides_on_a_grant() {
    let (runtime, _anthropic, telegram, dir, service) = started();
    let chat = Chat {
        telegram: &telegram,
        service: &service,
        chat: 100,
    };
    let ws = workspace(dir.path(), 100);

    // Allow once: the whole command shown, with the model's words marked as its own.
    let question = chat.ask(100, "RUN<<echo once > once.txt>>RUN");
    assert!(
        question.visible.contains("echo once > once.txt"),
        "{}",
        question.visible
    );
    assert!(
        question
            .visible
            .contains("Claude says it is to: Does what you asked")
    );
    assert_eq!(chat.press(100, &question, "o"), "Allowed once.");
    assert!(
        chat.tool_said(1).contains("error false"),
        "{:?}",
        chat.texts()
    );
    assert!(chat.settled(&question).contains("allowed once"));
    assert_eq!(
        std::fs::read_to_string(ws.join("once.txt")).unwrap(),
        "once\n"
    );
    // Once is once: the same command asks again; denied, it does not run.
    std::fs::remove_file(ws.join("once.txt")).unwrap();
    let again = chat.ask(100, "RUN<<echo once > once.txt>>RUN");
    assert_eq!(chat.press(100, &again, "d"), "Denied.");
    assert!(
        chat.tool_said(2).contains("error true"),
        "{:?}",
        chat.texts()
    );
    assert!(!ws.join("once.txt").exists());
    // A second press on a decided question changes nothing.
    assert_eq!(
        chat.press(100, &again, "o"),
        "This approval is no longer open."
    );

    // Allow exactly this for the session: the same bytes run without asking...
    let granted = "echo granted > granted.txt";
    let question = chat.ask(100, &format!("RUN<<{granted}>>RUN"));
    assert_eq!(chat.press(100, &question, "s"), "Allowed for this session.");
    chat.tool_said(3);
    let asked = questions(&telegram, 100).len();
    telegram.user_says(100, 100, &format!("RUN<<{granted}>>RUN"));
    assert!(chat.tool_said(4).contains("error false"));
    assert_eq!(
        questions(&telegram, 100).len(),
        asked,
        "a granted command asked again"
    );
    // ...and nothing else does: each of these asks, and denied, none of them runs.
    let corpus = [
        format!("{granted}\ntouch pwned-newline"),
        format!("{granted} ; touch pwned-semicolon"),
        format!("env {granted} && touch pwned-env"),
        format!("sh -c '{granted}; touch pwned-sh'"),
        format!("time {granted}; touch pwned-time"),
        "echo pwned-xargs | xargs touch".to_owned(),
        "echo dG91Y2ggcHduZWQtYmFzZTY0 | base64 -d | sh".to_owned(),
        "printf 'touch pwned-gzip' | gzip | gunzip | sh".to_owned(),
        format!("shopt -s expand_aliases; alias echo='touch pwned-alias; echo'; {granted}"),
        format!("е{}; touch pwned-lookalike", &granted[1..]),
        format!("{granted}\u{200b}; touch pwned-invisible"),
        format!("{granted} "),
    ];
    let mut answers = 4;
    for command in &corpus {
        let question = chat.ask(100, &format!("RUN<<{command}>>RUN"));
        // Shown whole: every line of it.
        for line in command.lines() {
            let line = line.replace('\u{200b}', "⟨U+200B⟩");
            assert!(
                question.visible.contains(line.trim()),
                "{line:?} not in {}",
                question.visible
            );
        }
        // A letter that looks like another, or one nobody sees, is pointed out.
        if !command.is_ascii() {
            assert!(
                question.visible.contains("not plain ASCII"),
                "{}",
                question.visible
            );
        }
        assert_eq!(chat.press(100, &question, "d"), "Denied.");
        answers += 1;
        assert!(
            chat.tool_said(answers).contains("error true"),
            "{command:?}"
        );
    }
    let pwned: Vec<_> = std::fs::read_dir(&ws)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.starts_with("pwned"))
        .collect();
    assert!(pwned.is_empty(), "ran without approval: {pwned:?}");

    let log = audit(service, dir.path());
    assert_eq!(count(&log, Decision::AllowOnce), 1, "{log:#?}");
    assert_eq!(count(&log, Decision::AllowSession), 1);
    assert_eq!(count(&log, Decision::SessionGrant), 1);
    assert_eq!(count(&log, Decision::Deny), 1 + corpus.len());
    assert!(log.iter().all(|r| r.decision.is_some() && r.chat_id == 100));
    drop(runtime);
}

/// Writes in and out of the source tree, an unlisted host, a paid call, the timeout with its
/// reminder, and roles in a group.
#[test]
fn writes_hosts_paid_calls_timeouts_and_groups_ask_the_right_person() {
    let (runtime, _anthropic, telegram, dir, service) = started();
    let chat = Chat {
        telegram: &telegram,
        service: &service,
        chat: 100,
    };
    let ws = workspace(dir.path(), 100);
    let mut answers = 0;
    // Writes: in the source tree at once; outside it, or through a link, a person decides.
    let inside = ws.join("src/inside.txt");
    let asked = questions(&telegram, 100).len();
    telegram.user_says(100, 100, &format!("WRITE<<{}>>WRITE", inside.display()));
    answers += 1;
    assert!(
        chat.tool_said(answers).contains("error false"),
        "{:?}",
        chat.texts()
    );
    assert_eq!(std::fs::read_to_string(&inside).unwrap(), "planted");
    assert_eq!(questions(&telegram, 100).len(), asked);
    let home = dir.path().join(".local/share/valor/homes/chat_100");
    std::os::unix::fs::symlink(&home, ws.join("docs")).unwrap();
    for (path, why) in [
        (home.join("outside.sh"), "outside the workspace"),
        (ws.join("docs/through-link.sh"), "link"),
        (ws.join(".git/hooks/pre-commit"), ".git"),
    ] {
        let question = chat.ask(100, &format!("WRITE<<{}>>WRITE", path.display()));
        assert!(question.visible.contains(why), "{}", question.visible);
        assert!(question.visible.contains("planted"), "{}", question.visible);
        assert_eq!(chat.press(100, &question, "d"), "Denied.");
        answers += 1;
        chat.tool_said(answers);
        assert!(!path.exists(), "{}", path.display());
    }
    assert!(!home.join("through-link.sh").exists());

    // The network: a host not on the allow-list asks, whatever command reaches it.
    let question = chat.ask(
        100,
        "RUN<<curl -sS -m 20 -o /dev/null https://unlisted.example/ 2>&1; echo exit-$?>>RUN",
    );
    assert_eq!(chat.press(100, &question, "o"), "Allowed once.");
    let host = chat.question_with("unlisted.example on port 443");
    assert!(host.visible.contains("port 443"), "{}", host.visible);
    assert_eq!(chat.press(100, &host, "d"), "Denied.");
    answers += 1;
    let said = chat.tool_said(answers);
    assert!(said.contains("403"), "{said}");

    // A paid call (an image) asks first; denied, no call is made.
    let question = chat.ask(100, "IMAGE<<a red fox>>IMAGE");
    assert!(
        question.visible.contains("costs money"),
        "{}",
        question.visible
    );
    assert!(
        question.visible.contains("a red fox"),
        "{}",
        question.visible
    );
    assert_eq!(chat.press(100, &question, "d"), "Denied.");
    answers += 1;
    assert!(chat.tool_said(answers).contains("error true"));

    // No answer: a reminder, then denied when the time is up; the turn still ends, loudly.
    let question = chat.ask(100, "RUN<<touch pwned-timeout>>RUN");
    wait_until(&service, "the reminder", Duration::from_secs(20), || {
        chat.texts()
            .into_iter()
            .find(|t| t.starts_with("⏳ Still waiting for your approval"))
    });
    answers += 1;
    assert!(chat.tool_said(answers).contains("error true"));
    assert!(chat.settled(&question).contains("no answer in time"));
    assert!(!ws.join("pwned-timeout").exists());

    // In a group only an approver answers; a chatter's press changes nothing.
    let group = Chat {
        telegram: &telegram,
        service: &service,
        chat: -200,
    };
    let question = group.ask(100, "RUN<<touch group-ok>>RUN");
    assert_eq!(
        group.press(101, &question, "o"),
        "Only an approver can answer this."
    );
    assert_eq!(
        group.press(100, &question, "o"),
        "Only an approver can answer this."
    );
    assert_eq!(group.press(300, &question, "o"), "Allowed once.");
    assert!(group.tool_said(1).contains("error false"));
    assert!(workspace(dir.path(), -200).join("group-ok").exists());
    // A press from another chat (a forged callback) cannot decide this chat's question.
    let question = group.ask(300, "RUN<<touch forged>>RUN");
    let query = telegram.user_presses(100, 100, question.message_id, &button(&question, "o"));
    let answer = wait_until(
        &service,
        "the forged press",
        Duration::from_secs(30),
        || telegram.callback_answer(&query),
    );
    assert_eq!(answer, "This approval is not from this chat.");
    assert_eq!(group.press(300, &question, "d"), "Denied.");
    group.tool_said(2);
    assert!(!workspace(dir.path(), -200).join("forged").exists());

    // The dashboard's Approvals page shows them, the whole command on opening one.
    let page = crate::cluster_run::logged_in_page(
        crate::support::valor(dir.path()).arg("dashboard"),
        "/ui/approvals",
    );
    assert!(page.contains("unlisted.example:443"), "{page}");
    assert!(page.contains("denied: no answer in time"), "{page}");
    assert!(page.contains("touch group-ok"), "{page}");
    let log = audit(service, dir.path());
    assert_eq!(count(&log, Decision::AllowOnce), 2, "{log:#?}");
    assert_eq!(count(&log, Decision::Deny), 3 + 2 + 1);
    assert_eq!(count(&log, Decision::TimedOut), 1);
    let host = log.iter().find(|r| r.tool == "egress").unwrap();
    assert_eq!(host.what, "unlisted.example:443");
    assert!(
        log.iter()
            .filter(|r| r.chat_id == -200 && r.decision == Some(Decision::AllowOnce))
            .all(|r| r.by == Some(300))
    );
    drop(runtime);
}

/// Roles: an admin hands out a pairing code for an approver from a private chat (never in a
/// group); the new approver's press settles a group's approval; in a group only the person who
/// said it (or an admin) settles "Remember this?".
#[test]
fn an_admin_pairs_an_approver_and_group_questions_go_to_the_right_person() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) =
        runtime.block_on(async { (model().await, FakeTelegram::start().await) });
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = run_with(dir.path(), &telegram, &anthropic);
    cmd.env("VALOR__ACCESS__ADMINS", "[400]")
        .env("VALOR__TELEGRAM__ALLOWED_USERS", "[100, 101]");
    let service = Service::start(&mut cmd);
    let texts = |chat: i64| -> Vec<String> {
        telegram
            .messages(chat)
            .into_iter()
            .map(|m| m.visible)
            .collect()
    };
    // Not in a group, and not for a chatter.
    telegram.user_says(-300, 400, "/pair approver");
    telegram.user_says(100, 100, "/pair approver");
    telegram.user_says(400, 400, "/pair approver");
    let code = wait_until(
        &service,
        "the admin's code",
        Duration::from_secs(30),
        || {
            texts(400).into_iter().find_map(|t| {
                let rest = t.strip_prefix("Pairing code for a new approver: ")?;
                Some(rest.split_whitespace().next()?.to_owned())
            })
        },
    );
    wait_until(&service, "the refusals", Duration::from_secs(30), || {
        (texts(-300).iter().any(|t| t.contains("in a private chat"))
            && texts(100).iter().any(|t| t == "You are already paired."))
        .then_some(())
    });
    telegram.user_says(500, 500, &format!("/pair {code}"));
    wait_until(&service, "paired", Duration::from_secs(30), || {
        texts(500)
            .iter()
            .any(|t| t.starts_with("Paired."))
            .then_some(())
    });
    let group = Chat {
        telegram: &telegram,
        service: &service,
        chat: -300,
    };
    let question = group.ask(100, "RUN<<touch approved-by-500>>RUN");
    assert_eq!(
        group.press(101, &question, "o"),
        "Only an approver can answer this."
    );
    assert_eq!(group.press(500, &question, "o"), "Allowed once.");
    group.tool_said(1);
    assert!(workspace(dir.path(), -300).join("approved-by-500").exists());

    // "Remember this?" in the group: the person it was asked of, or an admin.
    let statement = "We decided to use PostgreSQL for the main database.";
    telegram.user_says(-300, 100, statement);
    let remember = wait_until(&service, "the question", Duration::from_secs(60), || {
        telegram
            .messages(-300)
            .into_iter()
            .find(|m| m.visible == format!("Remember this?\n\n{statement}"))
    });
    let yes = remember.reply_markup.clone().unwrap()["inline_keyboard"][0][0]["callback_data"]
        .as_str()
        .unwrap()
        .to_owned();
    for other in [101, 500] {
        let query = telegram.user_presses(-300, other, remember.message_id, &yes);
        let answer = wait_until(&service, "the refusal", Duration::from_secs(30), || {
            telegram.callback_answer(&query)
        });
        assert_eq!(
            answer,
            "Only the person who said it (or an admin) can answer this."
        );
    }
    let query = telegram.user_presses(-300, 400, remember.message_id, &yes);
    let answer = wait_until(&service, "the admin's yes", Duration::from_secs(30), || {
        telegram.callback_answer(&query)
    });
    assert!(answer.starts_with("Remembered"), "{answer}");
    let log = audit(service, dir.path());
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].by, Some(500));
    drop(runtime);
}
