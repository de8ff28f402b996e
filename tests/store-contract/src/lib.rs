//! One contract for each store interface, run by every store's tests: sled's and the
//! in-memory fakes' (in `valor-store`) and PostgreSQL's (in `valor-store-pg`). Whatever passes
//! here behaves the same behind any of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod approvals;
mod conversation;
mod jobs;
mod spend;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use valor_learn::port::LearnStore;
use valor_memory::port::{Feed, MemoryStore, document};
use valor_protocol::learnings::{Category, LearningRecord};
use valor_protocol::proposals::{PROPOSAL_TTL_MS, Proposal, ProposalState};
use valor_protocol::records::{MemoryKind, MemoryRecord, StoredMessage, StoredVector};
use valor_protocol::{Role, StoreFailure};

pub use approvals::approval_log_contract;
pub use conversation::{conversation_contract, ledger_contract, telegram_contract};
pub use jobs::job_log_contract;
pub use spend::spend_log_contract;

/// Appends a message to a chat the way the conversation does; its id.
pub type AddMessage =
    Box<dyn Fn(i64, &str) -> Pin<Box<dyn Future<Output = u64> + Send>> + Send + Sync>;

/// A message of `chat_id` saying `text`, as a store keeps it.
pub fn message(chat_id: i64, text: &str) -> StoredMessage {
    StoredMessage {
        chat_id,
        seq: 0,
        role: Role::User,
        text: text.to_owned(),
        at_ms: 1_000,
        user_id: Some(1),
        username: Some("ann".to_owned()),
        source: None,
    }
}

fn memory(kind: MemoryKind, chat_id: Option<i64>, text: &str) -> MemoryRecord {
    MemoryRecord {
        id: 0,
        kind,
        chat_id,
        at_ms: 2_000,
        title: text.chars().take(20).collect(),
        text: text.to_owned(),
        url: None,
    }
}

fn vector(model: &str, x: f32) -> StoredVector {
    StoredVector {
        model_id: model.to_owned(),
        vector: vec![x, 1.0 - x],
    }
}

async fn drain<T>(mut feed: Feed<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(item) = feed.recv().await {
        out.push(item.unwrap());
    }
    out
}

