//! `valor tools`: the listing, and a server spawned over stdio answering a real MCP handshake.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use serde_json::{Value, json};

#[test]
fn tools_list_prints_every_tool_with_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::valor(dir.path())
        .args(["tools", "list", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let servers: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<(&str, usize)> = servers
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["server"].as_str().unwrap(),
                s["tools"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("social", 4),
            ("telegram", 2),
            ("memory", 3),
            ("notion", 1),
            ("dev", 2)
        ]
    );
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

    let out = crate::support::valor(dir.path())
        .args(["tools", "serve", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the servers are: social, telegram, memory, notion, dev")
    );
}

/// `valor tools serve <name> --chat 5` as a child speaking MCP on stdin/stdout.
struct StdioServer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl StdioServer {
    fn start(dir: &std::path::Path, name: &str) -> StdioServer {
        let mut child = crate::support::valor(dir)
            .args(["tools", "serve", name, "--chat", "5"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut server = StdioServer {
            child,
            stdin,
            lines,
        };
        server.send(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
        );
        assert!(server.answer(1)["result"]["serverInfo"].is_object());
        server.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        server
    }

    fn send(&mut self, message: Value) {
        writeln!(self.stdin, "{message}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn answer(&mut self, id: u64) -> Value {
        loop {
            let line = self.lines.next().expect("the server answered").unwrap();
            let value: Value = serde_json::from_str(&line).unwrap();
            if value["id"] == json!(id) {
                return value;
            }
        }
    }

    fn call(&mut self, id: u64, tool: &str, arguments: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}));
        self.answer(id)["result"].clone()
    }

    fn tool_count(&mut self) -> usize {
        self.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
        self.answer(2)["result"]["tools"].as_array().unwrap().len()
    }

    /// Closes stdin: the server must end cleanly.
    fn finish(self) {
        let StdioServer {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}");
    }
}

#[test]
fn every_server_runs_alone_over_stdio_and_refuses_other_chats() {
    let dir = tempfile::tempdir().unwrap();
    let calls = [
        (
            "telegram",
            2,
            "search_conversation_history",
            json!({"query": "x", "chat_id": 6}),
        ),
        ("memory", 3, "get", json!({"ids": [1], "chat_id": 6})),
        (
            "dev",
            2,
            "retrieve_workspace_screenshot",
            json!({"task_id": "T1", "chat_id": 6}),
        ),
    ];
    for (name, tools, tool, arguments) in calls {
        let mut server = StdioServer::start(dir.path(), name);
        assert_eq!(server.tool_count(), tools, "{name}");
        let result = server.call(3, tool, arguments);
        assert_eq!(result["isError"], json!(true), "{name}: {result}");
        assert!(
            result["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("chat 6 is out of reach"),
            "{name}: {result}"
        );
        server.finish();
    }
    // Notion serves a chat only what [tools.notion.chats] grants it: chat 5 has nothing, and the
    // session goes on.
    let mut server = StdioServer::start(dir.path(), "notion");
    assert_eq!(server.tool_count(), 1);
    let result = server.call(
        3,
        "query_notion_projects",
        json!({"workspace": "valor", "question": "what is blocked?"}),
    );
    assert_eq!(
        result["content"][0]["text"],
        json!("refused: Notion is not granted to this chat ([tools.notion.chats])")
    );
    server.finish();
}

#[test]
fn a_server_runs_alone_over_stdio_and_keeps_its_chat_binding() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = StdioServer::start(dir.path(), "social");
    assert_eq!(server.tool_count(), 4);
    let result = server.call(3, "create_image", json!({"prompt": "a cat", "chat_id": 6}));
    assert_eq!(result["isError"], json!(true));
    assert!(
        result["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("chat 6 is out of reach")
    );
    server.finish();
}
