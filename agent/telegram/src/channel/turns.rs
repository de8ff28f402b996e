//! A message's way through the conversation service: the inbox entry becomes a `UserTurn`
//! op (its file downloaded when the turn's time comes), the turn's events become messages,
//! and the entry leaves the inbox once its answer is delivered.

use std::sync::PoisonError;
use std::time::Duration;

use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

use teloxide::types::ChatId;
use tokio::time::Instant;
use valor_core::Notice;
use valor_protocol::records::InboxEntry;
use valor_protocol::{Author, Event, Events, Op, Prepare, Question, TurnErrorKind, UserTurn};

use super::{IDLE_PACER, MAX_PACERS, TelegramChannel};
use crate::pacer::{ChatKind, ChatPacer};
use crate::stream::{Deferred, Resume, deliver_resuming};

impl TelegramChannel {
    /// Submits a message accepted into the inbox; its answer goes out in the background and
    /// it leaves the inbox once answered.
    pub(super) fn enqueue(&self, entry: InboxEntry) {
        let update_id = entry.update_id;
        let channel = self.clone();
        tokio::spawn(async move {
            if channel.answer_now(entry, Resume::default()).await
                && let Err(e) = channel.inner.store.finish_update(update_id).await
            {
                tracing::error!(update = update_id, error = %e, "cannot mark the message answered");
            }
        });
    }

    /// Runs a message's turn and shows it in its chat; whether it was answered (false: stopped
    /// by shutdown, to be answered again, or its answer goes out later).
    pub(super) async fn answer_now(&self, mut entry: InboxEntry, resume: Resume) -> bool {
        let chat = ChatId(entry.chat_id);
        // A file is downloaded when the turn's time comes, not here: a 20 MB download would
        // hold up every chat's updates.
        let prepare = entry.file.take().map(|file| {
            let bot = self.inner.bot.clone();
            let chats = self.inner.chats.clone();
            let (update_id, text) = (entry.update_id, entry.text.clone());
            Box::pin(async move {
                let path =
                    crate::received::receive_file(&bot, &chats, chat, update_id, &file).await?;
                Ok(crate::received::with_note(&text, &file, &path))
            }) as Prepare
        });
        let turn = UserTurn {
            chat_id: entry.chat_id,
            author: Some(Author {
                user_id: entry.user_id,
                username: entry.username.clone(),
            }),
            text: entry.text.clone(),
            source: Some(format!("tg:{}", entry.update_id)),
            prepare,
            ask: true,
            chat_title: entry.chat_title.clone(),
        };
        let events = self.inner.conversations.submit(Op::UserTurn(turn));
        self.answer(entry, events, resume).await
    }

