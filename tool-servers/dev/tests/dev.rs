//! The dev tools with the real headless Chromium (Debian's, installed by scripts/setup) on pages
//! this test serves on 127.0.0.1, and a wiremock Notion for the task comment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::json;
use valor_tool_dev::{BrowserSettings, DevServer, DevSettings};
use valor_tool_notion::{NotionClient, NotionSettings};
use valor_tools::{Delivery, Scope, ScopeSource, ToolError};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A tall page with a red banner, a console error, an uncaught exception, a 404 image and a
/// request to a closed port.
const BROKEN_PAGE: &str = r#"<!doctype html><html><head><title>Checkout</title>
<link rel="icon" href="data:,"></head>
<body style="margin:0;background:#ffffff">
<div style="height:300px;background:#e01010;color:white;font-size:40px">Checkout is broken</div>
<div style="height:1900px;background:linear-gradient(#ffffff,#2040c0)">long page</div>
<img src="/missing.png">
<img src="http://127.0.0.1:CLOSED/unreachable.png">
<script>console.error("payment widget failed:", 42);</script>
<script>throw new Error("kaput: totals is undefined");</script>
</body></html>"#;

/// A loopback port nothing listens on (Chromium refuses some well-known ports outright).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn serve_app() -> (String, u16) {
    let closed = closed_port();
    let page = BROKEN_PAGE.replace("CLOSED", &closed.to_string());
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, closed)
}

type Sent = Arc<Mutex<Vec<Delivery>>>;

/// The browser as Valor runs it: a tenant in its own sandbox (as root, its own user).
fn sandbox() -> valor_tool_dev::BrowserSandbox {
    let sandbox =
        valor_sandbox::Sandbox::new(valor_sandbox::locate_bwrap(), valor_sandbox::locate_init())
            .expect("the sandbox builds: run scripts/setup and build the workspace");
    valor_tool_dev::BrowserSandbox {
        sandbox: Arc::new(sandbox),
        run_as: valor_chatfs::ChatFs::sandbox_owner(true, 2_000_001),
    }
}

fn server(app_url: &str, workspaces: &std::path::Path) -> (DevServer, Sent) {
    let sent: Sent = Arc::default();
    let sink = Arc::clone(&sent);
    let server = DevServer::new(
        DevSettings {
            app_url: app_url.to_owned(),
            browser: BrowserSettings {
                page_timeout: Duration::from_secs(20),
                sandbox: Some(sandbox()),
                ..BrowserSettings::default()
            },
        },
        ScopeSource {
            chats: valor_chatfs::ChatFs::new(
                workspaces.to_owned(),
                workspaces.join(".homes"),
                None,
            ),
            fixed: None,
            hosted: false,
        },
    )
    .with_delivery(Arc::new(move |d| sink.lock().unwrap().push(d)));
    (server, sent)
}

/// Decodes a PNG: (width, height, distinct colours of a coarse sample, red pixels seen).
fn inspect_png(bytes: &[u8]) -> (u32, u32, usize, bool) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let channels = info.color_type.samples();
    let mut colours = std::collections::HashSet::new();
    let mut red = false;
    for y in (0..info.height).step_by(37) {
        for x in (0..info.width).step_by(29) {
            let at = (y as usize * info.line_size) + x as usize * channels;
            let pixel = &buffer[at..at + channels.min(3)];
            colours.insert(pixel.to_vec());
            red |= pixel.len() == 3 && pixel[0] > 200 && pixel[1] < 60 && pixel[2] < 60;
        }
    }
    (info.width, info.height, colours.len(), red)
}

