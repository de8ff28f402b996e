//! `valor run`: the long-running service.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use valor_monitor::{ChildRegistry, HealthState, MetricsRegistry, ResourceMonitor, server};

/// Everything in flight must be finished within this after a signal.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

pub async fn run(config_path: Option<PathBuf>) -> ExitCode {
    let started = Instant::now();
    let loaded = match crate::config_cmd::load(config_path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    crate::logging::init(&loaded.config.log.filter, loaded.config.health.dashboard);
    match serve(loaded, started).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "valor run failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(loaded: valor_config::Loaded, started: Instant) -> anyhow::Result<()> {
    let config = loaded.config;
    let loaded_secrets = loaded.secrets;
    let source = loaded.source.path().map_or_else(
        || "built-in defaults".to_owned(),
        |p| p.display().to_string(),
    );
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %source, "valor starting");

    // Signals first, so a signal during start-up is not lost.
    let mut sigterm = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;

    let metrics = MetricsRegistry::new();
    let children = ChildRegistry::new();
    let monitor = ResourceMonitor::new(config.monitor.clone(), children.clone(), &metrics)?;
    // Subscribed before the first sample, so an alert raised at start is told too.
    let alert_changes = monitor.alert_changes();
    // The first sample before serving, so /health never answers without figures.
    monitor.tick()?;

    let agent = crate::agent::Agent::build(
        &config,
        loaded_secrets.database_url.as_ref(),
        &metrics,
        children,
        true,
    )
    .await?
    .refuse_without_required_sandbox()?;
    // Health kept over time in the store: the daydream's chart reads it, restarts keep it.
    let recorder = valor_monitor::history::HealthRecorder::start(Arc::new(agent.store.clone()));
    monitor.keep_history(recorder).await;
    // What an earlier Valor (crashed, killed) left running ends now.
    let reaped = agent.reaper().reap(None).await;
    if !reaped.killed.is_empty() {
        tracing::warn!(
            groups = reaped.killed.len(),
            "ended Claude Code processes left by an earlier run"
        );
    }

    let listener = server::bind(config.health.bind).await?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    // `valor memory` finds the agent that owns the store here (the port may be system-picked).
    if let Err(e) =
        valor_config::tokens::write_api_url(&config.store.path, &crate::health_cmd::base_url(addr))
    {
        tracing::warn!(error = %e, "cannot record the memory API address");
    }
    monitor.add_component(Arc::new(agent.driver.metrics().clone()));
    monitor.add_component(Arc::new(valor_memory::turn::MemoryHealth(
        agent.memory.clone(),
    )));
    let ready = Arc::new(AtomicBool::new(false));
    let metrics_for_learning = metrics.clone();
    let state = HealthState {
        monitor: Arc::clone(&monitor),
        metrics,
        ready: Arc::clone(&ready),
        refresh: vec![
            crate::learning::question_gauges(&metrics_for_learning, &agent.store)?,
            send_fallback_gauges(&metrics_for_learning)?,
        ],
        dashboard: config.health.dashboard,
    };
    let memory_token = valor_config::tokens::api_token(&config.store.path)
        .context("cannot create the memory API token")?;

    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(pg) = agent.shared.cluster.clone() {
        let health = crate::cluster::ClusterHealth::new(&config);
        monitor
            .add_component(Arc::clone(&health) as Arc<dyn valor_monitor::server::HealthComponent>);
        tasks.spawn(crate::cluster::heartbeat(pg, health, shutdown.clone()));
    }
    tasks.spawn(agent.memory.clone().run_worker(shutdown.clone()));
    tasks.spawn(Arc::clone(&monitor).watch_components(shutdown.clone()));
    // Every turn gets its chat's tool servers, hosted on this server (routes added below).
    let grants = valor_tools::host::Grants::default();
    let base_url = agent
        .driver
        .mcp_base_url(&crate::health_cmd::base_url(addr));
    let tools = crate::tool_servers::tool_grant(&config, &base_url, &grants);
    let conversations = agent.conversations(&config, &state.metrics, Some(tools))?;
    // Samples read free disk where the store is and the turns waiting; the trends judge them.
    monitor.watch_disk(config.store.path.clone());
    let waiting = conversations.clone();
    monitor.watch_queue(Arc::new(move || waiting.load().1));
    tasks.spawn(crate::trends::watch(
        Arc::clone(&monitor),
        agent.store.clone(),
        config.monitor.thresholds.clone(),
        shutdown.clone(),
    ));
    // Sessions still open at shutdown are summarised by the service.
    let service = conversations.clone();
    let dashboard_conversations = conversations.clone();
    let channel = telegram(
        &config,
        &loaded_secrets,
        &agent,
        conversations,
        &monitor,
        &state.metrics,
    )
    .await?;
    if let Some(channel) = &channel {
        monitor.add_component(channel.health_component());
    }
    // The resource tick, the reaper, the daydream, question expiry and the cleanup run as
    // scheduled jobs.
    let report_sender = channel.clone().map(crate::daydream::channel_sender);
    let mut scheduler = crate::jobs::scheduler(
        &config,
        &agent,
        &loaded_secrets,
        &monitor,
        report_sender,
        &service,
    )?;
    // Missed runs under the `notify` policy are told to the admin chat and the admins.
    let admins = admin_chats(&config);
    if let Some(channel) = channel.clone()
        && !admins.is_empty()
    {
        let admins = admins.clone();
        scheduler.on_notify(Arc::new(move |message: String| {
            for chat in &admins {
                channel.post_text(*chat, &message);
            }
        }));
    }
    // Spend caps near or spent reach the admin chat and the admins (not twice in the chat
    // the notice is about).
    if let Some(channel) = channel.clone()
        && !admins.is_empty()
    {
        let admins = admins.clone();
        agent.budget.notify_admins(Arc::new(move |notice| {
            for chat in admins.iter().filter(|chat| **chat != notice.chat_id) {
                channel.post_budget_notice(*chat, notice.clone());
            }
        }));
    }
    // Alerts and their recovery reach the admin chat and the admins.
    if let Some(channel) = channel.clone()
        && !admins.is_empty()
    {
        let send: valor_monitor::AlertSender = Arc::new(move |text: String| {
            for chat in &admins {
                channel.post_text(*chat, &text);
            }
        });
        let cooldown = Duration::from_secs(config.monitor.alert_cooldown_mins.saturating_mul(60));
        let notifier = valor_monitor::AlertNotifier::new(cooldown);
        let told = Some(Arc::clone(&monitor));
        tasks.spawn(notifier.run(alert_changes, send, told, shutdown.clone()));
    }
    let scheduler = Arc::new(scheduler);
    {
        let (scheduler, stop) = (Arc::clone(&scheduler), shutdown.clone());
        tasks.spawn(async move {
            if let Err(e) = scheduler.run(stop).await {
                tracing::error!(error = %e, "the scheduler stopped");
            }
        });
    }
    // Pictures the tools make go to their chat as photos.
    let deliver = channel.clone().map(|channel| {
        Arc::new(move |d: valor_tools::Delivery| {
            channel.post_photo(valor_telegram::photos::OutgoingPhoto {
                chat_id: d.chat_id,
                image: d.png,
                caption: d.caption,
            });
        }) as valor_tools::Deliver
    });
    let access_routes = channel
        .as_ref()
        .map(|channel| valor_telegram::channel::access_router(channel.clone(), &memory_token));
    if let Some(channel) = channel {
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = channel.run(stop).await {
                tracing::error!(error = %e, "the Telegram channel stopped");
            }
        });
    }
    let maintenance = agent.driver.clone();
    let maintenance_stop = shutdown.clone();
    tasks.spawn(async move {
        tokio::select! {
            () = maintenance.run_maintenance() => {}
            () = maintenance_stop.cancelled() => {}
        }
    });
    let server_shutdown = shutdown.clone();
    let people = crate::tool_servers::People::default();
    people.set(Arc::new(dashboard_conversations.clone()));
    agent.ask_about_unlisted_hosts(&config, &people);
    agent.wait_for_people(&dashboard_conversations);
    let hosted = crate::tool_servers::host_tools(
        &config,
        &loaded_secrets,
        &agent,
        &grants,
        deliver,
        &people,
    )?;
    // Sandboxed turns reach the same servers on their own socket.
    agent.driver.serve_mcp(hosted.routes.clone());
    let pulse = crate::dashboard::pulse(&monitor, &dashboard_conversations, &scheduler);
    let stream_pulse = pulse.clone();
    let dashboard = config.health.dashboard.then(|| {
        Arc::new(crate::dashboard::AgentView {
            monitor: Arc::clone(&monitor),
            conversations: dashboard_conversations,
            records: agent.view_records(),
            scheduler: Arc::clone(&scheduler),
            memory: agent.memory.clone(),
            baseline: crate::dashboard::baseline(&config.routing),
            reports_dir: config.daydream.logs_dir.clone(),
        }) as Arc<dyn valor_dashboard::Source>
    });
    let routes = crate::app::app(crate::app::AppParts {
        health: state,
        memory: agent.memory.clone(),
        store: agent.store.clone(),
        token: memory_token,
        tools: hosted.routes,
        scheduler,
        telegram: access_routes,
        dashboard,
        pulse,
        secure_cookie: config.health.dashboard_secure_cookie,
    });
    tasks.spawn(async move {
        if let Err(e) = server::serve(listener, routes, server_shutdown).await {
            tracing::error!(error = %e, "health server stopped");
        }
    });
    ready.store(true, Ordering::Release);
    tracing::info!(
        %addr,
        startup_ms = started.elapsed().as_millis() as u64,
        "health server listening"
    );

    let signal_name = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    };
    tracing::info!(signal = signal_name, "shutting down");
    let stopping = Instant::now();
    ready.store(false, Ordering::Release);
    shutdown.cancel();
    // Open dashboard pages' streams end, so they do not hold the server's shutdown.
    stream_pulse.close();

    let drained = tokio::time::timeout(SHUTDOWN_DEADLINE, async {
        // Running turns are cancelled and every Claude process group ends.
        agent.shutdown().await;
        service.shutdown().await;
        hosted.browser.close().await;
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
        anyhow::bail!(
            "work still running {} s after {signal_name}; stopped it",
            SHUTDOWN_DEADLINE.as_secs()
        );
    }
    tracing::info!(
        shutdown_ms = stopping.elapsed().as_millis() as u64,
        "valor stopped"
    );
    Ok(())
}

