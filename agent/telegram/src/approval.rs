//! Approvals in the chat: the whole command or diff (a file first when it is too long for a
//! message: never buttons under a cut view), Valor's sentence on what it will do, the model's
//! own words marked as such, and [Allow once] [Allow exactly this for the session] [Deny]. A
//! reminder follows when it waits long; once decided, the question becomes its outcome.

use std::time::Duration;

use teloxide::RequestError;
use teloxide::payloads::{
    EditMessageTextSetters as _, SendDocumentSetters as _, SendMessageSetters as _,
};
use teloxide::requests::Requester;
use teloxide::types::{
    ChatId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, MessageId, ParseMode,
    ReplyParameters,
};
use valor_protocol::approval::{Approval, Decision};

use crate::format::escape_html;
use crate::pacer::ChatPacer;

const PREFIX: &str = "ap:";
/// The longest effect shown in the message itself (Telegram's 4096 leaves room for the rest).
const INLINE_CHARS: usize = 3000;

/// A button's data (well under Telegram's 64 bytes).
pub fn callback_data(id: u64, decision: Decision) -> String {
    let code = match decision {
        Decision::AllowOnce => "o",
        Decision::AllowSession => "s",
        _ => "d",
    };
    format!("{PREFIX}{id}:{code}")
}

/// (approval id, decision) from a button's data, if it is one of these.
pub fn parse(data: &str) -> Option<(u64, Decision)> {
    let (id, code) = data.strip_prefix(PREFIX)?.split_once(':')?;
    let decision = match code {
        "o" => Decision::AllowOnce,
        "s" => Decision::AllowSession,
        "d" => Decision::Deny,
        _ => return None,
    };
    Some((id.parse().ok()?, decision))
}

fn keyboard(id: u64) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(vec![
        vec![
            InlineKeyboardButton::callback("Allow once", callback_data(id, Decision::AllowOnce)),
            InlineKeyboardButton::callback("Deny", callback_data(id, Decision::Deny)),
        ],
        vec![InlineKeyboardButton::callback(
            "Allow exactly this for the session",
            callback_data(id, Decision::AllowSession),
        )],
    ])
}

