//! "Remember this?": a proposed memory asked in the chat with [Remember] [Not now]. Nothing is
//! stored until the user says yes; the question expires after ten minutes; every button press
//! is answered (Telegram shows a spinner until it is), and a second press finds it settled.

use std::sync::Arc;

use teloxide::Bot;
use teloxide::payloads::{AnswerCallbackQuerySetters as _, SendMessageSetters as _};
use teloxide::prelude::Requester as _;
use teloxide::types::{
    CallbackQueryId, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, MessageId,
};
use valor_memory::{MemoryRecord, Proposal, ProposalState, Store};

use crate::pacer::ChatPacer;

const PREFIX: &str = "rem:";

pub use valor_memory::proposals::Learning;

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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The answer to `/learnings`, `/forget N` or `/remember <text>` (`args` is what follows the
/// command). Blocking: call it off the async threads.
pub fn command(
    learning: &dyn Learning,
    chat_id: i64,
    command: &str,
    args: &str,
    source: &str,
) -> String {
    match command {
        "/learnings" => learning.list(chat_id),
        "/forget" => match args.trim().trim_start_matches('#').parse::<u64>() {
            Ok(number) => learning.forget(chat_id, number),
            Err(_) => "Which one? Send /forget N with a number from /learnings.".to_owned(),
        },
        "/remember" if args.trim().is_empty() => {
            "What should I remember? Send /remember followed by it.".to_owned()
        }
        "/remember" => learning.remember(chat_id, args, source),
        _ => String::new(),
    }
}

/// Asks in the chat; the question's message id is kept with the proposal.
pub async fn ask(
    bot: &Bot,
    store: &Store,
    pacer: &ChatPacer,
    proposal: &Proposal,
) -> Result<(), teloxide::RequestError> {
    let keyboard = InlineKeyboardMarkup::new(vec![vec![
        InlineKeyboardButton::callback("Remember", callback_data(proposal.id, true)),
        InlineKeyboardButton::callback("Not now", callback_data(proposal.id, false)),
    ]]);
    let text: String = format!("Remember this?\n\n{}", proposal.text)
        .chars()
        .take(4000)
        .collect();
    pacer.acquire(true).await;
    let sent = bot
        .send_message(ChatId(proposal.chat_id), text)
        .reply_markup(keyboard)
        .await?;
    if let Err(e) = store.set_proposal_message(proposal.id, i64::from(sent.id.0)) {
        tracing::warn!(error = %e, "cannot note the question's message");
    }
    Ok(())
}

/// Handles a press of [Remember] or [Not now]: settles the proposal once, stores the memory
/// on a yes, answers the press, and replaces the question by the outcome.
#[allow(clippy::too_many_arguments)]
pub async fn answer(
    bot: &Bot,
    store: &Store,
    learning: Option<Arc<dyn Learning>>,
    pacer: &ChatPacer,
    query: CallbackQueryId,
    chat: ChatId,
    id: u64,
    yes: bool,
) {
    let owner = store.proposal(id).ok().flatten().map(|p| p.chat_id);
    if owner.is_some_and(|owner| owner != chat.0) {
        tracing::warn!(
            chat_id = chat.0,
            proposal = id,
            "a button press for another chat's question; ignored"
        );
        if let Err(e) = bot
            .answer_callback_query(query)
            .text("This question is not yours.")
            .await
        {
            tracing::warn!(chat_id = chat.0, error = %e, "cannot answer a button press");
        }
        return;
    }
    let (reply, edit) = match store.settle_proposal(id, chat.0, yes, now_ms()) {
        Ok(Some((ProposalState::Pending, proposal))) => match (proposal.state, learning) {
            (ProposalState::Accepted, Some(learning))
                if proposal.kind == valor_memory::MemoryKind::Learning =>
            {
                let kept = tokio::task::spawn_blocking(move || learning.accept(&proposal))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                match kept {
                    Ok(line) => ("Remembered.", Some(line)),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot keep an accepted learning");
                        ("Sorry, I could not store it.", None)
                    }
                }
            }
            (ProposalState::Accepted, _) => {
                let saved = store.save_memory(MemoryRecord {
                    id: 0,
                    kind: proposal.kind,
                    chat_id: Some(proposal.chat_id),
                    at_ms: now_ms(),
                    title: valor_memory::headline(&proposal.text, 80),
                    text: proposal.text.clone(),
                    url: None,
                });
                match saved {
                    Ok(_) => (
                        "Remembered.",
                        Some(format!("Remembered: {}", proposal.text)),
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot store an accepted memory");
                        ("Sorry, I could not store it.", None)
                    }
                }
            }
            (ProposalState::Expired, _) => (
                "This question has expired.",
                Some(format!(
                    "Not stored (the question expired): {}",
                    proposal.text
                )),
            ),
            _ => (
                "Not stored.",
                Some(format!("Not stored: {}", proposal.text)),
            ),
        },
        Ok(Some(_)) => ("Already answered.", None),
        Ok(None) => ("This question is no longer open.", None),
        Err(e) => {
            tracing::error!(error = %e, "cannot settle a proposal");
            ("Sorry, something went wrong.", None)
        }
    };
    if let Err(e) = bot.answer_callback_query(query).text(reply).await {
        tracing::warn!(error = %e, "cannot answer a button press");
    }
    let message = store.proposal(id).ok().flatten().and_then(|p| p.message_id);
    if let (Some(text), Some(message_id)) = (edit, message) {
        let message_id = MessageId(i32::try_from(message_id).unwrap_or(0));
        // An edit counts against the chat's flood limit like a message: paced, 429s waited out.
        for _ in 0..3 {
            pacer.acquire(true).await;
            match bot.edit_message_text(chat, message_id, text.clone()).await {
                Ok(_) => break,
                Err(teloxide::RequestError::RetryAfter(wait)) => pacer.flood_wait(wait.duration()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot replace the question by its outcome");
                    break;
                }
            }
        }
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
