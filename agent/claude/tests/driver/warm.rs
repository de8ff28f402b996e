//! Warm processes with the real CLI: one process, many turns (`--input-format stream-json`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::support::{Harness, finished, group_members, real_claude};
use valor_fakes::anthropic::{FakeAnthropic, Reply};

fn warm(c: &mut valor_config::ClaudeConfig) {
    c.keep_warm_secs = 300;
    c.max_warm = 4;
}

async fn fake() -> FakeAnthropic {
    FakeAnthropic::start(|turn| {
        Reply::text(&format!(
            "answer {}",
            turn.last_user_text.clone().unwrap_or_default().len()
        ))
    })
    .await
}

fn pids(h: &Harness) -> Vec<u32> {
    h.children.snapshot().iter().map(|c| c.pid).collect()
}

#[tokio::test]
async fn later_turns_reuse_the_chats_process() {
    let fake = fake().await;
    let h = Harness::new(real_claude(), &fake.url, warm).await;
    let first = h.run(h.request(1, "remember the word apple")).await;
    let first = finished(&first).clone();
    assert!(!first.warm);
    let process = pids(&h);
    assert_eq!(process.len(), 1, "the process stays after the turn");

    let second = h.run(h.request(1, "what was the word?")).await;
    let second = finished(&second);
    assert!(second.warm, "the second turn ran in the warm process");
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(pids(&h), process, "no new process");
    let last = fake.requests().last().unwrap().clone();
    assert!(
        last.body["messages"]
            .to_string()
            .contains("remember the word apple")
    );
    assert_eq!(
        h.store
            .runs_since(0)
            .unwrap()
            .iter()
            .filter(|r| r.warm)
            .count(),
        1
    );
    h.driver.shutdown().await;
    assert!(group_members(process[0]).is_empty());
    assert!(h.children.snapshot().is_empty());
    assert!(h.store.processes().unwrap().is_empty());
}

/// Waits until the CLI has written a session transcript (it does so within ~50 ms of a result).
async fn transcript_written(h: &Harness, session: &str) {
    // Each sandboxed chat has its own HOME below homes/.
    let projects = h.dir.path().join("homes/*/.claude/projects");
    for _ in 0..200 {
        let found = std::fs::read_dir(h.dir.path().join("homes"))
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|home| std::fs::read_dir(home.path().join(".claude/projects")))
            .flatten()
            .flatten()
            .any(|dir| dir.path().join(format!("{session}.jsonl")).is_file());
        if found {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no transcript for {session} under {}", projects.display());
}

fn kill(pid: u32) {
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
}

#[tokio::test]
async fn a_warm_process_that_died_is_replaced_and_the_session_resumed() {
    let fake = fake().await;
    let h = Harness::new(real_claude(), &fake.url, warm).await;
    let first = h.run(h.request(2, "remember the word pear")).await;
    let session = finished(&first).session_id.clone();
    transcript_written(&h, &session).await;
    kill(pids(&h)[0]);

    let second = h.run(h.request(2, "what was the word?")).await;
    let second = finished(&second);
    assert!(!second.warm, "a new process ran the turn");
    assert_eq!(second.session_id, session, "resumed the same session");
    assert!(
        fake.requests().last().unwrap().body["messages"]
            .to_string()
            .contains("pear")
    );
    assert_eq!(h.driver.metrics().resume_fallbacks.get(), 0);
    h.driver.shutdown().await;
}

#[tokio::test]
async fn a_warm_process_killed_before_its_transcript_is_written_still_answers() {
    let fake = fake().await;
    let h = Harness::new(real_claude(), &fake.url, warm).await;
    finished(&h.run(h.request(6, "remember the word plum")).await);
    // Killed at once: the CLI had no time to write the session, so it cannot be resumed.
    kill(pids(&h)[0]);
    let second = h.run(h.request(6, "what was the word?")).await;
    assert!(!finished(&second).text.is_empty(), "the turn is not lost");
    assert!(h.driver.metrics().resume_fallbacks.get() <= 1);
    h.driver.shutdown().await;
}

#[tokio::test]
async fn idle_warm_processes_close_after_keep_warm_secs() {
    let fake = fake().await;
    let h = Harness::new(real_claude(), &fake.url, |c| {
        c.keep_warm_secs = 1;
        c.max_warm = 4;
    })
    .await;
    finished(&h.run(h.request(3, "hi")).await);
    let pid = pids(&h)[0];
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.driver.maintain_warm().await;
    assert!(h.children.snapshot().is_empty());
    assert!(group_members(pid).is_empty());
    // The next turn falls back to a new process with --resume.
    let again = h.run(h.request(3, "hi again")).await;
    assert!(!finished(&again).warm);
    h.driver.shutdown().await;
}

#[tokio::test]
async fn at_most_max_warm_processes_are_kept() {
    let fake = fake().await;
    let h = Harness::new(real_claude(), &fake.url, |c| {
        c.keep_warm_secs = 300;
        c.max_warm = 1;
    })
    .await;
    finished(&h.run(h.request(4, "hi")).await);
    let older = pids(&h);
    finished(&h.run(h.request(5, "hi")).await);
    let now = pids(&h);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, older, "the least recently used one closed");
    h.driver.shutdown().await;
}

#[tokio::test]
async fn past_the_memory_budget_the_least_recent_warm_process_closes_first() {
    let fake = fake().await;
    // 1 MB: one process is already over it, so each new one first closes a warm one.
    let h = Harness::new(real_claude(), &fake.url, |c| {
        warm(c);
        c.process_memory_mb = 1;
    })
    .await;
    finished(&h.run(h.request(1, "first chat")).await);
    let first = pids(&h);
    assert_eq!(first.len(), 1, "chat 1's process stays warm");
    finished(&h.run(h.request(2, "second chat")).await);
    let now = pids(&h);
    assert_eq!(now.len(), 1, "chat 1's warm process made room: {now:?}");
    assert_ne!(now, first);
    assert!(group_members(first[0]).is_empty(), "and it is gone");
    assert_eq!(h.driver.metrics().budget_closes.get(), 1);
    assert_eq!(h.driver.metrics().budget_waits.get(), 0, "nobody waited");
    h.driver.shutdown().await;
}
