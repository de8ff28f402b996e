//! A fake Telegram Bot API that enforces Telegram's limits with its exact error texts (teloxide
//! matches on them): flood limits (30 messages a second for the whole bot, about 1 a second per
//! chat, 20 a minute per group; edits and deletes count like sends) answered with 429 and
//! `retry_after`; 4096 characters after
//! entity parsing; HTML parse errors; "message is not modified"; callback data of at most 64
//! bytes; callbacks that were never answered. Time is tokio's, so paused-time tests see exact
//! pacing. Only `parse_mode` HTML (what Valor sends) and plain text are understood.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

pub const BOT_ID: i64 = 777_000;
pub const BOT_USERNAME: &str = "valor_test_bot";

/// The smallest valid PNG (1x1, grey): a photo the fake accepts.
pub const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x3a, 0x7e, 0x9b,
    0x55, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00,
    0x02, 0x00, 0x01, 0x48, 0xaf, 0xa4, 0x71, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

const NOT_MODIFIED: &str = "Bad Request: message is not modified: specified new message content \
    and reply markup are exactly the same as a current content and reply markup of the message";

/// A message the bot sent, as the chat shows it now.
#[derive(Debug, Clone)]
pub struct BotMessage {
    pub message_id: i64,
    /// The text as sent (HTML when `html`).
    pub text: String,
    pub html: bool,
    /// What a reader sees.
    pub visible: String,
    pub edits: usize,
    pub sent_at: Instant,
    pub updated_at: Instant,
    pub reply_markup: Option<Value>,
    /// The uploaded picture of a `sendPhoto` (its caption is `text`).
    pub photo: Option<Vec<u8>>,
    /// The uploaded file of a `sendDocument` (its caption is `text`).
    pub document: Option<Vec<u8>>,
}

/// One API call and how it ended.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub method: String,
    pub chat_id: Option<i64>,
    /// `None` when it succeeded, else (error code, description).
    pub error: Option<(u16, String)>,
}

#[derive(Default)]
struct Chat {
    messages: Vec<BotMessage>,
    /// When messages (sends and edits) went out, for the flood limits.
    sent: Vec<Instant>,
    /// A running flood wait.
    blocked_until: Option<Instant>,
}

#[derive(Default)]
struct StateInner {
    updates: Vec<Value>,
    next_update_id: i64,
    confirmed_offset: i64,
    next_message_id: i64,
    chats: BTreeMap<i64, Chat>,
    calls: Vec<Call>,
    callbacks: HashMap<String, bool>,
    /// The text each answered callback showed the user.
    callback_texts: HashMap<String, String>,
    actions: Vec<(i64, String, Instant)>,
    /// file_id -> (declared size, bytes)
    files: HashMap<String, (u64, Vec<u8>)>,
    /// Messages deleted (`deleteMessage`).
    deleted: usize,
    /// Chats whose messages are refused: formatted ones, and every one when true.
    refusing: HashMap<i64, bool>,
    /// Every text, caption, callback answer and uploaded document the bot sent, as sent
    /// (drafts and edits included): what a reader could ever have seen.
    sent_texts: Vec<String>,
    /// The command menu (`setMyCommands`): (command, description).
    commands: Vec<(String, String)>,
    /// How long a file download takes (a slow network).
    download_delay: Duration,
    /// Answer sendMessageDraft as a server without it would.
    no_drafts: bool,
    /// Every call fails as behind a broken proxy (502).
    outage: bool,
    /// (url, secret_token, max_connections) of the last setWebhook.
    webhook: Option<(String, String, u64)>,
    /// When the bot's messages of the last second went out (sends, edits, deletes, photos).
    bot_sent: std::collections::VecDeque<Instant>,
    /// The newest getUpdates: an older one still waiting is ended with 409, as Telegram ends
    /// a poll when another poller of the same bot starts.
    poll_generation: u64,
    /// Polls ended so (two pollers at once).
    poll_conflicts: usize,
}

