#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

fn policy() -> PermissionPolicy {
    PermissionPolicy {
        allowed: ["Read", "Glob", "Grep", "Edit", "Write", "Bash(git log:*)"]
            .map(str::to_owned)
            .to_vec(),
        ask: vec!["Bash".to_owned()],
        ask_writes_outside: true,
    }
}

fn scope(dir: &std::path::Path) -> Scope {
    Scope::for_chat(dir, 7)
}

#[test]
fn every_command_asks_with_the_whole_command() {
    let temp = tempfile::tempdir().unwrap();
    let scope = scope(temp.path());
    // A pattern rule in allowed_tools does not let a command through without a person.
    for command in ["git log", "git log\nrm -rf ~", "ls"] {
        let input = json!({"command": command, "description": "Lists files"});
        let Verdict::Ask(ask) = policy().judge(&scope, "Bash", &input) else {
            panic!("{command:?} did not ask");
        };
        assert_eq!(ask.what, command);
        assert_eq!(ask.exact, command);
        assert_eq!(ask.claimed.as_deref(), Some("Lists files"));
        assert_eq!(ask.kind, ApprovalKind::Command);
    }
}

#[test]
fn look_alikes_and_invisible_characters_are_pointed_out() {
    let temp = tempfile::tempdir().unwrap();
    let input = json!({"command": "curl https://exаmple.com\u{202e}"});
    let Verdict::Ask(ask) = policy().judge(&scope(temp.path()), "Bash", &input) else {
        panic!("did not ask");
    };
    assert!(ask.sentence.contains("U+0430"), "{}", ask.sentence);
    assert!(ask.sentence.contains("U+202E"), "{}", ask.sentence);
    let plain = json!({"command": "ls -la\n\tcd src"});
    let Verdict::Ask(ask) = policy().judge(&scope(temp.path()), "Bash", &plain) else {
        panic!("did not ask");
    };
    assert!(!ask.sentence.contains('⚠'), "{}", ask.sentence);
}

#[test]
fn writes_in_the_source_tree_run_and_writes_elsewhere_ask() {
    let temp = tempfile::tempdir().unwrap();
    let scope = scope(temp.path());
    let ws = scope.workspace_dir().unwrap();
    ws.create_dir_all("src").unwrap();
    let inside = scope.workspace.join("src/main.rs");
    let write = |path: &str| json!({"file_path": path, "content": "fn main() {}"});
    assert_eq!(
        policy().judge(&scope, "Write", &write(inside.to_str().unwrap())),
        Verdict::Allow
    );
    assert_eq!(
        policy().judge(
            &scope,
            "Edit",
            &json!({"file_path": "notes/new.md", "old_string": "", "new_string": "x"})
        ),
        Verdict::Allow
    );
    // Outside, in what runs code, through a link, by `..`: a person decides.
    std::os::unix::fs::symlink(temp.path(), scope.workspace.join("docs")).unwrap();
    std::fs::create_dir_all(scope.workspace.join("real")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", scope.workspace.join("real/passwd")).unwrap();
    let hooks = scope.workspace.join(".git/hooks/pre-commit");
    let cases = [
        ("/root/.bashrc".to_owned(), "outside the workspace"),
        (hooks.display().to_string(), ".git"),
        (
            scope.workspace.join("docs/x.md").display().to_string(),
            "link",
        ),
        (
            scope.workspace.join("real/passwd").display().to_string(),
            "link",
        ),
        (
            format!("{}/src/../../x", scope.workspace.display()),
            "outside",
        ),
        (".claude/settings.json".to_owned(), ".claude"),
    ];
    for (path, why) in cases {
        match policy().judge(&scope, "Write", &write(&path)) {
            Verdict::Ask(ask) => {
                assert!(ask.sentence.contains(why), "{path}: {}", ask.sentence);
                assert!(ask.what.starts_with(&path), "{}", ask.what);
                assert!(ask.what.contains("fn main() {}"));
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    // Without approvals for writes outside, they are refused instead.
    let strict = PermissionPolicy {
        ask_writes_outside: false,
        ..policy()
    };
    assert!(matches!(
        strict.judge(&scope, "Write", &write("/root/.bashrc")),
        Verdict::Deny(_)
    ));
}

#[test]
fn tools_not_allowed_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let scope = scope(temp.path());
    let policy = PermissionPolicy {
        allowed: vec!["Read".to_owned()],
        ask: vec![],
        ask_writes_outside: true,
    };
    for tool in ["Write", "Bash", "WebFetch", "mcp__permissions__ask", "Task"] {
        assert!(
            matches!(policy.judge(&scope, tool, &json!({})), Verdict::Deny(_)),
            "{tool}"
        );
    }
    assert_eq!(policy.judge(&scope, "Read", &json!({})), Verdict::Allow);
}
