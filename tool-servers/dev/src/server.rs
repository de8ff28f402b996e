//! The MCP server: the tools the model reads about, their parameters, and the calls.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, schemars, tool, tool_router};
use serde::Deserialize;
use valor_tool_notion::{Caller, NotionClient, NotionGrants};
use valor_tools::{Deliver, Delivery, Scope, ScopeSource, ToolError};

use crate::report::{self, headline, newest_screenshot, task_file_id, write_report};
use crate::{BrowserSettings, WarmBrowser};

/// Screenshots older than this are not retrieved unless asked for.
const DEFAULT_MAX_AGE_MINUTES: u64 = 10;
/// Console errors and failed requests named in the chat caption (the report has them all).
const CAPTION_ITEMS: usize = 3;

#[derive(Debug, Clone, Default)]
pub struct DevSettings {
    /// The page a bug report opens (empty: not configured).
    pub app_url: String,
    pub browser: BrowserSettings,
}

#[derive(Clone)]
pub struct DevServer {
    app_url: String,
    browser: Arc<WarmBrowser>,
    scopes: ScopeSource,
    notion: Option<(NotionClient, NotionGrants)>,
    deliver: Option<Deliver>,
    /// Asked before a comment goes to Notion (`[approvals] tool_effects`).
    people: valor_tools::approve::People,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ScreenshotParams {
    /// The task the screenshot belongs to (its file name starts with it), e.g. a Notion task id.
    pub task_id: String,
    /// The current conversation's chat id.
    pub chat_id: i64,
    /// Only screenshots newer than this many minutes (default 10).
    #[serde(default)]
    pub max_age_minutes: Option<u64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct BugReportParams {
    /// What is wrong, as the user described it.
    pub task_description: String,
    /// The Notion task to comment the report on; empty for none.
    #[serde(default)]
    pub notion_task_id: String,
    /// The current conversation's chat id.
    pub chat_id: i64,
}

type ToolResult = Result<String, String>;

#[tool_router(server_handler)]
impl DevServer {
    #[tool(
        description = "Find the newest screenshot of a task in this chat's workspace (saved by a bug report or a test run) and send it to the chat. Use it when the user asks to see what a task's page looks like now."
    )]
    async fn retrieve_workspace_screenshot(
        &self,
        Parameters(p): Parameters<ScreenshotParams>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let scope = self.scopes.resolve(&context, p.chat_id)?;
        Ok(self.retrieve(&scope, &p.task_id, p.max_age_minutes)?)
    }

    #[tool(
        description = "Investigate a bug in the app under development: opens the app in a headless browser, takes a full-page screenshot, collects console errors and failed network requests, writes a bug report (markdown + PNG) into the workspace, comments on the Notion task if one is given, and sends the screenshot with a summary to the chat. Use it when the user reports something broken in the app."
    )]
    async fn execute_bug_report_with_screenshot(
        &self,
        Parameters(p): Parameters<BugReportParams>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let scope = self.scopes.resolve(&context, p.chat_id)?;
        Ok(self
            .bug_report(&scope, &p.task_description, &p.notion_task_id)
            .await?)
    }
}

impl DevServer {
    /// The tools with their descriptions and schemas, as MCP clients list them.
    pub fn tools() -> Vec<rmcp::model::Tool> {
        Self::tool_router().list_all()
    }

    pub fn new(settings: DevSettings, scopes: ScopeSource) -> DevServer {
        let mut browser = settings.browser;
        // A sandboxed browser may load the app and nothing else.
        if browser.app_url.is_empty() {
            browser.app_url = settings.app_url.clone();
        }
        DevServer {
            app_url: settings.app_url,
            browser: Arc::new(WarmBrowser::new(browser)),
            scopes,
            notion: None,
            deliver: None,
            people: None,
        }
    }

    /// Comments bug reports on Notion tasks through `notion`, where `grants` let the chat.
    pub fn with_notion(mut self, notion: NotionClient, grants: NotionGrants) -> Self {
        self.notion = Some((notion, grants));
        self
    }

    /// Who sends screenshots to the chat.
    pub fn with_delivery(mut self, deliver: Deliver) -> Self {
        self.deliver = Some(deliver);
        self
    }

    /// Asks the chat's person before a report is commented on a Notion task.
    pub fn with_approvals(mut self, people: Arc<dyn valor_protocol::approval::AskPerson>) -> Self {
        self.people = Some(people);
        self
    }

