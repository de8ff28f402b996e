//! One bubblewrap sandbox per Claude process: the system read-only, the chat's own workspace
//! read-write as its working directory, a HOME of its own, its own `/proc` and `/tmp`, and
//! nothing else of the machine's data (no Valor store, config or token, no other chat).
//! The network stays shared: the API and the MCP servers Valor hosts on loopback must work.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// How `[claude] sandbox` asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    /// Sandboxed when bubblewrap works; otherwise unsandboxed, degraded and said so.
    Auto,
    /// No turn runs without it.
    Required,
    Off,
}

impl SandboxMode {
    /// From the config's text (validated there); anything unknown is the safe `Required`.
    pub fn parse(text: &str) -> SandboxMode {
        match text {
            "auto" => SandboxMode::Auto,
            "off" => SandboxMode::Off,
            _ => SandboxMode::Required,
        }
    }
}

/// What the driver runs Claude with, decided once at start.
#[derive(Debug, Clone)]
pub enum SandboxState {
    /// Every process runs inside bubblewrap.
    Active(Sandbox),
    /// Asked for but not working here; `required` says whether turns must refuse.
    Unavailable { reason: String, required: bool },
    /// Switched off by the operator.
    Off,
}

impl SandboxState {
    /// Probes bubblewrap once (for `auto` and `required`); takes a few milliseconds.
    pub fn probe(mode: SandboxMode, credentials: Option<PathBuf>) -> SandboxState {
        if mode == SandboxMode::Off {
            return SandboxState::Off;
        }
        let sandbox = Sandbox::new(PathBuf::from("bwrap"), credentials);
        match sandbox.check() {
            Ok(()) => SandboxState::Active(sandbox),
            Err(reason) => SandboxState::Unavailable {
                reason,
                required: mode == SandboxMode::Required,
            },
        }
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

/// The operator's subscription login, bound read-only into each chat's HOME when present.
pub fn operator_credentials(home: Option<&str>) -> Option<PathBuf> {
    let path = Path::new(home.filter(|h| !h.is_empty())?).join(".claude/.credentials.json");
    path.is_file().then_some(path)
}

/// Top-level system folders: bound read-only, or recreated as the symlinks they are
/// (merged /usr), when they exist.
const SYSTEM_DIRS: [&str; 7] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32",
];

/// What of `/etc` programs need (names, certificates, time zone, the loader). Not all of it:
/// an operator's `/etc/valor` stays out.
const ETC_ENTRIES: [&str; 17] = [
    "/etc/alternatives",
    "/etc/ca-certificates",
    "/etc/ssl",
    "/etc/pki",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/mime.types",
];

/// A working bubblewrap and what every sandbox binds besides the chat's own folders.
#[derive(Debug, Clone)]
pub struct Sandbox {
    bwrap: PathBuf,
    credentials: Option<PathBuf>,
}

/// The folders and files one process gets, besides the system.
#[derive(Debug, Clone)]
pub struct Jail<'a> {
    /// The chat's workspace: read-write, the working directory.
    pub workspace: &'a Path,
    /// The chat's own HOME: read-write.
    pub home: &'a Path,
    /// The program to run (bound read-only with its folder, for the files it ships beside it).
    pub program: &'a Path,
    /// Files bound read-only at their own path (the turn's MCP config, stdio servers' programs).
    pub files: Vec<PathBuf>,
}

impl Sandbox {
    pub fn new(bwrap: PathBuf, credentials: Option<PathBuf>) -> Sandbox {
        Sandbox { bwrap, credentials }
    }

    pub fn bwrap(&self) -> &Path {
        &self.bwrap
    }