/// The Telegram channel, when `TELEGRAM_BOT_TOKEN` is set.
async fn telegram(
    config: &valor_config::Config,
    secrets: &valor_config::Secrets,
    agent: &crate::agent::Agent,
    conversations: valor_core::Conversations,
    monitor: &Arc<ResourceMonitor>,
    metrics: &MetricsRegistry,
) -> anyhow::Result<Option<valor_telegram::channel::TelegramChannel>> {
    let refusals = metrics.counter(
        "valor_telegram_refusals_total",
        "Unknown Telegram users told no (at most once an hour each).",
        &[],
    )?;
    let monitor = Arc::clone(monitor);
    let health: valor_telegram::channel::HealthLine = Arc::new(move || match monitor.report() {
        Some(report) => format!("{} (score {})", report.status.as_str(), report.score),
        None => "no sample yet".to_owned(),
    });
    let Some(token) = &secrets.telegram_bot_token else {
        tracing::info!("Telegram is off: TELEGRAM_BOT_TOKEN is not set");
        return Ok(None);
    };
    let t = &config.telegram;
    let bot = valor_telegram::channel::bot(token.expose(), &t.api_url, t.poll_timeout_secs)?;
    let paired = agent.shared.telegram.paired_users().await?;
    if t.allowed_users.is_empty() && paired.is_empty() {
        tracing::warn!(
            "Telegram is on, but [telegram] allowed_users is empty and nobody has paired: Valor \
             will answer nobody"
        );
    }
    let channel =
        valor_telegram::channel::TelegramChannel::new(valor_telegram::channel::ChannelSetup {
            degraded_after: Duration::from_secs(config.monitor.part_alert_after_secs),
            bot,
            conversations,
            store: Arc::clone(&agent.shared.telegram),
            allowed_users: t.allowed_users.clone(),
            roles: crate::agent::roles(&config.access),
            poll_timeout_secs: u32::try_from(t.poll_timeout_secs).unwrap_or(30),
            pacer: valor_telegram::pacer::PacerConfig::default(),
            pairing: valor_telegram::pairing::Pairing::for_store(&config.store.path),
            health: Some(health),
            chats: crate::agent::chat_folders(config),
            drafts: t.drafts,
            webhook: (!t.webhook_url.is_empty()).then(|| valor_telegram::channel::Webhook {
                url: t.webhook_url.clone(),
                bind: t.webhook_bind,
                secret: (secrets.telegram_webhook_secret.as_ref()).map(|s| s.expose().to_owned()),
            }),
            on_refusal: Some(Arc::new(move || refusals.inc())),
            cluster: (agent.shared.cluster.as_ref())
                .map(|pg| crate::cluster::channel_cluster(config, pg)),
        })
        .await?;
    tracing::info!(api = %t.api_url, allowed = t.allowed_users.len() + paired.len(), "Telegram is on");
    Ok(Some(channel))
}

