//! Process faults, with tiny fake `claude` programs (tests/fake-claude/*.sh): crashes, hangs
//! that ignore SIGTERM, endless output, a 10 MB line, garbage bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use crate::support::{Harness, failed, fake_claude, finished, group_members};
use valor_core::Backend;
use valor_protocol::{Event, TurnErrorKind, TurnRequest};

async fn harness(script: &str, tweak: impl FnOnce(&mut valor_config::ClaudeConfig)) -> Harness {
    Harness::new(fake_claude(script), "http://127.0.0.1:9", tweak).await
}

fn request(chat_id: i64) -> TurnRequest {
    TurnRequest::new(chat_id, "hello")
}

/// Runs a turn to its end: its events, the process group it ran in, how long it took.
async fn run_watching_group(
    h: &Harness,
    request: TurnRequest,
) -> (Vec<Event>, Option<u32>, Duration) {
    let started = Instant::now();
    let mut stream = h.driver.start(request);
    let mut pgid = None;
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        if matches!(event, Event::Started { .. }) {
            pgid = h.children.snapshot().first().map(|c| c.pid);
        }
        events.push(event);
    }
    (events, pgid, started.elapsed())
}

#[tokio::test]
async fn a_crash_mid_stream_is_a_crashed_turn_naming_the_signal() {
    let h = harness("crash_mid_stream", |_| {}).await;
    let events = h.run(request(1)).await;
    assert!(events.contains(&Event::TextDelta("x".to_owned())));
    let error = failed(&events);
    assert_eq!(error.kind, TurnErrorKind::Crashed);
    assert!(
        error.detail.contains("killed by signal 11"),
        "{}",
        error.detail
    );
    assert!(h.children.snapshot().is_empty());
}

#[tokio::test]
async fn a_process_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let h = Harness::unsandboxed(fake_claude("ignores_sigterm"), "http://127.0.0.1:9", |c| {
        c.idle_timeout_secs = 1;
        c.kill_grace_secs = 1;
    })
    .await;
    let (events, pgid, elapsed) = run_watching_group(&h, request(2)).await;
    assert_eq!(failed(&events).kind, TurnErrorKind::Timeout);
    // 1 s idle + 1 s grace, then SIGKILL.
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(group_members(pgid.unwrap()).is_empty());
}

#[tokio::test]
async fn a_sandboxed_process_that_ignores_sigterm_dies_with_its_sandbox() {
    // SIGTERM reaches bubblewrap too; its death takes the whole PID namespace with it, so a
    // sandboxed run that ignores SIGTERM ends at once instead of after the grace period.
    let h = harness("ignores_sigterm", |c| {
        c.idle_timeout_secs = 1;
        c.kill_grace_secs = 5;
    })
    .await;
    let (events, pgid, elapsed) = run_watching_group(&h, request(12)).await;
    assert_eq!(failed(&events).kind, TurnErrorKind::Timeout);
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(5),
        "no grace needed: {elapsed:?}"
    );
    assert!(group_members(pgid.unwrap()).is_empty());
    assert!(h.children.snapshot().is_empty());
}

#[tokio::test]
async fn endless_output_hits_the_total_timeout() {
    let h = harness("endless", |c| {
        c.total_timeout_secs = 2;
        c.idle_timeout_secs = 2;
    })
    .await;
    let mut stream = h.driver.start(request(3));
    let mut deltas = 0u64;
    let mut last = None;
    while let Some(event) = stream.next().await {
        match event {
            Event::TextDelta(_) => deltas += 1,
            other => last = Some(other),
        }
    }
    assert!(deltas > 100, "text kept streaming: {deltas}");
    let Some(Event::Failed { error, .. }) = last else {
        panic!("{last:?}")
    };
    assert_eq!(error.kind, TurnErrorKind::Timeout);
    assert_eq!(error.detail, "no result within 2 s");
}

#[tokio::test]
async fn a_10_mb_line_is_skipped_and_the_turn_goes_on() {
    let h = harness("huge_line", |_| {}).await;
    let events = h.run(request(4)).await;
    assert_eq!(finished(&events).text, "done");
    assert_eq!(h.driver.metrics().oversized_lines.get(), 1);
}

#[tokio::test]
async fn garbage_bytes_are_skipped_and_counted() {
    let h = harness("garbage", |_| {}).await;
    let events = h.run(request(5)).await;
    assert_eq!(finished(&events).text, "done");
    assert_eq!(h.driver.metrics().malformed_lines.get(), 3);
}

#[tokio::test]
async fn a_process_that_fails_at_once_reports_its_stderr() {
    let h = harness("exit_at_once", |_| {}).await;
    let events = h.run(request(6)).await;
    let error = failed(&events);
    assert_eq!(error.kind, TurnErrorKind::Crashed);
    assert!(error.detail.contains("exit code 1"), "{}", error.detail);
    assert!(
        error.detail.contains("fatal: cannot start (fake)"),
        "{}",
        error.detail
    );
}

#[tokio::test]
async fn exit_zero_without_a_result_is_a_failed_turn() {
    let h = harness("no_result", |_| {}).await;
    let events = h.run(request(7)).await;
    let error = failed(&events);
    assert_eq!(error.kind, TurnErrorKind::Crashed);
    assert!(
        error
            .detail
            .starts_with("Claude Code ended without a result (exit code 0)"),
        "{}",
        error.detail
    );
}