/// Telegram's limit for a whole bot: messages in any one second.
pub const BOT_MESSAGES_PER_SECOND: usize = 30;

#[derive(Clone)]
struct Shared {
    token: String,
    state: Arc<Mutex<StateInner>>,
    arrived: Arc<Notify>,
}

/// A running fake; stops when dropped.
pub struct FakeTelegram {
    /// Base URL for `Bot::set_api_url`.
    pub url: String,
    pub token: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn user(id: i64, name: &str) -> Value {
    json!({"id": id, "is_bot": false, "first_name": name, "username": name})
}

fn chat(id: i64) -> Value {
    if id < 0 {
        json!({"id": id, "type": "supergroup", "title": format!("group {id}")})
    } else {
        json!({"id": id, "type": "private", "first_name": format!("user{id}")})
    }
}

impl FakeTelegram {
    pub async fn start() -> FakeTelegram {
        let shared = Shared {
            token: "123456:TEST-token".to_owned(),
            state: Arc::new(Mutex::new(StateInner {
                next_update_id: 1,
                next_message_id: 1,
                ..StateInner::default()
            })),
            arrived: Arc::new(Notify::new()),
        };
        let app = Router::new()
            .route("/{bot}/{method}", post(api))
            .route("/file/{bot}/{*path}", axum::routing::get(download))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTelegram {
            url,
            token: shared.token.clone(),
            shared,
            server,
        }
    }

    fn push_update(&self, update: impl FnOnce(i64) -> Value) -> i64 {
        let id = {
            let mut state = self.shared.state.lock().unwrap();
            let id = state.next_update_id;
            state.next_update_id += 1;
            let value = update(id);
            state.updates.push(value);
            id
        };
        self.shared.arrived.notify_waiters();
        id
    }

    /// Refuses `chat`'s formatted messages (400, can't parse entities), and with `plain_too`
    /// every message: only a document gets through.
    pub fn refuse_messages(&self, chat: i64, plain_too: bool) {
        self.shared
            .state
            .lock()
            .unwrap()
            .refusing
            .insert(chat, plain_too);
    }

    /// Every text the bot sent (messages, edits, drafts, captions, callback answers,
    /// documents), oldest first.
    pub fn sent_texts(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().sent_texts.clone()
    }

    /// A user writes `text` in chat `chat_id`; returns the update id.
    pub fn user_says(&self, chat_id: i64, user_id: i64, text: &str) -> i64 {
        let message_id = self.take_message_id();
        self.push_update(|id| {
            json!({"update_id": id, "message": {
                "message_id": message_id, "date": 1_800_000_000, "chat": chat(chat_id),
                "from": user(user_id, &format!("user{user_id}")), "text": text,
            }})
        })
    }

    /// A user sends a photo (`document` false) or a file; `declared_size` is what Telegram
    /// reports (a big file need not be materialised in tests).
    pub fn user_sends_file(
        &self,
        chat_id: i64,
        user_id: i64,
        bytes: Vec<u8>,
        declared_size: u64,
        caption: &str,
        document: bool,
    ) -> i64 {
        let message_id = self.take_message_id();
        let file_id = format!("file{message_id}");
        self.shared
            .state
            .lock()
            .unwrap()
            .files
            .insert(file_id.clone(), (declared_size, bytes));
        self.push_update(|id| {
            let mut message = json!({
                "message_id": message_id, "date": 1_800_000_000, "chat": chat(chat_id),
                "from": user(user_id, &format!("user{user_id}")), "caption": caption,
            });
            if document {
                message["document"] = json!({"file_id": file_id, "file_unique_id": format!("u{file_id}"),
                    "file_name": "report.pdf", "mime_type": "application/pdf", "file_size": declared_size});
            } else {
                message["photo"] = json!([
                    {"file_id": format!("{file_id}-small"), "file_unique_id": "s", "width": 90, "height": 90, "file_size": 100},
                    {"file_id": file_id, "file_unique_id": format!("u{file_id}"), "width": 1280, "height": 960, "file_size": declared_size},
                ]);
            }
            json!({"update_id": id, "message": message})
        })
    }