#[tokio::test]
async fn a_bug_report_captures_the_page_its_errors_and_comments_on_notion() {
    let (app, closed) = serve_app().await;
    let notion = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/comments"))
        .and(body_partial_json(json!({"parent": {"page_id": "task-42"}})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "comment", "id": "c1"})),
        )
        .expect(1)
        .mount(&notion)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, sent) = server(&app, dir.path());
    let server = server.with_notion(
        NotionClient::new(NotionSettings {
            base_url: notion.uri(),
            key: Some("secret_test".to_owned()),
            ..NotionSettings::default()
        })
        .unwrap(),
        valor_tool_notion::NotionGrants::default(),
    );
    let scope = Scope::for_chat(dir.path(), 7);
    let answer = server
        .bug_report(&scope, "The checkout page shows no total", "task-42")
        .await
        .unwrap();
    assert!(
        answer.starts_with(
            "Bug report: The checkout page shows no total — 2 console errors, 2 failed requests"
        ),
        "{answer}"
    );
    assert!(
        answer.contains("Commented on Notion task task-42."),
        "{answer}"
    );

    // The report and the screenshot are in the chat's workspace.
    let reports: Vec<_> = std::fs::read_dir(scope.workspace.join("bug-reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(reports.len(), 1);
    let markdown = std::fs::read_to_string(&reports[0]).unwrap();
    assert!(
        markdown.contains("console.error: payment widget failed: 42"),
        "{markdown}"
    );
    assert!(
        markdown.contains("uncaught: Error: kaput: totals is undefined"),
        "{markdown}"
    );
    assert!(
        markdown.contains(&format!("404 {app}missing.png")),
        "{markdown}"
    );
    // Anything but the app's own origin is refused: the browser reaches the web only through
    // Valor's egress proxy, which knows the app's address and no other.
    assert!(
        markdown.contains(&format!(
            "403 http://127.0.0.1:{closed}/unreachable.png: refused by Valor (127.0.0.1:{closed} is not on the egress allow-list"
        )),
        "{markdown}"
    );
    assert!(markdown.contains("## Console errors (2)"), "{markdown}");
    assert!(markdown.contains("## Failed requests (2)"), "{markdown}");
    assert!(
        markdown.contains("- Page: ") && markdown.contains("(Checkout)"),
        "{markdown}"
    );

    // The screenshot: the whole tall page, really drawn, sent to the chat with a summary.
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].chat_id, 7);
    assert!(
        sent[0]
            .caption
            .contains("• console.error: payment widget failed: 42")
    );
    let png = sent[0].png.clone();
    let saved: Vec<_> = std::fs::read_dir(scope.workspace.join("screenshots"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(saved.len(), 1);
    assert_eq!(
        std::fs::read(saved[0].path()).unwrap(),
        png,
        "the one sent is the one saved"
    );
    assert!(png.len() > 5_000, "{} bytes", png.len());
    let (width, height, colours, red) = inspect_png(&png);
    assert_eq!(width, 1280);
    assert!(height >= 2200, "full page, not the 800 px window: {height}");
    assert!(colours > 10, "a blank page has one colour: {colours}");
    assert!(red, "the red banner is in the picture");

    // The newest screenshot of the task is found again, and sent again.
    let found = server.retrieve(&scope, "task-42", None).unwrap();
    assert!(found.contains("Screenshot of task task-42:"), "{found}");
    assert!(found.contains("1280x"), "{found}");
    assert!(found.ends_with("; sent to the chat."), "{found}");
    server.browser().close().await;
}

#[tokio::test]
async fn the_browser_stays_warm_between_calls() {
    let (app, _) = serve_app().await;
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = server(&app, dir.path());
    let first = server.browser().capture(&app).await.unwrap();
    let second = server.browser().capture(&app).await.unwrap();
    assert!(first.cold && !second.cold);
    assert_eq!(server.browser().launches(), 1);
    assert_eq!(second.title, "Checkout");
    // The kept tab brings nothing of the first visit into the second.
    assert_eq!(
        second.console_errors.len(),
        2,
        "{:?}",
        second.console_errors
    );
    assert_eq!(
        second.failed_requests.len(),
        2,
        "{:?}",
        second.failed_requests
    );
    // After the browser is gone the next call starts a new one.
    server.browser().close().await;
    let third = server.browser().capture(&app).await.unwrap();
    assert!(third.cold);
    assert_eq!(server.browser().launches(), 2);
    server.browser().close().await;
}

/// The members of process group `pgid` (from /proc), zombies left out.
fn group_of(pgid: u32) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        if fields.get(2) == Some(&pgid.to_string().as_str()) && fields[0] != "Z" {
            names.push(stat[stat.find('(').unwrap() + 1..close].to_owned());
        }
    }
    names
}

