//! The six phases of one daydream, under one session id (in every log line, through the
//! `daydream` span, and in the report):
//!
//! 1. readiness: skipped, with the reason, when more than `max_pending_turns` turns wait, health
//!    is unhealthy, or the store is unavailable;
//! 2. pre-cleanup: the host ends Valor's Claude Code processes older than 24 h and removes old
//!    temp artifacts; this run's temp directory is made;
//! 3. context: every workspace (git, stack, code map, changed functions) and the usage trends;
//! 4. analysis: one prompt through the backend, with a hard limit; on timeout or failure the
//!    report is still written, marked degraded;
//! 5. output: the report written and archived (newest 10 kept), handed to the host to deliver;
//! 6. post-cleanup: whatever the run started is ended, its temp directory removed, the phase
//!    timings recorded.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Each run works in a temporary folder named with this prefix (the cleanup removes old ones
/// a crash left behind).
pub const RUN_DIR_PREFIX: &str = "valor-daydream-";

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use valor_core::Backend;
use valor_protocol::TurnRequest;
use valor_protocol::records::RunRecord;

use crate::analytics::Trends;
use crate::report::write_report;
use crate::{MapCache, WorkspaceContext, gather_workspaces};

pub use valor_protocol::turn::DAYDREAM_CHAT_ID;

pub type HostFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What phase 1 looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub pending_turns: usize,
    /// `ok`, `degraded` or `unhealthy`.
    pub health: String,
    pub store: Result<(), String>,
}

/// What the daydream needs from the agent around it.
pub trait Host: Send + Sync {
    fn readiness(&self) -> Readiness;
    /// Phase 2: ends stale processes, removes old temp artifacts; one line per thing done.
    fn pre_cleanup(&self) -> HostFuture<'_, Vec<String>>;
    fn runs_since(&self, since_ms: u64) -> HostFuture<'_, Vec<RunRecord>>;
    /// Health scores over time (the resource monitor's samples), oldest first.
    fn health_history(&self) -> HostFuture<'_, Vec<(DateTime<Utc>, u8)>>;
    /// Phase 5: sends the summary (and chart) to the admin chat; says where it went.
    fn deliver<'a>(&'a self, report: &'a DaydreamReport) -> HostFuture<'a, Result<String, String>>;
}

#[derive(Clone)]
pub struct DaydreamSettings {
    /// Workspaces studied every time.
    pub workspaces: Vec<PathBuf>,
    /// The chats' folders.
    pub chats: Option<valor_chatfs::ChatFs>,
    /// Where git runs on the workspaces.
    pub git: crate::git::GitJail,
    /// The chat the report goes to: of the chats' workspaces only its own is studied, so no
    /// chat's files reach another chat through the report (chats are tenants).
    pub report_chat: Option<i64>,
    /// `logs/`: the report and its archive.
    pub logs_dir: PathBuf,
    pub keep_reports: usize,
    pub analysis_timeout: Duration,
    pub max_pending_turns: usize,
    /// The model for the analysis (`None`: the backend's default).
    pub model: Option<String>,
    /// Where this run's temp directory goes.
    pub temp_dir: PathBuf,
}

impl DaydreamSettings {
    /// The report chat's own workspace (when it has one), then the configured ones. Other
    /// chats' workspaces are never studied here: their content would reach the report chat.
    pub fn workspace_paths(&self) -> Vec<PathBuf> {
        let own = match (&self.chats, self.report_chat) {
            (Some(chats), Some(chat)) if chat != DAYDREAM_CHAT_ID => chats
                .existing_workspace(chat)
                .ok()
                .flatten()
                .map(|dir| dir.path().to_owned()),
            _ => None,
        };
        own.into_iter()
            .chain(self.workspaces.iter().cloned())
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Readiness,
    PreCleanup,
    Context,
    Analysis,
    Output,
    PostCleanup,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Readiness,
        Phase::PreCleanup,
        Phase::Context,
        Phase::Analysis,
        Phase::Output,
        Phase::PostCleanup,
    ];

    pub fn number(self) -> usize {
        Phase::ALL.iter().position(|p| *p == self).unwrap_or(0) + 1
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Readiness => "readiness",
            Phase::PreCleanup => "pre-cleanup",
            Phase::Context => "context",
            Phase::Analysis => "analysis",
            Phase::Output => "output",
            Phase::PostCleanup => "post-cleanup",
        }
    }
}

