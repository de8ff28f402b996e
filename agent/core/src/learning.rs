//! The `Learning` seam: learning from conversations as every channel uses it (valor-learn
//! implements it over the store). The watcher's "Remember this?" question about a user's
//! message, its answer (a button or a typed yes/no), and the learning commands.
//!
//! Calls may embed text or write the store (milliseconds): callers make them off the async
//! threads.

/// A "Remember this?" question asked in a chat, waiting for a yes or a no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Settled by this id, once.
    pub id: u64,
    pub chat_id: i64,
    /// What would be remembered.
    pub text: String,
}

/// What answering a question did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// A short word for whoever answered ("Remembered.", "Already answered.").
    pub reply: String,
    /// The line that takes the question's place, when it was settled now.
    pub outcome: Option<String>,
    /// The question answered (set by the conversation service), so a channel can take its
    /// buttons away.
    pub question: Option<u64>,
}

impl Answered {
    pub fn only(reply: impl Into<String>) -> Answered {
        Answered {
            reply: reply.into(),
            outcome: None,
            question: None,
        }
    }

    /// A reply and the line that takes the question's place.
    pub fn settled(reply: impl Into<String>, outcome: impl Into<String>) -> Answered {
        Answered {
            reply: reply.into(),
            outcome: Some(outcome.into()),
            question: None,
        }
    }
}

pub trait Learning: Send + Sync {
    /// The question worth asking about a user's message, recorded as pending, if any.
    fn watch(&self, chat_id: i64, text: &str, source: &str) -> Option<Question>;
    /// A yes or a no to question `id`, from chat `chat_id`: settled once, and only by the
    /// chat it was asked in; a yes keeps what it proposed.
    fn answer(&self, chat_id: i64, id: u64, yes: bool) -> Answered;
    /// `/learnings`: the chat's active learnings, numbered.
    fn list(&self, chat_id: i64) -> String;
    /// The answer to `/learnings review`: learnings contradicted since, to look at again.
    fn review(&self, chat_id: i64) -> String {
        let _ = chat_id;
        "Nothing to review.".to_owned()
    }
    /// `/forget N`.
    fn forget(&self, chat_id: i64, number: u64) -> String;
    /// `/remember <text>`: a learning the user typed.
    fn remember(&self, chat_id: i64, text: &str, source: &str) -> String;
}

/// The answer to `/learnings`, `/forget N` or `/remember <text>` (`args` is what follows the
/// command); `None` for another command. Blocking.
pub fn command(
    learning: &dyn Learning,
    chat_id: i64,
    command: &str,
    args: &str,
    source: &str,
) -> Option<String> {
    Some(match command {
        "/learnings" if args.trim().eq_ignore_ascii_case("review") => learning.review(chat_id),
        "/learnings" => learning.list(chat_id),
        "/forget" => match args.trim().trim_start_matches('#').parse::<u64>() {
            Ok(number) => learning.forget(chat_id, number),
            Err(_) => "Which one? Send /forget N with a number from /learnings.".to_owned(),
        },
        "/remember" if args.trim().is_empty() => {
            "What should I remember? Send /remember followed by it.".to_owned()
        }
        "/remember" => learning.remember(chat_id, args, source),
        _ => return None,
    })
}

/// A typed answer to "Remember this?": yes, no, or not an answer (a new message).
pub fn typed_answer(line: &str) -> Option<bool> {
    let words: String = line
        .trim()
        .trim_end_matches(['.', '!'])
        .to_lowercase()
        .replace('’', "'");
    match words.as_str() {
        "y" | "yes" | "yes please" | "sure" | "ok" | "remember" | "remember that"
        | "remember it" | "remember this" => Some(true),
        "n" | "no" | "nope" | "no thanks" | "not now" | "don't" | "dont" | "forget it" => {
            Some(false)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_answers_are_yes_no_or_a_new_message() {
        for yes in ["y", "Yes", "yes please!", "Remember that.", "OK"] {
            assert_eq!(typed_answer(yes), Some(true), "{yes}");
        }
        for no in ["n", "No.", "not now", "Don’t", "forget it"] {
            assert_eq!(typed_answer(no), Some(false), "{no}");
        }
        for other in ["yes, and also the tests", "what?", ""] {
            assert_eq!(typed_answer(other), None, "{other}");
        }
    }
}
