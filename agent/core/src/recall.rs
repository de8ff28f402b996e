//! The seam to long-term memory: before a turn the engine asks for what is worth remembering
//! about the request, and the inject step lays it out with progressive disclosure (seed 003):
//! the best few with a short excerpt, the rest as titles the model can ask about by id. After
//! a turn the engine hands back what the turn did (observations), and when a session ends its
//! summary.

use crate::observe::Observation;
use crate::session::SessionSummary;

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

/// Long-term memory as the engine sees it. Async: the store behind it may be a database on
/// another machine.
#[async_trait::async_trait]
pub trait Recall: Send + Sync {
    /// The memories most relevant to `text` in `chat_id` (that chat's and shared ones), best
    /// first, leaving out the ids in `exclude` (already in the prompt). Runs inside a turn, so
    /// it answers from what it has now and never waits for indexing.
    async fn recall(&self, chat_id: i64, text: &str, exclude: &[u64]) -> Vec<Recollection>;

    /// The chat's active learnings, highest confidence first. None by default.
    async fn learnings(&self, _chat_id: i64) -> Vec<LearnedFact> {
        Vec::new()
    }

    /// Keeps what a turn did as the chat's memory.
    async fn keep_observations(&self, _chat_id: i64, _observations: &[Observation]) {}

    /// Keeps the summary of a session that ended.
    async fn keep_summary(&self, _chat_id: i64, _summary: &SessionSummary) {}

    /// The text of the chat's latest session summary, if it has one.
    async fn last_summary(&self, _chat_id: i64) -> Option<String> {
        None
    }
}

/// How much of the prompt memory may take: one budget for every layer (seed 003), split as
/// [`PromptBudget::shares`] says, each layer also within its own ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptBudget {
    /// Tokens for every memory layer together (about 4 characters each).
    pub context_tokens: usize,
    /// Ceiling of the RELEVANT_MEMORIES section (0 leaves memories out).
    pub tokens: usize,
    /// Memories shown with an excerpt; the others get their title only.
    pub detailed: usize,
    /// Tokens for the LEARNINGS section (0 leaves learnings out).
    pub learning_tokens: usize,
}

impl Default for PromptBudget {
    fn default() -> Self {
        PromptBudget {
            context_tokens: 2_000,
            tokens: 900,
            detailed: 2,
            learning_tokens: 300,
        }
    }
}

/// Tokens of each memory layer: a layer's budget, or what a turn's prompt carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerTokens {
    /// The last session's summary.
    pub summary: usize,
    /// The function map of the chat's workspace.
    pub code: usize,
    pub learnings: usize,
    /// Relevant memories, as index lines.
    pub memories: usize,
}

impl LayerTokens {
    pub fn total(&self) -> usize {
        self.summary + self.code + self.learnings + self.memories
    }
}

impl PromptBudget {
    /// Seed 003's split of the budget: the session summary 15%, the function map 25%, the
    /// learnings 15% (within `learning_tokens`); the memories get what is left (within
    /// `tokens`), unused shares of the layers before them included.
    pub fn shares(&self) -> LayerTokens {
        let total = self.context_tokens;
        LayerTokens {
            summary: total * 15 / 100,
            code: total * 25 / 100,
            learnings: (total * 15 / 100).min(self.learning_tokens),
            memories: self.tokens.min(total),
        }
    }
}
