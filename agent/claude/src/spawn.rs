//! The Claude Code command line and environment for one process.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};

use crate::ClaudeError;

/// Variables of Valor's own environment a Claude process gets. Everything else, the Telegram,
/// Notion, OpenAI and Perplexity keys among it, stays out.
fn passes_through(name: &str) -> bool {
    matches!(
        name,
        "PATH" | "HOME" | "LANG" | "LANGUAGE" | "TMPDIR" | "TZ"
    ) || name.starts_with("LC_")
        || name.starts_with("ANTHROPIC_")
        || name.starts_with("CLAUDE_")
}

/// The environment of a Claude process: the pass-through subset of `parent`, quiet defaults,
/// `[claude.env]`, and always `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`.
pub fn child_env(
    parent: impl IntoIterator<Item = (String, String)>,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = parent
        .into_iter()
        .filter(|(k, _)| passes_through(k))
        .collect();
    for (k, v) in [
        ("DISABLE_AUTOUPDATER", "1"),
        ("DISABLE_TELEMETRY", "1"),
        ("DISABLE_ERROR_REPORTING", "1"),
    ] {
        env.entry(k.to_owned()).or_insert_with(|| v.to_owned());
    }
    env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.insert(
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".to_owned(),
        "1".to_owned(),
    );
    env
}

/// What one process is started with.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub binary: PathBuf,
    pub workspace: PathBuf,
    pub allowed_tools: Vec<String>,
    /// `--permission-prompt-tool`: the MCP tool asked about uses the rules do not allow.
    pub permission_tool: Option<String>,
    pub resume: Option<String>,
    pub model: Option<String>,
    pub effort: Option<String>,
    pub env: BTreeMap<String, String>,
}

impl SpawnSpec {
    /// Arguments but the MCP config and the system prompt (where they come from depends on the
    /// sandbox). The prompt is not among them: it goes to stdin as a stream-json message, so
    /// no prompt is limited by the 128 KiB argument limit or read as a flag, and warm processes
    /// take later prompts the same way.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
            "--strict-mcp-config",
        ]
        .map(str::to_owned)
        .to_vec();
        if !self.allowed_tools.is_empty() {
            // `=` keeps the variadic flag from swallowing the next argument.
            args.push(format!("--allowedTools={}", self.allowed_tools.join(",")));
        }
        let pairs = [
            ("--permission-prompt-tool", &self.permission_tool),
            ("--resume", &self.resume),
            ("--model", &self.model),
            ("--effort", &self.effort),
        ];
        for (flag, value) in pairs {
            if let Some(value) = value {
                args.push(flag.to_owned());
                args.push(value.clone());
            }
        }
        args
    }

    /// The unsandboxed command: own session and process group (no controlling terminal to
    /// reach back into), working directory, clean environment, piped stdio, the MCP config
    /// from a private file and the system prompt on the command line.
    pub fn command(
        &self,
        mcp_config: &Path,
        system_append: Option<&str>,
    ) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(self.args())
            .arg("--mcp-config")
            .arg(mcp_config);
        if let Some(text) = system_append {
            command.arg("--append-system-prompt").arg(text);
        }
        command
            .current_dir(&self.workspace)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        new_session(&mut command);
        command
    }
}

/// Starts the child in a session of its own: it leads its own process group (so the whole tree
/// is stopped with one signal) and has no controlling terminal a tool could inject keys into.
#[allow(unsafe_code)]
fn new_session(command: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and calls only setsid(2), which
    // is async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
}

/// The program `binary` names, as an absolute path with links resolved: a bare name is looked
/// up in `path` (the `PATH` the process gets). A sandbox binds the resolved file's folder.
pub fn resolve_program(binary: &Path, path: Option<&str>) -> PathBuf {
    let found = if binary.components().count() > 1 || binary.is_absolute() {
        Some(binary.to_owned())
    } else {
        path.unwrap_or_default()
            .split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| Path::new(dir).join(binary))
            .find(|candidate| candidate.is_file())
    };
    found
        .and_then(|p| p.canonicalize().ok())
        .unwrap_or_else(|| binary.to_owned())
}

