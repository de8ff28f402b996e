//! "Remember this?": a proposed memory asked in the chat with [Remember] [Not now]. Nothing is
//! stored until the user says yes; the question expires after ten minutes; every button press
//! is answered (Telegram shows a spinner until it is), and a second press finds it settled.

use teloxide::Bot;
use teloxide::payloads::{AnswerCallbackQuerySetters as _, SendMessageSetters as _};
use teloxide::prelude::Requester as _;
use teloxide::types::{
    CallbackQueryId, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, MessageId,
};
use valor_protocol::{Event, Events, Question};

use crate::pacer::ChatPacer;

const PREFIX: &str = "rem:";

/// The button's callback data (well under Telegram's 64 bytes: `rem:` + an id + `:y`).
pub fn callback_data(id: u64, yes: bool) -> String {
    format!("{PREFIX}{id}:{}", if yes { "y" } else { "n" })
}

/// (proposal id, yes) from a button's data, if it is one of these.
pub fn parse(data: &str) -> Option<(u64, bool)> {
    let (id, answer) = data.strip_prefix(PREFIX)?.split_once(':')?;
    let yes = match answer {
        "y" => true,
        "n" => false,
        _ => return None,
    };
    Some((id.parse().ok()?, yes))
}

/// Asks in the chat; the question's message id is kept with the question.
pub async fn ask(
    bot: &Bot,
    store: &dyn crate::inbox::QuestionMessages,
    pacer: &ChatPacer,
    question: &Question,
) -> Result<(), teloxide::RequestError> {
    let keyboard = InlineKeyboardMarkup::new(vec![vec![
        InlineKeyboardButton::callback("Remember", callback_data(question.id, true)),
        InlineKeyboardButton::callback("Not now", callback_data(question.id, false)),
    ]]);
    let text: String = format!("Remember this?\n\n{}", valor_redact::redact(&question.text))
        .chars()
        .take(4000)
        .collect();
    pacer.acquire(true).await;
    let sent = bot
        .send_message(ChatId(question.chat_id), text)
        .reply_markup(keyboard)
        .await?;
    if let Err(e) = store
        .set_proposal_message(question.id, i64::from(sent.id.0))
        .await
    {
        tracing::warn!(error = %e, "cannot note the question's message");
    }
    Ok(())
}

/// Answers a press of [Remember] or [Not now] with what the conversation service made of it
/// (`answered`: settled once, only by the chat it was asked in), and replaces the question by
/// the outcome.
pub async fn answer(
    bot: &Bot,
    store: &dyn crate::inbox::QuestionMessages,
    pacer: &ChatPacer,
    query: CallbackQueryId,
    chat: ChatId,
    id: u64,
    mut answered: Events,
) {
    let (reply, outcome) = match answered.next().await {
        Some(Event::Answered(a)) => (a.reply, a.outcome),
        _ => ("Sorry, something went wrong.".to_owned(), None),
    };
    if let Err(e) = bot.answer_callback_query(query).text(reply).await {
        tracing::warn!(chat_id = chat.0, error = %e, "cannot answer a button press");
    }
    if let Some(text) = outcome {
        settle_question(bot, store, pacer, chat, id, &text).await;
    }
}

/// Replaces question `id`'s message by `text`: the buttons go with it (an edit without a
/// keyboard drops the keyboard).
pub async fn settle_question(
    bot: &Bot,
    store: &dyn crate::inbox::QuestionMessages,
    pacer: &ChatPacer,
    chat: ChatId,
    id: u64,
    text: &str,
) {
    let message = store
        .proposal(id)
        .await
        .ok()
        .flatten()
        .and_then(|p| p.message_id);
    let Some(message_id) = message else {
        return;
    };
    let message_id = MessageId(i32::try_from(message_id).unwrap_or(0));
    // An edit counts against the chat's flood limit like a message: paced, 429s waited out.
    let edited = pacer
        .send_essential(|| bot.edit_message_text(chat, message_id, text).into_future())
        .await;
    if let Err(e) = edited {
        tracing::warn!(chat_id = chat.0, error = %e, "cannot replace the question by its outcome");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_data_round_trips_and_fits() {
        let data = callback_data(u64::MAX, true);
        assert!(data.len() <= 64);
        assert_eq!(parse(&data), Some((u64::MAX, true)));
        assert_eq!(parse(&callback_data(7, false)), Some((7, false)));
        for bad in ["rem:7", "rem:x:y", "other:7:y", "rem:7:maybe"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
