//! Builds the agent's parts from the config: the store, memory, the Claude driver, and the
//! conversation service over them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use std::sync::Arc;
use valor_claude::reaper::Reaper;
use valor_claude::runtime::RuntimeDir;
use valor_claude::sandbox::{SandboxMode, SandboxState};
use valor_claude::{ClaudeDriver, DriverSetup};
use valor_config::Config;

use valor_core::Conversations;
use valor_core::ModelRouter;
use valor_core::conversation::Settings;
use valor_core::engine::{ConversationStore, Engine, EngineConfig, FiguresObserver, ToolGrantFn};
use valor_core::learning::Learning;
use valor_core::persona::DEFAULT_PERSONA;
use valor_memory::{Memory, MemorySettings};
use valor_monitor::{ChildRegistry, MetricsRegistry};
use valor_store::Store;

pub struct Agent {
    /// This node's own store (health history, dashboard sessions, jobs; everything when
    /// Valor runs alone).
    pub store: Store,
    /// What the chats share: this store, or the cluster's database.
    pub shared: crate::shared::Shared,
    /// Long-term memory: search indexes over the store, the embedding worker's state.
    pub memory: Memory,
    pub driver: ClaudeDriver,
    /// Spend caps: every run of the driver goes through it.
    pub budget: valor_core::budget::Budget,
    pub children: ChildRegistry,
    /// Private (0700) folder of the per-turn MCP configs; removed at shutdown.
    pub runtime_dir: Arc<RuntimeDir>,
    grace: Duration,
}

impl Agent {
    /// `keep_warm` false closes each Claude process after its turn (one-shot commands).
    pub async fn build(
        config: &Config,
        database_url: Option<&valor_config::Secret>,
        metrics: &MetricsRegistry,
        children: ChildRegistry,
        keep_warm: bool,
    ) -> anyhow::Result<Agent> {
        let store = Store::open(&config.store.path)?;
        let shared = crate::shared::Shared::open(config, database_url, &store).await?;
        let home = std::env::var("HOME").ok();
        let memory = Memory::open(
            Arc::clone(&shared.memory),
            MemorySettings::beside(
                &config.store.path,
                config.memory.resolved_model_dir(home.as_deref()),
            ),
        )
        .context("cannot open long-term memory")?;
        if let Some(pg) = &shared.cluster {
            // Several machines: what another node stored is found at once.
            memory.search_through(Arc::new(pg.clone()));
        }
        let runtime_dir = Arc::new(RuntimeDir::create(
            std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .as_deref(),
            &config.store.path.with_extension("run"),
        )?);
        let mode = config.claude.sandbox;
        let chats = chat_folders(config);
        let parent_env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let sandbox = sandbox(config, mode, &chats, &parent_env, home.as_deref()).await;
        let mut claude = config.claude.clone();
        if !keep_warm {
            claude.keep_warm_secs = 0;
        }
        let grace = Duration::from_secs(claude.kill_grace_secs);
        let persona = persona(&claude.persona_file)?;
        let spend_caps = budget_settings(config, &parent_env);
        let driver = ClaudeDriver::new(DriverSetup {
            binary: valor_claude::binary::locate(&claude.binary),
            config: claude,
            persona: Some(persona),
            parent_env,
            runtime_dir: runtime_dir.path().to_owned(),
            sandbox,
            chats,
            ledger: Arc::clone(&shared.ledger),
            children: children.clone(),
            metrics: metrics.clone(),
        })
        .context("cannot register the driver's metrics")?;
        let budget = valor_core::budget::Budget::new(spend_caps, Arc::clone(&shared.spend));
        driver.price_unfinished_runs(budget.settings().prices.clone());
        Ok(Agent {
            store,
            shared,
            memory,
            driver,
            budget,
            children,
            runtime_dir,
            grace,
        })
    }

