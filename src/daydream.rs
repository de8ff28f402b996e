//! The daydream inside Valor: its settings from `[daydream]`, the agent as its host (readiness,
//! cleanup, analytics, health history, delivery to the admin chat), the scheduled job, and
//! `valor daydream --now`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use valor_config::Config;
use valor_daydream::{
    Daydream, DaydreamReport, DaydreamSettings, Host, HostFuture, MapCache, Phase, Readiness,
};
use valor_monitor::{ChildRegistry, MetricsRegistry, ResourceMonitor};
use valor_store::{JobOutcome, RunRecord, Store};

/// Valor's Claude Code processes older than this are ended before a daydream.
const STALE_AGE: Duration = Duration::from_secs(24 * 3600);
pub const JOB: &str = "daydream";

/// A report for the admin chat.
pub struct Outgoing {
    pub chat: i64,
    pub text: String,
    pub chart: Option<PathBuf>,
    /// Memory candidates, each asked with [Remember] [Not now].
    pub candidates: Vec<String>,
    /// Where the candidates came from ("daydream <session>").
    pub source: String,
}

/// Sends a report to its chat.
pub type Sender = Arc<dyn Fn(Outgoing) -> HostFuture<'static, Result<(), String>> + Send + Sync>;

const CHART_CAPTION: &str = "Daydream: turns per day and health";

/// A candidate as a pending proposal for `chat`.
fn proposal(chat: i64, text: String, source: &str) -> valor_store::Proposal {
    let now = Utc::now().timestamp_millis() as u64;
    valor_store::Proposal {
        id: 0,
        chat_id: chat,
        text,
        kind: valor_store::MemoryKind::Learning,
        source: source.to_owned(),
        created_ms: now,
        expires_ms: now + valor_store::PROPOSAL_TTL_MS,
        message_id: None,
        state: valor_store::ProposalState::Pending,
        asked_of: None,
        learning: None,
    }
}

pub fn settings(config: &Config, git: valor_daydream::GitJail) -> DaydreamSettings {
    let d = &config.daydream;
    DaydreamSettings {
        workspaces: d.workspaces.clone(),
        chats: Some(crate::agent::chat_folders(config)),
        git,
        report_chat: (config.admin.chat != 0).then_some(config.admin.chat),
        logs_dir: d.logs_dir.clone(),
        keep_reports: d.keep_reports,
        analysis_timeout: Duration::from_secs(d.analysis_timeout_secs),
        max_pending_turns: d.max_pending_turns,
        model: (!d.model.trim().is_empty()).then(|| d.model.trim().to_owned()),
        temp_dir: std::env::temp_dir(),
    }
}

/// The agent as the daydream's host.
pub struct AgentHost {
    pub store: Store,
    pub monitor: Arc<ResourceMonitor>,
    pub reaper: valor_claude::reaper::Reaper,
    pub monitor_config: valor_config::MonitorConfig,
    pub report_chat: i64,
    pub send: Option<Sender>,
}

impl AgentHost {
    /// The kept minutes of the last six hours (the daydream's span), else the samples in
    /// memory (a first run, or `valor daydream --now` with no store history yet).
    async fn kept_health(&self) -> Vec<(DateTime<Utc>, u8)> {
        let since = valor_protocol::time::now_ms().saturating_sub(6 * 3_600_000);
        let kept: Vec<(DateTime<Utc>, u8)> = (self.monitor)
            .health_points(valor_protocol::health::Resolution::Minute, since)
            .await
            .iter()
            .filter_map(|p| {
                Some((
                    DateTime::from_timestamp_millis(i64::try_from(p.at_ms).ok()?)?,
                    p.score,
                ))
            })
            .collect();
        if !kept.is_empty() {
            return kept;
        }
        self.monitor
            .history()
            .iter()
            .filter_map(|sample| {
                let at = DateTime::from_timestamp(i64::try_from(sample.taken_at).ok()?, 0)?;
                let report = valor_monitor::score::assess(sample, &[], &self.monitor_config);
                Some((at, report.score))
            })
            .collect()
    }
}

impl Host for AgentHost {
    fn readiness(&self) -> Readiness {
        Readiness {
            pending_turns: self.store.inbox().map_or(0, |inbox| inbox.len()),
            health: self
                .monitor
                .report()
                .map_or_else(|| "ok".to_owned(), |r| r.status.as_str().to_owned()),
            store: self.store.flush().map_err(|e| e.to_string()),
        }
    }

