//! Sessions and observations through the engine with a scripted backend.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::engine::{ConversationStore, Engine, EngineConfig, Incoming};
use crate::observe::{CodeMap, Observation, ObservationType};
use crate::recall::{Recall, Recollection};
use crate::routing::ModelRouter;
use crate::scripted::{Scripted, ScriptedBackend};
use crate::session::SessionSummary;
use crate::store::InMemoryStore;

/// Keeps what the engine hands it, and gives back the latest summary.
#[derive(Default)]
struct Kept {
    observations: Mutex<Vec<(i64, Observation)>>,
    summaries: Mutex<Vec<(i64, SessionSummary)>>,
}

#[async_trait::async_trait]
impl Recall for Kept {
    async fn recall(&self, _chat_id: i64, _text: &str, _exclude: &[u64]) -> Vec<Recollection> {
        Vec::new()
    }
    async fn keep_observations(&self, chat_id: i64, observations: &[Observation]) {
        let mut kept = self.observations.lock().unwrap();
        kept.extend(observations.iter().map(|o| (chat_id, o.clone())));
    }
    async fn keep_summary(&self, chat_id: i64, summary: &SessionSummary) {
        self.summaries
            .lock()
            .unwrap()
            .push((chat_id, summary.clone()));
    }
    async fn last_summary(&self, chat_id: i64) -> Option<String> {
        let kept = self.summaries.lock().unwrap();
        kept.iter()
            .rev()
            .find(|(c, _)| *c == chat_id)
            .map(|(_, s)| s.text.clone())
    }
}

struct Workspace;

impl CodeMap for Workspace {
    fn workspace(&self, chat_id: i64) -> Option<std::path::PathBuf> {
        Some(format!("/w/chat_{chat_id}").into())
    }
    fn functions_touched(&self, _chat_id: i64, path: &str, _snippets: &[&str]) -> Vec<String> {
        vec![format!("handle_{}", path.len())]
    }
    fn layer(&self, _chat_id: i64, request: &str, _tokens: usize) -> Option<String> {
        request.contains("upload").then(|| {
            "src/upload.rs:\n  fn send_chunk(part: &[u8]) -> Result<()>  CHANGED".to_owned()
        })
    }
}

struct Setup {
    backend: ScriptedBackend,
    kept: Arc<Kept>,
    clock: Arc<AtomicU64>,
    engine: Engine,
}

fn setup(idle_ms: u64) -> Setup {
    setup_with(EngineConfig {
        session_idle_ms: idle_ms,
        ..EngineConfig::default()
    })
}

fn setup_with(config: EngineConfig) -> Setup {
    let backend = ScriptedBackend::new(|request| {
        if request.chat_id == crate::engine::SUMMARY_CHAT_ID {
            return if request.prompt.contains("the word is plum") {
                Scripted::text(
                    "Asked: remember a word.\nDone: noted plum.\nLearned: - none\nLeft open: - none",
                )
            } else {
                Scripted::Fail(valor_protocol::TurnError::new(
                    valor_protocol::TurnErrorKind::Overloaded,
                    "busy",
                ))
            };
        }
        let asked = crate::inject::user_request(&request.prompt);
        if asked.contains("fix the upload") {
            Scripted::Tools {
                calls: vec![
                    (
                        "Read".into(),
                        json!({"file_path": "/w/chat_1/src/upload.rs"}),
                    ),
                    (
                        "Edit".into(),
                        json!({"file_path": "/w/chat_1/src/upload.rs", "new_string": "timeout(120)"}),
                    ),
                    ("Bash".into(), json!({"command": "cargo test"})),
                ],
                every: std::time::Duration::ZERO,
                text: "Fixed: the upload timeout is 120 s now.".into(),
            }
        } else {
            Scripted::text("ok")
        }
    });
    let kept = Arc::new(Kept::default());
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let now = Arc::clone(&clock);
    let store = Arc::new(InMemoryStore::default());
    let engine = Engine::builder(
        Arc::new(backend.clone()),
        store as Arc<dyn ConversationStore>,
        ModelRouter::new(valor_config::RoutingConfig::default()),
    )
    .config(config)
    .recall(kept.clone())
    .code_map(Arc::new(Workspace))
    .clock(Arc::new(move || now.load(Ordering::SeqCst)))
    .build();
    Setup {
        backend,
        kept,
        clock,
        engine,
    }
}

