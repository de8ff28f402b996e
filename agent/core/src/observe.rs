//! Observations: what a turn *did*, kept as searchable memory of its chat (seed 003's typed
//! observations). Made from the turn's tool calls and results, deterministically (no model
//! call): files read and changed, commands run, functions touched, the web searched. At most a
//! few a turn, folded by what they are (ten edits to one file are one change).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

/// What kind of thing a turn did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObservationType {
    Bugfix,
    Feature,
    Change,
    Decision,
    Discovery,
    Research,
}

impl ObservationType {
    pub fn as_str(self) -> &'static str {
        match self {
            ObservationType::Bugfix => "bugfix",
            ObservationType::Feature => "feature",
            ObservationType::Change => "change",
            ObservationType::Decision => "decision",
            ObservationType::Discovery => "discovery",
            ObservationType::Research => "research",
        }
    }
}

/// One observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub kind: ObservationType,
    /// One line: `[bugfix] fix the upload timeout — changed src/upload.rs`.
    pub title: String,
    /// What was asked and what came of it, briefly.
    pub summary: String,
    pub files_read: Vec<String>,
    pub files_changed: Vec<String>,
    /// `name (file)`, from the code map.
    pub functions: Vec<String>,
    /// Commands run, each with `(failed)` when it did.
    pub commands: Vec<String>,
    /// Searches and pages of web research.
    pub sources: Vec<String>,
}

impl Observation {
    /// The searchable text of the observation.
    pub fn text(&self) -> String {
        let mut out = format!("Type: {}\n{}\n", self.kind.as_str(), self.summary);
        let mut list = |label: &str, items: &[String]| {
            if !items.is_empty() {
                out.push_str(&format!("{label}: {}\n", items.join(", ")));
            }
        };
        list("Files changed", &self.files_changed);
        list("Functions", &self.functions);
        list("Files read", &self.files_read);
        list("Commands", &self.commands);
        list("Sources", &self.sources);
        out.trim_end().to_owned()
    }
}

/// The tool calls of one turn, recorded as its events go by.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    calls: Vec<Call>,
}

#[derive(Debug, Clone)]
struct Call {
    id: String,
    name: String,
    input: Value,
    ok: Option<bool>,
}

/// The input fields observations read; the rest of a call's input (a whole file's old text,
/// a search's options) is not kept.
const READ_FIELDS: [&str; 10] = [
    "file_path",
    "notebook_path",
    "path",
    "command",
    "query",
    "url",
    "question",
    "new_string",
    "content",
    "new_source",
];
/// Characters of one kept field at most (a Write of a large file keeps its start).
const FIELD_CHARS: usize = 64 * 1024;

/// The part of a tool call's input observations read, each text within [`FIELD_CHARS`].
fn slim(input: &Value) -> Value {
    let text = |v: &Value| match v.as_str() {
        Some(t) if t.len() > FIELD_CHARS => Value::from(cut(t, FIELD_CHARS)),
        _ => v.clone(),
    };
    let mut out = serde_json::Map::new();
    for key in READ_FIELDS {
        if let Some(value) = input.get(key) {
            out.insert(key.to_owned(), text(value));
        }
    }
    if let Some(edits) = input.get("edits").and_then(Value::as_array) {
        let kept: Vec<Value> = (edits.iter())
            .filter_map(|e| e.get("new_string"))
            .map(|n| serde_json::json!({ "new_string": text(n) }))
            .collect();
        out.insert("edits".to_owned(), Value::from(kept));
    }
    Value::Object(out)
}

/// Calls recorded per turn at most (a runaway loop of tool calls stays bounded).
const MAX_CALLS: usize = 500;
/// Items of each list an observation names at most; the rest are counted.
const MAX_ITEMS: usize = 8;
const TITLE_CHARS: usize = 90;
const SUMMARY_CHARS: usize = 300;

impl Activity {
    pub fn call(&mut self, id: &str, name: &str, input: &Value) {
        if self.calls.len() < MAX_CALLS {
            self.calls.push(Call {
                id: id.to_owned(),
                name: name.to_owned(),
                input: slim(input),
                ok: None,
            });
        }
    }

