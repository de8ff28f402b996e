//! What can go wrong in a turn. Every kind maps to a short message that tells the user what
//! happened and what to do.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnErrorKind {
    /// The API is overloaded (529).
    Overloaded,
    /// Too many requests (429).
    RateLimited,
    /// The API key is missing or refused (401/403).
    Auth,
    /// The API refused the request (400).
    BadRequest,
    /// Other API failures (5xx, unparsable responses).
    Api,
    /// The run took too long or went silent.
    Timeout,
    /// The model hit the turn limit.
    MaxTurns,
    /// The CLI died, printed nothing usable, or could not start.
    Crashed,
    /// Stopped on request (`/stop`, shutdown).
    Cancelled,
    /// The model needed a tool it was not allowed to use.
    ToolDenied,
    /// The chat's sandbox used more memory than `[claude.limits] memory_mb`.
    MemoryLimit,
    /// The chat's sandbox started more processes than `[claude.limits] processes`.
    ProcessLimit,
    /// The chat's workspace grew past `[claude.limits] disk_mb`.
    DiskLimit,
    /// The account's usage limit (subscription window or API spend limit) is reached until
    /// [`TurnError::retry_at_ms`].
    UsageLimit,
    /// A `[budget]` cap is spent: the run was not started, or stopped when it crossed it.
    BudgetSpent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Expected now and then; nothing to fix.
    Low,
    /// Worth a look if it repeats.
    Medium,
    /// Something is misconfigured or broken.
    High,
}

impl TurnErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TurnErrorKind::Overloaded => "overloaded",
            TurnErrorKind::RateLimited => "rate_limited",
            TurnErrorKind::Auth => "auth",
            TurnErrorKind::BadRequest => "bad_request",
            TurnErrorKind::Api => "api",
            TurnErrorKind::Timeout => "timeout",
            TurnErrorKind::MaxTurns => "max_turns",
            TurnErrorKind::Crashed => "crashed",
            TurnErrorKind::Cancelled => "cancelled",
            TurnErrorKind::ToolDenied => "tool_denied",
            TurnErrorKind::MemoryLimit => "memory_limit",
            TurnErrorKind::ProcessLimit => "process_limit",
            TurnErrorKind::DiskLimit => "disk_limit",
            TurnErrorKind::UsageLimit => "usage_limit",
            TurnErrorKind::BudgetSpent => "budget_spent",
        }
    }

    /// Whether the same turn may succeed if tried again after a pause.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            TurnErrorKind::Overloaded | TurnErrorKind::RateLimited | TurnErrorKind::Api
        )
    }

    pub fn severity(self) -> Severity {
        match self {
            TurnErrorKind::Overloaded
            | TurnErrorKind::RateLimited
            | TurnErrorKind::Cancelled
            | TurnErrorKind::UsageLimit
            | TurnErrorKind::BudgetSpent => Severity::Low,
            TurnErrorKind::Api
            | TurnErrorKind::Timeout
            | TurnErrorKind::MaxTurns
            | TurnErrorKind::ToolDenied
            | TurnErrorKind::MemoryLimit
            | TurnErrorKind::ProcessLimit
            | TurnErrorKind::DiskLimit => Severity::Medium,
            TurnErrorKind::Auth | TurnErrorKind::BadRequest | TurnErrorKind::Crashed => {
                Severity::High
            }
        }
    }

    /// What the user reads.
    pub fn user_message(self) -> &'static str {
        match self {
            TurnErrorKind::Overloaded => {
                "Claude is overloaded right now. Please send your message again in a minute."
            }
            TurnErrorKind::RateLimited => {
                "Too many requests to Claude at the moment. Please wait a minute and try again."
            }
            TurnErrorKind::Auth => {
                "I can't reach Claude: the API key is missing or was refused. The operator needs \
                 to check ANTHROPIC_API_KEY."
            }
            TurnErrorKind::BadRequest => {
                "Claude refused this request. Try rephrasing it, or start a fresh session."
            }
            TurnErrorKind::Api => {
                "Claude's service had an error. Please try again; if it keeps happening, tell the \
                 operator."
            }
            TurnErrorKind::Timeout => {
                "That took too long and I stopped it. Try a smaller step, or ask again."
            }
            TurnErrorKind::MaxTurns => {
                "I hit my step limit before finishing. Say \"continue\" to let me go on."
            }
            TurnErrorKind::Crashed => {
                "Something went wrong on my side and the answer was lost. Please send it again."
            }
            TurnErrorKind::Cancelled => "Stopped.",
            TurnErrorKind::ToolDenied => {
                "I needed a tool I'm not allowed to use here, so the answer may be incomplete. \
                 The operator can allow it in [claude] allowed_tools."
            }
            TurnErrorKind::MemoryLimit => {
                "This needed more memory than my sandbox allows, so I stopped it. Try a smaller \
                 step; the operator sets the limit in [claude.limits] memory_mb."
            }
            TurnErrorKind::ProcessLimit => {
                "This started more processes than my sandbox allows, so I stopped it. The \
                 operator sets the limit in [claude.limits] processes."
            }
            TurnErrorKind::DiskLimit => {
                "This chat's workspace is over its disk limit, so I stopped. Delete files you no \
                 longer need; the operator sets [claude.limits] disk_mb."
            }
            TurnErrorKind::UsageLimit => {
                "Claude's usage limit is reached. I'll continue by myself when it resets."
            }
            TurnErrorKind::BudgetSpent => {
                "The spending cap is reached, so I stopped. An approver can allow more with the \
                 button, or the operator raises [budget]."
            }
        }
    }
}

