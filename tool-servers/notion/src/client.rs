//! The Notion API calls Valor makes: search, database query, comment.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use valor_tools::ToolError;
use valor_tools::http::{ApiClient, CallPolicy};

use crate::task::Task;

/// Pages of a database query read at most (100 tasks each).
const MAX_PAGES: usize = 5;

#[derive(Debug, Clone)]
pub struct NotionSettings {
    pub base_url: String,
    pub key: Option<String>,
    /// The `Notion-Version` header.
    pub version: String,
    /// Workspace name (lower case) -> database id.
    pub databases: BTreeMap<String, String>,
    pub calls: CallPolicy,
}

impl Default for NotionSettings {
    fn default() -> Self {
        NotionSettings {
            base_url: "https://api.notion.com".to_owned(),
            key: None,
            version: "2022-06-28".to_owned(),
            databases: BTreeMap::new(),
            calls: CallPolicy::default(),
        }
    }
}

/// A task database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub id: String,
    pub title: String,
}

#[derive(Debug, Clone)]
pub struct NotionClient {
    settings: NotionSettings,
    api: ApiClient,
}

impl NotionClient {
    pub fn new(settings: NotionSettings) -> Result<NotionClient, ToolError> {
        Ok(NotionClient {
            api: ApiClient::new("Notion", settings.calls.clone())?,
            settings,
        })
    }

    fn key(&self) -> Result<&str, ToolError> {
        self.settings
            .key
            .as_deref()
            .ok_or(ToolError::NotConfigured {
                setting: "NOTION_API_KEY",
            })
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, ToolError> {
        let key = self.key()?.to_owned();
        let url = format!("{}{path}", self.settings.base_url.trim_end_matches('/'));
        let version = self.settings.version.clone();
        self.api
            .send_json(|c| {
                c.post(&url)
                    .bearer_auth(&key)
                    .header("Notion-Version", &version)
                    .json(&body)
            })
            .await
    }

    /// The workspace's task database: the configured one, else the best title match among the
    /// databases shared with the integration.
    pub async fn database_for(&self, workspace: &str) -> Result<Database, ToolError> {
        self.key()?;
        let wanted = workspace.trim().to_lowercase();
        if let Some(id) = self.settings.databases.get(&wanted) {
            return Ok(Database {
                id: id.clone(),
                title: workspace.trim().to_owned(),
            });
        }
        let found = self
            .post(
                "/v1/search",
                json!({
                    "query": workspace.trim(),
                    "filter": {"property": "object", "value": "database"},
                    "page_size": 20,
                }),
            )
            .await?;
        let databases: Vec<Database> = found["results"]
            .as_array()
            .ok_or_else(|| ToolError::Malformed {
                service: "Notion",
                reason: "the search answer has no results list".to_owned(),
            })?
            .iter()
            .filter(|r| r["object"] == "database")
            .filter_map(|r| {
                Some(Database {
                    id: r["id"].as_str()?.to_owned(),
                    title: plain_text(&r["title"]),
                })
            })
            .collect();
        let best = databases
            .iter()
            .find(|d| d.title.to_lowercase() == wanted)
            .or_else(|| {
                databases
                    .iter()
                    .find(|d| d.title.to_lowercase().contains(&wanted))
            })
            .or_else(|| databases.first());
        best.cloned().ok_or_else(|| {
            ToolError::Invalid(format!(
                "no Notion database matches {workspace:?}: share the workspace's task database \
                 with the integration, or name it in [tools.notion] databases"
            ))
        })
    }

    /// Every task of a database (up to 500), in Notion's order.
    pub async fn tasks(&self, database: &Database) -> Result<Vec<Task>, ToolError> {
        let mut tasks = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut body = json!({"page_size": 100});
            if let Some(cursor) = &cursor {
                body["start_cursor"] = json!(cursor);
            }
            let page = self
                .post(&format!("/v1/databases/{}/query", database.id), body)
                .await?;
            let results = page["results"]
                .as_array()
                .ok_or_else(|| ToolError::Malformed {
                    service: "Notion",
                    reason: "the query answer has no results list".to_owned(),
                })?;
            tasks.extend(results.iter().filter_map(Task::from_page));
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if page["has_more"] != json!(true) || cursor.is_none() {
                break;
            }
        }
        Ok(tasks)
    }

    /// The database a page (a task) belongs to, if it belongs to one.
    pub async fn page_database(&self, page_id: &str) -> Result<Option<String>, ToolError> {
        let id = page_id.trim();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(ToolError::Invalid(format!(
                "{page_id:?} is not a Notion page id"
            )));
        }
        let key = self.key()?.to_owned();
        let url = format!(
            "{}/v1/pages/{id}",
            self.settings.base_url.trim_end_matches('/')
        );
        let version = self.settings.version.clone();
        let page = self
            .api
            .send_json(|c| {
                c.get(&url)
                    .bearer_auth(&key)
                    .header("Notion-Version", &version)
            })
            .await?;
        Ok(page["parent"]["database_id"].as_str().map(str::to_owned))
    }

    /// Adds a comment to a task (a page).
    pub async fn comment(&self, page_id: &str, text: &str) -> Result<(), ToolError> {
        // Notion caps one rich-text item at 2000 characters.
        let chunks: Vec<Value> = text
            .chars()
            .collect::<Vec<char>>()
            .chunks(2000)
            .map(|c| json!({"type": "text", "text": {"content": c.iter().collect::<String>()}}))
            .collect();
        self.post(
            "/v1/comments",
            json!({"parent": {"page_id": page_id}, "rich_text": chunks}),
        )
        .await?;
        Ok(())
    }
}

/// The text of a rich-text array.
pub(crate) fn plain_text(rich: &Value) -> String {
    rich.as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["plain_text"].as_str())
        .collect::<String>()
        .trim()
        .to_owned()
}
