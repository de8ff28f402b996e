//! `[approvals]`: which effects a person allows first, from the chat; `[access]`: who may
//! allow them.

use serde::{Deserialize, Serialize};

/// `[approvals]`: Claude Code asks Valor's permission tool before a tool use its rules do not
/// allow outright; these say which uses wait for a person in the chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// Off: tools outside `[claude] allowed_tools` are refused, as without approvals.
    pub enabled: bool,
    /// Claude Code tools every use of which a person allows first (usable even when not in
    /// `[claude] allowed_tools`). A pattern there (`Bash(git log:*)`) no longer lets a
    /// command through on its own.
    pub ask: Vec<String>,
    /// A write (Write, Edit, MultiEdit, NotebookEdit) outside the workspace's source tree (the
    /// HOME, `.git`, `.claude`, anything through a link) asks; false: it is refused.
    pub writes_outside_workspace: bool,
    /// The egress proxy asks about a host not on the chat's allow-list instead of refusing it.
    pub unlisted_hosts: bool,
    /// Hosted tools with effects beyond the chat ask: image generation (it costs money) and
    /// Notion comments and tasks.
    pub tool_effects: bool,
    /// No answer in this long denies.
    pub approval_timeout_secs: u64,
    /// A reminder follows when a question has waited this long (0: none).
    pub remind_after_secs: u64,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            enabled: true,
            ask: vec!["Bash".to_owned()],
            writes_outside_workspace: true,
            unlisted_hosts: true,
            tool_effects: true,
            approval_timeout_secs: 300,
            remind_after_secs: 120,
        }
    }
}

/// `[access]`: roles of Telegram users beyond chatting (everyone in `[telegram] allowed_users`
/// or paired chats). A role may do what the ones below it may.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Answer approvals in groups, settle anyone's "Remember this?", get alerts, pair others.
    pub admins: Vec<i64>,
    /// Answer approvals in groups (in a private chat its user answers their own).
    pub approvers: Vec<i64>,
}

/// The `[approvals]` values types cannot check.
pub(crate) fn validate(c: &ApprovalsConfig, problems: &mut Vec<(String, String)>) {
    if !(10..=86_400).contains(&c.approval_timeout_secs) {
        problems.push((
            "approvals.approval_timeout_secs".to_owned(),
            format!("must be 10-86400 seconds, not {}", c.approval_timeout_secs),
        ));
    }
    if c.remind_after_secs != 0 && c.remind_after_secs >= c.approval_timeout_secs {
        problems.push((
            "approvals.remind_after_secs".to_owned(),
            format!(
                "must be 0 (no reminder) or less than approval_timeout_secs ({}), not {}",
                c.approval_timeout_secs, c.remind_after_secs
            ),
        ));
    }
    for tool in &c.ask {
        let name = tool.split('(').next().unwrap_or(tool);
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            problems.push((
                "approvals.ask".to_owned(),
                format!("{tool:?} is not a tool name (like Bash or WebFetch)"),
            ));
        }
    }
}
