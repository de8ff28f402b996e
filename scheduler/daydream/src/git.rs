//! `git` on a workspace Valor did not write: a repository's own config can name programs git
//! runs (hooks, `core.fsmonitor`, textconv and external diff drivers), so every call turns
//! those off, runs with an empty environment (no global or system config, no credentials),
//! in its own process group, and is killed with that group after a time limit.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One git call may take this long.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Output kept at most (a log or diff of a huge repository is cut, not buffered whole).
const MAX_OUTPUT: u64 = 16 * 1024 * 1024;

/// Configuration that makes git run nothing the repository names.
const SAFE_CONFIG: [&str; 8] = [
    "core.hooksPath=/dev/null",
    "log.showSignature=false",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "core.pager=cat",
    "protocol.allow=never",
    "credential.helper=",
    "core.sshCommand=false",
];

/// A repository to run hardened git calls in; the filters it defines are read once.
pub struct Repo<'a> {
    path: &'a Path,
    filters: Vec<String>,
}

impl<'a> Repo<'a> {
    pub fn open(path: &'a Path) -> Repo<'a> {
        Repo {
            path,
            filters: filter_drivers(path),
        }
    }

    /// `git <args>`: its stdout when it succeeded within `limit`.
    pub fn run(&self, args: &[&str], limit: Duration) -> Option<String> {
        run_plain(command_with(self.path, args, &self.filters), limit)
    }
}

/// Clean/smudge filters the repository defines (`filter.<name>.*`, includes followed): each
/// is switched off by name, since `git status` and `git diff` would run them on changed files.
fn filter_drivers(path: &Path) -> Vec<String> {
    // Reading config runs nothing.
    let listed = run_plain(
        command_with(
            path,
            &[
                "config",
                "--includes",
                "--name-only",
                "--get-regexp",
                "^filter\\.",
            ],
            &[],
        ),
        GIT_TIMEOUT,
    )
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

fn command_with(path: &Path, args: &[&str], filters: &[String]) -> Command {
    let mut command = Command::new("git");
    for setting in SAFE_CONFIG {
        command.arg("-c").arg(setting);
    }
    for name in filters {
        for part in ["clean", "smudge", "process"] {
            command.arg("-c").arg(format!("filter.{name}.{part}="));
        }
        command
            .arg("-c")
            .arg(format!("filter.{name}.required=false"));
    }
    command
        .arg("--no-optional-locks")
        .arg("-C")
        .arg(path)
        .args(args.first());
    // External diff drivers and textconv filters are programs the repository names.
    if matches!(args.first().copied(), Some("diff" | "log" | "show")) {
        command.args(["--no-ext-diff", "--no-textconv"]);
    }
    // Submodules are repositories of their own, with their own config.
    if matches!(args.first().copied(), Some("diff" | "status")) {
        command.arg("--ignore-submodules");
    }
    command
        .args(args.iter().skip(1))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    command
}

fn run_plain(mut command: Command, limit: Duration) -> Option<String> {
    let mut child = command.spawn().ok()?;
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
                tracing::warn!(
                    ?command,
                    "git took longer than {} ms; killed",
                    limit.as_millis()
                );
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
        let repo = Repo::open(dir.path());
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
        assert_eq!(
            Repo::open(dir.path()).run(&["hang"], Duration::from_millis(300)),
            None
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
