//! The code map where turns need it: each chat's workspace mapped with tree-sitter (parses kept
//! by size and mtime, as the daydream keeps them), read for the function-map layer of a turn's
//! prompt and for the functions an observation names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use valor_chatfs::{ChatDir, ChatFs};
use valor_core::observe::CodeMap as CodeMapSeam;

use crate::codemap::{FileMap, FunctionInfo, MapCache, Mapper};

/// Source files mapped per workspace at most (a turn must not walk a monorepo).
const MAX_FILES: usize = 2_000;
/// A file modified this recently counts as changed.
const RECENT: Duration = Duration::from_secs(24 * 3600);
/// Functions listed per file at most.
const FUNCTIONS_PER_FILE: usize = 12;
/// Words of a request too common to point at code.
const STOPWORDS: &[&str] = &[
    "the", "and", "for", "with", "what", "does", "this", "that", "from", "into", "how", "why",
    "can", "you", "please", "code", "file", "function", "fix", "make", "change", "add", "should",
    "where", "when", "there", "are", "was", "its", "our", "use", "about",
];

/// The chats' workspaces as the engine's code map, read through the no-follow helper.
#[derive(Clone)]
pub struct WorkspaceMaps {
    chats: ChatFs,
    cache: MapCache,
}

/// One mapped file, with when it was last modified.
struct Mapped {
    map: FileMap,
    modified: Option<SystemTime>,
}

impl WorkspaceMaps {
    pub fn new(chats: ChatFs, cache: MapCache) -> WorkspaceMaps {
        WorkspaceMaps { chats, cache }
    }

    fn root(&self, chat_id: i64) -> Option<ChatDir> {
        self.chats.existing_workspace(chat_id).ok().flatten()
    }

    /// The workspace's source files (git-ignored ones left out), mapped.
    fn mapped(&self, root: &ChatDir) -> Vec<Mapped> {
        let mut mapper = Mapper::with_cache(self.cache.clone());
        let is_source = |path: &Path| crate::codemap::Language::of(path).is_some();
        crate::walk::files(root, 16, MAX_FILES, is_source)
            .into_iter()
            .filter_map(|walked| {
                Some(Mapped {
                    map: mapper.map_file(root, &walked.relative)?,
                    modified: Some(walked.entry.modified),
                })
            })
            .collect()
    }
}

/// The words of a request that may name code: identifiers of three characters or more.
fn code_words(request: &str) -> BTreeSet<String> {
    request
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map(str::to_lowercase)
        .filter(|w| w.len() >= 3 && !STOPWORDS.contains(&w.as_str()))
        .collect()
}

fn names(words: &BTreeSet<String>, name: &str) -> bool {
    let name = name.to_lowercase();
    words
        .iter()
        .any(|w| name == *w || (w.len() >= 4 && name.contains(w.as_str())))
}

/// A file's relevance to the request: functions it names, and whether its path does.
fn relevance<'a>(file: &'a FileMap, words: &BTreeSet<String>) -> (Vec<&'a FunctionInfo>, bool) {
    let functions = (file.functions.iter())
        .filter(|f| names(words, &f.name))
        .collect();
    let path_named = file
        .path
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .map(|c| c.split('.').next().unwrap_or(c))
        .any(|part| words.contains(&part.to_lowercase()));
    (functions, path_named)
}

fn render_file(
    out: &mut String,
    left: &mut usize,
    file: &Mapped,
    first: &[&FunctionInfo],
    now: SystemTime,
) -> bool {
    let changed = file
        .modified
        .and_then(|m| now.duration_since(m).ok())
        .is_some_and(|age| age <= RECENT);
    let header = format!(
        "{}{}:\n",
        file.map.path.display(),
        if changed { " (changed today)" } else { "" }
    );
    if header.chars().count() > *left {
        return false;
    }
    *left -= header.chars().count();
    out.push_str(&header);
    let rest = file
        .map
        .functions
        .iter()
        .filter(|f| !first.iter().any(|g| g == f));
    for (i, function) in first
        .iter()
        .copied()
        .chain(rest)
        .take(FUNCTIONS_PER_FILE)
        .enumerate()
    {
        let mark = if i < first.len() { "  ← named" } else { "" };
        let line = format!(
            "  {}  [L{}-L{}]{mark}\n",
            function.signature, function.start_line, function.end_line
        );
        if line.chars().count() > *left {
            return false;
        }
        *left -= line.chars().count();
        out.push_str(&line);
    }
    true
}

impl CodeMapSeam for WorkspaceMaps {
    fn workspace(&self, chat_id: i64) -> Option<PathBuf> {
        self.root(chat_id).map(|root| root.path().to_owned())
    }

    fn functions_touched(&self, chat_id: i64, path: &str, snippets: &[&str]) -> Vec<String> {
        let Some(root) = self.root(chat_id) else {
            return Vec::new();
        };
        // Only files inside the chat's own workspace, by a path that stays inside it and
        // passes through no link.
        let Ok(relative) = root.relative(Path::new(path)) else {
            return Vec::new();
        };
        let Some(map) = Mapper::with_cache(self.cache.clone()).map_file(&root, relative) else {
            return Vec::new();
        };
        let Ok(text) = root.read_to_string(relative, crate::codemap::MAX_PARSE_BYTES) else {
            return Vec::new();
        };
        let lines: Vec<&str> = text.lines().collect();
        let mut touched: BTreeSet<usize> = BTreeSet::new();
        for snippet in snippets {
            for needle in snippet.lines().map(str::trim).filter(|l| l.len() >= 4) {
                touched.extend(
                    (lines.iter().enumerate())
                        .filter(|(_, line)| line.contains(needle))
                        .map(|(i, _)| i + 1),
                );
            }
        }
        map.functions
            .iter()
            .filter(|f| touched.range(f.start_line..=f.end_line).next().is_some())
            .map(|f| f.name.clone())
            .collect()
    }