pub async fn documents_contract(store: Arc<dyn MemoryStore>, add_message: AddMessage) {
    let heard: Arc<Mutex<Vec<u64>>> = Arc::default();
    let ears = Arc::clone(&heard);
    store.follow_documents(Arc::new(move |d| ears.lock().unwrap().push(d.id)));

    let said = add_message(7, "the billing service crashes").await;
    let saved = store
        .save_memories(vec![
            memory(MemoryKind::Summary, Some(7), "first summary"),
            memory(MemoryKind::Summary, Some(7), "second summary"),
            memory(MemoryKind::Link, Some(8), "another chat's link"),
        ])
        .await
        .unwrap();
    let ids: Vec<u64> = saved.iter().map(|r| r.id).collect();
    assert!(
        ids.iter().all(|id| *id > said),
        "one id sequence: {said} then {ids:?}"
    );
    assert_eq!(*heard.lock().unwrap(), [said, ids[0], ids[1], ids[2]]);

    // Invalid memories are refused, as the caller's to fix; nothing is written.
    let refused = store
        .save_memories(vec![memory(MemoryKind::Link, Some(7), "   ")])
        .await;
    assert!(
        matches!(refused, Err(StoreFailure::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(heard.lock().unwrap().len(), 4);

    // Read by id, in the order asked, absent ones as None.
    let read = store.documents(&[ids[1], 999_999, said]).await.unwrap();
    assert_eq!(read[0].as_ref().unwrap().text, "second summary");
    assert!(read[1].is_none());
    let message = read[2].as_ref().unwrap();
    assert_eq!(
        (message.kind, message.chat_id),
        (MemoryKind::Message, Some(7))
    );
    assert_eq!(
        document(store.as_ref(), ids[2])
            .await
            .unwrap()
            .unwrap()
            .chat_id,
        Some(8)
    );

    let latest = store.latest_memory(MemoryKind::Summary, 7).await.unwrap();
    assert_eq!(latest.unwrap().text, "second summary");
    assert!(
        store
            .latest_memory(MemoryKind::Summary, 8)
            .await
            .unwrap()
            .is_none()
    );

    add_message(7, "book a table").await;
    add_message(9, "not chat seven").await;
    let recent = store.recent_messages(7, 10).await.unwrap();
    let texts: Vec<&str> = recent.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["the billing service crashes", "book a table"]);
    assert_eq!(
        store.recent_messages(7, 1).await.unwrap()[0].text,
        "book a table"
    );

    let mut fed: Vec<u64> = drain(store.document_feed())
        .await
        .iter()
        .map(|d| d.id)
        .collect();
    fed.sort_unstable();
    assert_eq!(fed.len(), 6);
    assert!(ids.iter().chain([&said]).all(|id| fed.contains(id)));
}

pub async fn embedding_contract(store: Arc<dyn MemoryStore>, add_message: AddMessage) {
    let first = add_message(1, "one").await;
    let second = add_message(1, "two").await;
    let third = store
        .save_memories(vec![memory(MemoryKind::Insight, None, "three")])
        .await
        .unwrap()[0]
        .id;
    assert_eq!(store.queued_count().await.unwrap(), 3);
    assert_eq!(
        store.queued_for_embedding(2).await.unwrap(),
        [first, second]
    );

    store
        .put_vectors(vec![(first, vector("m1", 0.1)), (third, vector("m1", 0.3))])
        .await
        .unwrap();
    assert_eq!(store.queued_for_embedding(10).await.unwrap(), [second]);
    assert_eq!(store.vector(third).await.unwrap(), Some(vector("m1", 0.3)));
    assert_eq!(store.vector(second).await.unwrap(), None);
    let fed: Vec<u64> = drain(store.vector_feed())
        .await
        .iter()
        .map(|v| v.0)
        .collect();
    assert_eq!(fed, [first, third]);

    store.unqueue(vec![second]).await.unwrap();
    assert_eq!(store.queued_count().await.unwrap(), 0);
    // A document with neither a vector nor a queue entry (a crash between writes) comes back.
    assert_eq!(store.requeue_missing().await.unwrap(), [second]);
    assert_eq!(store.requeue_missing().await.unwrap(), Vec::<u64>::new());

    store.clear_vectors().await.unwrap();
    assert!(drain(store.vector_feed()).await.is_empty());
    store.queue_for_embedding(vec![first, third]).await.unwrap();
    assert_eq!(
        store.queued_for_embedding(10).await.unwrap(),
        [first, second, third]
    );
}

pub async fn archive_contract(store: Arc<dyn MemoryStore>, add_message: AddMessage) {
    let mine = add_message(1, "mine").await;
    // An imported message keeps its id, and later ids come after it.
    let imported = StoredMessage {
        seq: 5_000,
        ..message(2, "imported")
    };
    store.import_message(imported.clone()).await.unwrap();
    let after = add_message(2, "after the import").await;
    assert!(after > 5_000, "{after}");
    let messages = drain(store.message_feed()).await;
    assert!(messages.contains(&imported));
    assert_eq!(messages.len(), 3);

    // An id may be written again only as the same kind of the same chat.
    assert!(
        store
            .id_fits(mine, MemoryKind::Message, Some(1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .id_fits(mine, MemoryKind::Message, Some(2))
            .await
            .unwrap()
    );
    assert!(
        !store
            .id_fits(mine, MemoryKind::Link, Some(1))
            .await
            .unwrap()
    );
    assert!(store.id_fits(9_000, MemoryKind::Link, None).await.unwrap());

    store
        .import_memory(MemoryRecord {
            id: 9_000,
            ..memory(MemoryKind::Link, None, "an imported link")
        })
        .await
        .unwrap();
    let links = store.memory_records(MemoryKind::Link).await.unwrap();
    assert_eq!(links.iter().map(|l| l.id).collect::<Vec<_>>(), [9_000]);
    let too_large = MemoryRecord {
        id: valor_protocol::memory::MAX_DOCUMENT_ID + 1,
        ..memory(MemoryKind::Link, None, "beyond")
    };
    assert!(store.import_memory(too_large).await.is_err());

    let mut learning =
        LearningRecord::new(Some(1), Category::Decision, "We use sled.", "tg:1", true, 1);
    learning.id = 9_500;
    learning.number = 3;
    store.import_learning(learning.clone()).await.unwrap();
    let all = store.all_learnings().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].id, all[0].number), (9_500, 3));
    assert_eq!(
        document(store.as_ref(), 9_500).await.unwrap().unwrap().kind,
        MemoryKind::Learning
    );
    store.flush().await.unwrap();
}

pub async fn learning_contract(store: Arc<dyn LearnStore>) {
    let learned =
        |chat, text: &str| LearningRecord::new(chat, Category::Decision, text, "tg:1", false, 10);
    let first = store
        .add_learning(learned(Some(1), "We use sled."))
        .await
        .unwrap();
    let second = store
        .add_learning(learned(Some(1), "We deploy on Fridays."))
        .await
        .unwrap();
    let other = store
        .add_learning(learned(Some(2), "Chat two's."))
        .await
        .unwrap();
    assert_eq!((first.number, second.number, other.number), (1, 2, 1));
    assert!(store.add_learning(learned(Some(1), "  ")).await.is_err());
    // Its searchable memory gave it its id.
    let as_document = store
        .documents(&[first.id])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(as_document.kind, MemoryKind::Learning);

    let mut firmer = first.clone();
    firmer.reinforce("tg:2", 20);
    store.update_learning(firmer.clone()).await.unwrap();
    let mine = store.learnings_of(Some(1), false).await.unwrap();
    assert_eq!(mine, [firmer, second.clone()]);

    let retired = store
        .retire_learning(second.id, "forgotten".to_owned(), None, 30)
        .await
        .unwrap()
        .unwrap();
    assert!(!retired.is_active());
    assert_eq!(store.learnings_of(Some(1), false).await.unwrap().len(), 1);
    assert_eq!(store.learnings_of(Some(1), true).await.unwrap().len(), 2);
    assert!(
        store.documents(&[second.id]).await.unwrap()[0].is_none(),
        "gone from search"
    );
    assert!(
        store
            .retire_learning(77_777, "none".to_owned(), None, 30)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.learning_vector(first.id).await.unwrap(), None);
}

pub async fn proposal_contract(store: Arc<dyn LearnStore>) {
    let asked = |chat_id, created_ms| Proposal {
        id: 0,
        chat_id,
        text: "We use sled.".to_owned(),
        kind: MemoryKind::Learning,
        source: "tg:1".to_owned(),
        created_ms,
        expires_ms: created_ms + PROPOSAL_TTL_MS,
        message_id: None,
        state: ProposalState::Declined,
        asked_of: None,
        learning: None,
    };
    let one = store.add_proposal(asked(1, 1_000)).await.unwrap();
    let two = store.add_proposal(asked(1, 1_000)).await.unwrap();
    assert_ne!(one.id, two.id);
    assert_eq!(one.state, ProposalState::Pending);
    assert_eq!(store.proposal(one.id).await.unwrap(), Some(one.clone()));

    // Only its own chat settles it, and only once.
    assert!(
        store
            .settle_proposal(one.id, 2, true, 2_000)
            .await
            .unwrap()
            .is_none()
    );
    let (before, now) = store
        .settle_proposal(one.id, 1, true, 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (before, now.state),
        (ProposalState::Pending, ProposalState::Accepted)
    );
    let (before, now) = store
        .settle_proposal(one.id, 1, false, 2_100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (before, now.state),
        (ProposalState::Accepted, ProposalState::Accepted)
    );

    let late = 1_000 + PROPOSAL_TTL_MS + 1;
    let expired = store.expire_proposals(late).await.unwrap();
    assert_eq!(expired.iter().map(|p| p.id).collect::<Vec<_>>(), [two.id]);
    assert!(store.expire_proposals(late).await.unwrap().is_empty());
    assert_eq!(store.purge_proposals(1_001).await.unwrap(), 2);
    assert!(store.proposal(two.id).await.unwrap().is_none());
}
