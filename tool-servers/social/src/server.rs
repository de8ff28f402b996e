//! The MCP server: tool descriptions the model reads, parameters with schemas, and the calls.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use valor_tools::fetch::fetch_page;
use valor_tools::http::ApiClient;
use valor_tools::{Deliver, Delivery, Scope, ScopeSource, ToolError};

use crate::image::{ImageKind, check_image};
use crate::{SocialSettings, extract};

/// Whether the user themselves sent `text` in a chat lately (the agent reads the chat's own
/// messages): a page becomes memory only when the user shared it, never because a page, a file
/// or a tool result asked the model to save it.
pub type UserSent = Arc<
    dyn Fn(i64, String) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
        + Send
        + Sync,
>;

/// Where saved links go (the agent's memory store).
pub trait LinkStore: Send + Sync {
    /// Saves a link for a chat and returns its memory id.
    fn save_link(&self, link: SavedLink) -> Result<u64, String>;
}

#[derive(Debug, Clone)]
pub struct SavedLink {
    pub chat_id: i64,
    pub url: String,
    pub title: String,
    pub text: String,
}

#[derive(Clone)]
pub struct SocialServer {
    settings: Arc<SocialSettings>,
    scopes: ScopeSource,
    links: Option<Arc<dyn LinkStore>>,
    deliver: Option<Deliver>,
    /// Asked before a paid image is made (`[approvals] tool_effects`).
    people: valor_tools::approve::People,
    /// Checks that a link to save is one the user sent (hosted: always set).
    user_sent: Option<UserSent>,
    perplexity: ApiClient,
    openai: ApiClient,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SearchParams {
    /// The question, in full sentences, as a person would ask a search engine.
    pub query: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ImageParams {
    /// What the picture should show: subject, style, composition.
    pub prompt: String,
    /// The chat the image is for (the current conversation's chat id).
    pub chat_id: i64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AnalyzeParams {
    /// The image's path in the chat's workspace, as given with the user's message.
    pub image_path: String,
    /// What to find out about the image.
    pub question: String,
    /// The current conversation's chat id.
    pub chat_id: i64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LinkParams {
    /// The http or https address the user shared.
    pub url: String,
    /// The current conversation's chat id.
    pub chat_id: i64,
}

type ToolResult = Result<String, String>;

#[tool_router(server_handler)]
impl SocialServer {
    #[tool(
        description = "Search the web for current information: news, prices, releases, anything that may have changed after your training. Answers with a summary and its sources. Use it instead of guessing about recent events."
    )]
    async fn search_current_info(&self, Parameters(p): Parameters<SearchParams>) -> ToolResult {
        Ok(self.search(&p.query).await?)
    }

    #[tool(
        description = "Create an image from a text description (OpenAI images). The picture is saved in the chat's workspace and sent to the chat as a photo; answers with its path. Use it when the user asks for a picture, drawing, logo or illustration."
    )]
    async fn create_image(
        &self,
        Parameters(p): Parameters<ImageParams>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let scope = self.scopes.resolve(&context, p.chat_id)?;
        let sentence = format!(
            "Creates an image with OpenAI ({}) from this description; each image costs money.",
            self.settings.image_model
        );
        valor_tools::approve::approve(
            &self.people,
            scope.chat_id,
            "create_image",
            p.prompt.clone(),
            sentence,
        )
        .await?;
        Ok(self.image(&p.prompt, &scope).await?)
    }

    #[tool(
        description = "Look at an image the user shared in this chat and answer a question about it (OpenAI vision): describe it, read text or error messages in a screenshot, compare details. The path must be inside the chat's workspace."
    )]
    async fn analyze_shared_image(
        &self,
        Parameters(p): Parameters<AnalyzeParams>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let scope = self.scopes.resolve(&context, p.chat_id)?;
        Ok(self.analyze(&p.image_path, &p.question, &scope).await?)
    }

    #[tool(
        description = "Save a web link the user shared: fetches the page, keeps its title, description and main text in long-term memory (searchable later), and answers with a short analysis. Use it when the user shares a link to keep or asks what a page says."
    )]
    async fn save_link(
        &self,
        Parameters(p): Parameters<LinkParams>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let scope = self.scopes.resolve(&context, p.chat_id)?;
        if let Some(user_sent) = &self.user_sent
            && !user_sent(scope.chat_id, p.url.trim().trim_end_matches('/').to_owned()).await
        {
            tracing::warn!(chat_id = scope.chat_id, url = %p.url, "save_link refused: the user did not send this link");
            return Err(format!(
                "{} is not a link the user sent in this chat: only links the user shares are saved to memory. Tell the user what you found instead.",
                p.url
            ));
        }
        Ok(self.link(&p.url, &scope).await?)
    }
}

