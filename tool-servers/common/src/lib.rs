//! What Valor's MCP tool servers share.
//!
//! - [`scope`]: the chat and workspace a call may touch, from the turn's bearer token (HTTP) or
//!   the server's own flags (stdio), and the checks every tool runs against it.
//! - [`approve`]: asking the chat's person before an effect beyond the chat.
//! - [`delivery`]: pictures a tool made, handed to the agent to send to the chat.
//! - [`error`]: tool errors in categories a user understands; a failed tool answers with text,
//!   it never fails the turn.
//! - [`http`]: the client external APIs are called with: timeouts, retries with backoff on 429
//!   and 5xx (honouring `Retry-After`), a cap on response size.
//! - [`fetch`]: fetching a user's link without reaching loopback, private or link-local hosts
//!   (checked on every redirect and after DNS).
//! - [`host`]: serving servers over streamable HTTP on 127.0.0.1 behind per-chat bearer tokens,
//!   and the MCP config Claude Code is given.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod approve;
pub mod delivery;
pub mod error;
pub mod fetch;
pub mod host;
pub mod http;
pub mod scope;

pub use delivery::{Deliver, Delivery};
pub use error::ToolError;
pub use scope::{Scope, ScopeSource};
