//! Valor's `permissions` MCP server: Claude Code's permission prompt
//! (`--permission-prompt-tool mcp__permissions__ask`). The CLI calls it for every tool use its
//! own rules do not allow outright; [`PermissionPolicy`] decides whether the use runs at once,
//! is refused, or waits for a person in the chat ([`valor_protocol::approval::AskPerson`]:
//! the conversation service asks through the running turn).
//!
//! The tool answers the CLI in the shape it expects: one text block of JSON,
//! `{"behavior":"allow","updatedInput":{…}}` or `{"behavior":"deny","message":"…"}`.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod policy;
mod server;

pub use policy::{PermissionPolicy, Verdict, outside_source_tree, unusual_characters};
pub use server::{PROMPT_TOOL, PermissionServer, SERVER};
