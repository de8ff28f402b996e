//! `valor memory`: search, stats, show, reindex, export and import. With no agent running the
//! command opens the store itself; while `valor run` owns it, the command goes through the
//! agent's memory API on its loopback port (with the token in `<store>.api-token`).

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use serde_json::Value;
use valor_config::Config;
use valor_memory::api::{MemoryStats, SearchParams};
pub(crate) use valor_memory::client::AgentClient;
use valor_memory::transfer::{self, Moved};
use valor_memory::{Memory, MemorySettings, SearchMode, SearchResult};
use valor_protocol::time::civil_date;
use valor_store::Document;
use valor_store::{Store, StoreError};

#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    #[command(subcommand)]
    command: MemoryCommand,
}

#[derive(Debug, Subcommand)]
enum MemoryCommand {
    /// Search what Valor remembers: by keywords and by meaning.
    Search {
        query: String,
        /// Only this chat's memories.
        #[arg(long)]
        chat: Option<i64>,
        /// Only these kinds: message, link, learning, insight (comma-separated).
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Counts per kind, embedding progress and the search mode.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// One memory in full.
    Show { id: u64 },
    /// Embed every document again with the current model.
    Reindex,
    /// Write every message and saved memory as JSON lines.
    Export {
        /// The file to write (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Read JSON lines written by `export` (FILE, or - for standard input).
    Import { file: PathBuf },
}

/// How the command reaches memory.
pub(crate) enum Access {
    /// The store is free: this process opened it (and memory over it).
    Direct(Memory, Box<Store>),
    Agent(AgentClient),
}

/// The running agent that holds `config`'s store, with its API token.
pub(crate) fn agent_client(config: &Config, timeout: Duration) -> Result<AgentClient, String> {
    let fallback = crate::health_cmd::base_url(config.health.bind);
    AgentClient::for_store(&config.store.path, fallback, timeout)
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

pub async fn memory(config_path: Option<PathBuf>, args: MemoryArgs) -> ExitCode {
    let loaded = match crate::config_cmd::load(config_path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let access = match open(&loaded.config) {
        Ok(access) => access,
        Err(message) => return fail(message),
    };
    let outcome = match args.command {
        MemoryCommand::Search {
            query,
            chat,
            kind,
            limit,
            json,
        } => {
            let params = SearchParams {
                q: query,
                chat,
                kind,
                limit: Some(limit),
                since_ms: None,
                until_ms: None,
            };
            search(&access, &params, json).await
        }
        MemoryCommand::Stats { json } => stats(&access, json).await,
        MemoryCommand::Show { id } => show(&access, id).await,
        MemoryCommand::Reindex => reindex(&access).await,
        MemoryCommand::Export { out } => export(&access, out.as_deref()).await,
        MemoryCommand::Import { file } => import(&access, &file).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(message),
    }
}

/// The store directly, or the running agent when it holds the store.
pub(crate) fn open(config: &Config) -> Result<Access, String> {
    let path = &config.store.path;
    match Store::open(path) {
        Ok(store) => {
            let home = std::env::var("HOME").ok();
            let settings =
                MemorySettings::beside(path, config.memory.resolved_model_dir(home.as_deref()));
            Memory::open(Arc::new(store.clone()), settings)
                .map(|memory| Access::Direct(memory, Box::new(store)))
                .map_err(|e| e.to_string())
        }
        Err(StoreError::Locked { .. }) => {
            agent_client(config, Duration::from_secs(600)).map(Access::Agent)
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn search(access: &Access, params: &SearchParams, json: bool) -> Result<(), String> {
    let result: SearchResult = match access {
        Access::Direct(memory, _) => {
            let query = params.to_query()?;
            memory.prepare().await;
            embed_queued(memory).await;
            memory.search(&query).await.map_err(|e| e.to_string())?
        }
        Access::Agent(agent) => {
            let query = serde_urlencoded(params)?;
            let stats: MemoryStats = agent.get("/memory/stats").await?;
            if stats.counts.queued > 0 {
                eprintln!(
                    "note: the running Valor is still embedding {} document(s); until then they match by keywords only",
                    stats.counts.queued
                );
            }
            agent.get(&format!("/memory/search?{query}")).await?
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    print!("{}", render_hits(&result));
    Ok(())
}

fn serde_urlencoded(params: &SearchParams) -> Result<String, String> {
    let mut url = reqwest::Url::parse("http://x/").map_err(|e| e.to_string())?;
    {
        let mut pairs = url.query_pairs_mut();
        pairs.append_pair("q", &params.q);
        if let Some(chat) = params.chat {
            pairs.append_pair("chat", &chat.to_string());
        }
        if let Some(kind) = &params.kind {
            pairs.append_pair("kind", kind);
        }
        if let Some(limit) = params.limit {
            pairs.append_pair("limit", &limit.to_string());
        }
    }
    Ok(url.query().unwrap_or_default().to_owned())
}

fn render_hits(result: &SearchResult) -> String {
    let mut out = String::new();
    if result.hits.is_empty() {
        out.push_str("nothing found\n");
    }
    for hit in &result.hits {
        let chat = hit
            .chat_id
            .map_or_else(|| "shared".to_owned(), |c| format!("chat {c}"));
        out.push_str(&format!(
            "#{:<8} {:<8} {}  {:<14} {}\n",
            hit.id,
            hit.kind.as_str(),
            civil_date(hit.at_ms),
            chat,
            hit.title
        ));
        let snippet = hit.snippet.replace('\n', " ");
        if !snippet.is_empty() && snippet != hit.title {
            out.push_str(&format!("          {snippet}\n"));
        }
    }
    if result.mode == SearchMode::KeywordOnly {
        out.push_str("(keyword search only: the embedding model is not available)\n");
    }
    out
}

async fn stats(access: &Access, json: bool) -> Result<(), String> {
    let stats = match access {
        Access::Direct(memory, _) => {
            memory.prepare().await;
            MemoryStats::of(memory)
        }
        Access::Agent(agent) => agent.get("/memory/stats").await?,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&stats).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    let state = stats
        .state
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    println!("state      {state}");
    if let Some(reason) = stats.state.get("reason").and_then(Value::as_str) {
        println!("reason     {reason}");
    }
    println!("messages   {}", stats.counts.messages);
    println!("links      {}", stats.counts.links);
    println!("learnings  {}", stats.counts.learnings);
    println!("insights   {}", stats.counts.insights);
    println!("observations {}", stats.counts.observations);
    println!("summaries  {}", stats.counts.summaries);
    println!(
        "vectors    {} ({} queued for embedding, {} in the index)",
        stats.counts.vectors, stats.counts.queued, stats.indexed
    );
    println!(
        "model      {}",
        stats.model.as_deref().unwrap_or("not loaded")
    );
    Ok(())
}

async fn show(access: &Access, id: u64) -> Result<(), String> {
    let document: Document = match access {
        Access::Direct(_, store) => (valor_memory::port::document(store.as_ref(), id).await)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("memory {id} is not in the store"))?,
        Access::Agent(agent) => agent.get(&format!("/memory/item/{id}")).await?,
    };
    let chat = document
        .chat_id
        .map_or_else(|| "shared".to_owned(), |c| format!("chat {c}"));
    println!(
        "#{} {} {} {}",
        document.id,
        document.kind,
        civil_date(document.at_ms),
        chat
    );
    println!("{}", document.title);
    if let Some(url) = &document.url {
        println!("{url}");
    }
    println!("\n{}", document.text);
    Ok(())
}

/// Documents embedded before a search without a progress bar (a second or so).
const EMBED_QUIETLY: u64 = 32;
/// Documents a search embeds first at most; past it `valor memory reindex` is the tool.
const EMBED_BEFORE_SEARCH: u64 = 5_000;

/// Embeds what is queued (messages said through `valor chat` while no agent ran) so the search
/// finds it by meaning, or says how much cannot be found that way yet.
async fn embed_queued(memory: &Memory) {
    let queued = memory.counts().queued;
    if queued == 0 {
        return;
    }
    if memory.model_id().is_none() || queued > EMBED_BEFORE_SEARCH {
        let why = if memory.model_id().is_none() {
            "there is no embedding model (run scripts/setup, or set [memory] model_dir)".to_owned()
        } else {
            format!("run `valor memory reindex` to embed them (more than {EMBED_BEFORE_SEARCH})")
        };
        eprintln!(
            "note: {queued} document(s) are not searchable by meaning yet: {why}; they match by keywords"
        );
        return;
    }
    let bar = (queued > EMBED_QUIETLY).then(|| progress_bar(queued));
    let start = memory.counts().vectors;
    let outcome = memory
        .work_until_idle(&|_, counts| {
            if let Some(bar) = &bar {
                bar.set_position(counts.vectors.saturating_sub(start));
            }
        })
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Err(e) = outcome {
        eprintln!(
            "note: cannot embed the {queued} queued document(s): {e}; they match by keywords"
        );
    }
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} embedding [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

async fn reindex(access: &Access) -> Result<(), String> {
    match access {
        Access::Direct(memory, _) => {
            let total = memory.counts().documents();
            let bar = progress_bar(total);
            memory.request_reindex();
            memory
                .work_until_idle(&|_, counts| bar.set_position(counts.vectors))
                .await
                .map_err(|e| e.to_string())?;
            bar.finish_and_clear();
            let counts = memory.counts();
            println!(
                "reindexed {} of {} documents",
                counts.vectors,
                counts.documents()
            );
            Ok(())
        }
        Access::Agent(agent) => {
            let _: Value = agent.post("/memory/reindex", Vec::new()).await?;
            // The agent's worker does the work; follow it until the queue is empty.
            let mut bar: Option<indicatif::ProgressBar> = None;
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let stats: MemoryStats = agent.get("/memory/stats").await?;
                let total = stats.counts.documents();
                let bar = bar.get_or_insert_with(|| progress_bar(total));
                bar.set_length(total);
                bar.set_position(stats.counts.vectors);
                let state = stats
                    .state
                    .get("state")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if state == "keyword_only" {
                    return Err(
                        "the running Valor has no embedding model: nothing to reindex with"
                            .to_owned(),
                    );
                }
                if stats.counts.queued == 0 && state == "ready" {
                    bar.finish_and_clear();
                    println!("reindexed {} of {total} documents", stats.counts.vectors);
                    return Ok(());
                }
            }
        }
    }
}

async fn export(access: &Access, out: Option<&Path>) -> Result<(), String> {
    let mut sink: Box<dyn Write + Send> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let moved = match access {
        Access::Direct(_, store) => {
            (transfer::export(store.as_ref(), &mut sink).await).map_err(|e| e.to_string())?
        }
        Access::Agent(agent) => {
            let body = agent.get_bytes("/memory/export").await?;
            sink.write_all(&body).map_err(|e| e.to_string())?;
            sink.flush().map_err(|e| e.to_string())?;
            count_lines(&body)
        }
    };
    eprintln!(
        "exported {} messages, {} saved memories and {} learnings",
        moved.messages, moved.memories, moved.learnings
    );
    Ok(())
}

fn count_lines(body: &[u8]) -> Moved {
    let mut moved = Moved::default();
    for line in body.split(|b| *b == b'\n') {
        if line.starts_with(br#"{"type":"message""#) {
            moved.messages += 1;
        } else if line.starts_with(br#"{"type":"memory""#) {
            moved.memories += 1;
        } else if line.starts_with(br#"{"type":"learning""#) {
            moved.learnings += 1;
        }
    }
    moved
}

async fn import(access: &Access, file: &Path) -> Result<(), String> {
    let mut input: Box<dyn BufRead + Send> = if file == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file)
                .map_err(|e| format!("cannot open {}: {e}", file.display()))?,
        ))
    };
    let moved = match access {
        Access::Direct(_, store) => {
            (transfer::import(store.as_ref(), &mut input).await).map_err(|e| e.to_string())?
        }
        Access::Agent(agent) => {
            let mut body = Vec::new();
            input.read_to_end(&mut body).map_err(|e| e.to_string())?;
            agent.post("/memory/import", body).await?
        }
    };
    println!(
        "imported {} messages, {} saved memories and {} learnings",
        moved.messages, moved.memories, moved.learnings
    );
    if matches!(access, Access::Direct(..)) && moved.messages + moved.memories > 0 {
        eprintln!("searchable by keyword now; Valor embeds them when it next runs");
    }
    Ok(())
}