/// Absolute programs of the stdio servers in an MCP config: a sandbox binds them read-only so
/// they start inside it. Bare names are found on the sandbox's own (system) PATH.
pub fn stdio_programs(config: Option<&Value>) -> Vec<PathBuf> {
    let Some(servers) = config
        .and_then(|c| c.get("mcpServers"))
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    servers
        .values()
        .filter_map(|server| server.get("command")?.as_str())
        .map(Path::new)
        .filter(|command| command.is_absolute())
        .filter_map(|command| command.canonicalize().ok())
        .filter(|command| !command.starts_with("/usr"))
        .collect()
}

/// A user message line for `--input-format stream-json`.
pub fn user_message_line(prompt: &str) -> String {
    let message = json!({"type": "user", "message": {"role": "user", "content": prompt}});
    format!("{message}\n")
}

/// A per-turn MCP config file, readable only by Valor's user, removed when dropped. A file
/// (not the JSON on the command line) keeps tool-server tokens out of `ps`.
#[derive(Debug)]
pub struct McpConfigFile {
    path: PathBuf,
}

impl McpConfigFile {
    pub fn write(dir: &Path, config: Option<&Value>) -> Result<McpConfigFile, ClaudeError> {
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(ClaudeError::McpConfig)?;
        }
        let path = dir.join(format!("mcp-{}.json", uuid::Uuid::new_v4()));
        let empty = json!({"mcpServers": {}});
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(ClaudeError::McpConfig)?;
        file.write_all(config.unwrap_or(&empty).to_string().as_bytes())
            .map_err(ClaudeError::McpConfig)?;
        Ok(McpConfigFile { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for McpConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allowed_variables_reach_claude() {
        let parent = [
            ("PATH", "/bin"),
            ("HOME", "/home/v"),
            ("LC_ALL", "C.UTF-8"),
            ("ANTHROPIC_API_KEY", "sk-ant"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:1"),
            ("CLAUDE_CODE_MAX_RETRIES", "2"),
            ("TELEGRAM_BOT_TOKEN", "tg"),
            ("OPENAI_API_KEY", "oa"),
            ("NOTION_API_KEY", "no"),
            ("PERPLEXITY_API_KEY", "pp"),
            ("AWS_SECRET_ACCESS_KEY", "aws"),
            ("DISABLE_TELEMETRY", "0"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let extra = BTreeMap::from([
            ("DISABLE_TELEMETRY".to_owned(), "0".to_owned()),
            (
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".to_owned(),
                "0".to_owned(),
            ),
        ]);
        let env = child_env(parent, &extra);
        let names: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "ANTHROPIC_API_KEY",
                "ANTHROPIC_BASE_URL",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
                "CLAUDE_CODE_MAX_RETRIES",
                "DISABLE_AUTOUPDATER",
                "DISABLE_ERROR_REPORTING",
                "DISABLE_TELEMETRY",
                "HOME",
                "LC_ALL",
                "PATH",
            ]
        );
        assert_eq!(
            env["DISABLE_TELEMETRY"], "0",
            "[claude.env] wins over the defaults"
        );
        assert_eq!(
            env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"], "1",
            "always on"
        );
    }

    #[test]
    fn args_carry_the_turn_and_no_prompt() {
        let spec = SpawnSpec {
            binary: PathBuf::from("claude"),
            workspace: PathBuf::from("/w"),
            allowed_tools: vec!["Read".to_owned(), "mcp__valor".to_owned()],
            permission_tool: Some("mcp__permissions__ask".to_owned()),
            resume: Some("sess".to_owned()),
            model: Some("sonnet".to_owned()),
            effort: None,
            env: BTreeMap::new(),
        };
        let args = spec.args().join(" ");
        assert_eq!(
            args,
            "-p --input-format stream-json --output-format stream-json --verbose \
             --include-partial-messages --strict-mcp-config \
             --allowedTools=Read,mcp__valor --permission-prompt-tool mcp__permissions__ask \
             --resume sess --model sonnet"
        );
        let command = spec.command(Path::new("/r/mcp.json"), Some("persona"));
        let line: Vec<String> = command
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            line.join(" ")
                .ends_with("--mcp-config /r/mcp.json --append-system-prompt persona"),
            "{line:?}"
        );
    }

    #[test]
    fn mcp_config_file_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let config =
            json!({"mcpServers": {"v": {"type": "http", "url": "http://127.0.0.1:1/mcp"}}});
        let file = McpConfigFile::write(dir.path(), Some(&config)).unwrap();
        let path = file.path().to_owned();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written, config);
        drop(file);
        assert!(!path.exists());
    }
}
