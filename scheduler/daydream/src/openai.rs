//! The analysis through an OpenAI-compatible chat-completions endpoint (a local Ollama, vLLM,
//! OpenAI itself) instead of Claude Code: one non-streaming request per analysis.

use std::time::Duration;

use serde_json::{Value, json};
use valor_core::Backend;
use valor_protocol::{Event, Events, TurnError, TurnErrorKind, TurnRequest, TurnSummary};

#[derive(Debug, Clone)]
pub struct OpenAiBackend {
    /// Up to `/v1`, e.g. `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    pub model: String,
    /// Sent as a bearer token when set (Ollama needs none).
    pub key: Option<String>,
    pub client: reqwest::Client,
}

impl OpenAiBackend {
    pub fn new(base_url: &str, model: &str, key: Option<String>) -> Result<Self, reqwest::Error> {
        Ok(OpenAiBackend {
            base_url: base_url.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            key,
            // The daydream's own limit applies; this one only stops a dead connection.
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    async fn complete(&self, prompt: &str) -> Result<String, TurnError> {
        let mut request = self
            .client
            .post(format!("{}/chat/completions", self.base_url))
            .json(&json!({
                "model": self.model,
                "messages": [{"role": "user", "content": prompt}],
                "stream": false,
            }));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| TurnError::new(TurnErrorKind::Api, format!("{}: {e}", self.base_url)))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no error message");
            let kind = match status.as_u16() {
                401 | 403 => TurnErrorKind::Auth,
                429 => TurnErrorKind::RateLimited,
                400..=499 => TurnErrorKind::BadRequest,
                _ => TurnErrorKind::Api,
            };
            return Err(TurnError::new(kind, format!("{status}: {message}")));
        }
        body.pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| TurnError::new(TurnErrorKind::Api, "no choices[0].message.content"))
    }
}

impl Backend for OpenAiBackend {
    fn start(&self, request: TurnRequest) -> Events {
        let (tx, stream) = Events::channel(8);
        let this = self.clone();
        tokio::spawn(async move {
            let model = request.model.clone().unwrap_or_else(|| this.model.clone());
            let this = OpenAiBackend { model, ..this };
            let event = tokio::select! {
                () = request.cancel.cancelled() => {
                    Event::failed(TurnError::new(TurnErrorKind::Cancelled, "stopped on request"))
                }
                answer = this.complete(&request.prompt) => match answer {
                    Ok(text) => Event::Final(TurnSummary::of_text("openai", this.model.clone(), text)),
                    Err(error) => Event::failed(error),
                },
            };
            let _ = tx.send(event).await;
        });
        stream
    }
}
