//! The dashboard's wiring: what `valor run` shows through it (`AgentView`), and `valor
//! dashboard`, which asks the running agent for a one-time login link and prints it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use valor_core::Conversations;
use valor_dashboard::live::{Pulse, Topic};
use valor_dashboard::pages::turns::TurnFilter;
use valor_dashboard::{
    AlertRow, ChatRow, ComponentRow, LearningRow, MemoryQuery, MemoryRow, Overview, QuestionRow,
    SilenceRow, Source,
};
use valor_monitor::ResourceMonitor;
use valor_protocol::analytics::RunAnalytics;
use valor_protocol::health::{HealthPoint, Resolution};
use valor_protocol::jobs::JobRunRecord;
use valor_protocol::records::{RunRecord, TurnText};
use valor_protocol::{Event, Op};
use valor_scheduler::{JobStatus, RunContext, Scheduler};

/// The running agent as the dashboard sees it.
pub struct AgentView {
    pub monitor: Arc<ResourceMonitor>,
    pub conversations: Conversations,
    /// The chats' records: this store, or every node's in the cluster's database.
    pub records: Arc<dyn crate::view_records::ViewRecords>,
    pub scheduler: Arc<Scheduler>,
    pub memory: valor_memory::Memory,
    /// The model routing is measured against, priced (`[routing] biggest_model`, `prices`).
    pub baseline: Option<(String, [f64; 2])>,
    /// Where the daydream writes its reports and chart (`[daydream] logs_dir`).
    pub reports_dir: PathBuf,
}

