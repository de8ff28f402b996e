//! Streams a turn into a chat: the first text goes out as soon as it exists, then the message
//! is edited every 2-3 s (by content, see [`Cadence`]); past 4096 characters the answer continues
//! in new messages, split at paragraph or code-fence boundaries; the final text is exactly the
//! answer. Every send and edit goes through the chat's [`ChatPacer`]; progress edits are skipped
//! during a flood wait and the final text waits for it. "Not modified" counts as sent; a parse
//! error falls back to plain text. A typing action goes out about every 4 s while the turn runs.

use std::time::Duration;

use teloxide::payloads::{EditMessageTextSetters as _, SendMessageSetters as _};
use teloxide::requests::Requester;
use teloxide::types::{ChatAction, ChatId, MessageId, ParseMode};
use teloxide::{ApiError, RequestError};
use tokio::time::Instant;
use valor_core::transcript::Transcript;
use valor_protocol::{Event, Events, TurnError};

use crate::format::{Chunk, MAX_MESSAGE_UNITS, render};
use crate::pacer::{Cadence, ChatPacer, Permit, classify_content};
use crate::progress::{StatusLine, describe};

/// `sendMessageDraft` (Bot API 9.3+): an ephemeral streaming preview in a private chat.
/// teloxide 0.17 does not have it, so it is written by hand on teloxide's JSON request.
#[derive(Debug, Clone, serde::Serialize)]
struct SendMessageDraft {
    chat_id: i64,
    draft_id: i64,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parse_mode: Option<&'static str>,
}

impl teloxide::requests::Payload for SendMessageDraft {
    type Output = teloxide::types::True;
    const NAME: &'static str = "sendMessageDraft";
}

/// Streams previews as drafts (private chats), then sends the answer as messages.
#[derive(Clone)]
pub struct Drafts {
    bot: teloxide::Bot,
    id: i64,
}

impl Drafts {
    pub fn new(bot: teloxide::Bot) -> Drafts {
        // Any non-zero id; a new one per turn keeps previews of different turns apart.
        let id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| (d.as_micros() % i64::MAX as u128) as i64)
            .max(1);
        Drafts { bot, id }
    }

    async fn show(&self, chat: ChatId, chunk: &Chunk) -> Result<(), RequestError> {
        let payload = SendMessageDraft {
            chat_id: chat.0,
            draft_id: self.id,
            text: chunk.html.clone(),
            parse_mode: Some("HTML"),
        };
        teloxide::requests::JsonRequest::new(self.bot.clone(), payload)
            .await
            .map(|_| ())
    }
}

/// How often the typing action is repeated (it lasts about 5 s).
pub const TYPING_EVERY: Duration = Duration::from_secs(4);

/// What a delivery did.
#[derive(Debug, Default, Clone)]
pub struct Delivery {
    pub messages: Vec<MessageId>,
    /// Sends and edits that went through.
    pub updates: usize,
    /// Progress updates skipped during flood waits.
    pub skipped: usize,
    /// 429s met.
    pub floods: usize,
    /// Chunks sent as plain text after a parse error.
    pub plain_fallbacks: usize,
    /// Chunks sent as a document when neither markup nor plain text went.
    pub document_fallbacks: usize,
    /// Draft previews shown.
    pub drafts: usize,
    /// The final text, when a flood wait longer than the pacer's `max_hold` kept it from going
    /// out: deliver it with [`finish_deferred`] (it must not be dropped).
    pub deferred: Option<Deferred>,
    /// The answer as delivered.
    pub text: String,
    pub error: Option<TurnError>,
}

#[derive(Debug, Clone)]
struct Sent {
    id: MessageId,
    html: String,
}

/// A final text still to deliver after a long flood wait.
#[derive(Debug, Clone)]
pub struct Deferred {
    pub text: String,
    sent: Vec<Sent>,
}

