//! The tool servers built from the config: their settings, the agent's stores behind them, and
//! hosting them for the agent's Claude Code turns (`valor run`).

use std::sync::Arc;
use std::time::Duration;

use valor_config::{Config, Secrets};
use valor_core::engine::{ToolGrant, ToolGrantFn};
use valor_memory::Memory;
use valor_protocol::approval::{ApprovalAsk, AskPerson, Decision};
use valor_store::{MemoryKind, MemoryRecord, Store};
use valor_tool_dev::{BrowserSettings, DevServer, DevSettings};
use valor_tool_memory::MemoryServer;
use valor_tool_notion::{NotionClient, NotionServer, NotionSettings};
use valor_tool_social::{LinkStore, SavedLink, SocialServer, SocialSettings};
use valor_tool_telegram::{History, HistoryLine, TelegramServer};
use valor_tools::fetch::FetchPolicy;
use valor_tools::host::{Grants, ToolHost, route_with};
use valor_tools::http::CallPolicy;
use valor_tools::{Deliver, Scope, ScopeSource};

/// The servers Valor has (the permission prompt's, `permissions`, besides: the CLI calls it,
/// the model is not given it).
pub const SERVERS: &[&str] = &["social", "telegram", "memory", "notion", "dev"];

/// Claude Code's tools that write files: with approvals they reach the permission tool, which
/// lets a write in the source tree run and asks about one elsewhere.
const WRITE_TOOLS: [&str; 4] = ["Write", "Edit", "MultiEdit", "NotebookEdit"];

/// Who is asked to allow an effect: the conversation service, set once it exists (the tools
/// are hosted before it is built); until then nobody, and the effect is denied.
#[derive(Clone, Default)]
pub struct People(Arc<std::sync::OnceLock<Arc<dyn AskPerson>>>);

impl People {
    pub fn set(&self, people: Arc<dyn AskPerson>) {
        let _ = self.0.set(people);
    }
}

impl AskPerson for People {
    fn ask(
        &self,
        ask: ApprovalAsk,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Decision> + Send + '_>> {
        match self.0.get() {
            Some(people) => people.ask(ask),
            None => Box::pin(async { Decision::Unattended }),
        }
    }
}

/// What the permission tool does, from `[claude] allowed_tools` and `[approvals]`.
pub fn permission_policy(config: &Config) -> valor_tool_permissions::PermissionPolicy {
    valor_tool_permissions::PermissionPolicy {
        allowed: config.claude.allowed_tools.clone(),
        ask: config.approvals.ask.clone(),
        ask_writes_outside: config.approvals.writes_outside_workspace,
    }
}

/// The tools that must reach the permission tool rather than run on the CLI's own rules.
fn gated_tools(config: &Config) -> Vec<String> {
    let mut gated: Vec<String> = (config.approvals.ask.iter())
        .map(|t| t.split('(').next().unwrap_or(t).to_owned())
        .collect();
    gated.extend(WRITE_TOOLS.map(str::to_owned));
    gated.sort();
    gated.dedup();
    gated
}

/// The social server's settings from the config and the environment's keys.
pub fn social_settings(config: &Config, secrets: &Secrets) -> SocialSettings {
    let tools = &config.tools;
    let key = |s: &Option<valor_config::Secret>| s.as_ref().map(|s| s.expose().to_owned());
    SocialSettings {
        perplexity_base_url: tools.perplexity.base_url.trim_end_matches('/').to_owned(),
        perplexity_key: key(&secrets.perplexity_api_key),
        perplexity_model: tools.perplexity.model.clone(),
        openai_base_url: tools.openai.base_url.trim_end_matches('/').to_owned(),
        openai_key: key(&secrets.openai_api_key),
        image_model: tools.openai.image_model.clone(),
        vision_model: tools.openai.vision_model.clone(),
        max_image_bytes: tools.openai.max_image_mb.saturating_mul(1024 * 1024),
        calls: call_policy(config),
        links: FetchPolicy {
            timeout: Duration::from_secs(tools.links.timeout_secs.max(1)),
            max_bytes: tools.links.max_kb.saturating_mul(1024),
            max_redirects: tools.links.max_redirects,
            allow_private: tools.links.allow_private,
            ..FetchPolicy::default()
        },
    }
}

