//! The configuration schema: one struct per section, each with documented defaults.
//! `config/valor.example.toml` mirrors this file key by key (a test keeps them in step).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

/// Everything Valor reads from its config file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub log: LogConfig,
    pub health: HealthConfig,
    pub monitor: MonitorConfig,
    pub claude: ClaudeConfig,
    pub routing: RoutingConfig,
    pub memory: MemoryConfig,
    pub telegram: TelegramConfig,
    pub context: ContextConfig,
    pub tools: ToolsConfig,
    pub scheduler: SchedulerConfig,
    pub daydream: DaydreamConfig,
    pub learning: LearningConfig,
    pub store: StoreConfig,
    pub admin: AdminConfig,
    pub cluster: crate::cluster::ClusterConfig,
    pub approvals: crate::trust::ApprovalsConfig,
    pub access: crate::trust::AccessConfig,
    pub budget: crate::budget::BudgetConfig,
}

/// `[learning]`: learning from conversations, always with the user's consent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearningConfig {
    /// Watch user messages for decisions and facts worth remembering, and ask.
    pub enabled: bool,
    /// Ask only about statements the watcher is at least this sure of (0.5-1).
    pub ask_threshold: f64,
    /// The threshold for particular chats, by chat id: `{ "-1001234" = 0.9 }` (a busy group
    /// asked less often).
    pub ask_threshold_by_chat: std::collections::BTreeMap<String, f64>,
    /// A new learning this similar (cosine) to an active one reinforces it instead (0.5-0.99).
    pub duplicate_similarity: f64,
    /// Where `valor learnings export` writes `chat-<id>/LEARNED_INSIGHTS.md`.
    pub export_dir: PathBuf,
    /// The watcher's classifier weights from `valor learnings train`; empty: the weights Valor
    /// ships with.
    pub watcher_weights: Option<PathBuf>,
}

impl Default for LearningConfig {
    fn default() -> Self {
        LearningConfig {
            enabled: true,
            ask_threshold: 0.75,
            ask_threshold_by_chat: std::collections::BTreeMap::new(),
            duplicate_similarity: 0.85,
            export_dir: PathBuf::from("learnings"),
            watcher_weights: None,
        }
    }
}

/// `[daydream]`: every six hours Valor studies its workspaces and reports insights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaydreamConfig {
    /// When (six-field cron, UTC). Default: 00:00, 06:00, 12:00, 18:00.
    pub schedule: String,
    /// A daydream missed while Valor was down: `catch_up`, `skip` or `notify`.
    pub missed: crate::Missed,
    /// Workspaces studied besides the chats' own (`[claude] workspaces_dir/chat_*`).
    pub workspaces: Vec<PathBuf>,
    /// Where the report, its archive and chart go.
    pub logs_dir: PathBuf,
    /// Archived reports kept.
    pub keep_reports: usize,
    /// The analysis's hard limit; past it the report is written, marked degraded.
    pub analysis_timeout_secs: u64,
    /// More turns than this waiting: the daydream is skipped (and recorded as such).
    pub max_pending_turns: usize,
    /// Who does the analysis: `claude` (the Claude Code driver) or `openai` (an
    /// OpenAI-compatible endpoint such as a local Ollama, at `openai_base_url`).
    pub backend: crate::DaydreamBackend,
    /// The OpenAI-compatible endpoint, up to `/v1` (the key: `OPENAI_API_KEY`, if set).
    pub openai_base_url: String,
    /// The model for the analysis; empty: the Claude Code default (`openai` needs one).
    pub model: String,
}

impl Default for DaydreamConfig {
    fn default() -> Self {
        DaydreamConfig {
            schedule: "0 0 */6 * * *".to_owned(),
            missed: crate::Missed::CatchUp,
            workspaces: Vec::new(),
            logs_dir: PathBuf::from("logs"),
            keep_reports: 10,
            analysis_timeout_secs: 300,
            max_pending_turns: 5,
            backend: crate::DaydreamBackend::Claude,
            openai_base_url: "http://127.0.0.1:11434/v1".to_owned(),
            model: String::new(),
        }
    }
}