/// Where an answer another attempt began goes on (several machines: a worker that died
/// mid-answer left a message), and who is told of the answer's first message.
#[derive(Clone, Default)]
pub struct Resume {
    /// The earlier attempt's message: edited rather than a second answer sent.
    pub message: Option<MessageId>,
    /// Told the id of the answer's first message as soon as it is sent.
    pub on_sent: Option<std::sync::Arc<dyn Fn(MessageId) + Send + Sync>>,
}

struct Writer<'a, R> {
    bot: &'a R,
    /// `sent[0]` is an earlier attempt's message, not yet edited by this one.
    resumed: bool,
    on_sent: Option<std::sync::Arc<dyn Fn(MessageId) + Send + Sync>>,
    chat: ChatId,
    pacer: &'a ChatPacer,
    cadence: Cadence,
    sent: Vec<Sent>,
    report: Delivery,
    drafts: Option<Drafts>,
    /// Waits out any flood wait (a deferred delivery) instead of deferring.
    patient: bool,
    /// A flood wait over the cap stopped an essential update.
    deferred: bool,
}

impl<R: Requester<Err = RequestError>> Writer<'_, R> {
    /// Shows a progress preview: as a draft when drafts are on, else by editing messages.
    async fn preview(&mut self, text: &str) -> bool {
        // The word still being written waits: half a secret is not one the redactor knows.
        let shown = valor_redact::redact(settled_part(text));
        let text: &str = &shown;
        let Some(drafts) = self.drafts.clone() else {
            return self.sync(text, false).await;
        };
        // A draft holds one message: the part being written now.
        let Some(chunk) = render(text, MAX_MESSAGE_UNITS).pop() else {
            return true;
        };
        if self.pacer.draft_permit() == Permit::Skip {
            self.report.skipped += 1;
            return false;
        }
        let started = Instant::now();
        match drafts.show(self.chat, &chunk).await {
            Ok(()) => {
                self.cadence.edit_ok(started.elapsed());
                self.report.drafts += 1;
                true
            }
            Err(RequestError::RetryAfter(secs)) => {
                self.report.floods += 1;
                self.cadence.flooded();
                self.pacer.flood_wait(secs.duration());
                false
            }
            Err(e) => {
                tracing::warn!(chat_id = self.chat.0, error = %e, "drafts refused; streaming by edits instead");
                self.drafts = None;
                self.sync(text, false).await
            }
        }
    }

    /// Makes the chat show `text` (its secrets redacted). Returns false if a progress update
    /// was cut short.
    async fn sync(&mut self, text: &str, essential: bool) -> bool {
        let text = valor_redact::redact(text);
        let chunks = render(&text, MAX_MESSAGE_UNITS);
        for (i, chunk) in chunks.iter().enumerate() {
            if self.sent.get(i).is_some_and(|s| s.html == chunk.html) {
                continue;
            }
            if !self.put(i, chunk, essential).await {
                return false;
            }
        }
        true
    }

    /// Whether a flood wait is too long to hold the chat for.
    fn too_long_to_hold(&self) -> bool {
        !self.patient
            && self
                .pacer
                .flood_remaining()
                .is_some_and(|left| left > self.pacer.max_hold())
    }

    /// Sends or edits message `i` to show `chunk`, retrying through flood waits when essential.
    async fn put(&mut self, i: usize, chunk: &Chunk, essential: bool) -> bool {
        let mut plain = false;
        loop {
            if essential && self.too_long_to_hold() {
                self.deferred = true;
                return false;
            }
            if self.pacer.acquire(essential).await == Permit::Skip {
                self.report.skipped += 1;
                return false;
            }
            let started = Instant::now();
            let (text, mode) = if plain {
                (chunk.plain.clone(), None)
            } else {
                (chunk.html.clone(), Some(ParseMode::Html))
            };
            let result = match self.sent.get(i) {
                Some(sent) => {
                    let mut request = self.bot.edit_message_text(self.chat, sent.id, text);
                    if let Some(mode) = mode {
                        request = request.parse_mode(mode);
                    }
                    request.await.map(|m| m.id)
                }
                None => {
                    let mut request = self.bot.send_message(self.chat, text);
                    if let Some(mode) = mode {
                        request = request.parse_mode(mode);
                    }
                    request.await.map(|m| m.id)
                }
            };
            match result {
                Ok(id) => {
                    self.cadence.edit_ok(started.elapsed());
                    self.record(i, id, chunk);
                    return true;
                }
                Err(RequestError::Api(ApiError::MessageNotModified)) => {
                    if let Some(sent) = self.sent.get_mut(i) {
                        sent.html = chunk.html.clone();
                    }
                    return true;
                }
                Err(RequestError::RetryAfter(secs)) => {
                    self.report.floods += 1;
                    self.cadence.flooded();
                    self.pacer.flood_wait(secs.duration());
                    tracing::warn!(
                        chat_id = self.chat.0,
                        retry_after = secs.seconds(),
                        "flood wait"
                    );
                    if !essential {
                        return false;
                    }
                }
                Err(RequestError::Api(ApiError::CantParseEntities(why))) if !plain => {
                    tracing::warn!(chat_id = self.chat.0, error = %why, "Telegram refused the markup; sending plain text");
                    self.report.plain_fallbacks += 1;
                    FALLBACKS[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    plain = true;
                }
                Err(e) if i == 0 && self.resumed => {
                    // The earlier attempt's message is gone (deleted, too old): a new one.
                    tracing::info!(chat_id = self.chat.0, error = %e, "the earlier attempt's message cannot be edited; sending a new one");
                    self.resumed = false;
                    self.sent.remove(0);
                }
                Err(e) => {
                    tracing::warn!(chat_id = self.chat.0, error = %e, "cannot update the answer");
                    if !essential {
                        return false;
                    }
                    // An essential update that fails for another reason is tried as plain text,
                    // then as a file: an answer is never lost to a refused message.
                    if plain {
                        return self.as_document(i, chunk).await;
                    }
                    FALLBACKS[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    plain = true;
                }
            }
        }
    }

    /// The last resort for a chunk Telegram refused as a message: a text file, in a new message
    /// (counted). False when even that is refused.
    async fn as_document(&mut self, i: usize, chunk: &Chunk) -> bool {
        use teloxide::payloads::SendDocumentSetters as _;
        let file = teloxide::types::InputFile::memory(chunk.plain.clone().into_bytes())
            .file_name(format!("answer-{}.txt", i + 1));
        let sent = self
            .pacer
            .send_essential(|| {
                self.bot
                    .send_document(self.chat, file.clone())
                    .caption("Telegram refused this part of the answer as a message; here it is as a file.")
                    .into_future()
            })
            .await;
        match sent {
            Ok(message) => {
                self.report.document_fallbacks += 1;
                FALLBACKS[1].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.record(i, message.id, chunk);
                true
            }
            Err(e) => {
                tracing::error!(chat_id = self.chat.0, error = %e, "cannot deliver the answer, not even as a file");
                false
            }
        }
    }

    /// Sends the final text; one a long flood wait kept back is handed over as deferred.
    async fn finish(&mut self, text: String) {
        if !self.sync(&text, true).await && self.deferred {
            self.report.deferred = Some(Deferred {
                text: text.clone(),
                sent: self.sent.clone(),
            });
        }
        self.report.text = text;
    }

    fn record(&mut self, i: usize, id: MessageId, chunk: &Chunk) {
        self.report.updates += 1;
        if i == 0 {
            self.resumed = false;
            if self.sent.is_empty()
                && let Some(on_sent) = &self.on_sent
            {
                on_sent(id);
            }
        }
        match self.sent.get_mut(i) {
            Some(sent) => sent.html = chunk.html.clone(),
            None => {
                self.sent.push(Sent {
                    id,
                    html: chunk.html.clone(),
                });
                self.report.messages.push(id);
            }
        }
    }
}

/// `text` without the word being written at its end (a preview shows whole words only).
fn settled_part(text: &str) -> &str {
    match text.rfind(char::is_whitespace) {
        Some(at) if !text.ends_with(char::is_whitespace) => &text[..at],
        Some(_) => text,
        // One long word so far: a key pasted whole is worth waiting for.
        None => "",
    }
}

/// Sends that fell back, since start: [to plain text, to a document].
static FALLBACKS: [std::sync::atomic::AtomicU64; 2] = [
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
];

/// How many sends fell back to plain text and to a document since Valor started.
pub fn send_fallbacks() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (FALLBACKS[0].load(Relaxed), FALLBACKS[1].load(Relaxed))
}