    /// The browser the server keeps warm (its launch count, closing it on shutdown).
    pub fn browser(&self) -> &Arc<WarmBrowser> {
        &self.browser
    }

    fn send(&self, chat_id: i64, png: Vec<u8>, caption: String) -> bool {
        match &self.deliver {
            Some(deliver) => {
                deliver(Delivery {
                    chat_id,
                    png,
                    caption,
                });
                true
            }
            None => false,
        }
    }

    pub fn retrieve(
        &self,
        scope: &Scope,
        task_id: &str,
        max_age_minutes: Option<u64>,
    ) -> Result<String, ToolError> {
        let minutes = max_age_minutes.unwrap_or(DEFAULT_MAX_AGE_MINUTES).max(1);
        let found = newest_screenshot(
            scope,
            task_id,
            Duration::from_secs(minutes * 60),
            SystemTime::now(),
        )?;
        let Some(found) = found else {
            return Ok(format!(
                "No screenshot of task {} from the last {minutes} minutes in this workspace \
                 ({}/). A bug report makes one.",
                task_id.trim(),
                report::SCREENSHOTS_DIR
            ));
        };
        let kilobytes = (found.image.len() as u64).div_ceil(1024);
        let sent = self.send(
            scope.chat_id,
            found.image,
            format!("Screenshot of task {}", task_id.trim()),
        );
        let size = found
            .size
            .map(|(w, h)| format!(", {w}x{h} pixels"))
            .unwrap_or_default();
        Ok(format!(
            "Screenshot of task {}: {} ({} KB{size}, taken {} min ago){}",
            task_id.trim(),
            found.path.display(),
            kilobytes,
            found.age.as_secs() / 60,
            if sent { "; sent to the chat." } else { "." }
        ))
    }

    pub async fn bug_report(
        &self,
        scope: &Scope,
        task_description: &str,
        notion_task_id: &str,
    ) -> Result<String, ToolError> {
        if self.app_url.trim().is_empty() {
            return Err(ToolError::NotConfigured {
                setting: "[tools.dev] app_url",
            });
        }
        if task_description.trim().is_empty() {
            return Err(ToolError::Invalid(
                "describe the bug (task_description is empty)".to_owned(),
            ));
        }
        let task_id = match notion_task_id.trim() {
            "" => None,
            id => Some(task_file_id(id)?),
        };
        let capture = self.browser.capture(self.app_url.trim()).await?;
        let written = write_report(
            scope,
            task_description,
            task_id.as_deref(),
            &capture,
            SystemTime::now(),
        )?;
        let summary = format!(
            "Bug report: {} — {} console errors, {} failed requests on {}",
            headline(task_description),
            capture.console_errors.len(),
            capture.failed_requests.len(),
            capture.url
        );
        let mut caption = summary.clone();
        for line in capture
            .console_errors
            .iter()
            .chain(&capture.failed_requests)
            .take(CAPTION_ITEMS)
        {
            caption.push_str(&format!("\n• {line}"));
        }
        let sent = self.send(scope.chat_id, capture.png.clone(), caption);
        let notion = match (&task_id, &self.notion) {
            (None, _) => String::new(),
            (Some(id), Some((notion, grants))) => {
                // The operator's own stdio server comments anywhere; a chat where it may.
                let caller = if self.scopes.hosted || self.scopes.fixed.is_some() {
                    Caller::Chat(scope.chat_id)
                } else {
                    Caller::Operator
                };
                let mut allowed = grants.may_comment(caller, notion, id).await;
                if allowed.is_ok() {
                    let sentence = format!("Comments this bug report on Notion task {id}.");
                    allowed = valor_tools::approve::approve(
                        &self.people,
                        scope.chat_id,
                        "notion_comment",
                        written.markdown.clone(),
                        sentence,
                    )
                    .await;
                }
                match allowed {
                    Err(e) => format!("\nNo Notion comment on task {id}: {e}"),
                    Ok(()) => match notion.comment(id, &written.markdown).await {
                        Ok(()) => format!("\nCommented on Notion task {id}."),
                        Err(e) => format!("\nThe Notion comment on task {id} failed: {e}"),
                    },
                }
            }
            (Some(_), None) => "\nNo Notion comment: Notion is not set up here.".to_owned(),
        };
        Ok(format!(
            "{summary}.\nReport: {}\nScreenshot: {}{}{notion}\n\n{}",
            written.report.display(),
            written.screenshot.display(),
            if sent { " (sent to the chat)" } else { "" },
            written.markdown
        ))
    }
}
