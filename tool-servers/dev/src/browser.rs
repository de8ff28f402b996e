//! One warm headless Chromium, shared by every call: launching costs 0.2-0.7 s, a page in a
//! running browser 0.2-0.4 s. Each capture gets its own tab, closed afterwards. A browser that
//! died (crashed, killed) is noticed on the next call and relaunched once; one left idle for
//! `idle_close` is closed. Where Valor's sandbox works the browser is a tenant in it
//! ([`crate::tenant`]); elsewhere it runs as before, degraded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chromiumoxide::cdp::browser_protocol::log::{EventEntryAdded, LogEntryLevel};
use chromiumoxide::cdp::browser_protocol::network::{
    EnableParams as NetworkEnable, EventLoadingFailed, EventRequestWillBeSent,
    EventResponseReceived,
};
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams, Viewport as CdpViewport,
};
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures::{FutureExt as _, Stream, StreamExt as _};
use tokio::sync::Mutex;
use valor_tools::ToolError;

/// Names Chromium goes by on Debian and elsewhere, tried in order on `PATH`.
const CHROMIUM_NAMES: &[&str] = &["chromium", "chromium-browser", "google-chrome", "chrome"];

#[derive(Debug, Clone)]
pub struct BrowserSettings {
    /// The executable; empty: found on `PATH`.
    pub executable: PathBuf,
    pub page_timeout: Duration,
    /// Width and height of the window, in CSS pixels.
    pub viewport: (u32, u32),
    /// Told the process group of each browser launched (its leader's pid), so the agent can
    /// record it for the reaper; what it returns is dropped when that browser is closed.
    pub on_launch: Option<LaunchWatch>,
    /// The sandbox the browser runs in (none: unsandboxed, with a DevTools port).
    pub sandbox: Option<crate::tenant::BrowserSandbox>,
    /// The one address a sandboxed browser may load (the app under development).
    pub app_url: String,
    /// A browser unused this long is closed.
    pub idle_close: Duration,
}

/// See [`BrowserSettings::on_launch`].
#[derive(Clone)]
pub struct LaunchWatch(
    pub std::sync::Arc<dyn Fn(u32) -> Box<dyn std::any::Any + Send + Sync> + Send + Sync>,
);

impl std::fmt::Debug for LaunchWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LaunchWatch")
    }
}

/// Starts Chromium as the leader of a process group of its own (setsid execs in place, so the
/// pid stays): all its helper processes can then be ended with one signal, also by the reaper
/// after a crash of Valor.
const SETSID: &str = "/usr/bin/setsid";

impl Default for BrowserSettings {
    fn default() -> Self {
        BrowserSettings {
            executable: PathBuf::new(),
            page_timeout: Duration::from_secs(30),
            viewport: (1280, 800),
            on_launch: None,
            sandbox: None,
            app_url: String::new(),
            idle_close: Duration::from_secs(120),
        }
    }
}

/// A launcher script in the browser's private profile folder: `setsid` then Chromium
/// (`$VALOR_CHROMIUM`), with chromiumoxide's arguments.
fn group_launcher(profile: &std::path::Path) -> Result<PathBuf, ToolError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = profile.join("launch.sh");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&path)
        .map_err(|e| ToolError::Io(format!("cannot write the browser launcher: {e}")))?;
    file.write_all(format!("#!/bin/sh\nexec {SETSID} \"$VALOR_CHROMIUM\" \"$@\"\n").as_bytes())
        .map_err(|e| ToolError::Io(format!("cannot write the browser launcher: {e}")))?;
    Ok(path)
}

/// What a page showed.
#[derive(Debug, Clone)]
pub struct Capture {
    /// The full-page screenshot.
    pub png: Vec<u8>,
    pub title: String,
    /// Where the page ended up (after redirects).
    pub url: String,
    /// `console.error` calls, uncaught exceptions and browser-logged errors, in order.
    pub console_errors: Vec<String>,
    /// Requests that failed ("GET url: net::ERR_…") or answered 4xx/5xx ("404 url").
    pub failed_requests: Vec<String>,
    /// From opening the tab to the screenshot.
    pub elapsed: Duration,
    /// Whether this capture had to launch the browser.
    pub cold: bool,
}

