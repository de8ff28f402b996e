//! The Telegram channel: long polling, access, per-chat order, commands, restart safety.
//!
//! - Only allowed users are served. Anyone else gets at most one short refusal an hour; no
//!   model call is made and nothing is stored.
//! - A message is accepted into the store's inbox (durably) before its update is confirmed,
//!   and leaves the inbox when its answer is delivered. After a crash or restart the inbox is
//!   replayed, and updates already taken in are skipped: nothing is lost, nothing answered twice.
//! - Updates become ops of the conversation service (core), its events become messages:
//!   one chat's messages run one at a time, in order (a message that has to wait says so);
//!   chats run concurrently. Commands and button presses are answered at once, never behind a
//!   running turn.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use valor_protocol::access::Role;

use teloxide::Bot;
use teloxide::RequestError;
use teloxide::payloads::{AnswerCallbackQuerySetters as _, GetUpdatesSetters as _};
use teloxide::prelude::Requester as _;
use teloxide::types::{ChatId, Update, UpdateKind};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use valor_core::Conversations;
use valor_protocol::records::InboxEntry;
use valor_protocol::{Command, Event, Op};

use crate::inbox::TelegramStore;

use crate::health::PollHealth;
use crate::pacer::{BotBudget, ChatPacer, PacerConfig};
use crate::pairing::Pairing;

/// The largest file a bot may download from Telegram.
pub const MAX_FILE_BYTES: u64 = 20 * 1024 * 1024;
mod access;
mod cluster;
mod turns;
pub use access::router as access_router;
pub use cluster::ClusterSetup;

/// How often an unknown user may be told no.
pub const REFUSAL_EVERY: Duration = Duration::from_secs(3600);

pub const HELP: &str = "I'm Valor. Write to me as to a colleague: questions, code, bugs.\n\n\
/new - start a new conversation\n/stop - stop what I'm doing\n/status - how I am, and this chat\n\
/learnings - what I learned here (/learnings review: what was contradicted)\n/forget N - retire learning N\n\
/remember <text> - teach me something\n/cost - what this chat and you spent, against the caps\n\
/help - this text";

/// The command menu Telegram shows (`setMyCommands`): each command `/help` explains.
pub const COMMANDS: [(&str, &str); 8] = [
    ("new", "Start a new conversation"),
    ("stop", "Stop what I'm doing"),
    ("cost", "What this chat and you spent, against the caps"),
    ("status", "How I am, and this chat"),
    ("learnings", "What I learned here"),
    ("forget", "Retire learning N: /forget N"),
    ("remember", "Teach me something: /remember <text>"),
    ("help", "What I can do"),
];

/// Valor's health in one line, for `/status` (the binary reads the resource monitor).
pub type HealthLine = Arc<dyn Fn() -> String + Send + Sync>;

pub struct ChannelSetup {
    pub bot: Bot,
    /// The conversation service the chats' turns run through (its learning too: the watcher
    /// beside each turn, "Remember this?", `/learnings`, `/forget`, `/remember`).
    pub conversations: Conversations,
    /// Where accepted messages, the update offset and paired users are kept (the store).
    pub store: Arc<dyn TelegramStore>,
    pub allowed_users: Vec<i64>,
    /// Users with more than the chatter's role (`[access]`); they may chat too.
    pub roles: HashMap<i64, Role>,
    pub poll_timeout_secs: u32,
    pub pacer: PacerConfig,
    /// Pending pairing codes (`valor pair`).
    pub pairing: Pairing,
    pub health: Option<HealthLine>,
    /// Chats' folders: received files are saved in their workspaces.
    pub chats: valor_chatfs::ChatFs,
    /// Stream previews in private chats as drafts (`sendMessageDraft`).
    pub drafts: bool,
    /// Receive updates by webhook instead of polling.
    pub webhook: Option<Webhook>,
    /// Called for each refusal of an unknown user (a counter on /metrics).
    pub on_refusal: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Polling failing this long is degraded (and alerted: `[monitor] part_alert_after_secs`).
    pub degraded_after: Duration,
    /// Several machines: updates go through the shared queue (`None`: this node alone).
    pub cluster: Option<ClusterSetup>,
}