    /// The conversation service every channel runs its turns through: the engine over the
    /// driver (memories recalled into each prompt, context figures on /metrics, `tools` for
    /// each chat's turns) and learning from conversations.
    pub fn conversations(
        &self,
        config: &Config,
        metrics: &MetricsRegistry,
        tools: Option<ToolGrantFn>,
    ) -> anyhow::Result<Conversations> {
        let mut engine = Engine::builder(
            self.budget.wrap(Arc::new(self.driver.clone())),
            Arc::clone(&self.shared.conversation) as Arc<dyn ConversationStore>,
            ModelRouter::new(config.routing.clone()),
        )
        .config(engine_config(config))
        .recall(Arc::new(self.memory.clone()))
        .code_map(Arc::new(valor_daydream::WorkspaceMaps::new(
            chat_folders(config),
            valor_daydream::MapCache::default(),
        )))
        .observe_figures(context_metrics(metrics)?);
        if let Some(tools) = tools {
            engine = engine.tools(tools);
        }
        let learner = crate::learning::learner(config, &self.memory, &self.shared)?;
        let learning = valor_learn::ChatLearning::new(Arc::clone(&self.shared.learn), learner)
            .with_workspaces(chat_folders(config));
        let service = Conversations::with_approvals(
            engine.build(),
            Some(Arc::new(learning) as Arc<dyn Learning>),
            Settings {
                max_concurrent: config.claude.max_concurrent,
                max_pending: config.telegram.max_pending,
            },
            approval_settings(config),
        );
        service.set_records(Arc::clone(&self.shared.records));
        service.set_approval_log(Arc::clone(&self.shared.approvals));
        service.set_budget(self.budget.clone());
        Ok(service)
    }

    /// The driver does not take a turn waiting for a person's approval for a stalled one.
    pub fn wait_for_people(&self, conversations: &Conversations) {
        let conversations = conversations.clone();
        self.driver.waiting_for_person(Arc::new(move |chat_id| {
            conversations.waiting_for_person(chat_id)
        }));
    }

    /// With `[approvals] unlisted_hosts`, a chat's sandbox reaching a host not on its
    /// allow-list asks the chat instead of being refused.
    pub fn ask_about_unlisted_hosts(&self, config: &Config, people: &crate::tool_servers::People) {
        let approvals = &config.approvals;
        if let (true, true, SandboxState::Active(sandbox)) = (
            approvals.enabled,
            approvals.unlisted_hosts,
            self.driver.sandbox(),
        ) {
            sandbox
                .egress()
                .ask_about_unlisted(Arc::new(people.clone()));
        }
    }

    /// `[claude] sandbox = "required"` and the sandbox does not work here: Valor does not start
    /// (no turn could run), and says what is missing.
    pub fn refuse_without_required_sandbox(self) -> anyhow::Result<Agent> {
        if let SandboxState::Unavailable {
            reason,
            required: true,
        } = self.driver.sandbox()
        {
            anyhow::bail!(
                "[claude] sandbox = \"required\" and the sandbox does not work here: {reason} \
                 (`valor doctor` checks each part)"
            );
        }
        Ok(self)
    }

    /// The sandbox helpers run in (git, the browser), when each chat's Claude runs in one.
    pub fn helper_sandbox(&self) -> Option<Arc<valor_sandbox::Sandbox>> {
        match self.driver.sandbox() {
            SandboxState::Active(sandbox) => Some(sandbox.shared()),
            _ => None,
        }
    }

    /// Where git runs on the daydream's workspaces.
    pub fn git_jail(&self, config: &Config) -> valor_daydream::GitJail {
        match self.helper_sandbox() {
            Some(sandbox) => valor_daydream::GitJail::Sandboxed {
                sandbox,
                chats: Some(chat_folders(config)),
            },
            None => valor_daydream::GitJail::Bare,
        }
    }

    /// What the operator's views read: every node's records in a cluster, else this store's.
    pub fn view_records(&self) -> Arc<dyn crate::view_records::ViewRecords> {
        match &self.shared.cluster {
            Some(pg) => Arc::new(pg.clone()),
            None => Arc::new(self.store.clone()),
        }
    }

    /// The store as the driver's session ledger (sessions, runs, process groups).
    pub fn ledger(&self) -> valor_claude::ledger::Ledger {
        Arc::clone(&self.shared.ledger)
    }

    pub fn reaper(&self) -> Reaper {
        Reaper::new(
            self.ledger(),
            self.children.clone(),
            Some(self.driver.metrics().clone()),
            self.grace,
        )
    }

    /// Ends every Claude process, flushes the store, removes the runtime files.
    pub async fn shutdown(&self) {
        self.driver.shutdown().await;
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "cannot flush the store");
        }
        let _ = std::fs::remove_dir_all(self.runtime_dir.path());
    }
}

/// A sandbox for helpers outside `valor run` (a tool server alone), when one works here.
pub async fn helpers_sandbox(config: &Config) -> Option<Arc<valor_sandbox::Sandbox>> {
    let chats = chat_folders(config);
    let sandbox =
        valor_sandbox::Sandbox::new(valor_sandbox::locate_bwrap(), valor_sandbox::locate_init())
            .ok()?;
    let inside = sandbox.probe(chats.owner()).await.ok()?;
    inside
        .checks()
        .iter()
        .all(|c| c.ok)
        .then(|| Arc::new(sandbox))
}

