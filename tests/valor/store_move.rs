//! `valor store migrate` (sled → PostgreSQL → sled) and `valor backup` / `valor restore`
//! through the real CLI: the same records, learnings, stats and searches after the round trip.

use std::path::Path;

use valor_protocol::learnings::{Category, LearningRecord};
use valor_protocol::records::{
    MemoryKind, MemoryRecord, RunRecord, SessionRecord, StoredMessage, StoredVector, TurnText,
};
use valor_protocol::{Role, Usage};
use valor_store::Store;

use crate::support::{fresh_database, output, valor};

/// A store with some of everything.
fn fill(path: &Path) {
    let store = Store::open(path).unwrap();
    for (n, text) in [
        "the billing service crashes on Mondays",
        "book a table for four",
        "deploy on Fridays",
    ]
    .iter()
    .enumerate()
    {
        let message = StoredMessage {
            chat_id: if n == 1 { 8 } else { 7 },
            seq: 0,
            role: Role::User,
            text: (*text).to_owned(),
            at_ms: 1_000 + n as u64,
            user_id: Some(100),
            username: Some("ann".to_owned()),
            source: Some(format!("tg:{n}")),
        };
        let stored = store.append_message(message, false).unwrap();
        if n == 0 {
            let vector = StoredVector {
                model_id: "m".to_owned(),
                vector: vec![0.25; 384],
            };
            store.put_vectors(&[(stored.seq, vector)]).unwrap();
        }
    }
    store
        .write_memory(MemoryRecord {
            id: 0,
            kind: MemoryKind::Link,
            chat_id: Some(7),
            at_ms: 2_000,
            title: "Runbook".to_owned(),
            text: "how to restart billing".to_owned(),
            url: Some("https://runbook.example/billing".to_owned()),
        })
        .unwrap();
    let kept = store
        .add_learning(LearningRecord::new(
            Some(7),
            Category::Decision,
            "We use sled.",
            "tg:1",
            true,
            5,
        ))
        .unwrap();
    let gone = store
        .add_learning(LearningRecord::new(
            Some(7),
            Category::Convention,
            "Lunch at noon.",
            "tg:2",
            true,
            6,
        ))
        .unwrap();
    store
        .retire_learning(gone.id, "forgotten", None, 7)
        .unwrap();
    assert!(kept.is_active());
    store
        .set_session(
            7,
            &SessionRecord {
                session_id: "s-7".to_owned(),
                updated_at_ms: 9,
                turns: 2,
            },
        )
        .unwrap();
    let run = RunRecord {
        chat_id: 7,
        user_id: None,
        session_id: "s-7".to_owned(),
        model: "claude-sonnet".to_owned(),
        class: "short_chat".to_owned(),
        effort: "low".to_owned(),
        started_at_ms: valor_protocol::time::now_ms() - 60_000,
        duration_ms: 1_200,
        api_duration_ms: 900,
        cost_usd: 0.0125,
        usage: Usage::default(),
        num_turns: 1,
        tool_calls: Vec::new(),
        warm: false,
        error: None,
    };
    store.record_run(&run).unwrap();
    store
        .keep_turn_text(&TurnText {
            chat_id: 7,
            started_at_ms: run.started_at_ms,
            prompt: "p".to_owned(),
            answer: "a".to_owned(),
            tool_inputs: Vec::new(),
        })
        .unwrap();
    store.name_chat(7, "Billing team").unwrap();
    store.add_paired_user(100).unwrap();
    store
        .record_job_run(&valor_protocol::jobs::JobRunRecord {
            job: "daydream".to_owned(),
            started_ms: 5_000,
            finished_ms: Some(6_000),
            outcome: valor_protocol::jobs::JobOutcome::Ok,
            detail: "3 insights".to_owned(),
            due_ms: Some(5_000),
        })
        .unwrap();
    store.set_job_paused("daydream", true).unwrap();
    store
        .load_approval(&valor_protocol::approval::ApprovalRecord {
            id: 7_000 * 4096,
            chat_id: 7,
            kind: valor_protocol::approval::ApprovalKind::Command,
            tool: "Bash".to_owned(),
            what: "git push\nrm -rf ~".to_owned(),
            sentence: "Runs this shell command.".to_owned(),
            asked_ms: 7_000,
            decision: Some(valor_protocol::approval::Decision::Deny),
            by: Some(100),
            decided_ms: Some(8_000),
            node: None,
        })
        .unwrap();
    store.flush().unwrap();
}

/// A backup's records, as sorted lines (the header left out).
fn records_of(dir: &Path, store: &Path, database: Option<&str>, name: &str) -> Vec<String> {
    let file = dir.join(name);
    let mut cmd = valor(dir);
    cmd.arg("backup")
        .arg(&file)
        .env("VALOR__STORE__PATH", store);
    if let Some(url) = database {
        cmd.env("VALOR__CLUSTER__ENABLED", "true")
            .env("VALOR_DATABASE_URL", url);
    }
    let (out, stdout, stderr) = output(&mut cmd);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("backed up"), "{stdout}");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<String> = text.lines().skip(1).map(normalise).collect();
    lines.sort();
    lines
}

/// A question gets a new id in sled: compared without it.
fn normalise(line: &str) -> String {
    let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
    if value["type"] == "proposal" {
        value["id"] = serde_json::Value::Null;
    }
    value.to_string()
}

