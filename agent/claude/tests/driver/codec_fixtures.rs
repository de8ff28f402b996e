//! The codec on real output of the pinned CLI (recorded against the fake API; see
//! tests/fakes/examples/record_cli.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use valor_claude::codec::{Block, CliEvent, CliResult, McpServerStatus, parse_line};

fn events(name: &str) -> Vec<CliEvent> {
    let path = format!("{}/tests/fixtures/{name}.jsonl", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| parse_line(l.as_bytes()).unwrap())
        .collect()
}

fn result(events: &[CliEvent]) -> &CliResult {
    match events.last().unwrap() {
        CliEvent::Result(r) => r,
        other => panic!("last event is {other:?}"),
    }
}

#[test]
fn text_with_partial_messages_streams_deltas_then_the_block() {
    let events = events("text_partial");
    let CliEvent::Init {
        session_id,
        mcp_servers,
        tools,
        ..
    } = &events[0]
    else {
        panic!("{:?}", events[0])
    };
    assert_eq!(session_id.len(), 36);
    assert!(tools.iter().any(|t| t == "mcp__fake__echo"));
    assert_eq!(
        mcp_servers,
        &[McpServerStatus {
            name: "fake".to_owned(),
            status: "connected".to_owned()
        }]
    );
    assert_eq!(events[1], CliEvent::Status);
    assert!(
        (events.iter()).any(|e| matches!(e, CliEvent::MessageStart { .. })),
        "{events:?}"
    );
    let deltas: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            CliEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, ["Hello", " from", " the fake."]);
    assert!(events.contains(&CliEvent::Assistant {
        blocks: vec![Block::Text("Hello from the fake.".to_owned())],
        synthetic: false
    }));
    let r = result(&events);
    assert!(!r.is_error);
    assert_eq!(r.result.as_deref(), Some("Hello from the fake."));
    assert_eq!(&r.session_id, session_id);
    assert_eq!(r.num_turns, 1);
    assert!(r.total_cost_usd > 0.0);
    assert!(r.usage.input_tokens > 0 && r.usage.output_tokens > 0);
}

#[test]
fn a_tool_call_round_trip() {
    let events = events("tool_call");
    let tool_use = events.iter().find_map(|e| match e {
        CliEvent::Assistant { blocks, .. } => blocks.iter().find_map(|b| match b {
            Block::ToolUse { id, name, input } => Some((id.clone(), name.clone(), input.clone())),
            _ => None,
        }),
        _ => None,
    });
    let (id, name, input) = tool_use.unwrap();
    assert_eq!(name, "mcp__fake__echo");
    assert_eq!(input["text"], "hi");
    let results = events.iter().find_map(|e| match e {
        CliEvent::ToolResults(r) => Some(r.clone()),
        _ => None,
    });
    let results = results.unwrap();
    assert_eq!(results[0].tool_use_id, id);
    assert_eq!(results[0].content, "echo: hi");
    assert!(!results[0].is_error);
    assert_eq!(result(&events).num_turns, 2);
}

#[test]
fn an_mcp_server_dying_mid_call_is_a_tool_error_not_a_failed_run() {
    let events = events("mcp_crash");
    let results: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            CliEvent::ToolResults(r) => Some(r),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(results[0].is_error);
    assert_eq!(results[0].content, "MCP error -32000: Connection closed");
    assert!(!result(&events).is_error);
}

#[test]
fn overloaded_is_a_synthetic_message_and_an_error_result_with_subtype_success() {
    let events = events("overloaded");
    assert!(events.iter().any(|e| matches!(
        e,
        CliEvent::ApiRetry {
            attempt: 1,
            max_retries: 1,
            error_status: Some(529),
            ..
        }
    )));
    assert!(events.iter().any(|e| matches!(
        e,
        CliEvent::Assistant {
            synthetic: true,
            ..
        }
    )));
    let r = result(&events);
    assert!(r.is_error);
    assert_eq!(r.subtype, "success", "subtype is not to be relied on");
    assert_eq!(r.api_error_status, Some(529));
}

#[test]
fn unknown_resume_is_only_a_result() {
    let events = events("resume_unknown");
    assert_eq!(events.len(), 1);
    let r = result(&events);
    assert_eq!(r.subtype, "error_during_execution");
    assert!(r.errors[0].starts_with("No conversation found with session ID"));
}

#[test]
fn denied_tools_are_listed() {
    let r = events("tool_denied");
    assert_eq!(result(&r).permission_denials, ["mcp__fake__echo"]);
}

#[test]
fn max_turns() {
    let r = events("max_turns");
    let r = result(&r);
    assert!(r.is_error);
    assert_eq!(r.subtype, "error_max_turns");
}
