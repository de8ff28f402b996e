//! The social server as MCP clients see it: in process (rmcp client over a pipe) and hosted
//! over streamable HTTP behind chat-scoped bearer tokens (plain JSON-RPC, as Claude Code sends
//! it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use valor_tool_social::{SocialServer, SocialSettings};
use valor_tools::host::{Grants, route};
use valor_tools::{Scope, ScopeSource};

fn social(workspaces: &std::path::Path) -> SocialServer {
    social_as(workspaces, true)
}

fn social_as(workspaces: &std::path::Path, hosted: bool) -> SocialServer {
    SocialServer::new(
        SocialSettings::default(),
        ScopeSource {
            chats: valor_chatfs::ChatFs::new(
                workspaces.to_owned(),
                workspaces.join(".homes"),
                None,
            ),
            fixed: None,
            hosted,
        },
    )
    .unwrap()
}

/// An rmcp client talking to `server` in process, over a pipe.
async fn connected(server: SocialServer) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let running = server.serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    ().serve(client_io).await.unwrap()
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

#[tokio::test]
async fn in_process_client_lists_the_tools_with_schemas_and_calls_one() {
    let dir = tempfile::tempdir().unwrap();
    let client = connected(social_as(dir.path(), false)).await;
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "analyze_shared_image",
            "create_image",
            "save_link",
            "search_current_info"
        ]
    );
    for tool in &tools {
        assert!(tool.description.as_deref().is_some_and(|d| d.len() > 60));
        let schema = serde_json::to_value(tool.input_schema.as_ref()).unwrap();
        if tool.name != "search_current_info" {
            let required = schema["required"].as_array().unwrap();
            assert!(
                required.contains(&json!("chat_id")),
                "{}: {schema}",
                tool.name
            );
        }
    }
    // No key configured: the tool answers, the session goes on.
    let result = client
        .call_tool(
            CallToolRequestParams::new("search_current_info")
                .with_arguments(json!({"query": "news"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    assert!(text_of(&result).starts_with("not configured: set PERPLEXITY_API_KEY"));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_hosted_server_refuses_a_call_that_carries_no_chat_scope() {
    // A hosted server reached without the HTTP layer's scope (a transport that did not pass
    // the request on) must not fall back to serving any chat.
    let dir = tempfile::tempdir().unwrap();
    let client = connected(social(dir.path())).await;
    let result = client
        .call_tool(
            CallToolRequestParams::new("save_link").with_arguments(
                json!({"url": "http://127.0.0.1:9/x", "chat_id": 5})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    assert!(
        text_of(&result).contains("carries no chat scope"),
        "{}",
        text_of(&result)
    );
    client.cancel().await.unwrap();
}

/// One JSON-RPC request to the hosted server; returns the status and the JSON answer (from
/// an SSE `data:` line or a JSON body).
async fn rpc(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    session: Option<&str>,
    body: Value,
) -> (u16, Option<String>, Option<Value>) {
    let mut request = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).ok().or_else(|| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("id").is_some())
    });
    (status, session, json)
}

/// The social server hosted on a loopback port, as the agent hosts it: its URL and the grants.
async fn hosted_social(workspaces: &std::path::Path) -> (String, Grants) {
    let grants = Grants::default();
    let workspaces = workspaces.to_owned();
    let app = route("social", move || social(&workspaces), grants.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp/social", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, grants)
}

#[tokio::test]
async fn a_token_for_one_chat_cannot_reach_another() {
    let dir = tempfile::tempdir().unwrap();
    let (url, grants) = hosted_social(dir.path()).await;
    let chat_a = Scope::for_chat(dir.path(), 1);
    std::fs::create_dir_all(chat_a.workspace.join("received")).unwrap();
    let token_a = grants.token_for(chat_a.clone());
    assert_eq!(grants.token_for(chat_a), token_a, "one token per chat");
    let token_b = grants.token_for(Scope::for_chat(dir.path(), 2));
    assert_ne!(token_a, token_b);

    let http = reqwest::Client::new();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "claude-code", "version": "test"}}});
    for token in [None, Some("wrong")] {
        let (status, _, _) = rpc(&http, &url, token, None, initialize.clone()).await;
        assert_eq!(status, 401, "token {token:?}");
    }
    let (status, session, answer) = rpc(&http, &url, Some(&token_a), None, initialize).await;
    assert_eq!(status, 200, "{answer:?}");
    let session = session.expect("a session id");
    let (status, _, _) = rpc(
        &http,
        &url,
        Some(&token_a),
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202);

    let call = |id: u64, name: &str, arguments: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": name, "arguments": arguments}})
    };
    let cases = [
        (
            call(
                2,
                "analyze_shared_image",
                json!({"image_path": "received/x.png", "question": "?", "chat_id": 2}),
            ),
            "chat 2 is out of reach",
        ),
        (
            call(3, "create_image", json!({"prompt": "a cat", "chat_id": 2})),
            "chat 2 is out of reach",
        ),
        (
            call(
                4,
                "analyze_shared_image",
                json!({"image_path": "/etc/passwd", "question": "?", "chat_id": 1}),
            ),
            "outside this chat's workspace",
        ),
        (
            call(
                5,
                "save_link",
                json!({"url": "http://127.0.0.1:1/", "chat_id": 1}),
            ),
            "a local or private address",
        ),
    ];
    for (request, expected) in cases {
        let (status, _, answer) = rpc(&http, &url, Some(&token_a), Some(&session), request).await;
        assert_eq!(status, 200);
        let answer = answer.unwrap();
        let result = &answer["result"];
        assert_eq!(result["isError"], json!(true), "{answer}");
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(text.contains(expected), "{expected}: {text}");
    }
    // The scope comes with every request, not with the session: chat 2's token on chat 1's
    // session still reaches chat 2 only.
    let (status, _, answer) = rpc(
        &http,
        &url,
        Some(&token_b),
        Some(&session),
        call(6, "create_image", json!({"prompt": "x", "chat_id": 1})),
    )
    .await;
    assert_eq!(status, 200);
    let text = answer.unwrap()["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("chat 1 is out of reach"), "{text}");
}