/// `[scheduler]`: the jobs `valor run` runs by the clock. Schedules are six-field cron
/// (`second minute hour day-of-month month day-of-week`, UTC) or an interval (`every 30s`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// The cleanup: Claude Code processes Valor started over 24 h ago, browser profiles left
    /// by a Valor that was killed.
    pub cleanup_schedule: String,
    /// A cleanup missed while Valor was down: `catch_up` (once, within the window), `skip`, or
    /// `notify` (the admin chat is told).
    pub cleanup_missed: crate::Missed,
    /// A missed run is caught up only if it fell due at most this many hours ago.
    pub catch_up_window_hours: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            cleanup_schedule: "0 15 * * * *".to_owned(),
            cleanup_missed: crate::Missed::CatchUp,
            catch_up_window_hours: 6,
        }
    }
}

/// `[log]`: what goes to stderr.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `valor=debug,info`. `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".to_owned(),
        }
    }
}

/// `[health]`: the /health, /metrics and /ready server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Address to listen on.
    #[serde(deserialize_with = "socket_addr")]
    pub bind: SocketAddr,
    /// Binding anything but a loopback address exposes health data to the network: it must be
    /// switched on explicitly.
    pub allow_non_loopback: bool,
    /// Serve the operator's dashboard under `/ui/` (and keep the last log lines for it).
    pub dashboard: bool,
    /// Mark the dashboard's cookie `Secure`: set it when the dashboard is reached over HTTPS
    /// (a proxy in front); browsers then never send it over plain HTTP.
    pub dashboard_secure_cookie: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8088)),
            allow_non_loopback: false,
            dashboard: true,
            dashboard_secure_cookie: false,
        }
    }
}

/// `[monitor]`: the resource monitor and its health score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Seconds between samples.
    pub interval_secs: u64,
    /// Samples kept in memory (120 at 30 s is one hour).
    pub history_len: usize,
    /// A child process older than this many seconds is stale (a stuck run) and raises an alert.
    pub stale_child_secs: u64,
    pub weights: MonitorWeights,
    pub thresholds: MonitorThresholds,
    pub status: StatusThresholds,
    /// One message per alert at most this often.
    pub alert_cooldown_mins: u64,
    /// A part (Telegram, Claude, the memory index) not ok for this many seconds raises an
    /// alert (a critical one after 15 minutes).
    pub part_alert_after_secs: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval_secs: 30,
            history_len: 120,
            stale_child_secs: 24 * 60 * 60,
            weights: MonitorWeights::default(),
            thresholds: MonitorThresholds::default(),
            status: StatusThresholds::default(),
            alert_cooldown_mins: 60,
            part_alert_after_secs: 60,
        }
    }
}

/// `[monitor.weights]`: how much each component counts in the 0-100 score. Only the ratios
/// matter; they need not sum to 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorWeights {
    /// Valor's resident memory and the machine's memory in use.
    pub ram: f64,
    pub cpu: f64,
    /// The child processes Valor started (Claude Code, browsers), and stale ones.
    pub child_processes: f64,
    pub alerts: f64,
}

impl Default for MonitorWeights {
    fn default() -> Self {
        MonitorWeights {
            ram: 0.35,
            cpu: 0.25,
            child_processes: 0.2,
            alerts: 0.2,
        }
    }
}

/// `[monitor.thresholds]`: warning and critical levels. Crossing a warning level raises a warning
/// alert, crossing a critical level a critical one; both clear when the value is back below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorThresholds {
    /// Valor's own resident memory, MiB.
    pub rss_warn_mb: u64,
    pub rss_critical_mb: u64,
    /// Memory used on the whole machine, percent.
    pub system_memory_warn_percent: f64,
    pub system_memory_critical_percent: f64,
    /// Valor's own CPU use, percent of all cores.
    pub cpu_warn_percent: f64,
    pub cpu_critical_percent: f64,
    /// Live child processes (Claude Code sessions, browsers) Valor started.
    pub children_warn: usize,
    pub children_critical: usize,
    /// A warning when the month's spend, at the last seven days' pace, reaches this (dollars;
    /// 0: no warning, the forecast is still shown on the dashboard).
    pub monthly_spend_warn_usd: f64,
}