/// The dashboard's versions, moved by the parts it shows: turns (the conversation service),
/// health (the monitor's samples and parts), jobs (the scheduler), alerts.
pub fn pulse(
    monitor: &Arc<ResourceMonitor>,
    conversations: &Conversations,
    scheduler: &Arc<Scheduler>,
) -> Pulse {
    let pulse = Pulse::default();
    pulse.follow(Topic::Turns, conversations.activity());
    pulse.follow(Topic::Health, monitor.updates());
    pulse.follow(Topic::Jobs, scheduler.updates());
    let mut changes = monitor.alert_changes();
    let alerts = pulse.clone();
    tokio::spawn(async move {
        loop {
            match changes.recv().await {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    alerts.bump(Topic::Alerts)
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    pulse
}

/// A page shows nothing of what it could not read; the log says why.
fn unread<T: Default>(what: &str, error: &anyhow::Error) -> T {
    tracing::warn!(what, error = %error, "the dashboard cannot read the store");
    T::default()
}

/// The dashboard's sessions in the store.
pub struct StoredSessions(pub valor_store::Store);

fn failure(e: valor_store::StoreError) -> valor_protocol::StoreFailure {
    valor_protocol::StoreFailure::failed(e)
}

#[async_trait::async_trait]
impl valor_dashboard::auth::SessionBook for StoredSessions {
    async fn sessions(
        &self,
    ) -> Result<Vec<valor_protocol::records::DashboardSession>, valor_protocol::StoreFailure> {
        (self.0.blocking(|s| s.dashboard_sessions()).await).map_err(failure)
    }

    async fn put(
        &self,
        session: &valor_protocol::records::DashboardSession,
    ) -> Result<(), valor_protocol::StoreFailure> {
        let session = session.clone();
        (self
            .0
            .blocking(move |s| s.put_dashboard_session(&session))
            .await)
            .map_err(failure)?;
        self.0.commit().await.map_err(failure)
    }

    async fn remove(&self, key: &str) -> Result<(), valor_protocol::StoreFailure> {
        let key = key.to_owned();
        (self
            .0
            .blocking(move |s| s.remove_dashboard_session(&key))
            .await)
            .map_err(failure)?;
        self.0.commit().await.map_err(failure)
    }
}

/// An alert as the dashboard lists it.
fn alert_row(r: valor_monitor::monitor::AlertRecord) -> AlertRow {
    AlertRow {
        kind: kind_name(r.alert.kind),
        acknowledged_ms: r.acknowledged_ms,
        severity: format!("{:?}", r.alert.severity),
        message: r.alert.message,
        action: r.alert.action,
        raised_ms: r.raised_ms,
        cleared_ms: r.cleared_ms,
        ended_by_restart: r.ended_by_restart,
        done: r.done,
    }
}

/// An alert kind as the dashboard names it (`telegram`, `process_memory`).
fn kind_name(kind: valor_monitor::AlertKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// An alert kind from its name; `None` for a name that is none.
fn kind_of(name: &str) -> Option<valor_monitor::AlertKind> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

/// A report or chart larger than this is not shown (the daydream writes a few KB).
const SHOWN_FILE_MAX: u64 = 8 * 1024 * 1024;

/// A file of the reports folder, when it is there and not oversized.
fn read_bounded(path: &std::path::Path) -> Option<Vec<u8>> {
    let size = std::fs::metadata(path).ok()?.len();
    if size > SHOWN_FILE_MAX {
        tracing::warn!(path = %path.display(), size, "too large to show on the dashboard");
        return None;
    }
    std::fs::read(path).ok()
}

/// `[routing] biggest_model` and its price, found by a word of the model's name.
pub fn baseline(routing: &valor_config::RoutingConfig) -> Option<(String, [f64; 2])> {
    let model = routing.biggest_model.trim();
    let price = (routing.prices.iter())
        .find(|(word, _)| model.contains(word.as_str()))
        .map(|(_, price)| *price)?;
    Some((model.to_owned(), price))
}

fn memory_row(d: valor_store::Document) -> MemoryRow {
    MemoryRow {
        id: d.id,
        kind: d.kind.as_str().to_owned(),
        chat_id: d.chat_id,
        at_ms: d.at_ms,
        title: d.title,
        text: d.text,
        ..MemoryRow::default()
    }
}

impl AgentView {
    /// A chat's row from its record and what the conversation service knows of it now (its
    /// run figures left at 0).
    fn chat_row(&self, chat: valor_store::ChatRecord, node: Option<String>) -> ChatRow {
        let live = self.conversations.live_status(chat.chat_id);
        let running = live.running;
        ChatRow {
            chat_id: chat.chat_id,
            name: chat.title,
            last_at_ms: chat.last_at_ms,
            messages: chat.messages,
            turns: 0,
            cost_usd: 0.0,
            context: live.context.map(|f| {
                (
                    f.messages_before,
                    f.messages_after,
                    f.tokens_before,
                    f.tokens_after,
                )
            }),
            pending: live.pending,
            session: (running.as_ref())
                .and_then(|p| p.session_id.clone())
                .or(live.live_session),
            running,
            node,
        }
    }
}

#[async_trait::async_trait]
impl Source for AgentView {
    async fn overview(&self) -> Overview {
        let report = self.monitor.report();
        let (running, queued) = self.conversations.load();
        let started = self.monitor.started_ms();
        // The whole of /health: the resources' components, then the parts'.
        let mut components: Vec<ComponentRow> = (report.iter().flat_map(|r| r.components.iter()))
            .map(|(name, c)| ComponentRow {
                name: (*name).to_owned(),
                status: c.status.as_str().to_owned(),
                since_ms: started,
                last_error: None,
            })
            .collect();
        let parts = self.monitor.check_components();
        let mut status = report.as_ref().map(|r| r.status);
        for part in parts {
            status = Some(status.map_or(part.status, |s| s.max(part.status)));
            components.push(ComponentRow {
                name: part.name,
                status: part.status.as_str().to_owned(),
                since_ms: part.since_ms,
                last_error: part.last_error,
            });
        }
        let active = self.monitor.active_alerts();
        let log = self.monitor.alert_log().await;
        let alerts = (active.iter())
            .map(|a| {
                let raised = (log.iter())
                    .find(|r| r.alert.kind == a.kind && r.cleared_ms.is_none())
                    .map_or(a.since * 1000, |r| r.raised_ms);
                AlertRow {
                    kind: kind_name(a.kind),
                    severity: format!("{:?}", a.severity),
                    message: a.message.clone(),
                    action: a.action.clone(),
                    raised_ms: raised,
                    ..AlertRow::default()
                }
            })
            .collect();
        let findings = self.monitor.findings();
        Overview {
            unusual: findings.anomalies.iter().map(|a| a.describe()).collect(),
            forecasts: (findings.forecasts.iter())
                .map(|f| f.describe(findings.at_ms))
                .collect(),
            trends_at_ms: findings.at_ms,
            status: status.map_or("unknown", |s| s.as_str()).to_owned(),
            score: report.as_ref().map_or(0, |r| r.score),
            uptime_secs: self.monitor.uptime().as_secs(),
            components,
            alerts,
            running,
            queued,
        }
    }

    async fn health_points(&self, since_ms: u64) -> Vec<HealthPoint> {
        self.monitor
            .health_points(Resolution::Minute, since_ms)
            .await
    }

    async fn runs_since(&self, since_ms: u64) -> Vec<RunRecord> {
        (self.records.runs_since(since_ms).await).unwrap_or_else(|e| unread("runs", &e))
    }

    async fn jobs(&self) -> Vec<JobStatus> {
        self.scheduler.status().await
    }

    async fn run_job(&self, name: &str) -> Result<(), String> {
        if !self.scheduler.specs().iter().any(|s| s.name == name) {
            return Err(format!("there is no job called {name:?}"));
        }
        let (scheduler, name) = (Arc::clone(&self.scheduler), name.to_owned());
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        runtime.spawn(async move {
            let context = RunContext {
                due: None,
                catch_up: false,
            };
            if let Err(e) = scheduler.fire(&name, context).await {
                tracing::warn!(job = name, error = %e, "the job asked for on the dashboard did not run");
            }
        });
        Ok(())
    }

    async fn pause_job(&self, name: &str, paused: bool) -> Result<(), String> {
        (self.scheduler.set_paused(name, paused).await).map_err(|e| e.to_string())
    }

    async fn job_runs(&self, limit: usize) -> Vec<JobRunRecord> {
        self.scheduler.runs(limit).await
    }

    async fn reports(&self) -> Vec<String> {
        let archive = self.reports_dir.join(valor_daydream::report::ARCHIVE_DIR);
        let mut names: Vec<String> = (std::fs::read_dir(archive).into_iter().flatten())
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| valor_dashboard::reports::is_report_name(name))
            .collect();
        names.sort_unstable_by(|a, b| b.cmp(a));
        names
    }

    async fn report(&self, name: Option<&str>) -> Option<String> {
        let path = match name {
            None => self.reports_dir.join(valor_daydream::report::REPORT_FILE),
            Some(name) if valor_dashboard::reports::is_report_name(name) => (self.reports_dir)
                .join(valor_daydream::report::ARCHIVE_DIR)
                .join(name),
            Some(_) => return None,
        };
        String::from_utf8(read_bounded(&path)?).ok()
    }

    async fn chart(&self) -> Option<Vec<u8>> {
        read_bounded(&self.reports_dir.join(valor_daydream::report::CHART_FILE))
    }

    async fn chats(&self) -> Vec<ChatRow> {
        let since = valor_protocol::time::now_ms().saturating_sub(30 * 86_400_000);
        let runs = (self.records.runs_since(since).await).unwrap_or_else(|e| unread("runs", &e));
        let chats = (self.records.chats().await).unwrap_or_else(|e| unread("chats", &e));
        let mut nodes = (self.records.chat_nodes().await).unwrap_or_else(|e| unread("holders", &e));
        let by_chat = RunAnalytics::of(&runs).by_chat;
        let mut rows: Vec<ChatRow> = (chats.into_iter())
            .filter(|chat| !valor_protocol::turn::is_background_chat(chat.chat_id))
            .map(|chat| {
                let totals = by_chat.get(&chat.chat_id).cloned().unwrap_or_default();
                let node = nodes.remove(&chat.chat_id);
                let mut row = self.chat_row(chat, node);
                row.turns = totals.turns;
                row.cost_usd = totals.cost_usd;
                row
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.last_at_ms));
        rows
    }

    async fn chat(&self, chat_id: i64) -> Option<ChatRow> {
        let chat = self.records.chat(chat_id).await.ok().flatten()?;
        let node = (self.records.chat_nodes().await).ok()?.remove(&chat_id);
        Some(self.chat_row(chat, node))
    }

    async fn stop(&self, chat_id: i64) -> bool {
        let mut events = self.conversations.submit(Op::Interrupt { chat_id });
        let here = matches!(
            events.try_next(),
            Some(Event::Interrupted { was_running: true })
        );
        // In a cluster the chat's turn may run on another node: that node is asked too.
        here || self.records.stop_elsewhere(chat_id).await
    }

    async fn search(&self, query: &MemoryQuery) -> Vec<MemoryRow> {
        let mut search = valor_memory::Query::new(query.text.as_str(), 20);
        search.filter.chat_id = query.chat;
        search.filter.include_shared = query.chat.is_some();
        if let Some(kind) = &query.kind {
            match valor_store::MemoryKind::ALL
                .iter()
                .find(|k| k.as_str() == kind)
            {
                Some(kind) => search.filter.kinds = vec![*kind],
                None => return Vec::new(),
            }
        }
        search.filter.since_ms = (query.days)
            .map(|d| valor_protocol::time::now_ms().saturating_sub(u64::from(d) * 86_400_000));
        match self.memory.search(&search).await {
            Ok(result) => (result.hits.into_iter())
                .map(|h| MemoryRow {
                    id: h.id,
                    kind: h.kind.as_str().to_owned(),
                    chat_id: h.chat_id,
                    at_ms: h.at_ms,
                    title: h.title,
                    text: h.snippet,
                    score: Some(h.score),
                    similarity: h.similarity,
                    keyword: h.keyword_match,
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "dashboard memory search failed");
                Vec::new()
            }
        }
    }

    async fn memory(&self, id: u64) -> Option<MemoryRow> {
        self.records
            .document(id)
            .await
            .ok()
            .flatten()
            .map(memory_row)
    }

    async fn learnings(&self) -> Vec<LearningRow> {
        let mut all = (self.records.learnings().await).unwrap_or_else(|e| unread("learnings", &e));
        all.sort_by_key(|l| (l.chat_id, l.number));
        (all.into_iter())
            .map(|l| LearningRow {
                chat_id: l.chat_id,
                number: l.number,
                category: l.category.as_str().to_owned(),
                confidence: l.confidence,
                times_seen: l.times_seen,
                origin: match (&l.trigger, l.manual) {
                    (_, true) => "remembered by the user".to_owned(),
                    (Some(trigger), false) => format!("asked about ({trigger}) and kept"),
                    (None, false) => "learned".to_owned(),
                },
                created_ms: l.created_ms,
                updated_ms: l.updated_ms,
                sources: l.sources,
                content: l.content,
                retired: l.retired.map(|r| r.reason),
            })
            .collect()
    }

    async fn forget(&self, chat_id: i64, number: u64) -> String {
        let mut events = self.conversations.submit(Op::Command {
            chat_id,
            command: valor_protocol::Command::Forget(Some(number)),
            source: "dashboard".to_owned(),
            by: None,
        });
        match events.next().await {
            Some(Event::Reply(text)) => text,
            _ => "Sorry, that failed.".to_owned(),
        }
    }

    async fn baseline(&self) -> Option<(String, [f64; 2])> {
        self.baseline.clone()
    }

    async fn chat_names(&self) -> BTreeMap<i64, String> {
        let chats = (self.records.chats().await).unwrap_or_else(|e| unread("chats", &e));
        (chats.into_iter())
            .filter_map(|chat| Some((chat.chat_id, chat.title?)))
            .collect()
    }

    async fn latest_turns(
        &self,
        limit: usize,
        filter: TurnFilter,
        chat: Option<i64>,
    ) -> Vec<RunRecord> {
        let keep =
            move |run: &RunRecord| filter.keeps(run) && chat.is_none_or(|c| run.chat_id == c);
        (self.records.latest_runs(limit, Box::new(keep)).await)
            .unwrap_or_else(|e| unread("runs", &e))
    }

    async fn turn(
        &self,
        started_at_ms: u64,
        chat_id: i64,
    ) -> Option<(RunRecord, Option<TurnText>)> {
        self.records
            .turn(started_at_ms, chat_id)
            .await
            .ok()
            .flatten()
    }

    async fn chat_memories(&self, chat_id: i64, limit: usize) -> Vec<MemoryRow> {
        let read = self.records.chat_memories(chat_id, limit).await;
        (read.unwrap_or_else(|e| unread("memories", &e)).into_iter())
            .map(memory_row)
            .collect()
    }

    async fn approvals(
        &self,
        chat_id: Option<i64>,
        limit: usize,
    ) -> Vec<valor_protocol::approval::ApprovalRecord> {
        let read = self.conversations.approvals(chat_id, limit).await;
        read.unwrap_or_else(|e| unread("approvals", &anyhow::anyhow!(e)))
    }

    async fn caps(&self) -> valor_dashboard::Caps {
        let Some(budget) = self.conversations.budget() else {
            return valor_dashboard::Caps::default();
        };
        let unit = budget.settings().unit;
        let rows: Vec<valor_core::budget::CapStanding> = (budget.overview().await)
            .unwrap_or_else(|e| unread("spend counters", &anyhow::anyhow!(e)));
        let now = valor_protocol::time::now_ms();
        valor_dashboard::Caps {
            rows: (rows.into_iter())
                .map(|row| valor_dashboard::CapRow {
                    who: valor_core::budget::scope_name(row.key.scope),
                    period: row.key.period.current().to_owned(),
                    spent: unit.show(row.spent),
                    cap: (row.cap > 0.0).then(|| unit.show(row.cap)),
                    share: (row.cap > 0.0).then(|| row.spent / row.cap),
                    resets_ms: row.resets_at_ms,
                })
                .collect(),
            usage_window: budget.usage_window().map(|w| match w.resets_at_ms {
                Some(at) => format!(
                    "{} ({}) until {}",
                    w.status,
                    w.window,
                    valor_protocol::time::clock_time(at, now)
                ),
                None => format!("{} ({})", w.status, w.window),
            }),
        }
    }

    async fn alerts(&self) -> Vec<AlertRow> {
        (self.monitor.alert_log().await.into_iter())
            .map(alert_row)
            .collect()
    }

    async fn questions(&self) -> Vec<QuestionRow> {
        let read = self.records.latest_proposals(200).await;
        (read.unwrap_or_else(|e| unread("questions", &e)).into_iter())
            .map(|p| QuestionRow {
                id: p.id,
                chat_id: p.chat_id,
                state: p.state.as_str().to_owned(),
                why: (p.learning.as_ref())
                    .and_then(|l| l.trigger.clone())
                    .unwrap_or_else(|| p.kind.as_str().to_owned()),
                source_message: p.learning.and_then(|l| l.source_message),
                created_ms: p.created_ms,
                text: p.text,
            })
            .collect()
    }

    async fn decide_question(&self, chat_id: i64, id: u64, yes: bool) -> String {
        let mut events = self.conversations.submit(Op::Answer {
            chat_id,
            question: id,
            yes,
            operator: true,
        });
        match events.next().await {
            Some(Event::Answered(answered)) => answered.reply,
            _ => "Sorry, that failed.".to_owned(),
        }
    }

    async fn acknowledge_alert(&self, kind: &str) -> String {
        match kind_of(kind) {
            Some(k) if self.monitor.acknowledge(k) => format!("Acknowledged: {}.", k.describe()),
            Some(k) => format!("No active alert about {}.", k.describe()),
            None => "There is no such alert.".to_owned(),
        }
    }

    async fn silence_alert(&self, kind: &str, hours: u32) -> String {
        let Some(k) = kind_of(kind) else {
            return "There is no such alert.".to_owned();
        };
        let until = match hours {
            0 => 0,
            h => valor_protocol::time::now_ms() + u64::from(h) * 3_600_000,
        };
        self.monitor.silence(k, until);
        tracing::info!(kind, hours, "alerts silenced on the dashboard");
        match hours {
            0 => format!(
                "Alerts about {} are told to the admin chat again.",
                k.describe()
            ),
            h => format!(
                "Alerts about {} are not told to the admin chat for {h} h.",
                k.describe()
            ),
        }
    }

    async fn silences(&self) -> Vec<SilenceRow> {
        (self
            .monitor
            .silences(valor_protocol::time::now_ms())
            .into_iter())
        .map(|(kind, until_ms)| SilenceRow {
            kind: kind_name(kind),
            until_ms,
        })
        .collect()
    }
}

#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// Open the link in the browser (xdg-open) as well as printing it.
    #[arg(long)]
    open: bool,
}

#[derive(serde::Deserialize)]
struct Link {
    path: String,
}

/// `valor dashboard`: a one-time login link to the dashboard of the running Valor.
pub async fn dashboard(config_path: Option<PathBuf>, args: DashboardArgs) -> ExitCode {
    let loaded = match crate::config_cmd::load(config_path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if !loaded.config.health.dashboard {
        eprintln!("error: the dashboard is off in this configuration ([health] dashboard = false)");
        return ExitCode::FAILURE;
    }
    // The store is free only when no Valor runs: then there is no dashboard to log in to.
    if valor_store::Store::open(&loaded.config.store.path).is_ok() {
        eprintln!(
            "error: Valor is not running; the dashboard is served by `valor run`: start it first"
        );
        return ExitCode::FAILURE;
    }
    let client = match crate::memory_cmd::agent_client(&loaded.config, Duration::from_secs(10)) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {e}\n(the dashboard is served by `valor run`: start it first)");
            return ExitCode::FAILURE;
        }
    };
    let link: Link = match client.post("/ui/login-link", Vec::new()).await {
        Ok(link) => link,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = format!("{}{}", client.base_url().trim_end_matches('/'), link.path);
    println!("{url}");
    eprintln!("(the link works once, within 5 minutes)");
    if args.open {
        match std::process::Command::new("xdg-open").arg(&url).status() {
            Ok(status) if status.success() => {}
            _ => eprintln!("could not open a browser (xdg-open): open the link above by hand"),
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_baseline_is_the_biggest_model_priced_by_a_word_of_its_name() {
        let mut routing = valor_config::RoutingConfig::default();
        assert_eq!(baseline(&routing), Some(("opus".to_owned(), [5.0, 25.0])));
        routing.biggest_model = "claude-sonnet-4-5".to_owned();
        assert_eq!(baseline(&routing).unwrap().1, [3.0, 15.0]);
        routing.biggest_model = "gpt-unknown".to_owned();
        assert_eq!(baseline(&routing), None, "unpriced: no saving shown");
    }
}
