//! The model API proxy's cost: the same requests to the fake Anthropic API straight and through
//! the proxy a sandbox talks to (its routes served on a loopback listener as a sandbox's socket
//! is), time to the whole answer and to the first streamed byte. Target: <= 1 ms added per
//! request, streaming unchanged.
//! `cargo bench -p valor-claude --bench proxy` (`VALOR_BENCH_REQUESTS`, default 300).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use valor_claude::proxy::{TurnToken, Upstream, routes};
use valor_fakes::anthropic::{FakeAnthropic, Reply};

fn percentile(mut samples: Vec<Duration>, p: f64) -> f64 {
    samples.sort();
    let at = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[at].as_secs_f64() * 1000.0
}

/// (whole answer, first body byte) of one request.
async fn request(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    stream: bool,
) -> (Duration, Duration) {
    let body = json!({
        "model": "claude-sonnet", "max_tokens": 64, "stream": stream,
        "messages": [{"role": "user", "content": "say hello"}],
    });
    let started = Instant::now();
    let mut response = client
        .post(format!("{url}/v1/messages?beta=true"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let mut first = None;
    while let Some(chunk) = response.chunk().await.unwrap() {
        if !chunk.is_empty() {
            first.get_or_insert_with(|| started.elapsed());
        }
    }
    (started.elapsed(), first.unwrap_or_default())
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("VALOR_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let fake = FakeAnthropic::start(|_| Reply::chunks(&["Hello", " from", " the fake."])).await;
    let env = std::collections::BTreeMap::from([
        ("ANTHROPIC_BASE_URL".to_owned(), fake.url.clone()),
        ("ANTHROPIC_API_KEY".to_owned(), "sk-ant-real".to_owned()),
    ]);
    let token = Arc::new(TurnToken::new());
    token.set_active(true);
    let proxy = routes(
        Arc::new(Upstream::from_env(&env, None, "")),
        Arc::clone(&token),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let _serving = valor_sandbox::serve(
        listener,
        valor_sandbox::Gateway {
            egress: Arc::new(valor_sandbox::EgressPolicy::default()),
            routes: Some(proxy),
            tenant: Some(1),
        },
    )
    .unwrap();
    let client = reqwest::Client::new();
    for stream in [false, true] {
        // Warm both paths (connections, the fake's first answer).
        for _ in 0..20 {
            request(&client, &fake.url, "sk-ant-real", stream).await;
            request(&client, &proxy_url, token.value(), stream).await;
        }
        let (mut direct, mut proxied) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
        // Interleaved, so drift hits both alike.
        for _ in 0..n {
            let (whole, first) = request(&client, &fake.url, "sk-ant-real", stream).await;
            direct.0.push(whole);
            direct.1.push(first);
            let (whole, first) = request(&client, &proxy_url, token.value(), stream).await;
            proxied.0.push(whole);
            proxied.1.push(first);
        }
        let kind = if stream {
            "streamed (SSE)"
        } else {
            "whole JSON"
        };
        println!(
            "{kind}, n={n}: direct p50 {:.3} ms p99 {:.3} ms; through the proxy p50 {:.3} ms p99 {:.3} ms; added p50 {:.3} ms",
            percentile(direct.0.clone(), 0.5),
            percentile(direct.0.clone(), 0.99),
            percentile(proxied.0.clone(), 0.5),
            percentile(proxied.0.clone(), 0.99),
            percentile(proxied.0.clone(), 0.5) - percentile(direct.0.clone(), 0.5),
        );
        if stream {
            println!(
                "  first streamed byte: direct p50 {:.3} ms, through the proxy p50 {:.3} ms",
                percentile(direct.1, 0.5),
                percentile(proxied.1, 0.5)
            );
        }
    }
}
