//! The channel end to end: fake Bot API, real teloxide, scripted backend, real store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use teloxide::prelude::*;
use tokio_util::sync::CancellationToken;
use valor_core::Conversations;
use valor_core::ModelRouter;
use valor_core::conversation::Settings;
use valor_core::engine::{ConversationStore, Engine};
use valor_core::scripted::{Scripted, ScriptedBackend};
use valor_fakes::telegram::FakeTelegram;
use valor_store::{InboxEntry, Store};
use valor_telegram::channel::{ChannelSetup, TelegramChannel};
use valor_telegram::pacer::PacerConfig;
use valor_telegram::pairing::Pairing;

pub(crate) const FRIEND: i64 = 100;

pub(crate) struct World {
    pub(crate) fake: FakeTelegram,
    pub(crate) store: Store,
    pub(crate) backend: ScriptedBackend,
    pub(crate) channel: TelegramChannel,
    pub(crate) conversations: Conversations,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

pub(crate) async fn start(fake: FakeTelegram, store: Store, backend: ScriptedBackend) -> World {
    start_with(fake, store, backend, None, None).await
}

pub(crate) async fn start_with(
    fake: FakeTelegram,
    store: Store,
    backend: ScriptedBackend,
    webhook: Option<valor_telegram::channel::Webhook>,
    learner: Option<valor_learn::Learner>,
) -> World {
    let mut engine = Engine::builder(
        Arc::new(backend.clone()),
        Arc::new(store.clone()) as Arc<dyn ConversationStore>,
        ModelRouter::new(valor_config::RoutingConfig::default()),
    );
    if let Some(learner) = &learner {
        engine = engine.recall(Arc::new(learner.memory().clone()));
    }
    let learning = valor_learn::ChatLearning::new(std::sync::Arc::new(store.clone()), learner);
    let conversations = Conversations::new(
        engine.build(),
        Some(Arc::new(learning) as Arc<dyn valor_core::learning::Learning>),
        Settings {
            max_concurrent: 4,
            max_pending: 20,
        },
    );
    let channel = TelegramChannel::new(ChannelSetup {
        degraded_after: valor_telegram::health::DEGRADED_AFTER,
        cluster: None,
        bot: Bot::new(&fake.token).set_api_url(fake.url.parse().unwrap()),
        conversations: conversations.clone(),
        store: Arc::new(store.clone()),
        allowed_users: vec![FRIEND],
        roles: Default::default(),
        poll_timeout_secs: 1,
        pacer: PacerConfig::default(),
        pairing: Pairing::for_store(store.path()),
        health: Some(Arc::new(|| "ok (score 100)".to_owned())),
        chats: valor_chatfs::ChatFs::new(
            store.path().with_file_name("workspaces"),
            store.path().with_file_name("homes"),
            None,
        ),
        drafts: false,
        webhook,
        on_refusal: None,
    })
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let channel = channel.clone();
        let shutdown = shutdown.clone();
        async move { channel.run(shutdown).await.unwrap() }
    });
    World {
        fake,
        store,
        backend,
        channel,
        conversations,
        shutdown,
        task,
    }
}

pub(crate) async fn world(dir: &tempfile::TempDir, backend: ScriptedBackend) -> World {
    start(
        FakeTelegram::start().await,
        Store::open(&dir.path().join("store")).unwrap(),
        backend,
    )
    .await
}

impl World {
    pub(crate) async fn stop(self) -> (FakeTelegram, Store, ScriptedBackend) {
        self.shutdown.cancel();
        self.task.await.unwrap();
        (self.fake, self.store, self.backend)
    }

    pub(crate) fn texts(&self, chat: i64) -> Vec<String> {
        self.fake
            .messages(chat)
            .into_iter()
            .map(|m| m.visible)
            .collect()
    }
}

