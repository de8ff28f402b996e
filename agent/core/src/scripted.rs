//! A scripted backend for tests and benchmarks: answers each turn from a function of the
//! request, streaming the answer in pieces, and remembers every request it got.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::backend::{Backend, TurnEvent, TurnRequest, TurnStream, TurnSummary};
use crate::error::TurnError;

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
    tx: &tokio::sync::mpsc::Sender<TurnEvent>,
) -> bool {
    tokio::select! {
        () = cancel.cancelled() => {
            let error = TurnError::new(crate::error::TurnErrorKind::Cancelled, "stopped on request");
            let _ = tx.send(TurnEvent::Failed(error)).await;
            false
        }
        () = tokio::time::sleep(every) => true,
    }
}

impl Backend for ScriptedBackend {
    fn start(&self, request: TurnRequest) -> TurnStream {
        let reply = (self.script)(&request);
        let session_id = format!("scripted-{}", request.chat_id);
        let cancel = request.cancel.clone();
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
        let (tx, stream) = TurnStream::channel(64);
        tokio::spawn(async move {
            let _ = tx
                .send(TurnEvent::Started {
                    session_id: session_id.clone(),
                    model: "scripted".to_owned(),
                    failed_mcp_servers: Vec::new(),
                })
                .await;
            match reply {
                Scripted::Fail(error) => {
                    let _ = tx.send(TurnEvent::Failed(error)).await;
                }
                Scripted::Tools { calls, every, text } => {
                    for (i, (name, input)) in calls.into_iter().enumerate() {
                        let id = format!("tool-{i}");
                        let call = TurnEvent::ToolCall {
                            id: id.clone(),
                            name,
                            input,
                        };
                        let _ = tx.send(call).await;
                        if !pause(&cancel, every, &tx).await {
                            return;
                        }
                        let result = TurnEvent::ToolResult {
                            id,
                            ok: true,
                            content: String::new(),
                        };
                        let _ = tx.send(result).await;
                    }
                    let _ = tx.send(TurnEvent::MessageStart).await;
                    let _ = tx.send(TurnEvent::TextDelta(text.clone())).await;
                    let _ = tx.send(TurnEvent::Text(text.clone())).await;
                    let summary = TurnSummary::of_text(session_id, "scripted", text);
                    let _ = tx.send(TurnEvent::Finished(summary)).await;
                }
                Scripted::Text {
                    text,
                    pieces,
                    every,
                } => {
                    let _ = tx.send(TurnEvent::MessageStart).await;
                    let chars: Vec<char> = text.chars().collect();
                    let size = chars.len().div_ceil(pieces.max(1)).max(1);
                    for part in chars.chunks(size) {
                        if !pause(&cancel, every, &tx).await {
                            return;
                        }
                        let _ = tx.send(TurnEvent::TextDelta(part.iter().collect())).await;
                    }
                    let _ = tx.send(TurnEvent::Text(text.clone())).await;
                    let summary = TurnSummary::of_text(session_id, "scripted", text);
                    let _ = tx.send(TurnEvent::Finished(summary)).await;
                }
            }
        });
        stream
    }
}