impl SocialServer {
    /// The tools with their descriptions and schemas, as MCP clients list them.
    pub fn tools() -> Vec<rmcp::model::Tool> {
        Self::tool_router().list_all()
    }

    pub fn new(settings: SocialSettings, scopes: ScopeSource) -> Result<SocialServer, ToolError> {
        Ok(SocialServer {
            perplexity: ApiClient::new("Perplexity", settings.calls.clone())?,
            openai: ApiClient::new("OpenAI", settings.calls.clone())?,
            settings: Arc::new(settings),
            scopes,
            links: None,
            deliver: None,
            people: None,
            user_sent: None,
        })
    }

    /// Where `save_link` keeps pages.
    pub fn with_links(mut self, links: Arc<dyn LinkStore>) -> Self {
        self.links = Some(links);
        self
    }

    /// Who sends created images to the chat.
    pub fn with_delivery(mut self, deliver: Deliver) -> Self {
        self.deliver = Some(deliver);
        self
    }

    /// Saves only links the user sent in the chat (`user_sent` reads their messages).
    pub fn with_user_links(mut self, user_sent: UserSent) -> Self {
        self.user_sent = Some(user_sent);
        self
    }

    /// Asks the chat's person before an image is made (it costs money).
    pub fn with_approvals(mut self, people: Arc<dyn valor_protocol::approval::AskPerson>) -> Self {
        self.people = Some(people);
        self
    }

