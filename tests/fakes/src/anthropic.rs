//! A fake Anthropic Messages API. Claude Code's first try is always streaming (SSE); when a
//! stream is malformed, cut off or stalls it retries the same body without `stream`, so both
//! forms are served. The reply is chosen by a per-test script from the *last* message of the
//! request (prompts carry the date and cwd, so exact bytes are never matched).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{head, post};
use serde_json::{Value, json};

/// What the fake answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// An assistant text reply, streamed in these chunks (one delta each).
    Text(Vec<String>),
    /// A tool call; `name` is the full tool name as Claude Code sends it (`mcp__srv__tool`).
    ToolUse { name: String, input: Value },
    /// An HTTP error with Anthropic's error body, e.g. 529 `overloaded_error`.
    Error {
        status: u16,
        kind: String,
        message: String,
    },
    /// A stream whose events are not valid JSON.
    MalformedSse,
    /// Starts the stream, then sends nothing more (held open for the given time).
    Stall(Duration),
    /// Streams these text chunks, then holds the stream open without ending the message (a
    /// turn cut off while it writes).
    Partial(Vec<String>, Duration),
    /// The reply, reporting these tokens (`input_tokens`, `output_tokens`,
    /// `cache_read_input_tokens`, `cache_creation_input_tokens`) instead of the few it counts.
    WithUsage(Box<Reply>, Value),
    /// A subscription's usage limit: 429 with the `anthropic-ratelimit-unified-*` headers,
    /// rejected until `resets_at_s` (Unix seconds).
    UsageLimit { resets_at_s: u64 },
}

impl Reply {
    pub fn text(text: &str) -> Reply {
        Reply::Text(vec![text.to_owned()])
    }

    pub fn chunks(chunks: &[&str]) -> Reply {
        Reply::Text(chunks.iter().map(|c| (*c).to_owned()).collect())
    }

    pub fn tool(name: &str, input: Value) -> Reply {
        Reply::ToolUse {
            name: name.to_owned(),
            input,
        }
    }

    pub fn overloaded() -> Reply {
        Reply::Error {
            status: 529,
            kind: "overloaded_error".to_owned(),
            message: "Overloaded".to_owned(),
        }
    }

