//! What the operator's views read of the whole cluster, and where a chat's Claude session can
//! resume.

use std::time::Duration;

use valor_claude::ledger::SessionLedger;
use valor_core::store::ConversationStore;
use valor_protocol::Role;
use valor_protocol::records::{InboxEntry, RunRecord, SessionRecord, TurnText};
use valor_store_pg::{PgOptions, PgStore};

use crate::support::{options, store};

fn run(chat_id: i64, started_at_ms: u64, model: &str) -> RunRecord {
    RunRecord {
        chat_id,
        user_id: None,
        session_id: "s".to_owned(),
        model: model.to_owned(),
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

fn text(chat_id: i64, started_at_ms: u64) -> TurnText {
    TurnText {
        chat_id,
        started_at_ms,
        prompt: "p".to_owned(),
        answer: "a".to_owned(),
        tool_inputs: Vec::new(),
    }
}

#[tokio::test]
async fn a_session_resumes_only_where_its_transcript_is() {
    let (a, url) = store("node-a").await;
    let b = PgStore::connect(&url, options("node-b")).await.unwrap();
    let session = SessionRecord {
        session_id: "abc".to_owned(),
        updated_at_ms: 10,
        turns: 2,
    };
    a.set_session(7, &session).await.unwrap();
    assert_eq!(a.session(7).await.unwrap(), Some(session.clone()));
    assert_eq!(
        b.session(7).await.unwrap(),
        None,
        "node-b has no transcript of node-a's session: it starts a fresh one"
    );
    let shared = PgOptions {
        shared_sessions: true,
        ..options("node-b")
    };
    let b_shared = PgStore::connect(&url, shared).await.unwrap();
    assert_eq!(
        b_shared.session(7).await.unwrap(),
        Some(session),
        "with homes on a shared filesystem any node resumes it"
    );
}

#[tokio::test]
async fn the_views_see_every_nodes_chats_turns_and_holders() {
    let (a, url) = store("node-a").await;
    let b = PgStore::connect(&url, options("node-b")).await.unwrap();
    a.append(1, Role::User, "hello from one", None, None, false)
        .await
        .unwrap();
    b.append(2, Role::User, "hello from two", None, None, false)
        .await
        .unwrap();
    b.name_chat(2, "Team").await.unwrap();

    let chats = a.chats().await.unwrap();
    let ids: Vec<i64> = chats.iter().map(|c| c.chat_id).collect();
    assert_eq!(ids.len(), 2, "{chats:?}");
    assert!(ids.contains(&1) && ids.contains(&2));
    let two = a.chat(2).await.unwrap().unwrap();
    assert_eq!((two.messages, two.title.as_deref()), (1, Some("Team")));
    assert!(a.chat(3).await.unwrap().is_none());

    // More runs than one page: the filter finds the latest it keeps, newest first.
    for i in 0..1_200u64 {
        let model = if i % 100 == 0 { "opus" } else { "haiku" };
        let ledger: &PgStore = if i % 2 == 0 { &a } else { &b };
        ledger
            .record_run(
                &run(1 + (i % 2) as i64, 1_000 + i, model),
                &text(1, 1_000 + i),
            )
            .await
            .unwrap();
    }
    let opus = a.latest_runs(5, |r| r.model == "opus").await.unwrap();
    let starts: Vec<u64> = opus.iter().map(|r| r.started_at_ms).collect();
    assert_eq!(starts, vec![2_100, 2_000, 1_900, 1_800, 1_700]);
    let latest = b.latest_runs(3, |_| true).await.unwrap();
    assert_eq!(latest.len(), 3);
    assert_eq!(latest[0].started_at_ms, 2_199);
    assert_eq!(b.run_at(1_001, 2).await.unwrap().unwrap().chat_id, 2);
    assert!(b.run_at(1_001, 1).await.unwrap().is_none());

    // Chat 1 held by node-b: the view says so; a released chat is held by nobody.
    let entry = |update_id, chat_id| InboxEntry {
        update_id,
        chat_id,
        user_id: 1,
        username: None,
        text: "hi".to_owned(),
        private: true,
        chat_title: None,
        file: None,
    };
    a.accept_update(&entry(1, 1)).await.unwrap();
    a.accept_update(&entry(2, 2)).await.unwrap();
    assert!(
        a.chat_holders().await.unwrap().is_empty(),
        "nobody holds them yet"
    );
    let held = b.claim_chats(1, Duration::from_secs(30)).await.unwrap();
    let holders = a.chat_holders().await.unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!(
        holders.get(&held[0].chat_id).map(String::as_str),
        Some("node-b")
    );
    b.release_chat(&held[0]).await.unwrap();
    assert!(a.chat_holders().await.unwrap().is_empty());
}
