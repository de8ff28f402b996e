//! `valor daydream --now`: the real Claude Code CLI answers the analysis through the fake
//! Anthropic API; the summary and the chart reach the fake Telegram admin chat.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use crate::support::{output, valor};
use valor_fakes::anthropic::{FakeAnthropic, Reply};
use valor_fakes::telegram::FakeTelegram;

fn git_repo(dir: &Path) -> std::path::PathBuf {
    let repo = dir.join("shop");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(
        repo.join("Cargo.toml"),
        "[package]\nname = \"shop\"\n[dependencies]\naxum = \"0.8\"\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("src/main.rs"),
        "fn main() {\n    serve();\n}\n\nfn serve() {}\n",
    )
    .unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &[
            "-c",
            "user.name=Ada",
            "-c",
            "user.email=a@example.com",
            "commit",
            "-q",
            "-m",
            "start",
        ],
    ] {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }
    repo
}

#[test]
fn daydream_now_reports_to_the_admin_chat_and_records_the_run() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = runtime.block_on(async {
        (
            FakeAnthropic::start(|turn| {
                if turn.asks("You are Valor's daydream") && turn.asks("# Workspace shop") {
                    Reply::text("## Insights\n- `serve` does nothing yet.\n- axum is declared but unused.\n## Remember\n- The shop serves HTTP with axum.\n")
                } else {
                    Reply::text("unexpected prompt")
                }
            })
            .await,
            FakeTelegram::start().await,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let repo = git_repo(dir.path());
    let run = |extra: &[(&str, String)]| {
        let mut cmd = valor(dir.path());
        cmd.args(["daydream", "--now"])
            .env(
                "VALOR__DAYDREAM__WORKSPACES",
                format!("[{:?}]", repo.display().to_string()),
            )
            .env("VALOR__ADMIN__CHAT", "4242")
            .env("TELEGRAM_BOT_TOKEN", &telegram.token)
            .env("VALOR__TELEGRAM__API_URL", &telegram.url)
            .env("ANTHROPIC_BASE_URL", &anthropic.url)
            .env("ANTHROPIC_API_KEY", "sk-ant-test")
            .env("CLAUDE_CODE_MAX_RETRIES", "1");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        output(&mut cmd)
    };
    let (out, stdout, stderr) = run(&[]);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Progress per phase on stderr, the report's path on stdout.
    for phase in [
        "phase 1/6 readiness",
        "phase 3/6 context",
        "phase 4/6 analysis",
        "phase 6/6 post-cleanup",
    ] {
        assert!(stderr.contains(phase), "{phase}: {stderr}");
    }
    assert!(
        stdout.contains("logs/daydream_insights.md (sent to Telegram chat 4242)"),
        "{stdout}"
    );
    let report = std::fs::read_to_string(dir.path().join("logs/daydream_insights.md")).unwrap();
    assert!(report.contains("- `serve` does nothing yet."), "{report}");
    assert!(report.contains("stack: Rust (axum)"), "{report}");

    let messages = telegram.messages(4242);
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages[0].visible.starts_with("Daydream dd-"),
        "{}",
        messages[0].visible
    );
    assert!(messages[0].visible.contains("- `serve` does nothing yet."));
    let chart = messages[1].photo.as_ref().expect("the chart, as a photo");
    assert!(chart.starts_with(b"\x89PNG") && chart.len() > 5_000);
    // The memory candidate is asked, not stored.
    assert_eq!(
        messages[2].visible,
        "Remember this?\n\nThe shop serves HTTP with axum."
    );
    assert!(
        messages[2]
            .reply_markup
            .as_ref()
            .unwrap()
            .to_string()
            .contains("rem:")
    );
    let (_, learnings, _) =
        output(valor(dir.path()).args(["memory", "search", "axum", "--kind", "learning"]));
    assert_eq!(learnings, "nothing found\n", "never stored unasked");

    // The run is recorded: `valor jobs` shows it.
    let (_, jobs, _) = output(valor(dir.path()).args(["jobs", "--json"]));
    let jobs: serde_json::Value = serde_json::from_str(&jobs).unwrap();
    let daydream = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "daydream")
        .unwrap();
    assert_eq!(daydream["last"]["outcome"], "ok", "{daydream}");

    // The insights are searchable memory now.
    let (_, found, err) = output(valor(dir.path()).args([
        "memory",
        "search",
        "serve does nothing",
        "--kind",
        "insight",
    ]));
    let (_, stats, _) = output(valor(dir.path()).args(["memory", "stats"]));
    assert!(found.contains("Daydream insights"), "{found}{err}{stats}");
    // They belong to the report chat: no other chat recalls them.
    assert!(found.contains("chat 4242"), "{found}");
    assert!(!found.contains("shared"), "{found}");
    let (_, elsewhere, _) = output(valor(dir.path()).args([
        "memory",
        "search",
        "serve does nothing",
        "--kind",
        "insight",
        "--chat",
        "777",
    ]));
    assert_eq!(elsewhere, "nothing found\n");

    // An analysis that fails still gives a report, marked degraded.
    let (out, stdout, stderr) = run(&[("ANTHROPIC_BASE_URL", "http://127.0.0.1:9".to_owned())]);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("degraded: the analysis failed"), "{stdout}");
    drop(runtime);
}

/// The OpenAI-compatible endpoint gets `DAYDREAM_API_KEY` (its own), never `OPENAI_API_KEY`.
#[test]
fn the_daydream_endpoint_gets_its_own_key_and_never_the_openai_key() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"choices": [{"message": {"content": "## Insights\n- fine"}}]}),
            ))
            .mount(&server)
            .await;
        server
    });
    let dir = tempfile::tempdir().unwrap();
    let repo = git_repo(dir.path());
    let run = |daydream_key: Option<&str>| {
        let mut cmd = valor(dir.path());
        cmd.args(["daydream", "--now"])
            .env(
                "VALOR__DAYDREAM__WORKSPACES",
                format!("[{:?}]", repo.display().to_string()),
            )
            .env("VALOR__DAYDREAM__BACKEND", "openai")
            .env("VALOR__DAYDREAM__MODEL", "llama3.1")
            .env(
                "VALOR__DAYDREAM__OPENAI_BASE_URL",
                format!("{}/v1", server.uri()),
            )
            .env("OPENAI_API_KEY", "sk-openai-never-to-the-daydream");
        if let Some(key) = daydream_key {
            cmd.env("DAYDREAM_API_KEY", key);
        }
        let (out, stdout, stderr) = output(&mut cmd);
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        assert!(!stdout.contains("degraded"), "{stdout}");
    };
    run(None);
    run(Some("dd-key-123"));
    let requests = runtime.block_on(server.received_requests()).unwrap();
    assert_eq!(requests.len(), 2);
    let auth: Vec<Option<String>> = requests
        .iter()
        .map(|r| {
            r.headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(auth, [None, Some("Bearer dd-key-123".to_owned())]);
    drop(runtime);
}