struct Running {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    /// A tab kept open between calls (on about:blank): opening one costs ~150 ms.
    idle_tab: Option<Page>,
    /// The leader of the browser's process group.
    pid: Option<u32>,
    /// Each unsandboxed browser gets its own profile: instances sharing one collide.
    _profile: Option<tempfile::TempDir>,
    /// A sandboxed browser's sandbox (its profile is in there).
    _tenant: Option<crate::tenant::Tenant>,
    /// From [`BrowserSettings::on_launch`]; dropped with the browser.
    _watch: Option<Box<dyn std::any::Any + Send + Sync>>,
    last_used: Instant,
    generation: usize,
}

/// The browser, launched on first use.
pub struct WarmBrowser {
    settings: BrowserSettings,
    running: std::sync::Arc<Mutex<Option<Running>>>,
    launches: std::sync::atomic::AtomicUsize,
}

impl WarmBrowser {
    pub fn new(settings: BrowserSettings) -> WarmBrowser {
        WarmBrowser {
            settings,
            running: std::sync::Arc::new(Mutex::new(None)),
            launches: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Browsers launched so far.
    pub fn launches(&self) -> usize {
        self.launches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The executable to run: the configured one, else the first Chromium on `PATH`.
    pub fn executable(&self) -> Result<PathBuf, ToolError> {
        if !self.settings.executable.as_os_str().is_empty() {
            return if self.settings.executable.is_file() {
                Ok(self.settings.executable.clone())
            } else {
                Err(ToolError::File(format!(
                    "the browser {} ([tools.dev] chromium) does not exist",
                    self.settings.executable.display()
                )))
            };
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .flat_map(|dir| CHROMIUM_NAMES.iter().map(move |name| dir.join(name)))
            .find(|candidate| candidate.is_file())
            .ok_or(ToolError::NotConfigured {
                setting: "[tools.dev] chromium (no chromium on PATH: run scripts/setup)",
            })
    }

    async fn launch(&self) -> Result<Running, ToolError> {
        let generation = self
            .launches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let running = match &self.settings.sandbox {
            Some(sandbox) => self.launch_sandboxed(sandbox, generation).await?,
            None => self.launch_unsandboxed(generation).await?,
        };
        self.close_when_idle(generation);
        Ok(running)
    }

    /// In its sandbox, over the DevTools pipe.
    async fn launch_sandboxed(
        &self,
        sandbox: &crate::tenant::BrowserSandbox,
        generation: usize,
    ) -> Result<Running, ToolError> {
        let executable = self.executable()?;
        let (url, tenant) = crate::tenant::start(
            sandbox,
            &executable,
            &self.settings.app_url,
            self.settings.viewport,
        )
        .await?;
        let (width, height) = self.settings.viewport;
        let config = chromiumoxide::handler::HandlerConfig {
            viewport: Some(Viewport {
                width,
                height,
                ..Viewport::default()
            }),
            request_timeout: self.settings.page_timeout,
            ..chromiumoxide::handler::HandlerConfig::default()
        };
        let (browser, mut handler) = tokio::time::timeout(
            Duration::from_secs(30),
            Browser::connect_with_config(url, config),
        )
        .await
        .map_err(|_| ToolError::Unreachable {
            service: "Chromium",
            reason: "the browser did not answer within 30 s".to_owned(),
        })?
        .map_err(|e| ToolError::Unreachable {
            service: "Chromium",
            reason: format!("cannot reach the browser: {e}"),
        })?;
        let watch = self
            .settings
            .on_launch
            .as_ref()
            .map(|LaunchWatch(watch)| watch(tenant.leader));
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        tracing::info!(
            pid = tenant.leader,
            "headless Chromium started in its sandbox"
        );
        Ok(Running {
            browser,
            handler,
            idle_tab: None,
            pid: Some(tenant.leader),
            _profile: None,
            _tenant: Some(tenant),
            _watch: watch,
            last_used: Instant::now(),
            generation,
        })
    }

    /// Closes the browser of `generation` once it has been idle for `idle_close`.
    fn close_when_idle(&self, generation: usize) {
        let running = std::sync::Arc::downgrade(&self.running);
        let idle = self.settings.idle_close;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(
                    idle.min(Duration::from_secs(30))
                        .max(Duration::from_millis(100)),
                )
                .await;
                let Some(running) = running.upgrade() else {
                    return;
                };
                let mut running = running.lock().await;
                match running.as_ref() {
                    Some(r) if r.generation == generation && r.last_used.elapsed() >= idle => {
                        if let Some(mut r) = running.take() {
                            tracing::info!("closing the idle browser");
                            let _ = r.browser.close().await;
                            // Reaped before the browser counts as closed, as `close` does.
                            let _ = r.browser.wait().await;
                            r.handler.abort();
                        }
                        return;
                    }
                    Some(r) if r.generation == generation => {}
                    _ => return,
                }
            }
        });
    }

    async fn launch_unsandboxed(&self, generation: usize) -> Result<Running, ToolError> {
        let executable = self.executable()?;
        let profile = tempfile::Builder::new()
            .prefix(PROFILE_PREFIX)
            .tempdir()
            .map_err(|e| ToolError::Io(format!("cannot make the browser profile: {e}")))?;
        let (width, height) = self.settings.viewport;
        let grouped = std::path::Path::new(SETSID).is_file();
        let launcher = if grouped {
            group_launcher(profile.path())?
        } else {
            executable.clone()
        };
        let config = BrowserConfig::builder()
            .chrome_executable(launcher)
            .env("VALOR_CHROMIUM", executable.to_string_lossy())
            .new_headless_mode()
            .no_sandbox()
            .user_data_dir(profile.path())
            .window_size(width, height)
            .viewport(Viewport {
                width,
                height,
                ..Viewport::default()
            })
            // No leading "--": chromiumoxide adds it. Without the networking flags Chromium
            // keeps trying to reach Google's servers.
            .arg("disable-gpu")
            .arg("disable-background-networking")
            .arg("disable-component-update")
            .arg("disable-sync")
            .arg("no-first-run")
            .arg("disable-dev-shm-usage")
            .launch_timeout(Duration::from_secs(30))
            .request_timeout(self.settings.page_timeout)
            .build()
            .map_err(|e| ToolError::Invalid(format!("browser settings: {e}")))?;
        let (browser, mut handler) =
            Browser::launch(config)
                .await
                .map_err(|e| ToolError::Unreachable {
                    service: "Chromium",
                    reason: format!("cannot start the browser: {e}"),
                })?;
        let mut browser = browser;
        let pid = browser
            .get_mut_child()
            .and_then(|child| child.as_mut_inner().id());
        let watch = match (&self.settings.on_launch, pid) {
            (Some(LaunchWatch(watch)), Some(pid)) if grouped => Some(watch(pid)),
            _ => None,
        };
        // The handler must be polled for the browser to make progress.
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        tracing::warn!("headless Chromium started unsandboxed (the sandbox does not work here)");
        Ok(Running {
            browser,
            handler,
            idle_tab: None,
            pid,
            _profile: Some(profile),
            _tenant: None,
            _watch: watch,
            last_used: Instant::now(),
            generation,
        })
    }

    /// The pid of the running browser's process (and group), if one runs.
    pub async fn pid(&self) -> Option<u32> {
        self.running.lock().await.as_ref()?.pid
    }

    /// Opens `url` in the warm tab (or a new one) and captures it. A dead browser is
    /// relaunched once.
    pub async fn capture(&self, url: &str) -> Result<Capture, ToolError> {
        let started = Instant::now();
        let (page, reused, cold) = self.take_tab().await?;
        let mut outcome = self.capture_in(&page, url).await;
        let mut page = page;
        if reused
            && matches!(
                outcome,
                Err(ToolError::Unreachable {
                    service: "Chromium",
                    ..
                })
            )
        {
            // The kept tab went bad (crashed renderer): once more in a fresh one.
            close_tab(page).await;
            let (fresh, _, _) = self.take_tab().await?;
            outcome = self.capture_in(&fresh, url).await;
            page = fresh;
        }
        match &outcome {
            Ok(_) => self.put_back(page).await,
            Err(_) => close_tab(page).await,
        }
        let mut capture = outcome?;
        capture.elapsed = started.elapsed();
        capture.cold = cold;
        Ok(capture)
    }

    /// A tab for one call: (tab, whether it is the kept one, whether the browser was launched).
    async fn take_tab(&self) -> Result<(Page, bool, bool), ToolError> {
        let mut running = self.running.lock().await;
        let mut cold = false;
        if running.as_ref().is_none_or(|r| r.handler.is_finished()) {
            if let Some(old) = running.take() {
                old.handler.abort();
            }
            *running = Some(self.launch().await?);
            cold = true;
        }
        if let Some(r) = running.as_mut() {
            r.last_used = Instant::now();
        }
        if let Some(tab) = running.as_mut().and_then(|r| r.idle_tab.take()) {
            return Ok((tab, true, cold));
        }
        match new_tab(running.as_ref()).await {
            Ok(page) => Ok((page, false, cold)),
            Err(first) => {
                tracing::warn!(error = %first, "the browser stopped answering; starting a new one");
                if let Some(old) = running.take() {
                    old.handler.abort();
                }
                *running = Some(self.launch().await?);
                Ok((new_tab(running.as_ref()).await?, false, true))
            }
        }
    }

    /// Keeps a tab for the next call, blanked so its page cannot add to the next capture.
    async fn put_back(&self, page: Page) {
        if page.goto("about:blank").await.is_err() {
            close_tab(page).await;
            return;
        }
        let mut running = self.running.lock().await;
        match running.as_mut() {
            Some(r) if r.idle_tab.is_none() => {
                r.last_used = Instant::now();
                r.idle_tab = Some(page);
            }
            _ => {
                drop(running);
                close_tab(page).await;
            }
        }
    }

    async fn capture_in(&self, page: &Page, url: &str) -> Result<Capture, ToolError> {
        let cdp = |e: chromiumoxide::error::CdpError| ToolError::Unreachable {
            service: "Chromium",
            reason: e.to_string(),
        };
        // Listeners first: what happens while the page loads is the evidence.
        let mut console = page
            .event_listener::<EventConsoleApiCalled>()
            .await
            .map_err(cdp)?;
        let mut exceptions = page
            .event_listener::<EventExceptionThrown>()
            .await
            .map_err(cdp)?;
        let mut logs = page
            .event_listener::<EventEntryAdded>()
            .await
            .map_err(cdp)?;
        let mut requests = page
            .event_listener::<EventRequestWillBeSent>()
            .await
            .map_err(cdp)?;
        let mut responses = page
            .event_listener::<EventResponseReceived>()
            .await
            .map_err(cdp)?;
        let mut failures = page
            .event_listener::<EventLoadingFailed>()
            .await
            .map_err(cdp)?;
        page.execute(NetworkEnable::default()).await.map_err(cdp)?;
        page.enable_log().await.map_err(cdp)?;
        page.enable_runtime().await.map_err(cdp)?;

        let loaded = tokio::time::timeout(self.settings.page_timeout, page.goto(url)).await;
        match loaded {
            Err(_) => {
                return Err(ToolError::Unreachable {
                    service: "the app",
                    reason: format!(
                        "{url} did not load within {} s",
                        self.settings.page_timeout.as_secs()
                    ),
                });
            }
            Ok(Err(e)) => {
                return Err(ToolError::Unreachable {
                    service: "the app",
                    reason: format!("{url} did not load: {e}"),
                });
            }
            Ok(Ok(_)) => {}
        }
        let png = full_page_png(page).await.map_err(cdp)?;
        let title = page.get_title().await.map_err(cdp)?.unwrap_or_default();
        let final_url = page
            .url()
            .await
            .map_err(cdp)?
            .unwrap_or_else(|| url.to_owned());

        // The screenshot's answer came after every event of the load on the same connection,
        // so the listeners already hold them: take what is there without waiting.
        let mut console_errors = Vec::new();
        for event in drain(&mut console) {
            if matches!(
                event.r#type,
                ConsoleApiCalledType::Error | ConsoleApiCalledType::Assert
            ) {
                let text: Vec<String> = event.args.iter().map(remote_text).collect();
                console_errors.push(format!("console.error: {}", text.join(" ")));
            }
        }
        for event in drain(&mut exceptions) {
            let details = &event.exception_details;
            let description = details
                .exception
                .as_ref()
                .and_then(|e| e.description.clone())
                .unwrap_or_else(|| details.text.clone());
            let first_line = description.lines().next().unwrap_or_default().to_owned();
            console_errors.push(format!("uncaught: {first_line}"));
        }
        for event in drain(&mut logs) {
            let entry = &event.entry;
            // "Failed to load resource" repeats a failed request, which is listed on its own.
            if entry.level == LogEntryLevel::Error
                && !entry.text.starts_with("Failed to load resource")
            {
                console_errors.push(format!("browser: {}", entry.text));
            }
        }
        let urls: HashMap<String, (String, String)> = drain(&mut requests)
            .map(|e| {
                (
                    e.request_id.inner().clone(),
                    (e.request.method.clone(), e.request.url.clone()),
                )
            })
            .collect();
        let responses: Vec<_> = drain(&mut responses).collect();
        // The page itself answered by Valor's egress proxy (the app is down, or not allowed):
        // the app is unreachable, not a page with errors.
        let egress = valor_sandbox::egress::EGRESS_HEADER;
        if let Some(reason) = responses
            .iter()
            .filter(|e| e.response.url == url || e.response.url == final_url)
            .find_map(|e| e.response.headers.inner().get(egress).cloned())
        {
            return Err(ToolError::Unreachable {
                service: "the app",
                reason: format!(
                    "{url} did not load: {}",
                    reason.as_str().unwrap_or("refused by the egress proxy")
                ),
            });
        }
        let mut failed_requests = Vec::new();
        for event in responses {
            let response = &event.response;
            if response.status >= 400 {
                match response
                    .headers
                    .inner()
                    .get(egress)
                    .and_then(|r| r.as_str())
                {
                    Some(reason) => failed_requests.push(format!(
                        "{} {}: refused by Valor ({reason})",
                        response.status, response.url
                    )),
                    None => failed_requests.push(format!("{} {}", response.status, response.url)),
                }
            }
        }
        for event in drain(&mut failures) {
            if event.canceled == Some(true) {
                continue;
            }
            let (method, url) = urls
                .get(event.request_id.inner())
                .cloned()
                .unwrap_or_else(|| ("?".to_owned(), "(unknown URL)".to_owned()));
            failed_requests.push(format!("{method} {url}: {}", event.error_text));
        }
        Ok(Capture {
            png,
            title,
            url: final_url,
            console_errors,
            failed_requests,
            elapsed: Duration::ZERO,
            cold: false,
        })
    }

    /// Closes the browser (on shutdown; dropping it kills the process too).
    pub async fn close(&self) {
        if let Some(mut running) = self.running.lock().await.take() {
            let _ = running.browser.close().await;
            let _ = running.browser.wait().await;
            running.handler.abort();
        }
    }
}

/// The whole page as PNG, rendered beyond the viewport instead of resizing it (chromiumoxide's
/// `full_page` resizes the view and back, which lays the page out twice).
async fn full_page_png(page: &Page) -> Result<Vec<u8>, chromiumoxide::error::CdpError> {
    use base64::Engine as _;
    let metrics = page.layout_metrics().await?;
    let size = metrics.css_content_size;
    // Chromium cannot capture beyond 16384 px in either direction.
    let clip = CdpViewport {
        x: 0.0,
        y: 0.0,
        width: size.width.clamp(1.0, 16_384.0),
        height: size.height.clamp(1.0, 16_384.0),
        scale: 1.0,
    };
    let shot = page
        .execute(CaptureScreenshotParams {
            format: Some(CaptureScreenshotFormat::Png),
            clip: Some(clip),
            capture_beyond_viewport: Some(true),
            ..CaptureScreenshotParams::default()
        })
        .await?;
    base64::engine::general_purpose::STANDARD
        .decode(AsRef::<str>::as_ref(&shot.result.data))
        .map_err(|e| {
            chromiumoxide::error::CdpError::msg(format!("the screenshot is not base64: {e}"))
        })
}

async fn close_tab(page: Page) {
    if let Err(e) = page.close().await {
        tracing::debug!(error = %e, "closing a tab failed");
    }
}

async fn new_tab(running: Option<&Running>) -> Result<Page, ToolError> {
    let running = running.ok_or_else(|| ToolError::Unreachable {
        service: "Chromium",
        reason: "the browser is not running".to_owned(),
    })?;
    tokio::time::timeout(
        Duration::from_secs(10),
        running.browser.new_page("about:blank"),
    )
    .await
    .map_err(|_| ToolError::Unreachable {
        service: "Chromium",
        reason: "no new tab within 10 s".to_owned(),
    })?
    .map_err(|e| ToolError::Unreachable {
        service: "Chromium",
        reason: e.to_string(),
    })
}

/// The events a listener already holds, without waiting for more.
fn drain<S, T>(stream: &mut S) -> impl Iterator<Item = T> + '_
where
    S: Stream<Item = T> + Unpin,
{
    std::iter::from_fn(move || stream.next().now_or_never().flatten())
}

/// A console argument as text: strings as they are, other values by their description.
fn remote_text(object: &chromiumoxide::cdp::js_protocol::runtime::RemoteObject) -> String {
    match &object.value {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => object.description.clone().unwrap_or_default(),
    }
}

/// Browser profiles are temporary folders named with this prefix (the cleanup job removes
/// old ones a killed Valor left behind).
pub const PROFILE_PREFIX: &str = "valor-chromium-";
