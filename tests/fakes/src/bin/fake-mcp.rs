//! A real MCP server over stdio for tests: `echo` answers, `env_names` lists its environment,
//! `crash` kills the server mid-call, `slow` waits before answering. Claude Code starts it from a per-test MCP config.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{ServiceExt, schemars, tool, tool_router};
use serde::Deserialize;

#[derive(Debug, Clone, Default)]
struct FakeTools;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct EchoParams {
    /// The text to send back.
    text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SlowParams {
    /// Milliseconds to wait before answering.
    millis: u64,
}

#[tool_router(server_handler)]
impl FakeTools {
    #[tool(description = "Echo the text back, prefixed with 'echo: '.")]
    fn echo(&self, Parameters(EchoParams { text }): Parameters<EchoParams>) -> String {
        format!("echo: {text}")
    }

    #[tool(description = "The names of the environment variables this server was started with.")]
    fn env_names(&self) -> String {
        let mut names: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .collect();
        names.sort();
        names.join(",")
    }

    #[tool(description = "Exit the server process in the middle of the call.")]
    fn crash(&self) -> String {
        std::process::exit(3)
    }

    #[tool(description = "Wait, then answer 'done'.")]
    async fn slow(&self, Parameters(SlowParams { millis }): Parameters<SlowParams>) -> String {
        tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
        "done".to_owned()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let service = FakeTools
        .serve(rmcp::transport::stdio())
        .await
        .expect("MCP handshake");
    let _ = service.waiting().await;
}