/// How external APIs are called, from `[tools]`.
fn call_policy(config: &Config) -> CallPolicy {
    CallPolicy {
        timeout: Duration::from_secs(config.tools.timeout_secs.max(1)),
        retries: config.tools.retries,
        ..CallPolicy::default()
    }
}

/// The Notion client's settings from `[tools.notion]` and `NOTION_API_KEY`.
pub fn notion_settings(config: &Config, secrets: &Secrets) -> NotionSettings {
    let notion = &config.tools.notion;
    NotionSettings {
        base_url: notion.base_url.trim_end_matches('/').to_owned(),
        key: secrets
            .notion_api_key
            .as_ref()
            .map(|s| s.expose().to_owned()),
        version: notion.version.clone(),
        databases: notion
            .databases
            .iter()
            .map(|(name, id)| (name.to_lowercase(), id.clone()))
            .collect(),
        calls: call_policy(config),
    }
}

/// What each chat may do in Notion, from `[tools.notion.chats]` (database names resolved to
/// their ids in `[tools.notion] databases`).
pub fn notion_grants(config: &Config) -> valor_tool_notion::NotionGrants {
    let notion = &config.tools.notion;
    let by_chat = notion
        .chats
        .iter()
        .filter_map(|(chat, grant)| {
            let databases = grant
                .databases
                .iter()
                .filter_map(|name| {
                    let (title, id) = notion
                        .databases
                        .iter()
                        .find(|(known, _)| known.eq_ignore_ascii_case(name))?;
                    Some(valor_tool_notion::Database {
                        id: id.clone(),
                        title: title.clone(),
                    })
                })
                .collect();
            let grant = valor_tool_notion::Grant {
                databases,
                comment: grant.comment,
            };
            Some((chat.parse().ok()?, grant))
        })
        .collect();
    valor_tool_notion::NotionGrants::new(by_chat)
}

pub fn notion_server(
    config: &Config,
    secrets: &Secrets,
    scopes: ScopeSource,
) -> anyhow::Result<NotionServer> {
    Ok(NotionServer::new(
        NotionClient::new(notion_settings(config, secrets))?,
        notion_grants(config),
        scopes,
    ))
}

/// Each browser the dev tools launch is recorded like a Claude process group (on /health as a
/// child, in the store for the reaper) until it is closed.
fn browser_watch(agent: &crate::agent::Agent) -> valor_tool_dev::LaunchWatch {
    let (store, children) = (agent.ledger(), agent.children.clone());
    valor_tool_dev::LaunchWatch(Arc::new(move |pid| {
        Box::new(valor_claude::process::ProcessGroup::adopt_detached(
            pid,
            "chromium",
            None,
            &children,
            Some(&store),
        )) as Box<dyn std::any::Any + Send + Sync>
    }))
}

/// The dev server from `[tools.dev]`; bug reports comment on Notion tasks when Notion has a
/// key. Its one browser is shared by every session (clones share it).
pub fn dev_server(
    config: &Config,
    secrets: &Secrets,
    scopes: ScopeSource,
    on_launch: Option<valor_tool_dev::LaunchWatch>,
    sandbox: Option<Arc<valor_sandbox::Sandbox>>,
) -> anyhow::Result<DevServer> {
    let dev = &config.tools.dev;
    // As root, the browser runs as a user of its own, next to the chats' sandboxes' one.
    let run_as =
        valor_chatfs::ChatFs::sandbox_owner(true, config.claude.sandbox_uid).map(|owner| {
            valor_chatfs::Owner {
                uid: owner.uid + 1,
                gid: owner.gid + 1,
            }
        });
    let settings = DevSettings {
        app_url: dev.app_url.clone(),
        browser: BrowserSettings {
            executable: dev.chromium.clone(),
            page_timeout: Duration::from_secs(dev.page_timeout_secs.max(1)),
            viewport: (dev.viewport[0].max(100), dev.viewport[1].max(100)),
            on_launch,
            sandbox: sandbox.map(|sandbox| valor_tool_dev::BrowserSandbox { sandbox, run_as }),
            app_url: dev.app_url.clone(),
            ..BrowserSettings::default()
        },
    };
    let server = DevServer::new(settings, scopes);
    Ok(match secrets.notion_api_key {
        Some(_) => server.with_notion(
            NotionClient::new(notion_settings(config, secrets))?,
            notion_grants(config),
        ),
        None => server,
    })
}