impl Default for MonitorThresholds {
    fn default() -> Self {
        MonitorThresholds {
            rss_warn_mb: 512,
            rss_critical_mb: 1024,
            system_memory_warn_percent: 85.0,
            system_memory_critical_percent: 95.0,
            cpu_warn_percent: 80.0,
            cpu_critical_percent: 95.0,
            children_warn: 8,
            children_critical: 16,
            monthly_spend_warn_usd: 0.0,
        }
    }
}

/// `[monitor.status]`: how the score maps to `ok` / `degraded` / `unhealthy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusThresholds {
    /// A score below this is `degraded`.
    pub degraded_below: u8,
    /// A score below this is `unhealthy` (and /health answers 503).
    pub unhealthy_below: u8,
}

impl Default for StatusThresholds {
    fn default() -> Self {
        StatusThresholds {
            degraded_below: 80,
            unhealthy_below: 50,
        }
    }
}

fn socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "expected an address with a port, such as \"127.0.0.1:8088\", got {text:?}"
        ))
    })
}

/// `[claude]`: the Claude Code CLI driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaudeConfig {
    /// Path of the `claude` program. Empty: the copy `scripts/setup` installs
    /// (`tools/claude-code/node_modules/.bin/claude`), else `claude` on PATH.
    pub binary: String,
    /// One working directory per chat is created below this.
    pub workspaces_dir: PathBuf,
    /// Runs at once across all chats (one at a time per chat).
    pub max_concurrent: usize,
    /// A run is stopped after this long in total.
    pub total_timeout_secs: u64,
    /// A run is stopped when it prints nothing for this long.
    pub idle_timeout_secs: u64,
    /// Seconds between SIGTERM and SIGKILL when a run is stopped.
    pub kill_grace_secs: u64,
    /// Tools every turn may use without asking (`--allowedTools`), e.g. `Read`, `mcp__valor`.
    pub allowed_tools: Vec<String>,
    /// An active chat keeps its Claude process this long after its last turn.
    pub keep_warm_secs: u64,
    /// Warm processes kept at most; the least recently used closes first.
    pub max_warm: usize,
    /// Memory (MB) running plus warm Claude processes may hold, by their measured RSS: warm
    /// ones close first (least recently used), then a turn waits. 0: a quarter of the machine.
    pub process_memory_mb: u64,
    /// Extra environment variables for the CLI (e.g. `ANTHROPIC_BASE_URL`).
    pub env: BTreeMap<String, String>,
    /// A file whose text is Valor's persona (appended to Claude Code's system prompt). Empty:
    /// the built-in persona (the original system's operating rules).
    pub persona_file: String,
    /// Each Claude process in its own bubblewrap sandbox: `auto` (when bubblewrap works, else
    /// unsandboxed and degraded), `required` (no turn runs without it) or `off`.
    pub sandbox: crate::SandboxMode,
    /// Sandboxed chats get their own HOME (Claude's sessions and transcripts) below this.
    pub homes_dir: PathBuf,
    /// When Valor runs as root, sandboxes run as this host user and group id (unprivileged,
    /// used by nothing else): no sandboxed process is ever uid 0 on the host.
    pub sandbox_uid: u32,
    pub limits: crate::SandboxLimitsConfig,
    pub egress: crate::EgressConfig,
    /// Where a subscription login's token is refreshed (the operator's
    /// `~/.claude/.credentials.json`; the sandbox never sees it).
    pub oauth_token_url: String,
}

