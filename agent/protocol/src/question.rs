//! "Remember this?": a question the learning watcher asks, and what answering it did.

/// A "Remember this?" question asked in a chat, waiting for a yes or a no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Settled by this id, once.
    pub id: u64,
    pub chat_id: i64,
    /// What would be remembered.
    pub text: String,
    /// The user whose message it came from (`None`: the daydream's, anyone's).
    pub asked_of: Option<i64>,
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
