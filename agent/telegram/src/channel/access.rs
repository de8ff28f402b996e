//! Who may talk to Valor: strangers refused (at most once an hour, no chat worker made for
//! them), `/pair CODE`, and the paired users listed and revoked (`valor pair --list`,
//! `--revoke`) through the running agent's HTTP server; who may raise a spend cap.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use serde_json::json;
use teloxide::prelude::*;
use tokio::time::Instant;
use valor_monitor::auth::{BearerGate, require_bearer};

use valor_protocol::access::Role;

use super::{ChannelError, REFUSAL_EVERY, TelegramChannel};

/// Wrong pairing codes a user may try in an hour.
const PAIR_ATTEMPTS: usize = 5;
/// Strangers remembered at most (refusals, pairing attempts): entries older than the hour they
/// matter for are dropped once there are more.
const STRANGERS_KEPT: usize = 10_000;

/// Drops entries older than [`REFUSAL_EVERY`] once the map holds [`STRANGERS_KEPT`], so a flood
/// of strangers cannot grow it without bound.
fn forget_older<V>(map: &mut HashMap<i64, V>, now: Instant, at: impl Fn(&V) -> Instant) {
    if map.len() >= STRANGERS_KEPT {
        map.retain(|_, v| now.duration_since(at(v)) < REFUSAL_EVERY);
    }
    if map.len() >= STRANGERS_KEPT {
        // Still full of fresh entries: start over rather than grow.
        map.clear();
    }
}

impl TelegramChannel {
    /// [Allow more] pressed: the operator's money, so approvers and admins only (even in a
    /// private chat); an admin may raise any chat's cap from an admin chat.
    pub(super) fn allow_more(
        &self,
        query: teloxide::types::CallbackQuery,
        chat: ChatId,
        key: valor_protocol::budget::CapKey,
        allowed: bool,
    ) {
        let bot = self.inner.bot.clone();
        let user = i64::try_from(query.from.id.0).unwrap_or(i64::MAX);
        let role = if allowed {
            self.role(user)
        } else {
            Role::default()
        };
        let pressed = (role >= Role::Approver).then(|| {
            (self.inner.conversations).submit(valor_protocol::Op::AllowMore {
                chat_id: chat.0,
                key,
                by: Some(user),
                anywhere: role >= Role::Admin,
            })
        });
        tokio::spawn(async move {
            let word = match pressed {
                None => "Only an approver or an admin can allow more.".to_owned(),
                Some(mut events) => match events.next().await {
                    Some(valor_protocol::Event::Decided(word)) => word,
                    _ => "Sorry, something went wrong.".to_owned(),
                },
            };
            let _ = bot.answer_callback_query(query.id).text(word).await;
        });
    }

    /// A budget notice for an admin's chat (about any chat, or Valor's own work), with
    /// [Allow more].
    pub fn post_budget_notice(&self, chat_id: i64, notice: valor_protocol::budget::BudgetNotice) {
        let pacer = self.pacer(chat_id, chat_id > 0);
        let bot = self.inner.bot.clone();
        tokio::spawn(async move {
            crate::budget::show(&bot, ChatId(chat_id), &pacer, &notice, true).await;
        });
    }

