//! The per-chat work queue: each update answered once, in order per chat, by one worker at a
//! time; a worker whose lease ran out cannot commit, and the next one edits its reply.

use std::collections::BTreeSet;
use std::time::Duration;

use valor_protocol::records::{InboxEntry, StoredMessage};
use valor_protocol::{Role, StoreFailure};
use valor_store_pg::queue::ChatLease;
use valor_store_pg::wake::Wake;
use valor_store_pg::{PgError, PgStore};

use crate::support::{options, store};

const TTL: Duration = Duration::from_secs(30);

fn update(update_id: i64, chat_id: i64, text: &str) -> InboxEntry {
    InboxEntry {
        update_id,
        chat_id,
        user_id: 1,
        username: None,
        text: text.to_owned(),
        private: true,
        chat_title: None,
        file: None,
    }
}

fn answer(chat_id: i64, text: &str) -> StoredMessage {
    StoredMessage {
        chat_id,
        seq: 0,
        role: Role::Assistant,
        text: text.to_owned(),
        at_ms: 5,
        user_id: None,
        username: None,
        source: None,
    }
}

/// Drains every chat `worker` can claim, answering each update; the (chat, update) pairs it
/// answered, in order.
async fn drain(worker: &PgStore) -> Vec<(i64, i64)> {
    let mut answered = Vec::new();
    loop {
        let chats = worker.claim_chats(4, TTL).await.unwrap();
        if chats.is_empty() {
            return answered;
        }
        for chat in chats {
            while let Some(next) = worker.next_update(&chat).await.unwrap() {
                let reply = answer(chat.chat_id, &next.entry.text);
                worker
                    .finish_update(&chat, next.id, Some(reply), TTL)
                    .await
                    .unwrap();
                answered.push((chat.chat_id, next.entry.update_id));
            }
            worker.release_chat(&chat).await.unwrap();
        }
    }
}

#[tokio::test]
async fn every_update_is_answered_once_in_order_per_chat_by_two_workers() {
    let (ingress, url) = store("ingress").await;
    let first = PgStore::connect(&url, options("w1")).await.unwrap();
    let second = PgStore::connect(&url, options("w2")).await.unwrap();
    let mut update_id = 0;
    for turn in 0..5 {
        for chat in 1..=20 {
            update_id += 1;
            assert!(
                ingress
                    .accept_update(&update(update_id, chat, &format!("{chat}/{turn}")))
                    .await
                    .unwrap()
            );
        }
    }
    // A replayed update (getUpdates again, a second ingress) is accepted once.
    assert!(!ingress.accept_update(&update(1, 1, "again")).await.unwrap());

    let (a, b) = tokio::join!(drain(&first), drain(&second));
    let all: Vec<(i64, i64)> = a.iter().chain(&b).copied().collect();
    let unique: BTreeSet<i64> = all.iter().map(|(_, u)| *u).collect();
    assert_eq!(all.len(), 100, "each update answered exactly once");
    assert_eq!(unique.len(), 100);
    for answered in [&a, &b] {
        for chat in 1..=20 {
            let order: Vec<i64> = (answered.iter())
                .filter(|(c, _)| *c == chat)
                .map(|(_, u)| *u)
                .collect();
            assert!(order.is_sorted(), "chat {chat}'s order: {order:?}");
        }
    }
    assert!(!a.is_empty() && !b.is_empty(), "both workers took chats");
    assert_eq!(ingress.open_updates().await.unwrap(), 0);
}

#[tokio::test]
async fn a_held_chat_is_not_claimed_by_another_worker() {
    let (first, url) = store("w1").await;
    let second = PgStore::connect(&url, options("w2")).await.unwrap();
    first.accept_update(&update(1, 7, "one")).await.unwrap();
    first.accept_update(&update(2, 8, "two")).await.unwrap();

    let mine = first.claim_chats(1, TTL).await.unwrap();
    assert_eq!(mine.len(), 1);
    let theirs = second.claim_chats(5, TTL).await.unwrap();
    let theirs: Vec<i64> = theirs.iter().map(|c| c.chat_id).collect();
    assert_eq!(theirs.len(), 1);
    assert_ne!(theirs[0], mine[0].chat_id);
    // Claiming again renews what this worker holds, at the same epoch.
    let again = first.claim_chats(5, TTL).await.unwrap();
    assert_eq!(again, mine);
}

