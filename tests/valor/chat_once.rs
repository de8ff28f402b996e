//! `valor chat --once` and `valor stats` through the real Claude Code CLI and the fake API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;

use crate::support::{output, valor};
use valor_fakes::anthropic::{FakeAnthropic, Reply, Turn};

fn script(turn: &Turn) -> Reply {
    if let Some((_, content, is_error)) = &turn.last_tool_result {
        return Reply::text(&format!("Tool ({is_error}): {content}"));
    }
    if turn.asks("show the screenshot") {
        return Reply::tool(
            "mcp__dev__retrieve_workspace_screenshot",
            serde_json::json!({"task_id": "T1", "chat_id": 0}),
        );
    }
    if turn.asks("overload") {
        return Reply::overloaded();
    }
    // What the conversation carries, the last session's summary left out (after /new the word
    // is only there: the history starts over).
    let history = turn.body["messages"].to_string();
    let carried = history
        .split("LAST_SESSION")
        .next()
        .unwrap_or_default()
        .to_owned()
        + history.split("LEARNINGS").nth(1).unwrap_or_default();
    if turn.asks("what was the word") && carried.contains("apple") {
        return Reply::chunks(&["The word", " was apple."]);
    }
    Reply::chunks(&["Hello", " from", " the fake."])
}

