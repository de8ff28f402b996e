//! A scripted backend for tests and benchmarks: answers each turn from a function of the
//! request, streaming the answer in pieces, and remembers every request it got.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use valor_protocol::{Event, Events, TurnRequest, TurnSummary};

use crate::backend::Backend;
use valor_protocol::TurnError;

/// What the script answers.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// Text streamed in `pieces` deltas, `every` apart.
    Text {
        text: String,
        pieces: usize,
        every: Duration,
    },
    Fail(TurnError),
    /// The API busy `attempts` times (a retry each, `delay` apart), then `text`.
    Retrying {
        attempts: u32,
        delay: Duration,
        text: String,
    },
    /// Tool calls (name, input), `every` apart, then `text` in one piece.
    Tools {
        calls: Vec<(String, serde_json::Value)>,
        every: Duration,
        text: String,
    },
}

impl Scripted {
    pub fn text(text: impl Into<String>) -> Scripted {
        Scripted::Text {
            text: text.into(),
            pieces: 1,
            every: Duration::ZERO,
        }
    }
}

type Script = dyn Fn(&TurnRequest) -> Scripted + Send + Sync;

#[derive(Clone)]
pub struct ScriptedBackend {
    script: Arc<Script>,
    requests: Arc<Mutex<Vec<TurnRequest>>>,
}

impl ScriptedBackend {
    pub fn new(script: impl Fn(&TurnRequest) -> Scripted + Send + Sync + 'static) -> Self {
        ScriptedBackend {
            script: Arc::new(script),
            requests: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Answers every turn with "You said: <the user's request>".
    pub fn echo() -> Self {
        Self::new(|request| {
            Scripted::text(format!(
                "You said: {}",
                crate::inject::user_request(&request.prompt)
            ))
        })
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<TurnRequest> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Waits `every`; false (after sending the cancelled failure) when the turn is stopped first.
async fn pause(
    cancel: &tokio_util::sync::CancellationToken,
    every: Duration,
    tx: &tokio::sync::mpsc::Sender<Event>,
) -> bool {
    tokio::select! {
        () = cancel.cancelled() => {
            let error = TurnError::new(valor_protocol::TurnErrorKind::Cancelled, "stopped on request");
            let _ = tx.send(Event::failed(error)).await;
            false
        }
        () = tokio::time::sleep(every) => true,
    }
}

/// `text` in one piece, and the end of the turn.
async fn finish_with(tx: &tokio::sync::mpsc::Sender<Event>, session_id: String, text: String) {
    let _ = tx.send(Event::MessageStart).await;
    let _ = tx.send(Event::TextDelta(text.clone())).await;
    let _ = tx.send(Event::Text(text.clone())).await;
    let summary = TurnSummary::of_text(session_id, "scripted", text);
    let _ = tx.send(Event::Final(summary)).await;
}

impl Backend for ScriptedBackend {
    fn start(&self, request: TurnRequest) -> Events {
        let reply = (self.script)(&request);
        let session_id = format!("scripted-{}", request.chat_id);
        let cancel = request.cancel.clone();
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
        let (tx, stream) = Events::channel(64);
        tokio::spawn(async move {
            let _ = tx
                .send(Event::Started {
                    session_id: session_id.clone(),
                    model: "scripted".to_owned(),
                    failed_mcp_servers: Vec::new(),
                })
                .await;
            match reply {
                Scripted::Fail(error) => {
                    let _ = tx.send(Event::failed(error)).await;
                }
                Scripted::Retrying {
                    attempts,
                    delay,
                    text,
                } => {
                    for attempt in 1..=attempts {
                        let retry = Event::Retrying {
                            attempt,
                            max_retries: attempts.max(10),
                            delay_ms: delay.as_millis() as u64,
                            status: Some(529),
                        };
                        let _ = tx.send(retry).await;
                        if !pause(&cancel, delay, &tx).await {
                            return;
                        }
                    }
                    finish_with(&tx, session_id, text).await;
                }
                Scripted::Tools { calls, every, text } => {
                    for (i, (name, input)) in calls.into_iter().enumerate() {
                        let id = format!("tool-{i}");
                        let call = Event::ToolCall {
                            id: id.clone(),
                            name,
                            input,
                        };
                        let _ = tx.send(call).await;
                        if !pause(&cancel, every, &tx).await {
                            return;
                        }
                        let result = Event::ToolResult {
                            id,
                            ok: true,
                            content: String::new(),
                        };
                        let _ = tx.send(result).await;
                    }
                    finish_with(&tx, session_id, text).await;
                }
                Scripted::Text {
                    text,
                    pieces,
                    every,
                } => {
                    let _ = tx.send(Event::MessageStart).await;
                    let chars: Vec<char> = text.chars().collect();
                    let size = chars.len().div_ceil(pieces.max(1)).max(1);
                    for part in chars.chunks(size) {
                        if !pause(&cancel, every, &tx).await {
                            return;
                        }
                        let _ = tx.send(Event::TextDelta(part.iter().collect())).await;
                    }
                    let _ = tx.send(Event::Text(text.clone())).await;
                    let summary = TurnSummary::of_text(session_id, "scripted", text);
                    let _ = tx.send(Event::Final(summary)).await;
                }
            }
        });
        stream
    }
}