    fn pre_cleanup(&self) -> HostFuture<'_, Vec<String>> {
        Box::pin(async move {
            let reaped = self.reaper.reap(Some(STALE_AGE)).await;
            let temp = std::env::temp_dir();
            let profiles = crate::jobs::remove_stale_temp_dirs(
                &temp,
                valor_tool_dev::browser::PROFILE_PREFIX,
                STALE_AGE,
            );
            let runs = crate::jobs::remove_stale_temp_dirs(
                &temp,
                valor_daydream::run::RUN_DIR_PREFIX,
                STALE_AGE,
            );
            let mut cleaned = Vec::new();
            if !reaped.killed.is_empty() {
                cleaned.push(format!(
                    "{} Claude Code process groups over 24 h ended",
                    reaped.killed.len()
                ));
            }
            if reaped.cleared > 0 {
                cleaned.push(format!("{} stale process records cleared", reaped.cleared));
            }
            if profiles > 0 {
                cleaned.push(format!("{profiles} old browser profiles removed"));
            }
            if runs > 0 {
                cleaned.push(format!("{runs} old daydream temp directories removed"));
            }
            cleaned
        })
    }

    fn runs_since(&self, since_ms: u64) -> HostFuture<'_, Vec<RunRecord>> {
        Box::pin(async move {
            (self.store.blocking(move |s| s.runs_since(since_ms)).await).unwrap_or_default()
        })
    }

    fn health_history(&self) -> HostFuture<'_, Vec<(DateTime<Utc>, u8)>> {
        Box::pin(self.kept_health())
    }

    fn deliver<'a>(&'a self, report: &'a DaydreamReport) -> HostFuture<'a, Result<String, String>> {
        Box::pin(async move {
            if self.report_chat == 0 {
                return Err("no [admin] chat is set".to_owned());
            }
            let Some(send) = &self.send else {
                return Err("Telegram is off (no TELEGRAM_BOT_TOKEN)".to_owned());
            };
            send(Outgoing {
                chat: self.report_chat,
                text: report.summary.clone(),
                chart: report.chart.clone().ok(),
                candidates: report.candidates.clone(),
                source: format!("daydream {}", report.session_id),
            })
            .await?;
            Ok(format!("Telegram chat {}", self.report_chat))
        })
    }
}

/// Tells the report chat that a daydream found nothing to do (or could not start), once per
/// reason: not again while it keeps skipping for the same one.
#[derive(Default)]
pub struct SkipNotice {
    last: std::sync::Mutex<Option<String>>,
}

impl SkipNotice {
    /// `line` is the job's line (`skipped (session): reason`, or what it did); the chat hears
    /// of a skip whose reason changed.
    pub async fn after_run(&self, report_chat: i64, send: Option<&Sender>, line: &str) {
        let reason = line
            .strip_prefix("skipped")
            .and_then(|rest| rest.split_once("): "))
            .map(|(_, reason)| reason.to_owned());
        let changed = {
            let mut last = self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = reason.is_some() && *last != reason;
            *last = reason.clone();
            changed
        };
        let (Some(reason), Some(send), true) = (reason, send, changed && report_chat != 0) else {
            return;
        };
        let text = format!(
            "🌙 The daydream found nothing to do this time: {reason}. I'll look again at its next run (not told again while this stays so)."
        );
        let sent = send(Outgoing {
            chat: report_chat,
            text,
            chart: None,
            candidates: Vec::new(),
            source: "daydream".to_owned(),
        })
        .await;
        if let Err(e) = sent {
            tracing::warn!(chat_id = report_chat, error = %e, "cannot tell the report chat the daydream skipped");
        }
    }
}

/// When the last daydream that got to its report started (for "changed since").
pub fn last_daydream(store: &Store) -> Option<DateTime<Utc>> {
    store
        .job_runs(JOB, 50)
        .ok()?
        .into_iter()
        .find(|run| run.outcome == JobOutcome::Ok)
        .and_then(|run| DateTime::from_timestamp_millis(i64::try_from(run.started_ms).ok()?))
}

/// The code-map cache beside the store.
pub fn cache_path(config: &Config) -> PathBuf {
    config.store.path.with_extension("codemap.json")
}

/// The daydream for `valor run` or `--now`, analysing through Claude Code (`claude`: under
/// `valor run` the conversation service's background backend, which takes a slot of the
/// global limit) or, by config, an OpenAI-compatible endpoint.
pub fn daydream(
    config: &Config,
    secrets: &valor_config::Secrets,
    host: Arc<AgentHost>,
    agent: &crate::agent::Agent,
    claude: Arc<dyn valor_core::Backend>,
) -> anyhow::Result<Daydream> {
    let d = &config.daydream;
    let backend: Arc<dyn valor_core::Backend> = match d.backend {
        valor_config::DaydreamBackend::Openai => {
            Arc::new(valor_daydream::openai::OpenAiBackend::new(
                &d.openai_base_url,
                d.model.trim(),
                // Its own key: the endpoint may be anyone's server, so OPENAI_API_KEY never goes
                // there.
                secrets
                    .daydream_api_key
                    .as_ref()
                    .map(|k| k.expose().to_owned()),
            )?)
        }
        valor_config::DaydreamBackend::Claude => claude,
    };
    Ok(Daydream::new(
        settings(config, agent.git_jail(config)),
        host,
        backend,
        MapCache::load(&cache_path(config)),
    ))
}