impl Setup {
    async fn say(&self, chat_id: i64, text: &str, fresh: bool) {
        let mut incoming = Incoming::new(chat_id, text);
        incoming.fresh_session = fresh;
        let stream = self.engine.turn(incoming).await.unwrap();
        stream.finish().await.unwrap();
    }

    /// The prompt of the last user turn (summary calls run beside them).
    fn last_prompt(&self) -> String {
        let requests = self.backend.requests();
        let mut turns = requests
            .iter()
            .filter(|r| r.chat_id != crate::engine::SUMMARY_CHAT_ID);
        turns.next_back().unwrap().prompt.clone()
    }

    /// Waits for the observations kept off the async threads (a blocking task).
    async fn observations(&self, count: usize) -> Vec<(i64, Observation)> {
        for _ in 0..500 {
            let kept = self.kept.observations.lock().unwrap().clone();
            if kept.len() >= count {
                return kept;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{count} observations never came");
    }
}

#[tokio::test]
async fn a_turn_that_edits_and_runs_a_command_leaves_a_typed_observation() {
    let s = setup(0);
    s.say(1, "please fix the upload timeout", false).await;
    let kept = s.observations(1).await;
    let (chat, o) = &kept[0];
    assert_eq!(*chat, 1);
    assert_eq!(o.kind, ObservationType::Bugfix);
    assert_eq!(o.files_changed, ["src/upload.rs"]);
    assert_eq!(o.functions, ["handle_13 (src/upload.rs)"]);
    assert_eq!(o.commands, ["cargo test"]);
    assert!(
        o.summary
            .contains("Done: Fixed: the upload timeout is 120 s now."),
        "{}",
        o.summary
    );
    // A plain chat turn leaves none.
    s.say(1, "thanks", false).await;
    tokio::task::yield_now().await;
    assert_eq!(s.kept.observations.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn new_ends_the_session_and_its_summary_leads_the_next_prompts() {
    let s = setup(0);
    s.say(1, "please fix the upload timeout", false).await;
    s.observations(1).await;
    s.say(1, "and note that the next step is a load test.", false)
        .await;
    assert!(!s.last_prompt().contains("LAST_SESSION"));
    s.say(1, "hello again", true).await;
    let summaries = s.kept.summaries.lock().unwrap().clone();
    assert_eq!(summaries.len(), 1);
    let text = &summaries[0].1.text;
    assert!(text.contains("ended by /new"), "{text}");
    assert!(text.contains("- please fix the upload timeout"), "{text}");
    assert!(
        text.contains("Done:\n- [bugfix] please fix the upload timeout — changed src/upload.rs"),
        "{text}"
    );
    assert!(
        text.contains("Left open:\n- and note that the next step is a load test."),
        "{text}"
    );
    let prompt = s.last_prompt();
    assert!(prompt.contains("LAST_SESSION (summary of this chat's previous session):\nSession summary (ended by /new"), "{prompt}");
    assert!(s.backend.requests().last().unwrap().fresh_session);
    // It stays at the top of the new session's turns, and /status's figures count it.
    s.say(1, "and now?", false).await;
    assert!(s.last_prompt().contains("LAST_SESSION"));
    let figures = s.engine.figures(1).unwrap();
    assert!(figures.memory.summary > 10, "{figures:?}");
    // Another chat sees none of it.
    s.say(2, "hi", false).await;
    assert!(!s.last_prompt().contains("LAST_SESSION"));
}

#[tokio::test]
async fn a_long_pause_ends_the_session_and_a_short_one_does_not() {
    let s = setup(60_000);
    s.say(1, "what does the upload code do?", false).await;
    let prompt = s.last_prompt();
    assert!(prompt.contains("CODE_MAP (files and functions of this chat's workspace for the request; read the code before changing it):\nsrc/upload.rs:\n  fn send_chunk"), "{prompt}");
    s.clock.fetch_add(30_000, Ordering::SeqCst);
    s.say(1, "and the retries?", false).await;
    assert!(s.kept.summaries.lock().unwrap().is_empty());
    assert!(!s.backend.requests().last().unwrap().fresh_session);
    s.clock.fetch_add(61_000, Ordering::SeqCst);
    s.say(1, "good morning", false).await;
    let summaries = s.kept.summaries.lock().unwrap().clone();
    assert_eq!(summaries.len(), 1);
    assert!(summaries[0].1.text.contains("ended after a long pause"));
    assert!(summaries[0].1.text.contains("- and the retries?"));
    let request = s.backend.requests().last().unwrap().clone();
    assert!(request.fresh_session, "a new session after the pause");
    assert!(request.prompt.contains("LAST_SESSION"));
    assert!(
        !request.prompt.contains("CODE_MAP"),
        "not about code: {}",
        request.prompt
    );
}

#[tokio::test]
async fn shutdown_summarises_each_open_session_once() {
    let s = setup(0);
    s.say(1, "remember the deploy is on friday", false).await;
    s.say(2, "what is the weather", false).await;
    s.engine.end_sessions().await;
    let summaries = s.kept.summaries.lock().unwrap().clone();
    let mut chats: Vec<i64> = summaries.iter().map(|(c, _)| *c).collect();
    chats.sort_unstable();
    assert_eq!(chats, [1, 2]);
    assert!(
        summaries
            .iter()
            .all(|(_, s)| s.text.contains("ended when Valor stopped"))
    );
    s.engine.end_sessions().await;
    assert_eq!(
        s.kept.summaries.lock().unwrap().len(),
        2,
        "nothing new to summarise"
    );
}

#[tokio::test]
async fn a_model_written_summary_replaces_the_extractive_one_once_it_lands() {
    let s = setup_with(EngineConfig {
        summary_model: Some("haiku".to_owned()),
        ..EngineConfig::default()
    });
    s.say(1, "the word is plum", false).await;
    s.say(1, "start over", true).await;
    // The first turn of the new session has the extractive summary: it never waits.
    assert!(
        s.last_prompt().contains("Session summary (ended by /new"),
        "{}",
        s.last_prompt()
    );
    for _ in 0..500 {
        if s.kept.summaries.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let summaries = s.kept.summaries.lock().unwrap().clone();
    assert_eq!(summaries.len(), 2, "{summaries:?}");
    assert!(
        summaries[1]
            .1
            .text
            .starts_with("Session summary (written by the model)\nAsked: remember a word.")
    );
    let call = s
        .backend
        .requests()
        .into_iter()
        .find(|r| r.chat_id == crate::engine::SUMMARY_CHAT_ID)
        .unwrap();
    assert_eq!(call.model.as_deref(), Some("haiku"));
    assert!(call.fresh_session && call.read_only && call.mcp_config.is_none());
    assert!(
        call.prompt.contains("user: the word is plum"),
        "{}",
        call.prompt
    );
    s.say(1, "and now?", false).await;
    assert!(
        s.last_prompt().contains("written by the model"),
        "{}",
        s.last_prompt()
    );

    // A failed call leaves the extractive summary.
    s.say(2, "something else", false).await;
    s.say(2, "again", true).await;
    tokio::task::yield_now().await;
    s.say(2, "next", false).await;
    assert!(
        s.last_prompt().contains("Session summary (ended by /new"),
        "{}",
        s.last_prompt()
    );
}
