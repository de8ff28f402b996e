//! The three layers of the memory tools, within one chat's view.

use valor_memory::disclosure::IndexQuery;
use valor_store::MemoryKind;

use crate::memory::{Setup, embed_all, fill, message, saved};

fn query(text: &str) -> IndexQuery {
    IndexQuery {
        text: text.to_owned(),
        limit: 10,
        ..IndexQuery::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_timeline_and_records_show_a_chat_its_own_and_shared_memory_only() {
    let setup = Setup::new();
    let memory = setup.open();
    let billing = fill(&memory);
    let store = memory.store();
    let private = store
        .save_memory(saved(
            MemoryKind::Observation,
            Some(2),
            "[bugfix] chat two's billing fix",
            "billing fixed in chat two",
        ))
        .unwrap()
        .id;
    let shared = store
        .save_memory(saved(
            MemoryKind::Learning,
            None,
            "billing runs nightly",
            "billing runs nightly",
        ))
        .unwrap()
        .id;
    embed_all(&memory).await;

    let hits = memory.index_search(1, &query("billing")).await.unwrap();
    let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
    assert!(ids.contains(&billing) && ids.contains(&shared), "{hits:?}");
    assert!(
        !ids.contains(&private),
        "another chat's observation: {hits:?}"
    );
    let line = hits.iter().find(|h| h.id == billing).unwrap();
    assert_eq!(
        line.tokens,
        "the billing service crashes on empty carts"
            .len()
            .div_ceil(4)
    );

    // Kinds and time narrow the index.
    let observations = IndexQuery {
        kinds: vec![MemoryKind::Observation],
        ..query("billing")
    };
    assert!(
        memory
            .index_search(1, &observations)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        memory.index_search(2, &observations).await.unwrap()[0].id,
        private
    );
    let late = IndexQuery {
        since_ms: Some(1_500),
        ..query("billing crashes")
    };
    assert!(
        memory
            .index_search(1, &late)
            .await
            .unwrap()
            .iter()
            .all(|h| h.id != billing)
    );

    // The timeline: chat 1's entries in time order, the anchor among them; never chat 2's.
    let timeline = memory.timeline(1, billing, 5, 5).await.unwrap().unwrap();
    let times: Vec<u64> = timeline.iter().map(|e| e.at_ms).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{timeline:?}");
    assert_eq!(
        timeline[0].id, billing,
        "the first of the chat: {timeline:?}"
    );
    assert!(timeline.iter().any(|e| e.title.contains("book a table")));
    assert!(
        timeline
            .iter()
            .all(|e| e.id != private && !e.title.contains("chat two"))
    );
    let narrow = memory.timeline(1, billing, 0, 1).await.unwrap().unwrap();
    assert_eq!(narrow.len(), 2);
    assert_eq!(
        memory.timeline(1, private, 3, 3).await.unwrap(),
        None,
        "chat 2's anchor"
    );
    assert_eq!(memory.timeline(1, 999_999, 3, 3).await.unwrap(), None);

    // Records: asked order, duplicates once, another chat's and unknown ids absent alike.
    let records = memory
        .records(1, &[shared, private, billing, shared, 999_999])
        .await
        .unwrap();
    let got: Vec<u64> = records.iter().map(|r| r.id).collect();
    assert_eq!(got, [shared, billing]);
    assert_eq!(
        records[1].text,
        "the billing service crashes on empty carts"
    );
    assert_eq!(memory.records(2, &[private]).await.unwrap()[0].id, private);
    // A message stored after the index was built is in the timeline at once (keywords).
    let later = store
        .append_message(message(1, "the carts are fixed", 9_000), true)
        .unwrap()
        .seq;
    let timeline = memory.timeline(1, billing, 0, 20).await.unwrap().unwrap();
    assert_eq!(timeline.last().map(|e| e.id), Some(later), "{timeline:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observations_and_summaries_kept_by_turns_are_searchable_memory_of_their_chat() {
    use valor_core::observe::{Observation, ObservationType};
    use valor_core::recall::Recall;
    use valor_core::session::SessionSummary;

    let setup = Setup::new();
    let memory = setup.open();
    let observation = Observation {
        kind: ObservationType::Bugfix,
        title: "[bugfix] fix the upload timeout — changed src/upload.rs".to_owned(),
        summary: "Asked: fix the upload timeout\nDone: raised it to 120 s.".to_owned(),
        files_read: vec![],
        files_changed: vec!["src/upload.rs".to_owned()],
        functions: vec!["send_chunk (src/upload.rs)".to_owned()],
        commands: vec!["cargo test".to_owned()],
        sources: vec![],
    };
    memory.keep_observations(1, &[observation]).await;
    let summary = |text: &str| SessionSummary {
        title: format!("Session: {text}"),
        text: text.to_owned(),
        messages: 2,
    };
    memory
        .keep_summary(1, &summary("first session of chat one"))
        .await;
    memory.keep_summary(2, &summary("chat two's session")).await;
    memory
        .keep_summary(1, &summary("second session of chat one"))
        .await;
    assert_eq!(
        memory.last_summary(1).await.as_deref(),
        Some("second session of chat one")
    );
    assert_eq!(
        memory.last_summary(2).await.as_deref(),
        Some("chat two's session")
    );
    assert_eq!(memory.last_summary(3).await, None);
    assert_eq!(memory.counts().observations, 1);
    assert_eq!(memory.counts().summaries, 3);

    let found = memory
        .index_search(1, &query("send_chunk upload"))
        .await
        .unwrap();
    assert_eq!(found[0].kind, MemoryKind::Observation, "{found:?}");
    let full = memory.records(1, &[found[0].id]).await.unwrap();
    assert!(
        full[0]
            .text
            .contains("Functions: send_chunk (src/upload.rs)"),
        "{}",
        full[0].text
    );
    assert!(
        memory
            .index_search(2, &query("send_chunk upload"))
            .await
            .unwrap()
            .is_empty()
    );
    let sessions = IndexQuery {
        kinds: vec![MemoryKind::Summary],
        ..query("session")
    };
    assert!(
        memory
            .index_search(2, &sessions)
            .await
            .unwrap()
            .iter()
            .all(|h| h.title.contains("chat two"))
    );
}
