//! Leader leases: one leader per role; the next takes over when the first resigns or its lease
//! runs out; a scheduler slot runs once, and a deposed leader claims none.

use std::time::Duration;

use valor_store_pg::leader::LeaderRole;
use valor_store_pg::{PgError, PgStore};

use crate::support::{options, store};

const TTL: Duration = Duration::from_secs(30);

#[tokio::test]
async fn one_node_leads_each_role_and_another_takes_over_when_it_resigns() {
    let (first, url) = store("n1").await;
    let second = PgStore::connect(&url, options("n2")).await.unwrap();
    let lead = first.lead(LeaderRole::Poller, TTL).await.unwrap().unwrap();
    assert!(
        second
            .lead(LeaderRole::Poller, TTL)
            .await
            .unwrap()
            .is_none()
    );
    // Other roles are free, and renewing keeps the epoch.
    assert!(
        second
            .lead(LeaderRole::Scheduler, TTL)
            .await
            .unwrap()
            .is_some()
    );
    let renewed = first.lead(LeaderRole::Poller, TTL).await.unwrap().unwrap();
    assert_eq!(renewed, lead);
    first.renew_lead(&lead, TTL).await.unwrap();

    assert!(first.resign(&lead).await.unwrap());
    let taken = second.lead(LeaderRole::Poller, TTL).await.unwrap().unwrap();
    assert!(taken.epoch > lead.epoch);
    assert!(matches!(
        first.renew_lead(&lead, TTL).await,
        Err(PgError::Fenced { .. })
    ));
    let leaders = first.leaders().await.unwrap();
    let poller = leaders.iter().find(|l| l.name == "leader:poller").unwrap();
    assert!(poller.holder.starts_with("n2#") && poller.expires_in_ms > 0);
}

#[tokio::test]
async fn a_slot_runs_once_and_a_deposed_leader_claims_none() {
    let (first, url) = store("n1").await;
    let second = PgStore::connect(&url, options("n2")).await.unwrap();
    let short = Duration::from_millis(300);
    let lead = first
        .lead(LeaderRole::Scheduler, short)
        .await
        .unwrap()
        .unwrap();
    assert!(first.claim_slot(&lead, "daydream", 1_000).await.unwrap());
    assert!(!first.claim_slot(&lead, "daydream", 1_000).await.unwrap());
    assert!(first.claim_slot(&lead, "prune", 1_000).await.unwrap());

    tokio::time::sleep(Duration::from_millis(400)).await;
    let next = second
        .lead(LeaderRole::Scheduler, TTL)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        first.claim_slot(&lead, "daydream", 2_000).await,
        Err(PgError::Fenced { .. })
    ));
    assert!(!second.claim_slot(&next, "daydream", 1_000).await.unwrap());
    assert!(second.claim_slot(&next, "daydream", 2_000).await.unwrap());
    let ran = first.slots_run("daydream").await.unwrap();
    assert_eq!(
        ran,
        [(1_000, "n1".to_owned()), (2_000, "n2".to_owned())],
        "each slot once, the second on the new leader"
    );
}

#[tokio::test]
async fn nodes_say_they_are_alive() {
    let (first, url) = store("n1").await;
    let second = PgStore::connect(&url, options("n2")).await.unwrap();
    first.heartbeat("all").await.unwrap();
    second.heartbeat("worker").await.unwrap();
    let nodes = first.nodes().await.unwrap();
    let seen: Vec<(&str, &str)> = (nodes.iter())
        .map(|n| (n.node.as_str(), n.role.as_str()))
        .collect();
    assert_eq!(seen, [("n1", "all"), ("n2", "worker")]);
    assert!(nodes.iter().all(|n| n.seen_ms_ago < 5_000));
}

/// A scheduler of node `node` whose every-second job records (node, slot) and takes `work`.
fn scheduler_of(
    store: &PgStore,
    ran: &std::sync::Arc<std::sync::Mutex<Vec<(String, i64)>>>,
    work: Duration,
) -> std::sync::Arc<valor_scheduler::Scheduler> {
    use valor_scheduler::{JobSpec, MissedPolicy, Schedule, Scheduler};
    let mut scheduler = Scheduler::new(
        std::sync::Arc::new(valor_scheduler::runner::InMemoryJobLog::default()),
        std::sync::Arc::new(chrono::Utc::now),
    );
    scheduler.gate(std::sync::Arc::new(
        valor_store_pg::intake::PgSlotGate::new(store.clone(), Duration::from_secs(2)),
    ));
    let spec = JobSpec {
        name: "tick".to_owned(),
        schedule: Schedule::parse("every 1s").unwrap(),
        missed: MissedPolicy::Skip,
        persist: false,
        cluster_wide: true,
    };
    let (ran, node) = (std::sync::Arc::clone(ran), store.node_id().to_owned());
    scheduler.add(spec, move |context| {
        let (ran, node) = (std::sync::Arc::clone(&ran), node.clone());
        Box::pin(async move {
            let due = context.due.map_or(0, |d| d.timestamp());
            ran.lock().unwrap().push((node, due));
            tokio::time::sleep(work).await;
            Ok("ran".to_owned())
        })
    });
    std::sync::Arc::new(scheduler)
}

