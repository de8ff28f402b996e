//! Which tool uses run at once, which wait for a person, which are refused.
//!
//! Approvals are on effects, not on a command's text: every shell command asks (an exact
//! grant for the session is the only shortcut, matched byte for byte, so no wrapper, newline,
//! `env`, `sh -c`, alias or look-alike letter rides on an approved command); a file write asks
//! when it lands outside the workspace's source tree, judged on the file system (no link
//! followed), not on how the path is spelled; the network asks in the egress proxy, where the
//! connection happens.

use std::path::{Component, Path};

use serde_json::Value;
use valor_chatfs::Kind;
use valor_protocol::approval::{ApprovalAsk, ApprovalKind};
use valor_tools::Scope;

/// Claude Code's tools that write a file, and the input field naming it.
const WRITE_TOOLS: [(&str, &str); 4] = [
    ("Write", "file_path"),
    ("Edit", "file_path"),
    ("MultiEdit", "file_path"),
    ("NotebookEdit", "notebook_path"),
];

/// Folders and files of a workspace that are not its source tree: what runs code or sets how
/// Claude and git behave (hooks, settings, MCP servers).
const NOT_SOURCE: [&str; 4] = [".git", ".claude", ".mcp.json", ".valor"];

/// What the permission tool does with tool uses.
#[derive(Debug, Clone, Default)]
pub struct PermissionPolicy {
    /// `[claude] allowed_tools`: tools that may run (those also in `ask` wait for a person).
    pub allowed: Vec<String>,
    /// `[approvals] ask`: tools every use of which a person allows first.
    pub ask: Vec<String>,
    /// `[approvals] writes_outside_workspace`: a write outside the source tree asks (else it is
    /// refused).
    pub ask_writes_outside: bool,
}

/// What to do with one tool use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Ask(ApprovalAsk),
    Deny(String),
}

impl PermissionPolicy {
    /// The verdict on `tool` with `input` in `scope`'s chat.
    pub fn judge(&self, scope: &Scope, tool: &str, input: &Value) -> Verdict {
        let allowed = names(&self.allowed).any(|t| t == tool);
        let asks = names(&self.ask).any(|t| t == tool);
        if let Some((_, field)) = WRITE_TOOLS.iter().find(|(name, _)| *name == tool) {
            if !allowed && !asks {
                return Verdict::Deny(not_allowed(tool));
            }
            let path = input[*field].as_str().unwrap_or_default();
            return match outside_source_tree(scope, path) {
                None if !asks => Verdict::Allow,
                None => Verdict::Ask(write_ask(scope.chat_id, tool, path, input, None)),
                Some(why) if self.ask_writes_outside || asks => {
                    Verdict::Ask(write_ask(scope.chat_id, tool, path, input, Some(&why)))
                }
                Some(why) => Verdict::Deny(format!(
                    "{path} is {why}; writing there is not allowed in this chat"
                )),
            };
        }
        if asks {
            return Verdict::Ask(match tool {
                "Bash" => command_ask(scope.chat_id, input),
                _ => tool_ask(scope.chat_id, tool, input),
            });
        }
        if allowed {
            return Verdict::Allow;
        }
        Verdict::Deny(not_allowed(tool))
    }
}

/// Rule names without their patterns (`Bash(git log:*)` is `Bash`).
fn names(rules: &[String]) -> impl Iterator<Item = &str> {
    rules
        .iter()
        .map(|rule| rule.split('(').next().unwrap_or(rule).trim())
}

fn not_allowed(tool: &str) -> String {
    format!("{tool} is not allowed in this chat ([claude] allowed_tools)")
}

/// Why `path` is not in the workspace's source tree, judged on the file system: outside the
/// workspace, in what is not source (`.git`, `.claude`), or reached through a link.
pub fn outside_source_tree(scope: &Scope, path: &str) -> Option<String> {
    if path.trim().is_empty() {
        return Some("not named".to_owned());
    }
    let Ok(dir) = scope.workspace_dir() else {
        return Some("in a workspace that cannot be opened".to_owned());
    };
    let Ok(relative) = dir.relative(Path::new(path)) else {
        return Some("outside the workspace".to_owned());
    };
    let parts: Vec<&std::ffi::OsStr> = relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part),
            _ => None,
        })
        .collect();
    let Some(first) = parts.first() else {
        return Some("the workspace itself".to_owned());
    };
    if let Some(name) = NOT_SOURCE
        .iter()
        .find(|n| std::ffi::OsStr::new(n) == *first)
    {
        return Some(format!(
            "in the workspace's {name} (not source: it can run code)"
        ));
    }
    // Every part that exists must be a folder (the last a file): a link anywhere is outside.
    let mut walked = std::path::PathBuf::new();
    for (i, part) in parts.iter().enumerate() {
        walked.push(part);
        match dir.entry(&walked) {
            Ok(None) => return None,
            Ok(Some(entry)) => match entry.kind {
                Kind::Symlink => return Some("reached through a symbolic link".to_owned()),
                Kind::Dir if i + 1 < parts.len() => {}
                Kind::File if i + 1 == parts.len() => {}
                Kind::Dir => return Some("a folder".to_owned()),
                _ => return Some("not a regular file".to_owned()),
            },
            Err(_) => return Some("reached through a symbolic link".to_owned()),
        }
    }
    None
}

