//! The seam to long-term memory: before a turn the engine asks for what is worth remembering
//! about the request, and the inject step lays it out with progressive disclosure (seed 003):
//! the best few with a short excerpt, the rest as titles the model can ask about by id.

/// One memory brought back for a turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Recollection {
    pub id: u64,
    /// `message`, `link`, `learning` or `insight`.
    pub kind: String,
    /// Unix milliseconds.
    pub at_ms: u64,
    pub title: String,
    /// A short excerpt of the text.
    pub excerpt: String,
}

/// A learning the user confirmed, for the context of a turn (seed 003's "project knowledge").
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedFact {
    /// Its memory id (left out of the memories recalled beside it).
    pub id: u64,
    /// Its number in the chat (`/forget N`).
    pub number: u64,
    pub category: String,
    pub text: String,
    pub confidence: f32,
}

/// Long-term memory as the engine sees it.
pub trait Recall: Send + Sync {
    /// The memories most relevant to `text` in `chat_id` (that chat's and shared ones), best
    /// first, leaving out the ids in `exclude` (already in the prompt). Runs inside a turn, so
    /// it answers from what it has now and never waits for indexing.
    fn recall(&self, chat_id: i64, text: &str, exclude: &[u64]) -> Vec<Recollection>;

    /// The chat's active learnings, highest confidence first. None by default.
    fn learnings(&self, _chat_id: i64) -> Vec<LearnedFact> {
        Vec::new()
    }
}

/// How much of the prompt memories may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecallBudget {
    /// Tokens for the whole RELEVANT_MEMORIES section (about 4 characters each).
    pub tokens: usize,
    /// Memories shown with an excerpt; the others get their title only.
    pub detailed: usize,
    /// Tokens for the LEARNINGS section (0 leaves learnings out).
    pub learning_tokens: usize,
}

impl Default for RecallBudget {
    fn default() -> Self {
        RecallBudget {
            tokens: 400,
            detailed: 2,
            learning_tokens: 300,
        }
    }
}