/// Where each chat's workspace and HOME are, and, when Valor runs as root with sandboxes on,
/// the sandboxes' own user who owns them.
pub fn chat_folders(config: &Config) -> valor_chatfs::ChatFs {
    let sandboxed = config.claude.sandbox != SandboxMode::Off;
    valor_chatfs::ChatFs::new(
        config.claude.workspaces_dir.clone(),
        config.claude.homes_dir.clone(),
        valor_chatfs::ChatFs::sandbox_owner(sandboxed, config.claude.sandbox_uid),
    )
}

/// Probes the sandbox once for `[claude] sandbox`, and says at start when turns will run
/// unsandboxed (auto) or not at all (required).
pub async fn sandbox(
    config: &Config,
    mode: SandboxMode,
    chats: &valor_chatfs::ChatFs,
    parent_env: &[(String, String)],
    home: Option<&str>,
) -> SandboxState {
    let claude = &config.claude;
    // The API's address and credentials as the CLI would have read them ([claude.env] wins);
    // the proxy uses them outside the sandbox.
    let env = valor_claude::spawn::child_env(parent_env.iter().cloned(), &claude.env);
    let setup = valor_claude::sandbox::SandboxSetup {
        bwrap: valor_sandbox::locate_bwrap(),
        init: valor_sandbox::locate_init(),
        chats: chats.clone(),
        limits: valor_sandbox::Limits {
            memory_mb: claude.limits.memory_mb,
            processes: claude.limits.processes,
            cpu_weight: claude.limits.cpu_weight,
            disk_mb: claude.limits.disk_mb,
            tmp_mb: claude.limits.tmp_mb,
        },
        egress: valor_claude::sandbox::EgressRules::from_config(&claude.egress),
        upstream: valor_claude::proxy::Upstream::from_env(
            &env,
            valor_claude::sandbox::operator_credentials(home),
            &claude.oauth_token_url,
        ),
    };
    let state = SandboxState::probe(mode, setup).await;
    match &state {
        SandboxState::Unavailable {
            reason,
            required: false,
        } => {
            tracing::warn!(%reason, "Claude runs unsandboxed: every chat's Claude can read the others' files ([claude] sandbox = \"auto\"); install bubblewrap")
        }
        SandboxState::Unavailable {
            reason,
            required: true,
        } => {
            tracing::error!(%reason, "the sandbox is required and does not work: no turn will run")
        }
        SandboxState::Off => tracing::info!("the sandbox is off ([claude] sandbox = \"off\")"),
        SandboxState::Active(sandbox) => {
            tracing::debug!(limits = %sandbox.limits_mode(), "each Claude process runs in its own sandbox")
        }
    }
    state
}

/// The context window's figures of the latest turn on /metrics.
fn context_metrics(metrics: &MetricsRegistry) -> anyhow::Result<FiguresObserver> {
    let gauge = |name: &str, help: &str| metrics.gauge(name, help, &[]);
    let messages_before = gauge(
        "valor_context_messages_before",
        "Messages of the chat's history before the context window, latest turn.",
    )?;
    let messages_after = gauge(
        "valor_context_messages_after",
        "Items the context window kept, latest turn.",
    )?;
    let tokens_before = gauge(
        "valor_context_tokens_before",
        "Tokens of the history before the context window, latest turn.",
    )?;
    let tokens_after = gauge(
        "valor_context_tokens_after",
        "Tokens the context window kept, latest turn.",
    )?;
    let saved = metrics.counter(
        "valor_context_tokens_saved_total",
        "Tokens the context window left out, all turns.",
        &[],
    )?;
    let layer = |name: &str| {
        metrics.gauge(
            "valor_context_memory_tokens",
            "Tokens of each long-term memory layer in the prompt ([context] memory_tokens), latest turn.",
            &[("layer", name)],
        )
    };
    let (summary, code, learnings, memories) = (
        layer("summary")?,
        layer("code_map")?,
        layer("learnings")?,
        layer("memories")?,
    );
    Ok(Arc::new(move |_chat, f| {
        messages_before.set(f.messages_before as f64);
        messages_after.set(f.messages_after as f64);
        tokens_before.set(f.tokens_before as f64);
        tokens_after.set(f.tokens_after as f64);
        saved.inc_by(f.tokens_before.saturating_sub(f.tokens_after) as u64);
        summary.set(f.memory.summary as f64);
        code.set(f.memory.code as f64);
        learnings.set(f.memory.learnings as f64);
        memories.set(f.memory.memories as f64);
    }))
}

