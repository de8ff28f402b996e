//! Whole daydreams with a scripted backend and a host fake, over a real git repository.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use valor_core::scripted::{Scripted, ScriptedBackend};
use valor_daydream::report::{ARCHIVE_DIR, REPORT_FILE};
use valor_daydream::{
    Daydream, DaydreamReport, DaydreamSettings, Host, HostFuture, MapCache, Phase, Readiness,
};
use valor_protocol::records::RunRecord;

struct FakeHost {
    pending: usize,
    health: &'static str,
    delivered: Mutex<Vec<DaydreamReport>>,
}

impl Host for FakeHost {
    fn readiness(&self) -> Readiness {
        Readiness {
            pending_turns: self.pending,
            health: self.health.to_owned(),
            store: Ok(()),
        }
    }
    fn pre_cleanup(&self) -> HostFuture<'_, Vec<String>> {
        Box::pin(async { vec!["1 Claude Code process group over 24 h ended".to_owned()] })
    }
    fn runs_since(&self, _since_ms: u64) -> HostFuture<'_, Vec<RunRecord>> {
        Box::pin(async { Vec::new() })
    }
    fn health_history(&self) -> HostFuture<'_, Vec<(DateTime<Utc>, u8)>> {
        Box::pin(async { vec![(now() - chrono::Duration::hours(1), 90), (now(), 70)] })
    }
    fn deliver<'a>(&'a self, report: &'a DaydreamReport) -> HostFuture<'a, Result<String, String>> {
        self.delivered.lock().unwrap().push(report.clone());
        Box::pin(async { Ok("chat 42".to_owned()) })
    }
}

fn host(pending: usize, health: &'static str) -> Arc<FakeHost> {
    Arc::new(FakeHost {
        pending,
        health,
        delivered: Mutex::new(Vec::new()),
    })
}

fn repo(dir: &Path) -> PathBuf {
    let repo = dir.join("shop");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(
        repo.join("src/lib.rs"),
        "pub fn total(items: &[u32]) -> u32 {\n    items.iter().sum()\n}\n",
    )
    .unwrap();
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .env("GIT_AUTHOR_NAME", "Ada")
            .env("GIT_AUTHOR_EMAIL", "a@example.com")
            .env("GIT_COMMITTER_NAME", "Ada")
            .env("GIT_COMMITTER_EMAIL", "a@example.com")
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "totals"]);
    repo
}

fn daydream(
    dir: &Path,
    host: Arc<FakeHost>,
    backend: ScriptedBackend,
    timeout: Duration,
) -> Daydream {
    Daydream::new(
        DaydreamSettings {
            workspaces: vec![repo(dir)],
            chats: Some(valor_chatfs::ChatFs::new(
                dir.join("workspaces"),
                dir.join("homes"),
                None,
            )),
            git: crate::jail(),
            report_chat: Some(5),
            logs_dir: dir.join("logs"),
            keep_reports: 10,
            analysis_timeout: timeout,
            max_pending_turns: 5,
            model: None,
            temp_dir: dir.join("tmp"),
        },
        host,
        Arc::new(backend),
        MapCache::default(),
    )
}

