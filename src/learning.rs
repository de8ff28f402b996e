//! Learning from conversations in the binary: the learner from the config, and
//! `valor learnings list|export`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Subcommand;
use valor_config::Config;
use valor_learn::classifier::Classifier;
use valor_learn::detector::{Blend, Detector};
use valor_learn::{LearnSettings, Learner};
use valor_memory::Memory;
use valor_store::LearningRecord;

use crate::memory_cmd::{Access, open};

/// The learner, when `[learning] enabled`; an error when `[learning] watcher_weights` names a
/// file that is not a weights file.
pub fn learner(
    config: &Config,
    memory: &Memory,
    shared: &crate::shared::Shared,
) -> anyhow::Result<Option<Learner>> {
    let l = &config.learning;
    if !l.enabled {
        return Ok(None);
    }
    let detector = match &l.watcher_weights {
        None => Detector::builtin().clone(),
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| {
                format!("[learning] watcher_weights: cannot read {}", path.display())
            })?;
            let classifier = Classifier::from_bytes(&bytes).with_context(|| {
                format!(
                    "[learning] watcher_weights: {} (made by valor learnings train?)",
                    path.display()
                )
            })?;
            Detector::new(Some(classifier), Blend::default())
        }
    };
    Ok(Some(Learner::with_detector(
        memory.clone(),
        Arc::clone(&shared.learn) as Arc<dyn valor_learn::port::LearningStore>,
        LearnSettings {
            ask_threshold: l.ask_threshold as f32,
            // Keys are checked to be chat ids when the config loads.
            ask_threshold_by_chat: (l.ask_threshold_by_chat.iter())
                .filter_map(|(chat, t)| Some((chat.trim().parse().ok()?, *t as f32)))
                .collect(),
            duplicate_similarity: l.duplicate_similarity as f32,
        },
        detector,
    )))
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
    /// Train the watcher's classifier from a labelled file (label TAB message), measure it
    /// on a held-out file, and write its weights (for [learning] watcher_weights).
    Train {
        /// The labelled file (default: the training set Valor ships with).
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// Measured on, never trained on (default: the held-out set Valor ships with).
        #[arg(long, value_name = "FILE")]
        held_out: Option<PathBuf>,
        /// Where the weights go.
        #[arg(long, value_name = "FILE", default_value = "watcher.weights")]
        out: PathBuf,
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
    if let LearningsCommand::Train {
        data,
        held_out,
        out,
    } = &args.command
    {
        return train(config, data.as_deref(), held_out.as_deref(), out);
    }
    let records: Vec<LearningRecord> = match open(config)? {
        Access::Direct(_, store) => (valor_learn::LearningStore::all_learnings(store.as_ref())
            .await)
            .map_err(|e| e.to_string())?,
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
        LearningsCommand::Train { .. } => {}
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

/// `valor learnings train`: trains on `data`, measures on `held_out`, writes the weights.
fn train(
    config: &Config,
    data: Option<&std::path::Path>,
    held_out: Option<&std::path::Path>,
    out: &std::path::Path,
) -> Result<(), String> {
    let read = |path: Option<&std::path::Path>, shipped: &str| match path {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        None => Ok(shipped.to_owned()),
    };
    let data = read(data, valor_learn::detector::TRAINING_SET)?;
    let held_out = read(held_out, valor_learn::detector::HELD_OUT_SET)?;
    let home = std::env::var("HOME").ok();
    let model_dir = config.memory.resolved_model_dir(home.as_deref());
    // Trained on fp32 vectors whatever the CPU: bf16 products (AVX-512 BF16) would give
    // other weights than the fp32 kernels of other machines.
    let embedder = valor_embed::Embedder::load_with(&model_dir, valor_embed::Precision::F32)
        .map_err(|e| {
            format!(
                "no embedding model at {} ({e}): run scripts/setup",
                model_dir.display()
            )
        })?;
    let embed = |texts: &[&str]| embedder.embed(texts).ok();
    let classifier = valor_learn::detector::train(&data, &embed)?;
    let detector = Detector::new(Some(classifier.clone()), Blend::default());
    let threshold = config.learning.ask_threshold as f32;
    for (name, set) in [("training file", &data), ("held out", &held_out)] {
        let rows = valor_learn::detector::labelled(set)?;
        let texts: Vec<&str> = rows.iter().map(|r| r.1).collect();
        let vectors = embedder.embed(&texts).map_err(|e| e.to_string())?;
        let vectors: Vec<Option<Vec<f32>>> = vectors.into_iter().map(Some).collect();
        let score = valor_learn::evaluate::score(&detector, &rows, &vectors, &embed, threshold);
        println!("{name}: {score}");
    }
    std::fs::write(out, classifier.to_bytes())
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!(
        "weights: {} (set [learning] watcher_weights to use them)",
        out.display()
    );
    Ok(())
}

/// The "Remember this?" figures on `/metrics`: `valor_learning_questions{trigger, state}`, the
/// questions of the last 30 days, read from the store when `/metrics` is asked for.
pub fn question_gauges(
    metrics: &valor_monitor::MetricsRegistry,
    store: &valor_store::Store,
) -> anyhow::Result<std::sync::Arc<dyn Fn() + Send + Sync>> {
    const NAME: &str = "valor_learning_questions";
    const HELP: &str = "Remember-this questions of the last 30 days, by trigger and state \
                        (pending, accepted, declined, expired).";
    // Every trigger and state shows from the start, at 0 until asked.
    let mut known = Vec::new();
    for trigger in valor_learn::Trigger::ALL
        .map(|t| t.as_str())
        .into_iter()
        .chain(["insight"])
    {
        for state in [
            valor_store::ProposalState::Pending,
            valor_store::ProposalState::Accepted,
            valor_store::ProposalState::Declined,
            valor_store::ProposalState::Expired,
        ] {
            let gauge = metrics.gauge(
                NAME,
                HELP,
                &[("trigger", trigger), ("state", state.as_str())],
            )?;
            known.push(((trigger.to_owned(), state), gauge));
        }
    }
    let (metrics, store) = (metrics.clone(), store.clone());
    Ok(std::sync::Arc::new(move || {
        let Ok(counts) = store.proposal_counts(None) else {
            return;
        };
        for (key, gauge) in &known {
            gauge.set(counts.get(key).copied().unwrap_or(0) as f64);
        }
        // A kind no list names (a memory kind the daydream asked about) gets its series too.
        for ((trigger, state), n) in &counts {
            if !known.iter().any(|((t, s), _)| t == trigger && s == state)
                && let Ok(gauge) = metrics.gauge(
                    NAME,
                    HELP,
                    &[("trigger", trigger), ("state", state.as_str())],
                )
            {
                gauge.set(*n as f64);
            }
        }
    }))
}
