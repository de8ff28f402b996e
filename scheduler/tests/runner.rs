//! The scheduler with an injected clock and a real store: runs recorded, no overlap, each
//! missed-run policy across a simulated restart, and the tokio-cron-scheduler timer firing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use valor_scheduler::{JobSpec, MissedDecision, MissedPolicy, RunContext, Schedule, Scheduler};
use valor_store::{JobOutcome, Store};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A clock the test moves.
#[derive(Clone)]
struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    fn new(text: &str) -> TestClock {
        TestClock(Arc::new(Mutex::new(at(text))))
    }
    fn set(&self, text: &str) {
        *self.0.lock().unwrap() = at(text);
    }
    fn clock(&self) -> valor_scheduler::Clock {
        let inner = Arc::clone(&self.0);
        Arc::new(move || *inner.lock().unwrap())
    }
}

fn spec(policy: MissedPolicy) -> JobSpec {
    JobSpec {
        name: "daydream".to_owned(),
        schedule: Schedule::parse("0 0 */6 * * *").unwrap(),
        missed: policy,
        persist: true,
        cluster_wide: false,
    }
}

/// A scheduler with one job that counts its runs and records their contexts.
fn counting_scheduler(
    store: &Store,
    clock: &TestClock,
    policy: MissedPolicy,
) -> (Scheduler, Arc<Mutex<Vec<RunContext>>>) {
    let runs = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&runs);
    let mut scheduler = Scheduler::new(Arc::new(store.clone()), clock.clock());
    scheduler.add(spec(policy), move |context| {
        seen.lock().unwrap().push(context);
        Box::pin(async { Ok("report written".to_owned()) })
    });
    (scheduler, runs)
}

const CATCH_UP: MissedPolicy = MissedPolicy::CatchUp {
    window: Duration::from_secs(6 * 3600),
};

#[tokio::test]
async fn a_run_is_recorded_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new("2026-12-01T00:00:00Z");
    {
        let store = Store::open(dir.path()).unwrap();
        let (scheduler, runs) = counting_scheduler(&store, &clock, CATCH_UP);
        let run = scheduler
            .fire(
                "daydream",
                RunContext {
                    due: None,
                    catch_up: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(run.outcome, JobOutcome::Ok);
        assert_eq!(runs.lock().unwrap().len(), 1);
    }
    let store = Store::open(dir.path()).unwrap();
    clock.set("2026-12-01T03:00:00Z");
    let (scheduler, runs) = counting_scheduler(&store, &clock, CATCH_UP);
    let status = &scheduler.status().await[0];
    assert_eq!(status.last.as_ref().unwrap().detail, "report written");
    assert_eq!(status.next, Some(at("2026-12-01T06:00:00Z")));
    assert_eq!(status.missed, "catch up within 6 h");
    // Nothing fell due while down: nothing runs.
    let decisions = scheduler.catch_up().await;
    assert_eq!(
        decisions,
        [("daydream".to_owned(), MissedDecision::UpToDate)]
    );
    assert!(runs.lock().unwrap().is_empty());
}

/// Ran at midnight, down from 01:00 to 07:30: the 06:00 run was missed.
async fn restart_after_missing_six(
    policy: MissedPolicy,
) -> (
    tempfile::TempDir,
    Store,
    Vec<RunContext>,
    MissedDecision,
    Vec<String>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let clock = TestClock::new("2026-12-01T00:00:00Z");
    {
        let store = Store::open(&dir).unwrap();
        let (scheduler, _) = counting_scheduler(&store, &clock, policy);
        scheduler
            .fire(
                "daydream",
                RunContext {
                    due: None,
                    catch_up: false,
                },
            )
            .await
            .unwrap();
    }
    clock.set("2026-12-01T07:30:00Z");
    let store = Store::open(&dir).unwrap();
    let (mut scheduler, runs) = counting_scheduler(&store, &clock, policy);
    let told = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&told);
    scheduler.on_notify(Arc::new(move |m| sink.lock().unwrap().push(m)));
    let decision = scheduler.catch_up().await.remove(0).1;
    // A second restart right away decides nothing again.
    let (again, _) = counting_scheduler(&store, &clock, policy);
    assert_eq!(again.catch_up().await[0].1, MissedDecision::UpToDate);
    let runs = runs.lock().unwrap().clone();
    let told = told.lock().unwrap().clone();
    (tmp, store, runs, decision, told)
}

#[tokio::test]
async fn catch_up_runs_once_for_the_missed_time() {
    let (_dir, store, runs, decision, told) = restart_after_missing_six(CATCH_UP).await;
    let due = at("2026-12-01T06:00:00Z");
    assert_eq!(decision, MissedDecision::RunNow { due });
    assert_eq!(
        runs,
        [RunContext {
            due: Some(due),
            catch_up: true
        }]
    );
    assert!(told.is_empty());
    let last = store.last_job_run("daydream").unwrap().unwrap();
    assert_eq!(last.outcome, JobOutcome::Ok);
    assert_eq!(last.due_ms, Some(due.timestamp_millis() as u64));
}