    /// A user presses an inline button with `data` under the bot's message `message_id`.
    pub fn user_presses(&self, chat_id: i64, user_id: i64, message_id: i64, data: &str) -> String {
        let query_id = format!("cb{}", self.shared.state.lock().unwrap().next_update_id);
        self.shared
            .state
            .lock()
            .unwrap()
            .callbacks
            .insert(query_id.clone(), false);
        let qid = query_id.clone();
        self.push_update(|id| {
            json!({"update_id": id, "callback_query": {
                "id": qid, "from": user(user_id, &format!("user{user_id}")),
                "chat_instance": format!("ci{chat_id}"), "data": data,
                "message": {"message_id": message_id, "date": 1_800_000_000, "chat": chat(chat_id),
                            "from": {"id": BOT_ID, "is_bot": true, "first_name": "Valor"}, "text": "…"},
            }})
        });
        query_id
    }

    fn take_message_id(&self) -> i64 {
        let mut state = self.shared.state.lock().unwrap();
        let id = state.next_message_id;
        state.next_message_id += 1;
        id
    }

    /// The bot's messages in a chat, oldest first.
    pub fn messages(&self, chat_id: i64) -> Vec<BotMessage> {
        let state = self.shared.state.lock().unwrap();
        state
            .chats
            .get(&chat_id)
            .map(|c| c.messages.clone())
            .unwrap_or_default()
    }

    /// Polls Telegram ended because another poller started (409).
    pub fn poll_conflicts(&self) -> usize {
        self.shared.state.lock().unwrap().poll_conflicts
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.state.lock().unwrap().calls.clone()
    }

    /// Calls answered with this error code.
    pub fn errors(&self, code: u16) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.error.as_ref().is_some_and(|(c, _)| *c == code))
            .collect()
    }

    /// Callback queries the bot never answered.
    /// How many messages the bot deleted.
    pub fn deleted(&self) -> usize {
        self.shared.state.lock().unwrap().deleted
    }

    /// The bot's command menu as last set (`setMyCommands`).
    pub fn commands(&self) -> Vec<(String, String)> {
        self.shared.state.lock().unwrap().commands.clone()
    }

    /// Makes every file download take `delay` (tokio's time: paused tests see it exactly).
    pub fn delay_downloads(&self, delay: Duration) {
        self.shared.state.lock().unwrap().download_delay = delay;
    }

    /// The text a button press was answered with.
    pub fn callback_answer(&self, query_id: &str) -> Option<String> {
        self.shared
            .state
            .lock()
            .unwrap()
            .callback_texts
            .get(query_id)
            .cloned()
    }

    pub fn unanswered_callbacks(&self) -> Vec<String> {
        let state = self.shared.state.lock().unwrap();
        let mut ids: Vec<String> = state
            .callbacks
            .iter()
            .filter(|(_, answered)| !**answered)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Chat actions (`typing`, ...) sent to a chat, with their times.
    pub fn actions(&self, chat_id: i64) -> Vec<(String, Instant)> {
        let state = self.shared.state.lock().unwrap();
        state
            .actions
            .iter()
            .filter(|(c, ..)| *c == chat_id)
            .map(|(_, a, t)| (a.clone(), *t))
            .collect()
    }

    /// The registered webhook: (url, secret token, max connections).
    pub fn webhook(&self) -> Option<(String, String, u64)> {
        self.shared.state.lock().unwrap().webhook.clone()
    }

    /// Every call fails with 502 Bad Gateway (an outage) until turned off.
    pub fn outage(&self, on: bool) {
        self.shared.state.lock().unwrap().outage = on;
    }

    /// Behaves like a Bot API server older than 9.3: no sendMessageDraft.
    pub fn refuse_drafts(&self) {
        self.shared.state.lock().unwrap().no_drafts = true;
    }

    /// Puts a chat in a flood wait, as Telegram does after too many messages.
    pub fn flood(&self, chat_id: i64, wait: Duration) {
        let mut state = self.shared.state.lock().unwrap();
        state.chats.entry(chat_id).or_default().blocked_until = Some(Instant::now() + wait);
    }

    /// Successful sends and edits of a chat's messages, with their times.
    pub fn updates(&self, chat_id: i64) -> Vec<Instant> {
        self.calls()
            .into_iter()
            .filter(|c| {
                c.chat_id == Some(chat_id)
                    && c.error.is_none()
                    && (c.method == "sendmessage" || c.method == "editmessagetext")
            })
            .map(|c| c.at)
            .collect()
    }

    /// The highest update id the bot has confirmed (its last offset minus one).
    pub fn confirmed_up_to(&self) -> i64 {
        self.shared.state.lock().unwrap().confirmed_offset - 1
    }
}

