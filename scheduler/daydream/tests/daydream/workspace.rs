//! Phase 3 against real git repositories the test creates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Duration, Utc};
use valor_daydream::{Language, MapCache, gather_workspaces};

fn git(dir: &Path, args: &[&str], date: &str) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

const LIB_V1: &str = "pub fn parse(text: &str) -> u32 {\n    text.len() as u32\n}\n\npub fn render(n: u32) -> String {\n    n.to_string()\n}\n";
const LIB_V2: &str = "pub fn parse(text: &str) -> u32 {\n    text.trim().len() as u32\n}\n\npub fn render(n: u32) -> String {\n    n.to_string()\n}\n";

#[test]
fn a_repository_gives_branch_commits_stack_code_map_and_changed_functions() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("shop");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(
        repo.join("Cargo.toml"),
        "[package]\nname = \"shop\"\n\n[dependencies]\ntokio = \"1\"\nserde = \"1\"\n",
    )
    .unwrap();
    std::fs::write(repo.join("src/lib.rs"), LIB_V1).unwrap();
    std::fs::write(repo.join("tool.py"), "def helper(x):\n    return x\n").unwrap();
    std::fs::write(repo.join(".gitignore"), "target/\n").unwrap();
    std::fs::create_dir_all(repo.join("target")).unwrap();
    std::fs::write(repo.join("target/generated.rs"), "fn ignored() {}\n").unwrap();
    let old = "2026-11-20T10:00:00Z";
    git(&repo, &["init", "-q", "-b", "main"], old);
    git(&repo, &["add", "."], old);
    git(&repo, &["commit", "-q", "-m", "first"], old);
    // After the last daydream (2026-11-25): one function changed and committed, one not yet.
    std::fs::write(repo.join("src/lib.rs"), LIB_V2).unwrap();
    git(
        &repo,
        &["commit", "-q", "-am", "trim before parsing"],
        "2026-11-28T09:00:00Z",
    );
    std::fs::write(repo.join("tool.py"), "def helper(x):\n    return x * 2\n").unwrap();

    let plain = dir.path().join("notes");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(
        plain.join("app.ts"),
        "export function hello(): string { return 'hi'; }\n",
    )
    .unwrap();

    let now: DateTime<Utc> = "2026-12-01T06:00:00Z".parse().unwrap();
    let since = now - Duration::days(6);
    let contexts = gather_workspaces(
        &[repo.clone(), plain.clone(), dir.path().join("gone")],
        Some(since),
        now,
        &MapCache::default(),
        &crate::jail(),
    );
    assert_eq!(contexts.len(), 3);
    let shop = &contexts[0];
    let git_info = shop.git.as_ref().unwrap();
    assert_eq!(git_info.branch, "main");
    assert_eq!(git_info.changed_files, 1);
    assert_eq!(git_info.recent_commits.len(), 2);
    assert_eq!(git_info.recent_commits[0].subject, "trim before parsing");
    assert_eq!(git_info.commits_last_week, 1);
    assert_eq!(shop.stack, ["Rust (tokio, serde)"]);
    let languages = shop.code.per_language();
    assert_eq!(languages[&Language::Rust], (1, 2, 8), "target/ is ignored");
    assert_eq!(languages[&Language::Python].0, 1);
    let changed: Vec<(String, &str)> = shop
        .changed_functions
        .iter()
        .map(|c| (c.file.display().to_string(), c.function.signature.as_str()))
        .collect();
    assert_eq!(
        changed,
        [
            ("src/lib.rs".to_owned(), "pub fn parse(text: &str) -> u32"),
            ("tool.py".to_owned(), "def helper(x)"),
        ]
    );

    let notes = &contexts[1];
    assert!(notes.git.is_none());
    assert_eq!(notes.code.per_language()[&Language::TypeScript], (1, 1, 2));
    assert!(notes.problems[0].starts_with("not a git repository"));
    assert!(contexts[2].problems[0].ends_with("is not a directory"));
}

/// A chat's workspace arranged to read another chat's: a `.git` file pointing at the other
/// repository, an object store borrowed from it, manifests that are links to its files. None
/// of it reaches the context.
#[test]
fn a_workspace_pointing_at_another_never_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("chat_2");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("requirements.txt"), "victim-private-package\n").unwrap();
    std::fs::write(victim.join("a.txt"), "a\n").unwrap();
    git(
        &victim,
        &["init", "-q", "-b", "main"],
        "2026-11-28T09:00:00Z",
    );
    git(&victim, &["add", "."], "2026-11-28T09:00:00Z");
    git(
        &victim,
        &["commit", "-q", "-m", "VICTIM-SECRET-SUBJECT"],
        "2026-11-28T09:00:00Z",
    );

    // 1. `.git` is a file naming the other repository.
    let by_file = dir.path().join("chat_1");
    std::fs::create_dir_all(&by_file).unwrap();
    std::fs::write(
        by_file.join(".git"),
        format!("gitdir: {}\n", victim.join(".git").display()),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        victim.join("requirements.txt"),
        by_file.join("requirements.txt"),
    )
    .unwrap();
    // 2. A repository of its own whose objects and refs borrow the other's.
    let by_alternates = dir.path().join("chat_3");
    std::fs::create_dir_all(&by_alternates).unwrap();
    git(
        &by_alternates,
        &["init", "-q", "-b", "main"],
        "2026-11-28T09:00:00Z",
    );
    std::fs::write(
        by_alternates.join(".git/objects/info/alternates"),
        format!("{}\n", victim.join(".git/objects").display()),
    )
    .unwrap();
    let head = std::fs::read_to_string(victim.join(".git/refs/heads/main")).unwrap();
    std::fs::write(by_alternates.join(".git/refs/heads/main"), head).unwrap();
    // 3. `.git` a link to the other repository's.
    let by_link = dir.path().join("chat_4");
    std::fs::create_dir_all(&by_link).unwrap();
    std::os::unix::fs::symlink(victim.join(".git"), by_link.join(".git")).unwrap();

    let now: DateTime<Utc> = "2026-12-01T06:00:00Z".parse().unwrap();
    let contexts = gather_workspaces(
        &[by_file, by_alternates, by_link],
        None,
        now,
        &MapCache::default(),
        &crate::jail(),
    );
    let all = format!("{contexts:?}");
    assert!(!all.contains("VICTIM-SECRET-SUBJECT"), "{all}");
    assert!(!all.contains("victim-private-package"), "{all}");
    assert!(contexts[0].git.is_none() && contexts[2].git.is_none());
    assert!(
        contexts[0].problems[0].contains(".git is a file or a link"),
        "{:?}",
        contexts[0].problems
    );
    assert!(contexts[2].problems[0].contains(".git is a file or a link"));
}
