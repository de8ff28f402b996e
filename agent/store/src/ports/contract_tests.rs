//! The store contracts (`valor-store-contract`), run on sled and on the in-memory fakes that
//! core and adapter tests use; `valor-store-pg` runs the same ones on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use valor_memory::fake::InMemoryStore;
use valor_store_contract::{
    AddMessage, archive_contract, conversation_contract, documents_contract, embedding_contract,
    learning_contract, ledger_contract, message, proposal_contract, telegram_contract,
};

use crate::Store;

/// Sled, and what a test of it keeps alive.
fn sled() -> (Store, AddMessage, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let writer = store.clone();
    let add: AddMessage = Box::new(move |chat, text| {
        let seq = writer
            .append_message(message(chat, text), false)
            .unwrap()
            .seq;
        Box::pin(async move { seq })
    });
    (store, add, dir)
}

fn fake() -> (InMemoryStore, AddMessage) {
    let store = InMemoryStore::new();
    let writer = store.clone();
    let add: AddMessage = Box::new(move |chat, text| {
        let seq = writer.add_message(message(chat, text)).seq;
        Box::pin(async move { seq })
    });
    (store, add)
}

#[tokio::test]
async fn memorys_documents_behave_alike_on_sled_and_in_memory() {
    let (store, add, _dir) = sled();
    documents_contract(Arc::new(store), add).await;
    let (store, add) = fake();
    documents_contract(Arc::new(store), add).await;
}

#[tokio::test]
async fn the_embedding_queue_and_vectors_behave_alike_on_sled_and_in_memory() {
    let (store, add, _dir) = sled();
    embedding_contract(Arc::new(store), add).await;
    let (store, add) = fake();
    embedding_contract(Arc::new(store), add).await;
}

#[tokio::test]
async fn the_archive_behaves_alike_on_sled_and_in_memory() {
    let (store, add, _dir) = sled();
    archive_contract(Arc::new(store), add).await;
    let (store, add) = fake();
    archive_contract(Arc::new(store), add).await;
}

#[tokio::test]
async fn learnings_behave_alike_on_sled_and_in_memory() {
    let (store, _, _dir) = sled();
    learning_contract(Arc::new(store)).await;
    learning_contract(Arc::new(InMemoryStore::new())).await;
}

#[tokio::test]
async fn questions_behave_alike_on_sled_and_in_memory() {
    let (store, _, _dir) = sled();
    proposal_contract(Arc::new(store)).await;
    proposal_contract(Arc::new(InMemoryStore::new())).await;
}

#[tokio::test]
async fn the_conversation_and_the_ledger_behave_alike_on_sled_and_in_memory() {
    let (store, _, _dir) = sled();
    conversation_contract(Arc::new(store.clone())).await;
    ledger_contract(Arc::new(store)).await;
    conversation_contract(Arc::new(valor_core::store::InMemoryStore::default())).await;
    ledger_contract(Arc::new(valor_claude::ledger::InMemoryLedger::default())).await;
}

#[tokio::test]
async fn the_job_log_behaves_alike_on_sled_and_in_memory() {
    let (store, _, _dir) = sled();
    valor_store_contract::job_log_contract(Arc::new(store), Some(crate::jobs::KEPT_RUNS)).await;
    let memory = Arc::new(valor_scheduler::runner::InMemoryJobLog::default());
    valor_store_contract::job_log_contract(memory, None).await;
}

#[tokio::test]
async fn the_approvals_log_behaves_alike_on_sled_and_in_memory() {
    let (store, _, _dir) = sled();
    valor_store_contract::approval_log_contract(Arc::new(store)).await;
    let memory = Arc::new(valor_core::approvals::InMemoryApprovalLog::default());
    valor_store_contract::approval_log_contract(memory).await;
}

#[tokio::test]
async fn the_spend_counters_behave_alike_on_sled_and_in_memory() {
    let (store, _, _dir) = sled();
    valor_store_contract::spend_log_contract(Arc::new(store)).await;
    let memory = Arc::new(valor_core::budget::InMemorySpendLog::default());
    valor_store_contract::spend_log_contract(memory).await;
}

#[tokio::test]
async fn the_telegram_stores_behave_alike_on_sled_and_in_memory() {
    let (store, _, _dir) = sled();
    telegram_contract(Arc::new(store)).await;
    telegram_contract(Arc::new(valor_telegram::inbox::InMemoryInbox::default())).await;
}