#[tokio::test]
async fn a_missing_binary_is_a_clear_error() {
    let h = Harness::new("/nonexistent/claude".into(), "http://127.0.0.1:9", |_| {}).await;
    let events = h.run(request(8)).await;
    let error = failed(&events);
    assert_eq!(error.kind, TurnErrorKind::Crashed);
    assert!(
        error
            .detail
            .starts_with("cannot start Claude Code at /nonexistent/claude"),
        "{}",
        error.detail
    );
}

#[tokio::test]
async fn past_the_memory_budget_a_turn_waits_for_a_running_one_to_end() {
    // 1 MB: any running process fills it.
    let h = harness("ignores_sigterm", |c| {
        c.process_memory_mb = 1;
        c.idle_timeout_secs = 1;
        c.kill_grace_secs = 1;
    })
    .await;
    let start = std::time::Instant::now();
    let first = h.driver.start(request(10));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = h.driver.start(request(11));
    let (first, second) = tokio::join!(
        async {
            let error = first.finish().await.unwrap_err();
            (error, start.elapsed())
        },
        async {
            let error = second.finish().await.unwrap_err();
            (error, start.elapsed())
        }
    );
    assert_eq!(first.0.kind, TurnErrorKind::Timeout);
    assert_eq!(second.0.kind, TurnErrorKind::Timeout);
    // The second process started only when the first had ended, so it timed out a whole
    // idle period later.
    assert!(
        second.1 >= first.1 + Duration::from_millis(900),
        "first ended at {:?}, second at {:?}",
        first.1,
        second.1
    );
    assert_eq!(h.driver.metrics().budget_waits.get(), 1);
}

#[tokio::test]
async fn a_turn_waiting_for_memory_can_be_stopped() {
    let h = harness("ignores_sigterm", |c| {
        c.process_memory_mb = 1;
        c.idle_timeout_secs = 30;
        c.kill_grace_secs = 1;
    })
    .await;
    let first_request = request(12);
    let stop_first = first_request.cancel.clone();
    let first = h.driver.start(first_request);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting_request = request(13);
    let stop = waiting_request.cancel.clone();
    let waiting = h.driver.start(waiting_request);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    let error = tokio::time::timeout(Duration::from_secs(5), waiting.finish())
        .await
        .expect("the waiting turn ends at once")
        .unwrap_err();
    assert_eq!(error.kind, TurnErrorKind::Cancelled);
    assert_eq!(h.children.snapshot().len(), 1, "it never started a process");
    stop_first.cancel();
    assert_eq!(
        first.finish().await.unwrap_err().kind,
        TurnErrorKind::Cancelled
    );
}

#[tokio::test]
async fn the_reaper_ends_a_sandbox_left_behind_by_a_crashed_valor() {
    let h = harness("ignores_sigterm", |c| {
        c.idle_timeout_secs = 60;
        c.kill_grace_secs = 1;
    })
    .await;
    let mut stream = h.driver.start(request(14));
    while let Some(event) = stream.next().await {
        if matches!(event, Event::Started { .. }) {
            break;
        }
    }
    let pgid = h.children.snapshot()[0].pid;
    let members = group_members(pgid);
    assert!(
        members.len() >= 3,
        "bubblewrap, its init and the program: {members:?}"
    );
    // As a Valor that crashed would have left it: recorded, owned by a process that is gone.
    let mut record = h.store.processes().unwrap()[0].clone();
    assert_eq!(record.pgid, pgid);
    record.owner_pid = u32::MAX;
    h.store.put_process(&record).unwrap();
    let reaper = valor_claude::reaper::Reaper::new(
        std::sync::Arc::new(h.store.clone()),
        valor_monitor::ChildRegistry::new(),
        None,
        Duration::from_secs(1),
    );
    let report = reaper.reap(None).await;
    assert_eq!(report.killed, [pgid]);
    assert!(group_members(pgid).is_empty(), "{:?}", group_members(pgid));
    // The turn sees its process gone.
    let mut last = None;
    while let Some(event) = stream.next().await {
        last = Some(event);
    }
    assert!(
        matches!(last, Some(Event::Failed { error: _, .. })),
        "{last:?}"
    );
}

#[tokio::test]
async fn finished_turns_leave_no_task_behind() {
    let h = harness("no_result", |_| {}).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    // One turn first: whatever is started once (and kept) is not a per-turn leak.
    failed(&h.run(request(21)).await);
    let before = metrics.num_alive_tasks();
    for chat in 22..32 {
        failed(&h.run(request(chat)).await);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while metrics.num_alive_tasks() > before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Fewer is no leak: a task of the first turn may still have been ending at `before`.
    assert!(
        metrics.num_alive_tasks() <= before,
        "each finished turn left a task running: {} > {before}",
        metrics.num_alive_tasks()
    );
    // Nor a slot per chat once maintenance has run.
    assert_eq!(h.driver.chats_tracked(), 11);
    h.driver.maintain_warm().await;
    assert_eq!(h.driver.chats_tracked(), 0);
}
