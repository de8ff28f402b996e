//! Roles of Telegram users: who may chat, who may allow effects, who runs Valor.

use serde::{Deserialize, Serialize};

/// What a user may do; each role may do what the ones before it may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Talks to Valor; allows effects only in their own private chat.
    #[default]
    Chatter,
    /// Also answers approvals in groups.
    Approver,
    /// Also gets alerts, pairs others (`/pair` in the admin's chat), settles anyone's
    /// "Remember this?" in a group.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Chatter => "chatter",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "chatter" => Role::Chatter,
            "approver" => Role::Approver,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}
