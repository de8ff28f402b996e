//! The MCP tool servers: built from the config for the agent to host (`valor run`), listed
//! (`valor tools list`), or served alone over stdio (`valor tools serve <name>`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use rmcp::ServiceExt;
use serde_json::{Value, json};
use valor_config::{Config, Secrets};
use valor_memory::{Memory, MemorySettings};
use valor_store::{Store, StoreError};
use valor_tool_dev::DevServer;
use valor_tool_memory::MemoryServer;
use valor_tool_notion::NotionServer;
use valor_tool_social::SocialServer;
use valor_tool_telegram::TelegramServer;
use valor_tools::{Scope, ScopeSource};

use crate::tool_servers::{
    SERVERS, dev_server, memory_server, notion_server, social_server, telegram_server,
};

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
        /// The server: social, telegram, memory, notion or dev.
        name: String,
        /// Bind every call to this chat (other chat ids are refused); without it a call's own
        /// chat id picks the workspace.
        #[arg(long)]
        chat: Option<i64>,
    },
}

pub async fn tools(config_path: Option<PathBuf>, args: ToolsArgs) -> ExitCode {
    let loaded = match crate::config_cmd::load(config_path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
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
    vec![
        ("social", SocialServer::tools()),
        ("telegram", TelegramServer::tools()),
        ("memory", MemoryServer::tools()),
        ("notion", NotionServer::tools()),
        ("dev", DevServer::tools()),
    ]
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
    let chats = crate::agent::chat_folders(config);
    let scopes = ScopeSource {
        fixed: chat.map(|id| Scope::of(&chats, id)),
        chats,
        hosted: false,
    };
    match name {
        "social" => {
            // sled allows one process per store: with the agent running, links cannot be kept
            // from here (the agent's own hosted server keeps them).
            let store = match Store::open(&config.store.path) {
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
        "telegram" | "memory" => {
            let store = Store::open(&config.store.path).map_err(|e| match e {
                StoreError::Locked { .. } => anyhow::anyhow!(
                    "the memory store is in use by a running Valor; it serves these tools itself \
                     (at /mcp/{name} on its health port, for its own Claude Code turns)"
                ),
                other => other.into(),
            })?;
            let home = std::env::var("HOME").ok();
            let settings = MemorySettings::beside(
                &config.store.path,
                config.memory.resolved_model_dir(home.as_deref()),
            );
            let memory = Memory::open(Arc::new(store), settings)?;
            // Searches use meaning as well as words once the model is loaded; messages not yet
            // embedded are embedded meanwhile.
            memory.prepare().await;
            let stop = tokio_util::sync::CancellationToken::new();
            let worker = tokio::spawn(memory.clone().run_worker(stop.clone()));
            let running = if name == "memory" {
                let server = memory_server(memory, scopes);
                server
                    .serve(rmcp::transport::stdio())
                    .await?
                    .waiting()
                    .await
            } else {
                let server = telegram_server(memory, scopes);
                server
                    .serve(rmcp::transport::stdio())
                    .await?
                    .waiting()
                    .await
            };
            running?;
            stop.cancel();
            let _ = worker.await;
            Ok(())
        }
        "notion" => {
            let running = notion_server(config, secrets, scopes)?
                .serve(rmcp::transport::stdio())
                .await?;
            running.waiting().await?;
            Ok(())
        }
        "dev" => {
            // Alone, the server probes the sandbox itself: the browser is a tenant here too.
            let sandbox = match crate::agent::helpers_sandbox(config).await {
                Some(sandbox) => Some(sandbox),
                None => {
                    tracing::warn!("the browser runs unsandboxed: the sandbox does not work here");
                    None
                }
            };
            let server = dev_server(config, secrets, scopes, None, sandbox)?;
            let browser = std::sync::Arc::clone(server.browser());
            let running = server.serve(rmcp::transport::stdio()).await?;
            running.waiting().await?;
            browser.close().await;
            Ok(())
        }
        other => anyhow::bail!(
            "there is no tool server called {other:?}; the servers are: {}",
            SERVERS.join(", ")
        ),
    }
}