type Reply = Result<Value, (u16, String, Option<u64>)>;

fn bad(description: impl Into<String>) -> Reply {
    Err((400, description.into(), None))
}

async fn api(
    State(shared): State<Shared>,
    Path((bot, method)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> axum::Json<Value> {
    if bot != format!("bot{}", shared.token) {
        return axum::Json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"}));
    }
    if shared.state.lock().unwrap().outage {
        return axum::Json(json!({"ok": false, "error_code": 502, "description": "Bad Gateway"}));
    }
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let params: Value = if body.is_empty() {
        json!({})
    } else if let Some(boundary) = content_type.split("boundary=").nth(1) {
        // teloxide sends requests that may carry files (setWebhook, sendPhoto) as multipart.
        multipart_fields(&body, boundary.trim_matches('"'))
    } else {
        serde_json::from_slice(&body).unwrap_or(json!({}))
    };
    let chat_id = params["chat_id"].as_i64();
    // Method names are case-insensitive (teloxide sends `SendMessage`).
    let method = method.to_ascii_lowercase();
    {
        let mut state = shared.state.lock().unwrap();
        for field in ["text", "caption"] {
            if let Some(text) = params[field].as_str() {
                state.sent_texts.push(text.to_owned());
            }
        }
    }
    let reply = match method.as_str() {
        "getupdates" => get_updates(&shared, &params).await,
        "sendphoto" => {
            let boundary = content_type.split("boundary=").nth(1).unwrap_or_default();
            let photo = multipart_file(&body, boundary.trim_matches('"'), "photo");
            send_photo(&shared, &params, photo)
        }
        "senddocument" => {
            let boundary = content_type.split("boundary=").nth(1).unwrap_or_default();
            let file = multipart_file(&body, boundary.trim_matches('"'), "document");
            send_document(&shared, &params, file)
        }
        other => handle(&shared, other, &params),
    };
    let mut state = shared.state.lock().unwrap();
    let at = Instant::now();
    let (body, error) = match reply {
        Ok(result) => (json!({"ok": true, "result": result}), None),
        Err((code, description, retry_after)) => {
            let mut body = json!({"ok": false, "error_code": code, "description": description});
            if let Some(secs) = retry_after {
                body["parameters"] = json!({"retry_after": secs});
            }
            (body, Some((code, description)))
        }
    };
    state.calls.push(Call {
        at,
        method,
        chat_id,
        error,
    });
    axum::Json(body)
}

async fn download(
    State(shared): State<Shared>,
    Path((bot, path)): Path<(String, String)>,
) -> Result<Vec<u8>, axum::http::StatusCode> {
    if bot != format!("bot{}", shared.token) {
        return Err(axum::http::StatusCode::UNAUTHORIZED);
    }
    let file_id = path.strip_prefix("files/").unwrap_or_default();
    let delay = shared.state.lock().unwrap().download_delay;
    tokio::time::sleep(delay).await;
    let state = shared.state.lock().unwrap();
    state
        .files
        .get(file_id)
        .map(|(_, bytes)| bytes.clone())
        .ok_or(axum::http::StatusCode::NOT_FOUND)
}

/// Telegram's answer to a poll another poller of the same bot ended.
pub const POLL_CONFLICT: &str = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running";

async fn get_updates(shared: &Shared, params: &Value) -> Reply {
    let offset = params["offset"].as_i64().unwrap_or(0);
    let timeout = Duration::from_secs(params["timeout"].as_u64().unwrap_or(0).min(50));
    let deadline = Instant::now() + timeout;
    let generation = {
        let mut state = shared.state.lock().unwrap();
        state.poll_generation += 1;
        state.poll_generation
    };
    // Wakes a poll waiting now, so it sees it was ended.
    shared.arrived.notify_waiters();
    loop {
        let waiting = shared.arrived.notified();
        {
            let mut state = shared.state.lock().unwrap();
            if state.poll_generation != generation {
                state.poll_conflicts += 1;
                return Err((409, POLL_CONFLICT.to_owned(), None));
            }
            if offset > 0 {
                // An offset confirms every update before it.
                state
                    .updates
                    .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                state.confirmed_offset = state.confirmed_offset.max(offset);
            }
            let pending: Vec<Value> = state.updates.clone();
            if !pending.is_empty() || Instant::now() >= deadline {
                return Ok(Value::Array(pending));
            }
        }
        tokio::select! {
            () = waiting => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn handle(shared: &Shared, method: &str, params: &Value) -> Reply {
    let mut state = shared.state.lock().unwrap();
    match method {
        "getme" => Ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Valor", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "has_main_web_app": false,
        })),
        "getwebhookinfo" => {
            Ok(json!({"url": "", "has_custom_certificate": false, "pending_update_count": 0}))
        }
        "deletewebhook" => Ok(json!(true)),
        "deletemessage" => {
            let chat_id = params["chat_id"].as_i64().unwrap_or(0);
            let message_id = params["message_id"].as_i64().unwrap_or(0);
            let now = Instant::now();
            bot_flood_check(&mut state, now)?;
            let entry = state.chats.entry(chat_id).or_default();
            flood_check(entry, chat_id, now)?;
            entry.sent.push(now);
            state.bot_sent.push_back(now);
            let messages = &mut state.chats.entry(chat_id).or_default().messages;
            match messages.iter().position(|m| m.message_id == message_id) {
                Some(at) => {
                    messages.remove(at);
                    state.deleted += 1;
                    Ok(json!(true))
                }
                None => bad("Bad Request: message to delete not found"),
            }
        }
        "setmycommands" => {
            // Telegram's rules: at most 100 commands, each 1-32 of a-z, 0-9 and _, with a
            // description of 1-256 characters.
            let commands = params["commands"].as_array().cloned().unwrap_or_default();
            if commands.len() > 100 {
                return bad("Bad Request: too many commands");
            }
            let mut kept = Vec::new();
            for command in &commands {
                let name = command["command"].as_str().unwrap_or_default();
                let description = command["description"].as_str().unwrap_or_default();
                let name_ok = (1..=32).contains(&name.len())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !name_ok {
                    return bad("Bad Request: BOT_COMMAND_INVALID");
                }
                if !(1..=256).contains(&description.chars().count()) {
                    return bad("Bad Request: BOT_COMMAND_DESCRIPTION_INVALID");
                }
                kept.push((name.to_owned(), description.to_owned()));
            }
            state.commands = kept;
            Ok(json!(true))
        }
        "setwebhook" => {
            state.webhook = Some((
                params["url"].as_str().unwrap_or_default().to_owned(),
                params["secret_token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                params["max_connections"].as_u64().unwrap_or(40),
            ));
            Ok(json!(true))
        }
        "getfile" => {
            let file_id = params["file_id"].as_str().unwrap_or_default();
            match state.files.get(file_id) {
                Some((size, _)) if *size > 20 * 1024 * 1024 => bad("Bad Request: file is too big"),
                Some((size, _)) => Ok(
                    json!({"file_id": file_id, "file_unique_id": format!("u{file_id}"),
                    "file_size": size, "file_path": format!("files/{file_id}")}),
                ),
                None => bad("Bad Request: invalid file_id"),
            }
        }
        "sendchataction" => {
            let chat_id = params["chat_id"].as_i64().unwrap_or(0);
            let action = params["action"].as_str().unwrap_or_default().to_owned();
            state.actions.push((chat_id, action, Instant::now()));
            Ok(json!(true))
        }
        "answercallbackquery" => {
            let id = params["callback_query_id"].as_str().unwrap_or_default();
            match state.callbacks.get_mut(id) {
                Some(answered) => {
                    *answered = true;
                    let text = params["text"].as_str().unwrap_or_default().to_owned();
                    state.callback_texts.insert(id.to_owned(), text);
                    Ok(json!(true))
                }
                None => bad(
                    "Bad Request: query is too old and response timeout expired or query id is invalid",
                ),
            }
        }
        "sendmessagedraft" if state.no_drafts => {
            Err((404, "Not Found: method not found".to_owned(), None))
        }
        "sendmessage" | "editmessagetext" | "sendmessagedraft" => {
            let chat_id = params["chat_id"].as_i64().ok_or((
                400,
                "Bad Request: chat not found".to_owned(),
                None,
            ))?;
            let text = params["text"].as_str().unwrap_or_default();
            let html = params["parse_mode"].as_str() == Some("HTML");
            // A chat set to refuse messages (a text Telegram will not take, whatever the
            // reason): formatted ones as unparsable, and with `plain` every one.
            if let Some(plain_too) = state.refusing.get(&chat_id).copied()
                && method != "sendmessagedraft"
                && (html || plain_too)
            {
                return if html {
                    bad(
                        "Bad Request: can't parse entities: unsupported start tag \"x\" at byte offset 0",
                    )
                } else {
                    bad("Bad Request: text must be encoded in UTF-8")
                };
            }
            let visible = if html {
                parse_html(text)
                    .map_err(|e| (400, format!("Bad Request: can't parse entities: {e}"), None))?
            } else {
                text.to_owned()
            };
            if visible.trim().is_empty() {
                return bad("Bad Request: message text is empty");
            }
            if visible.encode_utf16().count() > 4096 {
                return bad("Bad Request: message is too long");
            }
            check_markup(&params["reply_markup"])?;
            let next_id = state.next_message_id;
            let now = Instant::now();
            if method != "sendmessagedraft" {
                bot_flood_check(&mut state, now)?;
            }
            let entry = state.chats.entry(chat_id).or_default();
            if method == "sendmessagedraft" {
                if chat_id < 0 {
                    return bad("Bad Request: drafts can be sent only to private chats");
                }
                if params["draft_id"].as_i64().unwrap_or(0) == 0 {
                    return bad("Bad Request: draft_id must be non-zero");
                }
                return Ok(json!(true));
            }
            if method == "editmessagetext" {
                let message_id = params["message_id"].as_i64().unwrap_or(0);
                let Some(message) = entry.messages.iter().find(|m| m.message_id == message_id)
                else {
                    return bad("Bad Request: message to edit not found");
                };
                if message.text == text
                    && message.reply_markup.as_ref() == params.get("reply_markup")
                {
                    return bad(NOT_MODIFIED);
                }
            }
            flood_check(entry, chat_id, now)?;
            entry.sent.push(now);
            state.bot_sent.push_back(now);
            let entry = state.chats.entry(chat_id).or_default();
            if method == "editmessagetext" {
                let message_id = params["message_id"].as_i64().unwrap_or(0);
                let message = entry
                    .messages
                    .iter_mut()
                    .find(|m| m.message_id == message_id);
                let Some(message) = message else {
                    return bad("Bad Request: message to edit not found");
                };
                message.text = text.to_owned();
                message.html = html;
                message.visible = visible;
                message.edits += 1;
                message.updated_at = now;
                message.reply_markup = params.get("reply_markup").cloned();
                let id = message.message_id;
                Ok(message_json(id, chat_id, text))
            } else {
                entry.messages.push(BotMessage {
                    message_id: next_id,
                    text: text.to_owned(),
                    html,
                    visible,
                    edits: 0,
                    sent_at: now,
                    updated_at: now,
                    reply_markup: params.get("reply_markup").cloned(),
                    photo: None,
                    document: None,
                });
                state.next_message_id += 1;
                Ok(message_json(next_id, chat_id, text))
            }
        }
        other => Err((
            404,
            format!("Not Found: method {other} is not served by this fake"),
            None,
        )),
    }
}

/// `sendPhoto` with an uploaded file, under Telegram's limits: 10 MB, an image, a caption of at
/// most 1024 characters, the chat's flood limit.
fn send_photo(shared: &Shared, params: &Value, photo: Option<Vec<u8>>) -> Reply {
    let chat_id =
        params["chat_id"]
            .as_i64()
            .ok_or((400, "Bad Request: chat not found".to_owned(), None))?;
    let mut state = shared.state.lock().unwrap();
    let now = Instant::now();
    bot_flood_check(&mut state, now)?;
    let entry = state.chats.entry(chat_id).or_default();
    flood_check(entry, chat_id, now)?;
    let Some(photo) = photo else {
        return bad("Bad Request: there is no photo in the request");
    };
    if photo.len() > 10 * 1024 * 1024 {
        return Err((413, "Request Entity Too Large".to_owned(), None));
    }
    let image = photo.starts_with(b"\x89PNG\r\n\x1a\n") || photo.starts_with(&[0xff, 0xd8, 0xff]);
    if !image {
        return bad("Bad Request: IMAGE_PROCESS_FAILED");
    }
    let caption = params["caption"].as_str().unwrap_or_default();
    let next_id = file_message(&mut state, chat_id, now, caption, Some(photo), None)?;
    let mut message = message_json(next_id, chat_id, caption);
    message["photo"] = json!([{"file_id": format!("photo{next_id}"),
        "file_unique_id": format!("uphoto{next_id}"), "width": 1, "height": 1}]);
    Ok(message)
}

/// `sendDocument`: at most 50 MB from a bot, a caption of at most 1024 characters.
fn send_document(shared: &Shared, params: &Value, file: Option<Vec<u8>>) -> Reply {
    let chat_id =
        params["chat_id"]
            .as_i64()
            .ok_or((400, "Bad Request: chat not found".to_owned(), None))?;
    let mut state = shared.state.lock().unwrap();
    let now = Instant::now();
    bot_flood_check(&mut state, now)?;
    let entry = state.chats.entry(chat_id).or_default();
    flood_check(entry, chat_id, now)?;
    let Some(file) = file else {
        return bad("Bad Request: there is no document in the request");
    };
    // What a reader of the file could see, beside the texts.
    state
        .sent_texts
        .push(String::from_utf8_lossy(&file).into_owned());
    if file.is_empty() {
        return bad("Bad Request: file must be non-empty");
    }
    if file.len() > 50 * 1024 * 1024 {
        return Err((413, "Request Entity Too Large".to_owned(), None));
    }
    let caption = params["caption"].as_str().unwrap_or_default();
    let next_id = file_message(&mut state, chat_id, now, caption, None, Some(file))?;
    let mut message = message_json(next_id, chat_id, caption);
    message["document"] = json!({"file_id": format!("doc{next_id}"),
        "file_unique_id": format!("udoc{next_id}")});
    Ok(message)
}

/// A photo's or a document's message (its caption at most 1024 characters): its id.
fn file_message(
    state: &mut StateInner,
    chat_id: i64,
    now: Instant,
    caption: &str,
    photo: Option<Vec<u8>>,
    document: Option<Vec<u8>>,
) -> Result<i64, (u16, String, Option<u64>)> {
    if caption.chars().count() > 1024 {
        return Err((
            400,
            "Bad Request: message caption is too long".to_owned(),
            None,
        ));
    }
    let next_id = state.next_message_id;
    state.bot_sent.push_back(now);
    let entry = state.chats.entry(chat_id).or_default();
    entry.sent.push(now);
    entry.messages.push(BotMessage {
        message_id: next_id,
        text: caption.to_owned(),
        html: false,
        visible: caption.to_owned(),
        edits: 0,
        sent_at: now,
        updated_at: now,
        reply_markup: None,
        photo,
        document,
    });
    state.next_message_id += 1;
    Ok(next_id)
}

fn message_json(message_id: i64, chat_id: i64, text: &str) -> Value {
    json!({"message_id": message_id, "date": 1_800_000_000, "chat": chat(chat_id),
           "from": {"id": BOT_ID, "is_bot": true, "first_name": "Valor", "username": BOT_USERNAME},
           "text": text})
}

/// At most [`BOT_MESSAGES_PER_SECOND`] messages of the bot in any one second.
fn bot_flood_check(state: &mut StateInner, now: Instant) -> Result<(), (u16, String, Option<u64>)> {
    while let Some(first) = state.bot_sent.front()
        && now.duration_since(*first) >= Duration::from_secs(1)
    {
        state.bot_sent.pop_front();
    }
    if state.bot_sent.len() >= BOT_MESSAGES_PER_SECOND {
        return Err((429, "Too Many Requests: retry after 1".to_owned(), Some(1)));
    }
    Ok(())
}

/// About one message a second per chat; at most 20 a minute in a group.
fn flood_check(
    chat: &mut Chat,
    chat_id: i64,
    now: Instant,
) -> Result<(), (u16, String, Option<u64>)> {
    let too_many = |secs: f64| {
        let secs = secs.ceil().max(1.0) as u64;
        Err((
            429,
            format!("Too Many Requests: retry after {secs}"),
            Some(secs),
        ))
    };
    if let Some(until) = chat.blocked_until
        && until > now
    {
        return too_many((until - now).as_secs_f64());
    }
    if let Some(last) = chat.sent.last()
        && now.duration_since(*last) < Duration::from_secs(1)
    {
        let wait = 1.0 - now.duration_since(*last).as_secs_f64();
        chat.blocked_until = Some(now + Duration::from_secs_f64(wait.ceil().max(1.0)));
        return too_many(wait);
    }
    if chat_id < 0 {
        let minute_ago = now.checked_sub(Duration::from_secs(60));
        let recent: Vec<&Instant> = chat
            .sent
            .iter()
            .filter(|t| minute_ago.is_none_or(|m| **t > m))
            .collect();
        if recent.len() >= 20
            && let Some(oldest) = recent.first()
        {
            let wait = 60.0 - now.duration_since(**oldest).as_secs_f64();
            chat.blocked_until = Some(now + Duration::from_secs_f64(wait.ceil().max(1.0)));
            return too_many(wait);
        }
    }
    Ok(())
}

/// The JSON of an update in which a user writes `text` (what Telegram posts to a webhook).
pub fn text_update(update_id: i64, chat_id: i64, user_id: i64, text: &str) -> Value {
    json!({"update_id": update_id, "message": {
        "message_id": update_id, "date": 1_800_000_000, "chat": chat(chat_id),
        "from": user(user_id, &format!("user{user_id}")), "text": text,
    }})
}

mod format;

pub use format::parse_html;
use format::{check_markup, multipart_fields, multipart_file};
