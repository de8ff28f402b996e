//! Valor's `notion` MCP server.
//!
//! - `query_notion_projects(workspace, question)`: finds the workspace's task database (from
//!   `[tools.notion] databases`, else Notion's search), reads its tasks, and answers with those
//!   the question is about: status, assignee, due date and link of each.
//!
//! [`NotionClient`] is also what the dev server comments on a task with. [`NotionGrants`] say
//! what each chat may read and comment on: one operator key serves them all.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod client;
mod grants;
mod server;
mod task;

pub use client::{Database, NotionClient, NotionSettings};
pub use grants::{Caller, Grant, NotionGrants};
pub use server::NotionServer;
pub use task::{Task, TaskFilter, render_tasks};
