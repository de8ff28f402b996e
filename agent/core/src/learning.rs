//! The `Learning` seam: learning from conversations as every channel uses it (valor-learn
//! implements it over the store). The watcher's "Remember this?" question about a user's
//! message, its answer (a button or a typed yes/no), and the learning commands.
//!
//! Async: a call may embed text (the implementation does that on the blocking pool) or write
//! the store.

use valor_protocol::Command;
pub use valor_protocol::{Answered, Question};

#[async_trait::async_trait]
pub trait Learning: Send + Sync {
    /// The question worth asking about a user's message, recorded as pending, if any.
    /// `author`: whose message it is (in a group, only they answer its question).
    async fn watch(
        &self,
        chat_id: i64,
        author: Option<i64>,
        text: &str,
        source: &str,
    ) -> Option<Question>;
    /// A yes or a no to question `id`, from chat `chat_id`: settled once, and only by the
    /// chat it was asked in; a yes keeps what it proposed.
    async fn answer(&self, chat_id: i64, id: u64, yes: bool) -> Answered;
    /// The operator's answer (the dashboard): as [`Learning::answer`], and a yes also takes a
    /// question that was declined or expired (the operator changes its answer).
    async fn decide(&self, chat_id: i64, id: u64, yes: bool) -> Answered {
        self.answer(chat_id, id, yes).await
    }
    /// `/learnings`: the chat's active learnings, numbered.
    async fn list(&self, chat_id: i64) -> String;
    /// The answer to `/learnings review`: learnings contradicted since, to look at again.
    async fn review(&self, chat_id: i64) -> String {
        let _ = chat_id;
        "Nothing to review.".to_owned()
    }
    /// `/forget N`.
    async fn forget(&self, chat_id: i64, number: u64) -> String;
    /// `/remember <text>`: a learning the user typed.
    async fn remember(&self, chat_id: i64, text: &str, source: &str) -> String;
    /// Settles the questions asked before `now_ms` minus their time as expired and forgets
    /// settled ones older than the kept window: the questions expired now.
    async fn expire(&self, now_ms: u64) -> Vec<Expired>;
}

/// A question nobody answered in its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub question: Question,
    /// The line that takes its place.
    pub line: String,
}

/// The answer to a learning command (`None` for another command).
pub async fn command(
    learning: &dyn Learning,
    chat_id: i64,
    command: &Command,
    source: &str,
) -> Option<String> {
    Some(match command {
        Command::Learnings { review: true } => learning.review(chat_id).await,
        Command::Learnings { review: false } => learning.list(chat_id).await,
        Command::Forget(Some(number)) => learning.forget(chat_id, *number).await,
        Command::Forget(None) => {
            "Which one? Send /forget N with a number from /learnings.".to_owned()
        }
        Command::Remember(text) if text.trim().is_empty() => {
            "What should I remember? Send /remember followed by it.".to_owned()
        }
        Command::Remember(text) => {
            learning
                .remember(chat_id, &valor_redact::redact(text), source)
                .await
        }
        Command::Status | Command::Cost => return None,
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