impl Default for ClaudeConfig {
    fn default() -> Self {
        ClaudeConfig {
            binary: String::new(),
            workspaces_dir: PathBuf::from("~/.local/share/valor/workspaces"),
            max_concurrent: 4,
            total_timeout_secs: 20 * 60,
            idle_timeout_secs: 5 * 60,
            kill_grace_secs: 5,
            allowed_tools: ["Read", "Glob", "Grep", "Edit", "Write"]
                .map(str::to_owned)
                .to_vec(),
            keep_warm_secs: 300,
            max_warm: 4,
            process_memory_mb: 0,
            env: BTreeMap::new(),
            persona_file: String::new(),
            sandbox: crate::SandboxMode::Auto,
            homes_dir: PathBuf::from("~/.local/share/valor/homes"),
            sandbox_uid: 2_000_000,
            limits: crate::SandboxLimitsConfig::default(),
            egress: crate::EgressConfig::default(),
            oauth_token_url: "https://platform.claude.com/v1/oauth/token".to_owned(),
        }
    }
}

/// `[routing]`: which model and effort each kind of request gets (seed 001).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Greetings, quick questions, small talk.
    pub short_chat: RouteConfig,
    /// Writing, changing or testing code.
    pub development: RouteConfig,
    /// Design, architecture, long multi-part requests.
    pub complex: RouteConfig,
    /// Errors, stack traces, "why does this fail".
    pub diagnosis: RouteConfig,
    /// The model routing is measured against: what every turn would have cost on it.
    pub biggest_model: String,
    /// Dollars per million tokens, `[input, output]`, by a word the model's name contains
    /// (`opus`, `sonnet`, `haiku`); cache reads count a tenth of input. For the dashboard's
    /// "what routing saved".
    pub prices: BTreeMap<String, [f64; 2]>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        let route = |model: &str, effort: &str| RouteConfig {
            model: model.to_owned(),
            effort: effort.to_owned(),
        };
        RoutingConfig {
            short_chat: route("haiku", "low"),
            development: route("sonnet", "medium"),
            complex: route("opus", "high"),
            diagnosis: route("sonnet", "high"),
            biggest_model: "opus".to_owned(),
            prices: BTreeMap::from([
                ("haiku".to_owned(), [1.0, 5.0]),
                ("sonnet".to_owned(), [3.0, 15.0]),
                ("opus".to_owned(), [5.0, 25.0]),
            ]),
        }
    }
}

/// One route: `model` is passed to `--model` (empty: the CLI's default), `effort` to
/// `--effort` (`low`, `medium`, `high`, `xhigh`, `max`; empty: the CLI's default).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    pub model: String,
    pub effort: String,
}

/// `[telegram]`: the Telegram channel (started when `TELEGRAM_BOT_TOKEN` is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// The Bot API server (another one for tests or a local Bot API server).
    pub api_url: String,
    /// Telegram user ids Valor serves. Empty: nobody (pair with `valor pair`).
    pub allowed_users: Vec<i64>,
    /// Seconds one long poll waits for updates.
    pub poll_timeout_secs: u64,
    /// In private chats, stream previews as drafts (`sendMessageDraft`, Bot API 9.3+) and send
    /// the answer as one final message; off: stream by editing the message.
    pub drafts: bool,
    /// Receive updates by webhook instead of polling: the public HTTPS URL Telegram posts to
    /// (e.g. behind a reverse proxy). Empty: long polling.
    pub webhook_url: String,
    /// Where Valor listens for the webhook's posts (the proxy forwards to it).
    #[serde(deserialize_with = "socket_addr")]
    pub webhook_bind: SocketAddr,
    /// Messages of one chat waiting at most; more are answered "too many waiting" and dropped.
    pub max_pending: usize,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            api_url: "https://api.telegram.org".to_owned(),
            allowed_users: Vec::new(),
            poll_timeout_secs: 30,
            drafts: true,
            webhook_url: String::new(),
            webhook_bind: SocketAddr::from(([127, 0, 0, 1], 8443)),
            max_pending: 20,
        }
    }
}

