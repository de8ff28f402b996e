//! Memory over the in-memory store, as core's and the adapters' tests use it: no disk, the
//! same answers (keywords, a chat's view, what a turn keeps, the indexes built at open).

use std::sync::Arc;

use valor_core::recall::Recall;
use valor_core::session::SessionSummary;
use valor_memory::fake::InMemoryStore;
use valor_memory::{Memory, MemorySettings, Query};
use valor_protocol::records::MemoryKind;
use valor_tool_memory::{MemoryBook, SearchRequest};

use crate::memory::{message, saved};

fn open(store: &InMemoryStore, dir: &std::path::Path) -> Memory {
    Memory::open(
        Arc::new(store.clone()),
        MemorySettings::beside(&dir.join("store"), dir.join("no-model")),
    )
    .unwrap()
}

#[tokio::test]
async fn memory_answers_from_the_in_memory_store_within_each_chats_view() {
    let dir = tempfile::tempdir().unwrap();
    let store = InMemoryStore::new();
    // Written before memory opens: the loader reads them from the store's feed.
    let billing = store
        .add_message(message(1, "the billing service crashes", 1_000))
        .seq;
    let memory = open(&store, dir.path());
    memory.loaded().await;
    // Written after: the listener indexes them at once.
    let private = store
        .add_message(message(2, "billing in chat two is private", 2_000))
        .seq;
    store
        .write_memory(saved(
            MemoryKind::Insight,
            None,
            "Billing",
            "billing errors doubled",
        ))
        .unwrap();

    let hits = memory
        .search(&Query::new("billing", 10))
        .await
        .unwrap()
        .hits;
    assert_eq!(hits.len(), 3);
    let recalled: Vec<u64> = (memory.recall(1, "billing", &[]).await.iter())
        .map(|r| r.id)
        .collect();
    assert!(recalled.contains(&billing));
    assert!(
        !recalled.contains(&private),
        "chat 2's message reached chat 1"
    );

    let request = SearchRequest {
        query: "billing".to_owned(),
        limit: 10,
        ..SearchRequest::default()
    };
    let lines = MemoryBook::search(&memory, 1, &request).await.unwrap();
    assert!(lines.iter().all(|l| l.id != private));
    let read = MemoryBook::get(&memory, 1, &[private, billing])
        .await
        .unwrap();
    assert_eq!(read.iter().map(|r| r.id).collect::<Vec<_>>(), [billing]);

    memory
        .keep_summary(
            1,
            &SessionSummary {
                title: "Session".to_owned(),
                text: "we fixed the billing crash".to_owned(),
                messages: 2,
            },
        )
        .await;
    assert_eq!(
        memory.last_summary(1).await.as_deref(),
        Some("we fixed the billing crash")
    );
    assert_eq!(memory.last_summary(2).await, None);
    let since = memory.chat_since(1, 0, 10).await.unwrap();
    assert_eq!(since.len(), 1);
    assert_eq!(memory.counts().documents(), 4);
}