/// A failed turn: the kind, and details for the log (never shown to the user as is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TurnError {
    pub kind: TurnErrorKind,
    pub detail: String,
    /// When the turn may be tried again (Unix ms): a usage limit's reset, if it was said.
    pub retry_at_ms: Option<u64>,
}

impl fmt::Display for TurnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

impl TurnError {
    pub fn new(kind: TurnErrorKind, detail: impl Into<String>) -> Self {
        TurnError {
            kind,
            detail: detail.into(),
            retry_at_ms: None,
        }
    }

    /// The error, to be tried again at `at_ms`.
    pub fn retry_at(mut self, at_ms: u64) -> Self {
        self.retry_at_ms = Some(at_ms);
        self
    }

    pub fn user_message(&self) -> &'static str {
        self.kind.user_message()
    }

    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [TurnErrorKind; 15] = [
        TurnErrorKind::Overloaded,
        TurnErrorKind::RateLimited,
        TurnErrorKind::Auth,
        TurnErrorKind::BadRequest,
        TurnErrorKind::Api,
        TurnErrorKind::Timeout,
        TurnErrorKind::MaxTurns,
        TurnErrorKind::Crashed,
        TurnErrorKind::Cancelled,
        TurnErrorKind::ToolDenied,
        TurnErrorKind::MemoryLimit,
        TurnErrorKind::ProcessLimit,
        TurnErrorKind::DiskLimit,
        TurnErrorKind::UsageLimit,
        TurnErrorKind::BudgetSpent,
    ];

    #[test]
    fn every_kind_has_a_short_distinct_message() {
        let mut seen = std::collections::HashSet::new();
        for kind in ALL {
            let message = kind.user_message();
            assert!(message.len() < 200, "{kind:?}: {message}");
            assert!(seen.insert(message), "{kind:?} shares its message");
        }
    }

    #[test]
    fn only_transient_api_trouble_is_retryable() {
        let retryable: Vec<_> = ALL.into_iter().filter(|k| k.is_retryable()).collect();
        assert_eq!(
            retryable,
            [
                TurnErrorKind::Overloaded,
                TurnErrorKind::RateLimited,
                TurnErrorKind::Api
            ]
        );
        assert_eq!(TurnErrorKind::Auth.severity(), Severity::High);
    }
}