/// Waits (in paused time) until `done`, at most `limit`.
pub(crate) async fn until(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not done within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_friend_gets_an_answer_and_the_conversation_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir, ScriptedBackend::echo()).await;
    let update = w.fake.user_says(FRIEND, FRIEND, "hello there");
    until(Duration::from_secs(30), || {
        w.texts(FRIEND) == ["You said: hello there"]
    })
    .await;
    until(Duration::from_secs(30), || {
        w.store.inbox().unwrap().is_empty()
    })
    .await;
    let stored: Vec<String> = w
        .store
        .recent_messages(FRIEND, 10)
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(stored, ["hello there", "You said: hello there"]);
    assert_eq!(w.store.telegram_last_update().unwrap(), update);
    assert!(!w.fake.actions(FRIEND).is_empty(), "typing was shown");
    // The command menu was registered, within Telegram's rules, and matches /help.
    let commands = w.fake.commands();
    assert_eq!(commands.len(), 8, "{commands:?}");
    for (name, _) in &commands {
        assert!(
            valor_telegram::channel::HELP.contains(&format!("/{name}")),
            "/{name} is not in /help"
        );
    }
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_stranger_gets_one_refusal_and_nothing_else_happens() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir, ScriptedBackend::echo()).await;
    w.fake.user_says(200, 200, "hi");
    w.fake.user_says(200, 200, "hello?? answer me");
    until(Duration::from_secs(30), || {
        w.store.telegram_last_update().unwrap() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let texts = w.texts(200);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].contains("only talk to people I know") && texts[0].contains("200"),
        "{}",
        texts[0]
    );
    assert!(w.backend.requests().is_empty(), "no model call");
    assert!(
        w.store.recent_messages(200, 10).unwrap().is_empty(),
        "nothing stored"
    );
    assert_eq!(w.channel.refusals(), 1);
    assert_eq!(
        w.channel.chats_tracked(),
        0,
        "a stranger gets no chat worker"
    );
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn polling_survives_store_failures_and_sets_aside_what_keeps_failing() {
    use valor_monitor::HealthComponent as _;
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir, ScriptedBackend::echo()).await;
    // Two failures: the update is retried with back-off and taken in on the third try.
    w.store.fail_next_inbox_writes(2);
    w.fake.user_says(FRIEND, FRIEND, "first");
    until(Duration::from_secs(30), || {
        w.texts(FRIEND) == ["You said: first"]
    })
    .await;
    // A disk that keeps failing: the update is set aside, the loop goes on with the next one.
    w.store.fail_next_inbox_writes(3);
    w.fake.user_says(FRIEND, FRIEND, "lost to a broken disk");
    w.fake.user_says(FRIEND, FRIEND, "second");
    until(Duration::from_secs(60), || {
        w.texts(FRIEND)
            .last()
            .is_some_and(|t| t == "You said: second")
    })
    .await;
    let (status, figures) = w.channel.health_component().check();
    assert_eq!(figures["updates_set_aside"], 1, "{figures:?}");
    assert_eq!(
        status,
        valor_monitor::Status::Ok,
        "it recovered: {figures:?}"
    );
    assert!(!w.task.is_finished(), "the polling loop is still running");
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_chat_with_too_many_waiting_messages_is_told_to_wait() {
    let dir = tempfile::tempdir().unwrap();
    let slow = ScriptedBackend::new(|_| Scripted::Text {
        text: "done".to_owned(),
        pieces: 1,
        every: Duration::from_secs(600),
    });
    let w = world(&dir, slow).await;
    for i in 0..25 {
        w.fake.user_says(FRIEND, FRIEND, &format!("message {i}"));
    }
    until(Duration::from_secs(60), || {
        w.store.telegram_last_update().unwrap() == 25
    })
    .await;
    let inbox = w.store.inbox().unwrap();
    assert_eq!(inbox.len(), 20, "only max_pending are kept as turns");
    until(Duration::from_secs(60), || {
        w.texts(FRIEND)
            .iter()
            .filter(|t| t.starts_with("Too many messages are waiting"))
            .count()
            == 5
    })
    .await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_inbox_entry_is_set_aside_and_the_rest_answered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    store.put_raw_inbox_entry(1, b"\xff not an entry").unwrap();
    store
        .accept_update(&InboxEntry {
            chat_title: None,
            update_id: 2,
            chat_id: FRIEND,
            user_id: FRIEND,
            username: None,
            text: "still here".to_owned(),
            private: true,
            file: None,
        })
        .unwrap();
    // A message of a user whose access was taken back while it waited is not answered.
    store
        .accept_update(&InboxEntry {
            chat_title: None,
            update_id: 3,
            chat_id: 300,
            user_id: 300,
            username: None,
            text: "revoked".to_owned(),
            private: true,
            file: None,
        })
        .unwrap();
    let w = start(FakeTelegram::start().await, store, ScriptedBackend::echo()).await;
    until(Duration::from_secs(30), || {
        w.texts(FRIEND) == ["You said: still here"]
    })
    .await;
    until(Duration::from_secs(30), || {
        w.store.inbox().unwrap().is_empty()
    })
    .await;
    assert_eq!(w.store.inbox_set_aside(), 1);
    assert!(w.texts(300).is_empty());
    assert!(!w.task.is_finished());
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stop_cancels_the_running_turn_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let slow = ScriptedBackend::new(|_| Scripted::Text {
        text: "word ".repeat(200),
        pieces: 200,
        every: Duration::from_secs(1),
    });
    let w = world(&dir, slow).await;
    w.fake.user_says(FRIEND, FRIEND, "write a lot");
    until(Duration::from_secs(30), || !w.texts(FRIEND).is_empty()).await;
    w.fake.user_says(FRIEND, FRIEND, "/stop");
    until(Duration::from_secs(30), || {
        w.texts(FRIEND)
            .last()
            .is_some_and(|t| t.ends_with("Stopped."))
    })
    .await;
    assert!(
        w.texts(FRIEND)[0].starts_with("word"),
        "what was written stays"
    );
    until(Duration::from_secs(30), || {
        w.store.inbox().unwrap().is_empty()
    })
    .await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_status_lines_stop_button_stops_the_turn_and_only_its_own_chats() {
    const OTHER: i64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let busy = ScriptedBackend::new(|_| Scripted::Tools {
        calls: (0..30)
            .map(|i| {
                (
                    "Read".to_owned(),
                    serde_json::json!({"file_path": format!("src/f{i}.rs")}),
                )
            })
            .collect(),
        every: Duration::from_secs(1),
        text: "all read".to_owned(),
    });
    let store = Store::open(&dir.path().join("store")).unwrap();
    store.add_paired_user(OTHER).unwrap();
    let w = start(FakeTelegram::start().await, store, busy).await;
    w.fake.user_says(FRIEND, FRIEND, "read everything");
    until(Duration::from_secs(30), || {
        w.texts(FRIEND)
            .iter()
            .any(|t| t.starts_with("Working: reading src/f"))
    })
    .await;
    let status = w
        .fake
        .messages(FRIEND)
        .into_iter()
        .find(|m| m.visible.starts_with("Working:"))
        .unwrap();
    // Another chat pressing "stop" (forged onto this message) stops nothing here.
    let forged = w.fake.user_presses(OTHER, OTHER, status.message_id, "stop");
    until(Duration::from_secs(30), || {
        w.fake.callback_answer(&forged).is_some()
    })
    .await;
    assert_eq!(
        w.fake.callback_answer(&forged).as_deref(),
        Some("Nothing is running.")
    );
    let pressed = w
        .fake
        .user_presses(FRIEND, FRIEND, status.message_id, "stop");
    until(Duration::from_secs(30), || {
        w.texts(FRIEND)
            .last()
            .is_some_and(|t| t.ends_with("Stopped."))
    })
    .await;
    assert_eq!(
        w.fake.callback_answer(&pressed).as_deref(),
        Some("Stopping.")
    );
    // The status line is gone; the turn did not read on.
    until(Duration::from_secs(30), || {
        !w.texts(FRIEND).iter().any(|t| t.starts_with("Working:"))
    })
    .await;
    assert!(!w.texts(FRIEND).iter().any(|t| t == "all read"));
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn later_messages_wait_their_turn_and_are_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let backend = ScriptedBackend::new(|request| {
        let asked = valor_core::inject::user_request(&request.prompt);
        Scripted::Text {
            text: format!("Answer to {asked}"),
            pieces: 5,
            every: Duration::from_secs(1),
        }
    });
    let w = world(&dir, backend).await;
    w.fake.user_says(FRIEND, FRIEND, "one");
    w.fake.user_says(FRIEND, FRIEND, "two");
    until(Duration::from_secs(60), || {
        w.texts(FRIEND).iter().any(|t| t == "Answer to two")
    })
    .await;
    let texts = w.texts(FRIEND);
    let queued = texts
        .iter()
        .position(|t| t.starts_with("Queued: 1 message ahead"))
        .expect("queued notice");
    let first = texts.iter().position(|t| t == "Answer to one").unwrap();
    let second = texts.iter().position(|t| t == "Answer to two").unwrap();
    assert!(first < second, "{texts:?}");
    assert!(queued < second);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_nothing_is_lost_and_nothing_answered_twice() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTelegram::start().await;
    let store = Store::open(&dir.path().join("store")).unwrap();
    // Before the "crash": update 1 was accepted (in the inbox, taken in) but not answered, and
    // Telegram had not seen it confirmed, so it delivers it again.
    store
        .accept_update(&InboxEntry {
            chat_title: None,
            update_id: 1,
            chat_id: FRIEND,
            user_id: FRIEND,
            username: None,
            text: "are you there?".to_owned(),
            private: true,
            file: None,
        })
        .unwrap();
    assert_eq!(fake.user_says(FRIEND, FRIEND, "are you there?"), 1);

    let w = start(fake, store, ScriptedBackend::echo()).await;
    until(Duration::from_secs(30), || {
        w.store.inbox().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        w.texts(FRIEND),
        ["You said: are you there?"],
        "answered once"
    );
    assert_eq!(w.backend.requests().len(), 1);
    assert_eq!(w.store.recent_messages(FRIEND, 10).unwrap().len(), 2);

    // A turn cut short by shutdown is answered after the next start.
    let slow = ScriptedBackend::new(|_| Scripted::Text {
        text: "slow answer".to_owned(),
        pieces: 10,
        every: Duration::from_secs(2),
    });
    let (fake, store, _) = w.stop().await;
    let w = start(fake, store, slow).await;
    w.fake.user_says(FRIEND, FRIEND, "take your time");
    until(Duration::from_secs(30), || w.backend.requests().len() == 1).await;
    let (fake, store, _) = w.stop().await;
    assert_eq!(store.inbox().unwrap().len(), 1, "kept for the next start");
    let w = start(fake, store, ScriptedBackend::echo()).await;
    until(Duration::from_secs(30), || {
        w.store.inbox().unwrap().is_empty()
    })
    .await;
    assert!(
        w.texts(FRIEND)
            .iter()
            .any(|t| t == "You said: take your time"),
        "{:?}",
        w.texts(FRIEND)
    );
    let users: Vec<String> = w
        .store
        .recent_messages(FRIEND, 20)
        .unwrap()
        .into_iter()
        .filter(|m| m.role == valor_protocol::Role::User)
        .map(|m| m.text)
        .collect();
    assert_eq!(
        users,
        ["are you there?", "take your time"],
        "each message stored once"
    );
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_stranger_with_a_pairing_code_joins_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir, ScriptedBackend::echo()).await;
    let code = Pairing::for_store(w.store.path()).issue().unwrap();
    w.fake.user_says(300, 300, "/pair WRONG-CODE");
    until(Duration::from_secs(30), || w.texts(300).len() == 1).await;
    assert!(w.texts(300)[0].starts_with("That code is not valid"));
    w.fake
        .user_says(300, 300, &format!("/pair {}", code.to_lowercase()));
    until(Duration::from_secs(30), || w.texts(300).len() == 2).await;
    assert!(w.texts(300)[1].starts_with("Paired."), "{:?}", w.texts(300));
    w.fake.user_says(300, 300, "now talk to me");
    until(Duration::from_secs(30), || {
        w.texts(300).iter().any(|t| t == "You said: now talk to me")
    })
    .await;
    assert_eq!(w.store.paired_users().unwrap(), [300], "persisted");
    // The code worked once.
    w.fake.user_says(301, 301, &format!("/pair {code}"));
    until(Duration::from_secs(30), || w.texts(301).len() == 1).await;
    assert!(w.texts(301)[0].starts_with("That code is not valid"));
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn status_tells_health_queue_session_cost_and_context() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir, ScriptedBackend::echo()).await;
    w.fake.user_says(FRIEND, FRIEND, "hello");
    until(Duration::from_secs(30), || w.texts(FRIEND).len() == 1).await;
    w.fake.user_says(FRIEND, FRIEND, "/status");
    until(Duration::from_secs(30), || w.texts(FRIEND).len() == 2).await;
    let status = &w.texts(FRIEND)[1];
    assert!(
        status.starts_with("Health: ok (score 100)\nQueue: 0 message(s)"),
        "{status}"
    );
    assert!(
        status.contains("Cost today: $0.0000 in 0 turn(s)"),
        "{status}"
    );
    assert!(status.contains("Context: 0 → 0 messages"), "{status}");
    assert!(status.contains("Memory in the prompt: "), "{status}");
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_download_holds_up_neither_polling_nor_other_chats() {
    const OTHER: i64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    store.add_paired_user(OTHER).unwrap();
    let w = start(FakeTelegram::start().await, store, ScriptedBackend::echo()).await;
    w.fake.delay_downloads(Duration::from_secs(8));
    let png = b"\x89PNG\r\n\x1a\nslow".to_vec();
    w.fake
        .user_sends_file(FRIEND, FRIEND, png.clone(), png.len() as u64, "look", false);
    w.fake.user_says(OTHER, OTHER, "are you there?");
    until(Duration::from_secs(30), || {
        w.texts(OTHER) == ["You said: are you there?"]
    })
    .await;
    assert!(w.texts(FRIEND).is_empty(), "the download is still running");
    // The file is in the inbox already: a restart now would not lose it.
    assert!(w.store.inbox().unwrap().iter().any(|e| e.file.is_some()));
    // The answer whole (a preview holds back the word being written).
    until(Duration::from_secs(300), || {
        w.texts(FRIEND).first().is_some_and(|t| t.ends_with(']'))
    })
    .await;
    assert!(w.texts(FRIEND)[0].contains("[The user sent a photo; it is saved at "));
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn files_up_to_20_mb_reach_the_turn_and_bigger_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir, ScriptedBackend::echo()).await;
    let png = b"\x89PNG\r\n\x1a\nfake image bytes".to_vec();
    w.fake.user_sends_file(
        FRIEND,
        FRIEND,
        png.clone(),
        png.len() as u64,
        "what is this?",
        false,
    );
    until(Duration::from_secs(30), || {
        w.texts(FRIEND).first().is_some_and(|t| t.ends_with(']'))
    })
    .await;
    let answer = &w.texts(FRIEND)[0];
    assert!(
        answer.starts_with("You said: what is this?\n\n[The user sent a photo; it is saved at "),
        "{answer}"
    );
    let path = answer
        .rsplit("saved at ")
        .next()
        .unwrap()
        .trim_end_matches(']');
    assert!(path.contains("chat_100/received/"), "{path}");
    assert_eq!(
        std::fs::read(path).unwrap(),
        png,
        "the file in the workspace is the one sent"
    );

    w.fake
        .user_sends_file(FRIEND, FRIEND, Vec::new(), 25 * 1024 * 1024, "", true);
    until(Duration::from_secs(30), || w.texts(FRIEND).len() == 2).await;
    assert!(
        w.texts(FRIEND)[1].starts_with("That file is 25.0 MB; I can take files up to 20 MB"),
        "{:?}",
        w.texts(FRIEND)
    );
    assert_eq!(w.backend.requests().len(), 1, "no turn for a refused file");
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_file_is_never_written_through_a_link_the_chat_planted() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir, ScriptedBackend::echo()).await;
    // Another chat's HOME, where a settings.json with a hook would run in its next turn.
    let workspaces = dir.path().join("workspaces");
    let victim = dir.path().join("homes/chat_200/.claude");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::create_dir_all(workspaces.join(format!("chat_{FRIEND}"))).unwrap();
    std::os::unix::fs::symlink(&victim, workspaces.join(format!("chat_{FRIEND}/received")))
        .unwrap();
    let hook = br#"{"hooks":{"SessionStart":[{"hooks":[{"type":"command","command":"id"}]}]}}"#;
    w.fake
        .user_sends_file(FRIEND, FRIEND, hook.to_vec(), hook.len() as u64, "", false);
    until(Duration::from_secs(30), || w.texts(FRIEND).len() == 1).await;
    assert!(
        w.texts(FRIEND)[0].contains("couldn't download that file"),
        "{:?}",
        w.texts(FRIEND)
    );
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        0,
        "nothing written into the other chat's HOME"
    );
    assert!(
        w.backend.requests().is_empty(),
        "no turn for a file not kept"
    );
    w.stop().await;
}

