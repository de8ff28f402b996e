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
