//! Screenshot time with a cold browser (launch included) and a warm one, on a page served on
//! 127.0.0.1. `cargo bench -p valor-tool-dev --bench screenshot`; prints median and spread.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use valor_tool_dev::{BrowserSettings, WarmBrowser};

const PAGE: &str = "<!doctype html><html><head><title>Bench</title></head><body>\
    <h1>Orders</h1><table>{rows}</table><script>console.error('bench error')</script></body></html>";

fn median(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    (
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1],
    )
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let rows: String = (0..200)
            .map(|i| format!("<tr><td>order {i}</td><td>{}.00 EUR</td></tr>", i * 7))
            .collect();
        let page = PAGE.replace("{rows}", &rows);
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

        let mut cold = Vec::new();
        for _ in 0..5 {
            let browser = WarmBrowser::new(BrowserSettings::default());
            let started = Instant::now();
            let capture = browser.capture(&url).await.unwrap();
            cold.push(started.elapsed());
            assert!(capture.cold);
            browser.close().await;
        }
        let browser = WarmBrowser::new(BrowserSettings::default());
        browser.capture(&url).await.unwrap();
        let mut warm = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let capture = browser.capture(&url).await.unwrap();
            warm.push(started.elapsed());
            assert!(!capture.cold);
        }
        browser.close().await;
        for (name, samples) in [
            ("cold (launch + page + screenshot)", cold),
            ("warm (page + screenshot)", warm),
        ] {
            let n = samples.len();
            let (min, mid, max) = median(samples);
            println!(
                "screenshot {name}: median {} ms (min {}, max {}, n={n})",
                mid.as_millis(),
                min.as_millis(),
                max.as_millis()
            );
        }
    });
}
