//! The MCP server: one tool, the CLI's permission prompt.

use std::sync::Arc;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use valor_protocol::approval::{AskPerson, denial_message};
use valor_tools::ScopeSource;

use crate::policy::{PermissionPolicy, Verdict};

/// The server's name in the MCP config.
pub const SERVER: &str = "permissions";
/// What `--permission-prompt-tool` names.
pub const PROMPT_TOOL: &str = "mcp__permissions__ask";

#[derive(Clone)]
pub struct PermissionServer {
    policy: Arc<PermissionPolicy>,
    people: Arc<dyn AskPerson>,
    scopes: ScopeSource,
}

/// What Claude Code sends its permission prompt tool.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AskParams {
    /// The tool Claude wants to use.
    pub tool_name: String,
    /// Its input.
    #[serde(default)]
    pub input: Value,
    #[serde(default)]
    pub tool_use_id: Option<String>,
}

#[tool_router(server_handler)]
impl PermissionServer {
    #[tool(
        description = "Valor's permission prompt, called by Claude Code itself before a tool use that needs it. Never call it yourself."
    )]
    async fn ask(
        &self,
        Parameters(p): Parameters<AskParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<String, String> {
        // Only over a chat's token: a call without a chat is refused, never allowed.
        let scope = match self.scopes.caller(&context) {
            Ok(Some(scope)) => scope,
            Ok(None) | Err(_) => {
                return Ok(deny("this request carries no chat scope"));
            }
        };
        tracing::debug!(chat_id = scope.chat_id, tool = %p.tool_name, tool_use_id = ?p.tool_use_id, "permission asked");
        Ok(self.answer(&scope, &p.tool_name, p.input).await)
    }
}

impl PermissionServer {
    pub fn new(
        policy: PermissionPolicy,
        people: Arc<dyn AskPerson>,
        scopes: ScopeSource,
    ) -> PermissionServer {
        PermissionServer {
            policy: Arc::new(policy),
            people,
            scopes,
        }
    }

    /// The answer for the CLI (its JSON as text) to `tool` with `input` in `scope`'s chat.
    pub async fn answer(&self, scope: &valor_tools::Scope, tool: &str, input: Value) -> String {
        let chat_id = scope.chat_id;
        match self.policy.judge(scope, tool, &input) {
            Verdict::Allow => allow(input),
            Verdict::Deny(why) => {
                tracing::info!(chat_id, tool, reason = %why, "tool use refused");
                deny(&why)
            }
            Verdict::Ask(ask) => {
                let decision = self.people.ask(ask).await;
                if decision.allows() {
                    allow(input)
                } else {
                    deny(denial_message(decision))
                }
            }
        }
    }
}

fn allow(input: Value) -> String {
    json!({"behavior": "allow", "updatedInput": input}).to_string()
}

fn deny(message: &str) -> String {
    json!({"behavior": "deny", "message": message}).to_string()
}
