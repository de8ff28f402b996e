//! The contracts sled and the fakes pass, on PostgreSQL.

use std::sync::Arc;

use valor_store_contract::{
    AddMessage, archive_contract, conversation_contract, documents_contract, embedding_contract,
    learning_contract, ledger_contract, message, proposal_contract, telegram_contract,
};
use valor_store_pg::PgStore;

use crate::support::store;

fn adder(store: &PgStore) -> AddMessage {
    let writer = store.clone();
    Box::new(move |chat, text| {
        let writer = writer.clone();
        let message = message(chat, text);
        Box::pin(async move { writer.append_message(message).await.unwrap() })
    })
}

#[tokio::test]
async fn memorys_documents_behave_as_on_sled() {
    let (store, _) = store("a").await;
    let add = adder(&store);
    documents_contract(Arc::new(store), add).await;
}

#[tokio::test]
async fn the_embedding_queue_and_vectors_behave_as_on_sled() {
    let (store, _) = store("a").await;
    let add = adder(&store);
    embedding_contract(Arc::new(store), add).await;
}

#[tokio::test]
async fn the_archive_behaves_as_on_sled() {
    let (store, _) = store("a").await;
    let add = adder(&store);
    archive_contract(Arc::new(store), add).await;
}

#[tokio::test]
async fn learnings_and_questions_behave_as_on_sled() {
    let (store, _) = store("a").await;
    learning_contract(Arc::new(store.clone())).await;
    proposal_contract(Arc::new(store)).await;
}

#[tokio::test]
async fn the_conversation_and_the_ledger_behave_as_on_sled() {
    let (store, _) = store("a").await;
    conversation_contract(Arc::new(store.clone())).await;
    ledger_contract(Arc::new(store)).await;
}

#[tokio::test]
async fn the_job_log_behaves_as_on_sled() {
    let (store, _) = store("a").await;
    let kept = valor_store_pg::jobs::KEPT_JOB_RUNS as usize;
    valor_store_contract::job_log_contract(Arc::new(store), Some(kept)).await;
}

#[tokio::test]
async fn the_approvals_log_behaves_as_on_sled() {
    let (store, _) = store("a").await;
    valor_store_contract::approval_log_contract(Arc::new(store)).await;
}

#[tokio::test]
async fn the_spend_counters_behave_as_on_sled() {
    let (store, _) = store("a").await;
    valor_store_contract::spend_log_contract(Arc::new(store)).await;
}

#[tokio::test]
async fn the_telegram_stores_behave_as_on_sled() {
    let (store, _) = store("a").await;
    telegram_contract(Arc::new(store)).await;
}