#[tokio::test]
async fn the_webhook_takes_updates_with_the_secret_only_and_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let bind = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let webhook = valor_telegram::channel::Webhook {
        url: "https://valor.example/telegram".to_owned(),
        bind,
        secret: None,
    };
    let w = start_with(
        FakeTelegram::start().await,
        Store::open(&dir.path().join("store")).unwrap(),
        ScriptedBackend::echo(),
        Some(webhook),
        None,
    )
    .await;
    until(Duration::from_secs(10), || w.fake.webhook().is_some()).await;
    let (url, secret, connections) = w.fake.webhook().unwrap();
    assert_eq!(url, "https://valor.example/telegram");
    assert_eq!((secret.len(), connections), (32, 1));

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let update = valor_fakes::telegram::text_update(1, FRIEND, FRIEND, "via webhook");
    let post = |secret: Option<&str>| {
        let mut request = client.post(format!("http://{bind}/telegram")).json(&update);
        if let Some(secret) = secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        request.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some("wrong")).await.unwrap().status(), 401);
    assert_eq!(post(Some(&secret)).await.unwrap().status(), 200);
    until(Duration::from_secs(10), || {
        w.texts(FRIEND) == ["You said: via webhook"]
    })
    .await;
    // Telegram delivers again when unsure: taken in once.
    assert_eq!(post(Some(&secret)).await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.texts(FRIEND).len(), 1);
    assert_eq!(w.backend.requests().len(), 1);
    w.stop().await;
}

