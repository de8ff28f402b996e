//! The approvals audit log: records kept whole, the first decision wins, newest first.

use std::sync::Arc;

use valor_core::approvals::ApprovalLog;
use valor_protocol::approval::{ApprovalKind, ApprovalRecord, Decision};

fn record(id: u64, chat_id: i64, decision: Option<Decision>) -> ApprovalRecord {
    ApprovalRecord {
        id,
        chat_id,
        kind: ApprovalKind::Command,
        tool: "Bash".to_owned(),
        what: format!("echo {id}\nrm -rf ~"),
        sentence: "Runs this shell command.".to_owned(),
        asked_ms: id / 4096,
        decision,
        by: None,
        decided_ms: decision.map(|_| id / 4096),
        node: Some("a".to_owned()),
    }
}

pub async fn approval_log_contract(log: Arc<dyn ApprovalLog>) {
    let base = valor_protocol::time::now_ms() * 4096;
    assert_eq!(log.get(base).await.unwrap(), None);
    assert_eq!(
        log.settle(base, Decision::Deny, Some(5), 1).await.unwrap(),
        None,
        "no such approval"
    );
    log.record(&record(base, 1, None)).await.unwrap();
    log.record(&record(base + 1, 2, Some(Decision::SessionGrant)))
        .await
        .unwrap();
    log.record(&record(base + 2, 1, None)).await.unwrap();
    assert_eq!(
        log.get(base).await.unwrap(),
        Some(record(base, 1, None)),
        "kept whole, newlines and all"
    );
    // The first decision wins; a second changes nothing.
    let settled = log
        .settle(base, Decision::AllowOnce, Some(42), 77)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settled.decision, Some(Decision::AllowOnce));
    assert_eq!((settled.by, settled.decided_ms), (Some(42), Some(77)));
    let again = log
        .settle(base, Decision::TimedOut, None, 99)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, settled);
    assert_eq!(log.get(base).await.unwrap(), Some(settled.clone()));
    // Newest first, of all chats or one.
    let ids =
        |records: Vec<ApprovalRecord>| records.iter().map(|r| r.id - base).collect::<Vec<_>>();
    assert_eq!(ids(log.latest(None, 10).await.unwrap()), [2, 1, 0]);
    assert_eq!(ids(log.latest(Some(1), 10).await.unwrap()), [2, 0]);
    assert_eq!(ids(log.latest(Some(1), 1).await.unwrap()), [2]);
    assert!(log.latest(Some(3), 10).await.unwrap().is_empty());
}