/// A shell command to allow: shown whole; what it is for in the model's words, marked so.
fn command_ask(chat_id: i64, input: &Value) -> ApprovalAsk {
    let command = input["command"].as_str().unwrap_or_default().to_owned();
    let mut sentence = "Runs this shell command in the chat's sandbox: it can change the \
                        workspace's files, and reach only hosts you allow."
        .to_owned();
    if input["run_in_background"].as_bool() == Some(true) {
        sentence.push_str(" It keeps running in the background.");
    }
    sentence.push_str(&unusual_characters(&command));
    ApprovalAsk {
        chat_id,
        kind: ApprovalKind::Command,
        tool: "Bash".to_owned(),
        exact: command.clone(),
        what: command,
        sentence,
        claimed: input["description"].as_str().map(str::to_owned),
    }
}

/// A write to allow: the path, then what would be written (the whole content or the edits).
fn write_ask(
    chat_id: i64,
    tool: &str,
    path: &str,
    input: &Value,
    why: Option<&str>,
) -> ApprovalAsk {
    let mut what = format!("{path}\n");
    match tool {
        "Write" => {
            what.push_str("--- new content ---\n");
            what.push_str(input["content"].as_str().unwrap_or_default());
        }
        "NotebookEdit" => {
            what.push_str("--- new cell source ---\n");
            what.push_str(input["new_source"].as_str().unwrap_or_default());
        }
        _ => {
            let edits = match input["edits"].as_array() {
                Some(edits) => edits.clone(),
                None => vec![input.clone()],
            };
            for edit in edits {
                what.push_str("--- replace ---\n");
                what.push_str(edit["old_string"].as_str().unwrap_or_default());
                what.push_str("\n+++ with +++\n");
                what.push_str(edit["new_string"].as_str().unwrap_or_default());
                what.push('\n');
            }
        }
    }
    let mut sentence = match why {
        Some(why) => format!("Writes {path}, which is {why}."),
        None => format!("Writes {path}."),
    };
    sentence.push_str(&unusual_characters(&what));
    ApprovalAsk {
        chat_id,
        kind: ApprovalKind::Write,
        tool: tool.to_owned(),
        what,
        sentence,
        claimed: None,
        exact: canonical(input),
    }
}

/// Any other tool to allow: its input whole.
fn tool_ask(chat_id: i64, tool: &str, input: &Value) -> ApprovalAsk {
    let what = serde_json::to_string_pretty(input).unwrap_or_default();
    ApprovalAsk {
        chat_id,
        kind: ApprovalKind::Effect,
        tool: tool.to_owned(),
        sentence: format!("Uses {tool} with this input.{}", unusual_characters(&what)),
        what,
        claimed: None,
        exact: canonical(input),
    }
}

/// The input as one string, keys sorted (serde_json's map is ordered), for an exact grant.
fn canonical(input: &Value) -> String {
    serde_json::to_string(input).unwrap_or_default()
}

/// A warning when `text` holds what a person could misread: letters that look like others
/// (Cyrillic `а` for Latin `a`), invisible or direction-changing characters, control codes.
pub fn unusual_characters(text: &str) -> String {
    let odd: Vec<char> = text
        .chars()
        .filter(|c| !(c.is_ascii_graphic() || matches!(c, ' ' | '\n' | '\t')))
        .collect();
    if odd.is_empty() {
        return String::new();
    }
    let mut shown: Vec<String> = Vec::new();
    for c in &odd {
        let code = format!("U+{:04X}", u32::from(*c));
        if !shown.contains(&code) {
            shown.push(code);
        }
        if shown.len() == 6 {
            break;
        }
    }
    format!(
        " ⚠ It holds {} character(s) that are not plain ASCII ({}): they may look like other \
         letters or be invisible.",
        odd.len(),
        shown.join(", ")
    )
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
