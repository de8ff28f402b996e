//! `cargo bench -p valor-telegram --bench agent`:
//! - agent overhead per turn: the conversation service (chat queue, slot, learning off) over
//!   the engine with a scripted backend and the real store (message stored durably, context
//!   window, injection, routing, relay, reply stored), turns spread over 500 chats, p50 and p99
//!   (targets: p50 <= 2 ms, p99 <= 10 ms); the engine alone beside it;
//! - 500 concurrent chats through the Telegram channel against the fake Bot API with a scripted
//!   backend: every chat answered exactly once, wall time, RSS before and after.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use teloxide::prelude::*;
use tokio_util::sync::CancellationToken;
use valor_core::conversation::Settings;
use valor_core::engine::{ConversationStore, Engine, Incoming};
use valor_core::scripted::ScriptedBackend;
use valor_core::{Conversations, ModelRouter};
use valor_fakes::telegram::FakeTelegram;
use valor_protocol::{Event, Op, UserTurn};
use valor_store::Store;
use valor_telegram::channel::{ChannelSetup, TelegramChannel};
use valor_telegram::pacer::PacerConfig;
use valor_telegram::pairing::Pairing;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap()
        / 1024.0
}

fn engine(store: &Store, backend: ScriptedBackend) -> Engine {
    Engine::builder(
        Arc::new(backend),
        Arc::new(store.clone()) as Arc<dyn ConversationStore>,
        ModelRouter::new(valor_config::RoutingConfig::default()),
    )
    .build()
}

fn conversations(store: &Store, backend: ScriptedBackend) -> Conversations {
    Conversations::new(
        engine(store, backend),
        None,
        Settings {
            max_concurrent: 4,
            max_pending: 20,
        },
    )
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

const CHATS: usize = 500;

async fn overhead(turns: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let service = conversations(&store, ScriptedBackend::echo());
    let mut times = Vec::with_capacity(turns);
    for i in 0..turns {
        let start = Instant::now();
        let turn = UserTurn::new((i % CHATS) as i64, format!("message {i}"));
        let mut events = service.submit(Op::UserTurn(turn));
        while let Some(event) = events.next().await {
            if let Event::Failed { error, .. } = event {
                panic!("{error:?}");
            }
        }
        times.push(start.elapsed());
    }
    report("conversation service + engine + store", turns, &mut times);

    let engine = engine(&store, ScriptedBackend::echo());
    let mut times = Vec::with_capacity(turns);
    for i in 0..turns {
        let start = Instant::now();
        let incoming = Incoming::new((i % CHATS) as i64, format!("again {i}"));
        let stream = engine.turn(incoming).await.unwrap();
        stream.finish().await.unwrap();
        times.push(start.elapsed());
    }
    report("engine + store alone", turns, &mut times);
}

fn report(what: &str, turns: usize, times: &mut [Duration]) {
    times.sort();
    println!(
        "agent overhead per turn ({what}, scripted backend, {turns} turns over {CHATS} chats): p50 {:.2} ms, p99 {:.2} ms   (targets: p50 <= 2 ms, p99 <= 10 ms)",
        percentile(times, 0.5),
        percentile(times, 0.99)
    );
}

async fn many_chats(chats: i64) {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTelegram::start().await;
    let store = Store::open(&dir.path().join("store")).unwrap();
    let backend = ScriptedBackend::echo();
    let channel = TelegramChannel::new(ChannelSetup {
        degraded_after: valor_telegram::health::DEGRADED_AFTER,
        cluster: None,
        bot: Bot::new(&fake.token).set_api_url(fake.url.parse().unwrap()),
        conversations: conversations(&store, backend.clone()),
        store: Arc::new(store.clone()),
        allowed_users: (1..=chats).collect(),
        roles: Default::default(),
        poll_timeout_secs: 1,
        pacer: PacerConfig::default(),
        pairing: Pairing::for_store(store.path()),
        health: None,
        chats: valor_chatfs::ChatFs::new(
            dir.path().join("workspaces"),
            dir.path().join("homes"),
            None,
        ),
        drafts: true,
        webhook: None,
        on_refusal: None,
    })
    .await
    .unwrap();
    let before = rss_mib();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(channel.run(shutdown.clone()));
    let start = Instant::now();
    for chat in 1..=chats {
        fake.user_says(chat, chat, &format!("hello from chat {chat}"));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // A chat waiting for a slot may show a status line first: the answer is what counts.
        let answered = (1..=chats)
            .filter(|c| (fake.messages(*c).iter()).any(|m| m.visible.starts_with("You said:")))
            .count() as i64;
        if answered == chats || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = start.elapsed();
    let after = rss_mib();
    let mut lost = 0;
    let mut duplicated = 0;
    let mut wrong = 0;
    for chat in 1..=chats {
        let messages: Vec<_> = (fake.messages(chat).into_iter())
            .filter(|m| !m.visible.starts_with("Working:"))
            .collect();
        match messages.len() {
            0 => lost += 1,
            1 => {}
            _ => duplicated += 1,
        }
        if messages
            .iter()
            .any(|m| m.visible != format!("You said: hello from chat {chat}"))
        {
            wrong += 1;
        }
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
    println!(
        "{chats} concurrent chats through the channel: all answered in {:.2} s; lost {lost}, duplicated {duplicated}, wrong {wrong}; 429s {}; RSS {before:.1} -> {after:.1} MiB",
        wall.as_secs_f64(),
        fake.errors(429).len()
    );
    assert_eq!((lost, duplicated, wrong), (0, 0, 0));
}

#[tokio::main]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    overhead(if quick { 20 } else { 2000 }).await;
    many_chats(if quick { 20 } else { 500 }).await;
}
