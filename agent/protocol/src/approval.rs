//! Approvals: a tool use with an effect a person must allow first (a command, a write outside the
//! workspace's source tree, a host not on the chat's allow-list, a message or a paid call), the
//! decision, and the audit record every decision leaves.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// What kind of effect waits for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalKind {
    /// A shell command (Claude Code's `Bash`).
    Command,
    /// A file written outside the workspace's source tree.
    Write,
    /// A connection to a host not on the chat's egress allow-list.
    Host,
    /// A hosted tool with an effect beyond the chat: a message, a Notion comment, a paid call.
    Effect,
}

impl ApprovalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalKind::Command => "command",
            ApprovalKind::Write => "write",
            ApprovalKind::Host => "host",
            ApprovalKind::Effect => "effect",
        }
    }
}

/// One use of a tool a person must allow. `what` is shown whole, never cut: the command, the
/// diff, the host, the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalAsk {
    pub chat_id: i64,
    pub kind: ApprovalKind,
    /// The tool as Claude names it (`Bash`, `Write`, `mcp__social__generate_image`, `egress`).
    pub tool: String,
    /// Everything the effect is: shown whole to the person who decides.
    pub what: String,
    /// One sentence, written by Valor (not by the model), on what it will do.
    pub sentence: String,
    /// What the model says it is for, shown as the model's words (it may lie).
    pub claimed: Option<String>,
    /// "Allow exactly this for the session" matches this, byte for byte.
    pub exact: String,
}

/// The question as the chat sees it: the ask, its id (button data) and its deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub id: u64,
    pub ask: ApprovalAsk,
    /// Unix milliseconds when no answer denies it.
    pub deadline_ms: u64,
    /// When a reminder follows if it is still open (`None`: no reminder).
    pub remind_ms: Option<u64>,
}

/// A person's answer, or what stood for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// This use only.
    AllowOnce,
    /// This use and every identical one (same tool, same bytes) until the session ends.
    AllowSession,
    Deny,
    /// Nobody answered within the approval timeout: denied.
    TimedOut,
    /// Nobody could be asked (no one is reading the chat: a scheduled run): denied.
    Unattended,
    /// An earlier "allow for the session" covered it.
    SessionGrant,
}

impl Decision {
    pub fn allows(self) -> bool {
        matches!(
            self,
            Decision::AllowOnce | Decision::AllowSession | Decision::SessionGrant
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::AllowOnce => "allow_once",
            Decision::AllowSession => "allow_session",
            Decision::Deny => "deny",
            Decision::TimedOut => "timed_out",
            Decision::Unattended => "unattended",
            Decision::SessionGrant => "session_grant",
        }
    }

    /// How the decision reads in the chat and on the dashboard.
    pub fn words(self) -> &'static str {
        match self {
            Decision::AllowOnce => "allowed once",
            Decision::AllowSession => "allowed for the session",
            Decision::Deny => "denied",
            Decision::TimedOut => "denied: no answer in time",
            Decision::Unattended => "denied: nobody was there to ask",
            Decision::SessionGrant => "allowed (already allowed for the session)",
        }
    }
}

/// What the model (the tool) is told when a use is not allowed.
pub fn denial_message(decision: Decision) -> &'static str {
    match decision {
        Decision::TimedOut => {
            "The user did not answer the approval request in time, so this was not done. Tell the user, and do not try another way to do the same thing."
        }
        Decision::Unattended => {
            "This needs a person's approval and nobody is there to ask, so it was not done. Do not try another way to do the same thing."
        }
        _ => {
            "The user denied this. It was not done. Do not try another way to do the same thing; ask the user what they want instead."
        }
    }
}

/// One approval as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub id: u64,
    pub chat_id: i64,
    pub kind: ApprovalKind,
    pub tool: String,
    /// The effect, redacted and cut for keeping (the chat saw it whole).
    pub what: String,
    pub sentence: String,
    pub asked_ms: u64,
    /// `None` while it waits.
    #[serde(default)]
    pub decision: Option<Decision>,
    /// Who decided (a Telegram user; `None`: the timeout, the terminal's user, the session grant).
    #[serde(default)]
    pub by: Option<i64>,
    #[serde(default)]
    pub decided_ms: Option<u64>,
    /// The node that asked (several machines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Asks a person in the chat whether an effect may happen, and waits for the answer (or the
/// timeout). The conversation service implements it; the permission tool, the egress proxy and
/// the hosted tools with effects call it.
pub trait AskPerson: Send + Sync {
    fn ask(&self, ask: ApprovalAsk) -> Pin<Box<dyn Future<Output = Decision> + Send + '_>>;
}
