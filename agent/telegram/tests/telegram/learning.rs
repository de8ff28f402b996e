//! Questions in the chat: proposals answered by a press or a typed word, forged presses, the
//! learning watcher's "Remember this?", expiry and purge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use valor_core::scripted::ScriptedBackend;
use valor_fakes::telegram::FakeTelegram;
use valor_store::Store;

use crate::channel::{FRIEND, World, start, start_with, until, world};

fn proposal(text: &str, expires_in_ms: i64) -> valor_store::Proposal {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    valor_store::Proposal {
        id: 0,
        chat_id: FRIEND,
        text: text.to_owned(),
        kind: valor_store::MemoryKind::Learning,
        source: "daydream test".to_owned(),
        created_ms: now as u64,
        expires_ms: (now + expires_in_ms) as u64,
        message_id: None,
        state: valor_store::ProposalState::Pending,
        asked_of: None,
        learning: None,
    }
}

/// The question's message and its two buttons' data.
fn question(w: &World, text: &str) -> (i64, String, String) {
    let message = w
        .fake
        .messages(FRIEND)
        .into_iter()
        .find(|m| m.visible.contains(text))
        .unwrap();
    let markup = message.reply_markup.clone().unwrap();
    let buttons = &markup["inline_keyboard"][0];
    (
        message.message_id,
        buttons[0]["callback_data"].as_str().unwrap().to_owned(),
        buttons[1]["callback_data"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_proposed_memory_is_stored_only_after_a_yes_and_only_once() {
    use valor_store::MemoryKind;
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir, ScriptedBackend::echo()).await;
    let learnings = |w: &World| w.store.memory_records(MemoryKind::Learning).unwrap();

    w.channel
        .propose(proposal("Deploys go through CI only", 600_000))
        .await
        .unwrap();
    w.channel
        .propose(proposal("Tabs over spaces", 600_000))
        .await
        .unwrap();
    w.channel
        .propose(proposal("The old staging URL", -1))
        .await
        .unwrap();
    until(Duration::from_secs(30), || {
        w.fake.messages(FRIEND).len() == 3
    })
    .await;
    assert!(learnings(&w).is_empty(), "nothing stored unasked");

    let (message, yes, _) = question(&w, "Deploys go through CI only");
    assert!(
        w.fake.messages(FRIEND)[0]
            .visible
            .starts_with("Remember this?")
    );
    w.fake.user_presses(FRIEND, FRIEND, message, &yes);
    w.fake.user_presses(FRIEND, FRIEND, message, &yes);
    let (declined, _, no) = question(&w, "Tabs over spaces");
    w.fake.user_presses(FRIEND, FRIEND, declined, &no);
    let (expired, late_yes, _) = question(&w, "The old staging URL");
    w.fake.user_presses(FRIEND, FRIEND, expired, &late_yes);
    until(Duration::from_secs(30), || {
        w.fake
            .calls()
            .iter()
            .filter(|c| c.method == "answercallbackquery")
            .count()
            == 4
    })
    .await;
    assert!(w.fake.unanswered_callbacks().is_empty());
    let stored = learnings(&w);
    assert_eq!(stored.len(), 1, "a double tap stores once: {stored:?}");
    assert_eq!(stored[0].text, "Deploys go through CI only");
    assert_eq!(stored[0].chat_id, Some(FRIEND));
    until(Duration::from_secs(30), || {
        let texts = w.texts(FRIEND);
        texts
            .iter()
            .any(|t| t == "Remembered: Deploys go through CI only")
            && texts.iter().any(|t| t == "Not stored: Tabs over spaces")
            && texts
                .iter()
                .any(|t| t.starts_with("Not stored (the question expired)"))
    })
    .await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_press_forged_from_another_chat_settles_nothing() {
    use valor_store::MemoryKind;
    const OTHER: i64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTelegram::start().await;
    let store = Store::open(&dir.path().join("store")).unwrap();
    // OTHER is an allowed user too (the allow-list is per user, chats are tenants).
    store.add_paired_user(OTHER).unwrap();
    let w = start(fake, store, ScriptedBackend::echo()).await;
    w.channel
        .propose(proposal("Deploys go through CI only", 600_000))
        .await
        .unwrap();
    until(Duration::from_secs(30), || {
        w.fake.messages(FRIEND).len() == 1
    })
    .await;
    let (message, yes, _) = question(&w, "Deploys go through CI only");
    // Chat OTHER presses a button carrying FRIEND's question (forged callback data).
    let forged = w.fake.user_presses(OTHER, OTHER, message, &yes);
    until(Duration::from_secs(30), || {
        w.fake.unanswered_callbacks().is_empty()
    })
    .await;
    assert_eq!(
        w.fake.callback_answer(&forged).as_deref(),
        Some("This question is not yours.")
    );
    assert!(
        w.store
            .memory_records(MemoryKind::Learning)
            .unwrap()
            .is_empty()
    );
    let id = valor_telegram::remember::parse(&yes).unwrap().0;
    let state = w.store.proposal(id).unwrap().unwrap().state;
    assert_eq!(
        state,
        valor_store::ProposalState::Pending,
        "still open for its own chat"
    );
    assert!(
        w.fake.messages(OTHER).is_empty(),
        "nothing sent or edited in the other chat"
    );
    assert!(
        w.texts(FRIEND)[0].starts_with("Remember this?"),
        "the question stands unedited"
    );
    // Its own chat still settles it.
    w.fake.user_presses(FRIEND, FRIEND, message, &yes);
    until(Duration::from_secs(30), || {
        w.store.memory_records(MemoryKind::Learning).unwrap().len() == 1
    })
    .await;
    w.stop().await;
}

/// A channel with learning on (the real learner, keyword-only: no model in the test).
async fn learning_world(dir: &tempfile::TempDir) -> World {
    let path = dir.path().join("store");
    let store = Store::open(&path).unwrap();
    let memory = valor_memory::Memory::open(
        std::sync::Arc::new(store.clone()),
        valor_memory::MemorySettings::beside(&path, dir.path().join("no-model")),
    )
    .unwrap();
    let learner = valor_learn::Learner::new(
        memory,
        std::sync::Arc::new(store.clone()),
        valor_learn::LearnSettings::default(),
    );
    start_with(
        FakeTelegram::start().await,
        store,
        ScriptedBackend::echo(),
        None,
        Some(learner),
    )
    .await
}

fn replies_to(w: &World, prefix: &str) -> usize {
    w.texts(FRIEND)
        .iter()
        .filter(|t| t.starts_with(prefix))
        .count()
}

#[tokio::test(start_paused = true)]
async fn the_watcher_asks_after_the_answer_and_a_yes_reaches_the_next_turns_context() {
    let dir = tempfile::tempdir().unwrap();
    let w = learning_world(&dir).await;
    let switch = "We're switching from Bootstrap to Tailwind.";
    w.fake
        .user_says(FRIEND, FRIEND, &format!("Heads up. {switch}"));
    w.fake.user_says(FRIEND, FRIEND, "hello there");
    until(Duration::from_secs(30), || replies_to(&w, "You said:") == 2).await;
    let texts = w.texts(FRIEND);
    let answer = texts
        .iter()
        .position(|t| t.starts_with("You said: Heads up."))
        .unwrap();
    let asked = texts
        .iter()
        .position(|t| t.starts_with("Remember this?"))
        .unwrap();
    assert!(asked > answer, "the question follows the answer: {texts:?}");
    assert_eq!(texts[asked], format!("Remember this?\n\n{switch}"));
    assert_eq!(
        replies_to(&w, "Remember this?"),
        1,
        "only the statement is asked about"
    );
    assert!(
        w.store.all_learnings().unwrap().is_empty(),
        "nothing kept unasked"
    );

    // A double tap keeps it once; both presses are answered.
    let (message, yes, _) = question(&w, &format!("Remember this?\n\n{switch}"));
    w.fake.user_presses(FRIEND, FRIEND, message, &yes);
    w.fake.user_presses(FRIEND, FRIEND, message, &yes);
    until(Duration::from_secs(30), || {
        w.texts(FRIEND)
            .iter()
            .any(|t| t == &format!("Remembered as #1 (dependency): {switch}"))
    })
    .await;
    until(Duration::from_secs(30), || {
        w.fake.unanswered_callbacks().is_empty()
    })
    .await;
    let kept = w.store.all_learnings().unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].trigger.as_deref(), Some("switching"));

    // The next turn carries it; /learnings lists it; after /forget the turns do not.
    w.fake
        .user_says(FRIEND, FRIEND, "Which CSS framework do we use?");
    until(Duration::from_secs(30), || replies_to(&w, "You said:") == 3).await;
    let prompt = w.backend.requests().last().unwrap().prompt.clone();
    assert!(
        prompt.contains(&format!(
            "LEARNINGS (confirmed by the user; they hold unless the user says otherwise):\n\
             - #1 [dependency, confidence 0.50] {switch}\n"
        )),
        "{prompt}"
    );
    w.fake.user_says(FRIEND, FRIEND, "/learnings");
    until(Duration::from_secs(30), || {
        replies_to(&w, "What I learned here (1):") == 1
    })
    .await;
    w.fake.user_says(FRIEND, FRIEND, "/forget 1");
    until(Duration::from_secs(30), || {
        replies_to(&w, "Forgotten #1:") == 1
    })
    .await;
    w.fake.user_says(FRIEND, FRIEND, "/forget 7");
    until(Duration::from_secs(30), || {
        replies_to(&w, "there is no active learning #7") == 1
    })
    .await;
    w.fake.user_says(FRIEND, FRIEND, "And now?");
    until(Duration::from_secs(30), || replies_to(&w, "You said:") == 4).await;
    let prompt = w.backend.requests().last().unwrap().prompt.clone();
    assert!(!prompt.contains("LEARNINGS"), "{prompt}");
    assert!(w.fake.unanswered_callbacks().is_empty());
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_late_or_declined_learning_is_not_kept_and_remember_teaches_directly() {
    let dir = tempfile::tempdir().unwrap();
    let w = learning_world(&dir).await;
    // The daydream's candidates take the same path: a learning proposal with no watcher draft.
    w.channel
        .propose(proposal("Deploys go through CI only", -1))
        .await
        .unwrap();
    w.channel
        .propose(proposal("Tabs over spaces", 600_000))
        .await
        .unwrap();
    until(Duration::from_secs(30), || {
        w.fake.messages(FRIEND).len() == 2
    })
    .await;
    let (expired, late_yes, _) = question(&w, "Deploys go through CI only");
    w.fake.user_presses(FRIEND, FRIEND, expired, &late_yes);
    let (declined, _, no) = question(&w, "Tabs over spaces");
    w.fake.user_presses(FRIEND, FRIEND, declined, &no);
    w.fake.user_presses(FRIEND, FRIEND, declined, &no);
    until(Duration::from_secs(30), || {
        replies_to(&w, "Not stored (the question expired)") == 1
            && replies_to(&w, "Not stored: Tabs over spaces") == 1
    })
    .await;
    until(Duration::from_secs(30), || {
        w.fake.unanswered_callbacks().is_empty()
    })
    .await;
    assert!(w.store.all_learnings().unwrap().is_empty());

    w.fake
        .user_says(FRIEND, FRIEND, "/remember Releases go out on Tuesdays.");
    w.fake.user_says(FRIEND, FRIEND, "/remember");
    until(Duration::from_secs(30), || {
        replies_to(
            &w,
            "Remembered as #1 (decision): Releases go out on Tuesdays.",
        ) == 1
            && replies_to(&w, "What should I remember?") == 1
    })
    .await;
    let kept = w.store.all_learnings().unwrap();
    assert!(kept[0].manual && kept[0].confidence == 1.0, "{kept:?}");
    // Both questions were answered (replaced by their outcome), and a command is not a
    // statement the watcher asks about.
    assert_eq!(replies_to(&w, "Remember this?"), 0);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_typed_yes_answers_the_question_and_runs_no_turn() {
    let dir = tempfile::tempdir().unwrap();
    let w = learning_world(&dir).await;
    let switch = "We're switching from Bootstrap to Tailwind.";
    w.fake.user_says(FRIEND, FRIEND, switch);
    until(Duration::from_secs(30), || {
        replies_to(&w, "Remember this?") == 1
    })
    .await;
    let turns = w.backend.requests().len();
    w.fake.user_says(FRIEND, FRIEND, "yes");
    // The question becomes the outcome, its buttons gone; the yes gets a short reply.
    let outcome = format!("Remembered as #1 (dependency): {switch}");
    until(Duration::from_secs(30), || {
        w.fake
            .messages(FRIEND)
            .iter()
            .any(|m| m.visible == outcome && m.reply_markup.is_none())
            && w.texts(FRIEND).iter().any(|t| t == "Remembered.")
    })
    .await;
    assert_eq!(
        replies_to(&w, "Remember this?"),
        0,
        "no question left with buttons"
    );
    assert_eq!(w.backend.requests().len(), turns, "the yes ran no turn");
    assert_eq!(w.store.all_learnings().unwrap().len(), 1);
    assert!(
        w.store.inbox().unwrap().is_empty(),
        "the yes left the inbox"
    );
    // A second "yes" has no open question: it is an ordinary message.
    w.fake.user_says(FRIEND, FRIEND, "yes");
    until(Duration::from_secs(30), || {
        replies_to(&w, "You said: yes") == 1
    })
    .await;
    assert_eq!(w.store.all_learnings().unwrap().len(), 1);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_question_expires_its_buttons_go_and_it_is_purged_later() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(&dir, ScriptedBackend::echo()).await;
    let asked = w
        .channel
        .propose(proposal("The old staging URL", -1))
        .await
        .unwrap();
    // The scheduled job (every 30 s under `valor run`) expires it; the channel takes the
    // buttons away when told.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(w.conversations.expire_questions().await, 1);
    until(Duration::from_secs(120), || {
        w.fake.messages(FRIEND).iter().any(|m| {
            m.visible == "Not stored (the question expired): The old staging URL"
                && m.reply_markup.is_none()
        })
    })
    .await;
    let stored = w.store.proposal(asked.id).unwrap().unwrap();
    assert_eq!(stored.state, valor_store::ProposalState::Expired);
    // Settled questions go once they are past keeping.
    assert_eq!(w.store.purge_proposals(u64::MAX).unwrap(), 1);
    assert!(w.store.proposal(asked.id).unwrap().is_none());
    w.stop().await;
}