#[tokio::test]
async fn each_browser_leads_its_own_process_group_and_is_watched_until_closed() {
    use std::sync::atomic::{AtomicBool, Ordering};
    struct Guard(Arc<AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let (app, _) = serve_app().await;
    let launched = Arc::new(std::sync::Mutex::new(Vec::new()));
    let released = Arc::new(AtomicBool::new(false));
    let watch = {
        let (launched, released) = (Arc::clone(&launched), Arc::clone(&released));
        valor_tool_dev::LaunchWatch(Arc::new(move |pid| {
            launched.lock().unwrap().push(pid);
            Box::new(Guard(Arc::clone(&released))) as Box<dyn std::any::Any + Send + Sync>
        }))
    };
    let browser = valor_tool_dev::WarmBrowser::new(BrowserSettings {
        on_launch: Some(watch),
        ..BrowserSettings::default()
    });
    browser.capture(&app).await.unwrap();
    let pid = launched.lock().unwrap()[0];
    assert_eq!(
        browser.pid().await,
        Some(pid),
        "the watched pid is the browser"
    );
    // The browser and its helpers are all in the group it leads: one signal ends them all.
    let members = group_of(pid);
    assert!(members.len() >= 2, "{members:?}");
    assert!(members.iter().all(|m| m.contains("chrom")), "{members:?}");
    assert!(!released.load(Ordering::SeqCst));
    browser.close().await;
    assert!(
        released.load(Ordering::SeqCst),
        "the watch ends with the browser"
    );
}

#[tokio::test]
async fn the_browser_is_a_tenant_that_sees_only_the_app() {
    let (app, _) = serve_app().await;
    // Another page on this machine the browser must not reach.
    let (other, _) = serve_app().await;
    let launched = Arc::new(std::sync::Mutex::new(Vec::new()));
    let watch = {
        let launched = Arc::clone(&launched);
        valor_tool_dev::LaunchWatch(Arc::new(move |pid| {
            launched.lock().unwrap().push(pid);
            Box::new(()) as Box<dyn std::any::Any + Send + Sync>
        }))
    };
    let browser = valor_tool_dev::WarmBrowser::new(BrowserSettings {
        on_launch: Some(watch),
        sandbox: Some(sandbox()),
        app_url: app.clone(),
        idle_close: Duration::from_secs(5),
        page_timeout: Duration::from_secs(20),
        ..BrowserSettings::default()
    });
    let capture = browser.capture(&app).await.unwrap();
    assert!(capture.png.len() > 5_000, "the app's page was captured");
    let pid = launched.lock().unwrap()[0];
    let members = group_of(pid);
    assert!(members.iter().any(|m| m.contains("chrom")), "{members:?}");
    // Its own network namespace, its own user as root, and no DevTools port anywhere.
    let chromium: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.starts_with("chrom"))
                && std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.contains("--remote-debugging-pipe"))
        })
        .collect();
    assert!(!chromium.is_empty());
    let namespace = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).unwrap();
    for p in &chromium {
        let cmdline = std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap();
        assert!(!cmdline.contains("--remote-debugging-port"), "{cmdline}");
        assert_ne!(namespace(&p.to_string()), namespace("self"));
        if rustix::process::geteuid().is_root() {
            use std::os::unix::fs::MetadataExt as _;
            let uid = std::fs::metadata(format!("/proc/{p}")).unwrap().uid();
            assert_eq!(uid, 2_000_001, "the browser runs as a user of its own");
        }
    }
    // file:// and any other address are refused: the page is Chromium's refusal.
    for url in ["file:///etc/hostname".to_owned(), other.clone()] {
        let refused = browser.capture(&url).await;
        let shown = match &refused {
            Ok(capture) => format!("{} {:?}", capture.title, capture.failed_requests),
            Err(e) => e.to_string(),
        };
        assert!(
            shown.contains("ERR_BLOCKED_BY_ADMINISTRATOR"),
            "{url} was loaded: {shown}"
        );
        assert!(!shown.contains("payment widget"), "{url}: {shown}");
    }
    // Left alone, it closes.
    let closed = async {
        while browser.pid().await.is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), closed)
        .await
        .expect("the idle browser closes");
    // Killed processes leave /proc a moment after the signal.
    let gone = async {
        while !group_of(pid).is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .unwrap_or_else(|_| panic!("its processes are gone: {:?}", group_of(pid)));
}

