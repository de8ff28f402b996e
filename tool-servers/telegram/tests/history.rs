//! The telegram server through an in-process MCP client, over a history kept in a vector.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use serde_json::json;
use valor_tool_telegram::{History, HistoryLine, TelegramServer};
use valor_tools::{Scope, ScopeSource};

const HOUR: u64 = 3_600_000;
const NOW: u64 = 1_800_000_000_000;

/// Messages of several chats; search is "contains every word", best = newest.
struct Lines(Vec<(i64, HistoryLine)>);

#[async_trait::async_trait]
impl History for Lines {
    async fn search(
        &self,
        chat_id: i64,
        query: &str,
        limit: usize,
    ) -> Result<Vec<HistoryLine>, String> {
        let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        let mut found: Vec<HistoryLine> = self
            .0
            .iter()
            .filter(|(chat, l)| {
                *chat == chat_id && words.iter().all(|w| l.text.to_lowercase().contains(w))
            })
            .map(|(_, l)| HistoryLine {
                score: Some(1.0),
                ..l.clone()
            })
            .collect();
        found.sort_by_key(|l| std::cmp::Reverse(l.at_ms));
        found.truncate(limit);
        Ok(found)
    }

    async fn since(
        &self,
        chat_id: i64,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<HistoryLine>, String> {
        let mut lines: Vec<HistoryLine> = self
            .0
            .iter()
            .filter(|(chat, l)| *chat == chat_id && l.at_ms >= since_ms)
            .map(|(_, l)| l.clone())
            .collect();
        lines.sort_by_key(|l| l.at_ms);
        let skip = lines.len().saturating_sub(limit);
        Ok(lines.split_off(skip))
    }
}

fn line(at_ms: u64, who: &str, text: &str) -> HistoryLine {
    HistoryLine {
        at_ms,
        who: who.to_owned(),
        text: text.to_owned(),
        score: None,
    }
}

fn server(fixed_chat: Option<i64>) -> TelegramServer {
    let history = Lines(vec![
        (
            1,
            line(NOW - 30 * HOUR, "user", "Should we use Postgres or sled?"),
        ),
        (
            1,
            line(
                NOW - 29 * HOUR,
                "assistant",
                "sled: embedded, no server to run.",
            ),
        ),
        (1, line(NOW - 2 * HOUR, "user", "The deploy failed again")),
        (
            1,
            line(
                NOW - HOUR / 2,
                "assistant",
                "The deploy log says the disk is full.",
            ),
        ),
        (
            2,
            line(
                NOW - HOUR,
                "user",
                "secret plans of chat two about the deploy",
            ),
        ),
    ]);
    let dir = std::env::temp_dir();
    TelegramServer::new(
        Arc::new(history),
        ScopeSource {
            fixed: fixed_chat.map(|id| Scope::for_chat(&dir, id)),
            chats: valor_chatfs::ChatFs::new(dir.clone(), dir.join(".homes"), None),
            hosted: false,
        },
    )
    .with_clock(Arc::new(|| NOW))
}

async fn call(server: TelegramServer, tool: &str, args: serde_json::Value) -> (bool, String) {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let running = server.serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    let client = ().serve(client_io).await.unwrap();
    let result = client
        .call_tool(
            CallToolRequestParams::new(tool.to_owned())
                .with_arguments(args.as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    client.cancel().await.unwrap();
    let text = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    (result.is_error == Some(true), text)
}

#[tokio::test]
async fn both_tools_are_listed_with_the_chat_id_required() {
    let tools = TelegramServer::tools();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names.len(),
        2,
        "search_conversation_history and get_conversation_context: {names:?}"
    );
    for tool in &tools {
        let schema = serde_json::to_value(tool.input_schema.as_ref()).unwrap();
        assert!(
            schema["required"]
                .as_array()
                .unwrap()
                .contains(&json!("chat_id"))
        );
    }
}

#[tokio::test]
async fn search_finds_this_chats_messages_only_newest_first() {
    let (error, text) = call(
        server(None),
        "search_conversation_history",
        json!({"query": "deploy", "chat_id": 1}),
    )
    .await;
    assert!(!error, "{text}");
    assert!(text.starts_with("2 messages match \"deploy\""), "{text}");
    let disk = text.find("disk is full").unwrap();
    let failed = text.find("deploy failed again").unwrap();
    assert!(disk < failed, "{text}");
    assert!(text.contains("[30 min ago] assistant:"), "{text}");
    assert!(!text.contains("secret plans"), "{text}");

    let (error, text) = call(
        server(None),
        "search_conversation_history",
        json!({"query": "kubernetes", "chat_id": 1}),
    )
    .await;
    assert!(!error);
    assert_eq!(
        text,
        "Nothing in this chat's history matches \"kubernetes\"."
    );
}

#[tokio::test]
async fn context_reads_the_last_hours_oldest_first() {
    let (error, text) = call(
        server(None),
        "get_conversation_context",
        json!({"hours_back": 3, "chat_id": 1}),
    )
    .await;
    assert!(!error, "{text}");
    assert!(
        text.starts_with("The last 3 hours of this chat (2 messages)"),
        "{text}"
    );
    assert!(
        text.find("[2 h ago] user: The deploy failed again")
            .unwrap()
            < text.find("disk is full").unwrap()
    );
    assert!(!text.contains("Postgres"), "{text}");

    let (_, text) = call(
        server(None),
        "get_conversation_context",
        json!({"hours_back": 48, "chat_id": 1}),
    )
    .await;
    assert!(
        text.contains("[30 h ago] user: Should we use Postgres"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_arguments_and_other_chats_get_clear_refusals() {
    let (error, text) = call(
        server(None),
        "get_conversation_context",
        json!({"hours_back": 0, "chat_id": 1}),
    )
    .await;
    assert!(error);
    assert_eq!(
        text,
        "invalid request: hours_back must be between 1 and 168, not 0"
    );

    let (error, text) = call(
        server(None),
        "search_conversation_history",
        json!({"query": "  ", "chat_id": 1}),
    )
    .await;
    assert!(error);
    assert_eq!(text, "invalid request: the query is empty");

    // A server bound to chat 1 (stdio --chat 1) will not read chat 2.
    let (error, text) = call(
        server(Some(1)),
        "search_conversation_history",
        json!({"query": "secret plans", "chat_id": 2}),
    )
    .await;
    assert!(error);
    assert!(text.starts_with("refused:"), "{text}");
    assert!(!text.contains("secret plans of chat two"));
}