/// What a daydream produced, for the host to deliver and the caller to show.
#[derive(Debug, Clone)]
pub struct DaydreamReport {
    pub session_id: String,
    pub at: DateTime<Utc>,
    pub markdown: String,
    /// The model's insights alone (none when degraded).
    pub analysis: Option<String>,
    /// Facts the analysis suggests remembering: asked in the chat, never stored unasked.
    pub candidates: Vec<String>,
    /// A few lines for the chat.
    pub summary: String,
    /// Why the analysis is missing, when it is.
    pub degraded: Option<String>,
    pub trends: Trends,
    pub report_path: PathBuf,
    /// The PNG chart, or why there is none.
    pub chart: Result<PathBuf, String>,
}

/// How a daydream ended.
#[derive(Debug, Clone)]
pub struct DaydreamOutcome {
    pub session_id: String,
    /// Phase 1 said no: why.
    pub skipped: Option<String>,
    pub report: Option<DaydreamReport>,
    /// Where the summary went, or why it did not.
    pub delivered: Option<Result<String, String>>,
    pub cleaned: Vec<String>,
    pub timings: Vec<(Phase, Duration)>,
}

pub struct Daydream {
    pub settings: DaydreamSettings,
    host: Arc<dyn Host>,
    backend: Arc<dyn Backend>,
    cache: MapCache,
}

/// Progress as phases start and end: (phase, a line about it).
pub type Progress<'a> = &'a (dyn Fn(Phase, &str) + Sync);

fn session_id(now: DateTime<Utc>) -> String {
    format!(
        "dd-{}-{:04x}",
        now.format("%Y%m%d-%H%M%S"),
        std::process::id() as u16 ^ (now.timestamp_subsec_nanos() as u16)
    )
}

impl Daydream {
    pub fn new(
        settings: DaydreamSettings,
        host: Arc<dyn Host>,
        backend: Arc<dyn Backend>,
        cache: MapCache,
    ) -> Daydream {
        Daydream {
            settings,
            host,
            backend,
            cache,
        }
    }

    /// The code-map cache (saved by the caller between daydreams).
    pub fn cache(&self) -> &MapCache {
        &self.cache
    }

    /// One daydream. `since` is the last one (for "changed since"); `now` the time of this one.
    pub async fn run(
        &self,
        since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        progress: Progress<'_>,
    ) -> DaydreamOutcome {
        let session = session_id(now);
        let span = tracing::info_span!("daydream", session = %session);
        self.phases(session, since, now, progress)
            .instrument(span)
            .await
    }

