//! Hundreds of chats at once under Telegram's real limits (the fake Bot API answers 429 past 30
//! messages a second for the bot and one a second per chat): nothing is flooded, every chat
//! gets its answer, and answers go before status lines (an answer is out soon after its turn
//! ends, however many chats wait with a status line to show).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use teloxide::prelude::*;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use valor_core::conversation::Settings;
use valor_core::engine::{ConversationStore, Engine};
use valor_core::scripted::{Scripted, ScriptedBackend};
use valor_core::{Conversations, ModelRouter};
use valor_fakes::telegram::FakeTelegram;
use valor_store::Store;
use valor_telegram::channel::{ChannelSetup, TelegramChannel};
use valor_telegram::pacer::PacerConfig;
use valor_telegram::pairing::Pairing;

/// How long each scripted turn writes: three pieces a second apart.
const TURN: Duration = Duration::from_secs(3);

async fn many_chats_at_once(chats: i64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let fake = FakeTelegram::start().await;
    // When each chat's turn began writing, to time its answer's delivery from its end.
    let began: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let backend = ScriptedBackend::new({
        let began = Arc::clone(&began);
        move |request| {
            began
                .lock()
                .unwrap()
                .insert(request.chat_id, Instant::now());
            Scripted::Text {
                text: format!(
                    "answer for chat {} written in three pieces.",
                    request.chat_id
                ),
                pieces: 3,
                every: TURN / 3,
            }
        }
    });
    let engine = Engine::builder(
        Arc::new(backend.clone()),
        Arc::new(store.clone()) as Arc<dyn ConversationStore>,
        ModelRouter::new(valor_config::RoutingConfig::default()),
    )
    .build();
    let conversations = Conversations::new(
        engine,
        None,
        Settings {
            max_concurrent: 8,
            max_pending: 20,
        },
    );
    let users: Vec<i64> = (1..=chats).map(|i| 10_000 + i).collect();
    let channel = TelegramChannel::new(ChannelSetup {
        degraded_after: valor_telegram::health::DEGRADED_AFTER,
        cluster: None,
        bot: Bot::new(&fake.token).set_api_url(fake.url.parse().unwrap()),
        conversations,
        store: Arc::new(store.clone()),
        allowed_users: users.clone(),
        roles: Default::default(),
        poll_timeout_secs: 1,
        pacer: PacerConfig::default(),
        pairing: Pairing::for_store(store.path()),
        health: None,
        chats: valor_chatfs::ChatFs::new(dir.path().join("ws"), dir.path().join("homes"), None),
        drafts: false,
        webhook: None,
        on_refusal: None,
    })
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (channel, shutdown) = (channel.clone(), shutdown.clone());
        async move { channel.run(shutdown).await.unwrap() }
    });

    for user in &users {
        fake.user_says(*user, *user, "what is new?");
    }
    let answered = |user: i64| {
        fake.messages(user)
            .iter()
            .any(|m| m.visible == format!("answer for chat {user} written in three pieces."))
    };
    let deadline = Instant::now() + Duration::from_secs(3600);
    while !users.iter().all(|u| answered(*u)) {
        assert!(Instant::now() < deadline, "not every chat was answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Status lines still to delete go out too before the count.
    tokio::time::sleep(Duration::from_secs(30)).await;
    shutdown.cancel();
    task.await.unwrap();

    let floods = fake.errors(429);
    assert!(
        floods.is_empty(),
        "{} × 429: {:?}",
        floods.len(),
        floods.first()
    );
    // Each answer went out within a few seconds of its turn's end, though every chat had a
    // status line to show: the bot's budget serves answers first.
    let began = began.lock().unwrap();
    let mut delays: Vec<Duration> = users
        .iter()
        .map(|user| {
            let answer = fake
                .messages(*user)
                .into_iter()
                .find(|m| m.visible.starts_with("answer for chat"))
                .unwrap();
            answer.updated_at.duration_since(began[user] + TURN)
        })
        .collect();
    delays.sort();
    let p99 = delays[delays.len() * 99 / 100];
    assert!(p99 <= Duration::from_secs(3), "answers waited: p99 {p99:?}");
    assert!(
        channel.progress_dropped() > 0,
        "status lines gave way to answers"
    );
    // Nothing stays behind: every status line was deleted.
    for user in &users {
        let left: Vec<String> = fake
            .messages(*user)
            .into_iter()
            .map(|m| m.visible)
            .filter(|t| t.starts_with("Working"))
            .collect();
        assert!(left.is_empty(), "chat {user}: {left:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn three_hundred_chats_at_once_are_never_flooded() {
    many_chats_at_once(300).await;
}

#[tokio::test(start_paused = true)]
async fn five_hundred_chats_at_once_are_never_flooded() {
    many_chats_at_once(500).await;
}
