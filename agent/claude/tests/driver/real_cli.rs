//! The driver running the real, pinned Claude Code CLI against the fake Anthropic API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{
    Harness, Sandboxing, failed, finished, group_members, mcp_config, prying, real_claude,
};
use serde_json::json;
use valor_core::Backend;
use valor_fakes::anthropic::{FakeAnthropic, Reply, Turn};
use valor_protocol::{Event, TurnErrorKind};

fn answer(turn: &Turn) -> Reply {
    if let Some((_, content, is_error)) = &turn.last_tool_result {
        return Reply::text(&format!("The tool said ({is_error}): {content}"));
    }
    if turn.asks("use echo") {
        return Reply::tool("mcp__fake__echo", json!({"text": "hi"}));
    }
    if turn.asks("show env") {
        return Reply::tool("mcp__fake__env_names", json!({}));
    }
    if turn.asks("crash the tool") {
        return Reply::tool("mcp__fake__crash", json!({}));
    }
    Reply::chunks(&["Hello", " from", " the fake."])
}

#[tokio::test]
async fn a_plain_answer_streams_before_it_finishes() {
    let fake = FakeAnthropic::start(answer).await;
    let h = Harness::new(real_claude(), &fake.url, |_| {}).await;
    let events = h.run(h.request(1, "say hello")).await;
    let first_delta = events
        .iter()
        .position(|e| matches!(e, Event::TextDelta(_)))
        .unwrap();
    let deltas: String = events
        .iter()
        .filter_map(|e| match e {
            Event::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, "Hello from the fake.");
    assert!(first_delta < events.len() - 1);
    assert!(
        matches!(events[0], Event::Started { .. }),
        "{:?}",
        events[0]
    );
    let summary = finished(&events);
    assert_eq!(summary.text, "Hello from the fake.");
    assert_eq!(summary.num_turns, 1);
    assert!(summary.cost_usd > 0.0);
    assert!(!summary.warm);
    // The session is kept for the chat, and the run is recorded.
    assert_eq!(
        h.store.session(1).unwrap().unwrap().session_id,
        summary.session_id
    );
    let runs = h.store.runs_since(0).unwrap();
    assert_eq!(runs.len(), 1);
    assert!(runs[0].error.is_none());
    // The persona reached the system prompt.
    let system = fake.requests()[0].body["system"].to_string();
    assert!(system.contains("You are a test persona."), "{system}");
    // Nothing is left running, nothing left recorded.
    assert!(h.children.snapshot().is_empty());
    assert!(h.store.processes().unwrap().is_empty());
}

#[tokio::test]
async fn a_tool_call_into_a_real_mcp_server_and_back() {
    let fake = FakeAnthropic::start(answer).await;
    let h = Harness::new(real_claude(), &fake.url, |_| {}).await;
    let secret = "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
    let events = (h.run(h.request(2, &format!("please use echo, token {secret}")))).await;
    assert!(
        events.iter().any(|e| matches!(e,
        Event::ToolCall { name, input, .. } if name == "mcp__fake__echo" && input["text"] == "hi"))
    );
    assert!(events.iter().any(|e| matches!(e,
        Event::ToolResult { ok: true, content, .. } if content == "echo: hi")));
    let summary = finished(&events);
    assert_eq!(summary.text, "The tool said (false): echo: hi");
    assert_eq!(summary.tool_calls.len(), 1);
    assert_eq!(summary.tool_calls[0].name, "mcp__fake__echo");
    assert!(summary.tool_calls[0].ok);
    assert_eq!(summary.num_turns, 2);
    // Recorded for the dashboard: the call with its input, the prompt (its secret redacted)
    // and the answer, under the run's start and chat.
    let runs = h.store.runs_since(0).unwrap();
    assert_eq!(runs[0].tool_calls[0].input, r#"{"text":"hi"}"#);
    let text = (h.store.turn_text(runs[0].started_at_ms, 2).unwrap()).unwrap();
    assert!(
        text.prompt.contains("please use echo, token [redacted]"),
        "{}",
        text.prompt
    );
    assert!(!text.prompt.contains(secret));
    assert_eq!(text.answer, "The tool said (false): echo: hi");
    assert_eq!(text.tool_inputs.len(), 1);
    assert_eq!(text.tool_inputs[0].1, r#"{"text":"hi"}"#);
    // Its cost, tokens and duration on /metrics, as a chat's.
    let metrics = h.metrics.render();
    let run = &runs[0];
    assert!(
        metrics.contains(&format!(
            "valor_cost_usd_total{{source=\"chat\"}} {}",
            run.cost_usd
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "valor_tokens_total{{source=\"chat\",kind=\"output\"}} {}",
            run.usage.output_tokens
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("valor_turn_duration_seconds_bucket{source=\"chat\",le=\"+Inf\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("valor_turn_duration_seconds_count{source=\"chat\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn claude_and_its_tools_never_get_valors_other_secrets() {
    let fake = FakeAnthropic::start(answer).await;
    let h = Harness::new(real_claude(), &fake.url, |_| {}).await;
    let events = h.run(h.request(3, "show env")).await;
    let names = events
        .iter()
        .find_map(|e| match e {
            Event::ToolResult { content, .. } => Some(content.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        names.contains("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"),
        "{names}"
    );
    assert!(!names.contains("TELEGRAM_BOT_TOKEN"), "{names}");
    assert!(!names.contains("OPENAI_API_KEY"), "{names}");
}

#[tokio::test]
async fn the_next_turn_resumes_the_chat_session() {
    let fake = FakeAnthropic::start(answer).await;
    let h = Harness::new(real_claude(), &fake.url, |_| {}).await;
    let first = h.run(h.request(4, "remember the word apple")).await;
    let session = finished(&first).session_id.clone();
    let second = h.run(h.request(4, "what was the word?")).await;
    assert_eq!(finished(&second).session_id, session);
    let last = fake.requests().last().unwrap().clone();
    assert!(
        last.message_count >= 3,
        "the resumed request carries the history: {}",
        last.message_count
    );
    assert!(
        last.body["messages"]
            .to_string()
            .contains("remember the word apple")
    );
    assert_eq!(h.store.session(4).unwrap().unwrap().turns, 2);

    // A fresh session on request.
    let mut fresh = h.request(4, "start over");
    fresh.fresh_session = true;
    let third = h.run(fresh).await;
    assert_ne!(finished(&third).session_id, session);
    assert!(
        !fake.requests().last().unwrap().body["messages"]
            .to_string()
            .contains("apple")
    );
}

#[tokio::test]
async fn an_unknown_session_falls_back_to_a_new_one() {
    let fake = FakeAnthropic::start(answer).await;
    let h = Harness::new(real_claude(), &fake.url, |_| {}).await;
    h.store
        .set_session(
            5,
            &valor_store::SessionRecord {
                session_id: "00000000-0000-4000-8000-000000000000".to_owned(),
                updated_at_ms: 0,
                turns: 9,
            },
        )
        .unwrap();
    let events = h.run(h.request(5, "hello again")).await;
    let summary = finished(&events);
    assert_ne!(summary.session_id, "00000000-0000-4000-8000-000000000000");
    assert_eq!(h.driver.metrics().resume_fallbacks.get(), 1);
    assert_eq!(
        h.store.session(5).unwrap().unwrap().session_id,
        summary.session_id
    );
}

#[tokio::test]
async fn api_errors_then_success_are_retried_by_the_cli() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let fake = FakeAnthropic::start(move |turn| match counter.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::error(500, "api_error", "Internal server error"),
        1 => Reply::overloaded(),
        _ => answer(turn),
    })
    .await;
    let h = Harness::new(real_claude(), &fake.url, |c| {
        c.env
            .insert("CLAUDE_CODE_MAX_RETRIES".to_owned(), "3".to_owned());
    })
    .await;
    let events = h.run(h.request(6, "say hello")).await;
    let retries: Vec<Option<u16>> = events
        .iter()
        .filter_map(|e| match e {
            Event::Retrying { status, .. } => Some(*status),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [Some(500), Some(529)]);
    assert_eq!(finished(&events).text, "Hello from the fake.");
}

#[tokio::test]
async fn persistent_overload_is_the_overloaded_error() {
    let fake = FakeAnthropic::start(|_| Reply::overloaded()).await;
    let h = Harness::new(real_claude(), &fake.url, |_| {}).await;
    let events = h.run(h.request(7, "say hello")).await;
    let error = failed(&events);
    assert_eq!(error.kind, TurnErrorKind::Overloaded);
    assert!(
        error
            .user_message()
            .starts_with("Claude is overloaded right now")
    );
    assert!(error.is_retryable());
    // The CLI's synthetic error text is not passed off as an answer.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Text(t) if t.contains("API Error")))
    );
    let runs = h.store.runs_since(0).unwrap();
    assert_eq!(
        runs[0].error.as_ref().unwrap().kind,
        TurnErrorKind::Overloaded
    );
    assert!(
        h.metrics
            .render()
            .contains("valor_claude_runs_total{outcome=\"overloaded\"} 1")
    );
}

#[tokio::test]
async fn malformed_responses_are_an_api_error() {
    let fake = FakeAnthropic::start(|_| Reply::MalformedSse).await;
    let h = Harness::new(real_claude(), &fake.url, |_| {}).await;
    let events = h.run(h.request(8, "say hello")).await;
    assert_eq!(failed(&events).kind, TurnErrorKind::Api);
}

#[tokio::test]
async fn a_stalled_stream_hits_our_idle_timeout_and_the_whole_group_dies() {
    let fake = FakeAnthropic::start(|_| Reply::Stall(Duration::from_secs(600))).await;
    let h = Harness::new(real_claude(), &fake.url, |c| {
        c.idle_timeout_secs = 3;
        c.kill_grace_secs = 2;
    })
    .await;
    let mut stream = h.driver.start(h.request(9, "say hello"));
    // Wait until the run (and its MCP server) is up, and note its process group.
    let mut pgid = None;
    let started = Instant::now();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        if pgid.is_none() {
            pgid = h.children.snapshot().first().map(|c| c.pid);
        }
        if let Some(pgid) = pgid
            && matches!(event, Event::Started { .. })
        {
            assert!(
                group_members(pgid).len() >= 2,
                "claude and the MCP server run in the group"
            );
        }
        events.push(event);
    }
    let error = failed(&events);
    assert_eq!(error.kind, TurnErrorKind::Timeout);
    assert_eq!(error.detail, "no output for 3 s");
    assert!(started.elapsed() < Duration::from_secs(20));
    let pgid = pgid.expect("the run was registered");
    assert!(
        group_members(pgid).is_empty(),
        "left behind: {:?}",
        group_members(pgid)
    );
    assert!(h.store.processes().unwrap().is_empty());
    assert!(h.children.snapshot().is_empty());
}

#[tokio::test]
async fn cancelling_stops_the_run_and_its_group() {
    let fake = FakeAnthropic::start(|_| Reply::Stall(Duration::from_secs(600))).await;
    let h = Harness::new(real_claude(), &fake.url, |_| {}).await;
    let request = h.request(10, "say hello");
    let cancel = request.cancel.clone();
    let mut stream = h.driver.start(request);
    let mut pgid = None;
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        if matches!(event, Event::Started { .. }) {
            pgid = h.children.snapshot().first().map(|c| c.pid);
            cancel.cancel();
        }
        events.push(event);
    }
    assert_eq!(failed(&events).kind, TurnErrorKind::Cancelled);
    assert!(group_members(pgid.unwrap()).is_empty());
}

#[tokio::test]
async fn an_mcp_server_crashing_mid_call_does_not_fail_the_turn() {
    let fake = FakeAnthropic::start(answer).await;
    let h = Harness::new(real_claude(), &fake.url, |_| {}).await;
    let events = h.run(h.request(11, "crash the tool")).await;
    assert!(events.iter().any(|e| matches!(e,
        Event::ToolResult { ok: false, content, .. } if content.contains("Connection closed"))));
    let summary = finished(&events);
    assert!(!summary.tool_calls[0].ok);
}

#[tokio::test]
async fn a_failed_mcp_server_is_reported_and_counted() {
    let fake = FakeAnthropic::start(answer).await;
    let h = Harness::new(real_claude(), &fake.url, |_| {}).await;
    let mut request = h.request(12, "say hello");
    request.mcp_config = Some(mcp_config(&[(
        "broken",
        json!({"type": "stdio", "command": "/nonexistent/mcp-server"}),
    )]));
    let events = h.run(request).await;
    assert!(
        events.iter().any(|e| matches!(e,
        Event::Started { failed_mcp_servers, .. } if failed_mcp_servers == &["broken".to_owned()]))
    );
    assert_eq!(finished(&events).failed_mcp_servers, ["broken"]);
    assert_eq!(h.driver.metrics().mcp_failures.get(), 1);
    let (status, figures) = h.driver.metrics().health();
    assert_eq!(status, valor_monitor::Status::Degraded);
    assert_eq!(figures["mcp_servers_failed_last_turn"], json!(["broken"]));
}

#[tokio::test]
async fn a_denied_tool_is_listed_and_recorded() {
    let fake = FakeAnthropic::start(answer).await;
    let h = Harness::new(real_claude(), &fake.url, |c| {
        c.allowed_tools = vec!["mcp__fake__slow".to_owned()];
    })
    .await;
    let events = h.run(h.request(13, "please use echo")).await;
    let summary = finished(&events);
    assert_eq!(summary.permission_denials, ["mcp__fake__echo"]);
    let runs = h.store.runs_since(0).unwrap();
    assert_eq!(
        runs[0].error.as_ref().unwrap().kind,
        TurnErrorKind::ToolDenied
    );
}

/// Chat 31 tries to read what is not its own: chat 32's files, Valor's store and token, the
/// /proc of the process that runs it. Returns (harness, the texts the turns answered).
async fn pry(h: &Harness, asks: &[String]) -> Vec<String> {
    let mut answers = Vec::new();
    for ask in asks {
        let mut request = h.request(31, ask);
        request.mcp_config = None;
        answers.push(finished(&h.run(request).await).text.clone());
    }
    answers
}

/// Secrets planted where a prying chat should never reach, and one file of its own.
fn plant(h: &Harness) -> (Vec<(String, &'static str)>, std::path::PathBuf) {
    let root = h.dir.path();
    let other = root.join("workspaces/chat_32");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("plans.txt"), "CHAT-32-PRIVATE-PLANS").unwrap();
    std::fs::write(root.join("store.api-token"), "VALOR-API-TOKEN-XYZ").unwrap();
    std::fs::write(root.join("homes/chat_32/.claude-note"), "CHAT-32-HOME").ok();
    let own = root.join("workspaces/chat_31");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(own.join("mine.txt"), "CHAT-31-OWN-NOTES").unwrap();
    let secrets = vec![
        (
            other.join("plans.txt").display().to_string(),
            "CHAT-32-PRIVATE-PLANS",
        ),
        (
            root.join("store.api-token").display().to_string(),
            "VALOR-API-TOKEN-XYZ",
        ),
        (
            format!("/proc/{}/environ", std::process::id()),
            "sk-ant-test",
        ),
        (
            root.join("store/conf").display().to_string(),
            "segment_size",
        ),
    ];
    (secrets, own.join("mine.txt"))
}

#[tokio::test]
async fn a_sandboxed_chat_cannot_read_another_chats_files_or_valors_secrets() {
    let fake = FakeAnthropic::start(prying).await;
    let h = Harness::new(real_claude(), &fake.url, |c| {
        c.allowed_tools = vec!["Read".to_owned()];
    })
    .await;
    let (secrets, own) = plant(&h);
    let mut asks: Vec<String> = secrets.iter().map(|(p, _)| format!("READ:{p}")).collect();
    asks.push(format!("READ:{}", own.display()));
    let answers = pry(&h, &asks).await;
    for ((path, secret), answer) in secrets.iter().zip(&answers) {
        assert!(!answer.contains(secret), "{path} leaked: {answer}");
        assert!(answer.starts_with("error=true"), "{path}: {answer}");
    }
    assert!(
        answers.last().unwrap().contains("CHAT-31-OWN-NOTES"),
        "its own workspace stays readable: {}",
        answers.last().unwrap()
    );
}

#[tokio::test]
async fn a_sandboxed_shell_sees_only_its_own_chat() {
    let fake = FakeAnthropic::start(prying).await;
    let h = Harness::new(real_claude(), &fake.url, |c| {
        c.allowed_tools = vec!["Bash".to_owned()];
    })
    .await;
    let (secrets, _) = plant(&h);
    let mut asks: Vec<String> = secrets
        .iter()
        .map(|(p, _)| format!("BASH:cat {p} 2>&1; echo done"))
        .collect();
    asks.push("BASH:ls / ; echo ---; ps -eo pid,args ; echo ---; cat mine.txt".to_owned());
    asks.push(format!(
        "BASH:ls {} 2>&1; echo listed",
        h.dir.path().display()
    ));
    let answers = pry(&h, &asks).await;
    for ((path, secret), answer) in secrets.iter().zip(&answers) {
        assert!(!answer.contains(secret), "{path} leaked: {answer}");
        assert!(answer.contains("done"), "the shell ran: {answer}");
    }
    let look = &answers[secrets.len()];
    assert!(look.contains("CHAT-31-OWN-NOTES"), "{look}");
    for absent in ["root", "home", "srv", "opt"] {
        assert!(
            !look
                .split("---")
                .next()
                .unwrap()
                .lines()
                .any(|l| l.trim() == absent),
            "/{absent} visible: {look}"
        );
    }
    let processes = look.split("---").nth(1).unwrap();
    assert!(
        !processes.contains("real_cli"),
        "Valor's own process is visible: {processes}"
    );
    assert!(processes.lines().count() < 12, "{processes}");
    let listing = &answers[secrets.len() + 1];
    assert!(
        !listing.contains("store.api-token") && !listing.contains("chat_32"),
        "{listing}"
    );
}

#[tokio::test]
async fn without_the_sandbox_the_same_read_succeeds() {
    // The control: what the sandbox stops is a real hole, so the tests above can fail.
    let fake = FakeAnthropic::start(prying).await;
    let h = Harness::unsandboxed(real_claude(), &fake.url, |c| {
        c.allowed_tools = vec!["Read".to_owned()];
    })
    .await;
    let (secrets, _) = plant(&h);
    let answers = pry(&h, &[format!("READ:{}", secrets[0].0)]).await;
    assert!(
        answers[0].contains("CHAT-32-PRIVATE-PLANS"),
        "{}",
        answers[0]
    );
}

#[tokio::test]
async fn sessions_resume_and_homes_are_per_chat_inside_the_sandbox() {
    let fake = FakeAnthropic::start(answer).await;
    let h = Harness::new(real_claude(), &fake.url, |_| {}).await;
    let first = finished(&h.run(h.request(41, "say hello")).await)
        .session_id
        .clone();
    let second = finished(&h.run(h.request(41, "say hello")).await).clone();
    assert_eq!(second.session_id, first, "resumed");
    assert_eq!(h.driver.metrics().resume_fallbacks.get(), 0);
    // The transcript lives in the chat's own HOME, not in Valor's.
    let homes = h.dir.path().join("homes/chat_41/.claude/projects");
    assert!(homes.is_dir(), "{}", homes.display());
    assert!(!h.dir.path().join("home/.claude/projects").exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(h.dir.path().join("homes/chat_41"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);
    let (status, figures) = h.driver.metrics().health();
    assert_eq!(status, valor_monitor::Status::Ok);
    assert_eq!(figures["sandbox"], "bubblewrap");
    // How limits are kept is said, whichever this host allows.
    let limits = figures["sandbox_limits"].as_str().unwrap_or_default();
    assert!(
        limits.starts_with("cgroup v") || limits.starts_with("rlimits only"),
        "{figures:?}"
    );
}

#[tokio::test]
async fn a_required_sandbox_that_does_not_work_runs_no_turn() {
    let fake = FakeAnthropic::start(answer).await;
    let broken = valor_claude::sandbox::SandboxState::Unavailable {
        reason: "bwrap: No permissions to create new namespace".to_owned(),
        required: true,
    };
    let h =
        Harness::with_sandbox(real_claude(), &fake.url, |_| {}, Sandboxing::State(broken)).await;
    let events = h.run(h.request(42, "say hello")).await;
    let error = failed(&events);
    assert!(
        error.detail.contains("sandbox is required"),
        "{}",
        error.detail
    );
    assert!(fake.requests().is_empty(), "no model call");
    let (status, figures) = h.driver.metrics().health();
    assert_eq!(status, valor_monitor::Status::Unhealthy);
    assert_eq!(figures["sandbox"], "unavailable");
    // Under `auto` the same is a degraded, unsandboxed turn.
    let degraded = valor_claude::sandbox::SandboxState::Unavailable {
        reason: "no bwrap".to_owned(),
        required: false,
    };
    let h = Harness::with_sandbox(
        real_claude(),
        &fake.url,
        |_| {},
        Sandboxing::State(degraded),
    )
    .await;
    finished(&h.run(h.request(43, "say hello")).await);
    assert_eq!(
        h.driver.metrics().health().0,
        valor_monitor::Status::Degraded
    );
}

#[tokio::test]
async fn a_read_only_turn_cannot_write_even_when_writing_is_configured() {
    let fake = FakeAnthropic::start(prying).await;
    let h = Harness::new(real_claude(), &fake.url, |c| {
        c.allowed_tools = vec!["Read".to_owned(), "Write".to_owned(), "Bash".to_owned()];
    })
    .await;
    let target = h.dir.path().join("workspaces/chat_51/note.txt");
    let mut request = h.request(51, &format!("WRITE:{}", target.display()));
    request.mcp_config = None;
    request.read_only = true;
    let summary = finished(&h.run(request).await).clone();
    assert_eq!(summary.permission_denials, ["Write"], "{summary:?}");
    assert!(!target.exists());
    // The same turn, not read-only, writes (the control).
    let mut request = h.request(
        52,
        &format!(
            "WRITE:{}",
            h.dir.path().join("workspaces/chat_52/note.txt").display()
        ),
    );
    request.mcp_config = None;
    finished(&h.run(request).await);
    assert!(h.dir.path().join("workspaces/chat_52/note.txt").exists());
}

#[tokio::test]
async fn a_subscription_login_stays_outside_and_the_proxy_adds_it() {
    let fake = FakeAnthropic::start(prying).await;
    let (operator, credentials) = crate::support::operator_login();
    let login = crate::support::OPERATOR_LOGIN;
    let h = Harness::with_sandbox(
        real_claude(),
        &fake.url,
        |c| c.allowed_tools = vec!["Bash".to_owned()],
        Sandboxing::Login(credentials.clone()),
    )
    .await;
    let mut request = h.request(
        61,
        &format!(
            "BASH:ls -a ~/.claude; cat ~/.claude/.credentials.json 2>&1; ls {} 2>&1; env",
            operator.path().display()
        ),
    );
    request.mcp_config = None;
    let answer = finished(&h.run(request).await).text.clone();
    assert!(!answer.contains("OPERATOR"), "{answer}");
    assert!(!answer.contains(".credentials.json\n"), "{answer}");
    assert!(answer.contains("No such file"), "{answer}");
    // Every request reached the API with the operator's token, put there outside.
    let requests = fake.requests();
    assert!(!requests.is_empty());
    for turn in &requests {
        let credentials = &turn.credentials;
        assert_eq!(
            credentials.authorization.as_deref(),
            Some("Bearer sk-ant-oat01-OPERATOR")
        );
        assert!(credentials.api_key.is_none(), "{credentials:?}");
        assert!(
            credentials
                .beta
                .as_deref()
                .unwrap_or("")
                .contains("oauth-2025-04-20"),
            "{credentials:?}"
        );
    }
    assert_eq!(std::fs::read_to_string(&credentials).unwrap(), login);
}

/// Not a test on its own: two turns through the engine with a global log subscriber, run in a
/// process of its own by the test below (a per-thread subscriber loses events to tracing's
/// interest cache while other tests run in parallel).
#[tokio::test]
#[ignore = "the child process of a_turns_log_lines_carry_its_chat_turn_and_session"]
async fn turns_logged() {
    use valor_core::engine::{ConversationStore, Engine, Incoming};
    if std::env::var_os("VALOR_TEST_LOG_CHILD").is_none() {
        return;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();
    let fake = FakeAnthropic::start(answer).await;
    let h = Harness::new(real_claude(), &fake.url, |_| {}).await;
    let engine = Engine::builder(
        Arc::new(h.driver.clone()),
        Arc::new(h.store.clone()) as Arc<dyn ConversationStore>,
        valor_core::ModelRouter::new(valor_config::RoutingConfig::default()),
    )
    .build();
    for _ in 0..2 {
        let stream = engine.turn(Incoming::new(71, "say hello")).await.unwrap();
        stream.finish().await.unwrap();
    }
}

#[tokio::test]
async fn a_turns_log_lines_carry_its_chat_turn_and_session() {
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "real_cli::turns_logged",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VALOR_TEST_LOG_CHILD", "1")
        .output()
        .await
        .unwrap();
    let logs = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{logs}");
    let finished: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("turn finished"))
        .collect();
    assert_eq!(finished.len(), 2, "{logs}");
    assert!(
        finished[0].contains("turn{chat_id=71 turn=0"),
        "{}",
        finished[0]
    );
    assert!(finished[0].contains("claude{chat_id=71"), "{}", finished[0]);
    // The second turn resumes: its span names the session.
    assert!(finished[1].contains("turn=1"), "{}", finished[1]);
    assert!(finished[1].contains("session="), "{}", finished[1]);
}
