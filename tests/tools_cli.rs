//! `valor tools`: the listing, and a server spawned over stdio answering a real MCP handshake.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use serde_json::{Value, json};

#[test]
fn tools_list_prints_every_tool_with_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = support::valor(dir.path())
        .args(["tools", "list", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let servers: Value = serde_json::from_slice(&out.stdout).unwrap();
    let social = &servers[0];
    assert_eq!(social["server"], "social");
    let names: Vec<&str> = social["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "analyze_shared_image",
            "create_image",
            "save_link",
            "search_current_info"
        ]
    );
    assert_eq!(
        social["tools"][1]["inputSchema"]["required"],
        json!(["prompt", "chat_id"])
    );

    let out = support::valor(dir.path())
        .args(["tools", "serve", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the servers are: social"));
}

#[test]
fn a_server_runs_alone_over_stdio_and_keeps_its_chat_binding() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = support::valor(dir.path())
        .args(["tools", "serve", "social", "--chat", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut send = |message: Value| {
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    };
    let mut answer = |id: u64| -> Value {
        loop {
            let line = lines.next().expect("the server answered").unwrap();
            let value: Value = serde_json::from_str(&line).unwrap();
            if value["id"] == json!(id) {
                return value;
            }
        }
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}}),
    );
    assert!(answer(1)["result"]["serverInfo"].is_object());
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    assert_eq!(answer(2)["result"]["tools"].as_array().unwrap().len(), 4);
    send(
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "create_image", "arguments": {"prompt": "a cat", "chat_id": 6}}}),
    );
    let result = answer(3)["result"].clone();
    assert_eq!(result["isError"], json!(true));
    assert!(
        result["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("chat 6 is out of reach")
    );
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
