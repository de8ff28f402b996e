//! The dashboard at a phone's width (390 px) in the real headless Chromium against `valor run`
//! (fake Telegram, the real CLI on the fake API): a turn with a tool call shows in Turns live
//! and its page shows the call's input; the pages fit the screen; the figures equal `valor
//! stats --json`; a Telegram outage shows on the Overview and raises its alert; a reload after
//! Run now runs nothing again; the security headers; and the page lives through a restart (the
//! chip says so, then it is live again without a new login). Screenshots at both widths go to
//! `target/dashboard-shots/` for review.

use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;

use crate::browser::{launch, text_of};
use crate::support::{Service, output, valor};
use crate::telegram_run::run_with;
use valor_fakes::anthropic::{FakeAnthropic, Reply};
use valor_fakes::telegram::FakeTelegram;

/// Waits (polling the page, which updates itself) until `done` holds for `selector`'s text.
async fn until(
    page: &Page,
    selector: &str,
    what: &str,
    limit: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = text_of(page, selector).await;
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn eval<T: serde::de::DeserializeOwned>(page: &Page, script: &str) -> T {
    page.evaluate(script).await.unwrap().into_value().unwrap()
}

async fn open(page: &Page, url: &str) {
    page.goto(url).await.unwrap();
    page.wait_for_navigation().await.unwrap();
}

/// A whole-page screenshot. chromiumoxide resizes the page for it and then drops the
/// emulated screen: `screen` is put back.
async fn shot(
    page: &Page,
    dir: &std::path::Path,
    name: &str,
    screen: &SetDeviceMetricsOverrideParams,
) {
    let png = page
        .screenshot(
            chromiumoxide::page::ScreenshotParams::builder()
                .full_page(true)
                .build(),
        )
        .await
        .unwrap();
    page.execute(screen.clone()).await.unwrap();
    assert!(
        png.len() > 5_000,
        "{name}: a blank page is small ({} bytes)",
        png.len()
    );
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// A port free now (the restart must come back on the same one: the page's address).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn at_a_phones_width_the_dashboard_shows_turns_an_outage_and_lives_through_a_restart() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (anthropic, telegram) = runtime.block_on(async {
        let anthropic = FakeAnthropic::start(|turn| {
            if let Some((_, content, _)) = &turn.last_tool_result {
                return Reply::text(&format!(
                    "Looked it up: {}",
                    content.chars().take(40).collect::<String>()
                ));
            }
            if turn.asks("look up") {
                let tool = (turn.tools.iter())
                    .find(|t| t.starts_with("mcp__memory__"))
                    .cloned();
                if let Some(tool) = tool {
                    return Reply::tool(&tool, serde_json::json!({"query": "deploy fridays"}));
                }
            }
            Reply::text("Noted.")
        })
        .await;
        (anthropic, FakeTelegram::start().await)
    });
    let dir = tempfile::tempdir().unwrap();
    let bind = format!("127.0.0.1:{}", free_port());
    let start = |dir: &std::path::Path| {
        Service::start(
            run_with(dir, &telegram, &anthropic)
                .env("VALOR__HEALTH__BIND", &bind)
                .env("VALOR__MONITOR__PART_ALERT_AFTER_SECS", "2"),
        )
    };
    let mut service = start(dir.path());
    let base = service.url("");
    let (out, link, stderr) = output(valor(dir.path()).arg("dashboard"));
    assert!(out.status.success(), "{stderr}");
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-shots");
    std::fs::create_dir_all(&shots).unwrap();
    let profile = tempfile::tempdir().unwrap();

    runtime.block_on(async {
        let (mut browser, handling) = launch(profile.path()).await;
        let page = browser.new_page("about:blank").await.unwrap();
        let phone = SetDeviceMetricsOverrideParams::builder()
            .width(390)
            .height(844)
            .screen_width(390)
            .screen_height(844)
            .device_scale_factor(2.0)
            .mobile(true)
            .build()
            .unwrap();
        page.execute(phone.clone()).await.unwrap();
        open(&page, link.trim()).await;

        // A turn with a tool call appears in Turns without a reload, named by its chat.
        open(&page, &format!("{base}/ui/turns")).await;
        assert!(text_of(&page, "#turns").await.contains("No turn yet"));
        telegram.user_says(100, 100, "please look up when we deploy");
        let turns = until(&page, "#turns", "the turn in Turns", Duration::from_secs(40), |t| {
            t.contains("deploy fridays")
        })
        .await;
        assert!(turns.contains("user100 (100)"), "the chat by its Telegram name: {turns}");
        assert!(turns.contains("mcp__memory__"), "{turns}");
        // Its page: the prompt as sent, the answer, the call with its input.
        let href: String = eval(&page, "document.querySelector('#turns a[href^=\"/ui/turns/\"]').getAttribute('href')").await;
        open(&page, &format!("{base}{href}")).await;
        let turn = text_of(&page, "main").await;
        assert!(turn.contains("Prompt, as sent") && turn.contains("please look up when we deploy"), "{turn}");
        assert!(turn.contains("Looked it up") && turn.contains("\"query\":\"deploy fridays\""), "{turn}");
        shot(&page, &shots, "phone-turn", &phone).await;

        // Every page fits the phone: nothing wider than the screen but the tables' own scroll,
        // and text large enough to read.
        for path in ["/ui/", "/ui/turns", "/ui/chats", "/ui/chats/100", "/ui/usage", "/ui/jobs", "/ui/memory", "/ui/alerts", "/ui/logs", "/ui/sessions"] {
            open(&page, &format!("{base}{path}")).await;
            let width: f64 = eval(&page, "document.documentElement.scrollWidth").await;
            let widest: String = eval(
                &page,
                "[...document.querySelectorAll('main *')].filter(e => !e.closest('.scroll') && e.getBoundingClientRect().right > 392 && ![...e.children].some(c => c.getBoundingClientRect().right > 392)).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 5).join(', ')",
            )
            .await;
            if width > 392.0 {
                shot(&page, &shots, "phone-too-wide", &phone).await;
            }
            assert!(width <= 392.0, "{path} is {width} px wide at 390: {widest}");
            let font: f64 = eval(&page, "parseFloat(getComputedStyle(document.querySelector('main')).fontSize)").await;
            assert!(font >= 14.0, "{path}: text {font} px");
            let name = if path == "/ui/" { "overview".to_owned() } else { path.trim_start_matches("/ui/").replace('/', "-") };
            shot(&page, &shots, &format!("phone-{name}"), &phone).await;
        }

        // The figures equal `valor stats --json` (today's).
        let (out, stats, stderr) = output(valor(dir.path()).args(["stats", "--json", "--days", "1"]));
        assert!(out.status.success(), "{stderr}");
        let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
        let chat = &stats["by_chat"]["100"];
        open(&page, &format!("{base}/ui/")).await;
        let cards = text_of(&page, "#cards").await;
        assert!(cards.contains(&format!("Chat turns today\n{}", chat["turns"])), "{cards}\n{stats}");
        assert!(cards.contains(&format!("${:.4}", chat["cost_usd"].as_f64().unwrap())), "{cards}\n{stats}");
        open(&page, &format!("{base}/ui/chats/100")).await;
        let mine = text_of(&page, "#chat").await;
        assert!(mine.contains(&format!("${:.4}", chat["cost_usd"].as_f64().unwrap())), "{mine}\n{stats}");

        // The security headers on a page.
        let headers: Vec<String> = eval(
            &page,
            "fetch('/ui/', {cache: 'no-store'}).then(r => ['content-security-policy', 'x-frame-options', \
             'x-content-type-options', 'referrer-policy', 'cache-control'].map(h => r.headers.get(h) || ''))",
        )
        .await;
        assert!(headers[0].contains("default-src 'self'") && headers[0].contains("frame-ancestors 'none'"), "{headers:?}");
        assert_eq!(headers[1..], ["DENY", "nosniff", "no-referrer", "no-store"], "{headers:?}");

        // A reload after Run now shows the page again and runs nothing again.
        open(&page, &format!("{base}/ui/jobs")).await;
        page.evaluate("document.querySelector('form input[value=\"cleanup\"]').form.submit()").await.unwrap();
        until(&page, "main", "run now said so", Duration::from_secs(10), |t| t.contains("cleanup started.")).await;
        page.reload().await.unwrap();
        page.wait_for_navigation().await.unwrap();
        page.reload().await.unwrap();
        page.wait_for_navigation().await.unwrap();
        let runs = until(&page, "table.runs", "the cleanup ran", Duration::from_secs(30), |t| {
            t.contains("cleanup") && !t.contains("running")
        })
        .await;
        assert_eq!(runs.matches("cleanup").count(), 1, "reloads ran it again: {runs}");

        // A Telegram outage: the Overview shows the part failing and its alert, live.
        open(&page, &format!("{base}/ui/")).await;
        telegram.outage(true);
        let health = until(&page, "#health", "the outage on the Overview", Duration::from_secs(40), |t| {
            t.contains("Telegram has been")
        })
        .await;
        assert!(health.contains("failing since"), "{health}");
        shot(&page, &shots, "phone-outage", &phone).await;
        open(&page, &format!("{base}/ui/alerts")).await;
        assert!(text_of(&page, "#alerts").await.contains("Telegram has been"));
        telegram.outage(false);

        // A restart: the chip says so, then the page is live again on its own, still logged in.
        open(&page, &format!("{base}/ui/")).await;
        until(&page, "#chip", "live", Duration::from_secs(10), |t| t.starts_with("live")).await;
        service.signal("TERM");
        let status = service.wait_for_exit(Duration::from_secs(10));
        let logs = service.logs();
        assert!(status.success(), "{status:?}: {}", &logs[logs.len().saturating_sub(3000)..]);
        until(&page, "#chip", "the chip saw the restart", Duration::from_secs(10), |t| t.contains("reconnecting")).await;
        service = start(dir.path());
        until(&page, "#chip", "live again", Duration::from_secs(40), |t| t.starts_with("live")).await;
        let main = text_of(&page, "main").await;
        assert!(main.contains("Health") && !main.contains("needs a login"), "{main}");

        // The same pages at a desktop's width, for the reviewer.
        let desktop = SetDeviceMetricsOverrideParams::builder()
            .width(1280)
            .height(900)
            .screen_width(1280)
            .screen_height(900)
            .device_scale_factor(1.0)
            .mobile(false)
            .build()
            .unwrap();
        page.execute(desktop.clone()).await.unwrap();
        for path in ["/ui/", "/ui/turns", "/ui/alerts", "/ui/memory", "/ui/jobs"] {
            open(&page, &format!("{base}{path}")).await;
            let name = if path == "/ui/" { "overview".to_owned() } else { path.trim_start_matches("/ui/").to_owned() };
            shot(&page, &shots, &format!("desktop-{name}"), &desktop).await;
        }
        // A dark room: the colours follow the system's (text light on dark, charts too).
        let dark = chromiumoxide::cdp::browser_protocol::emulation::MediaFeature::new(
            "prefers-color-scheme",
            "dark",
        );
        page.emulate_media_features(vec![dark]).await.unwrap();
        open(&page, &format!("{base}/ui/")).await;
        let colours: Vec<String> = eval(
            &page,
            "[getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]",
        )
        .await;
        let light = |css: &str| -> f64 {
            let rgb: Vec<f64> = (css.trim_start_matches("rgb(").trim_end_matches(')').split(','))
                .filter_map(|v| v.trim().parse().ok())
                .collect();
            (rgb[0] + rgb[1] + rgb[2]) / (3.0 * 255.0)
        };
        assert!(light(&colours[0]) < 0.2 && light(&colours[1]) > 0.7, "{colours:?}");
        shot(&page, &shots, "desktop-overview-dark", &desktop).await;
        browser.close().await.ok();
        handling.abort();
    });
    service.signal("TERM");
    assert!(service.wait_for_exit(Duration::from_secs(10)).success());
    drop(runtime);
}
