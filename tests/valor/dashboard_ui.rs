//! The dashboard in the real headless Chromium against `valor run` (fake Telegram, the real
//! CLI on the fake API): refused without a login, logged in by `valor dashboard`'s link, a turn
//! made in the chat shows on the Overview and the Chats page without a reload, Usage sums what
//! the store holds, run-now runs a job, forget retires a learning, and the pages render.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use crate::browser::{launch, text_of};
use crate::support::{Service, output, valor};
use crate::telegram_run::{run_with, wait_for};
use valor_fakes::anthropic::{FakeAnthropic, Reply};
use valor_fakes::telegram::FakeTelegram;

#[test]
fn the_dashboard_in_a_real_browser_logs_in_and_updates_live() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = runtime.block_on(async {
        (
            FakeAnthropic::start(|_| Reply::text("Noted.")).await,
            FakeTelegram::start().await,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let mut service = Service::start(&mut run_with(dir.path(), &telegram, &anthropic));
    let base = service.url("");
    let (out, link, stderr) = output(valor(dir.path()).arg("dashboard"));
    assert!(out.status.success(), "{stderr}");
    let link = link.trim().to_owned();
    assert!(
        link.starts_with(&format!("{base}/ui/login?token=")),
        "{link}"
    );

    let shots = dir.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let profile = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let (mut browser, handling) = launch(profile.path()).await;

        // Without a login: refused.
        let page = browser.new_page(format!("{base}/ui/")).await.unwrap();
        page.wait_for_navigation().await.unwrap();
        assert!(text_of(&page, "main").await.contains("needs a login"));

        // The link logs in (once) and lands on the Overview.
        page.goto(link.as_str()).await.unwrap();
        page.wait_for_navigation().await.unwrap();
        let overview = text_of(&page, "main").await;
        assert!(
            overview.contains("Health") && overview.contains("Chat turns today\n0"),
            "{overview}"
        );
        let chats = browser.new_page(format!("{base}/ui/chats")).await.unwrap();
        chats.wait_for_navigation().await.unwrap();
        assert!(text_of(&chats, "#chats").await.contains("No chat yet"));

        // A turn in the chat: both pages show it without a reload.
        telegram.user_says(100, 100, "hello there");
        let answered = Instant::now();
        let deadline = answered + Duration::from_secs(30);
        loop {
            let overview = text_of(&page, "#cards").await;
            let chat = text_of(&chats, "#chats").await;
            if overview.contains("Chat turns today\n1") && chat.contains("100") && chat.contains("idle") {
                break;
            }
            assert!(Instant::now() < deadline, "{overview}\n{chat}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        chats.close().await.ok();
        let shot = page
            .screenshot(chromiumoxide::page::ScreenshotParams::builder().build())
            .await
            .unwrap();
        std::fs::write(shots.join("overview.png"), &shot).unwrap();
        assert!(
            shot.len() > 10_000,
            "a blank page is small: {} bytes",
            shot.len()
        );

        for (path, expect) in [
            ("/ui/usage?days=1", "all days"),
            ("/ui/jobs", "daydream"),
            ("/ui/chats", "100"),
            ("/ui/alerts", "No alert"),
            ("/ui/memory", "Learnings"),
            ("/ui/logs", "INFO"),
        ] {
            page.goto(format!("{base}{path}")).await.unwrap();
            page.wait_for_navigation().await.unwrap();
            let text = text_of(&page, "main").await;
            assert!(text.contains(expect), "{path}: {text}");
            let shot = page
                .screenshot(chromiumoxide::page::ScreenshotParams::builder().build())
                .await
                .unwrap();
            assert!(shot.len() > 5_000, "{path}: {} bytes", shot.len());
        }
        // Usage sums what the store holds (read through the agent by `valor stats`).
        let (out, stats, stderr) =
            output(valor(dir.path()).args(["stats", "--json", "--days", "1"]));
        assert!(out.status.success(), "{stderr}");
        let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
        let all = &stats["all"];
        assert_eq!(all["turns"], 1, "{stats}");
        page.goto(format!("{base}/ui/usage?days=1")).await.unwrap();
        page.wait_for_navigation().await.unwrap();
        let total: String = page
            .evaluate(
                "[...document.querySelectorAll('tr')].find(r => r.cells[0]?.innerText === 'all days')\
                 ?.innerText.split('\\t').slice(0, 6).join('|') ?? ''",
            )
            .await
            .unwrap()
            .into_value()
            .unwrap();
        let expected = format!(
            "all days|{}|{}|${:.4}|{}|{}",
            all["turns"],
            all["failed"],
            all["cost_usd"].as_f64().unwrap(),
            all["input_tokens"],
            all["output_tokens"]
        );
        assert_eq!(total, expected);

        // Run now starts the job: its run is recorded and listed.
        page.goto(format!("{base}/ui/jobs")).await.unwrap();
        page.wait_for_navigation().await.unwrap();
        page.evaluate("document.querySelector('form input[value=\"cleanup\"]').form.submit()")
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !text_of(&page, "main").await.contains("cleanup started.") {
            assert!(
                Instant::now() < deadline,
                "the job page never said it started"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            page.goto(format!("{base}/ui/jobs")).await.unwrap();
            page.wait_for_navigation().await.unwrap();
            let runs = text_of(&page, "table.runs").await;
            // Listed as running first (a run is recorded when it starts), then with its outcome.
            if runs.contains("cleanup") && !runs.contains("running") {
                assert!(runs.contains(" s\tok"), "{runs}");
                break;
            }
            assert!(Instant::now() < deadline, "the cleanup never ran: {runs}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // A learning made in the chat is forgotten from the Memory page; a POST without the
        // page's CSRF token is refused.
        telegram.user_says(100, 100, "/remember we deploy on fridays");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            page.goto(format!("{base}/ui/memory")).await.unwrap();
            page.wait_for_navigation().await.unwrap();
            if text_of(&page, "main")
                .await
                .contains("we deploy on fridays")
            {
                break;
            }
            assert!(Instant::now() < deadline, "the learning never showed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let forged: i64 = page
            .evaluate(
                "fetch('/ui/learnings/forget', {method: 'POST', headers: {'Content-Type': \
                 'application/x-www-form-urlencoded'}, body: 'csrf=x&chat_id=100&number=1'}) \
                 .then(r => r.status)",
            )
            .await
            .unwrap()
            .into_value()
            .unwrap();
        assert_eq!(forged, 403);
        page.evaluate("document.querySelector('form[action=\"/ui/learnings/forget\"]').submit()")
            .await
            .unwrap();
        page.wait_for_navigation().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = text_of(&page, "main").await;
            if text.contains("retired:") {
                break;
            }
            assert!(Instant::now() < deadline, "{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        browser.close().await.ok();
        handling.abort();
    });
    wait_for(&telegram, &service, 100, "the answer", |t| {
        t.iter().any(|t| t == "Noted.")
    });
    service.signal("TERM");
    assert!(service.wait_for_exit(Duration::from_secs(5)).success());
    drop(runtime);
}

#[test]
fn without_a_running_valor_the_dashboard_command_says_to_start_it() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = output(valor(dir.path()).arg("dashboard"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("Valor is not running") && stderr.contains("valor run"),
        "{stderr}"
    );
}

#[test]
fn with_the_dashboard_off_the_command_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, stderr) = output(
        valor(dir.path())
            .arg("dashboard")
            .env("VALOR__HEALTH__DASHBOARD", "false"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("[health] dashboard = false"), "{stderr}");
}