/// `[context]`: what of a chat's history a turn carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContextConfig {
    /// Tokens the carried history may take (estimated at four characters a token).
    pub token_budget: usize,
    /// The most recent messages are always carried verbatim.
    pub keep_recent: usize,
    /// Older messages are folded into one summary per this many.
    pub summary_batch: usize,
    /// Characters of one summary at most.
    pub summary_chars: usize,
    /// Messages carried when Claude's resumed session already holds the history.
    pub short_history: usize,
    /// The prompt's memory layers together (the last session's summary, the learnings, the
    /// function map and the recalled memories; seed 003's split), in tokens.
    pub memory_tokens: usize,
    /// The most of that recalled memories may take (0: none).
    pub recalled_tokens: usize,
    /// Recalled memories shown with an excerpt; the rest by title (progressive disclosure).
    pub recalled_detailed: usize,
    /// Tokens of learnings the prompt may carry, highest confidence first (0: none).
    pub learning_tokens: usize,
}

impl Default for ContextConfig {
    fn default() -> Self {
        ContextConfig {
            token_budget: 6000,
            keep_recent: 8,
            summary_batch: 100,
            summary_chars: 240,
            short_history: 5,
            memory_tokens: 2_000,
            recalled_tokens: 900,
            recalled_detailed: 2,
            learning_tokens: 300,
        }
    }
}

/// `[tools]`: the MCP tool servers the agent hosts. API keys come from the environment
/// (`PERPLEXITY_API_KEY`, `OPENAI_API_KEY`, `NOTION_API_KEY`); a tool without its key answers
/// "not configured".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    /// Seconds one call to an external API may take (each retry gets as long again).
    pub timeout_secs: u64,
    /// Retries after a 429, a 5xx or a network failure, with exponential backoff.
    pub retries: u32,
    pub perplexity: PerplexityConfig,
    pub openai: OpenAiConfig,
    pub links: LinksConfig,
    pub notion: NotionConfig,
    pub dev: DevConfig,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            timeout_secs: 60,
            retries: 3,
            perplexity: PerplexityConfig::default(),
            openai: OpenAiConfig::default(),
            links: LinksConfig::default(),
            notion: NotionConfig::default(),
            dev: DevConfig::default(),
        }
    }
}

/// `[tools.notion]`: `query_notion_projects`, and comments on bug-report tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotionConfig {
    pub base_url: String,
    /// The `Notion-Version` header (the API version the answers are read as).
    pub version: String,
    /// Workspace name -> task database id. A name not listed is looked up with Notion's search
    /// among the databases shared with the integration (only for the operator's own stdio use:
    /// a chat reaches only what `chats` grants it).
    pub databases: BTreeMap<String, String>,
    /// What each chat may use, by chat id: the databases of `databases` it may read, and
    /// whether it may comment on their tasks. A chat not listed does not get the tool.
    pub chats: BTreeMap<String, NotionGrant>,
}

/// One chat's Notion: databases by name (of `[tools.notion] databases`), and the comment right.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotionGrant {
    pub databases: Vec<String>,
    pub comment: bool,
}

impl Default for NotionConfig {
    fn default() -> Self {
        NotionConfig {
            base_url: "https://api.notion.com".to_owned(),
            version: "2022-06-28".to_owned(),
            databases: BTreeMap::new(),
            chats: BTreeMap::new(),
        }
    }
}

/// `[tools.dev]`: screenshots and bug reports of the app under development.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevConfig {
    /// The page a bug report opens (empty: the tool answers "not configured").
    pub app_url: String,
    /// The browser: empty finds Debian's `chromium` (or `chromium-browser`, `google-chrome`).
    pub chromium: PathBuf,
    /// Seconds a page may take to load.
    pub page_timeout_secs: u64,
    /// Browser window (and screenshot) width and height, in CSS pixels.
    pub viewport: [u32; 2],
}