    /// `reply` costing these tokens.
    pub fn costing(
        reply: Reply,
        input: u64,
        output: u64,
        cache_read: u64,
        cache_write: u64,
    ) -> Reply {
        Reply::WithUsage(
            Box::new(reply),
            json!({"input_tokens": input, "output_tokens": output,
                   "cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_write}),
        )
    }

    pub fn error(status: u16, kind: &str, message: &str) -> Reply {
        Reply::Error {
            status,
            kind: kind.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// The parts of a request a script decides on.
#[derive(Debug, Clone)]
pub struct Turn {
    /// The whole request body.
    pub body: Value,
    pub stream: bool,
    pub model: String,
    /// Text of the last user-role message (text blocks joined), if it has any.
    pub last_user_text: Option<String>,
    /// `(tool_use_id, content, is_error)` when the last message is a tool result.
    pub last_tool_result: Option<(String, String, bool)>,
    /// Tool names offered in `tools`.
    pub tools: Vec<String>,
    /// Number of messages in the request.
    pub message_count: usize,
    /// 0-based index of this request among all the fake has received.
    pub index: usize,
    /// The credentials it came with (`x-api-key`, `authorization`, `anthropic-beta`).
    pub credentials: Credentials,
}

/// What a request carried to authenticate itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub api_key: Option<String>,
    pub authorization: Option<String>,
    pub beta: Option<String>,
}

impl Turn {
    fn from_body(body: Value, index: usize) -> Turn {
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        // Claude Code 2.1 may append a `system`-role message after the user's: skip it.
        let last = messages
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .cloned()
            .unwrap_or(Value::Null);
        let mut last_user_text = None;
        let mut last_tool_result = None;
        {
            match &last["content"] {
                Value::String(s) => last_user_text = Some(s.clone()),
                Value::Array(blocks) => {
                    let texts: Vec<&str> = blocks
                        .iter()
                        .filter(|b| b["type"] == "text")
                        .filter_map(|b| b["text"].as_str())
                        .collect();
                    if !texts.is_empty() {
                        last_user_text = Some(texts.join("\n"));
                    }
                    if let Some(result) = blocks.iter().find(|b| b["type"] == "tool_result") {
                        last_tool_result = Some((
                            result["tool_use_id"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                            content_text(&result["content"]),
                            result["is_error"].as_bool().unwrap_or(false),
                        ));
                    }
                }
                _ => {}
            }
        }
        Turn {
            stream: body["stream"].as_bool().unwrap_or(false),
            model: body["model"].as_str().unwrap_or_default().to_owned(),
            tools: body["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect(),
            message_count: messages.len(),
            last_user_text,
            last_tool_result,
            body,
            index,
            credentials: Credentials::default(),
        }
    }

    /// Whether the last user text contains `needle` (prompts are wrapped in context blocks).
    pub fn asks(&self, needle: &str) -> bool {
        self.last_user_text
            .as_deref()
            .is_some_and(|t| t.contains(needle))
    }
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

type Script = dyn Fn(&Turn) -> Reply + Send + Sync;

#[derive(Clone)]
struct Shared {
    script: Arc<Script>,
    requests: Arc<Mutex<Vec<Turn>>>,
    ids: Arc<AtomicU64>,
}

/// A running fake; stops when dropped.
pub struct FakeAnthropic {
    pub url: String,
    requests: Arc<Mutex<Vec<Turn>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeAnthropic {
    /// Starts a fake on 127.0.0.1 that answers with `script`.
    pub async fn start(script: impl Fn(&Turn) -> Reply + Send + Sync + 'static) -> FakeAnthropic {
        let shared = Shared {
            script: Arc::new(script),
            requests: Arc::new(Mutex::new(Vec::new())),
            ids: Arc::new(AtomicU64::new(1)),
        };
        let requests = Arc::clone(&shared.requests);
        let app = Router::new()
            .route(
                "/",
                head(|| async { StatusCode::OK }).get(|| async { StatusCode::OK }),
            )
            .route("/v1/messages", post(messages))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAnthropic {
            url,
            requests,
            server,
        }
    }

    /// Every /v1/messages request so far.
    pub fn requests(&self) -> Vec<Turn> {
        self.requests.lock().unwrap().clone()
    }
}

async fn messages(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let credentials = Credentials {
        api_key: header("x-api-key"),
        authorization: header("authorization"),
        beta: header("anthropic-beta"),
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error_response(
            400,
            "invalid_request_error",
            "request body is not valid JSON",
        );
    };
    let turn = {
        let mut requests = shared.requests.lock().unwrap();
        let mut turn = Turn::from_body(body, requests.len());
        turn.credentials = credentials;
        requests.push(turn.clone());
        turn
    };
    let reply = (shared.script)(&turn);
    let id = format!("msg_fake{:06}", shared.ids.fetch_add(1, Ordering::Relaxed));
    let (reply, tokens) = match reply {
        Reply::WithUsage(reply, tokens) => (*reply, Some(tokens)),
        reply => (reply, None),
    };
    match reply {
        Reply::UsageLimit { resets_at_s } => usage_limit_response(resets_at_s),
        Reply::Error {
            status,
            kind,
            message,
        } => error_response(status, &kind, &message),
        reply if turn.stream => sse_response(&turn, &id, reply, tokens.as_ref()),
        Reply::MalformedSse => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"type\": \"message\", \"content\": [",
        )
            .into_response(),
        Reply::Stall(hold) => {
            tokio::time::sleep(hold).await;
            error_response(504, "api_error", "stalled")
        }
        reply => (
            StatusCode::OK,
            axum::Json(whole_message(&turn, &id, &reply, tokens.as_ref())),
        )
            .into_response(),
    }
}

fn error_response(status: u16, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert("retry-after", header::HeaderValue::from_static("1"));
    }
    response
}

/// A subscription's usage limit as the API answers it.
fn usage_limit_response(resets_at_s: u64) -> Response {
    let mut response = error_response(
        429,
        "rate_limit_error",
        "This request would exceed your account's rate limit. Please try again later.",
    );
    let reset = resets_at_s.to_string();
    let headers = response.headers_mut();
    for (name, value) in [
        ("anthropic-ratelimit-unified-status", "rejected"),
        ("anthropic-ratelimit-unified-reset", reset.as_str()),
        ("anthropic-ratelimit-unified-5h-status", "rejected"),
        ("anthropic-ratelimit-unified-5h-reset", reset.as_str()),
        (
            "anthropic-ratelimit-unified-representative-claim",
            "five_hour",
        ),
    ] {
        if let Ok(value) = header::HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    response
}

/// The usage a message reports: `tokens` when the script set them (with `output_tokens`
/// replaced by `output_tokens` for the stream's start), else a few by the request's size.
fn usage_of(turn: &Turn, output_tokens: u64, tokens: Option<&Value>) -> Value {
    match tokens {
        Some(tokens) => {
            let mut tokens = tokens.clone();
            tokens["output_tokens"] = json!(output_tokens);
            tokens
        }
        None => usage(turn, output_tokens),
    }
}

fn usage(turn: &Turn, output_tokens: u64) -> Value {
    json!({
        "input_tokens": 10 + turn.message_count as u64 * 5,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    })
}

fn tool_id(id: &str) -> String {
    format!("toolu_{}", id.trim_start_matches("msg_"))
}

fn whole_message(turn: &Turn, id: &str, reply: &Reply, tokens: Option<&Value>) -> Value {
    let (content, stop_reason, out) = match reply {
        Reply::Text(chunks) => {
            let text = chunks.concat();
            let out = text.split_whitespace().count() as u64 + 1;
            (json!([{"type": "text", "text": text}]), "end_turn", out)
        }
        Reply::ToolUse { name, input } => (
            json!([{"type": "tool_use", "id": tool_id(id), "name": name, "input": input}]),
            "tool_use",
            12,
        ),
        _ => (json!([]), "end_turn", 1),
    };
    json!({
        "id": id, "type": "message", "role": "assistant", "model": turn.model,
        "content": content, "stop_reason": stop_reason, "stop_sequence": null,
        "usage": usage_of(turn, tokens.map_or(out, |t| t["output_tokens"].as_u64().unwrap_or(out)), tokens),
    })
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn sse_response(turn: &Turn, id: &str, reply: Reply, tokens: Option<&Value>) -> Response {
    let start = event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": turn.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage_of(turn, 1, tokens),
        }}),
    );
    let output =
        |counted: u64| tokens.map_or(counted, |t| t["output_tokens"].as_u64().unwrap_or(counted));
    let mut events: Vec<Bytes> = vec![start];
    let mut stall = None;
    match &reply {
        Reply::Text(chunks) => {
            events.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            events.push(event("ping", &json!({"type": "ping"})));
            for chunk in chunks {
                events.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": chunk}}),
                ));
            }
            events.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            let out = chunks.concat().split_whitespace().count() as u64 + 1;
            events.extend(finish("end_turn", output(out)));
        }
        Reply::ToolUse { name, input } => {
            events.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {
                    "type": "tool_use", "id": tool_id(id), "name": name, "input": {}}}),
            ));
            let partial = input.to_string();
            let (a, b) = partial.split_at(partial.len() / 2);
            for part in [a, b] {
                events.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": part}}),
                ));
            }
            events.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            events.extend(finish("tool_use", output(12)));
        }
        Reply::MalformedSse => {
            events.push(Bytes::from_static(
                b"event: content_block_start\ndata: {\"type\": \"content_block_start\", \"index\": 0, \n\n",
            ));
            events.push(Bytes::from_static(
                b"event: message_stop\ndata: not json at all\n\n",
            ));
        }
        Reply::Stall(hold) => stall = Some(*hold),
        Reply::Partial(chunks, hold) => {
            events.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            for chunk in chunks {
                events.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": chunk}}),
                ));
            }
            stall = Some(*hold);
        }
        Reply::Error { .. } | Reply::WithUsage(..) | Reply::UsageLimit { .. } => {}
    }
    let stream = futures_util::stream::unfold(
        (events.into_iter(), stall),
        |(mut events, stall)| async move {
            match events.next() {
                Some(bytes) => Some((Ok::<Bytes, std::io::Error>(bytes), (events, stall))),
                None => {
                    if let Some(hold) = stall {
                        tokio::time::sleep(hold).await;
                    }
                    None
                }
            }
        },
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn finish(stop_reason: &str, output_tokens: u64) -> [Bytes; 2] {
    [
        event(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                    "usage": {"output_tokens": output_tokens}}),
        ),
        event("message_stop", &json!({"type": "message_stop"})),
    ]
}