/// Saved links go into the memory store as `link` memories.
pub struct StoreLinks(pub Store);

impl LinkStore for StoreLinks {
    fn save_link(&self, link: SavedLink) -> Result<u64, String> {
        let at_ms = valor_protocol::time::now_ms();
        self.0
            .save_memory(MemoryRecord {
                id: 0,
                kind: MemoryKind::Link,
                chat_id: Some(link.chat_id),
                at_ms,
                title: valor_redact::redact_owned(link.title),
                text: valor_redact::redact_owned(link.text),
                url: Some(link.url),
            })
            .map(|saved| saved.id)
            .map_err(|e| e.to_string())
    }
}

/// The social server for `config`, saving links into `store` when given.
pub fn social_server(
    config: &Config,
    secrets: &Secrets,
    scopes: ScopeSource,
    store: Option<Store>,
) -> anyhow::Result<SocialServer> {
    let server = SocialServer::new(social_settings(config, secrets), scopes)?;
    Ok(match store {
        Some(store) => server.with_links(Arc::new(StoreLinks(store))),
        None => server,
    })
}

/// The hosted servers' routes, and the browser to close when the agent stops (a browser left
/// running would outlive Valor).
pub struct Hosted {
    pub routes: axum::Router,
    pub browser: Arc<valor_tool_dev::WarmBrowser>,
}

/// Every turn's tool grant: its chat's MCP config for the hosted servers at `base_url`, with
/// a bearer token bound to that chat (kept in `grants`, which the routes check).
pub fn tool_grant(config: &Config, base_url: &str, grants: &Grants) -> ToolGrantFn {
    let chats = crate::agent::chat_folders(config);
    let notion = notion_grants(config);
    let (base_url, grants) = (base_url.to_owned(), grants.clone());
    let approvals = config.approvals.enabled;
    let gated = gated_tools(config);
    Arc::new(move |chat_id| {
        // Notion only for chats it is granted to: one operator key serves them all.
        let host = ToolHost {
            base_url: base_url.clone(),
            servers: SERVERS
                .iter()
                .filter(|s| **s != "notion" || notion.has(chat_id))
                .map(|s| (*s).to_owned())
                .collect(),
            grants: grants.clone(),
        };
        let allowed_tools = host.allowed_tools();
        let mut host = host;
        if approvals {
            host.servers.push(valor_tool_permissions::SERVER.to_owned());
        }
        let scope = Scope::of(&chats, chat_id);
        ToolGrant {
            mcp_config: host.mcp_config(scope),
            allowed_tools,
            permission_tool: approvals.then(|| valor_tool_permissions::PROMPT_TOOL.to_owned()),
            gated_tools: if approvals { gated.clone() } else { Vec::new() },
        }
    })
}

/// Hosts the tool servers on the agent's HTTP server (`/mcp/<name>`), each request checked
/// against the tokens [`tool_grant`] handed out.
pub fn host_tools(
    config: &Config,
    secrets: &Secrets,
    agent: &crate::agent::Agent,
    grants: &Grants,
    deliver: Option<Deliver>,
    people: &People,
) -> anyhow::Result<Hosted> {
    let scopes = ScopeSource {
        chats: crate::agent::chat_folders(config),
        fixed: None,
        hosted: true,
    };
    let mut social = social_server(config, secrets, scopes.clone(), Some(agent.store.clone()))?
        .with_user_links(user_links(agent.memory.clone()));
    let mut dev = dev_server(
        config,
        secrets,
        scopes.clone(),
        Some(browser_watch(agent)),
        agent.helper_sandbox(),
    )?;
    if let Some(deliver) = deliver {
        social = social.with_delivery(deliver.clone());
        dev = dev.with_delivery(deliver);
    }
    if config.approvals.enabled && config.approvals.tool_effects {
        social = social.with_approvals(Arc::new(people.clone()));
        dev = dev.with_approvals(Arc::new(people.clone()));
    }
    let browser = Arc::clone(dev.browser());
    let telegram = telegram_server(agent.memory.clone(), scopes.clone());
    let notion = notion_server(config, secrets, scopes.clone())?;
    let memory = memory_server(agent.memory.clone(), scopes.clone());
    let permissions = valor_tool_permissions::PermissionServer::new(
        permission_policy(config),
        Arc::new(people.clone()),
        scopes,
    );
    // Each live Claude process (running or warm) holds one session per server; four times
    // their most leaves room for a process that has not called a tool in a while.
    let live = (4 * (config.claude.max_concurrent + config.claude.max_warm)).max(16);
    let routes = route_with("social", move || social.clone(), grants.clone(), live)
        .merge(route_with(
            "telegram",
            move || telegram.clone(),
            grants.clone(),
            live,
        ))
        .merge(route_with(
            "memory",
            move || memory.clone(),
            grants.clone(),
            live,
        ))
        .merge(route_with(
            "notion",
            move || notion.clone(),
            grants.clone(),
            live,
        ))
        .merge(route_with("dev", move || dev.clone(), grants.clone(), live))
        .merge(route_with(
            valor_tool_permissions::SERVER,
            move || permissions.clone(),
            grants.clone(),
            live,
        ));
    Ok(Hosted { routes, browser })
}