#[tokio::test]
async fn a_chats_new_session_closes_the_one_its_last_process_left_open() {
    let dir = tempfile::tempdir().unwrap();
    let (url, grants) = hosted_social(dir.path()).await;
    let token_a = grants.token_for(Scope::for_chat(dir.path(), 1));
    let token_b = grants.token_for(Scope::for_chat(dir.path(), 2));
    let http = reqwest::Client::new();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "claude-code", "version": "test"}}});
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    let open = |token: String| {
        let (http, url, initialize) = (http.clone(), url.clone(), initialize.clone());
        async move {
            let (status, session, _) = rpc(&http, &url, Some(&token), None, initialize).await;
            assert_eq!(status, 200);
            let session = session.unwrap();
            let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            rpc(&http, &url, Some(&token), Some(&session), initialized).await;
            session
        }
    };
    let first = open(token_a.clone()).await;
    let other_chat = open(token_b.clone()).await;
    let (status, _, _) = rpc(&http, &url, Some(&token_a), Some(&first), ping.clone()).await;
    assert_eq!(status, 200, "the first session works");

    // Chat 1's next process opens a new session: the old one goes, chat 2's stays.
    let second = open(token_a.clone()).await;
    assert_ne!(first, second);
    let mut old = 0;
    for _ in 0..100 {
        old = rpc(&http, &url, Some(&token_a), Some(&first), ping.clone())
            .await
            .0;
        if old == 404 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(old, 404, "the replaced session is closed");
    let (status, _, _) = rpc(&http, &url, Some(&token_a), Some(&second), ping.clone()).await;
    assert_eq!(status, 200, "the new session works");
    let (status, _, _) = rpc(&http, &url, Some(&token_b), Some(&other_chat), ping).await;
    assert_eq!(status, 200, "another chat's session is untouched");
}