impl Default for DevConfig {
    fn default() -> Self {
        DevConfig {
            app_url: String::new(),
            chromium: PathBuf::new(),
            page_timeout_secs: 30,
            viewport: [1280, 800],
        }
    }
}

/// `[tools.perplexity]`: `search_current_info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerplexityConfig {
    pub base_url: String,
    pub model: String,
}

impl Default for PerplexityConfig {
    fn default() -> Self {
        PerplexityConfig {
            base_url: "https://api.perplexity.ai".to_owned(),
            model: "sonar".to_owned(),
        }
    }
}

/// `[tools.openai]`: `create_image` and `analyze_shared_image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiConfig {
    pub base_url: String,
    pub image_model: String,
    pub vision_model: String,
    /// Images larger than this (MB) are not sent for analysis.
    pub max_image_mb: u64,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: "https://api.openai.com/v1".to_owned(),
            image_model: "gpt-image-1".to_owned(),
            vision_model: "gpt-4o-mini".to_owned(),
            max_image_mb: 20,
        }
    }
}

/// `[tools.links]`: what `save_link` may fetch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinksConfig {
    /// Fetch links to loopback, private and link-local addresses too (off: refused, also after
    /// redirects and DNS).
    pub allow_private: bool,
    /// Pages larger than this (KB) are cut.
    pub max_kb: usize,
    pub timeout_secs: u64,
    pub max_redirects: usize,
}

impl Default for LinksConfig {
    fn default() -> Self {
        LinksConfig {
            allow_private: false,
            max_kb: 2048,
            timeout_secs: 15,
            max_redirects: 5,
        }
    }
}

/// `[store]`: where Valor keeps its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory of the embedded database (one process at a time).
    pub path: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("~/.local/share/valor/store"),
        }
    }
}

/// `[admin]`: the operator's Telegram chat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where alerts and their recovery, missed jobs and the daydream's summary and chart go
    /// (0: none; reports are still written).
    pub chat: i64,
}

/// `[memory]`: long-term memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// The embedding model's directory. Empty: `models/all-MiniLM-L6-v2` under the current
    /// directory (where scripts/setup puts it), else under `~/.local/share/valor/`.
    pub model_dir: PathBuf,
    /// A chat quiet this long starts a new session, the last one summarised (0: only /new).
    pub session_idle_mins: u64,
    /// Empty: session summaries are extractive (sentences of the session). A model name or
    /// alias ("haiku"): one cheap call a session writes a better one in the background.
    pub summarize_with: String,
}

impl Config {
    /// Replaces a leading `~/` in path settings with `home`.
    pub fn expand_home(&mut self, home: Option<&str>) {
        self.place_chats_on_shared_dir();
        let Some(home) = home.filter(|h| !h.is_empty()) else {
            return;
        };
        let expand = |path: &mut PathBuf| {
            if let Ok(rest) = path.strip_prefix("~") {
                *path = std::path::Path::new(home).join(rest);
            }
        };
        expand(&mut self.claude.workspaces_dir);
        expand(&mut self.claude.homes_dir);
        if let Some(shared) = &mut self.cluster.shared_dir {
            expand(shared);
        }
        expand(&mut self.store.path);
        expand(&mut self.memory.model_dir);
        expand(&mut self.learning.export_dir);
        for path in [&mut self.claude.binary, &mut self.claude.persona_file] {
            if let Some(rest) = path.strip_prefix("~/") {
                *path = format!("{home}/{rest}");
            }
        }
    }
}

impl Config {
    /// With `[cluster] shared_dir`, the chats' workspaces and Claude homes go on it (unless set
    /// beneath it by hand): a chat that moves to another node finds its files and resumes its
    /// session there.
    fn place_chats_on_shared_dir(&mut self) {
        let Some(shared) = self
            .cluster
            .shared_dir
            .clone()
            .filter(|_| self.cluster.enabled)
        else {
            return;
        };
        let defaults = ClaudeConfig::default();
        if self.claude.workspaces_dir == defaults.workspaces_dir {
            self.claude.workspaces_dir = shared.join("workspaces");
        }
        if self.claude.homes_dir == defaults.homes_dir {
            self.claude.homes_dir = shared.join("homes");
        }
    }
}