    /// Runs `true` in a sandbox of the same shape, to see that bubblewrap works here.
    pub fn check(&self) -> Result<(), String> {
        let dir = tempfile_dir().map_err(|e| format!("cannot make a probe folder: {e}"))?;
        let program = PathBuf::from("/bin/true");
        let jail = Jail {
            workspace: &dir,
            home: &dir,
            program: &program,
            files: Vec::new(),
        };
        let output = std::process::Command::new(&self.bwrap)
            .args(self.args(&jail))
            .arg(&program)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output();
        let _ = std::fs::remove_dir(&dir);
        let output = output.map_err(|e| {
            format!(
                "cannot run {}: {e} (install the package bubblewrap)",
                self.bwrap.display()
            )
        })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "bubblewrap fails here ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// bubblewrap's arguments up to (not including) the program to run.
    pub fn args(&self, jail: &Jail<'_>) -> Vec<OsString> {
        let mut args = Args::default();
        args.flags(&[
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ]);
        for dir in SYSTEM_DIRS {
            let path = Path::new(dir);
            match std::fs::read_link(path) {
                Ok(target) => args.op("--symlink", &target, path),
                Err(_) if path.is_dir() => args.op("--ro-bind", path, path),
                Err(_) => {}
            }
        }
        for entry in ETC_ENTRIES {
            args.op("--ro-bind-try", Path::new(entry), Path::new(entry));
        }
        args.flags(&["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
        if let Some(folder) = jail.program.parent().filter(|p| !p.starts_with("/usr")) {
            args.op("--ro-bind", folder, folder);
        }
        args.op("--bind", jail.home, jail.home);
        if let Some(credentials) = &self.credentials {
            let inside = jail.home.join(".claude/.credentials.json");
            args.op("--ro-bind-try", credentials, &inside);
        }
        for file in &jail.files {
            args.op("--ro-bind", file, file);
        }
        args.op("--bind", jail.workspace, jail.workspace);
        args.0.push("--chdir".into());
        args.0.push(jail.workspace.into());
        args.0.push("--".into());
        args.0
    }
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flags(&mut self, flags: &[&str]) {
        self.0.extend(flags.iter().map(OsString::from));
    }

    fn op(&mut self, op: &str, source: &Path, target: &Path) {
        self.0.push(op.into());
        self.0.push(source.into());
        self.0.push(target.into());
    }
}

/// A fresh private folder for the probe.
fn tempfile_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = std::env::temp_dir().join(format!(
        "valor-sandbox-probe-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jail_binds_the_chat_and_nothing_of_valor() {
        let sandbox = Sandbox::new(
            PathBuf::from("bwrap"),
            Some(PathBuf::from("/home/op/.claude/.credentials.json")),
        );
        let jail = Jail {
            workspace: Path::new("/data/ws/chat_7"),
            home: Path::new("/data/homes/chat_7"),
            program: Path::new("/opt/claude/bin/claude"),
            files: vec![PathBuf::from("/run/valor-1/mcp-x.json")],
        };
        let args: Vec<String> = sandbox
            .args(&jail)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = args.join(" ");
        for expected in [
            "--unshare-pid",
            "--die-with-parent",
            "--proc /proc",
            "--tmpfs /tmp",
            "--ro-bind /opt/claude/bin /opt/claude/bin",
            "--bind /data/homes/chat_7 /data/homes/chat_7",
            "--ro-bind-try /home/op/.claude/.credentials.json /data/homes/chat_7/.claude/.credentials.json",
            "--ro-bind /run/valor-1/mcp-x.json /run/valor-1/mcp-x.json",
            "--bind /data/ws/chat_7 /data/ws/chat_7 --chdir /data/ws/chat_7 --",
        ] {
            assert!(line.contains(expected), "{expected} missing from {line}");
        }
        assert!(
            !line.contains("--unshare-net"),
            "the API must stay reachable"
        );
        assert!(
            !line.contains("--new-session"),
            "group kills must reach inside"
        );
        assert!(!line.contains("/data/ws "), "no other workspace: {line}");
        assert!(
            !line.contains(" /etc /etc"),
            "not the whole of /etc: {line}"
        );
        assert_eq!(args.last().map(String::as_str), Some("--"));
    }

    #[test]
    fn an_unknown_mode_is_the_safe_one() {
        assert_eq!(SandboxMode::parse("auto"), SandboxMode::Auto);
        assert_eq!(SandboxMode::parse("off"), SandboxMode::Off);
        assert_eq!(SandboxMode::parse("required"), SandboxMode::Required);
        assert_eq!(SandboxMode::parse("maybe"), SandboxMode::Required);
    }
}