/// Whether the user sent a text containing `url` in the chat in the last day (their own
/// messages, not Valor's).
fn user_links(memory: Memory) -> valor_tool_social::UserSent {
    Arc::new(move |chat_id, url| {
        let memory = memory.clone();
        Box::pin(async move {
            let since = valor_protocol::time::now_ms().saturating_sub(86_400_000);
            match memory.chat_since(chat_id, since, 200).await {
                Ok(lines) => lines.iter().any(|line| {
                    !matches!(line.who.as_str(), "Valor" | "system") && line.text.contains(&url)
                }),
                Err(e) => {
                    tracing::warn!(chat_id, error = %e, "cannot read the chat to check a link");
                    false
                }
            }
        })
    })
}

/// A chat's history from the agent's memory (the telegram server's `History`).
pub struct MemoryHistory(pub Memory);

fn line(line: valor_memory::history::ChatLine) -> HistoryLine {
    HistoryLine {
        at_ms: line.at_ms,
        who: line.who,
        text: line.text,
        score: line.score,
    }
}

#[async_trait::async_trait]
impl History for MemoryHistory {
    async fn search(
        &self,
        chat_id: i64,
        query: &str,
        limit: usize,
    ) -> Result<Vec<HistoryLine>, String> {
        let lines = (self.0.chat_search(chat_id, query, limit).await).map_err(|e| e.to_string())?;
        Ok(lines.into_iter().map(line).collect())
    }

    async fn since(
        &self,
        chat_id: i64,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<HistoryLine>, String> {
        let lines =
            (self.0.chat_since(chat_id, since_ms, limit).await).map_err(|e| e.to_string())?;
        Ok(lines.into_iter().map(line).collect())
    }
}

/// The telegram server over the agent's memory.
pub fn telegram_server(memory: Memory, scopes: ScopeSource) -> TelegramServer {
    TelegramServer::new(Arc::new(MemoryHistory(memory)), scopes)
}

/// The memory server over the agent's memory.
pub fn memory_server(memory: Memory, scopes: ScopeSource) -> MemoryServer {
    MemoryServer::new(Arc::new(memory), scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_granted_chat_gets_notion() {
        let mut config = Config::default();
        config
            .tools
            .notion
            .databases
            .insert("Valor".to_owned(), "db-1".to_owned());
        config.tools.notion.chats.insert(
            "5".to_owned(),
            valor_config::NotionGrant {
                databases: vec!["valor".to_owned()],
                comment: false,
            },
        );
        let grant = tool_grant(&config, "http://127.0.0.1:1", &Grants::default());
        let servers = |chat: i64| {
            let config = grant(chat).mcp_config;
            let names: Vec<String> = config["mcpServers"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            (names, grant(chat).allowed_tools)
        };
        let (granted, allowed) = servers(5);
        assert!(granted.contains(&"notion".to_owned()), "{granted:?}");
        assert!(allowed.contains(&"mcp__notion".to_owned()));
        let (other, allowed) = servers(6);
        assert!(!other.contains(&"notion".to_owned()), "{other:?}");
        assert!(!allowed.contains(&"mcp__notion".to_owned()));
        assert!(other.contains(&"memory".to_owned()));
        let grants = notion_grants(&config);
        assert!(grants.has(5) && !grants.has(6));
    }
}