/// Telegram sends that fell back (the markup refused: plain text; plain text refused: a
/// document), on `/metrics`: a rising count is a formatting bug to look at.
fn send_fallback_gauges(
    metrics: &valor_monitor::MetricsRegistry,
) -> anyhow::Result<Arc<dyn Fn() + Send + Sync>> {
    const NAME: &str = "valor_telegram_send_fallbacks";
    const HELP: &str = "Telegram sends since start that fell back to plain text or a document.";
    let plain = metrics.gauge(NAME, HELP, &[("to", "plain")])?;
    let document = metrics.gauge(NAME, HELP, &[("to", "document")])?;
    Ok(Arc::new(move || {
        let (to_plain, to_document) = valor_telegram::stream::send_fallbacks();
        plain.set(to_plain as f64);
        document.set(to_document as f64);
    }))
}

/// Where alerts and missed jobs are told: `[admin] chat` and each `[access] admins` user's
/// private chat (once each).
fn admin_chats(config: &valor_config::Config) -> Vec<i64> {
    let mut chats: Vec<i64> = std::iter::once(config.admin.chat)
        .chain(config.access.admins.iter().copied())
        .filter(|chat| *chat != 0)
        .collect();
    let mut seen = std::collections::HashSet::new();
    chats.retain(|chat| seen.insert(*chat));
    chats
}

#[cfg(test)]
mod tests {
    #[test]
    fn alerts_go_to_the_admin_chat_and_each_admin_once() {
        let mut config = valor_config::Config::default();
        assert!(super::admin_chats(&config).is_empty());
        config.admin.chat = -5;
        config.access.admins = vec![7, -5, 7, 9];
        assert_eq!(super::admin_chats(&config), [-5, 7, 9]);
    }
}
