//! The real headless Chromium for the dashboard's test and its bench: found on PATH (scripts/setup
//! installs it), launched with a private profile, and asked for a page's text.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use chromiumoxide::browser::{Browser, BrowserConfig};
use futures::StreamExt as _;

pub fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
        .expect("chromium on PATH (scripts/setup installs it)")
}

/// A headless Chromium with its profile in `profile`, and the task that drives its protocol
/// (abort it after closing the browser).
pub async fn launch(profile: &Path) -> (Browser, tokio::task::JoinHandle<()>) {
    let config = BrowserConfig::builder()
        .chrome_executable(chromium())
        .new_headless_mode()
        .no_sandbox()
        .user_data_dir(profile)
        .arg("disable-gpu")
        .arg("disable-background-networking")
        .arg("no-first-run")
        .arg("disable-dev-shm-usage")
        .build()
        .unwrap();
    let (browser, mut handler) = Browser::launch(config).await.unwrap();
    let handling = tokio::spawn(async move { while handler.next().await.is_some() {} });
    (browser, handling)
}

/// The text of `selector`; a page in the middle of a navigation (its script context gone) is
/// asked again.
pub async fn text_of(page: &chromiumoxide::Page, selector: &str) -> String {
    let script = format!("document.querySelector('{selector}')?.innerText ?? ''");
    for _ in 0..100 {
        if let Ok(result) = page.evaluate(script.as_str()).await
            && let Ok(text) = result.into_value::<String>()
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the page never answered for {selector}");
}