#[tokio::test]
async fn screenshots_are_found_by_task_and_age_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (server, sent) = server("http://127.0.0.1:9/", dir.path());
    let scope = Scope::for_chat(dir.path(), 3);
    let shots = scope.workspace.join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x02\x80\0\0\x01\xe0\x08\x06\0\0\0";
    std::fs::write(shots.join("T1-old.png"), png).unwrap();
    let old = std::fs::File::options()
        .write(true)
        .open(shots.join("T1-old.png"))
        .unwrap();
    old.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    std::fs::write(shots.join("T1-new.png"), png).unwrap();
    std::fs::write(shots.join("T2-x.png"), png).unwrap();

    let answer = server.retrieve(&scope, "T1", Some(30)).unwrap();
    assert!(answer.contains("T1-new.png"), "{answer}");
    assert!(answer.contains("640x480 pixels"), "{answer}");
    let answer = server.retrieve(&scope, "T1", Some(120)).unwrap();
    assert!(answer.contains("T1-new.png"), "the newest wins: {answer}");
    std::fs::remove_file(shots.join("T1-new.png")).unwrap();
    let answer = server.retrieve(&scope, "T1", Some(30)).unwrap();
    assert!(
        answer.starts_with("No screenshot of task T1 from the last 30 minutes"),
        "{answer}"
    );
    assert_eq!(sent.lock().unwrap().len(), 2);

    // A file named like a screenshot that is not an image.
    std::fs::write(shots.join("T3-fake.png"), b"<html>not a picture</html>").unwrap();
    let error = server.retrieve(&scope, "T3", None).unwrap_err();
    assert!(matches!(error, ToolError::File(_)), "{error}");
    // Task ids cannot walk out of the folder.
    let error = server
        .retrieve(&scope, "../../etc/passwd", None)
        .unwrap_err();
    assert!(matches!(error, ToolError::Invalid(_)), "{error}");
}

#[tokio::test]
async fn a_linked_screenshot_or_folder_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (server, sent) = server("http://127.0.0.1:9/", dir.path());
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x02\x80\0\0\x01\xe0\x08\x06\0\0\0";
    // Chat 4's private screenshot; chat 3 links to it, then to the whole folder.
    let theirs = Scope::for_chat(dir.path(), 4);
    theirs.write_new("screenshots/T1-private.png", png).unwrap();
    let ours = Scope::for_chat(dir.path(), 3);
    ours.write_new("screenshots/.keep", b"").unwrap();
    std::os::unix::fs::symlink(
        theirs.workspace.join("screenshots/T1-private.png"),
        ours.workspace.join("screenshots/T1-link.png"),
    )
    .unwrap();
    let answer = server.retrieve(&ours, "T1", None).unwrap();
    assert!(answer.starts_with("No screenshot of task T1"), "{answer}");
    std::fs::remove_dir_all(ours.workspace.join("screenshots")).unwrap();
    std::os::unix::fs::symlink(
        theirs.workspace.join("screenshots"),
        ours.workspace.join("screenshots"),
    )
    .unwrap();
    let error = server.retrieve(&ours, "T1", None).unwrap_err();
    assert!(matches!(error, ToolError::Refused(_)), "{error}");
    assert!(
        sent.lock().unwrap().is_empty(),
        "nothing of chat 4 was sent"
    );
    // A report never goes through a linked folder either.
    std::os::unix::fs::symlink(
        theirs.workspace.join("screenshots"),
        ours.workspace.join("bug-reports"),
    )
    .unwrap();
    let capture = valor_tool_dev::Capture {
        url: "http://127.0.0.1:9/".to_owned(),
        title: "app".to_owned(),
        png: png.to_vec(),
        console_errors: Vec::new(),
        failed_requests: Vec::new(),
        elapsed: Duration::from_millis(5),
        cold: false,
    };
    let error = valor_tool_dev::report::write_report(
        &ours,
        "broken",
        Some("T9"),
        &capture,
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(matches!(error, ToolError::Refused(_)), "{error}");
    let names: Vec<_> = std::fs::read_dir(theirs.workspace.join("screenshots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        names,
        ["T1-private.png"],
        "nothing written into chat 4's folder"
    );
}

#[tokio::test]
async fn missing_settings_and_a_dead_app_get_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    let scope = Scope::for_chat(dir.path(), 1);
    let (unset, _) = server("", dir.path());
    let error = unset.bug_report(&scope, "broken", "").await.unwrap_err();
    assert_eq!(error.to_string(), "not configured: set [tools.dev] app_url");

    // Nothing listens there: the browser says so.
    let dead_url = format!("http://127.0.0.1:{}/", closed_port());
    let (dead, sent) = server(&dead_url, dir.path());
    let error = dead.bug_report(&scope, "broken", "").await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("the app is unreachable: {dead_url} did not load")),
        "{error}"
    );
    assert!(sent.lock().unwrap().is_empty());
    let error = dead.bug_report(&scope, "  ", "").await.unwrap_err();
    assert!(matches!(error, ToolError::Invalid(_)));
    let error = dead.bug_report(&scope, "broken", "a/b").await.unwrap_err();
    assert!(matches!(error, ToolError::Invalid(_)));
    dead.browser().close().await;
}