#[tokio::test]
async fn a_worker_whose_lease_ran_out_cannot_commit_and_the_next_edits_its_reply() {
    let (slow, url) = store("slow").await;
    let next = PgStore::connect(&url, options("next")).await.unwrap();
    slow.accept_update(&update(1, 7, "hello")).await.unwrap();
    let short = Duration::from_millis(300);
    let held = slow.claim_chats(1, short).await.unwrap().remove(0);
    let turn = slow.next_update(&held).await.unwrap().unwrap();
    assert_eq!(turn.attempts, 1);
    slow.note_reply(&held, turn.id, 555).await.unwrap();

    // The lease runs out by the database's clock (no virtual time reaches it).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = next.claim_chats(1, TTL).await.unwrap().remove(0);
    assert_eq!(taken.chat_id, 7);
    assert!(
        taken.lease.epoch > held.lease.epoch,
        "a new holder, a new epoch"
    );

    let late = slow
        .finish_update(&held, turn.id, Some(answer(7, "late")), TTL)
        .await;
    assert!(matches!(late, Err(PgError::Fenced { .. })), "{late:?}");
    assert!(matches!(
        slow.renew_chat(&held, TTL).await,
        Err(PgError::Fenced { .. })
    ));
    let retried = next.next_update(&taken).await.unwrap().unwrap();
    assert_eq!(
        (retried.id, retried.attempts, retried.reply_message_id),
        (turn.id, 2, Some(555)),
        "the same update, tried again, with the message to edit"
    );
    let id = next
        .finish_update(&taken, retried.id, Some(answer(7, "answered")), TTL)
        .await
        .unwrap();
    assert!(id.is_some());
    let said: Vec<String> = (valor_memory::port::DocumentStore::recent_messages(&next, 7, 10))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(said, ["answered"], "the fenced answer was not stored");
    assert!(next.next_update(&taken).await.unwrap().is_none());
}

#[tokio::test]
async fn a_released_chat_is_claimed_at_once_by_another_worker() {
    let (first, url) = store("w1").await;
    let second = PgStore::connect(&url, options("w2")).await.unwrap();
    first.accept_update(&update(1, 7, "one")).await.unwrap();
    let held = first.claim_chats(1, TTL).await.unwrap().remove(0);
    assert!(second.claim_chats(1, TTL).await.unwrap().is_empty());
    assert!(first.release_chat(&held).await.unwrap());
    let taken: Vec<ChatLease> = second.claim_chats(1, TTL).await.unwrap();
    assert_eq!(taken[0].chat_id, 7);
    let leases = first.chat_leases().await.unwrap();
    assert_eq!(leases.len(), 1);
    assert!(leases[0].holder.starts_with("w2#"), "{leases:?}");
}

#[tokio::test]
async fn a_worker_knows_when_a_chat_held_elsewhere_frees_up() {
    let (first, url) = store("w1").await;
    let second = PgStore::connect(&url, options("w2")).await.unwrap();
    assert_eq!(
        second.next_chat_free().await.unwrap(),
        None,
        "no chat at all"
    );
    first.accept_update(&update(1, 7, "one")).await.unwrap();
    let held = first
        .claim_chats(1, Duration::from_secs(20))
        .await
        .unwrap()
        .remove(0);
    let free_in = second
        .next_chat_free()
        .await
        .unwrap()
        .expect("w1 holds work");
    assert!(
        free_in > Duration::from_secs(18) && free_in <= Duration::from_secs(20),
        "{free_in:?}"
    );
    assert_eq!(first.next_chat_free().await.unwrap(), None, "its own chats");
    // Done with its work, the chat frees up for nobody's sake.
    let next = first.next_update(&held).await.unwrap().unwrap();
    first
        .finish_update(&held, next.id, Some(answer(7, "done")), TTL)
        .await
        .unwrap();
    assert_eq!(second.next_chat_free().await.unwrap(), None);
}

#[tokio::test]
async fn a_chat_whose_answer_a_dead_worker_began_is_claimed_first() {
    let (dead, url) = store("w1").await;
    let next = PgStore::connect(&url, options("w2")).await.unwrap();
    dead.accept_update(&update(1, 8, "older")).await.unwrap();
    dead.accept_update(&update(2, 7, "begun")).await.unwrap();
    assert!(
        next.claim_interrupted_chats(5, TTL)
            .await
            .unwrap()
            .is_empty(),
        "nothing begun yet"
    );
    let short = Duration::from_millis(300);
    let held = dead.claim_chats(2, short).await.unwrap();
    let seven = held.iter().find(|c| c.chat_id == 7).unwrap();
    let eight = held.iter().find(|c| c.chat_id == 8).unwrap();
    dead.next_update(seven).await.unwrap().unwrap();
    dead.release_chat(eight).await.unwrap();
    // The worker dies: its lease on chat 7 runs out.
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    let taken = next.claim_interrupted_chats(5, TTL).await.unwrap();
    let ids: Vec<i64> = taken.iter().map(|c| c.chat_id).collect();
    assert_eq!(ids, [7], "only the begun answer's chat");
    next.release_chat(&taken[0]).await.unwrap();
    let first = next.claim_chats(1, TTL).await.unwrap();
    assert_eq!(first[0].chat_id, 7, "ahead of older work");
}