    pub async fn search(&self, query: &str) -> Result<String, ToolError> {
        let key = self
            .settings
            .perplexity_key
            .clone()
            .ok_or(ToolError::NotConfigured {
                setting: "PERPLEXITY_API_KEY",
            })?;
        if query.trim().is_empty() {
            return Err(ToolError::Invalid("the query is empty".to_owned()));
        }
        let url = format!("{}/chat/completions", self.settings.perplexity_base_url);
        let body = json!({
            "model": self.settings.perplexity_model,
            "messages": [
                {"role": "system", "content": "Answer precisely and concisely, with dates."},
                {"role": "user", "content": query},
            ],
        });
        let answer = self
            .perplexity
            .send_json(|c| c.post(&url).bearer_auth(&key).json(&body))
            .await?;
        let text = message_content(&answer, "Perplexity")?;
        let sources: Vec<&str> = answer
            .get("citations")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .or_else(|| {
                answer
                    .get("search_results")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|r| r.get("url").and_then(Value::as_str))
                            .collect()
                    })
            })
            .unwrap_or_default();
        let mut out = text;
        if !sources.is_empty() {
            out.push_str("\n\nSources:");
            for (i, source) in sources.iter().enumerate() {
                out.push_str(&format!("\n[{}] {source}", i + 1));
            }
        }
        Ok(out)
    }

    pub async fn image(&self, prompt: &str, scope: &Scope) -> Result<String, ToolError> {
        let key = self.openai_key()?;
        if prompt.trim().is_empty() {
            return Err(ToolError::Invalid("the prompt is empty".to_owned()));
        }
        let url = format!("{}/images/generations", self.settings.openai_base_url);
        let body = json!({
            "model": self.settings.image_model,
            "prompt": prompt,
            "n": 1,
            "size": "1024x1024",
        });
        let answer = self
            .openai
            .send_json(|c| c.post(&url).bearer_auth(&key).json(&body))
            .await?;
        let encoded = answer
            .pointer("/data/0/b64_json")
            .and_then(Value::as_str)
            .ok_or_else(|| ToolError::Malformed {
                service: "OpenAI",
                reason: "no image in the answer (data[0].b64_json)".to_owned(),
            })?;
        let png = BASE64
            .decode(encoded.trim())
            .map_err(|e| ToolError::Encoding(format!("the image is not valid base64: {e}")))?;
        if ImageKind::sniff(&png) != Some(ImageKind::Png) {
            return Err(ToolError::Encoding("the image is not a PNG".to_owned()));
        }
        let millis = valor_protocol::time::now_ms();
        let path = scope.write_new(&format!("images/image-{millis}.png"), &png)?;
        let caption: String = prompt.chars().take(200).collect();
        let size = png.len();
        if let Some(deliver) = &self.deliver {
            deliver(Delivery {
                chat_id: scope.chat_id,
                png,
                caption,
            });
        }
        Ok(format!(
            "Image created and sent to the chat as a photo ({} KB): {}",
            size / 1024,
            path.display()
        ))
    }

    pub async fn analyze(
        &self,
        image_path: &str,
        question: &str,
        scope: &Scope,
    ) -> Result<String, ToolError> {
        // The file is checked before the key: a bad path is the caller's to fix either way.
        let (path, bytes) = scope.read_file(image_path, self.settings.max_image_bytes)?;
        let (kind, bytes) = check_image(&path, bytes)?;
        let key = self.openai_key()?;
        let question = if question.trim().is_empty() {
            "Describe this image."
        } else {
            question
        };
        let data_url = format!("data:{};base64,{}", kind.mime(), BASE64.encode(&bytes));
        let url = format!("{}/chat/completions", self.settings.openai_base_url);
        let body = json!({
            "model": self.settings.vision_model,
            "messages": [{
                "role": "user",
                "content": [
                    {"type": "text", "text": question},
                    {"type": "image_url", "image_url": {"url": data_url}},
                ],
            }],
        });
        let answer = self
            .openai
            .send_json(|c| c.post(&url).bearer_auth(&key).json(&body))
            .await?;
        message_content(&answer, "OpenAI")
    }

    pub async fn link(&self, url: &str, scope: &Scope) -> Result<String, ToolError> {
        let page = fetch_page(url, &self.settings.links).await?;
        let found = extract(&page.body, &page.content_type);
        let title = if found.title.is_empty() {
            page.url.to_string()
        } else {
            found.title.clone()
        };
        let mut text = String::new();
        if !found.description.is_empty() {
            text.push_str(&found.description);
            text.push_str("\n\n");
        }
        text.push_str(&found.text);
        let saved = match &self.links {
            Some(store) => Some(
                store
                    .save_link(SavedLink {
                        chat_id: scope.chat_id,
                        url: page.url.to_string(),
                        title: title.clone(),
                        text: text.clone(),
                    })
                    .map_err(|e| ToolError::Io(format!("cannot save the link: {e}")))?,
            ),
            None => None,
        };
        let words = found.text.split_whitespace().count();
        let mut out = format!("Title: {title}\nURL: {}\n", page.url);
        if !found.description.is_empty() {
            out.push_str(&format!("Description: {}\n", found.description));
        }
        out.push_str(&format!(
            "Length: about {words} words ({} min read){}\n",
            words.div_ceil(230).max(1),
            if page.truncated {
                ", page cut at the size limit"
            } else {
                ""
            }
        ));
        match saved {
            Some(id) => out.push_str(&format!("Saved to memory as #{id}.\n")),
            None => out.push_str("Not saved: this server has no memory store.\n"),
        }
        let opening: String = found.text.chars().take(600).collect();
        if !opening.is_empty() {
            out.push_str(&format!("Opening: {opening}"));
        }
        Ok(out)
    }

    fn openai_key(&self) -> Result<String, ToolError> {
        self.settings
            .openai_key
            .clone()
            .ok_or(ToolError::NotConfigured {
                setting: "OPENAI_API_KEY",
            })
    }
}

/// `choices[0].message.content` of a chat-completions answer.
fn message_content(answer: &Value, service: &'static str) -> Result<String, ToolError> {
    answer
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ToolError::Malformed {
            service,
            reason: "no choices[0].message.content".to_owned(),
        })
}