#[tokio::test]
async fn skip_records_the_skip_and_runs_nothing() {
    let (_dir, store, runs, decision, told) = restart_after_missing_six(MissedPolicy::Skip).await;
    assert!(matches!(decision, MissedDecision::Skip { .. }));
    assert!(runs.is_empty() && told.is_empty());
    let last = store.last_job_run("daydream").unwrap().unwrap();
    assert_eq!(last.outcome, JobOutcome::Skipped);
    assert_eq!(
        last.detail,
        "missed while Valor was down; the policy is to skip"
    );
}

#[tokio::test]
async fn notify_tells_the_operator_and_runs_nothing() {
    let (_dir, store, runs, decision, told) = restart_after_missing_six(MissedPolicy::Notify).await;
    assert!(matches!(decision, MissedDecision::Notify { .. }));
    assert!(runs.is_empty());
    assert_eq!(told.len(), 1);
    assert!(
        told[0].starts_with("The daydream run due at 2026-12-01 06:00 UTC was missed while Valor was down. Next run: 2026-12-01T12:00:00"),
        "{}",
        told[0]
    );
    assert_eq!(
        store.last_job_run("daydream").unwrap().unwrap().outcome,
        JobOutcome::Notified
    );
}

#[tokio::test]
async fn a_run_never_overlaps_itself_and_failures_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clock = TestClock::new("2026-12-01T00:00:00Z");
    let gate = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(AtomicUsize::new(0));
    let mut scheduler = Scheduler::new(Arc::new(store.clone()), clock.clock());
    {
        let (gate, started) = (Arc::clone(&gate), Arc::clone(&started));
        scheduler.add(spec(CATCH_UP), move |_| {
            let gate = Arc::clone(&gate);
            started.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                gate.notified().await;
                Err("the model did not answer".to_owned())
            })
        });
    }
    let scheduler = Arc::new(scheduler);
    let first = tokio::spawn({
        let scheduler = Arc::clone(&scheduler);
        async move {
            scheduler
                .fire(
                    "daydream",
                    RunContext {
                        due: None,
                        catch_up: false,
                    },
                )
                .await
                .unwrap()
        }
    });
    while started.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        store.last_job_run("daydream").unwrap().unwrap().outcome,
        JobOutcome::Running
    );
    clock.set("2026-12-01T00:00:01Z");
    let second = scheduler
        .fire(
            "daydream",
            RunContext {
                due: None,
                catch_up: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(second.outcome, JobOutcome::Skipped);
    assert_eq!(second.detail, "the previous run is still going");
    gate.notify_one();
    let first = first.await.unwrap();
    assert_eq!(first.outcome, JobOutcome::Failed);
    assert_eq!(first.detail, "the model did not answer");
    assert_eq!(started.load(Ordering::SeqCst), 1);
    assert!(
        scheduler
            .fire(
                "nope",
                RunContext {
                    due: None,
                    catch_up: false
                }
            )
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_run_cut_by_a_crash_shows_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .record_job_run(&valor_store::JobRunRecord {
            job: "daydream".to_owned(),
            started_ms: at("2026-12-01T00:00:00Z").timestamp_millis() as u64,
            finished_ms: None,
            outcome: JobOutcome::Running,
            detail: String::new(),
            due_ms: None,
        })
        .unwrap();
    let clock = TestClock::new("2026-12-01T01:00:00Z");
    let (scheduler, _) = counting_scheduler(&store, &clock, CATCH_UP);
    scheduler.catch_up().await;
    let last = store.last_job_run("daydream").unwrap().unwrap();
    assert_eq!(last.outcome, JobOutcome::Failed);
    assert_eq!(last.detail, "interrupted: Valor stopped during this run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timer_fires_interval_jobs() {
    // tokio-cron-scheduler reads the wall clock: this one test runs in real time, briefly.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let mut scheduler = Scheduler::new(Arc::new(store), Arc::new(Utc::now));
    // A paused job beside it: the clock never fires it.
    let paused_runs = Arc::new(AtomicUsize::new(0));
    let paused_seen = Arc::clone(&paused_runs);
    scheduler.add(
        JobSpec {
            name: "paused".to_owned(),
            schedule: Schedule::parse("every 1s").unwrap(),
            missed: MissedPolicy::Skip,
            persist: false,
            cluster_wide: false,
        },
        move |_| {
            paused_seen.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(String::new()) })
        },
    );
    scheduler.set_paused("paused", true).await.unwrap();
    let seen = Arc::clone(&count);
    scheduler.add(
        JobSpec {
            name: "tick".to_owned(),
            schedule: Schedule::parse("every 1s").unwrap(),
            missed: MissedPolicy::Skip,
            persist: false,
            cluster_wide: false,
        },
        move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(String::new()) })
        },
    );
    let scheduler = Arc::new(scheduler);
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(Arc::clone(&scheduler).run(stop.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count.load(Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the timer never fired twice"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = scheduler.status().await;
    assert_eq!(status[1].last.as_ref().unwrap().outcome, JobOutcome::Ok);
    assert_eq!(paused_runs.load(Ordering::SeqCst), 0, "a paused job ran");
    assert!(status[0].paused && status[0].last.is_none() && status[0].next.is_none());
    stop.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_paused_job_is_not_caught_up_and_stays_paused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new("2026-12-01T00:00:00Z");
    let context = RunContext {
        due: None,
        catch_up: false,
    };
    {
        let store = Store::open(dir.path()).unwrap();
        let (scheduler, _) = counting_scheduler(&store, &clock, CATCH_UP);
        scheduler.fire("daydream", context).await.unwrap();
        scheduler.set_paused("daydream", true).await.unwrap();
        assert!(scheduler.set_paused("nothing", true).await.is_err());
    }
    // Down over the 06:00 run, paused: nothing is caught up.
    clock.set("2026-12-01T07:30:00Z");
    let store = Store::open(dir.path()).unwrap();
    let (scheduler, runs) = counting_scheduler(&store, &clock, CATCH_UP);
    scheduler.restore_paused().await.unwrap();
    assert!(scheduler.catch_up().await.is_empty());
    assert!(runs.lock().unwrap().is_empty());
    let status = &scheduler.status().await[0];
    assert!(status.paused && status.next.is_none(), "{status:?}");
    // The listing without a running Valor says so too.
    let offline =
        valor_scheduler::status_of(&scheduler.specs(), &store, at("2026-12-01T07:30:00Z")).await;
    assert!(offline[0].paused);
    // Run now still runs it; resumed, it has a next run again.
    scheduler.fire("daydream", context).await.unwrap();
    assert_eq!(runs.lock().unwrap().len(), 1);
    scheduler.set_paused("daydream", false).await.unwrap();
    let status = &scheduler.status().await[0];
    assert!(
        !status.paused && status.next == Some(at("2026-12-01T12:00:00Z")),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_running_job_shows_how_far_it_is_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clock = TestClock::new("2026-12-01T00:00:00Z");
    let mut scheduler = Scheduler::new(Arc::new(store), clock.clock());
    let progress = scheduler.progress();
    let (told, finish) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let (told_in, finish_in) = (Arc::clone(&told), Arc::clone(&finish));
    scheduler.add(spec(CATCH_UP), move |_| {
        let (progress, told, finish) = (
            progress.clone(),
            Arc::clone(&told_in),
            Arc::clone(&finish_in),
        );
        Box::pin(async move {
            progress.note("daydream", "phase 3/6: context — 2 workspaces");
            told.notify_one();
            finish.notified().await;
            Ok("done".to_owned())
        })
    });
    let scheduler = Arc::new(scheduler);
    let mut updates = scheduler.updates();
    let context = RunContext {
        due: None,
        catch_up: false,
    };
    let running = tokio::spawn({
        let scheduler = Arc::clone(&scheduler);
        async move { scheduler.fire("daydream", context).await }
    });
    told.notified().await;
    assert!(updates.has_changed().unwrap(), "a live view is woken");
    updates.borrow_and_update();
    let status = &scheduler.status().await[0];
    assert_eq!(
        status.progress.as_deref(),
        Some("phase 3/6: context — 2 workspaces")
    );
    finish.notify_one();
    running.await.unwrap().unwrap();
    assert_eq!(
        scheduler.status().await[0].progress,
        None,
        "gone once it ended"
    );
}

/// A job that starts failing is told once (not again while it keeps failing), and again after
/// it has worked in between.
#[tokio::test]
async fn a_job_that_starts_failing_is_told_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clock = TestClock::new("2026-12-07T06:00:00Z");
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut scheduler = Scheduler::new(Arc::new(store.clone()), clock.clock());
    let failing = Arc::clone(&fail);
    scheduler.add(spec(MissedPolicy::Skip), move |_| {
        let failing = failing.load(Ordering::SeqCst);
        Box::pin(async move {
            if failing {
                Err("the analysis endpoint answered 502".to_owned())
            } else {
                Ok("report written".to_owned())
            }
        })
    });
    let by_hand = || RunContext {
        due: None,
        catch_up: false,
    };
    let told = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&told);
    scheduler.on_notify(Arc::new(move |m| sink.lock().unwrap().push(m)));
    for _ in 0..3 {
        let run = scheduler.fire("daydream", by_hand()).await.unwrap();
        assert_eq!(run.outcome, JobOutcome::Failed);
    }
    assert_eq!(told.lock().unwrap().len(), 1, "{:?}", told.lock().unwrap());
    assert!(
        told.lock().unwrap()[0].contains("\"daydream\" failed: the analysis endpoint answered 502")
    );
    fail.store(false, Ordering::SeqCst);
    scheduler.fire("daydream", by_hand()).await.unwrap();
    fail.store(true, Ordering::SeqCst);
    scheduler.fire("daydream", by_hand()).await.unwrap();
    assert_eq!(told.lock().unwrap().len(), 2);
}