/// A chat's pacer unused this long is dropped once many are kept; the next message makes a
/// new one.
const IDLE_PACER: Duration = Duration::from_secs(600);

/// Pacers kept before idle ones are dropped.
const MAX_PACERS: usize = 1024;

/// Tries at taking in one update (storing it) before it is set aside.
const TAKE_TRIES: u32 = 3;

/// Webhook mode: Telegram posts updates to `url`, a proxy forwards them to `bind`.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub bind: std::net::SocketAddr,
    /// The secret Telegram sends with each post: fixed when several ingress nodes share the
    /// webhook (`TELEGRAM_WEBHOOK_SECRET`), else made anew at each start.
    pub secret: Option<String>,
}

/// The header Telegram sends with the secret given to setWebhook.
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

#[derive(Clone)]
pub struct TelegramChannel {
    inner: Arc<Inner>,
}

struct Inner {
    bot: Bot,
    conversations: Conversations,
    store: Arc<dyn TelegramStore>,
    allowed: Mutex<HashSet<i64>>,
    roles: Mutex<HashMap<i64, Role>>,
    poll_timeout: u32,
    pacer: PacerConfig,
    /// The bot's budget beneath every chat's pacer.
    budget: Arc<BotBudget>,
    /// Each chat's pacer, with when it was last used.
    pacers: Mutex<HashMap<i64, (ChatPacer, Instant)>>,
    refused: Mutex<HashMap<i64, Instant>>,
    refusals: AtomicUsize,
    /// Set when polling stops: turns cancelled from then on are answered after the restart.
    stopping: AtomicBool,
    pairing: Pairing,
    health: Option<HealthLine>,
    chats: valor_chatfs::ChatFs,
    drafts: bool,
    webhook: Option<Webhook>,
    on_refusal: Option<Arc<dyn Fn() + Send + Sync>>,
    /// The last update taken in (also persisted).
    last_update: std::sync::atomic::AtomicI64,
    /// Wrong pairing codes per user: (count, first try).
    pair_attempts: Mutex<HashMap<i64, (usize, Instant)>>,
    /// The `telegram` component of /health.
    poll_health: Arc<PollHealth>,
    cluster: Option<ClusterSetup>,
    /// The chats this worker holds (cluster), each with what wakes its runner.
    running: Mutex<HashMap<i64, Arc<cluster::HeldChat>>>,
    /// Chats whose message met the account's usage limit, with when it resets (cluster: the
    /// chat's runner waits for it, holding the chat).
    usage_limited: Mutex<HashMap<i64, u64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Store(#[from] valor_protocol::StoreFailure),
    #[error("[telegram] api_url {url:?} is not a URL: {reason}")]
    ApiUrl { url: String, reason: String },
    #[error("cannot build the HTTP client for Telegram: {0}")]
    Client(String),
    #[error("cannot set up the Telegram webhook: {0}")]
    Webhook(String),
}

/// A bot for `api_url` whose HTTP timeout outlasts a long poll (teloxide's default of 17 s
/// would cut a 30 s poll).
pub fn bot(token: &str, api_url: &str, poll_timeout_secs: u64) -> Result<Bot, ChannelError> {
    let url = url::Url::parse(api_url).map_err(|e| ChannelError::ApiUrl {
        url: api_url.to_owned(),
        reason: e.to_string(),
    })?;
    let client = teloxide::net::default_reqwest_settings()
        .timeout(Duration::from_secs(poll_timeout_secs + 15))
        .build()
        .map_err(|e| ChannelError::Client(e.to_string()))?;
    Ok(Bot::with_client(token, client).set_api_url(url))
}

impl TelegramChannel {
    pub async fn new(setup: ChannelSetup) -> Result<TelegramChannel, ChannelError> {
        let mut allowed: HashSet<i64> = setup.allowed_users.into_iter().collect();
        allowed.extend(setup.store.paired_users().await?);
        allowed.extend(setup.roles.keys());
        let mut roles = setup.roles;
        for (user, role) in setup.store.paired_roles().await? {
            let kept = roles.entry(user).or_default();
            *kept = (*kept).max(role);
        }
        let poll_health = Arc::new(PollHealth::new(
            setup.webhook.is_some(),
            setup.degraded_after,
        ));
        Ok(TelegramChannel {
            inner: Arc::new(Inner {
                bot: setup.bot,
                conversations: setup.conversations,
                store: setup.store,
                allowed: Mutex::new(allowed),
                roles: Mutex::new(roles),
                poll_timeout: setup.poll_timeout_secs,
                pacer: setup.pacer,
                budget: BotBudget::new(setup.pacer.bot_interval),
                pacers: Mutex::new(HashMap::new()),
                refused: Mutex::new(HashMap::new()),
                refusals: AtomicUsize::new(0),
                stopping: AtomicBool::new(false),
                pairing: setup.pairing,
                health: setup.health,
                chats: setup.chats,
                drafts: setup.drafts,
                webhook: setup.webhook,
                on_refusal: setup.on_refusal,
                last_update: std::sync::atomic::AtomicI64::new(0),
                pair_attempts: Mutex::new(HashMap::new()),
                poll_health,
                cluster: setup.cluster,
                running: Mutex::new(HashMap::new()),
                usage_limited: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Status lines and streamed edits dropped because the bot's budget had no slot free.
    pub fn progress_dropped(&self) -> u64 {
        self.inner.budget.dropped()
    }

    /// Chats with a pacer right now.
    pub fn chats_tracked(&self) -> usize {
        self.inner
            .pacers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The `telegram` component of /health and /ready.
    pub fn health_component(&self) -> Arc<PollHealth> {
        Arc::clone(&self.inner.poll_health)
    }

    /// Sends a tool's picture to its chat, in the background, paced with the chat's other
    /// messages. Failures are logged: the tool has already answered the model.
    pub fn post_photo(&self, photo: crate::photos::OutgoingPhoto) {
        // Telegram's private chats have positive ids, groups negative ones.
        let pacer = self.pacer(photo.chat_id, photo.chat_id > 0);
        let bot = self.inner.bot.clone();
        tokio::spawn(async move {
            match crate::photos::send_photo(&bot, &pacer, &photo).await {
                Ok(()) => {
                    tracing::info!(
                        chat_id = photo.chat_id,
                        bytes = photo.image.len(),
                        "photo sent"
                    )
                }
                Err(e) => {
                    tracing::warn!(chat_id = photo.chat_id, error = %e, "cannot send a photo")
                }
            }
        });
    }

    /// Sends a plain text (a report's summary) to a chat, in the background, paced with the
    /// chat's other messages; cut to Telegram's 4096 characters.
    pub fn post_text(&self, chat_id: i64, text: &str) {
        let text: String = text.chars().take(4096).collect();
        self.reply(ChatId(chat_id), chat_id > 0, &text);
    }

    /// Asks "Remember this?" in the proposal's chat (recorded as pending first), paced with
    /// the chat's other messages.
    pub async fn propose(
        &self,
        proposal: valor_protocol::proposals::Proposal,
    ) -> Result<valor_protocol::proposals::Proposal, ChannelError> {
        let proposal = self.inner.store.add_proposal(proposal).await?;
        self.ask(proposal.question());
        Ok(proposal)
    }

    /// Unknown users told no so far.
    pub fn refusals(&self) -> usize {
        self.inner.refusals.load(Ordering::Relaxed)
    }

    /// Receives updates (long polling, or the webhook) until `shutdown`; first replays what was
    /// accepted but not answered.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ChannelError> {
        if let Some(cluster) = self.inner.cluster.clone() {
            // The shared queue is the inbox: workers claim what waits there.
            let sweeping = shutdown.child_token();
            tokio::spawn(self.clone().settle_expired(sweeping.clone()));
            let result = self.run_cluster(cluster, &shutdown).await;
            sweeping.cancel();
            self.inner.stopping.store(true, Ordering::Release);
            self.inner.conversations.stop_turns();
            return result;
        }
        for entry in self.inner.store.inbox().await? {
            if !self.is_allowed(entry.user_id) {
                // Access taken back (`valor pair --revoke`) while it waited: not answered.
                tracing::warn!(
                    chat_id = entry.chat_id,
                    user_id = entry.user_id,
                    update = entry.update_id,
                    "a waiting message of a user no longer allowed; dropped"
                );
                self.inner.store.finish_update(entry.update_id).await?;
                continue;
            }
            tracing::info!(
                update = entry.update_id,
                chat_id = entry.chat_id,
                "answering a message accepted before the restart"
            );
            self.enqueue(entry);
        }
        self.inner
            .last_update
            .store(self.inner.store.last_update().await?, Ordering::Release);
        self.register_commands().await;
        let sweeping = shutdown.child_token();
        tokio::spawn(self.clone().settle_expired(sweeping.clone()));
        let result = match self.inner.webhook.clone() {
            Some(webhook) => self.clone().serve_webhook(webhook, &shutdown).await,
            None => self.poll(&shutdown).await,
        };
        sweeping.cancel();
        // Running turns are cancelled; their messages stay in the inbox for the next start.
        self.inner.stopping.store(true, Ordering::Release);
        self.inner.conversations.stop_turns();
        result
    }

    /// Registers the command menu, so Telegram lists the commands; a failure only costs the menu.
    async fn register_commands(&self) {
        let commands = COMMANDS
            .iter()
            .map(|(name, what)| teloxide::types::BotCommand::new(*name, *what));
        if let Err(e) = self.inner.bot.set_my_commands(commands).await {
            tracing::warn!(error = %e, "cannot register the command menu");
        }
    }

    /// Takes in an update unless it was taken in before (Telegram may deliver one twice).
    async fn take(&self, update: Update) -> Result<(), ChannelError> {
        let id = i64::from(update.id.0);
        if id <= self.inner.last_update.load(Ordering::Acquire) {
            return Ok(());
        }
        self.handle(update).await?;
        self.inner.last_update.fetch_max(id, Ordering::AcqRel);
        Ok(())
    }

    /// Takes in one update, retrying a failure (a store error) with back-off; after
    /// [`TAKE_TRIES`] it is set aside (skipped, counted, logged) so the loop goes on. False
    /// when it was set aside.
    async fn take_or_set_aside(&self, update: Update, shutdown: &CancellationToken) -> bool {
        let id = i64::from(update.id.0);
        let mut wait = Duration::from_millis(500);
        for attempt in 1..=TAKE_TRIES {
            match self.take(update.clone()).await {
                Ok(()) => return true,
                Err(e) => {
                    self.inner.poll_health.failed(&e.to_string());
                    tracing::error!(update = id, attempt, error = %e, "cannot take in an update");
                }
            }
            if attempt < TAKE_TRIES {
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    () = tokio::time::sleep(wait) => {}
                }
                wait *= 2;
            }
        }
        tracing::error!(update = id, "an update could not be taken in; set aside");
        self.inner.poll_health.set_aside();
        // Not asked for again: the next poll starts after it.
        self.inner.last_update.fetch_max(id, Ordering::AcqRel);
        false
    }

    async fn poll(&self, shutdown: &CancellationToken) -> Result<(), ChannelError> {
        let mut backoff = Duration::from_secs(1);
        loop {
            let last = self.inner.last_update.load(Ordering::Acquire);
            let offset = i32::try_from(last + 1).unwrap_or(i32::MAX);
            let request = self
                .inner
                .bot
                .get_updates()
                .offset(offset)
                .timeout(self.inner.poll_timeout);
            let updates = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                updates = request.into_future() => updates,
            };
            match updates {
                Ok(updates) => {
                    backoff = Duration::from_secs(1);
                    let mut all_taken = true;
                    for update in updates {
                        all_taken &= self.take_or_set_aside(update, shutdown).await;
                    }
                    if all_taken {
                        self.inner.poll_health.ok();
                    }
                }
                Err(RequestError::RetryAfter(secs)) => {
                    tokio::time::sleep(secs.duration()).await;
                }
                Err(e) => {
                    self.inner.poll_health.failed(&e.to_string());
                    tracing::warn!(error = %e, retry_in_secs = backoff.as_secs(), "polling Telegram failed");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Registers the webhook with a fresh secret and serves Telegram's posts until `shutdown`.
    async fn serve_webhook(
        self,
        webhook: Webhook,
        shutdown: &CancellationToken,
    ) -> Result<(), ChannelError> {
        let secret = match &webhook.secret {
            Some(secret) => secret.clone(),
            None => crate::pairing::random_token(32)
                .map_err(|e| ChannelError::Webhook(e.to_string()))?,
        };
        let listener = tokio::net::TcpListener::bind(webhook.bind)
            .await
            .map_err(|e| {
                ChannelError::Webhook(format!("cannot listen on {}: {e}", webhook.bind))
            })?;
        self.register_webhook(&webhook, &secret).await?;
        self.serve_webhook_posts(listener, secret, shutdown).await
    }

    /// Tells Telegram where to post updates, and the secret to post with.
    pub(super) async fn register_webhook(
        &self,
        webhook: &Webhook,
        secret: &str,
    ) -> Result<(), ChannelError> {
        use teloxide::payloads::SetWebhookSetters as _;
        let url = url::Url::parse(&webhook.url).map_err(|e| ChannelError::ApiUrl {
            url: webhook.url.clone(),
            reason: e.to_string(),
        })?;
        // One connection at a time: updates of a chat arrive in order.
        self.inner
            .bot
            .set_webhook(url)
            .secret_token(secret.to_owned())
            .max_connections(1)
            .await
            .map_err(|e| ChannelError::Webhook(e.to_string()))?;
        tracing::info!(url = %webhook.url, bind = %webhook.bind, "Telegram webhook registered");
        Ok(())
    }

    /// Takes Telegram's posts that carry `secret` until `shutdown`.
    pub(super) async fn serve_webhook_posts(
        &self,
        listener: tokio::net::TcpListener,
        secret: String,
        shutdown: &CancellationToken,
    ) -> Result<(), ChannelError> {
        let channel = self.clone();
        let app = axum::Router::new().fallback(axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let channel = channel.clone();
                let secret = secret.clone();
                async move {
                    use subtle::ConstantTimeEq as _;
                    let given = headers.get(SECRET_HEADER).map(|v| v.as_bytes());
                    let matches = given.is_some_and(|g| bool::from(g.ct_eq(secret.as_bytes())));
                    if !matches {
                        return axum::http::StatusCode::UNAUTHORIZED;
                    }
                    let Ok(update) = serde_json::from_slice::<Update>(&body) else {
                        return axum::http::StatusCode::BAD_REQUEST;
                    };
                    match channel.take(update).await {
                        Ok(()) => {
                            channel.inner.poll_health.ok();
                            axum::http::StatusCode::OK
                        }
                        // Telegram posts the update again later.
                        Err(e) => {
                            channel.inner.poll_health.failed(&e.to_string());
                            tracing::error!(error = %e, "cannot take in a webhook update");
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR
                        }
                    }
                }
            },
        ));
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .map_err(|e| ChannelError::Webhook(e.to_string()))
    }

    async fn handle(&self, update: Update) -> Result<(), ChannelError> {
        let id = i64::from(update.id.0);
        let store = &self.inner.store;
        match update.kind {
            UpdateKind::Message(message) => {
                let chat = message.chat.id;
                let private = message.chat.is_private();
                let Some(from) = message.from.as_ref() else {
                    store.set_last_update(id).await?;
                    return Ok(());
                };
                let user_id = i64::try_from(from.id.0).unwrap_or(i64::MAX);
                // Kept (the inbox), shown and sent on: a secret pasted in goes no further.
                let text = valor_redact::redact(
                    message
                        .text()
                        .or(message.caption())
                        .unwrap_or_default()
                        .trim(),
                )
                .into_owned();
                let command = text
                    .split_whitespace()
                    .next()
                    .map(|c| c.split('@').next().unwrap_or(c).to_owned());
                if !self.is_allowed(user_id) {
                    if command.as_deref() == Some("/pair") {
                        let code = text
                            .split_whitespace()
                            .skip(1)
                            .collect::<Vec<_>>()
                            .join(" ");
                        self.pair(chat, user_id, private, &code).await?;
                    } else {
                        self.refuse(chat, user_id);
                    }
                    store.set_last_update(id).await?;
                    return Ok(());
                }
                // A file is downloaded by the chat's worker, not here: a 20 MB download would
                // hold up every chat's updates. Too big is refused at once.
                let file = crate::received::attachment(&message);
                if let Some(refusal) = file.as_ref().and_then(crate::received::too_big) {
                    self.reply(chat, private, &refusal);
                    store.set_last_update(id).await?;
                    return Ok(());
                }
                match command.as_deref() {
                    Some("/start" | "/help") => self.reply(chat, private, HELP),
                    Some("/pair") => {
                        let args = text.split_whitespace().nth(1).unwrap_or_default();
                        let reply = self.pair_code(user_id, private, args);
                        self.reply(chat, private, &reply);
                    }
                    Some(name @ ("/status" | "/learnings" | "/forget" | "/remember" | "/cost")) => {
                        let args = text.split_once(char::is_whitespace).map_or("", |(_, r)| r);
                        if let Some(command) = Command::parse(name, args) {
                            self.command(chat, private, command, id, user_id);
                        }
                    }
                    Some("/new") => {
                        (self.inner.conversations).submit(Op::NewConversation { chat_id: chat.0 });
                        self.reply(
                            chat,
                            private,
                            "OK: the next message starts a new conversation.",
                        );
                    }
                    Some("/stop") => {
                        if !self.stop_everywhere(chat.0) {
                            self.reply(chat, private, "Nothing is running.");
                        }
                    }
                    _ if text.is_empty() && file.is_none() => {}
                    _ if self.inner.conversations.is_full(chat.0) => {
                        tracing::warn!(chat_id = chat.0, "too many messages waiting; refused");
                        self.reply(
                            chat,
                            private,
                            "Too many messages are waiting in this chat; try again when I have answered them.",
                        );
                    }
                    _ => {
                        let entry = InboxEntry {
                            chat_title: chat_title(&message.chat),
                            update_id: id,
                            chat_id: chat.0,
                            user_id,
                            username: from.username.clone(),
                            text,
                            private,
                            file,
                        };
                        store.accept_update(&entry).await?;
                        // On several machines the queue wakes the worker that takes it.
                        if self.inner.cluster.is_none() {
                            self.enqueue(entry);
                        }
                        return Ok(());
                    }
                }
                store.set_last_update(id).await?;
            }
            UpdateKind::CallbackQuery(query) => {
                // Answered at once: the client shows a spinner until it is.
                let bot = self.inner.bot.clone();
                let allowed = self.is_allowed(i64::try_from(query.from.id.0).unwrap_or(i64::MAX));
                let remember = query.data.as_deref().and_then(crate::remember::parse);
                let chat = query.message.as_ref().map(|m| m.chat().id);
                let stop = query.data.as_deref() == Some(crate::progress::STOP_DATA);
                let approval = query.data.as_deref().and_then(crate::approval::parse);
                if let (Some((approval, decision)), Some(chat)) = (approval, chat) {
                    let user = i64::try_from(query.from.id.0).unwrap_or(i64::MAX);
                    let may = allowed && self.may_approve(chat, user);
                    let decided = may.then(|| {
                        self.inner.conversations.submit(Op::Decide {
                            chat_id: chat.0,
                            approval,
                            decision,
                            by: Some(user),
                        })
                    });
                    tokio::spawn(async move {
                        let word = match decided {
                            None => "Only an approver can answer this.".to_owned(),
                            Some(mut events) => match events.next().await {
                                Some(Event::Decided(word)) => word,
                                _ => "Sorry, something went wrong.".to_owned(),
                            },
                        };
                        let _ = bot.answer_callback_query(query.id).text(word).await;
                    });
                    store.set_last_update(id).await?;
                    return Ok(());
                }
                let allow_more = query.data.as_deref().and_then(crate::budget::parse);
                if let (Some(key), Some(chat)) = (allow_more, chat) {
                    self.allow_more(query, chat, key, allowed);
                    store.set_last_update(id).await?;
                    return Ok(());
                }
                match (remember, chat) {
                    // Stop stops the running turn of the chat it is pressed in, nothing else.
                    (None, Some(chat)) if stop && allowed => {
                        let reply = if self.stop_everywhere(chat.0) {
                            "Stopping."
                        } else {
                            "Nothing is running."
                        };
                        tokio::spawn(async move {
                            let _ = bot.answer_callback_query(query.id).text(reply).await;
                        });
                    }
                    (Some((question, yes)), Some(chat)) if allowed => {
                        let user = i64::try_from(query.from.id.0).unwrap_or(i64::MAX);
                        let admin = self.role(user) >= Role::Admin;
                        let channel = self.clone();
                        let (store, pacer) = (store.clone(), self.pacer(chat.0, chat.0 > 0));
                        tokio::spawn(async move {
                            // In a group only the person it was asked of (or an admin)
                            // settles it; in a private chat its one user does.
                            if chat.0 < 0 && !admin {
                                let asked_of = (store.proposal(question).await.ok().flatten())
                                    .and_then(|p| p.asked_of);
                                if asked_of.is_some_and(|asked_of| asked_of != user) {
                                    let _ = bot
                                        .answer_callback_query(query.id)
                                        .text("Only the person who said it (or an admin) can answer this.")
                                        .await;
                                    return;
                                }
                            }
                            let answered = channel.inner.conversations.submit(Op::Answer {
                                operator: false,
                                chat_id: chat.0,
                                question,
                                yes,
                            });
                            crate::remember::answer(
                                &bot,
                                store.as_ref(),
                                &pacer,
                                query.id,
                                chat,
                                question,
                                answered,
                            )
                            .await;
                        });
                    }
                    _ => {
                        tokio::spawn(async move {
                            let _ = bot.answer_callback_query(query.id).await;
                        });
                    }
                }
                store.set_last_update(id).await?;
            }
            _ => store.set_last_update(id).await?,
        }
        Ok(())
    }

    /// Stops the chat's running turn; false when nothing was running.
    fn interrupt(&self, chat_id: i64) -> bool {
        let mut events = self.inner.conversations.submit(Op::Interrupt { chat_id });
        matches!(
            events.try_next(),
            Some(Event::Interrupted { was_running: true })
        )
    }

    /// The user's role (allowed users without one chat).
    pub(super) fn role(&self, user_id: i64) -> Role {
        (self
            .inner
            .roles
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
        .get(&user_id)
        .copied()
        .unwrap_or_default()
    }

    /// Whether `user` may answer an approval asked in `chat`: an approver anywhere, or the
    /// user of a private chat in their own chat (deny by default: a group member who is not
    /// an approver may not).
    fn may_approve(&self, chat: ChatId, user: i64) -> bool {
        self.role(user) >= Role::Approver || chat.0 == user
    }

    fn is_allowed(&self, user_id: i64) -> bool {
        self.inner
            .allowed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&user_id)
    }

    /// A chat command, answered by the conversation service; `/status` gets the health line
    /// first.
    fn command(&self, chat: ChatId, private: bool, command: Command, update_id: i64, by: i64) {
        let channel = self.clone();
        let status = command == Command::Status;
        let mut events = self.inner.conversations.submit(Op::Command {
            chat_id: chat.0,
            command,
            source: format!("tg:{update_id}"),
            by: Some(by),
        });
        tokio::spawn(async move {
            let Some(Event::Reply(mut text)) = events.next().await else {
                return;
            };
            if status && let Some(health) = &channel.inner.health {
                text = format!("Health: {}\n{text}", health());
            }
            channel.reply(chat, private, &text);
        });
    }

    /// Sends a short text through the chat's pacer, without waiting for it here.
    fn reply(&self, chat: ChatId, private: bool, text: &str) {
        let pacer = self.pacer(chat.0, private);
        let bot = self.inner.bot.clone();
        let text = valor_redact::redact(text).into_owned();
        tokio::spawn(async move {
            // A flood wait (the chat's last message may have gone out unpaced, to a stranger
            // who just paired) is waited out, like every other send.
            let sent = pacer
                .send_essential(|| bot.send_message(chat, text.clone()).into_future())
                .await;
            if let Err(e) = sent {
                tracing::warn!(chat_id = chat.0, error = %e, "cannot send a reply");
            }
        });
    }
}

/// How a chat is named on Telegram: a group's title, else a person's name, else `@username`
/// (cut short: it is shown, never trusted).
fn chat_title(chat: &teloxide::types::Chat) -> Option<String> {
    let name = match (chat.title(), chat.first_name(), chat.last_name()) {
        (Some(title), _, _) => title.to_owned(),
        (None, Some(first), Some(last)) => format!("{first} {last}"),
        (None, Some(first), None) => first.to_owned(),
        (None, None, _) => format!("@{}", chat.username()?),
    };
    let name: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
    (!name.trim().is_empty()).then(|| name.trim().to_owned())
}
