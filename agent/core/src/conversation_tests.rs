use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::ModelRouter;
use crate::engine::ConversationStore;
use crate::learning::Expired;
use crate::scripted::{Scripted, ScriptedBackend};
use crate::store::InMemoryStore;

fn service(backend: &ScriptedBackend, settings: Settings) -> Conversations {
    service_learning(backend, settings, None)
}

fn service_learning(
    backend: &ScriptedBackend,
    settings: Settings,
    learning: Option<Arc<dyn Learning>>,
) -> Conversations {
    let store = Arc::new(InMemoryStore::default()) as Arc<dyn ConversationStore>;
    let engine = Engine::builder(
        Arc::new(backend.clone()),
        store,
        ModelRouter::new(valor_config::RoutingConfig::default()),
    )
    .build();
    Conversations::new(engine, learning, settings)
}

/// Every event of a submission, with when it came, read to the end.
async fn collect(mut events: Events) -> Vec<(Instant, Event)> {
    let mut out = Vec::new();
    while let Some(event) = events.next().await {
        out.push((Instant::now(), event));
    }
    out
}

fn only(events: &[(Instant, Event)]) -> Vec<Event> {
    events.iter().map(|(_, e)| e.clone()).collect()
}

fn final_text(events: &[(Instant, Event)]) -> Option<String> {
    events.iter().find_map(|(_, e)| match e {
        Event::Final(summary) => Some(summary.text.clone()),
        _ => None,
    })
}

fn slow(text: &str) -> Scripted {
    Scripted::Text {
        text: text.to_owned(),
        pieces: 4,
        every: Duration::from_millis(250),
    }
}

fn say(service: &Conversations, chat_id: i64, text: &str) -> Events {
    service.submit(Op::UserTurn(UserTurn::new(chat_id, text)))
}

#[tokio::test(start_paused = true)]
async fn one_chats_turns_run_in_order_and_later_ones_see_their_place() {
    let backend = ScriptedBackend::new(|r| slow(crate::inject::user_request(&r.prompt)));
    let service = service(&backend, Settings::default());
    let tasks: Vec<_> = ["first", "second", "third"]
        .into_iter()
        .map(|text| tokio::spawn(collect(say(&service, 1, text))))
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.push(task.await.unwrap());
    }
    assert_eq!(only(&all[1])[0], Event::Queued { position: 1 });
    assert_eq!(only(&all[2])[0], Event::Queued { position: 2 });
    for (events, text) in all.iter().zip(["first", "second", "third"]) {
        assert_eq!(final_text(events).as_deref(), Some(text));
    }
    // Each started after the one before was answered.
    let started = |events: &[(Instant, Event)]| {
        events
            .iter()
            .find(|(_, e)| matches!(e, Event::Started { .. }))
            .unwrap()
            .0
    };
    let ended = |events: &[(Instant, Event)]| events.last().unwrap().0;
    assert!(started(&all[1]) >= ended(&all[0]));
    assert!(started(&all[2]) >= ended(&all[1]));
    let prompts: Vec<String> = backend
        .requests()
        .iter()
        .map(|r| crate::inject::user_request(&r.prompt).to_owned())
        .collect();
    assert_eq!(prompts, ["first", "second", "third"]);
    assert_eq!(service.chats_tracked(), 0, "an idle chat leaves the map");
}