    async fn phases(
        &self,
        session: String,
        since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        progress: Progress<'_>,
    ) -> DaydreamOutcome {
        let mut outcome = DaydreamOutcome {
            session_id: session.clone(),
            skipped: None,
            report: None,
            delivered: None,
            cleaned: Vec::new(),
            timings: Vec::new(),
        };
        let mut clock = Instant::now();
        let mut done = |outcome: &mut DaydreamOutcome, phase: Phase, line: &str| {
            let took = clock.elapsed();
            clock = Instant::now();
            outcome.timings.push((phase, took));
            tracing::info!(
                phase = phase.as_str(),
                ms = took.as_millis() as u64,
                "{line}"
            );
            progress(phase, line);
        };

        // 1. Readiness.
        let ready = self.host.readiness();
        let refusal = if ready.pending_turns > self.settings.max_pending_turns {
            Some(format!(
                "{} turns are waiting (more than {})",
                ready.pending_turns, self.settings.max_pending_turns
            ))
        } else if ready.health == "unhealthy" {
            Some("Valor's health is unhealthy".to_owned())
        } else {
            ready
                .store
                .as_ref()
                .err()
                .map(|e| format!("the store is unavailable: {e}"))
        };
        if let Some(reason) = refusal {
            done(
                &mut outcome,
                Phase::Readiness,
                &format!("skipped: {reason}"),
            );
            outcome.skipped = Some(reason);
            return outcome;
        }
        done(
            &mut outcome,
            Phase::Readiness,
            &format!(
                "ready ({} turns waiting, health {})",
                ready.pending_turns, ready.health
            ),
        );

        // 2. Pre-cleanup, and this run's temp directory.
        outcome.cleaned = self.host.pre_cleanup().await;
        let temp = self
            .settings
            .temp_dir
            .join(format!("{RUN_DIR_PREFIX}{session}"));
        if let Err(e) = std::fs::create_dir_all(&temp) {
            tracing::warn!(error = %e, "cannot make the daydream's temp directory");
        }
        let cleaned = if outcome.cleaned.is_empty() {
            "nothing to clean".to_owned()
        } else {
            outcome.cleaned.join("; ")
        };
        done(&mut outcome, Phase::PreCleanup, &cleaned);

        // 3. Context.
        let workspaces = {
            let (paths, cache) = (self.settings.workspace_paths(), self.cache.clone());
            let jail = self.settings.git.clone();
            tokio::task::spawn_blocking(move || {
                gather_workspaces(&paths, since, now, &cache, &jail)
            })
            .await
            .unwrap_or_default()
        };
        let week_ago =
            u64::try_from((now - chrono::Duration::days(7)).timestamp_millis()).unwrap_or(0);
        let trends = Trends::of(&self.host.runs_since(week_ago).await, now);
        let files: usize = workspaces.iter().map(|w| w.code.files.len()).sum();
        done(
            &mut outcome,
            Phase::Context,
            &format!(
                "{} workspaces, {files} source files, {} turns in 7 days",
                workspaces.len(),
                trends.turns
            ),
        );

        // 4. Analysis, with a hard limit.
        let prompt = crate::prompt::build(&workspaces, &trends);
        let cancel = CancellationToken::new();
        let (analysis, degraded) = self.analyse(prompt, &cancel).await;
        done(
            &mut outcome,
            Phase::Analysis,
            &degraded.clone().map_or_else(
                || "insights written".to_owned(),
                |d| format!("degraded: {d}"),
            ),
        );

        // 5. Output.
        let markdown = render(
            &session,
            now,
            &workspaces,
            &trends,
            analysis.as_deref(),
            degraded.as_deref(),
            &outcome,
        );
        match write_report(
            &self.settings.logs_dir,
            &markdown,
            now,
            &session,
            self.settings.keep_reports,
        ) {
            Ok(written) => {
                let chart_path = self.settings.logs_dir.join(crate::report::CHART_FILE);
                let health = self.host.health_history().await;
                let chart =
                    crate::chart::render(&chart_path, &trends, &health).map_err(|e| e.to_string());
                if let Err(e) = &chart {
                    tracing::warn!(error = %e, "the report goes without its chart");
                }
                let report = DaydreamReport {
                    chart,
                    candidates: analysis
                        .as_deref()
                        .map(crate::prompt::candidates)
                        .unwrap_or_default(),
                    analysis: analysis.clone(),
                    session_id: session.clone(),
                    at: now,
                    summary: summary(
                        &session,
                        &workspaces,
                        &trends,
                        analysis.as_deref(),
                        degraded.as_deref(),
                    ),
                    markdown,
                    degraded,
                    trends,
                    report_path: written.report.clone(),
                };
                let delivered = self.host.deliver(&report).await;
                let line = match &delivered {
                    Ok(to) => format!("{} (sent: {to})", written.report.display()),
                    Err(e) => format!("{} (not sent: {e})", written.report.display()),
                };
                outcome.delivered = Some(delivered);
                outcome.report = Some(report);
                done(&mut outcome, Phase::Output, &line);
            }
            Err(e) => {
                done(
                    &mut outcome,
                    Phase::Output,
                    &format!("cannot write the report: {e}"),
                );
            }
        }

        // 6. Post-cleanup: end what this run started, remove its temp files.
        cancel.cancel();
        let removed = std::fs::remove_dir_all(&temp).is_ok();
        let timings: Vec<String> = outcome
            .timings
            .iter()
            .map(|(p, d)| format!("{} {} ms", p.as_str(), d.as_millis()))
            .collect();
        done(
            &mut outcome,
            Phase::PostCleanup,
            &format!(
                "{}; timings: {}",
                if removed {
                    "temp files removed"
                } else {
                    "no temp files"
                },
                timings.join(", ")
            ),
        );
        outcome
    }

    /// The analysis, or (`None`, why) when it failed or ran out of time.
    async fn analyse(
        &self,
        prompt: String,
        cancel: &CancellationToken,
    ) -> (Option<String>, Option<String>) {
        let mut request = TurnRequest::new(DAYDREAM_CHAT_ID, prompt);
        request.fresh_session = true;
        // The analysis reads what chats wrote: it may not write or run anything itself.
        request.read_only = true;
        request.model = self.settings.model.clone();
        request.cancel = cancel.clone();
        let stream = self.backend.start(request);
        match tokio::time::timeout(self.settings.analysis_timeout, stream.finish()).await {
            Ok(Ok(summary)) if !summary.text.trim().is_empty() => (Some(summary.text), None),
            Ok(Ok(_)) => (None, Some("the analysis came back empty".to_owned())),
            Ok(Err(e)) => (None, Some(format!("the analysis failed: {e}"))),
            Err(_) => {
                cancel.cancel();
                (
                    None,
                    Some(format!(
                        "the analysis did not finish within {} s",
                        self.settings.analysis_timeout.as_secs_f64()
                    )),
                )
            }
        }
    }
}

