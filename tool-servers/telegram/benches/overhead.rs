//! What a tool call costs on top of the tool itself: the telegram server over a history held in
//! memory (so the tool's own work is ~microseconds), called (1) in process through an rmcp client
//! over a pipe and (2) over streamable HTTP behind the bearer-token check, as Claude Code calls
//! the servers `valor run` hosts. `cargo bench -p valor-tool-telegram --bench overhead`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use valor_tool_telegram::{History, HistoryLine, TelegramServer};
use valor_tools::host::{Grants, route};
use valor_tools::{Scope, ScopeSource};

const CALLS: usize = 2000;

struct OneLine;

#[async_trait::async_trait]
impl History for OneLine {
    async fn search(&self, _: i64, query: &str, _: usize) -> Result<Vec<HistoryLine>, String> {
        Ok(vec![HistoryLine {
            at_ms: 0,
            who: "user".to_owned(),
            text: format!("about {query}"),
            score: Some(1.0),
        }])
    }

    async fn since(&self, _: i64, _: u64, _: usize) -> Result<Vec<HistoryLine>, String> {
        Ok(Vec::new())
    }
}

fn server(dir: &std::path::Path, hosted: bool) -> TelegramServer {
    TelegramServer::new(
        Arc::new(OneLine),
        ScopeSource {
            chats: valor_chatfs::ChatFs::new(dir.to_owned(), dir.join(".homes"), None),
            fixed: None,
            hosted,
        },
    )
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!(
        "tool call {name}: p50 {:.3} ms, p99 {:.3} ms (n={})",
        at(0.5),
        at(0.99),
        samples.len()
    );
}

async fn in_process(dir: &std::path::Path) {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let server = server(dir, false);
    tokio::spawn(async move {
        let running = server.serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    let client = ().serve(client_io).await.unwrap();
    let arguments = json!({"query": "deploy", "chat_id": 1});
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        let result = client
            .call_tool(
                CallToolRequestParams::new("search_conversation_history")
                    .with_arguments(arguments.as_object().unwrap().clone()),
            )
            .await
            .unwrap();
        samples.push(started.elapsed());
        assert_ne!(result.is_error, Some(true));
    }
    client.cancel().await.unwrap();
    report("in process (rmcp over a pipe)", samples);
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    session: Option<&str>,
    body: Value,
) -> (Option<String>, String) {
    let mut request = http
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request.send().await.unwrap();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (session, response.text().await.unwrap())
}

async fn over_http(dir: &std::path::Path) {
    let grants = Grants::default();
    let workspaces = dir.to_owned();
    let app = route(
        "telegram",
        move || server(&workspaces, true),
        grants.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp/telegram", listener.local_addr().unwrap());
    // As valor-monitor's server does: no Nagle delay on streamed answers.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let token = grants.token_for(Scope::for_chat(dir, 1));
    let http = reqwest::Client::new();
    let (session, _) = post(
        &http,
        &url,
        &token,
        None,
        json!({"jsonrpc": "2.0", "id": 0,
        "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "bench", "version": "1"}}}),
    )
    .await;
    let session = session.unwrap();
    post(
        &http,
        &url,
        &token,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    let mut samples = Vec::with_capacity(CALLS);
    for id in 1..=CALLS {
        let started = Instant::now();
        let (_, body) = post(
            &http,
            &url,
            &token,
            Some(&session),
            json!({"jsonrpc": "2.0",
            "id": id, "method": "tools/call", "params": {"name": "search_conversation_history",
            "arguments": {"query": "deploy", "chat_id": 1}}}),
        )
        .await;
        samples.push(started.elapsed());
        assert!(body.contains("about deploy"), "{body}");
    }
    report("over HTTP (token check + streamable HTTP session)", samples);
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(in_process(dir.path()));
    runtime.block_on(over_http(dir.path()));
}