#[tokio::test(start_paused = true)]
async fn chats_run_side_by_side_up_to_the_limit() {
    let backend = ScriptedBackend::new(|_| slow("done"));
    let settings = Settings {
        max_concurrent: 2,
        ..Settings::default()
    };
    let service = service(&backend, settings);
    assert_eq!(service.load(), (0, 0));
    let tasks: Vec<_> = (1..=3)
        .map(|chat| tokio::spawn(collect(say(&service, chat, "hi"))))
        .collect();
    // Once all three are in: two run, one waits for a slot.
    for _ in 0..100 {
        if service.load() == (2, 1) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(service.load(), (2, 1));
    let mut all = Vec::new();
    for task in tasks {
        all.push(task.await.unwrap());
    }
    let at = |events: &[(Instant, Event)], pick: fn(&Event) -> bool| {
        events.iter().find(|(_, e)| pick(e)).unwrap().0
    };
    let started = |e: &Event| matches!(e, Event::Started { .. });
    let finished = |e: &Event| matches!(e, Event::Final(_));
    // The first two overlap; the third waits for a slot and starts when one is free.
    assert!(at(&all[1], started) < at(&all[0], finished));
    assert_eq!(only(&all[2])[0], Event::WaitingForSlot { position: 1 });
    assert!(at(&all[2], started) >= at(&all[0], finished).min(at(&all[1], finished)));
    for events in &all {
        assert_eq!(final_text(events).as_deref(), Some("done"));
    }
    assert_eq!(service.load(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_stops_the_running_turn_and_the_queue_goes_on() {
    let backend = ScriptedBackend::new(|r| {
        if r.prompt.ends_with("long") {
            Scripted::Text {
                text: "a very long answer".to_owned(),
                pieces: 100,
                every: Duration::from_secs(1),
            }
        } else {
            Scripted::text("short")
        }
    });
    let service = service(&backend, Settings::default());
    let mut long = say(&service, 5, "long");
    let next = tokio::spawn(collect(say(&service, 5, "next")));
    // Wait for the long turn to write something, then stop it.
    loop {
        if let Some(Event::TextDelta(_)) = long.next().await {
            break;
        }
    }
    let mut interrupt = service.submit(Op::Interrupt { chat_id: 5 });
    assert_eq!(
        interrupt.next().await,
        Some(Event::Interrupted { was_running: true })
    );
    let rest = collect(long).await;
    match rest.last().map(|(_, e)| e) {
        Some(Event::Failed { error, partial }) => {
            assert_eq!(error.kind, TurnErrorKind::Cancelled);
            assert!(!partial.is_empty(), "what it had written is kept");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(final_text(&next.await.unwrap()).as_deref(), Some("short"));
    let mut idle = service.submit(Op::Interrupt { chat_id: 5 });
    assert_eq!(
        idle.next().await,
        Some(Event::Interrupted { was_running: false })
    );
}

#[tokio::test]
async fn a_new_conversation_makes_only_the_next_turn_start_over() {
    let backend = ScriptedBackend::new(|_| Scripted::text("ok"));
    let service = service(&backend, Settings::default());
    collect(say(&service, 2, "one")).await;
    let mut ack = service.submit(Op::NewConversation { chat_id: 2 });
    assert_eq!(ack.next().await, Some(Event::NewConversation));
    collect(say(&service, 2, "two")).await;
    collect(say(&service, 2, "three")).await;
    let fresh: Vec<bool> = backend.requests().iter().map(|r| r.fresh_session).collect();
    assert_eq!(fresh, [false, true, false]);
}

#[tokio::test(start_paused = true)]
async fn retries_and_tool_calls_reach_the_channel_in_order() {
    let backend = ScriptedBackend::new(|r| {
        if r.prompt.ends_with("busy") {
            Scripted::Retrying {
                attempts: 2,
                delay: Duration::from_secs(3),
                text: "made it".to_owned(),
            }
        } else {
            Scripted::Tools {
                calls: vec![("Read".to_owned(), serde_json::json!({"file_path": "a.rs"}))],
                every: Duration::from_millis(10),
                text: "read it".to_owned(),
            }
        }
    });
    let service = service(&backend, Settings::default());
    let busy = only(&collect(say(&service, 3, "busy")).await);
    let retries: Vec<u32> = busy
        .iter()
        .filter_map(|e| match e {
            Event::Retrying {
                attempt, delay_ms, ..
            } => {
                assert_eq!(*delay_ms, 3000);
                Some(*attempt)
            }
            _ => None,
        })
        .collect();
    assert_eq!(retries, [1, 2]);
    let tools = only(&collect(say(&service, 3, "tools")).await);
    let call = tools
        .iter()
        .position(|e| matches!(e, Event::ToolCall { name, .. } if name == "Read"))
        .unwrap();
    let result = tools
        .iter()
        .position(|e| matches!(e, Event::ToolResult { ok: true, .. }))
        .unwrap();
    let done = tools
        .iter()
        .position(|e| matches!(e, Event::Final(s) if s.text == "read it"))
        .unwrap();
    assert!(call < result && result < done, "{tools:?}");
}

/// Asks about every message that says "we use"; remembers what was said yes to.
#[derive(Default)]
struct Asking {
    asked: std::sync::Mutex<Vec<Question>>,
    kept: std::sync::Mutex<Vec<(i64, u64, bool)>>,
}

#[async_trait::async_trait]
impl Learning for Asking {
    async fn watch(
        &self,
        chat_id: i64,
        _author: Option<i64>,
        text: &str,
        _source: &str,
    ) -> Option<Question> {
        let mut asked = self.asked.lock().unwrap();
        let question = Question {
            id: asked.len() as u64 + 1,
            chat_id,
            text: text.strip_prefix("we use ")?.to_owned(),
            asked_of: None,
        };
        asked.push(question.clone());
        Some(question)
    }

    async fn answer(&self, chat_id: i64, id: u64, yes: bool) -> Answered {
        let owner = self
            .asked
            .lock()
            .unwrap()
            .get(id as usize - 1)
            .map(|q| q.chat_id);
        if owner != Some(chat_id) {
            return Answered::only("This question is not yours.");
        }
        self.kept.lock().unwrap().push((chat_id, id, yes));
        Answered::settled(
            if yes { "Remembered." } else { "Not stored." },
            format!("#{id} {yes}"),
        )
    }

    async fn list(&self, _: i64) -> String {
        String::new()
    }

    async fn forget(&self, _: i64, _: u64) -> String {
        String::new()
    }

    async fn remember(&self, chat_id: i64, text: &str, _: &str) -> String {
        format!("kept for {chat_id}: {text}")
    }

    /// Every question still open expires.
    async fn expire(&self, _now_ms: u64) -> Vec<Expired> {
        let kept = self.kept.lock().unwrap();
        let open = (self.asked.lock().unwrap().iter())
            .filter(|q| !kept.iter().any(|(_, id, _)| *id == q.id))
            .map(|q| Expired {
                question: q.clone(),
                line: format!("expired: {}", q.text),
            })
            .collect::<Vec<_>>();
        drop(kept);
        for gone in &open {
            self.kept
                .lock()
                .unwrap()
                .push((gone.question.chat_id, gone.question.id, false));
        }
        open
    }
}

#[tokio::test]
async fn chat_commands_are_ops_answered_with_a_reply() {
    let backend = ScriptedBackend::new(|_| Scripted::text("ok"));
    let learning = Arc::new(Asking::default());
    let service = service_learning(&backend, Settings::default(), Some(learning));
    collect(say(&service, 5, "hello")).await;
    let reply = |command: Command| {
        let service = service.clone();
        async move {
            let events = service.submit(Op::Command {
                chat_id: 5,
                command,
                source: "test".to_owned(),
                by: None,
            });
            match only(&collect(events).await).as_slice() {
                [Event::Reply(text)] => text.clone(),
                other => panic!("{other:?}"),
            }
        }
    };
    let status = reply(Command::Status).await;
    assert!(status.contains("Queue: 0 message(s)"), "{status}");
    assert!(
        status.contains("Context: "),
        "the last turn's figures: {status}"
    );
    assert_eq!(
        reply(Command::Remember("we deploy on Fridays".to_owned())).await,
        "kept for 5: we deploy on Fridays"
    );
    assert_eq!(
        reply(Command::Forget(None)).await,
        "Which one? Send /forget N with a number from /learnings."
    );
    // Without learning, the commands say so.
    let plain = service_learning(&backend, Settings::default(), None);
    let mut events = plain.submit(Op::Command {
        chat_id: 5,
        command: Command::Learnings { review: false },
        source: "test".to_owned(),
        by: None,
    });
    assert_eq!(
        events.next().await,
        Some(Event::Reply(
            "Learning is off ([learning] enabled = false).".to_owned()
        ))
    );
}

#[tokio::test(start_paused = true)]
async fn turns_no_user_waits_for_take_a_slot_of_the_same_limit() {
    let backend = ScriptedBackend::new(|request| match request.chat_id {
        1 => slow("a user's answer"),
        _ => Scripted::text("background"),
    });
    let service = service(
        &backend,
        Settings {
            max_concurrent: 1,
            max_pending: 20,
        },
    );
    let user = tokio::spawn(collect(say(&service, 1, "hi")));
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let started = Instant::now();
    let background = service
        .background()
        .start(TurnRequest::new(99, "summarise"))
        .finish()
        .await
        .unwrap();
    assert_eq!(background.text, "background");
    let user = user.await.unwrap();
    let (user_done, _) = user.last().unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900) && Instant::now() >= *user_done,
        "the background turn waited for the user's slot"
    );
}

#[tokio::test]
async fn unanswered_questions_expire_without_any_channel_and_are_told() {
    let backend = ScriptedBackend::new(|_| Scripted::text("noted"));
    let learning = Arc::new(Asking::default());
    let service = service_learning(&backend, Settings::default(), Some(learning.clone()));
    let mut notices = service.notices();
    let events = only(&collect(say(&service, 7, "we use tokio")).await);
    assert!(
        matches!(events.last(), Some(Event::Proposal(_))),
        "{events:?}"
    );
    assert_eq!(service.expire_questions().await, 1);
    match notices.try_recv() {
        Ok(Notice::QuestionExpired(gone)) => {
            assert_eq!(gone.question.chat_id, 7);
            assert_eq!(gone.line, "expired: tokio");
        }
        other => panic!("{other:?}"),
    }
    // A typed yes no longer answers it: it is a message like any other.
    let after = only(&collect(say(&service, 7, "yes")).await);
    assert!(
        after.iter().any(|e| matches!(e, Event::Final(_))),
        "{after:?}"
    );
}

#[tokio::test]
async fn a_question_follows_the_answer_and_is_settled_by_button_or_typed_yes() {
    let backend = ScriptedBackend::new(|_| Scripted::text("noted"));
    let learning = Arc::new(Asking::default());
    let service = service_learning(&backend, Settings::default(), Some(learning.clone()));

    // By button: the question comes after the answer; the press settles it.
    let events = only(&collect(say(&service, 7, "we use tokio")).await);
    let question = match events.as_slice() {
        [.., Event::Final(_), Event::Proposal(q)] => q.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(question.text, "tokio");
    let pressed = only(
        &collect(service.submit(Op::Answer {
            chat_id: 7,
            question: question.id,
            yes: true,
            operator: false,
        }))
        .await,
    );
    assert_eq!(
        pressed,
        [Event::Answered(Answered {
            reply: "Remembered.".to_owned(),
            outcome: Some("#1 true".to_owned()),
            question: Some(1),
        })]
    );
    // Another chat's press is refused.
    let foreign = only(
        &collect(service.submit(Op::Answer {
            chat_id: 8,
            question: question.id,
            yes: true,
            operator: false,
        }))
        .await,
    );
    assert_eq!(
        foreign,
        [Event::Answered(Answered::only(
            "This question is not yours."
        ))]
    );

    let mut notices = service.notices();
    // The operator's answer on the dashboard: its chat's channel hears of it by notice.
    collect(say(&service, 7, "we use axum")).await;
    let decided = only(
        &collect(service.submit(Op::Answer {
            chat_id: 7,
            question: 2,
            yes: false,
            operator: true,
        }))
        .await,
    );
    assert!(
        matches!(decided.as_slice(), [Event::Answered(a)] if a.question == Some(2)),
        "{decided:?}"
    );
    match notices.try_recv() {
        Ok(Notice::QuestionSettled(settled)) => {
            assert_eq!((settled.question.chat_id, settled.question.id), (7, 2));
            assert_eq!(settled.line, "#2 false");
        }
        other => panic!("{other:?}"),
    }
    assert!(notices.try_recv().is_err(), "one notice");

    // By a typed yes: answered, no turn runs.
    let turns = backend.requests().len();
    collect(say(&service, 7, "we use sled")).await;
    let typed = only(&collect(say(&service, 7, "Yes!")).await);
    assert!(
        matches!(typed.as_slice(), [Event::Answered(a)] if a.reply == "Remembered."),
        "{typed:?}"
    );
    assert_eq!(backend.requests().len(), turns + 1, "the yes ran no turn");
    assert_eq!(
        *learning.kept.lock().unwrap(),
        [(7, 1, true), (7, 2, false), (7, 3, true)],
        "the press, the operator's no, the typed yes"
    );

    // Another message lapses an open question; a "yes" then is an ordinary message.
    collect(say(&service, 7, "we use axum")).await;
    let next = only(&collect(say(&service, 7, "and the tests?")).await);
    assert!(
        matches!(&next[0], Event::Lapsed(q) if q.text == "axum"),
        "{next:?}"
    );
    let yes = only(&collect(say(&service, 7, "yes")).await);
    assert!(yes.iter().any(|e| matches!(e, Event::Final(_))), "{yes:?}");
    assert_eq!(
        learning.kept.lock().unwrap().len(),
        3,
        "nothing more was answered"
    );
}

#[tokio::test]
async fn a_refused_preparation_or_a_full_queue_is_said_and_loses_nothing_else() {
    let backend = ScriptedBackend::new(|_| Scripted::text("ok"));
    let settings = Settings {
        max_pending: 2,
        ..Settings::default()
    };
    let service = service(&backend, settings);
    let mut with_file = UserTurn::new(4, "see the file");
    with_file.prepare = Some(Box::pin(async { Err("That file is too big.".to_owned()) }));
    let refused = only(&collect(service.submit(Op::UserTurn(with_file))).await);
    assert_eq!(
        refused,
        [Event::Refused("That file is too big.".to_owned())]
    );
    assert!(backend.requests().is_empty());

    // Two pending fill the chat's queue; a third is refused at once.
    let first = say(&service, 4, "one");
    let second = say(&service, 4, "two");
    let third = only(&collect(say(&service, 4, "three")).await);
    assert!(matches!(&third[..], [Event::Refused(t)] if t.starts_with("Too many")));
    assert_eq!(service.pending(4), 2);
    for events in [first, second] {
        assert_eq!(final_text(&collect(events).await).as_deref(), Some("ok"));
    }
    let mut prepared = UserTurn::new(4, "ignored");
    prepared.prepare = Some(Box::pin(async { Ok("downloaded note".to_owned()) }));
    collect(service.submit(Op::UserTurn(prepared))).await;
    let last = backend.requests().last().unwrap().prompt.clone();
    assert!(last.ends_with("USER_REQUEST: downloaded note"), "{last}");
}

#[tokio::test]
async fn after_shutdown_turns_fail_as_cancelled() {
    let backend = ScriptedBackend::new(|_| Scripted::text("ok"));
    let service = service(&backend, Settings::default());
    service.shutdown().await;
    let events = only(&collect(say(&service, 1, "hi")).await);
    assert!(
        matches!(&events[..], [Event::Failed { error, .. }] if error.kind == TurnErrorKind::Cancelled),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_turn_nobody_could_answer_a_question_about_is_not_watched() {
    let backend = ScriptedBackend::new(|_| Scripted::text("noted"));
    let learning = Arc::new(Asking::default());
    let service = service_learning(&backend, Settings::default(), Some(learning.clone()));
    let mut once = UserTurn::new(9, "we use tokio");
    once.ask = false;
    let events = only(&collect(service.submit(Op::UserTurn(once))).await);
    assert!(matches!(events.last(), Some(Event::Final(_))), "{events:?}");
    assert!(
        learning.asked.lock().unwrap().is_empty(),
        "no question recorded"
    );
}

#[tokio::test(start_paused = true)]
async fn a_running_turns_tool_calls_show_on_its_chat_only_while_it_runs() {
    let backend = ScriptedBackend::new(|_| Scripted::Tools {
        calls: vec![
            ("Read".to_owned(), serde_json::json!({"file_path": "a.rs"})),
            ("Grep".to_owned(), serde_json::json!({"pattern": "fn"})),
        ],
        every: Duration::from_secs(1),
        text: "done".to_owned(),
    });
    let service = service(&backend, Settings::default());
    let mut events = say(&service, 5, "look");
    // Up to the first tool call: the session is up and one call is on the board.
    loop {
        match events.next().await {
            Some(Event::ToolCall { .. }) => break,
            Some(_) => {}
            None => panic!("the turn ended before any tool call"),
        }
    }
    let running = service
        .progress(5)
        .expect("a running turn shows its progress");
    assert!(running.session_id.is_some(), "{running:?}");
    assert_eq!(running.tools.len(), 1);
    assert_eq!(running.tools[0].name, "Read");
    assert!(service.progress(6).is_none(), "another chat shows nothing");
    let rest = only(&collect(events).await);
    assert!(
        rest.iter().any(|e| matches!(e, Event::Final(_))),
        "{rest:?}"
    );
    assert!(
        service.progress(5).is_none(),
        "an ended turn leaves the board"
    );
}