#[tokio::test]
async fn three_schedulers_run_each_slot_once_and_the_next_leader_takes_over() {
    let (first, url) = store("n1").await;
    let second = PgStore::connect(&url, options("n2")).await.unwrap();
    let third = PgStore::connect(&url, options("n3")).await.unwrap();
    let ran = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stops: Vec<tokio_util::sync::CancellationToken> = (0..3)
        .map(|_| tokio_util::sync::CancellationToken::new())
        .collect();
    for (store, stop) in [&first, &second, &third].into_iter().zip(&stops) {
        let scheduler = scheduler_of(store, &ran, Duration::from_millis(300));
        tokio::spawn(scheduler.run(stop.clone()));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let leader = first.leaders().await.unwrap().remove(0).holder;
    let leader = leader.split('#').next().unwrap().to_owned();
    // The leader dies without resigning (its lease runs out in 2 s).
    let index = ["n1", "n2", "n3"]
        .iter()
        .position(|n| *n == leader)
        .unwrap();
    stops[index].cancel();
    // A firing already under way when it died still records its run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = ran.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(6)).await;
    for stop in &stops {
        stop.cancel();
    }

    let slots = first.slots_run("tick").await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for (slot, _) in &slots {
        assert!(seen.insert(*slot), "slot {slot} ran twice: {slots:?}");
    }
    let ran = ran.lock().unwrap().clone();
    assert_eq!(
        ran.len(),
        slots.len(),
        "a run for each slot claimed: {ran:?}"
    );
    assert!(ran.len() >= 7, "about one a second: {ran:?}");
    let after: Vec<&(String, i64)> = ran[killed_at..].iter().collect();
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|(node, _)| *node != leader),
        "after the leader died, others ran the slots: {after:?}"
    );
}

/// A scheduler of node `store` over the cluster's job log, whose every-second cluster-wide job
/// counts its runs; a missed run is reported (`notified` counts the reports).
fn shared_scheduler(
    store: &PgStore,
    runs: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
    notified: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> std::sync::Arc<valor_scheduler::Scheduler> {
    use std::sync::atomic::Ordering;
    use valor_scheduler::{JobSpec, MissedPolicy, Schedule, Scheduler};
    let mut scheduler = Scheduler::new(
        std::sync::Arc::new(store.clone()),
        std::sync::Arc::new(chrono::Utc::now),
    );
    scheduler.gate(std::sync::Arc::new(
        valor_store_pg::intake::PgSlotGate::new(store.clone(), Duration::from_secs(2)),
    ));
    let spec = JobSpec {
        name: "report".to_owned(),
        // Each second, by the clock (a cron job: one missed while down is decided at start).
        schedule: Schedule::parse("* * * * * *").unwrap(),
        missed: MissedPolicy::Notify,
        persist: true,
        cluster_wide: true,
    };
    let runs = std::sync::Arc::clone(runs);
    scheduler.add(spec, move |_| {
        runs.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok("ran".to_owned()) })
    });
    let notified = std::sync::Arc::clone(notified);
    scheduler.on_notify(std::sync::Arc::new(move |_| {
        notified.fetch_add(1, Ordering::SeqCst);
    }));
    std::sync::Arc::new(scheduler)
}

#[tokio::test]
async fn a_cluster_jobs_missed_slot_is_told_once_and_a_pause_holds_on_every_node() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use valor_scheduler::JobLog as _;
    let (first, url) = store("n1").await;
    let second = PgStore::connect(&url, options("n2")).await.unwrap();
    let third = PgStore::connect(&url, options("n3")).await.unwrap();
    // It last ran an hour ago (on some node): every node starting sees the slot missed.
    let an_hour_ago = valor_protocol::time::now_ms() - 3_600_000;
    let last = valor_protocol::jobs::JobRunRecord {
        job: "report".to_owned(),
        started_ms: an_hour_ago,
        finished_ms: Some(an_hour_ago + 10),
        outcome: valor_protocol::jobs::JobOutcome::Ok,
        detail: "ran".to_owned(),
        due_ms: Some(an_hour_ago),
    };
    first.record(&last).await.unwrap();
    let (runs, notified) = (
        std::sync::Arc::new(AtomicUsize::new(0)),
        std::sync::Arc::new(AtomicUsize::new(0)),
    );
    let schedulers: Vec<_> = [&first, &second, &third]
        .into_iter()
        .map(|store| shared_scheduler(store, &runs, &notified))
        .collect();
    tokio::join!(
        schedulers[0].catch_up(),
        schedulers[1].catch_up(),
        schedulers[2].catch_up()
    );
    assert_eq!(
        notified.load(Ordering::SeqCst),
        1,
        "told once, not per node"
    );
    let logged = first.runs("report", 10).await.unwrap();
    assert_eq!(logged.len(), 2, "the report recorded once: {logged:?}");

    // Paused through one node, the job fires on none, whichever leads.
    schedulers[0].set_paused("report", true).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    for scheduler in &schedulers[1..] {
        tokio::spawn(std::sync::Arc::clone(scheduler).run(stop.clone()));
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0, "paused everywhere");
    let listed = schedulers[2].status().await;
    assert!(listed[0].paused, "every node lists it paused");
    schedulers[0].set_paused("report", false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    stop.cancel();
    assert!(runs.load(Ordering::SeqCst) >= 1, "resumed everywhere");
}