/// One scheduled run: the job's line for `valor jobs`.
pub async fn run_once(
    daydream: &Daydream,
    store: &Store,
    cache: &std::path::Path,
    progress: &(dyn Fn(Phase, &str) + Sync),
) -> Result<String, String> {
    let outcome = daydream
        .run(last_daydream(store), Utc::now(), progress)
        .await;
    if let Err(e) = daydream.cache().save(cache) {
        tracing::warn!(error = %e, "cannot save the code-map cache");
    }
    if let Some(reason) = outcome.skipped {
        return Ok(format!("skipped ({}): {reason}", outcome.session_id));
    }
    let Some(report) = outcome.report else {
        return Err(format!(
            "{}: the report could not be written",
            outcome.session_id
        ));
    };
    // The insights become searchable memory of the report chat alone (kind `insight`): never
    // shared memory that every chat recalls. Without a report chat they stay in the report.
    if let (Some(analysis), Some(chat)) = (&report.analysis, daydream.settings.report_chat) {
        let text: String = valor_redact::redact(analysis)
            .chars()
            .take(valor_store::MAX_MEMORY_TEXT / 8)
            .collect();
        let saved = store.save_memory(valor_store::MemoryRecord {
            id: 0,
            kind: valor_store::MemoryKind::Insight,
            chat_id: Some(chat),
            at_ms: u64::try_from(report.at.timestamp_millis()).unwrap_or(0),
            title: format!(
                "Daydream insights {}",
                report.at.format("%Y-%m-%d %H:%M UTC")
            ),
            text,
            url: None,
        });
        if let Err(e) = saved {
            tracing::warn!(error = %e, "cannot keep the insights in memory");
        }
    }
    let sent = match &outcome.delivered {
        Some(Ok(to)) => format!("sent to {to}"),
        Some(Err(why)) => format!("not sent: {why}"),
        None => "not sent".to_owned(),
    };
    let degraded = report
        .degraded
        .map(|d| format!(", degraded: {d}"))
        .unwrap_or_default();
    Ok(format!(
        "{}: {} ({sent}{degraded})",
        outcome.session_id,
        report.report_path.display()
    ))
}

#[derive(Debug, clap::Args)]
pub struct DaydreamArgs {
    /// Run one daydream now, in the foreground, with progress per phase.
    #[arg(long)]
    now: bool,
}

