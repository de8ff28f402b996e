//! What `/status` and the dashboard show of one chat: its turns running and waiting, what the
//! running one is doing, its backend session, today's usage and its context figures, in one
//! [`ChatStatus`] the conversation service assembles.

use async_trait::async_trait;

use crate::context::ContextFigures;
use crate::progress::TurnProgress;
use valor_protocol::StoreFailure;

/// The backend session a chat's turns continue in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub session_id: String,
    pub turns: u64,
}

/// A chat's turns since some time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatUsage {
    pub turns: u64,
    pub failed: u64,
    pub cost_usd: f64,
    /// The model of the latest turn.
    pub last_model: Option<String>,
}

/// What the store knows of a chat's turns (the store implements it).
#[async_trait]
pub trait ChatRecords: Send + Sync {
    /// The backend session the chat's turns continue in.
    async fn session(&self, chat_id: i64) -> Result<Option<SessionInfo>, StoreFailure>;
    /// The chat's turns since `since_ms` (Unix milliseconds).
    async fn usage_since(&self, chat_id: i64, since_ms: u64) -> Result<ChatUsage, StoreFailure>;
    /// "Remember this?" questions of the last 30 days by outcome, in words; `None` when none.
    async fn questions(&self, chat_id: i64) -> Result<Option<String>, StoreFailure>;
}

/// One chat, now.
#[derive(Debug, Clone, Default)]
pub struct ChatStatus {
    pub chat_id: i64,
    /// Turns running or waiting.
    pub pending: usize,
    /// What the running turn is doing.
    pub running: Option<TurnProgress>,
    pub session: Option<SessionInfo>,
    /// The backend session the chat's latest turn in this process finished in.
    pub live_session: Option<String>,
    /// Since midnight (UTC).
    pub today: ChatUsage,
    /// The latest turn's context window.
    pub context: Option<ContextFigures>,
    pub questions: Option<String>,
}

impl ChatStatus {
    /// The status as lines for a chat.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "Queue: {} message(s) of this chat running or waiting",
            self.pending
        )];
        lines.push(match &self.session {
            Some(session) => format!(
                "Session: {}… ({} turns)",
                session.session_id.chars().take(8).collect::<String>(),
                session.turns
            ),
            None => "Session: none yet".to_owned(),
        });
        if let Some(model) = &self.today.last_model {
            lines.push(format!("Model: {model} (last turn)"));
        }
        lines.push(format!(
            "Cost today: ${:.4} in {} turn(s), {} failed",
            self.today.cost_usd, self.today.turns, self.today.failed
        ));
        if let Some(f) = &self.context {
            lines.push(format!(
                "Context: {} → {} messages, {} → {} tokens ({:.0}% fewer)",
                f.messages_before,
                f.messages_after,
                f.tokens_before,
                f.tokens_after,
                f.reduction() * 100.0
            ));
            let m = f.memory;
            lines.push(format!(
                "Memory in the prompt: {} tokens (last session {}, learnings {}, code map {}, memories {})",
                m.total(),
                m.summary,
                m.learnings,
                m.code,
                m.memories
            ));
        }
        if let Some(questions) = &self.questions {
            lines.push(format!("Remember this? (30 days): {questions}"));
        }
        lines
    }
}
