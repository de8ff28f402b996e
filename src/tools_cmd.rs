//! The MCP tool servers: built from the config for the agent to host (`valor run`), listed
//! (`valor tools list`), or served alone over stdio (`valor tools serve <name>`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use rmcp::ServiceExt;
use serde_json::{Value, json};
use valor_config::{Config, ConfigSource, Secrets};
use valor_core::engine::ToolGrant;
use valor_memory::{MemoryKind, MemoryRecord, Store};
use valor_tool_social::{LinkStore, SavedLink, SocialServer, SocialSettings};
use valor_tools::fetch::FetchPolicy;
use valor_tools::host::{Grants, ToolHost, route};
use valor_tools::http::CallPolicy;
use valor_tools::{Scope, ScopeSource};

/// The servers Valor has.
pub const SERVERS: &[&str] = &["social"];

#[derive(Debug, Args)]
pub struct ToolsArgs {
    #[command(subcommand)]
    command: ToolsCommand,
}

#[derive(Debug, Subcommand)]
enum ToolsCommand {
    /// Print every tool of every server, with its description and input schema.
    List {
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Serve one server over stdio (MCP), for any MCP client.
    Serve {
        /// The server: social.
        name: String,
        /// Bind every call to this chat (other chat ids are refused); without it a call's own
        /// chat id picks the workspace.
        #[arg(long)]
        chat: Option<i64>,
    },
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
        calls: CallPolicy {
            timeout: Duration::from_secs(tools.timeout_secs.max(1)),
            retries: tools.retries,
            ..CallPolicy::default()
        },
        links: FetchPolicy {
            timeout: Duration::from_secs(tools.links.timeout_secs.max(1)),
            max_bytes: tools.links.max_kb.saturating_mul(1024),
            max_redirects: tools.links.max_redirects,
            allow_private: tools.links.allow_private,
            ..FetchPolicy::default()
        },
    }
}

/// Saved links go into the memory store as `link` memories.
pub struct StoreLinks(pub Store);

impl LinkStore for StoreLinks {
    fn save_link(&self, link: SavedLink) -> Result<u64, String> {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.0
            .save_memory(MemoryRecord {
                id: 0,
                kind: MemoryKind::Link,
                chat_id: Some(link.chat_id),
                at_ms,
                title: link.title,
                text: link.text,
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

/// Hosts the tool servers on the agent's HTTP server (`/mcp/<name>`, bearer tokens bound to one
/// chat) and gives every turn its chat's MCP config.
pub fn host_tools(
    config: &Config,
    secrets: &Secrets,
    agent: &crate::agent::Agent,
    base_url: &str,
) -> anyhow::Result<axum::Router> {
    let grants = Grants::default();
    let workspaces_dir = config.claude.workspaces_dir.clone();
    let scopes = ScopeSource {
        workspaces_dir: workspaces_dir.clone(),
        fixed: None,
    };
    let social = social_server(config, secrets, scopes, Some(agent.store.clone()))?;
    let routes = route("social", move || social.clone(), grants.clone());
    let host = ToolHost {
        base_url: base_url.to_owned(),
        servers: SERVERS.iter().map(|s| (*s).to_owned()).collect(),
        grants,
    };
    agent.engine.tools_from(Arc::new(move |chat_id| {
        let scope = Scope::for_chat(&workspaces_dir, chat_id);
        ToolGrant {
            mcp_config: host.mcp_config(scope),
            allowed_tools: host.allowed_tools(),
        }
    }));
    Ok(routes)
}

pub async fn tools(config_path: Option<PathBuf>, args: ToolsArgs) -> ExitCode {
    let loaded = match ConfigSource::from_process(config_path).load() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match args.command {
        ToolsCommand::List { json } => list(json),
        ToolsCommand::Serve { name, chat } => {
            serve(&loaded.config, &loaded.secrets, &name, chat).await
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn catalogue() -> Vec<(&'static str, Vec<rmcp::model::Tool>)> {
    vec![("social", SocialServer::tools())]
}

fn list(as_json: bool) -> anyhow::Result<()> {
    let catalogue = catalogue();
    let mut out = String::new();
    if as_json {
        let servers: Vec<Value> = catalogue
            .iter()
            .map(|(name, tools)| json!({"server": name, "tools": tools}))
            .collect();
        out = serde_json::to_string_pretty(&servers)? + "\n";
    } else {
        for (server, tools) in catalogue {
            out.push_str(&format!("{server}\n"));
            for tool in tools {
                out.push_str(&format!("  {}\n", tool.name));
                if let Some(description) = &tool.description {
                    out.push_str(&format!("    {description}\n"));
                }
                let schema = serde_json::to_value(tool.input_schema.as_ref())?;
                let required: Vec<&str> = schema["required"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                    let kind = property["type"].as_str().unwrap_or("any");
                    let optional = if required.contains(&name.as_str()) {
                        ""
                    } else {
                        ", optional"
                    };
                    let about = property["description"].as_str().unwrap_or_default();
                    out.push_str(&format!("    - {name} ({kind}{optional}): {about}\n"));
                }
            }
        }
    }
    // A closed pipe (`valor tools list | head`) is not an error.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

async fn serve(
    config: &Config,
    secrets: &Secrets,
    name: &str,
    chat: Option<i64>,
) -> anyhow::Result<()> {
    let workspaces_dir = config.claude.workspaces_dir.clone();
    let scopes = ScopeSource {
        fixed: chat.map(|id| Scope::for_chat(&workspaces_dir, id)),
        workspaces_dir,
    };
    match name {
        "social" => {
            // sled allows one process per store: with the agent running, links cannot be kept
            // from here (the agent's own hosted server keeps them).
            let store = match Store::open(&config.memory.path) {
                Ok(store) => Some(store),
                Err(e) => {
                    tracing::warn!(error = %e, "memory store unavailable: save_link will not keep links");
                    None
                }
            };
            let server = social_server(config, secrets, scopes, store)?;
            let running = server.serve(rmcp::transport::stdio()).await?;
            running.waiting().await?;
            Ok(())
        }
        other => anyhow::bail!(
            "there is no tool server called {other:?}; the servers are: {}",
            SERVERS.join(", ")
        ),
    }
}