/// An approval's question shown in the chat and not yet decided.
struct OpenApproval {
    id: u64,
    message: MessageId,
    remind_at: Option<Instant>,
    deadline_ms: u64,
}

/// Streams a turn's events into `chat` until the turn ends, starting with `first` when the
/// caller has read one already; with `drafts`, previews go as drafts and the answer as
/// messages.
pub async fn deliver<R: Requester<Err = RequestError>>(
    bot: &R,
    chat: ChatId,
    events: &mut Events,
    first: Option<Event>,
    pacer: &ChatPacer,
    drafts: Option<Drafts>,
) -> Delivery {
    deliver_resuming(bot, chat, events, first, pacer, drafts, Resume::default()).await
}

/// [`deliver`], going on in the message an earlier attempt left (`resume`).
pub async fn deliver_resuming<R: Requester<Err = RequestError>>(
    bot: &R,
    chat: ChatId,
    events: &mut Events,
    first: Option<Event>,
    pacer: &ChatPacer,
    drafts: Option<Drafts>,
    resume: Resume,
) -> Delivery {
    let mut writer = Writer {
        bot,
        resumed: resume.message.is_some(),
        on_sent: resume.on_sent,
        chat,
        pacer,
        cadence: Cadence::default(),
        // An empty html: the first update edits it whatever it shows.
        sent: (resume.message.into_iter())
            .map(|id| Sent {
                id,
                html: String::new(),
            })
            .collect(),
        report: Delivery::default(),
        drafts,
        patient: false,
        deferred: false,
    };
    // The text as it is written, for previews; the answer itself comes whole with `Final`.
    let mut transcript = Transcript::default();
    let mut shown = String::new();
    let mut next_update: Option<Instant> = None;
    // "Typing…" from the start, then about every 4 s while the turn runs.
    let _ = bot.send_chat_action(chat, ChatAction::Typing).await;
    let mut next_typing = Instant::now() + TYPING_EVERY;
    // What Claude is doing (tools, retries, waiting), with a Stop button; gone at the end.
    let mut status = StatusLine::default();
    // Approvals asked in this turn and not yet decided: (id, question, reminder due).
    let mut asked: Vec<OpenApproval> = Vec::new();
    let mut first = first;
    loop {
        let wake = [next_update, status.due()]
            .into_iter()
            .chain(asked.iter().map(|a| a.remind_at))
            .flatten()
            .fold(next_typing, Instant::min);
        let event = match first.take() {
            Some(event) => Some(event),
            None => tokio::select! {
                event = events.next() => event,
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if now >= next_typing {
                        let _ = bot.send_chat_action(chat, ChatAction::Typing).await;
                        next_typing = now + TYPING_EVERY;
                    }
                    if status.due().is_some_and(|due| now >= due) {
                        status.show(bot, chat, pacer).await;
                    }
                    for open in &mut asked {
                        if open.remind_at.is_some_and(|at| now >= at) {
                            open.remind_at = None;
                            crate::approval::remind(bot, chat, pacer, open.message, open.deadline_ms)
                                .await;
                        }
                    }
                    if next_update.is_some_and(|u| now >= u) {
                        let text = transcript.text();
                        if text != shown {
                            writer.preview(&text).await;
                            shown = text;
                        }
                        next_update = None;
                    }
                    continue;
                }
            },
        };
        let Some(event) = event else { break };
        match event {
            Event::MessageStart => transcript.message_start(),
            Event::TextDelta(delta) => {
                let first = (writer.sent.is_empty() || writer.resumed) && transcript.is_empty();
                transcript.push(&delta);
                if first {
                    // The first words show at once; later ones at the cadence.
                    writer.preview(transcript.current()).await;
                    shown = transcript.text();
                }
                if next_update.is_none() {
                    let interval = if writer.drafts.is_some() {
                        writer.cadence.draft_interval()
                    } else {
                        writer
                            .cadence
                            .interval(classify_content(transcript.current()))
                    };
                    next_update = Some(Instant::now() + interval);
                }
            }
            Event::ToolCall { name, input, .. } => status.set(describe(&name, &input)),
            Event::Retrying { delay_ms, .. } => status.set(format!(
                "the API is busy, retrying in {} s",
                delay_ms.div_ceil(1000).max(1)
            )),
            Event::WaitingForSlot { position } | Event::Queued { position } => {
                status.set_waiting(format!("waiting for a free slot ({position} ahead)"));
            }
            Event::Started { .. } => status.started(),
            Event::ApprovalNeeded(approval) => {
                status.set("waiting for your approval".to_owned());
                if let Some(message) = crate::approval::show(bot, chat, pacer, &approval).await {
                    let remind_at = approval.remind_ms.map(|at| {
                        let wait = at.saturating_sub(valor_protocol::time::now_ms());
                        Instant::now() + Duration::from_millis(wait)
                    });
                    asked.push(OpenApproval {
                        id: approval.id,
                        message,
                        remind_at,
                        deadline_ms: approval.deadline_ms,
                    });
                }
            }
            Event::ApprovalSettled { id, line, decision } => {
                if let Some(at) = asked.iter().position(|a| a.id == id) {
                    let open = asked.remove(at);
                    crate::approval::settle(bot, chat, pacer, open.message, &line).await;
                }
                if asked.is_empty() {
                    status.set(if decision.allows() {
                        "doing what you allowed".to_owned()
                    } else {
                        "going on without it".to_owned()
                    });
                }
            }
            Event::Final(summary) => {
                let text = if summary.text.trim().is_empty() {
                    "(no answer)".to_owned()
                } else {
                    summary.text
                };
                writer.finish(text).await;
                break;
            }
            Event::Budget(notice) => crate::budget::show(bot, chat, pacer, &notice, false).await,
            Event::Failed { error, partial } => {
                let said = crate::budget::failure_text(&error);
                let text = if partial.trim().is_empty() {
                    said
                } else {
                    format!("{partial}\n\n{said}")
                };
                writer.finish(text).await;
                writer.report.error = Some(error);
                break;
            }
            _ => {}
        }
    }
    // A question still open when the turn ended is answered by nobody now.
    for open in asked {
        let line = "⛔ Not needed any more: the turn ended before an answer.";
        crate::approval::settle(bot, chat, pacer, open.message, line).await;
    }
    // The answer (or the failure) is there, or the stream ended without one: the line goes.
    status.clear(bot, chat, pacer).await;
    writer.report
}

/// Delivers a final text a long flood wait deferred, waiting the wait out.
pub async fn finish_deferred<R: Requester<Err = RequestError>>(
    bot: &R,
    chat: ChatId,
    deferred: Deferred,
    pacer: &ChatPacer,
) -> bool {
    let mut writer = Writer {
        bot,
        resumed: false,
        on_sent: None,
        chat,
        pacer,
        cadence: Cadence::default(),
        sent: deferred.sent,
        report: Delivery::default(),
        drafts: None,
        patient: true,
        deferred: false,
    };
    writer.sync(&deferred.text, true).await
}