/// The persona: the file named in `[claude] persona_file`, or the built-in one.
fn persona(file: &str) -> anyhow::Result<String> {
    if file.is_empty() {
        return Ok(DEFAULT_PERSONA.to_owned());
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the persona file {file} ([claude] persona_file)"))?;
    if text.trim().is_empty() {
        anyhow::bail!("the persona file {file} ([claude] persona_file) is empty");
    }
    Ok(text)
}

fn engine_config(config: &Config) -> EngineConfig {
    let c = &config.context;
    EngineConfig {
        limits: valor_core::context::ContextLimits {
            token_budget: c.token_budget,
            keep_recent: c.keep_recent,
            summary_batch: c.summary_batch,
            summary_chars: c.summary_chars,
        },
        short_history: c.short_history,
        prompt: valor_core::recall::PromptBudget {
            context_tokens: config.context.memory_tokens,
            tokens: config.context.recalled_tokens,
            detailed: config.context.recalled_detailed,
            learning_tokens: if config.learning.enabled {
                config.context.learning_tokens
            } else {
                0
            },
        },
        session_idle_ms: config.memory.session_idle_mins.saturating_mul(60_000),
        summary_model: Some(config.memory.summarize_with.trim().to_owned())
            .filter(|m| !m.is_empty()),
        ..EngineConfig::default()
    }
}

/// How approvals wait, from `[approvals]` (a decision may come from another node with
/// `[cluster]` on).
fn approval_settings(config: &Config) -> valor_core::approvals::ApprovalSettings {
    let cluster = &config.cluster;
    valor_core::approvals::ApprovalSettings {
        timeout: std::time::Duration::from_secs(config.approvals.approval_timeout_secs),
        grant_idle: std::time::Duration::from_secs(
            config.memory.session_idle_mins.max(1).saturating_mul(60),
        ),
        shared: cluster.enabled,
        node: cluster.enabled.then(|| cluster.resolved_node_id()),
        remind_after: (config.approvals.remind_after_secs > 0)
            .then(|| std::time::Duration::from_secs(config.approvals.remind_after_secs)),
    }
}

/// Each user `[access]` names with their role (admins over approvers).
pub fn roles(
    access: &valor_config::AccessConfig,
) -> std::collections::HashMap<i64, valor_protocol::access::Role> {
    use valor_protocol::access::Role;
    let mut roles = std::collections::HashMap::new();
    roles.extend(access.approvers.iter().map(|user| (*user, Role::Approver)));
    roles.extend(access.admins.iter().map(|user| (*user, Role::Admin)));
    roles
}

/// `[budget]` as the budget uses it: the unit (`auto`: tokens under a subscription login), the
/// caps set, priced by `[routing]`'s prices.
pub fn budget_settings(
    config: &Config,
    env: &[(String, String)],
) -> valor_core::budget::BudgetSettings {
    use valor_core::budget::CapOf;
    use valor_protocol::budget::{Period, Unit};
    let b = &config.budget;
    let set = |name: &str| {
        env.iter().any(|(k, v)| k == name && !v.trim().is_empty())
            || config
                .claude
                .env
                .get(name)
                .is_some_and(|v| !v.trim().is_empty())
    };
    let unit = match b.unit.as_str() {
        "tokens" => Unit::Tokens,
        "usd" => Unit::Usd,
        _ if set("CLAUDE_CODE_OAUTH_TOKEN") && !set("ANTHROPIC_API_KEY") => Unit::Tokens,
        _ => Unit::Usd,
    };
    let (caps, step) = match unit {
        Unit::Usd => (&b.usd, b.allow_step_usd),
        Unit::Tokens => (&b.tokens, b.allow_step_tokens as f64),
    };
    let caps = [
        (CapOf::Chat, Period::Day, caps.chat_daily),
        (CapOf::Chat, Period::Month, caps.chat_monthly),
        (CapOf::User, Period::Day, caps.user_daily),
        (CapOf::User, Period::Month, caps.user_monthly),
        (CapOf::Global, Period::Day, caps.global_daily),
        (CapOf::Global, Period::Month, caps.global_monthly),
        (CapOf::Global, Period::Window, caps.global_window),
    ]
    .into_iter()
    .filter(|(_, _, cap)| *cap > 0.0)
    .collect();
    valor_core::budget::BudgetSettings {
        unit,
        caps,
        warn_share: f64::from(b.warn_at_percent) / 100.0,
        step,
        window_ms: u64::from(b.window_hours) * 3_600_000,
        prices: valor_protocol::pricing::Prices::new(
            config.routing.prices.clone(),
            &config.routing.biggest_model,
        ),
    }
}