/// `valor chat` with `input` piped in (one message a line), the fake API and a private store.
async fn console(fake: &FakeAnthropic, dir: &std::path::Path, input: &'static [u8]) -> Output {
    use std::io::Write as _;
    let mut cmd = valor(dir);
    cmd.arg("chat")
        .env("ANTHROPIC_BASE_URL", &fake.url)
        .env("ANTHROPIC_API_KEY", "sk-ant-test")
        .env("CLAUDE_CODE_MAX_RETRIES", "1")
        .env("VALOR__STORE__PATH", dir.join("store"))
        .env("VALOR__CLAUDE__WORKSPACES_DIR", dir.join("workspaces"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// Runs `valor` with the fake API and a private store, off the async runtime.
async fn run_valor(
    fake: &FakeAnthropic,
    dir: &std::path::Path,
    args: &[&str],
) -> (Output, String, String) {
    run_valor_env(fake, dir, args, &[]).await
}

async fn run_valor_env(
    fake: &FakeAnthropic,
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, String)],
) -> (Output, String, String) {
    let mut cmd = valor(dir);
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.args(args)
        .env("ANTHROPIC_BASE_URL", &fake.url)
        .env("ANTHROPIC_API_KEY", "sk-ant-test")
        .env("CLAUDE_CODE_MAX_RETRIES", "1")
        .env("VALOR__STORE__PATH", dir.join("store"))
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

    // Both turns went through the engine: the conversation is stored, the prompt has its block.
    {
        let store = valor_store::Store::open(&dir.path().join("store")).unwrap();
        let stored: Vec<(valor_protocol::Role, String)> = store
            .recent_messages(0, 10)
            .unwrap()
            .into_iter()
            .map(|m| (m.role, m.text))
            .collect();
        use valor_protocol::Role::{Assistant, User};
        assert_eq!(
            stored,
            [
                (User, "remember the word apple".to_owned()),
                (Assistant, "Hello from the fake.".to_owned()),
                (User, "what was the word?".to_owned()),
                (Assistant, "The word was apple.".to_owned()),
            ]
        );
    }
    let prompt = fake.requests()[0].last_user_text.clone().unwrap();
    assert!(prompt.contains("CONTEXT_DATA:\nCHAT_ID=0\n"), "{prompt}");
    assert!(
        prompt.contains("USER_REQUEST: remember the word apple"),
        "{prompt}"
    );

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
    // ... with the summary of the session /new ended at the top of its prompt.
    let prompt = fake
        .requests()
        .last()
        .unwrap()
        .last_user_text
        .clone()
        .unwrap();
    let summary = prompt
        .split("LAST_SESSION")
        .nth(1)
        .expect("the last session's summary");
    assert!(
        summary.contains("Session summary (ended by /new"),
        "{prompt}"
    );
    assert!(summary.contains("- remember the word apple"), "{prompt}");
    assert!(!prompt.contains("RECENT_HISTORY"), "{prompt}");

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
async fn without_the_embedding_model_memories_come_by_keyword_and_the_turn_is_answered() {
    let fake = FakeAnthropic::start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("memory.jsonl");
    std::fs::write(
        &file,
        r#"{"type":"memory","id":7,"kind":"link","chat_id":0,"at_ms":1795330002000,"title":"Sourdough starter guide","text":"Feed the starter flour and water every day.","url":"https://example.org/bread"}"#,
    )
    .unwrap();
    let no_model = [(
        "VALOR__MEMORY__MODEL_DIR",
        dir.path().join("none").display().to_string(),
    )];
    let path = file.display().to_string();
    let (out, _, stderr) =
        run_valor_env(&fake, dir.path(), &["memory", "import", &path], &no_model).await;
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let (out, stdout, stderr) = run_valor_env(
        &fake,
        dir.path(),
        &[
            "chat",
            "--once",
            "how often should I feed my sourdough starter?",
        ],
        &no_model,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "Hello from the fake.\n");
    let prompt = fake.requests()[0].last_user_text.clone().unwrap();
    assert!(
        prompt.contains("RELEVANT_MEMORIES (best first; memory tools: get(ids) reads any in full, search(query) finds more, timeline(anchor_id) shows what happened around one):\n[#7 link 2026-11-22] Sourdough starter guide\n  Feed the starter flour and water every day.\n"),
        "{prompt}"
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

#[tokio::test(flavor = "multi_thread")]
async fn the_persona_comes_from_the_configured_file() {
    let fake = FakeAnthropic::start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let persona = dir.path().join("persona.md");
    std::fs::write(&persona, "You are Valor, a pirate who fixes bugs.").unwrap();
    let file = persona.display().to_string();
    let (out, _, stderr) = run_valor(&fake, dir.path(), &["chat", "--once", "hi"]).await;
    assert!(out.status.success(), "{stderr}");
    let system = fake.requests()[0].body["system"].to_string();
    assert!(
        system.contains("NEVER ask") || system.contains("Never ask"),
        "the built-in persona by default"
    );

    let mut cmd_env = vec![("VALOR__CLAUDE__PERSONA_FILE", file.clone())];
    let (out, _, stderr) =
        run_valor_env(&fake, dir.path(), &["chat", "--once", "hi"], &cmd_env).await;
    assert!(out.status.success(), "{stderr}");
    let system = fake.requests().last().unwrap().body["system"].to_string();
    assert!(system.contains("a pirate who fixes bugs"), "{system}");

    cmd_env[0].1 = dir.path().join("missing.md").display().to_string();
    let (out, _, stderr) =
        run_valor_env(&fake, dir.path(), &["chat", "--once", "hi"], &cmd_env).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("cannot read the persona file") && stderr.contains("missing.md"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interactive_chat_reads_one_message_a_line() {
    let fake = FakeAnthropic::start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let out = console(
        &fake,
        dir.path(),
        b"remember the word apple\nwhat was the word?\n/new\nwhat was the word?\n/quit\n",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Hello from the fake.\nThe word was apple.\n(a new conversation starts with your next message)\nHello from the fake.\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_hosts_the_tools_for_its_own_turns() {
    let fake = FakeAnthropic::start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let shots = dir.path().join("workspaces/chat_0/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x02\x80\0\0\x01\xe0\x08\x06\0\0\0";
    std::fs::write(shots.join("T1-1.png"), png).unwrap();
    let (out, stdout, stderr) = run_valor(
        &fake,
        dir.path(),
        &["chat", "--once", "show the screenshot of T1"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.starts_with("Tool (false): Screenshot of task T1: "),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("640x480 pixels"), "{stdout}");
    // No chat to send it to: the picture is named on stderr.
    assert!(
        stderr.contains("[picture] 1 KB (Screenshot of task T1)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_asks_remember_this_and_takes_a_typed_answer() {
    let fake = FakeAnthropic::start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let out = console(
        &fake,
        dir.path(),
        b"We switched from Bootstrap to Tailwind last week.\nyes\n\
          We decided to use PostgreSQL for the orders service.\nno\n\
          We no longer use Jest.\nhello again\n/quit\n",
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[1].starts_with("Remember this? "), "{stdout}");
    assert!(lines[1].ends_with("[y/n]"), "{stdout}");
    assert!(lines[2].starts_with("Remembered"), "{stdout}");
    assert!(lines[4].starts_with("Remember this? "), "{stdout}");
    assert!(lines[5].starts_with("Not stored: "), "{stdout}");
    // A question answered with a new message lapses; the message is a turn of its own.
    assert!(lines[7].starts_with("Remember this? "), "{stdout}");
    assert!(lines[8].starts_with("(not stored: "), "{stdout}");
    assert_eq!(lines[9], "Hello from the fake.", "{stdout}");
    // Only the yes was kept.
    let (_, list, _) = output(
        valor(dir.path())
            .args(["learnings", "list", "--chat", "0"])
            .env("VALOR__STORE__PATH", dir.path().join("store")),
    );
    assert!(list.contains("Tailwind"), "{list}");
    assert!(!list.contains("PostgreSQL"), "{list}");
    assert!(!list.contains("Jest"), "{list}");

    // The workspace's LEARNED_INSIGHTS.md has the yes, private; /forget changes it.
    use std::os::unix::fs::PermissionsExt as _;
    let insights = dir.path().join("workspaces/chat_0/LEARNED_INSIGHTS.md");
    let text = std::fs::read_to_string(&insights).unwrap();
    assert!(
        text.contains("Tailwind") && !text.contains("Retired"),
        "{text}"
    );
    let mode = std::fs::metadata(&insights).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = console(&fake, dir.path(), b"/forget 1\n/quit\n").await;
    assert!(out.status.success());
    let text = std::fs::read_to_string(&insights).unwrap();
    assert!(
        text.contains("## Retired") && text.contains("forgotten by the user"),
        "{text}"
    );
}

/// What `valor chat --once` stored is found by meaning at once by `valor memory search` (which
/// embeds the queue first), run from `/` with no model configured: the model is found beside
/// the executable.
#[tokio::test(flavor = "multi_thread")]
async fn memory_search_after_chat_once_finds_by_meaning_from_any_directory() {
    let fake = FakeAnthropic::start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let said = "My cat loves sleeping on the warm radiator every afternoon.";
    let (out, _, stderr) = run_valor(&fake, dir.path(), &["chat", "--once", said]).await;
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let mut search = valor(dir.path());
    search
        .current_dir("/")
        .env_remove("VALOR__MEMORY__MODEL_DIR")
        .env("VALOR__STORE__PATH", dir.path().join("store"))
        .args([
            "memory",
            "search",
            "kitten napping beside a heater",
            "--json",
        ]);
    let (out, stdout, stderr) = tokio::task::spawn_blocking(move || output(&mut search))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result["mode"], "hybrid", "{stdout}\n{stderr}");
    let first = &result["hits"][0];
    assert_eq!(first["snippet"], said, "{stdout}");
    assert_eq!(first["keyword_match"], false, "found by meaning: {stdout}");
}

/// A turn through the real CLI that names a function of its workspace gets the function map in
/// its prompt; when it writes a file and runs a command, the observation kept names the type,
/// the file, the function and the command.
#[tokio::test(flavor = "multi_thread")]
async fn a_turn_gets_the_function_map_and_leaves_an_observation() {
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("workspaces/chat_0");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(
        workspace.join("greet.py"),
        "def greeting(name):\n    return 'helo ' + name\n\n\ndef unrelated():\n    pass\n",
    )
    .unwrap();
    let file = workspace.join("greet.py").to_string_lossy().into_owned();
    // Claude Code edits only a file it has read: read, edit, run, answer.
    let fake = FakeAnthropic::start(move |turn| {
        let last = turn.last_tool_result.as_ref().map(|(_, content, _)| content.clone());
        match last.as_deref() {
            None => Reply::tool("Read", serde_json::json!({"file_path": file})),
            Some(content) if content.contains("has been updated") => Reply::tool(
                "Bash",
                serde_json::json!({"command": "python3 -c \"print('hello')\""}),
            ),
            Some(content) if content.contains("helo") => Reply::tool(
                "Edit",
                serde_json::json!({"file_path": file, "old_string": "'helo '", "new_string": "'hello, '"}),
            ),
            Some(_) => Reply::text("Fixed the typo in greeting."),
        }
    })
    .await;
    let (out, stdout, stderr) = run_valor(
        &fake,
        dir.path(),
        &["chat", "--once", "fix the typo bug in greeting()"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let prompt = fake.requests()[0].last_user_text.clone().unwrap();
    let map = prompt
        .split("CODE_MAP")
        .nth(1)
        .expect("the function map layer");
    assert!(
        map.contains("greet.py (changed today):\n  def greeting(name)  [L1-L2]  ← named"),
        "{prompt}"
    );

    let store = valor_store::Store::open(&dir.path().join("store")).unwrap();
    let observations = store
        .memory_records(valor_store::MemoryKind::Observation)
        .unwrap();
    assert_eq!(observations.len(), 1, "{observations:?}\n{stderr}");
    let o = &observations[0];
    assert_eq!(o.chat_id, Some(0));
    assert!(
        o.title
            .starts_with("[bugfix] fix the typo bug in greeting() — changed greet.py"),
        "{}",
        o.title
    );
    assert!(o.text.contains("Files changed: greet.py"), "{}", o.text);
    assert!(
        o.text.contains("Functions: greeting (greet.py)"),
        "{}",
        o.text
    );
    assert!(
        o.text.contains("Commands: python3 -c \"print('hello')\""),
        "{}",
        o.text
    );
}

/// In the terminal an approval is shown whole on stderr and answered by a typed o, s or d;
/// a one-off message has nobody to ask, so the command is denied at once (not after the
/// timeout).
#[tokio::test(flavor = "multi_thread")]
async fn the_console_asks_for_approval_and_a_one_off_denies_at_once() {
    let fake = FakeAnthropic::start(|turn| {
        if let Some((_, content, is_error)) = &turn.last_tool_result {
            let first = content.lines().next().unwrap_or_default();
            return Reply::text(&format!("tool said (error {is_error}): {first}"));
        }
        let text = turn.last_user_text.clone().unwrap_or_default();
        match text.rfind("RUN: ") {
            Some(at) => {
                let command = text[at + 5..].lines().next().unwrap_or_default();
                Reply::tool("Bash", serde_json::json!({"command": command}))
            }
            None => Reply::text("ok"),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = console(
        &fake,
        dir.path(),
        b"RUN: touch allowed-here\no\nRUN: touch denied-here\nd\n",
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("Approval needed (Bash)"), "{stderr}");
    assert!(
        stderr.contains("----\ntouch allowed-here\n----"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(Allowed once.)") && stderr.contains("(Denied.)"),
        "{stderr}"
    );
    let workspace = dir.path().join("workspaces/chat_0");
    assert!(
        workspace.join("allowed-here").exists(),
        "{stdout}\n{stderr}"
    );
    assert!(!workspace.join("denied-here").exists());

    let started = std::time::Instant::now();
    let (out, stdout, stderr) = run_valor(
        &fake,
        dir.path(),
        &["chat", "--once", "RUN: touch once-here"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("nobody to ask: denied"), "{stderr}");
    assert!(stdout.contains("tool said (error true)"), "{stdout}");
    assert!(!workspace.join("once-here").exists());
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}