    /// Shows one turn's events in its chat: its place in the queue, the streamed answer, then
    /// "Remember this?" when the watcher asks (in the background); whether it was answered.
    async fn answer(&self, entry: InboxEntry, mut events: Events, resume: Resume) -> bool {
        let chat = ChatId(entry.chat_id);
        let first = loop {
            match events.next().await {
                Some(Event::Queued { position }) => {
                    let noun = if position == 1 { "message" } else { "messages" };
                    let text = format!("Queued: {position} {noun} ahead of yours. I'll get to it.");
                    self.reply(chat, entry.private, &text);
                }
                Some(Event::Lapsed(_)) => {}
                other => break other,
            }
        };
        let answered = match first {
            None => false,
            Some(Event::Refused(text)) => {
                self.reply(chat, entry.private, &text);
                true
            }
            // A typed yes or no to the chat's question: no turn ran. The question's message
            // becomes the outcome (its buttons gone), and the yes gets its short reply.
            Some(Event::Answered(answered)) => {
                match (answered.question, &answered.outcome) {
                    (Some(id), Some(outcome)) => {
                        self.settle_question(chat, id, outcome.clone());
                        self.reply(chat, entry.private, &answered.reply);
                    }
                    _ => {
                        let text = answered.outcome.unwrap_or(answered.reply);
                        self.reply(chat, entry.private, &text);
                    }
                }
                true
            }
            Some(first) => self.deliver_turn(&entry, first, &mut events, resume).await,
        };
        let channel = self.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if let Event::Proposal(question) = event {
                    channel.ask(question);
                }
            }
        });
        answered
    }

    /// Streams the turn into the chat; false when the message stays in the inbox (stopped by
    /// shutdown, to be answered after the restart) or its answer is delivered later.
    async fn deliver_turn(
        &self,
        entry: &InboxEntry,
        first: Event,
        events: &mut Events,
        resume: Resume,
    ) -> bool {
        let chat = ChatId(entry.chat_id);
        let pacer = self.pacer(entry.chat_id, entry.private);
        let drafts = (self.inner.drafts && entry.private)
            .then(|| crate::stream::Drafts::new(self.inner.bot.clone()));
        let mut delivery = deliver_resuming(
            &self.inner.bot,
            chat,
            events,
            Some(first),
            &pacer,
            drafts,
            resume,
        )
        .await;
        // The account's usage limit: said until when (by the stream), and the message is
        // answered then; it stays in the inbox meanwhile (a restart answers it too).
        let limited = (delivery.error.as_ref())
            .filter(|e| e.kind == TurnErrorKind::UsageLimit)
            .and_then(|e| e.retry_at_ms);
        if let Some(at_ms) = limited {
            if self.inner.cluster.is_some() {
                // The chat's runner waits for the reset, holding the chat (its queue keeps
                // the message; a worker that dies leaves it to the next).
                (self.inner.usage_limited.lock())
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(entry.chat_id, at_ms);
            } else {
                self.resume_at(entry.clone(), at_ms);
            }
            return false;
        }
        // A turn stopped by shutdown (not by /stop) is answered after the restart.
        let stopped_by_shutdown = self.inner.stopping.load(Ordering::Acquire)
            && (delivery.error.as_ref()).is_some_and(|e| e.kind == TurnErrorKind::Cancelled);
        match delivery.deferred.take() {
            Some(deferred) => {
                self.deliver_later(chat, entry.update_id, deferred, pacer);
                false
            }
            None => !stopped_by_shutdown,
        }
    }

    /// Answers `entry` again once the usage limit resets at `at_ms`.
    fn resume_at(&self, entry: InboxEntry, at_ms: u64) {
        let wait = until_reset(at_ms);
        tracing::info!(
            chat_id = entry.chat_id,
            wait_secs = wait.as_secs(),
            "usage limit: the message is answered when it resets"
        );
        let channel = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if !channel.inner.stopping.load(Ordering::Acquire) {
                channel.enqueue(entry);
            }
        });
    }

    /// The reset of the usage limit a message of `chat_id` met just now (taken).
    pub(super) fn take_usage_limit(&self, chat_id: i64) -> Option<u64> {
        (self.inner.usage_limited.lock())
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&chat_id)
    }

    /// A long flood wait kept the final text back: it goes out when the wait ends, and the chat
    /// goes on meanwhile. The message leaves the inbox once the text is delivered.
    fn deliver_later(&self, chat: ChatId, update_id: i64, deferred: Deferred, pacer: ChatPacer) {
        tracing::warn!(
            chat_id = chat.0,
            "flood wait over the cap: the answer goes out when it ends"
        );
        let bot = self.inner.bot.clone();
        let store = self.inner.store.clone();
        tokio::spawn(async move {
            if crate::stream::finish_deferred(&bot, chat, deferred, &pacer).await
                && let Err(e) = store.finish_update(update_id).await
            {
                tracing::error!(chat_id = chat.0, error = %e, "cannot mark the message answered");
            }
        });
    }

    /// Asks "Remember this?" (already recorded as pending), paced with the chat's messages.
    pub(super) fn ask(&self, question: Question) {
        let pacer = self.pacer(question.chat_id, question.chat_id > 0);
        let (bot, store) = (self.inner.bot.clone(), self.inner.store.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::remember::ask(&bot, store.as_ref(), &pacer, &question).await {
                tracing::warn!(chat_id = question.chat_id, error = %e, "cannot ask to remember");
            }
        });
    }

    /// Replaces a question's message by its outcome, paced with the chat's messages.
    pub(super) fn settle_question(&self, chat: ChatId, id: u64, outcome: String) {
        let pacer = self.pacer(chat.0, chat.0 > 0);
        let (bot, store) = (self.inner.bot.clone(), self.inner.store.clone());
        tokio::spawn(async move {
            crate::remember::settle_question(&bot, store.as_ref(), &pacer, chat, id, &outcome)
                .await;
        });
    }

    /// Takes expired questions' buttons away as the conversation service tells of them
    /// (its scheduled job expires them, with or without this channel), until `shutdown`.
    pub(super) async fn settle_expired(self, shutdown: CancellationToken) {
        let mut notices = self.inner.conversations.notices();
        loop {
            let notice = tokio::select! {
                () = shutdown.cancelled() => return,
                notice = notices.recv() => notice,
            };
            match notice {
                Ok(Notice::QuestionExpired(gone) | Notice::QuestionSettled(gone)) => {
                    let chat = ChatId(gone.question.chat_id);
                    self.settle_question(chat, gone.question.id, gone.line);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "expired questions went by unseen; their buttons stay"
                    );
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// The chat's pacer, made when missing. Past [`MAX_PACERS`] the ones unused for
    /// [`IDLE_PACER`] go, so the map does not grow with every chat ever seen.
    pub(super) fn pacer(&self, chat_id: i64, private: bool) -> ChatPacer {
        let mut pacers = self
            .inner
            .pacers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if let Some((pacer, used)) = pacers.get_mut(&chat_id) {
            *used = now;
            return pacer.clone();
        }
        if pacers.len() >= MAX_PACERS {
            pacers.retain(|_, (_, used)| now.duration_since(*used) < IDLE_PACER);
        }
        let kind = if private {
            ChatKind::Private
        } else {
            ChatKind::Group
        };
        let budget = std::sync::Arc::clone(&self.inner.budget);
        let pacer = ChatPacer::sharing(kind, self.inner.pacer, budget);
        pacers.insert(chat_id, (pacer.clone(), now));
        pacer
    }
}

/// How long until a usage limit that resets at `at_ms` has reset: 3 s past it (the reset is
/// the API's clock, not ours), 8 days at most.
pub(super) fn until_reset(at_ms: u64) -> Duration {
    const MARGIN_MS: u64 = 3_000;
    const LONGEST: Duration = Duration::from_secs(8 * 86_400);
    Duration::from_millis((at_ms + MARGIN_MS).saturating_sub(valor_protocol::time::now_ms()))
        .min(LONGEST)
}
