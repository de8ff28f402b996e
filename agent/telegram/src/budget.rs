//! Spend caps in the chat: a notice when a cap comes near (with [Allow more] and [Stop]) or is
//! spent (with [Allow more]); the same to the admins' chats; the usage limit's line.

use teloxide::RequestError;
use teloxide::payloads::SendMessageSetters as _;
use teloxide::requests::Requester;
use teloxide::types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup};
use valor_protocol::TurnError;
use valor_protocol::TurnErrorKind;
use valor_protocol::budget::{BudgetNotice, CapKey};

use crate::pacer::ChatPacer;

const PREFIX: &str = "bu:";

/// [Allow more]'s data (well under Telegram's 64 bytes: `bu:chat:-1001234567890:month`).
pub fn callback_data(key: CapKey) -> String {
    format!("{PREFIX}{}", key.code())
}

/// The cap an [Allow more] press names, if the data is one.
pub fn parse(data: &str) -> Option<CapKey> {
    CapKey::parse_code(data.strip_prefix(PREFIX)?)
}

fn keyboard(notice: &BudgetNotice) -> InlineKeyboardMarkup {
    let allow = InlineKeyboardButton::callback(
        format!("Allow +{}", notice.unit.show(notice.step)),
        callback_data(notice.key),
    );
    let mut row = vec![allow];
    if !notice.reached {
        row.push(InlineKeyboardButton::callback(
            "Stop",
            crate::progress::STOP_DATA,
        ));
    }
    InlineKeyboardMarkup::new(vec![row])
}

/// Tells the chat of a notice (an admin's chat: `for_admin`, naming whose run), with its
/// buttons.
pub async fn show<R: Requester<Err = RequestError>>(
    bot: &R,
    chat: ChatId,
    pacer: &ChatPacer,
    notice: &BudgetNotice,
    for_admin: bool,
) {
    let text = if for_admin {
        admin_text(notice)
    } else {
        notice.text(valor_protocol::time::now_ms())
    };
    let sent = pacer
        .send_essential(|| {
            bot.send_message(chat, text.clone())
                .reply_markup(keyboard(notice))
                .into_future()
        })
        .await;
    if let Err(e) = sent {
        tracing::warn!(chat_id = chat.0, error = %e, "cannot send a budget notice");
    }
}

/// A notice as an admin reads it, about another chat or Valor's own work.
pub fn admin_text(notice: &BudgetNotice) -> String {
    let about = match valor_protocol::turn::background_name(notice.chat_id) {
        Some(job) => format!("Valor's {job}"),
        None => format!("chat {}", notice.chat_id),
    };
    format!(
        "{} (a run of {about})",
        notice.text(valor_protocol::time::now_ms())
    )
}

/// What a failed turn says: the error's own message, and for the usage limit until when
/// (and that the turn goes on by itself then).
pub fn failure_text(error: &TurnError) -> String {
    match (error.kind, error.retry_at_ms) {
        (TurnErrorKind::UsageLimit, Some(at)) => format!(
            "⏳ Claude's usage limit is reached until {}. I'll continue then.",
            valor_protocol::time::clock_time(at, valor_protocol::time::now_ms())
        ),
        _ => error.user_message().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use valor_protocol::budget::{Period, Scope};

    #[test]
    fn allow_more_data_round_trips_fits_and_refuses_forgeries() {
        let key = CapKey::new(Scope::Chat(-1_001_234_567_890), Period::Month);
        let data = callback_data(key);
        assert!(data.len() <= 64, "{data}");
        assert_eq!(parse(&data), Some(key));
        for forged in ["bu:", "bu:job:1:day", "ap:1:o", "bu:chat:1:year", "stop"] {
            assert_eq!(parse(forged), None, "{forged}");
        }
    }

    #[test]
    fn the_usage_limit_says_until_when() {
        let at = valor_protocol::time::now_ms() + 3_600_000;
        let error = TurnError::new(TurnErrorKind::UsageLimit, "limit").retry_at(at);
        let text = failure_text(&error);
        assert!(
            text.contains("until") && text.contains("UTC") && text.contains("continue"),
            "{text}"
        );
        let plain = TurnError::new(TurnErrorKind::Overloaded, "x");
        assert_eq!(failure_text(&plain), plain.user_message());
    }
}