    fn layer(&self, chat_id: i64, request: &str, tokens: usize) -> Option<String> {
        let root = self.root(chat_id)?;
        let words = code_words(request);
        let now = SystemTime::now();
        let files = self.mapped(&root);
        // Named files and functions first (most named first), then what changed today.
        let mut ranked: Vec<(usize, bool, &Mapped, Vec<&FunctionInfo>)> = Vec::new();
        for file in &files {
            let (functions, path_named) = relevance(&file.map, &words);
            let recent = file
                .modified
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age <= RECENT);
            if functions.is_empty() && !path_named && !recent {
                continue;
            }
            let score = functions.len() * 3 + usize::from(path_named) * 2;
            ranked.push((score, recent, file, functions));
        }
        if ranked.iter().all(|(score, ..)| *score == 0)
            && !ranked.iter().any(|(_, recent, ..)| *recent)
        {
            return None;
        }
        ranked.sort_by_key(|r| std::cmp::Reverse((r.0, r.1, r.2.modified)));
        let mut left = tokens.saturating_mul(4);
        let mut out = String::new();
        for (_, _, file, first) in &ranked {
            if !render_file(&mut out, &mut left, file, first, now) {
                break;
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const UPLOAD: &str = "use std::io;\n\npub fn send_chunk(part: &[u8]) -> io::Result<()> {\n    let timeout = 30;\n    Ok(())\n}\n\nfn retry(n: u32) -> u32 {\n    n + 1\n}\n";

    fn workspace() -> (tempfile::TempDir, WorkspaceMaps) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("chat_1");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/upload.rs"), UPLOAD).unwrap();
        std::fs::write(root.join("src/other.rs"), "fn unrelated() {}\n").unwrap();
        std::fs::write(root.join("notes.txt"), "send_chunk is slow").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3 * 24 * 3600);
        for file in ["src/upload.rs", "src/other.rs"] {
            std::fs::File::options()
                .write(true)
                .open(root.join(file))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let chats = ChatFs::new(dir.path().to_owned(), dir.path().join("homes"), None);
        let maps = WorkspaceMaps::new(chats, MapCache::default());
        (dir, maps)
    }

    #[test]
    fn a_request_naming_a_function_gets_its_file_and_functions() {
        let (_dir, maps) = workspace();
        let layer = maps.layer(1, "Why does send_chunk time out?", 500).unwrap();
        assert!(layer.starts_with("src/upload.rs:\n  pub fn send_chunk(part: &[u8]) -> io::Result<()>  [L3-L6]  ← named\n  fn retry(n: u32) -> u32  [L8-L10]\n"), "{layer}");
        assert!(!layer.contains("other.rs"), "{layer}");
        // Nothing named and nothing changed today: no layer at all.
        assert_eq!(maps.layer(1, "what's the weather like?", 500), None);
        assert_eq!(maps.layer(2, "send_chunk", 500), None, "no workspace");
        // The budget holds.
        let tiny = maps.layer(1, "send_chunk", 10);
        assert!(
            tiny.as_ref().is_none_or(|t| t.chars().count() <= 40),
            "{tiny:?}"
        );
    }

    #[test]
    fn a_file_changed_today_comes_without_being_named() {
        let (dir, maps) = workspace();
        std::fs::write(
            dir.path().join("chat_1/src/other.rs"),
            "fn unrelated() {}\nfn fresh() {}\n",
        )
        .unwrap();
        let layer = maps.layer(1, "what's next?", 500).unwrap();
        assert!(
            layer.starts_with("src/other.rs (changed today):\n  fn unrelated()"),
            "{layer}"
        );
    }

    #[test]
    fn an_edit_names_the_functions_it_wrote_into_and_paths_stay_inside() {
        let (dir, maps) = workspace();
        assert_eq!(
            maps.functions_touched(1, "src/upload.rs", &["    let timeout = 30;"]),
            ["send_chunk"]
        );
        assert_eq!(
            maps.functions_touched(1, "src/upload.rs", &[UPLOAD]),
            ["send_chunk", "retry"]
        );
        assert!(
            maps.functions_touched(1, "src/upload.rs", &["nowhere to be found"])
                .is_empty()
        );
        // An absolute path is taken only when it lies in the chat's own workspace.
        let own = dir.path().join("chat_1/src/upload.rs");
        assert_eq!(
            maps.functions_touched(1, &own.to_string_lossy(), &[UPLOAD]),
            ["send_chunk", "retry"]
        );
        std::fs::create_dir_all(dir.path().join("chat_2")).unwrap();
        assert!(
            maps.functions_touched(2, &own.to_string_lossy(), &[UPLOAD])
                .is_empty()
        );
        assert!(
            maps.functions_touched(2, "../chat_1/src/upload.rs", &[UPLOAD])
                .is_empty()
        );
        assert_eq!(maps.workspace(1), Some(dir.path().join("chat_1")));
        // A symlink out of the workspace to another chat's file is not read.
        std::fs::create_dir_all(dir.path().join("chat_2")).unwrap();
        std::fs::write(
            dir.path().join("chat_2/secret.rs"),
            "fn chat_two_secret() { let k = 1; }",
        )
        .unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("chat_2/secret.rs"),
            dir.path().join("chat_1/src/link.rs"),
        )
        .unwrap();
        assert!(
            maps.functions_touched(1, "src/link.rs", &["fn chat_two_secret() { let k = 1; }"])
                .is_empty()
        );
        let layer = maps.layer(1, "chat_two_secret", 500);
        assert!(
            layer
                .as_ref()
                .is_none_or(|l| !l.contains("chat_two_secret")),
            "{layer:?}"
        );
    }
}
