//! Learning over the in-memory stores, through core's `Learning` seam as every channel calls
//! it: a question, answers from the wrong chat and the right one, the learning listed and
//! forgotten, a question that expires with no channel running. No disk.

use std::sync::Arc;

use valor_core::learning::Learning;
use valor_learn::{ChatLearning, LearnSettings, Learner};
use valor_memory::fake::InMemoryStore;
use valor_memory::{Memory, MemorySettings};
use valor_protocol::proposals::PROPOSAL_TTL_MS;
use valor_protocol::time::now_ms;

const CHAT: i64 = 5;

async fn learning_over(store: &InMemoryStore, dir: &std::path::Path) -> ChatLearning {
    let memory = Memory::open(
        Arc::new(store.clone()),
        MemorySettings::beside(&dir.join("store"), dir.join("no-model")),
    )
    .unwrap();
    memory.loaded().await;
    let learner = Learner::new(memory, Arc::new(store.clone()), LearnSettings::default());
    ChatLearning::new(Arc::new(store.clone()), Some(learner))
}

#[tokio::test]
async fn a_question_is_settled_only_by_its_chat_and_its_learning_kept_and_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = InMemoryStore::new();
    let learning = learning_over(&store, dir.path()).await;

    let question = learning
        .watch(
            CHAT,
            None,
            "We decided to use PostgreSQL for the main database.",
            "tg:1",
        )
        .await
        .expect("the watcher asks about a decision");
    assert!(
        learning
            .watch(CHAT, None, "Thanks, that was helpful!", "tg:2")
            .await
            .is_none()
    );

    let stranger = learning.answer(CHAT + 1, question.id, true).await;
    assert_eq!(stranger.reply, "This question is not yours.");
    let yes = learning.answer(CHAT, question.id, true).await;
    assert_eq!(yes.reply, "Remembered.");
    assert_eq!(
        learning.answer(CHAT, question.id, true).await.reply,
        "Already answered."
    );

    let listed = learning.list(CHAT).await;
    assert!(
        listed.contains("#1 [decision] We decided to use PostgreSQL"),
        "{listed}"
    );
    assert!(!learning.list(CHAT + 1).await.contains("PostgreSQL"));
    let learned = store.tables().learnings.values().next().cloned().unwrap();
    assert!(
        store.tables().memories.contains_key(&learned.id),
        "searchable"
    );

    let forgotten = learning.forget(CHAT, 1).await;
    assert!(forgotten.starts_with("Forgotten #1"), "{forgotten}");
    assert!(!learning.list(CHAT).await.contains("PostgreSQL"));
    assert!(
        !store.tables().memories.contains_key(&learned.id),
        "out of search"
    );
    let again = learning.forget(CHAT, 1).await;
    assert!(again.contains("no active learning #1"), "{again}");
}

#[tokio::test]
async fn an_unanswered_question_expires_without_any_channel() {
    let dir = tempfile::tempdir().unwrap();
    let store = InMemoryStore::new();
    let learning = learning_over(&store, dir.path()).await;
    let question = learning
        .watch(
            CHAT,
            None,
            "We decided to use Redis for the job queue.",
            "tg:1",
        )
        .await
        .expect("the watcher asks about a decision");
    assert!(learning.expire(now_ms()).await.is_empty(), "not yet");
    let expired = learning.expire(now_ms() + PROPOSAL_TTL_MS + 1).await;
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].question.id, question.id);
    let late = learning.answer(CHAT, question.id, true).await;
    assert_eq!(late.reply, "Already answered.");
}

#[tokio::test]
async fn the_operator_may_still_accept_a_declined_or_expired_question_of_its_chat() {
    let dir = tempfile::tempdir().unwrap();
    let store = InMemoryStore::new();
    let learning = learning_over(&store, dir.path()).await;
    let declined = learning
        .watch(
            CHAT,
            None,
            "We decided to use PostgreSQL for the main database.",
            "tg:1",
        )
        .await
        .expect("the watcher asks about a decision");
    assert_eq!(
        learning.answer(CHAT, declined.id, false).await.reply,
        "Not stored."
    );
    // A button pressed again does not change a no; the operator's yes does, once.
    assert_eq!(
        learning.answer(CHAT, declined.id, true).await.reply,
        "Already answered."
    );
    assert_eq!(
        learning.decide(CHAT + 1, declined.id, true).await.reply,
        "This question is not yours."
    );
    assert_eq!(
        learning.decide(CHAT, declined.id, true).await.reply,
        "Remembered."
    );
    assert_eq!(
        learning.decide(CHAT, declined.id, true).await.reply,
        "Already answered."
    );
    assert!(learning.list(CHAT).await.contains("PostgreSQL"));

    let expired = learning
        .watch(
            CHAT,
            None,
            "We decided to use Redis for the job queue.",
            "tg:2",
        )
        .await
        .expect("the watcher asks about a decision");
    learning.expire(now_ms() + PROPOSAL_TTL_MS + 1).await;
    assert_eq!(
        learning.decide(CHAT, expired.id, false).await.reply,
        "Already answered.",
        "a no leaves it"
    );
    assert_eq!(
        learning.decide(CHAT, expired.id, true).await.reply,
        "Remembered."
    );
    assert!(learning.list(CHAT).await.contains("Redis"));
}
