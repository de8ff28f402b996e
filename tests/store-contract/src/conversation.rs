//! The conversation's and the session ledger's contracts.

use std::sync::Arc;

use valor_claude::ledger::SessionLedger;
use valor_core::store::ConversationStore;
use valor_protocol::proposals::{Proposal, ProposalState};
use valor_protocol::records::{
    InboxEntry, MemoryKind, ProcessRecord, RunRecord, SessionRecord, TurnText,
};
use valor_protocol::{Author, Role};
use valor_telegram::inbox::TelegramStore;

/// Messages come back in order, a chat sees only its own, a replayed source is stored once,
/// and the conversation's start is kept.
pub async fn conversation_contract(store: Arc<dyn ConversationStore>) {
    let ann = Author {
        user_id: 1,
        username: Some("ann".to_owned()),
    };
    let first = (store.append(7, Role::User, "hello", Some(&ann), Some("tg:7:1"), true))
        .await
        .unwrap();
    let answer = (store.append(7, Role::Assistant, "hi", None, None, false))
        .await
        .unwrap();
    assert!(answer > first, "ids grow: {first} then {answer}");
    let replayed = (store.append(7, Role::User, "hello", Some(&ann), Some("tg:7:1"), true))
        .await
        .unwrap();
    assert_eq!(replayed, first, "a replayed update is stored once");
    store
        .append(8, Role::User, "another chat", None, None, true)
        .await
        .unwrap();

    let recent = store.recent(7, 10).await.unwrap();
    let said: Vec<(Role, &str)> = recent.iter().map(|m| (m.role, m.text.as_str())).collect();
    assert_eq!(said, [(Role::User, "hello"), (Role::Assistant, "hi")]);
    assert_eq!(store.recent(7, 1).await.unwrap()[0].id, answer);
    assert!(store.recent(99, 10).await.unwrap().is_empty());

    assert_eq!(store.conversation_start(7).await.unwrap(), 0);
    store.set_conversation_start(7, answer).await.unwrap();
    assert_eq!(store.conversation_start(7).await.unwrap(), answer);
    assert_eq!(store.conversation_start(8).await.unwrap(), 0);
    store.name_chat(7, "Team").await.unwrap();
    store.name_chat(7, "Team").await.unwrap();
}

fn run(chat_id: i64, started_at_ms: u64) -> RunRecord {
    RunRecord {
        chat_id,
        user_id: None,
        session_id: "s".to_owned(),
        model: "m".to_owned(),
        class: String::new(),
        effort: String::new(),
        started_at_ms,
        duration_ms: 10,
        api_duration_ms: 5,
        cost_usd: 0.01,
        usage: valor_protocol::Usage::default(),
        num_turns: 1,
        tool_calls: Vec::new(),
        warm: false,
        error: None,
    }
}

/// Sessions are kept per chat and cleared; runs are recorded; process groups are listed until
/// removed.
pub async fn ledger_contract(ledger: Arc<dyn SessionLedger>) {
    assert_eq!(ledger.session(5).await.unwrap(), None);
    let session = SessionRecord {
        session_id: "abc".to_owned(),
        updated_at_ms: 10,
        turns: 2,
    };
    ledger.set_session(5, &session).await.unwrap();
    assert_eq!(ledger.session(5).await.unwrap(), Some(session.clone()));
    assert_eq!(ledger.session(6).await.unwrap(), None);
    ledger.clear_session(5).await.unwrap();
    assert_eq!(ledger.session(5).await.unwrap(), None);

    let text = TurnText {
        chat_id: 5,
        started_at_ms: 100,
        prompt: "p".to_owned(),
        answer: "a".to_owned(),
        tool_inputs: Vec::new(),
    };
    ledger.record_run(&run(5, 100), &text).await.unwrap();
    ledger.record_run(&run(6, 100), &text).await.unwrap();

    let process = |pgid| ProcessRecord {
        pgid,
        start_ticks: 1,
        boot_id: "boot".to_owned(),
        owner_pid: 42,
        label: "claude".to_owned(),
        chat_id: Some(5),
        started_at_ms: 100,
    };
    ledger.put_process(&process(300)).await.unwrap();
    ledger.put_process(&process(301)).await.unwrap();
    ledger.remove_process(300).await.unwrap();
    let left: Vec<u32> = (ledger.processes().await.unwrap().iter())
        .map(|p| p.pgid)
        .collect();
    assert_eq!(left, [301]);
    ledger.commit().await.unwrap();
}

fn entry(update_id: i64, chat_id: i64) -> InboxEntry {
    InboxEntry {
        update_id,
        chat_id,
        user_id: 1,
        username: None,
        text: format!("update {update_id}"),
        private: true,
        chat_title: None,
        file: None,
    }
}

/// The inbox keeps accepted updates until answered, in order, and the update offset only
/// moves forward; paired users are kept; a question keeps its message.
pub async fn telegram_contract(store: Arc<dyn TelegramStore>) {
    store.accept_update(&entry(10, 1)).await.unwrap();
    store.accept_update(&entry(11, 2)).await.unwrap();
    store.accept_update(&entry(12, 1)).await.unwrap();
    assert_eq!(store.last_update().await.unwrap(), 12);
    store.finish_update(11).await.unwrap();
    let open: Vec<i64> = (store.inbox().await.unwrap().iter())
        .map(|e| e.update_id)
        .collect();
    assert_eq!(open, [10, 12]);
    assert_eq!(store.inbox_set_aside(), 0);
    store.set_last_update(20).await.unwrap();
    assert_eq!(store.last_update().await.unwrap(), 20);

    store.add_paired_user(5).await.unwrap();
    store.add_paired_user(5).await.unwrap();
    store.add_paired_user(6).await.unwrap();
    assert!(store.remove_paired_user(6).await.unwrap());
    assert!(!store.remove_paired_user(6).await.unwrap());
    assert_eq!(store.paired_users().await.unwrap(), [5]);
    // A pairing code's role: kept by the user (pairing again keeps it), gone when revoked.
    use valor_protocol::access::Role;
    assert!(store.paired_roles().await.unwrap().is_empty());
    store.set_paired_role(8, Role::Approver).await.unwrap();
    store.add_paired_user(8).await.unwrap();
    let mut paired = store.paired_users().await.unwrap();
    paired.sort();
    assert_eq!(paired, [5, 8]);
    assert_eq!(store.paired_roles().await.unwrap(), [(8, Role::Approver)]);
    assert!(store.remove_paired_user(8).await.unwrap());
    assert!(store.paired_roles().await.unwrap().is_empty());

    let asked = store
        .add_proposal(Proposal {
            id: 0,
            chat_id: 1,
            text: "We use sled.".to_owned(),
            kind: MemoryKind::Learning,
            source: "tg:1".to_owned(),
            created_ms: 1,
            expires_ms: 2,
            message_id: None,
            state: ProposalState::Pending,
            asked_of: None,
            learning: None,
        })
        .await
        .unwrap();
    store.set_proposal_message(asked.id, 77).await.unwrap();
    let kept = store.proposal(asked.id).await.unwrap().unwrap();
    assert_eq!(kept.message_id, Some(77));
}