fn now() -> DateTime<Utc> {
    "2026-12-01T06:00:00Z".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_writes_archives_and_delivers_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(0, "ok");
    let backend = ScriptedBackend::new(|request| {
        assert!(
            request.prompt.contains("# Workspace shop"),
            "{}",
            request.prompt
        );
        assert!(
            request
                .prompt
                .contains("pub fn total(items: &[u32]) -> u32")
        );
        Scripted::text("## Insights\n- `total` has no overflow check.\n- Only one commit so far.\n")
    });
    let daydream = daydream(
        dir.path(),
        Arc::clone(&host),
        backend.clone(),
        Duration::from_secs(30),
    );
    // The report chat's workspace, made after the daydream was set up, is studied; another
    // chat's workspace is not (its content would reach the report chat).
    std::fs::create_dir_all(dir.path().join("workspaces/chat_5")).unwrap();
    std::fs::write(
        dir.path().join("workspaces/chat_5/app.py"),
        "def hello():\n    pass\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("workspaces/chat_6")).unwrap();
    std::fs::write(
        dir.path().join("workspaces/chat_6/secret_plans.py"),
        "def acquire_competitor_secretly():\n    pass\n",
    )
    .unwrap();
    let seen = Mutex::new(Vec::new());
    let outcome = daydream
        .run(
            Some(now() - chrono::Duration::days(30)),
            now(),
            &|phase, line| {
                seen.lock().unwrap().push((phase, line.to_owned()));
            },
        )
        .await;
    let phases: Vec<Phase> = seen.lock().unwrap().iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, Phase::ALL);
    assert!(outcome.skipped.is_none());
    let report = outcome.report.unwrap();
    assert!(report.degraded.is_none());
    let written = std::fs::read_to_string(dir.path().join("logs").join(REPORT_FILE)).unwrap();
    assert!(written.contains(&format!("Session `{}`", outcome.session_id)));
    assert!(written.contains("- `total` has no overflow check."));
    assert!(written.contains("branch `main`"));
    assert!(written.contains("### chat_5"), "{written}");
    assert!(!written.contains("chat_6"), "{written}");
    assert!(!written.contains("acquire_competitor"), "{written}");
    let prompt = &backend.requests()[0];
    assert!(
        !prompt.prompt.contains("acquire_competitor"),
        "{}",
        prompt.prompt
    );
    assert!(prompt.read_only, "the analysis writes nothing");
    assert!(written.contains("- cleaned: 1 Claude Code process group over 24 h ended"));
    assert!(written.contains("- phase 4 analysis:"), "{written}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("logs").join(ARCHIVE_DIR))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(outcome.delivered, Some(Ok("chat 42".to_owned())));
    let delivered = host.delivered.lock().unwrap();
    assert!(
        delivered[0]
            .summary
            .starts_with(&format!("Daydream {}:", outcome.session_id))
    );
    assert!(
        delivered[0]
            .summary
            .contains("- `total` has no overflow check.")
    );
    // The run's temp directory is gone; the analysis ran as a fresh session.
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert!(backend.requests()[0].fresh_session);
    assert_eq!(outcome.timings.len(), 6);
    let chart = delivered[0].chart.clone().unwrap();
    assert_eq!(chart, dir.path().join("logs/daydream_chart.png"));
    assert!(std::fs::metadata(chart).unwrap().len() > 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analysis_that_runs_out_of_time_still_gives_a_degraded_report() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(0, "degraded");
    // Answers one piece an hour: the 300 ms limit cuts it.
    let backend = ScriptedBackend::new(|_| Scripted::Text {
        text: "never finished".to_owned(),
        pieces: 2,
        every: Duration::from_secs(3600),
    });
    let daydream = daydream(
        dir.path(),
        host,
        backend.clone(),
        Duration::from_millis(300),
    );
    let outcome = daydream.run(None, now(), &|_, _| {}).await;
    let report = outcome.report.unwrap();
    assert_eq!(
        report.degraded.as_deref(),
        Some("the analysis did not finish within 0.3 s")
    );
    let written = std::fs::read_to_string(&report.report_path).unwrap();
    assert!(
        written.contains("> **Degraded:** the analysis did not finish"),
        "{written}"
    );
    assert!(written.contains("## Workspaces"));
    assert!(
        report
            .summary
            .contains("Degraded: the analysis did not finish")
    );
    // The analysis was told to stop.
    assert!(backend.requests()[0].cancel.is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_or_unhealthy_valor_skips_and_says_why() {
    for (pending, health, reason) in [
        (6, "ok", "6 turns are waiting (more than 5)"),
        (0, "unhealthy", "Valor's health is unhealthy"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let backend = ScriptedBackend::echo();
        let daydream = daydream(
            dir.path(),
            host(pending, health),
            backend.clone(),
            Duration::from_secs(5),
        );
        let outcome = daydream.run(None, now(), &|_, _| {}).await;
        assert_eq!(outcome.skipped.as_deref(), Some(reason));
        assert!(outcome.report.is_none());
        assert!(backend.requests().is_empty());
        assert!(!dir.path().join("logs").exists());
        assert_eq!(outcome.timings.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_compatible_endpoint_can_do_the_analysis() {
    use wiremock::matchers::{body_partial_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let ollama = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(serde_json::json!({"model": "gemma3:12b", "stream": false})))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gemma3:12b",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "## Insights\n- From the local model."}}],
        })))
        .expect(1)
        .mount(&ollama)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let backend = valor_daydream::openai::OpenAiBackend::new(
        &format!("{}/v1/", ollama.uri()),
        "gemma3:12b",
        None,
    )
    .unwrap();
    let mut daydream = daydream(
        dir.path(),
        host(0, "ok"),
        ScriptedBackend::echo(),
        Duration::from_secs(30),
    );
    daydream = Daydream::new(
        daydream.settings.clone(),
        host(0, "ok"),
        Arc::new(backend),
        MapCache::default(),
    );
    let report = daydream.run(None, now(), &|_, _| {}).await.report.unwrap();
    assert_eq!(
        report.analysis.as_deref(),
        Some("## Insights\n- From the local model.")
    );

    // A failing endpoint: a degraded report that says what it answered.
    let broken = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_json(serde_json::json!({
            "error": {"message": "model not loaded", "type": "server_error"}})))
        .mount(&broken)
        .await;
    let backend = valor_daydream::openai::OpenAiBackend::new(
        &format!("{}/v1", broken.uri()),
        "gemma3:12b",
        None,
    )
    .unwrap();
    let daydream = Daydream::new(
        daydream.settings.clone(),
        host(0, "ok"),
        Arc::new(backend),
        MapCache::default(),
    );
    let report = daydream.run(None, now(), &|_, _| {}).await.report.unwrap();
    let degraded = report.degraded.unwrap();
    assert!(
        degraded.contains("500 Internal Server Error: model not loaded"),
        "{degraded}"
    );
}