#[test]
fn sled_to_postgres_to_sled_and_backup_to_restore_keep_everything() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    fill(&original);
    let database = fresh_database();
    let migrate = |to: &str, extra: &[&str], store: &Path| {
        let mut cmd = valor(dir.path());
        cmd.args(["store", "migrate", "--to", to])
            .args(extra)
            .env("VALOR__STORE__PATH", store)
            .env("VALOR_DATABASE_URL", &database);
        output(&mut cmd)
    };

    let (out, stdout, stderr) = migrate("postgres", &[], &original);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("counts and") && stdout.contains("sampled documents match"),
        "{stdout}"
    );
    // Into a store that is not empty only with --resume.
    let (out, _, stderr) = migrate("postgres", &[], &original);
    assert!(!out.status.success());
    assert!(
        stderr.contains("not empty") && stderr.contains("--resume"),
        "{stderr}"
    );
    let (out, _, stderr) = migrate("postgres", &["--resume"], &original);
    assert!(out.status.success(), "a migration runs again: {stderr}");

    let back = dir.path().join("back");
    let into = back.to_str().unwrap();
    let (out, stdout, stderr) = migrate("sled", &["--into", into], &original);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("from postgres to sled"), "{stdout}");

    let before = records_of(dir.path(), &original, None, "original.backup");
    let through_pg = records_of(dir.path(), &original, Some(&database), "postgres.backup");
    let after = records_of(dir.path(), &back, None, "back.backup");
    for kind in ["\"job_run\"", "\"paused_job\"", "\"approval\""] {
        assert!(
            before.iter().any(|line| line.contains(kind)),
            "{kind}: {before:?}"
        );
    }
    assert_eq!(before, through_pg, "PostgreSQL holds what sled held");
    assert_eq!(before, after, "sled → PostgreSQL → sled keeps every record");

    // The learnings and the stats read the same.
    for args in [
        &["learnings", "list", "--chat", "7", "--all", "--json"][..],
        &["stats", "--json", "--days", "2"],
    ] {
        let read = |store: &Path| {
            let (out, stdout, stderr) = output(
                valor(dir.path())
                    .args(args)
                    .env("VALOR__STORE__PATH", store),
            );
            assert!(out.status.success(), "{stderr}");
            stdout
        };
        assert_eq!(read(&original), read(&back), "{args:?}");
    }

    // A backup restores into a clean store the same.
    let restored = dir.path().join("restored");
    let (out, stdout, stderr) = output(
        valor(dir.path())
            .arg("restore")
            .arg(dir.path().join("original.backup"))
            .env("VALOR__STORE__PATH", &restored),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("restored"), "{stdout}");
    assert_eq!(
        records_of(dir.path(), &restored, None, "restored.backup"),
        before
    );
    // And into the cluster's empty database.
    let empty = fresh_database();
    let (out, _, stderr) = output(
        valor(dir.path())
            .arg("restore")
            .arg(dir.path().join("original.backup"))
            .env("VALOR__CLUSTER__ENABLED", "true")
            .env("VALOR_DATABASE_URL", &empty),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        records_of(dir.path(), &restored, Some(&empty), "empty.backup"),
        before
    );
}

#[test]
fn bad_backups_and_full_stores_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    fill(&store);
    let backup = dir.path().join("b.backup");
    let run = |args: &[&str], file: &Path, store: &Path| {
        output(
            valor(dir.path())
                .args(args)
                .arg(file)
                .env("VALOR__STORE__PATH", store),
        )
    };
    let (out, _, stderr) = run(&["backup"], &backup, &store);
    assert!(out.status.success(), "{stderr}");
    let (out, _, stderr) = run(&["backup"], &backup, &store);
    assert!(
        !out.status.success() && stderr.contains("exists"),
        "{stderr}"
    );
    // Into a store that has data: refused, nothing written.
    let (out, _, stderr) = run(&["restore"], &backup, &store);
    assert!(
        !out.status.success() && stderr.contains("not empty"),
        "{stderr}"
    );

    let junk = dir.path().join("junk");
    std::fs::write(&junk, "hello\n").unwrap();
    let (out, _, stderr) = run(&["restore"], &junk, &dir.path().join("clean"));
    assert!(
        !out.status.success() && stderr.contains("is not a Valor backup"),
        "{stderr}"
    );
    let broken = dir.path().join("broken");
    let text = std::fs::read_to_string(&backup).unwrap();
    let first = text.lines().next().unwrap();
    std::fs::write(
        &broken,
        format!("{first}\n{{\"type\":\"message\",\"oops\":1}}\n"),
    )
    .unwrap();
    let (out, _, stderr) = run(&["restore"], &broken, &dir.path().join("clean2"));
    assert!(
        !out.status.success() && stderr.contains("line 2"),
        "{stderr}"
    );
    // The cluster's database down: a clear error.
    let (out, _, stderr) = output(
        valor(dir.path())
            .args(["store", "migrate", "--to", "postgres"])
            .env("VALOR__STORE__PATH", &store)
            .env(
                "VALOR_DATABASE_URL",
                "postgres://valor:pw-not-shown@127.0.0.1:1/valor",
            ),
    );
    assert!(!out.status.success());
    assert!(stderr.contains("cannot reach the database"), "{stderr}");
    assert!(!stderr.contains("pw-not-shown"), "{stderr}");
}