fn render(
    session: &str,
    now: DateTime<Utc>,
    workspaces: &[WorkspaceContext],
    trends: &Trends,
    analysis: Option<&str>,
    degraded: Option<&str>,
    outcome: &DaydreamOutcome,
) -> String {
    use std::fmt::Write as _;
    let mut md = format!(
        "# Daydream insights\n\nSession `{session}`, {}\n\n",
        now.format("%Y-%m-%d %H:%M UTC")
    );
    match (analysis, degraded) {
        (Some(text), _) => {
            let _ = writeln!(md, "{}\n", text.trim());
        }
        (None, Some(why)) => {
            let _ = writeln!(
                md,
                "> **Degraded:** {why}. The context below was gathered; no analysis.\n"
            );
        }
        (None, None) => {}
    }
    let _ = writeln!(md, "## Workspaces\n");
    for ws in workspaces {
        let _ = write!(md, "### {}\n\n", ws.name);
        if let Some(git) = &ws.git {
            let _ = writeln!(
                md,
                "- branch `{}`, {} uncommitted files, {} commits in 7 days",
                git.branch, git.changed_files, git.commits_last_week
            );
        }
        if !ws.stack.is_empty() {
            let _ = writeln!(md, "- stack: {}", ws.stack.join("; "));
        }
        for (language, (files, functions, lines)) in ws.code.per_language() {
            let _ = writeln!(
                md,
                "- {}: {files} files, {functions} functions, {lines} lines",
                language.as_str()
            );
        }
        if !ws.changed_functions.is_empty() {
            let _ = writeln!(
                md,
                "- changed since the last daydream: {} functions",
                ws.changed_functions.len()
            );
            for changed in ws.changed_functions.iter().take(15) {
                let _ = writeln!(
                    md,
                    "  - `{}` in {}",
                    changed.function.signature,
                    changed.file.display()
                );
            }
        }
        for problem in &ws.problems {
            let _ = writeln!(md, "- note: {problem}");
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "## Usage, last 7 days\n\n{} turns in {} chats, {:.0}% succeeded, ${:.2}\n",
        trends.turns,
        trends.chats,
        trends.success_rate * 100.0,
        trends.cost_usd
    );
    md.push_str("| day | turns | failed | cost |\n|---|---|---|---|\n");
    for day in &trends.days {
        let _ = writeln!(
            md,
            "| {} | {} | {} | ${:.2} |",
            day.date, day.turns, day.failed, day.cost_usd
        );
    }
    let _ = writeln!(md, "\n## Run\n");
    if !outcome.cleaned.is_empty() {
        let _ = writeln!(md, "- cleaned: {}", outcome.cleaned.join("; "));
    }
    for (phase, took) in &outcome.timings {
        let _ = writeln!(
            md,
            "- phase {} {}: {} ms",
            phase.number(),
            phase.as_str(),
            took.as_millis()
        );
    }
    md
}

fn summary(
    session: &str,
    workspaces: &[WorkspaceContext],
    trends: &Trends,
    analysis: Option<&str>,
    degraded: Option<&str>,
) -> String {
    let changed: usize = workspaces.iter().map(|w| w.changed_functions.len()).sum();
    let mut text = format!(
        "Daydream {session}: {} workspaces, {changed} functions changed; {} turns this week, \
         {:.0}% succeeded, ${:.2}.",
        workspaces.len(),
        trends.turns,
        trends.success_rate * 100.0,
        trends.cost_usd
    );
    match (analysis, degraded) {
        (Some(analysis), _) => {
            // The first insight lines, for the chat; the report has the rest.
            let lines: Vec<&str> = analysis
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("- ") || l.starts_with("* ") || l.starts_with("1."))
                .take(3)
                .collect();
            for line in lines {
                text.push('\n');
                text.push_str(line);
            }
        }
        (None, Some(why)) => {
            text.push_str(&format!("\nDegraded: {why}."));
        }
        (None, None) => {}
    }
    text
}