/// `text` with what a reader could not see made visible: control, invisible and
/// direction-changing characters as `⟨U+XXXX⟩` (a newline stays a line break).
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let hidden = (c.is_control() && !matches!(c, '\n' | '\t'))
            || matches!(u32::from(c),
                0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
                | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
                | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0xE0000..=0xE0FFF);
        if hidden {
            out.push_str(&format!("⟨U+{:04X}⟩", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The question's text (HTML); `in_file`: the effect went as a file just before.
pub fn question_html(approval: &Approval, in_file: bool, now_ms: u64) -> String {
    let ask = &redacted(&approval.ask);
    let shown = visible(&ask.what);
    let mut html = format!(
        "🔐 <b>Approval needed</b> ({})\n{}\n",
        escape_html(&ask.tool),
        escape_html(&ask.sentence)
    );
    if in_file {
        html.push_str(&format!(
            "\nThe whole of it is in the file above ({} characters, {} lines): read it before you answer.\n",
            ask.what.chars().count(),
            ask.what.lines().count().max(1)
        ));
    } else {
        html.push_str(&format!("<pre>{}</pre>\n", escape_html(&shown)));
    }
    if let Some(claimed) = ask.claimed.as_deref().filter(|c| !c.trim().is_empty()) {
        let claimed: String = visible(claimed).chars().take(300).collect();
        html.push_str(&format!(
            "Claude says it is to: <i>{}</i>\n",
            escape_html(&claimed)
        ));
    }
    let left = Duration::from_millis(approval.deadline_ms.saturating_sub(now_ms));
    html.push_str(&format!("No answer within {} denies it.", in_words(left)));
    html
}

/// `5 min`, or `40 s` under a minute.
fn in_words(left: Duration) -> String {
    match left.as_secs() {
        secs if secs < 60 => format!("{} s", secs.max(1)),
        secs => format!("{} min", secs.div_ceil(60)),
    }
}

/// The ask with its secrets redacted (the person sees `[redacted]` where a key was).
fn redacted(ask: &valor_protocol::approval::ApprovalAsk) -> valor_protocol::approval::ApprovalAsk {
    valor_protocol::approval::ApprovalAsk {
        what: valor_redact::redact_owned(ask.what.clone()),
        sentence: valor_redact::redact_owned(ask.sentence.clone()),
        claimed: ask.claimed.clone().map(valor_redact::redact_owned),
        ..ask.clone()
    }
}

/// Whether the effect goes as a file (too long for a message beside its question).
pub fn needs_file(approval: &Approval) -> bool {
    visible(&approval.ask.what).chars().count() > INLINE_CHARS
}

/// Asks in the chat: the file first when needed, then the question with its buttons. The
/// question's message, or `None` when it could not be sent (the timeout then denies).
pub async fn show<R: Requester<Err = RequestError>>(
    bot: &R,
    chat: ChatId,
    pacer: &ChatPacer,
    approval: &Approval,
) -> Option<MessageId> {
    let in_file = needs_file(approval);
    if in_file {
        let file =
            InputFile::memory(valor_redact::redact_owned(approval.ask.what.clone()).into_bytes())
                .file_name(format!("approval-{}.txt", approval.id));
        let sent = pacer
            .send_essential(|| {
                bot.send_document(chat, file.clone())
                    .caption(format!(
                        "The whole {} to approve",
                        approval.ask.kind.as_str()
                    ))
                    .into_future()
            })
            .await;
        if let Err(e) = sent {
            // Without the file the question would show a cut view: it is not asked.
            tracing::warn!(chat_id = chat.0, approval = approval.id, error = %e, "cannot send the approval's file");
            return None;
        }
    }
    let html = question_html(approval, in_file, valor_protocol::time::now_ms());
    let sent = pacer
        .send_essential(|| {
            bot.send_message(chat, html.clone())
                .parse_mode(ParseMode::Html)
                .reply_markup(keyboard(approval.id))
                .into_future()
        })
        .await;
    match sent {
        Ok(message) => Some(message.id),
        Err(e) => {
            tracing::warn!(chat_id = chat.0, approval = approval.id, error = %e, "cannot ask for an approval");
            None
        }
    }
}

/// A reminder under the question (a new message: it notifies the phone).
pub async fn remind<R: Requester<Err = RequestError>>(
    bot: &R,
    chat: ChatId,
    pacer: &ChatPacer,
    question: MessageId,
    deadline_ms: u64,
) {
    let left = Duration::from_millis(deadline_ms.saturating_sub(valor_protocol::time::now_ms()));
    let text = format!(
        "⏳ Still waiting for your approval above; no answer within {} denies it.",
        in_words(left)
    );
    let sent = pacer
        .send_essential(|| {
            bot.send_message(chat, text.clone())
                .reply_parameters(ReplyParameters::new(question).allow_sending_without_reply())
                .into_future()
        })
        .await;
    if let Err(e) = sent {
        tracing::warn!(chat_id = chat.0, error = %e, "cannot remind of an approval");
    }
}

/// The question becomes its outcome, its buttons gone.
pub async fn settle<R: Requester<Err = RequestError>>(
    bot: &R,
    chat: ChatId,
    pacer: &ChatPacer,
    question: MessageId,
    line: &str,
) {
    let line: String = valor_redact::redact_owned(visible(line))
        .chars()
        .take(4000)
        .collect();
    let edited = pacer
        .send_essential(|| {
            bot.edit_message_text(chat, question, line.clone())
                .reply_markup(InlineKeyboardMarkup::new(
                    Vec::<Vec<InlineKeyboardButton>>::new(),
                ))
                .into_future()
        })
        .await;
    if let Err(e) = edited {
        tracing::warn!(chat_id = chat.0, error = %e, "cannot settle an approval's message");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use valor_protocol::approval::{ApprovalAsk, ApprovalKind};

    fn approval(what: &str) -> Approval {
        Approval {
            id: 77,
            ask: ApprovalAsk {
                chat_id: 5,
                kind: ApprovalKind::Command,
                tool: "Bash".to_owned(),
                what: what.to_owned(),
                sentence: "Runs this shell command.".to_owned(),
                claimed: Some("List <files>".to_owned()),
                exact: what.to_owned(),
            },
            deadline_ms: 1_000 + 300_000,
            remind_ms: None,
        }
    }

    #[test]
    fn buttons_round_trip_and_foreign_data_is_not_an_answer() {
        for decision in [Decision::AllowOnce, Decision::AllowSession, Decision::Deny] {
            let data = callback_data(123_456_789_012, decision);
            assert!(data.len() <= 64);
            assert_eq!(parse(&data), Some((123_456_789_012, decision)));
        }
        for foreign in ["rem:1:y", "ap:x:o", "ap:1:t", "ap:1", "stop"] {
            assert_eq!(parse(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn the_question_shows_the_whole_command_with_hidden_characters_made_visible() {
        let command = "ls\nrm -rf ~ <x> &\u{202e}txt.sh\u{200b}";
        let html = question_html(&approval(command), false, 1_000);
        assert!(
            html.contains("<pre>ls\nrm -rf ~ &lt;x&gt; &amp;⟨U+202E⟩txt.sh⟨U+200B⟩</pre>"),
            "{html}"
        );
        assert!(
            html.contains("Claude says it is to: <i>List &lt;files&gt;</i>"),
            "{html}"
        );
        assert!(html.contains("within 5 min"), "{html}");
        assert!(!needs_file(&approval(command)));
    }

    #[test]
    fn a_long_effect_goes_as_a_file_and_the_question_says_so() {
        let long = "echo x\n".repeat(1000);
        assert!(needs_file(&approval(&long)));
        let html = question_html(&approval(&long), true, 1_000);
        assert!(!html.contains("echo x"), "no cut view: {html}");
        assert!(html.contains("7000 characters, 1000 lines"), "{html}");
    }
}