/// Where the embedding model goes under a models folder (scripts/setup puts it there).
const MODEL_SUBDIR: &str = "models/all-MiniLM-L6-v2";

impl MemoryConfig {
    /// The model directory to use: the configured one, or the first default that exists (see
    /// [`MemoryConfig::model_dir_candidates`]); the data directory's when none does.
    pub fn resolved_model_dir(&self, home: Option<&str>) -> PathBuf {
        if !self.model_dir.as_os_str().is_empty() {
            return self.model_dir.clone();
        }
        let exe = std::env::current_exe().ok();
        Self::first_model(&Self::model_dir_candidates(home, exe.as_deref()))
    }

    /// The first of `candidates` that holds a model, else the last (the data directory, where
    /// the "missing model" message then points).
    fn first_model(candidates: &[PathBuf]) -> PathBuf {
        candidates
            .iter()
            .find(|dir| dir.join("config.json").is_file())
            .or(candidates.last())
            .cloned()
            .unwrap_or_else(|| PathBuf::from(MODEL_SUBDIR))
    }

    /// Where the model is looked for, in order: `models/` in the current directory; beside the
    /// executable or up to three folders above it (a build in `target/release/` finds the
    /// repository's); the data directory (`~/.local/share/valor/models`), last.
    pub fn model_dir_candidates(home: Option<&str>, exe: Option<&std::path::Path>) -> Vec<PathBuf> {
        let mut out = vec![PathBuf::from(MODEL_SUBDIR)];
        if let Some(exe_dir) = exe.and_then(std::path::Path::parent) {
            out.extend(
                exe_dir
                    .ancestors()
                    .take(4)
                    .map(|dir| dir.join(MODEL_SUBDIR)),
            );
        }
        if let Some(home) = home.filter(|h| !h.is_empty()) {
            out.push(
                PathBuf::from(home)
                    .join(".local/share/valor")
                    .join(MODEL_SUBDIR),
            );
        }
        out
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            model_dir: PathBuf::new(),
            session_idle_mins: 240,
            summarize_with: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_model_is_found_beside_the_executable_from_any_directory() {
        let candidates = MemoryConfig::model_dir_candidates(
            Some("/home/ann"),
            Some(std::path::Path::new("/repo/target/release/valor")),
        );
        assert_eq!(
            candidates,
            [
                "models/all-MiniLM-L6-v2",
                "/repo/target/release/models/all-MiniLM-L6-v2",
                "/repo/target/models/all-MiniLM-L6-v2",
                "/repo/models/all-MiniLM-L6-v2",
                "/models/all-MiniLM-L6-v2",
                "/home/ann/.local/share/valor/models/all-MiniLM-L6-v2",
            ]
            .map(PathBuf::from)
        );
        // Configured wins; otherwise the first that holds a model, else the last.
        let dir = tempfile::tempdir().unwrap();
        let configured = MemoryConfig {
            model_dir: dir.path().to_owned(),
            ..MemoryConfig::default()
        };
        assert_eq!(configured.resolved_model_dir(None), dir.path());
        let [none, beside, data] = ["none", "beside", "data"].map(|d| dir.path().join(d));
        for with_model in [&beside, &data] {
            std::fs::create_dir_all(with_model).unwrap();
            std::fs::write(with_model.join("config.json"), "{}").unwrap();
        }
        let candidates = [none.clone(), beside.clone(), data.clone()];
        assert_eq!(MemoryConfig::first_model(&candidates), beside);
        assert_eq!(
            MemoryConfig::first_model(&[none.clone(), dir.path().join("x")]),
            dir.path().join("x")
        );
    }
}