#[tokio::test]
async fn workers_hear_of_new_work_and_of_stop_at_once() {
    let (store, _) = store("w1").await;
    let mut wakes = store.listen().await.unwrap();
    store.accept_update(&update(1, 42, "hi")).await.unwrap();
    store.notify_stop(42).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), wakes.recv()).await;
    let second = tokio::time::timeout(Duration::from_secs(5), wakes.recv()).await;
    assert_eq!(first.unwrap(), Some(Wake::Work { chat_id: 42 }));
    assert_eq!(second.unwrap(), Some(Wake::Stop { chat_id: 42 }));
}

#[tokio::test]
async fn finishing_an_update_twice_is_refused_and_stores_nothing() {
    let (store, _) = store("w1").await;
    store.accept_update(&update(1, 7, "one")).await.unwrap();
    let chat = store.claim_chats(1, TTL).await.unwrap().remove(0);
    let turn = store.next_update(&chat).await.unwrap().unwrap();
    store
        .finish_update(&chat, turn.id, Some(answer(7, "first")), TTL)
        .await
        .unwrap();
    let twice = store
        .finish_update(&chat, turn.id, Some(answer(7, "second")), TTL)
        .await;
    assert!(matches!(twice, Err(PgError::Invalid(_))), "{twice:?}");
    let failure: StoreFailure = twice.unwrap_err().into();
    assert!(matches!(failure, StoreFailure::Invalid(_)));
    let said = (valor_memory::port::DocumentStore::recent_messages(&store, 7, 10))
        .await
        .unwrap();
    assert_eq!(said.len(), 1, "{said:?}");
}

/// A worker as the channel runs one: claims what is free, a task per chat taking its updates in
/// order; what it answered, as (chat, update).
async fn busy_worker(store: PgStore, rounds: usize) -> Vec<(i64, i64)> {
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    for _ in 0..rounds {
        let chats = store.claim_chats(8, TTL).await.unwrap();
        let mut tasks = Vec::new();
        for chat in chats {
            let (store, answered) = (store.clone(), std::sync::Arc::clone(&answered));
            tasks.push(tokio::spawn(async move {
                while let Some(turn) = store.next_update(&chat).await.unwrap() {
                    store
                        .finish_update(&chat, turn.id, None, TTL)
                        .await
                        .unwrap();
                    answered
                        .lock()
                        .unwrap()
                        .push((chat.chat_id, turn.entry.update_id));
                }
                store.release_chat(&chat).await.unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        tokio::task::yield_now().await;
    }
    answered.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_busy_workers_claiming_at_once_never_deadlock_nor_answer_twice() {
    let (ingress, url) = store("in").await;
    let mut update_id = 0;
    for turn in 0..3 {
        for chat in 0..60 {
            update_id += 1;
            let _ = turn;
            ingress
                .accept_update(&update(update_id, chat, "x"))
                .await
                .unwrap();
        }
    }
    let mut workers = Vec::new();
    for n in 0..4 {
        let store = PgStore::connect(&url, options(&format!("w{n}")))
            .await
            .unwrap();
        workers.push(tokio::spawn(busy_worker(store, 40)));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    let unique: BTreeSet<i64> = all.iter().map(|(_, u)| *u).collect();
    assert_eq!((all.len(), unique.len()), (180, 180), "each update once");
    assert_eq!(ingress.open_updates().await.unwrap(), 0);
}

#[tokio::test]
async fn pruning_forgets_answered_updates_and_keeps_open_ones() {
    let (store, _) = store("w1").await;
    store
        .accept_update(&update(1, 7, "answered"))
        .await
        .unwrap();
    store.accept_update(&update(2, 8, "waiting")).await.unwrap();
    let chat = store.claim_chats(1, TTL).await.unwrap().remove(0);
    assert_eq!(chat.chat_id, 7);
    let turn = store.next_update(&chat).await.unwrap().unwrap();
    store
        .finish_update(&chat, turn.id, None, TTL)
        .await
        .unwrap();

    // Kept while recent: a replayed update is still recognised.
    assert_eq!(store.prune(Duration::from_secs(3600)).await.unwrap(), 0);
    assert!(!store.accept_update(&update(1, 7, "again")).await.unwrap());
    assert_eq!(store.prune(Duration::ZERO).await.unwrap(), 1);
    assert_eq!(
        store.open_updates().await.unwrap(),
        1,
        "the waiting one is kept"
    );
}