use valor_fakes::telegram::TINY_PNG as PNG;

#[tokio::test(start_paused = true)]
async fn a_tools_photo_reaches_its_chat_after_a_flood_wait_with_its_caption_cut_to_fit() {
    use valor_telegram::photos::OutgoingPhoto;
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir, ScriptedBackend::echo()).await;
    w.fake.flood(FRIEND, Duration::from_secs(7));
    let long_caption = "a cat ".repeat(400);
    w.channel.post_photo(OutgoingPhoto {
        chat_id: FRIEND,
        image: PNG.to_vec(),
        caption: long_caption,
    });
    until(Duration::from_secs(30), || {
        !w.fake.messages(FRIEND).is_empty()
    })
    .await;
    let sent = &w.fake.messages(FRIEND)[0];
    assert_eq!(sent.photo.as_deref(), Some(PNG));
    assert_eq!(sent.visible.chars().count(), 1024);
    assert!(sent.visible.ends_with('…'));
    // The 429 was met once and waited out, not hammered.
    let refused = w.fake.errors(429).len();
    assert_eq!(refused, 1, "{:?}", w.fake.calls());

    // A file that is not an image is refused by Telegram and nothing else goes out.
    w.channel.post_photo(OutgoingPhoto {
        chat_id: FRIEND,
        image: b"just text".to_vec(),
        caption: String::new(),
    });
    until(Duration::from_secs(30), || {
        w.fake.errors(400).iter().any(|c| c.method == "sendphoto")
    })
    .await;
    assert_eq!(w.fake.messages(FRIEND).len(), 1);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn queue_place_retries_and_tool_progress_show_and_only_the_answers_stay() {
    let dir = tempfile::tempdir().unwrap();
    let backend = ScriptedBackend::new(|request| {
        if valor_core::inject::user_request(&request.prompt) == "busy" {
            Scripted::Retrying {
                attempts: 2,
                delay: Duration::from_secs(3),
                text: "made it".to_owned(),
            }
        } else {
            Scripted::Tools {
                calls: vec![(
                    "Read".to_owned(),
                    serde_json::json!({"file_path": "src/main.rs"}),
                )],
                every: Duration::from_secs(5),
                text: "read it".to_owned(),
            }
        }
    });
    let w = world(&dir, backend).await;
    w.fake.user_says(FRIEND, FRIEND, "tools");
    w.fake.user_says(FRIEND, FRIEND, "busy");
    let mut seen: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !w.texts(FRIEND).iter().any(|t| t == "made it") {
        assert!(tokio::time::Instant::now() < deadline, "{seen:?}");
        for text in w.texts(FRIEND) {
            if text.starts_with("Working:") && !seen.contains(&text) {
                seen.push(text);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen.iter().any(|s| s == "Working: reading src/main.rs"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.contains("the API is busy, retrying in 3 s")),
        "{seen:?}"
    );
    // Let the last status line go, then only the notice and the answers are left, in order.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        w.texts(FRIEND),
        [
            "Queued: 1 message ahead of yours. I'll get to it.",
            "read it",
            "made it"
        ]
    );
    assert_eq!(w.fake.deleted(), 2, "both status lines were removed");
    assert!(w.fake.errors(429).is_empty(), "{:?}", w.fake.errors(429));
    assert!(w.store.inbox().unwrap().is_empty());
    w.stop().await;
}
