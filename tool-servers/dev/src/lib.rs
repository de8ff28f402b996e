//! Valor's `dev` MCP server: evidence from the app under development.
//!
//! - `retrieve_workspace_screenshot(task_id, chat_id, max_age_minutes)`: the newest screenshot
//!   of a task in the chat's workspace (`screenshots/<task_id>…`), sent to the chat.
//! - `execute_bug_report_with_screenshot(task_description, notion_task_id, chat_id)`: opens the
//!   configured app URL in headless Chromium, captures a full-page screenshot, console errors
//!   and failed requests, writes a bug report (markdown + PNG) into the workspace, comments on
//!   the Notion task when one is named, and sends the screenshot with a summary to the chat.
//!
//! - [`browser`]: one warm Chromium reused across calls, relaunched when it dies, closed when
//!   idle.
//! - [`tenant`]: the browser as a tenant: in its own sandbox, over the DevTools pipe, the app
//!   its only destination.
//! - [`report`]: finding screenshots, writing reports.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod browser;
pub mod report;
mod server;
pub mod tenant;

pub use browser::{BrowserSettings, Capture, LaunchWatch, WarmBrowser};
pub use server::{DevServer, DevSettings};
pub use tenant::BrowserSandbox;
