//! `git` on a workspace Valor did not write.
//!
//! A repository's own config can name programs git runs (hooks, `core.fsmonitor`, textconv and
//! external diff drivers): every call turns those off, runs with an empty environment (no
//! global or system config, no credentials), in its own process group, and is killed with that
//! group after a time limit. The repository itself is named explicitly (`--git-dir` and
//! `--work-tree`); a `.git` that is a file (`gitdir: elsewhere`) or a link is refused. And git
//! runs in a sandbox of its own where one can be had: only the workspace, read-only, no network,
//! so whatever the repository points at (an `objects/info/alternates` into another chat's
//! repository, a linked ref) is simply not there.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use valor_chatfs::{ChatDir, ChatFs, Kind};
use valor_sandbox::{Bind, Launch, Limits, Sandbox};

/// One git call may take this long.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Output kept at most (a log or diff of a huge repository is cut, not buffered whole).
const MAX_OUTPUT: u64 = 16 * 1024 * 1024;

/// Configuration that makes git run nothing the repository names.
const SAFE_CONFIG: [&str; 9] = [
    "core.hooksPath=/dev/null",
    "log.showSignature=false",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "core.pager=cat",
    "protocol.allow=never",
    "credential.helper=",
    "core.sshCommand=false",
    // Inside a sandbox the folder's owner may show as another user; it is studied, not trusted.
    "safe.directory=*",
];

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Where git runs.
#[derive(Clone, Default)]
pub enum GitJail {
    /// In a sandbox of its own: the workspace read-only, nothing else, no network. A chat's
    /// workspace (below `chats`) is read as the sandboxes' own user when Valor is root.
    Sandboxed {
        sandbox: Arc<Sandbox>,
        chats: Option<ChatFs>,
    },
    /// Hardened only: where no sandbox can be had (said so at start).
    #[default]
    Bare,
}

/// A repository to run hardened git calls in; the filters it defines are read once.
pub struct Repo<'a> {
    path: &'a Path,
    root: ChatDir,
    jail: &'a GitJail,
    filters: Vec<String>,
}