    pub fn result(&mut self, id: &str, ok: bool) {
        if let Some(call) = self.calls.iter_mut().rev().find(|c| c.id == id) {
            call.ok = Some(ok);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

/// Where a chat's files are and what functions they hold (the agent's code map).
pub trait CodeMap: Send + Sync {
    /// The chat's workspace: paths under it are shown relative to it.
    fn workspace(&self, chat_id: i64) -> Option<std::path::PathBuf>;
    /// Names of the functions of `path` (relative to the workspace) whose text holds any of
    /// `snippets` (what an edit wrote), or all functions for a whole new file.
    fn functions_touched(&self, chat_id: i64, path: &str, snippets: &[&str]) -> Vec<String>;
    /// The function-map layer of a turn: files and functions relevant to `request`, recently
    /// changed first, within `tokens`; `None` when the workspace is not a code repository.
    fn layer(&self, chat_id: i64, request: &str, tokens: usize) -> Option<String>;
}

/// What one turn did, folded into at most three observations.
#[derive(Debug, Default)]
struct Folded {
    read: BTreeSet<String>,
    changed: BTreeSet<String>,
    /// Per changed file, what was written (to find the functions touched).
    written: Vec<(String, String)>,
    commands: Vec<String>,
    sources: Vec<String>,
}

/// The observations of a turn that asked `request` and answered `reply`.
pub fn observe(
    chat_id: i64,
    request: &str,
    reply: &str,
    activity: &Activity,
    code: Option<&dyn CodeMap>,
) -> Vec<Observation> {
    let workspace = code.and_then(|c| c.workspace(chat_id));
    let folded = fold(activity, workspace.as_deref());
    let words = format!("{request}\n{reply}").to_lowercase();
    let functions = functions_of(chat_id, &folded, code);
    let asked = headline(request);
    let summary = summary_of(request, reply);
    let mut out = Vec::new();
    let base = |kind: ObservationType, title: String| Observation {
        kind,
        title,
        summary: summary.clone(),
        files_read: capped(folded.read.iter().cloned()),
        files_changed: capped(folded.changed.iter().cloned()),
        functions: capped(functions.iter().cloned()),
        commands: capped(folded.commands.iter().cloned()),
        sources: capped(folded.sources.iter().cloned()),
    };
    if !folded.changed.is_empty() {
        let kind = if has_any(&words, BUG_WORDS) {
            ObservationType::Bugfix
        } else if has_any(&words, FEATURE_WORDS) {
            ObservationType::Feature
        } else {
            ObservationType::Change
        };
        let files = listed(folded.changed.iter().cloned());
        out.push(base(kind, title(kind, &asked, &format!("changed {files}"))));
    } else if !folded.read.is_empty() || !folded.commands.is_empty() {
        let what = match (folded.read.len(), folded.commands.len()) {
            (0, n) => format!("ran {n} command{}", plural(n)),
            (n, 0) => format!("read {}", listed(folded.read.iter().take(n).cloned())),
            (r, c) => format!("read {r} file{}, ran {c} command{}", plural(r), plural(c)),
        };
        let kind = ObservationType::Discovery;
        out.push(base(kind, title(kind, &asked, &what)));
    }
    if !folded.sources.is_empty() {
        let kind = ObservationType::Research;
        let what = format!(
            "{} web source{}",
            folded.sources.len(),
            plural(folded.sources.len())
        );
        out.push(Observation {
            files_read: Vec::new(),
            files_changed: Vec::new(),
            functions: Vec::new(),
            commands: Vec::new(),
            ..base(kind, title(kind, &asked, &what))
        });
    }
    if has_any(&words, DECISION_WORDS) {
        let kind = ObservationType::Decision;
        out.push(Observation {
            files_read: Vec::new(),
            commands: Vec::new(),
            sources: Vec::new(),
            ..base(kind, title(kind, &asked, ""))
        });
    }
    out
}

/// Words (a token equal to one, or starting with one of five letters or more) and phrases.
const BUG_WORDS: &[&str] = &[
    "fix",
    "fixed",
    "fixes",
    "bug",
    "bugs",
    "error",
    "errors",
    "crash",
    "broken",
    "fails",
    "failed",
    "failing",
    "failure",
    "exception",
    "panic",
    "panics",
    "regression",
    "wrong",
];
const FEATURE_WORDS: &[&str] = &[
    "add",
    "adds",
    "added",
    "adding",
    "implement",
    "new",
    "create",
    "support",
    "feature",
    "introduce",
];
const DECISION_WORDS: &[&str] = &[
    "we decided",
    "decided to",
    "decision:",
    "let's go with",
    "we'll go with",
    "we will use",
    "let's use",
    "we chose",
    "agreed to",
    "going with",
];

fn has_any(text: &str, words: &[&str]) -> bool {
    let tokens: Vec<&str> = text
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|t| !t.is_empty())
        .collect();
    words.iter().any(|word| {
        if word.contains(' ') || word.contains(':') {
            text.contains(word)
        } else {
            tokens
                .iter()
                .any(|t| t == word || (word.len() >= 5 && t.starts_with(word)))
        }
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The tool calls folded into files, commands and sources.
fn fold(activity: &Activity, workspace: Option<&Path>) -> Folded {
    let mut folded = Folded::default();
    for call in &activity.calls {
        let input = &call.input;
        let path = || {
            ["file_path", "notebook_path", "path"]
                .iter()
                .find_map(|k| input[*k].as_str())
                .map(|p| relative(p, workspace))
        };
        match call.name.as_str() {
            "Edit" | "Write" | "MultiEdit" | "NotebookEdit" if call.ok != Some(false) => {
                if let Some(path) = path() {
                    for written in written_texts(input) {
                        folded.written.push((path.clone(), written));
                    }
                    folded.changed.insert(path);
                }
            }
            "Read" | "Grep" | "Glob" | "LS" => {
                if let Some(path) = path() {
                    folded.read.insert(path);
                }
            }
            "Bash" => {
                if let Some(command) = input["command"].as_str() {
                    let mut line: String = one_line(command).chars().take(120).collect();
                    if call.ok == Some(false) {
                        line.push_str(" (failed)");
                    }
                    if !folded.commands.contains(&line) {
                        folded.commands.push(line);
                    }
                }
            }
            name if is_research(name) => {
                let source = ["query", "url", "question"]
                    .iter()
                    .find_map(|k| input[*k].as_str())
                    .map(|s| one_line(s).chars().take(120).collect::<String>());
                if let Some(source) = source.filter(|s| !folded.sources.contains(s)) {
                    folded.sources.push(source);
                }
            }
            _ => {}
        }
    }
    // A file changed is not also listed as read.
    let changed = folded.changed.clone();
    folded.read.retain(|p| !changed.contains(p));
    folded
}

fn is_research(name: &str) -> bool {
    matches!(name, "WebSearch" | "WebFetch")
        || name.ends_with("__search_current_info")
        || name.ends_with("__save_link")
}

/// What an edit tool wrote: `new_string`, each of `edits`' `new_string`, or `content`.
fn written_texts(input: &Value) -> Vec<String> {
    let mut out: Vec<String> = ["new_string", "content", "new_source"]
        .iter()
        .filter_map(|k| input[*k].as_str().map(str::to_owned))
        .collect();
    if let Some(edits) = input["edits"].as_array() {
        out.extend(
            edits
                .iter()
                .filter_map(|e| e["new_string"].as_str().map(str::to_owned)),
        );
    }
    out
}

/// `path` relative to the workspace when it is under it.
fn relative(path: &str, workspace: Option<&Path>) -> String {
    workspace
        .and_then(|w| Path::new(path).strip_prefix(w).ok())
        .map_or_else(|| path.to_owned(), |p| p.to_string_lossy().into_owned())
}

fn functions_of(chat_id: i64, folded: &Folded, code: Option<&dyn CodeMap>) -> Vec<String> {
    let Some(code) = code else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for path in &folded.changed {
        let snippets: Vec<&str> = (folded.written.iter())
            .filter(|(p, _)| p == path)
            .map(|(_, text)| text.as_str())
            .collect();
        for name in code.functions_touched(chat_id, path, &snippets) {
            let entry = format!("{name} ({path})");
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    out
}

/// At most [`MAX_ITEMS`], the rest counted.
fn capped(items: impl Iterator<Item = String>) -> Vec<String> {
    let all: Vec<String> = items.collect();
    let mut out: Vec<String> = all.iter().take(MAX_ITEMS).cloned().collect();
    if all.len() > MAX_ITEMS {
        out.push(format!("+{} more", all.len() - MAX_ITEMS));
    }
    out
}

/// Up to three names, then a count.
fn listed(items: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = items.collect();
    let mut out = all.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if all.len() > 3 {
        out.push_str(&format!(" and {} more", all.len() - 3));
    }
    out
}

fn title(kind: ObservationType, asked: &str, what: &str) -> String {
    let mut title = format!("[{}] {asked}", kind.as_str());
    if !what.is_empty() {
        title.push_str(" — ");
        title.push_str(what);
    }
    cut(&title, TITLE_CHARS * 2)
}

/// The request's first line, cut to a headline.
fn headline(request: &str) -> String {
    let first = request.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    cut(first.trim(), TITLE_CHARS)
}

fn summary_of(request: &str, reply: &str) -> String {
    let answer = first_sentences(reply, SUMMARY_CHARS);
    format!(
        "Asked: {}\nDone: {answer}",
        cut(&one_line(request), SUMMARY_CHARS / 2)
    )
}

/// The first sentences of `text` within `chars`, on one line.
pub(crate) fn first_sentences(text: &str, chars: usize) -> String {
    let flat = one_line(text);
    let mut out = String::new();
    for sentence in sentences(&flat) {
        if out.chars().count() + sentence.chars().count() > chars {
            break;
        }
        out.push_str(sentence);
    }
    if out.trim().is_empty() {
        out = cut(&flat, chars);
    }
    out.trim().to_owned()
}

/// The sentences of a one-line text: ends at `.`, `!` or `?` followed by a space (so
/// `nginx.conf` and `v1.2` stay whole).
pub(crate) fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if matches!(b, b'.' | b'!' | b'?') && bytes.get(i + 1).is_none_or(|n| *n == b' ') {
            out.push(&text[start..=i]);
            start = i + 1;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn cut(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    struct Map;

    impl CodeMap for Map {
        fn workspace(&self, _chat_id: i64) -> Option<std::path::PathBuf> {
            Some("/w/chat_1".into())
        }
        fn functions_touched(&self, _chat_id: i64, path: &str, snippets: &[&str]) -> Vec<String> {
            if path == "src/upload.rs" && snippets.iter().any(|s| s.contains("timeout")) {
                vec!["send_chunk".to_owned()]
            } else {
                Vec::new()
            }
        }
        fn layer(&self, _chat_id: i64, _request: &str, _tokens: usize) -> Option<String> {
            None
        }
    }

    fn activity(calls: &[(&str, Value, bool)]) -> Activity {
        let mut activity = Activity::default();
        for (i, (name, input, ok)) in calls.iter().enumerate() {
            activity.call(&i.to_string(), name, input);
            activity.result(&i.to_string(), *ok);
        }
        activity
    }

    #[test]
    fn an_edit_and_a_command_make_one_typed_observation() {
        let turn = activity(&[
            ("Read", json!({"file_path": "/w/chat_1/src/main.rs"}), true),
            (
                "Read",
                json!({"file_path": "/w/chat_1/src/upload.rs"}),
                true,
            ),
            (
                "Edit",
                json!({"file_path": "/w/chat_1/src/upload.rs", "old_string": "a", "new_string": "let timeout = 60;"}),
                true,
            ),
            (
                "Edit",
                json!({"file_path": "/w/chat_1/src/upload.rs", "old_string": "b", "new_string": "c"}),
                true,
            ),
            ("Bash", json!({"command": "cargo test\n  --quiet"}), true),
            ("Bash", json!({"command": "cargo clippy"}), false),
        ]);
        let found = observe(
            1,
            "Fix the upload timeout for big files",
            "Fixed: the timeout was 30 s. Now 60 s.",
            &turn,
            Some(&Map),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        let o = &found[0];
        assert_eq!(o.kind, ObservationType::Bugfix);
        assert_eq!(
            o.title,
            "[bugfix] Fix the upload timeout for big files — changed src/upload.rs"
        );
        assert_eq!(o.files_changed, ["src/upload.rs"]);
        assert_eq!(
            o.files_read,
            ["src/main.rs"],
            "a changed file is not listed as read"
        );
        assert_eq!(o.functions, ["send_chunk (src/upload.rs)"]);
        assert_eq!(o.commands, ["cargo test --quiet", "cargo clippy (failed)"]);
        let text = o.text();
        assert!(
            text.contains("Files changed: src/upload.rs\nFunctions: send_chunk (src/upload.rs)"),
            "{text}"
        );
        assert!(
            text.contains("Done: Fixed: the timeout was 30 s. Now 60 s."),
            "{text}"
        );
    }

    #[test]
    fn types_follow_what_the_turn_did_and_said() {
        let write = activity(&[(
            "Write",
            json!({"file_path": "/elsewhere/notes.md", "content": "x"}),
            true,
        )]);
        let feature = observe(1, "Add a dark mode", "Added it.", &write, Some(&Map));
        assert_eq!(feature[0].kind, ObservationType::Feature);
        assert_eq!(
            feature[0].files_changed,
            ["/elsewhere/notes.md"],
            "outside the workspace: as given"
        );
        let change = observe(1, "Rename the helper", "Renamed.", &write, None);
        assert_eq!(change[0].kind, ObservationType::Change);
        // "address" is not "add", "prefix" is not "fix".
        let neither = observe(1, "Update the address prefix", "Done.", &write, None);
        assert_eq!(neither[0].kind, ObservationType::Change);

        let look = activity(&[(
            "Grep",
            json!({"pattern": "x", "path": "/w/chat_1/src"}),
            true,
        )]);
        assert_eq!(
            observe(1, "Where is x?", "In src.", &look, Some(&Map))[0].kind,
            ObservationType::Discovery
        );
        let web = activity(&[
            ("WebSearch", json!({"query": "tokio 2 release"}), true),
            (
                "mcp__social__search_current_info",
                json!({"query": "tokio 2 release", "chat_id": 1}),
                true,
            ),
        ]);
        let research = observe(1, "Is tokio 2 out?", "Not yet.", &web, None);
        assert_eq!(research.len(), 1);
        assert_eq!(research[0].kind, ObservationType::Research);
        assert_eq!(research[0].sources, ["tokio 2 release"], "folded");
        let chat = Activity::default();
        assert!(observe(1, "hello", "hi!", &chat, None).is_empty());
        let decided = observe(
            1,
            "Postgres or sled?",
            "We decided to use sled: no server.",
            &chat,
            None,
        );
        assert_eq!(decided[0].kind, ObservationType::Decision);
        assert_eq!(decided[0].title, "[decision] Postgres or sled?");
    }

    #[test]
    fn many_calls_stay_a_few_bounded_observations() {
        let calls: Vec<(&str, Value, bool)> = (0..2_000)
            .map(|i| {
                (
                    "Edit",
                    json!({"file_path": format!("/w/chat_1/f{}.rs", i % 40), "new_string": "x"}),
                    true,
                )
            })
            .collect();
        let found = observe(
            1,
            "refactor everything",
            "done",
            &activity(&calls),
            Some(&Map),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].files_changed.len(), MAX_ITEMS + 1);
        assert_eq!(found[0].files_changed.last().unwrap(), "+32 more");
        assert!(
            found[0].title.chars().count() <= TITLE_CHARS * 2,
            "{}",
            found[0].title
        );
    }

    #[test]
    fn a_call_keeps_only_what_observations_read_within_bounds() {
        let huge = "x".repeat(FIELD_CHARS * 3);
        let kept = slim(&json!({
            "file_path": "/w/a.rs", "old_string": huge, "content": huge, "replace_all": true,
            "edits": [{"old_string": "a", "new_string": "b"}]
        }));
        assert_eq!(kept["file_path"], "/w/a.rs");
        assert!(kept.get("old_string").is_none() && kept.get("replace_all").is_none());
        assert_eq!(
            kept["content"].as_str().unwrap().chars().count(),
            FIELD_CHARS
        );
        assert_eq!(kept["edits"], json!([{"new_string": "b"}]));
    }
}
