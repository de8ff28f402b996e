//! The MCP server: the tool description the model reads, its parameters, and the call.

use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use valor_tools::{ScopeSource, ToolError};

use crate::client::NotionClient;
use crate::grants::{Caller, NotionGrants};
use crate::task::{TaskFilter, render_tasks};

#[derive(Clone)]
pub struct NotionServer {
    client: NotionClient,
    /// Today as `YYYY-MM-DD` (tests fix it).
    today: Arc<dyn Fn() -> String + Send + Sync>,
    grants: NotionGrants,
    scopes: ScopeSource,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ProjectParams {
    /// The project or workspace name, e.g. "valor" (its task database in Notion).
    pub workspace: String,
    /// What the user wants to know, e.g. "what is blocked?", "what is overdue?", "what is
    /// Ada working on?"; the tasks it names by status, person or lateness are picked out.
    pub question: String,
}

#[tool_router(server_handler)]
impl NotionServer {
    #[tool(
        description = "Look up a project's tasks in Notion: status, assignee, due date and link of each. Use it for questions about project work — what is in progress, blocked or overdue, who works on what, what is due soon."
    )]
    async fn query_notion_projects(
        &self,
        Parameters(p): Parameters<ProjectParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<String, String> {
        let caller = match self.scopes.caller(&context)? {
            Some(scope) => Caller::Chat(scope.chat_id),
            None => Caller::Operator,
        };
        Ok(self.projects(caller, &p.workspace, &p.question).await?)
    }
}

impl NotionServer {
    /// The tools with their descriptions and schemas, as MCP clients list them.
    pub fn tools() -> Vec<rmcp::model::Tool> {
        Self::tool_router().list_all()
    }

    /// `grants` say what each chat may read; `scopes` which chat a call comes from.
    pub fn new(client: NotionClient, grants: NotionGrants, scopes: ScopeSource) -> NotionServer {
        NotionServer {
            client,
            today: Arc::new(today),
            grants,
            scopes,
        }
    }

    /// Reads today's date from `today` instead of the system clock.
    pub fn with_today(mut self, today: Arc<dyn Fn() -> String + Send + Sync>) -> Self {
        self.today = today;
        self
    }

    pub async fn projects(
        &self,
        caller: Caller,
        workspace: &str,
        question: &str,
    ) -> Result<String, ToolError> {
        if workspace.trim().is_empty() {
            return Err(ToolError::Invalid(
                "name the workspace (project) to look up".to_owned(),
            ));
        }
        let database = match self.grants.readable(caller, workspace)? {
            Some(database) => database,
            None => self.client.database_for(workspace).await?,
        };
        let tasks = self.client.tasks(&database).await?;
        let filter = TaskFilter::from_question(question, &tasks);
        Ok(render_tasks(
            &database.title,
            &tasks,
            &filter,
            &(self.today)(),
        ))
    }
}

/// Today (UTC) as `YYYY-MM-DD`.
fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}