/// `valor daydream --now`.
pub async fn command(config_path: Option<PathBuf>, args: DaydreamArgs) -> ExitCode {
    if !args.now {
        eprintln!(
            "valor daydream runs on its schedule inside `valor run` (see `valor jobs`); `valor daydream --now` runs one now"
        );
        return ExitCode::from(2);
    }
    let loaded = match crate::config_cmd::load(config_path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    crate::logging::init("error", false);
    match now(&loaded).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn now(loaded: &valor_config::Loaded) -> anyhow::Result<String> {
    let config = &loaded.config;
    let metrics = MetricsRegistry::new();
    let children = ChildRegistry::new();
    let agent = crate::agent::Agent::build(
        config,
        loaded.secrets.database_url.as_ref(),
        &metrics,
        children.clone(),
        false,
    )
    .await
    .map_err(|e| {
        if e.downcast_ref::<valor_store::StoreError>()
            .is_some_and(|s| matches!(s, valor_store::StoreError::Locked { .. }))
        {
            anyhow::anyhow!(
                "the store is in use by a running Valor, which daydreams on its schedule \
                     (see `valor jobs`)"
            )
        } else {
            e
        }
    })?;
    let monitor = ResourceMonitor::new(config.monitor.clone(), children, &metrics)?;
    monitor.tick()?;
    let send = telegram_sender(loaded, agent.store.clone())?;
    let host = Arc::new(AgentHost {
        store: agent.store.clone(),
        monitor,
        reaper: agent.reaper(),
        monitor_config: config.monitor.clone(),
        report_chat: config.admin.chat,
        send,
    });
    let claude = Arc::new(agent.driver.clone());
    let daydream = daydream(config, &loaded.secrets, host, &agent, claude)?;
    let progress = |phase: Phase, line: &str| {
        eprintln!("phase {}/6 {:<12} {line}", phase.number(), phase.as_str());
    };
    let line = run_once(&daydream, &agent.store, &cache_path(config), &progress).await;
    // Recorded like a scheduled run, so `valor jobs` shows it and "changed since" counts from it.
    let finished = Utc::now().timestamp_millis() as u64;
    let record = valor_store::JobRunRecord {
        job: JOB.to_owned(),
        started_ms: finished,
        finished_ms: Some(finished),
        outcome: if line.is_ok() {
            JobOutcome::Ok
        } else {
            JobOutcome::Failed
        },
        detail: line.clone().unwrap_or_else(|e| e),
        due_ms: None,
    };
    if let Err(e) = agent.store.record_job_run(&record) {
        tracing::warn!(error = %e, "cannot record the daydream run");
    }
    agent.shutdown().await;
    line.map_err(anyhow::Error::msg)
}

/// Sends reports straight through the Bot API (for `--now`, without the running channel). A
/// candidate's question is answered once `valor run` polls again (within its 10 minutes).
fn telegram_sender(loaded: &valor_config::Loaded, store: Store) -> anyhow::Result<Option<Sender>> {
    let Some(token) = &loaded.secrets.telegram_bot_token else {
        return Ok(None);
    };
    let t = &loaded.config.telegram;
    let bot = valor_telegram::channel::bot(token.expose(), &t.api_url, t.poll_timeout_secs)?;
    Ok(Some(Arc::new(move |out: Outgoing| {
        let (bot, store) = (bot.clone(), store.clone());
        Box::pin(async move {
            let photo = out.chart.and_then(|path| chart(out.chat, &path));
            // One pacer for the whole report: text, chart and questions.
            let pacer = valor_telegram::pacer::ChatPacer::new(
                if out.chat > 0 {
                    valor_telegram::pacer::ChatKind::Private
                } else {
                    valor_telegram::pacer::ChatKind::Group
                },
                valor_telegram::pacer::PacerConfig::default(),
            );
            valor_telegram::photos::send_report(&bot, &pacer, out.chat, &out.text, photo)
                .await
                .map_err(|e| e.to_string())?;
            for candidate in out.candidates {
                let asked = store
                    .add_proposal(proposal(out.chat, candidate, &out.source))
                    .map_err(|e| e.to_string())?;
                valor_telegram::remember::ask(&bot, &store, &pacer, &asked.question())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    })))
}

/// The report's chart (Valor's own file in its logs folder) as a photo for `chat`.
fn chart(chat: i64, path: &std::path::Path) -> Option<valor_telegram::photos::OutgoingPhoto> {
    match std::fs::read(path) {
        Ok(image) => Some(valor_telegram::photos::OutgoingPhoto {
            chat_id: chat,
            image,
            caption: CHART_CAPTION.to_owned(),
        }),
        Err(e) => {
            tracing::warn!(chat_id = chat, error = %e, path = %path.display(), "cannot read the report's chart");
            None
        }
    }
}

/// Sends reports through the running Telegram channel (paced with the chat's messages).
pub fn channel_sender(channel: valor_telegram::channel::TelegramChannel) -> Sender {
    Arc::new(move |out: Outgoing| {
        channel.post_text(out.chat, &out.text);
        if let Some(photo) = out.chart.and_then(|path| chart(out.chat, &path)) {
            channel.post_photo(photo);
        }
        let channel = channel.clone();
        Box::pin(async move {
            let mut result = Ok(());
            for candidate in out.candidates {
                let asked = channel.propose(proposal(out.chat, candidate, &out.source));
                if let Err(e) = asked.await {
                    result = Err(e.to_string());
                }
            }
            result
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_skip_is_told_to_the_report_chat_once_per_reason() {
        let sent: Arc<std::sync::Mutex<Vec<(i64, String)>>> = Arc::default();
        let heard = Arc::clone(&sent);
        let send: Sender = Arc::new(move |out: Outgoing| {
            heard.lock().unwrap().push((out.chat, out.text));
            Box::pin(async { Ok(()) })
        });
        let skips = SkipNotice::default();
        let busy = "skipped (dd-1): 5 turns are waiting";
        for line in [
            busy,
            busy,
            "dd-2: report.md (sent to Telegram chat 9)",
            busy,
            "skipped (dd-4): health is red",
        ] {
            skips.after_run(9, Some(&send), line).await;
        }
        let told = sent.lock().unwrap().clone();
        assert_eq!(told.len(), 3, "{told:?}");
        assert!(told.iter().all(|(chat, _)| *chat == 9));
        assert!(told[0].1.contains("5 turns are waiting"), "{told:?}");
        assert!(told[2].1.contains("health is red"), "{told:?}");
        // No report chat: nobody to tell.
        SkipNotice::default().after_run(0, Some(&send), busy).await;
        assert_eq!(sent.lock().unwrap().len(), 3);
    }
}