    /// A stranger's `/pair CODE`: a pending code adds them to the allow-list for good.
    pub(super) async fn pair(
        &self,
        chat: ChatId,
        user_id: i64,
        private: bool,
        code: &str,
    ) -> Result<(), ChannelError> {
        let now = Instant::now();
        {
            let mut attempts = self
                .inner
                .pair_attempts
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            forget_older(&mut attempts, now, |(_, first)| *first);
            let entry = attempts.entry(user_id).or_insert((0, now));
            if now.duration_since(entry.1) >= REFUSAL_EVERY {
                *entry = (0, now);
            }
            if entry.0 >= PAIR_ATTEMPTS {
                return Ok(());
            }
        }
        let redeemed = self.inner.pairing.redeem_role(code).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot check a pairing code");
            None
        });
        if let Some(role) = redeemed {
            self.inner.store.add_paired_user(user_id).await?;
            if role > Role::Chatter {
                self.inner.store.set_paired_role(user_id, role).await?;
                (self
                    .inner
                    .roles
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner))
                .insert(user_id, role);
            }
            self.inner
                .allowed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(user_id);
            tracing::info!(user_id, role = role.as_str(), "a user paired");
            self.reply(
                chat,
                private,
                "Paired. Welcome: I'll answer you from now on. /help says what I can do.",
            );
        } else {
            let mut attempts = self
                .inner
                .pair_attempts
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = attempts.get_mut(&user_id) {
                entry.0 += 1;
            }
            self.reply_stranger(
                chat,
                "That code is not valid. Codes work once and last 10 minutes: ask the operator for a new one.",
            );
        }
        Ok(())
    }

    /// At most one refusal an hour per user; nothing else happens.
    pub(super) fn refuse(&self, chat: ChatId, user_id: i64) {
        let now = Instant::now();
        let mut refused = self
            .inner
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if refused
            .get(&user_id)
            .is_some_and(|at| now.duration_since(*at) < REFUSAL_EVERY)
        {
            return;
        }
        forget_older(&mut refused, now, |at| *at);
        refused.insert(user_id, now);
        drop(refused);
        self.inner.refusals.fetch_add(1, Ordering::Relaxed);
        if let Some(count) = &self.inner.on_refusal {
            count();
        }
        tracing::info!(user_id, "refused a user who is not on the allow-list");
        self.reply_stranger(
            chat,
            &format!(
                "Sorry, I only talk to people I know. Ask my operator to add your Telegram id \
                 {user_id} to the allow-list."
            ),
        );
    }

    /// Answers someone who is not allowed: no chat worker or pacer is made for them (strangers
    /// could make any number); these answers are already limited to one an hour per user.
    fn reply_stranger(&self, chat: ChatId, text: &str) {
        let bot = self.inner.bot.clone();
        let budget = std::sync::Arc::clone(&self.inner.budget);
        let text = text.to_owned();
        tokio::spawn(async move {
            budget.take().await;
            if let Err(e) = bot.send_message(chat, text).await {
                tracing::warn!(chat_id = chat.0, error = %e, "cannot answer a stranger");
            }
        });
    }

    /// `/pair [chatter|approver|admin]` from someone already allowed: an admin in a private
    /// chat gets a one-time code for a new user with that role; anyone else is told they are
    /// paired already.
    pub(super) fn pair_code(&self, user_id: i64, private: bool, role: &str) -> String {
        if self.role(user_id) < Role::Admin {
            return "You are already paired.".to_owned();
        }
        if !private {
            return "Ask me for a pairing code in a private chat: anyone here could use it."
                .to_owned();
        }
        let role = match role {
            "" => Role::Chatter,
            other => match Role::parse(other) {
                Some(role) => role,
                None => return "Which role? /pair, /pair approver or /pair admin.".to_owned(),
            },
        };
        match self.inner.pairing.issue_for(role) {
            Ok(code) => {
                tracing::info!(
                    user_id,
                    role = role.as_str(),
                    "an admin issued a pairing code"
                );
                format!(
                    "Pairing code for a new {}: {code}\nValid for 10 minutes, once. They send me: /pair {code}",
                    role.as_str()
                )
            }
            Err(e) => format!("No code: {e}"),
        }
    }

    /// Users on the allow-list by pairing (the configured ones are in `[telegram]`).
    pub async fn paired_users(&self) -> Result<Vec<i64>, ChannelError> {
        Ok(self.inner.store.paired_users().await?)
    }

    /// Takes a paired user off the allow-list, at once and for good; false when they were
    /// not paired. Their waiting messages are not answered after a restart either.
    pub async fn revoke(&self, user_id: i64) -> Result<bool, ChannelError> {
        let removed = self.inner.store.remove_paired_user(user_id).await?;
        if removed {
            self.inner
                .allowed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&user_id);
            (self
                .inner
                .roles
                .lock()
                .unwrap_or_else(PoisonError::into_inner))
            .remove(&user_id);
            tracing::warn!(user_id, "pairing revoked");
        }
        Ok(removed)
    }
}

/// `GET /telegram/paired` and `DELETE /telegram/paired/{id}`, behind the memory API's token:
/// `valor pair --list` and `--revoke` while `valor run` holds the store.
pub fn router(channel: TelegramChannel, token: &str) -> axum::Router {
    axum::Router::new()
        .route("/telegram/paired", axum::routing::get(list))
        .route("/telegram/paired/{id}", axum::routing::delete(revoke))
        .route_layer(axum::middleware::from_fn_with_state(
            BearerGate::new(
                token,
                "missing or wrong token (it is in the file <store>.api-token)",
            ),
            require_bearer,
        ))
        .with_state(channel)
}

async fn list(State(channel): State<TelegramChannel>) -> Response {
    match channel.paired_users().await {
        Ok(users) => axum::Json(json!({ "paired": users })).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn revoke(State(channel): State<TelegramChannel>, Path(id): Path<i64>) -> Response {
    match channel.revoke(id).await {
        Ok(true) => axum::Json(json!({ "revoked": id })).into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": format!("user {id} is not paired")})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}
