//! Records what the real Claude Code CLI prints against the fake API, for codec fixtures:
//! `cargo run -p valor-fakes --example record_cli -- <claude binary> <fake-mcp binary> <prompt> [extra CLI args]`.
//! Prompts: "use echo" makes a tool call, "crash" calls the crashing tool, anything else a text
//! answer in three chunks. Prints the CLI's stdout and, on stderr, the requests the fake saw.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use valor_fakes::anthropic::{FakeAnthropic, Reply, Turn};

fn script(turn: &Turn) -> Reply {
    if let Some((_, content, is_error)) = &turn.last_tool_result {
        return Reply::text(&format!("Tool said ({is_error}): {content}"));
    }
    if turn.asks("use echo") {
        return Reply::tool("mcp__fake__echo", json!({"text": "hi"}));
    }
    if turn.asks("crash") {
        return Reply::tool("mcp__fake__crash", json!({}));
    }
    if turn.asks("overload") {
        return Reply::overloaded();
    }
    Reply::chunks(&["Hello", " from", " the fake."])
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (claude, mcp, prompt, extra) = (&args[0], &args[1], &args[2], &args[3..]);
    let fake = FakeAnthropic::start(script).await;
    let home = std::env::temp_dir().join(format!("record-cli-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let mcp_config = json!({"mcpServers": {"fake": {"type": "stdio", "command": mcp, "args": []}}});
    let stdin_mode = std::env::var_os("RECORD_STDIN").is_some();
    let mut command = tokio::process::Command::new(claude);
    if stdin_mode {
        command.args(["-p", "--input-format", "stream-json"]);
    } else {
        command.args(["-p", prompt]);
    }
    let mut child = command
        .args(["--output-format", "stream-json", "--verbose"])
        .args([
            "--mcp-config",
            &mcp_config.to_string(),
            "--strict-mcp-config",
        ])
        .args([
            "--allowedTools",
            &std::env::var("RECORD_ALLOWED").unwrap_or_else(|_| "mcp__fake".to_owned()),
        ])
        .args(extra)
        .current_dir(&home)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", &home)
        .env("ANTHROPIC_BASE_URL", &fake.url)
        .env("ANTHROPIC_API_KEY", "sk-ant-fake")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "1")
        .stdin(if stdin_mode {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let message = json!({"type": "user", "message": {"role": "user", "content": prompt}});
        stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
    }
    let output = child.wait_with_output().await.unwrap();
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("exit: {:?}", output.status.code());
    eprintln!("stderr: {}", String::from_utf8_lossy(&output.stderr));
    for turn in fake.requests() {
        eprintln!(
            "request {}: stream={} model={} messages={} tools={:?}",
            turn.index, turn.stream, turn.model, turn.message_count, turn.tools
        );
        if std::env::var_os("RECORD_DUMP").is_some() {
            eprintln!("{:#}", turn.body["messages"]);
        }
    }
    let _ = std::fs::remove_dir_all(&home);
}
