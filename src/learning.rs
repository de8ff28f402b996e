//! Learning from conversations in the binary: the learner from the config, and
//! `valor learnings list|export`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use valor_config::Config;
use valor_learn::{LearnSettings, Learner};
use valor_memory::Memory;
use valor_store::LearningRecord;

use crate::memory_cmd::{Access, open};

/// The learner, when `[learning] enabled`.
pub fn learner(config: &Config, memory: &Memory) -> Option<Learner> {
    let l = &config.learning;
    l.enabled.then(|| {
        Learner::new(
            memory.clone(),
            LearnSettings {
                ask_threshold: l.ask_threshold as f32,
                // Keys are checked to be chat ids when the config loads.
                ask_threshold_by_chat: (l.ask_threshold_by_chat.iter())
                    .filter_map(|(chat, t)| Some((chat.trim().parse().ok()?, *t as f32)))
                    .collect(),
                duplicate_similarity: l.duplicate_similarity as f32,
            },
        )
    })
}

#[derive(Debug, clap::Args)]
pub struct LearningsArgs {
    #[command(subcommand)]
    command: LearningsCommand,
}

#[derive(Debug, Subcommand)]
enum LearningsCommand {
    /// List learnings: number, category, confidence, times seen.
    List {
        /// Only this chat's.
        #[arg(long)]
        chat: Option<i64>,
        /// Retired ones too.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write <dir>/chat-<id>/LEARNED_INSIGHTS.md for every chat (or one).
    Export {
        /// Directory (default: [learning] export_dir).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        #[arg(long)]
        chat: Option<i64>,
    },
}

pub async fn command(config_path: Option<PathBuf>, args: LearningsArgs) -> ExitCode {
    let loaded = match crate::config_cmd::load(config_path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    match run(&loaded.config, args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: &Config, args: LearningsArgs) -> Result<(), String> {
    let records: Vec<LearningRecord> = match open(config)? {
        Access::Direct(memory) => memory.store().all_learnings().map_err(|e| e.to_string())?,
        Access::Agent(agent) => agent.get("/memory/learnings").await?,
    };
    match args.command {
        LearningsCommand::List { chat, all, json } => {
            let mut shown: Vec<LearningRecord> = records
                .into_iter()
                .filter(|l| chat.is_none_or(|c| l.chat_id == Some(c)))
                .filter(|l| all || l.is_active())
                .collect();
            shown.sort_by_key(|l| (l.chat_id, l.number));
            if json {
                let text = serde_json::to_string_pretty(&shown).map_err(|e| e.to_string())?;
                println!("{text}");
                return Ok(());
            }
            if shown.is_empty() {
                eprintln!("no learnings");
            }
            for l in &shown {
                let chat = l.chat_id.map_or("shared".to_owned(), |c| c.to_string());
                let state = match &l.retired {
                    Some(r) => format!("  retired: {}", r.reason),
                    None => String::new(),
                };
                println!(
                    "chat {chat} #{} [{}] {:.2} seen {}×  {}{state}",
                    l.number, l.category, l.confidence, l.times_seen, l.content
                );
            }
        }
        LearningsCommand::Export { out, chat } => {
            let dir = out.unwrap_or_else(|| config.learning.export_dir.clone());
            let written = valor_learn::export::export_records(records, &dir, chat)
                .map_err(|e| e.to_string())?;
            if written.is_empty() {
                eprintln!("no learnings to export");
            }
            for file in written {
                eprintln!("{} active, {} retired", file.active, file.retired);
                println!("{}", file.path.display());
            }
        }
    }
    Ok(())
}