impl<'a> Repo<'a> {
    /// The repository at `path`, when its `.git` is a real folder.
    pub fn open(path: &'a Path, jail: &'a GitJail) -> Result<Repo<'a>, String> {
        let root = ChatDir::open(path, None).map_err(|e| e.to_string())?;
        match root.entry(".git") {
            Ok(Some(entry)) if entry.kind == Kind::Dir => {}
            Ok(Some(_)) => {
                return Err(
                    ".git is a file or a link, not a folder: git is not run on it".to_owned(),
                );
            }
            Ok(None) => return Err("not a git repository".to_owned()),
            Err(e) => return Err(e.to_string()),
        }
        let mut repo = Repo {
            path,
            root,
            jail,
            filters: Vec::new(),
        };
        repo.filters = repo.filter_drivers();
        Ok(repo)
    }

    /// `git <args>`: its stdout when it succeeded within `limit`.
    pub fn run(&self, args: &[&str], limit: Duration) -> Option<String> {
        let child = self.spawn(args, &self.filters)?;
        collect(child, limit)
    }

    /// Clean/smudge filters the repository defines (`filter.<name>.*`, includes followed):
    /// each is switched off by name, since `git status` and `git diff` would run them on
    /// changed files.
    fn filter_drivers(&self) -> Vec<String> {
        // Reading config runs nothing.
        let args = [
            "config",
            "--includes",
            "--name-only",
            "--get-regexp",
            "^filter\\.",
        ];
        let listed = self
            .spawn(&args, &[])
            .and_then(|child| collect(child, GIT_TIMEOUT))
            .unwrap_or_default();
        let mut names: Vec<String> = listed
            .lines()
            .filter_map(|key| {
                key.strip_prefix("filter.")?
                    .rsplit_once('.')
                    .map(|(name, _)| name.to_owned())
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn spawn(&self, args: &[&str], filters: &[String]) -> Option<Child> {
        let git_args = git_args(self.path, args, filters);
        match self.jail {
            GitJail::Bare => {
                let mut command = Command::new("git");
                command
                    .args(&git_args)
                    .env_clear()
                    .envs(environment())
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .process_group(0);
                command.spawn().ok()
            }
            GitJail::Sandboxed { sandbox, chats } => {
                let run_as = chats
                    .as_ref()
                    .filter(|chats| self.path.starts_with(chats.workspaces_dir()))
                    .and_then(ChatFs::owner);
                let launch = Launch {
                    name: "git",
                    program: git_program(),
                    args: git_args.into_iter().map(Into::into).collect(),
                    env: environment()
                        .into_iter()
                        .map(|(k, v)| (k.into(), v.into()))
                        .collect(),
                    binds: vec![Bind::dir(&self.root, false).ok()?],
                    data: Vec::new(),
                    chdir: Some(self.path.to_owned()),
                    listen_port: None,
                    keep_fds: Vec::new(),
                    run_as,
                    limits: Limits::default(),
                    own_cgroup: false,
                };
                match sandbox.spawn_blocking(launch) {
                    Ok((child, _)) => Some(child),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start git in its sandbox");
                        None
                    }
                }
            }
        }
    }
}

/// `git` as the sandbox runs it: the resolved program (it must lie in the system's folders,
/// which every sandbox has).
fn git_program() -> PathBuf {
    PATH.split(':')
        .map(|dir| Path::new(dir).join("git"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/git"))
}

fn environment() -> Vec<(&'static str, &'static str)> {
    vec![
        ("PATH", PATH),
        ("LC_ALL", "C"),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ("GIT_OPTIONAL_LOCKS", "0"),
        ("HOME", "/tmp"),
    ]
}

fn git_args(path: &Path, args: &[&str], filters: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for setting in SAFE_CONFIG {
        out.push("-c".to_owned());
        out.push(setting.to_owned());
    }
    for name in filters {
        for part in ["clean", "smudge", "process"] {
            out.push("-c".to_owned());
            out.push(format!("filter.{name}.{part}="));
        }
        out.push("-c".to_owned());
        out.push(format!("filter.{name}.required=false"));
    }
    out.push("--no-optional-locks".to_owned());
    out.push(format!("--git-dir={}", path.join(".git").display()));
    out.push(format!("--work-tree={}", path.display()));
    out.extend(args.first().map(|a| (*a).to_owned()));
    // External diff drivers and textconv filters are programs the repository names.
    if matches!(args.first().copied(), Some("diff" | "log" | "show")) {
        out.push("--no-ext-diff".to_owned());
        out.push("--no-textconv".to_owned());
    }
    // Submodules are repositories of their own, with their own config.
    if matches!(args.first().copied(), Some("diff" | "status")) {
        out.push("--ignore-submodules".to_owned());
    }
    out.extend(args.iter().skip(1).map(|a| (*a).to_owned()));
    out
}

/// A git's stdout when it exited well within `limit`; killed with its group at the limit.
fn collect(mut child: Child, limit: Duration) -> Option<String> {
    let mut stdout = child.stdout.take()?;
    // Read while it runs: a full pipe would stall git until the limit.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = (&mut stdout).take(MAX_OUTPUT).read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let pgid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).ok()?);
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                tracing::warn!("git took longer than {} ms; killed", limit.as_millis());
                break None;
            }
        }
    };
    let out = reader.join().ok()?;
    status
        .filter(std::process::ExitStatus::success)
        .map(|_| String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn repo(dir: &Path) {
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@t")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@t")
                .status()
                .unwrap()
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(dir.join("a.txt"), "a\n").unwrap();
        git(&["add", "."]);
        git(&["commit", "-qm", "first"]);
    }

    #[test]
    fn a_repositorys_own_programs_never_run() {
        let dir = tempfile::tempdir().unwrap();
        repo(dir.path());
        let marker = dir.path().join("pwned");
        let script = dir.path().join("evil.sh");
        std::fs::write(&script, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A hostile repository: fsmonitor, an external diff, a clean filter on every file and a
        // textconv driver, all pointing at it, and log signatures through it.
        std::fs::write(
            dir.path().join(".gitattributes"),
            "* filter=evil diff=evil\n",
        )
        .unwrap();
        for (key, value) in [
            ("core.fsmonitor", script.display().to_string()),
            ("diff.external", script.display().to_string()),
            ("filter.evil.clean", script.display().to_string()),
            ("filter.evil.process", script.display().to_string()),
            ("diff.evil.textconv", script.display().to_string()),
            ("gpg.program", script.display().to_string()),
            ("log.showSignature", "true".to_owned()),
        ] {
            assert!(
                Command::new("git")
                    .arg("-C")
                    .arg(dir.path())
                    .args(["config", key, &value])
                    .status()
                    .unwrap()
                    .success()
            );
        }
        std::fs::write(dir.path().join("a.txt"), "changed\n").unwrap();
        let jail = GitJail::Bare;
        let repo = Repo::open(dir.path(), &jail).unwrap();
        let status = repo.run(&["status", "--porcelain"], GIT_TIMEOUT).unwrap();
        assert!(status.contains("a.txt"), "{status}");
        let diff = repo.run(&["diff", "HEAD"], GIT_TIMEOUT).unwrap();
        assert!(diff.contains("+changed"), "{diff}");
        let log = repo.run(&["log", "--format=%s"], GIT_TIMEOUT).unwrap();
        assert_eq!(log.trim(), "first");
        assert!(!marker.exists(), "the repository's program ran");
        // The control: plain git does run it (so this test can fail).
        let _ = Command::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(["status"])
            .output();
        assert!(marker.exists(), "the hostile repository is not hostile");
        std::fs::remove_file(&marker).unwrap();
        repo.run(&["status", "--porcelain"], GIT_TIMEOUT).unwrap();
        assert!(!marker.exists(), "the repository's program ran");
    }

    #[test]
    fn a_git_that_hangs_is_killed_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        repo(dir.path());
        // An alias that runs a shell command which never ends (aliases are repository config).
        assert!(
            Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(["config", "alias.hang", "!sleep 30"])
                .status()
                .unwrap()
                .success()
        );
        let started = Instant::now();
        let jail = GitJail::Bare;
        assert_eq!(
            Repo::open(dir.path(), &jail)
                .unwrap()
                .run(&["hang"], Duration::from_millis(300)),
            None
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
