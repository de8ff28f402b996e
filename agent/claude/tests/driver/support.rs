//! A driver wired to temp dirs and a fake API, for tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use valor_claude::proxy::Upstream;
use valor_claude::sandbox::{EgressRules, SandboxMode, SandboxSetup, SandboxState};
use valor_claude::{ClaudeDriver, DriverSetup};
use valor_config::ClaudeConfig;
use valor_core::Backend;
use valor_fakes::anthropic::{Reply, Turn};
use valor_monitor::{ChildRegistry, MetricsRegistry};
use valor_protocol::{Event, TurnRequest};
use valor_store::Store;

/// The repository root (tools/ and target/ are below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The pinned CLI installed by scripts/setup.
pub fn real_claude() -> PathBuf {
    let path = repo_root().join(valor_claude::binary::LOCAL_INSTALL);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup",
        path.display()
    );
    path
}

/// The fake MCP server binary (built with the workspace's tests).
pub fn fake_mcp() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("fake-mcp");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p valor-fakes --bins` (a whole-workspace test run builds it)",
        path.display()
    );
    path
}

/// A fake `claude` program for process faults (tests/fake-claude/*.sh).
pub fn fake_claude(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fake-claude")
        .join(format!("{name}.sh"))
}

pub fn mcp_config(extra: &[(&str, Value)]) -> Value {
    let mut servers = serde_json::Map::new();
    servers.insert(
        "fake".to_owned(),
        json!({"type": "stdio", "command": fake_mcp().display().to_string(), "args": []}),
    );
    for (name, server) in extra {
        servers.insert((*name).to_owned(), server.clone());
    }
    json!({ "mcpServers": servers })
}

/// The operator's subscription login in a folder of its own: (the folder, the credentials
/// file, what it holds).
pub const OPERATOR_LOGIN: &str = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-OPERATOR","refreshToken":"sk-ant-ort01-R","expiresAt":0}}"#;

pub fn operator_login() -> (tempfile::TempDir, std::path::PathBuf) {
    let operator = tempfile::tempdir().unwrap();
    let credentials = operator.path().join(".claude/.credentials.json");
    std::fs::create_dir_all(credentials.parent().unwrap()).unwrap();
    std::fs::write(&credentials, OPERATOR_LOGIN).unwrap();
    (operator, credentials)
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub driver: ClaudeDriver,
    pub store: Store,
    pub children: ChildRegistry,
    pub metrics: MetricsRegistry,
}

/// How a harness's Claude runs.
pub enum Sandboxing {
    /// In the sandbox, as Valor runs it (scripts/setup installs bubblewrap; the init is built
    /// with the workspace).
    Probe,
    /// Probed with the operator's subscription login at this path (no API key).
    Login(PathBuf),
    Off,
    State(SandboxState),
}

/// Where each chat's folders are, and (as root) the sandboxes' own user.
pub fn chat_folders(dir: &Path) -> valor_chatfs::ChatFs {
    valor_chatfs::ChatFs::new(
        dir.join("workspaces"),
        dir.join("homes"),
        valor_chatfs::ChatFs::sandbox_owner(true, 2_000_000),
    )
}

/// A working sandbox for a driver whose folders are below `dir`, its API proxy sending to
/// `api_url` with the test key (or the login file).
pub async fn sandbox(
    dir: &Path,
    api_url: &str,
    login: Option<PathBuf>,
    config: &ClaudeConfig,
) -> SandboxState {
    let mut env =
        std::collections::BTreeMap::from([("ANTHROPIC_BASE_URL".to_owned(), api_url.to_owned())]);
    if login.is_none() {
        env.insert("ANTHROPIC_API_KEY".to_owned(), "sk-ant-test".to_owned());
    }
    let setup = SandboxSetup {
        bwrap: valor_sandbox::locate_bwrap(),
        init: valor_sandbox::locate_init(),
        chats: chat_folders(dir),
        limits: valor_sandbox::Limits {
            memory_mb: config.limits.memory_mb,
            processes: config.limits.processes,
            cpu_weight: config.limits.cpu_weight,
            disk_mb: config.limits.disk_mb,
            tmp_mb: config.limits.tmp_mb,
        },
        egress: EgressRules::from_config(&config.egress),
        upstream: Upstream::from_env(&env, login, &format!("{api_url}/v1/oauth/token")),
    };
    let state = SandboxState::probe(SandboxMode::Required, setup).await;
    assert!(
        matches!(state, SandboxState::Active(_)),
        "the sandbox does not work here ({state:?}): run scripts/setup and build the workspace"
    );
    state
}

pub fn config(dir: &Path) -> ClaudeConfig {
    ClaudeConfig {
        workspaces_dir: dir.join("workspaces"),
        homes_dir: dir.join("homes"),
        keep_warm_secs: 0,
        total_timeout_secs: 60,
        idle_timeout_secs: 30,
        kill_grace_secs: 2,
        allowed_tools: vec!["mcp__fake".to_owned()],
        ..ClaudeConfig::default()
    }
}

impl Harness {
    /// A driver running `binary` against `api_url` (the fake), with `tweak` applied to config.
    pub async fn new(
        binary: PathBuf,
        api_url: &str,
        tweak: impl FnOnce(&mut ClaudeConfig),
    ) -> Harness {
        Harness::with_sandbox(binary, api_url, tweak, Sandboxing::Probe).await
    }

    /// The same, unsandboxed.
    pub async fn unsandboxed(
        binary: PathBuf,
        api_url: &str,
        tweak: impl FnOnce(&mut ClaudeConfig),
    ) -> Harness {
        Harness::with_sandbox(binary, api_url, tweak, Sandboxing::Off).await
    }

    pub async fn with_sandbox(
        binary: PathBuf,
        api_url: &str,
        tweak: impl FnOnce(&mut ClaudeConfig),
        sandboxing: Sandboxing,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        tweak(&mut config);
        let sandbox = match sandboxing {
            Sandboxing::Probe => sandbox(dir.path(), api_url, None, &config).await,
            Sandboxing::Login(login) => sandbox(dir.path(), api_url, Some(login), &config).await,
            Sandboxing::Off => SandboxState::Off,
            Sandboxing::State(state) => state,
        };
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let parent_env = vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap()),
            ("HOME".to_owned(), home.display().to_string()),
            ("ANTHROPIC_BASE_URL".to_owned(), api_url.to_owned()),
            ("ANTHROPIC_API_KEY".to_owned(), "sk-ant-test".to_owned()),
            ("CLAUDE_CODE_MAX_RETRIES".to_owned(), "1".to_owned()),
            (
                "TELEGRAM_BOT_TOKEN".to_owned(),
                "123:must-not-leak".to_owned(),
            ),
            (
                "OPENAI_API_KEY".to_owned(),
                "sk-openai-must-not-leak".to_owned(),
            ),
        ];
        let store = Store::open(&dir.path().join("store")).unwrap();
        let children = ChildRegistry::new();
        let metrics = MetricsRegistry::new();
        let driver = ClaudeDriver::new(DriverSetup {
            config,
            binary,
            persona: Some("You are a test persona.".to_owned()),
            parent_env,
            runtime_dir: dir.path().join("run"),
            sandbox,
            chats: chat_folders(dir.path()),
            ledger: std::sync::Arc::new(store.clone()),
            children: children.clone(),
            metrics: metrics.clone(),
        })
        .unwrap();
        Harness {
            dir,
            driver,
            store,
            children,
            metrics,
        }
    }

    pub fn request(&self, chat_id: i64, prompt: &str) -> TurnRequest {
        let mut request = TurnRequest::new(chat_id, prompt);
        request.mcp_config = Some(mcp_config(&[]));
        request
    }

    /// Runs a turn to the end and returns all its events.
    pub async fn run(&self, request: TurnRequest) -> Vec<Event> {
        let mut stream = self.driver.start(request);
        let mut events = Vec::new();
        let collect = async {
            while let Some(event) = stream.next().await {
                events.push(event);
            }
        };
        tokio::time::timeout(Duration::from_secs(120), collect)
            .await
            .expect("turn did not end within 120 s");
        events
    }
}

pub fn finished(events: &[Event]) -> &valor_protocol::TurnSummary {
    match events.last() {
        Some(Event::Final(summary)) => summary,
        other => panic!("turn did not finish: {other:?}\nall events: {events:#?}"),
    }
}

pub fn failed(events: &[Event]) -> &valor_protocol::TurnError {
    match events.last() {
        Some(Event::Failed { error, .. }) => error,
        other => panic!("turn did not fail: {other:?}\nall events: {events:#?}"),
    }
}

/// Pids of processes in process group `pgid` (zombies excluded).
pub fn group_members(pgid: u32) -> Vec<u32> {
    valor_claude::process::group_members(pgid)
}

/// A model that asks for files: `READ:<path>` calls Claude Code's own Read tool, `BASH:<line>`
/// its Bash tool; the tool's result comes back as the answer, so whatever leaks shows in it.
pub fn prying(turn: &Turn) -> Reply {
    if let Some((_, content, is_error)) = &turn.last_tool_result {
        return Reply::text(&format!("error={is_error}\n{content}"));
    }
    let text = turn.last_user_text.clone().unwrap_or_default();
    let after = |marker: &str| {
        text.find(marker).map(|at| {
            text[at + marker.len()..]
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
    };
    if let Some(path) = after("READ:") {
        return Reply::tool("Read", json!({"file_path": path}));
    }
    if let Some(path) = after("WRITE:") {
        return Reply::tool("Write", json!({"file_path": path, "content": "written"}));
    }
    if let Some(line) = after("BASH:") {
        return Reply::tool(
            "Bash",
            json!({"command": line, "description": "look around"}),
        );
    }
    Reply::text("nothing asked")
}
