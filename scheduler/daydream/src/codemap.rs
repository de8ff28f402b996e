//! The code map: for each source file its language and functions (name, signature, lines),
//! parsed with tree-sitter. Functions are found by walking the tree for each grammar's function
//! node kinds; a signature is the function's text up to its body, on one line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tree_sitter::{Node, Parser};
use valor_chatfs::{ChatDir, Kind};

/// Files larger than this are counted but not parsed (generated code, bundles).
pub(crate) const MAX_PARSE_BYTES: u64 = 512 * 1024;
/// Longest signature kept.
const MAX_SIGNATURE: usize = 160;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    TypeScript,
}

impl Language {
    pub fn of(path: &Path) -> Option<Language> {
        match path.extension()?.to_str()? {
            "rs" => Some(Language::Rust),
            "py" => Some(Language::Python),
            "js" | "mjs" | "cjs" | "jsx" => Some(Language::JavaScript),
            "ts" | "tsx" | "mts" => Some(Language::TypeScript),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::JavaScript => "JavaScript",
            Language::TypeScript => "TypeScript",
        }
    }

    fn grammar(self, path: &Path) -> tree_sitter::Language {
        match self {
            Language::Rust => tree_sitter_rust::LANGUAGE.into(),
            Language::Python => tree_sitter_python::LANGUAGE.into(),
            Language::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Language::TypeScript if path.extension().is_some_and(|e| e == "tsx") => {
                tree_sitter_typescript::LANGUAGE_TSX.into()
            }
            Language::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
        }
    }

    /// Node kinds that are functions in this grammar.
    fn function_kinds(self) -> &'static [&'static str] {
        match self {
            Language::Rust => &["function_item", "function_signature_item"],
            Language::Python => &["function_definition"],
            Language::JavaScript | Language::TypeScript => &[
                "function_declaration",
                "generator_function_declaration",
                "method_definition",
            ],
        }
    }
}

/// A function in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionInfo {
    pub name: String,
    pub signature: String,
    /// 1-based, inclusive.
    pub start_line: usize,
    pub end_line: usize,
}

/// One parsed file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileMap {
    /// Relative to the workspace.
    pub path: PathBuf,
    pub language: Language,
    pub lines: usize,
    pub functions: Vec<FunctionInfo>,
}

/// A workspace's code map.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CodeMap {
    pub files: Vec<FileMap>,
}

impl CodeMap {
    /// (files, functions, lines) per language.
    pub fn per_language(&self) -> BTreeMap<Language, (usize, usize, usize)> {
        let mut totals: BTreeMap<Language, (usize, usize, usize)> = BTreeMap::new();
        for file in &self.files {
            let entry = totals.entry(file.language).or_default();
            entry.0 += 1;
            entry.1 += file.functions.len();
            entry.2 += file.lines;
        }
        totals
    }

    pub fn file(&self, path: &Path) -> Option<&FileMap> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The most important files and their functions as text within `chars`: entry points
    /// first (main, lib, mod, index, app, server, __init__), then the files with the most
    /// functions.
    pub fn outline(&self, chars: usize) -> String {
        let entry = |f: &FileMap| {
            let stem = f.path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            ENTRY_POINTS.contains(&stem)
        };
        let mut files: Vec<&FileMap> = self
            .files
            .iter()
            .filter(|f| !f.functions.is_empty())
            .collect();
        files.sort_by(|a, b| {
            (entry(b), b.functions.len(), &a.path).cmp(&(entry(a), a.functions.len(), &b.path))
        });
        let mut out = String::new();
        'files: for file in files {
            let header = format!("{} ({} lines):\n", file.path.display(), file.lines);
            if out.len() + header.len() > chars {
                break;
            }
            out.push_str(&header);
            for function in &file.functions {
                let line = format!("  {}\n", function.signature);
                if out.len() + line.len() > chars {
                    break 'files;
                }
                out.push_str(&line);
            }
        }
        out
    }
}

/// File stems that usually start a program or a package.
const ENTRY_POINTS: &[&str] = &["main", "lib", "mod", "index", "app", "server", "__init__"];

/// File maps kept between daydreams, by absolute path, with the size and modification time
/// they were made from: a file unchanged since the last daydream is not parsed again (parsing
/// is most of phase 3: ~3 MB of source a second per core).
#[derive(Debug, Clone, Default)]
pub struct MapCache {
    entries: Arc<Mutex<std::collections::HashMap<PathBuf, CachedMap>>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedMap {
    size: u64,
    modified_ns: u128,
    map: FileMap,
}

impl MapCache {
    /// The cache saved at `path`; empty if there is none or it cannot be read.
    pub fn load(path: &Path) -> MapCache {
        let entries = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        MapCache {
            entries: Arc::new(Mutex::new(entries)),
        }
    }

    /// Saves the cache (written aside and renamed: a crash leaves the old one).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            serde_json::to_vec(&*entries).map_err(std::io::Error::other)?
        };
        let partial = path.with_extension("partial");
        std::fs::write(&partial, bytes)?;
        std::fs::rename(partial, path)
    }

    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, path: &Path, size: u64, modified_ns: u128) -> Option<FileMap> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .filter(|c| c.size == size && c.modified_ns == modified_ns)
            .map(|c| c.map.clone())
    }

    fn put(&self, path: PathBuf, size: u64, modified_ns: u128, map: FileMap) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                path,
                CachedMap {
                    size,
                    modified_ns,
                    map,
                },
            );
    }
}

/// Parses source files with one parser per language, reused across files.
#[derive(Default)]
pub struct Mapper {
    parsers: BTreeMap<(Language, bool), Parser>,
    cache: MapCache,
}

impl Mapper {
    pub fn with_cache(cache: MapCache) -> Mapper {
        Mapper {
            parsers: BTreeMap::new(),
            cache,
        }
    }

    /// The map of one file (`path` relative to `root`, read through the no-follow helper: a
    /// link or anything but a regular file is not mapped); `None` if it is not a supported
    /// language or cannot be read.
    pub fn map_file(&mut self, root: &ChatDir, path: &Path) -> Option<FileMap> {
        Language::of(path)?;
        let entry = root.entry(path).ok()??;
        if entry.kind != Kind::File {
            return None;
        }
        let full = root.join(path);
        let size = entry.size;
        let modified_ns = entry
            .modified
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        if let Some(map) = self.cache.get(&full, size, modified_ns) {
            return Some(map);
        }
        let map = self.parse_file(root, path, size)?;
        self.cache.put(full, size, modified_ns, map.clone());
        Some(map)
    }

    fn parse_file(&mut self, root: &ChatDir, path: &Path, size: u64) -> Option<FileMap> {
        let language = Language::of(path)?;
        let source = if size <= MAX_PARSE_BYTES {
            root.read(path, MAX_PARSE_BYTES).ok()?
        } else {
            Vec::new()
        };
        let lines = if size <= MAX_PARSE_BYTES {
            source.iter().filter(|b| **b == b'\n').count() + 1
        } else {
            0
        };
        let mut functions = Vec::new();
        if !source.is_empty() {
            let tsx = path.extension().is_some_and(|e| e == "tsx");
            let parser = self.parsers.entry((language, tsx)).or_insert_with(|| {
                let mut parser = Parser::new();
                // The grammars are compiled in: setting one fails only on an ABI mismatch,
                // which the tests would show at once.
                let _ = parser.set_language(&language.grammar(path));
                parser
            });
            if let Some(tree) = parser.parse(&source, None) {
                collect(
                    tree.root_node(),
                    &source,
                    language.function_kinds(),
                    &mut functions,
                );
            }
        }
        Some(FileMap {
            path: path.to_owned(),
            language,
            lines,
            functions,
        })
    }
}

/// Walks the tree with one cursor (no allocation per node) and does not descend into a
/// function once found: its body is most of the tree and holds no functions worth listing.
fn collect(root: Node<'_>, source: &[u8], kinds: &[&str], out: &mut Vec<FunctionInfo>) {
    let mut cursor = root.walk();
    loop {
        let node = cursor.node();
        let is_function = kinds.contains(&node.kind());
        if is_function && let Some(name) = node.child_by_field_name("name") {
            out.push(function_info(node, name, source));
        }
        if !is_function && cursor.goto_first_child() {
            continue;
        }
        // Next sibling, else up until a parent has one.
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return;
            }
        }
    }
}

fn function_info(node: Node<'_>, name: Node<'_>, source: &[u8]) -> FunctionInfo {
    let name = String::from_utf8_lossy(&source[name.byte_range()]).into_owned();
    let end = node
        .child_by_field_name("body")
        .map_or(node.end_byte(), |b| b.start_byte());
    let text = String::from_utf8_lossy(&source[node.start_byte()..end]);
    let mut signature: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if signature.chars().count() > MAX_SIGNATURE {
        signature = signature
            .chars()
            .take(MAX_SIGNATURE - 1)
            .collect::<String>()
            + "…";
    }
    FunctionInfo {
        name,
        signature: signature.trim_end_matches([' ', '{', ':']).to_owned(),
        start_line: node.start_position().row + 1,
        end_line: node.end_position().row + 1,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn root(path: &Path) -> ChatDir {
        ChatDir::open(path, None).unwrap()
    }

    fn map(name: &str, source: &str) -> FileMap {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), source).unwrap();
        Mapper::default()
            .map_file(&root(dir.path()), Path::new(name))
            .unwrap()
    }

    #[test]
    fn functions_of_each_language_with_signatures_and_lines() {
        let rust = map(
            "lib.rs",
            "pub struct A;\nimpl A {\n    pub fn new(x: u32) -> A {\n        A\n    }\n}\nfn helper() {}\n",
        );
        let names: Vec<(&str, &str, usize)> = rust
            .functions
            .iter()
            .map(|f| (f.name.as_str(), f.signature.as_str(), f.start_line))
            .collect();
        assert_eq!(
            names,
            [
                ("new", "pub fn new(x: u32) -> A", 3),
                ("helper", "fn helper()", 7)
            ]
        );
        assert_eq!(rust.functions[0].end_line, 5);

        let python = map(
            "app.py",
            "class C:\n    def run(self, n: int) -> int:\n        return n\n\ndef main():\n    pass\n",
        );
        let names: Vec<&str> = python
            .functions
            .iter()
            .map(|f| f.signature.as_str())
            .collect();
        assert_eq!(names, ["def run(self, n: int) -> int", "def main()"]);

        let ts = map(
            "api.ts",
            "export function load(id: string): Promise<User> { return get(id); }\nclass S { save(u: User) { } }\n",
        );
        let names: Vec<&str> = ts.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["load", "save"]);
        let js = map("ui.jsx", "function App() { return <div/>; }\n");
        assert_eq!(js.functions[0].name, "App");
        assert!(
            Mapper::default()
                .map_file(&root(Path::new("/")), Path::new("notes.txt"))
                .is_none()
        );
    }

    #[test]
    fn the_cache_serves_unchanged_files_and_reparses_changed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lib.rs");
        std::fs::write(&file, "fn one() {}\n").unwrap();
        let cache = MapCache::default();
        let first = Mapper::with_cache(cache.clone())
            .map_file(&root(dir.path()), Path::new("lib.rs"))
            .unwrap();
        assert_eq!(first.functions.len(), 1);
        assert_eq!(cache.len(), 1);
        let saved = dir.path().join("cache.json");
        cache.save(&saved).unwrap();
        let reloaded = MapCache::load(&saved);
        assert_eq!(reloaded.len(), 1);
        std::fs::write(&file, "fn one() {}\nfn two() {}\n").unwrap();
        let second = Mapper::with_cache(reloaded)
            .map_file(&root(dir.path()), Path::new("lib.rs"))
            .unwrap();
        assert_eq!(second.functions.len(), 2, "a changed file is parsed again");
        // A broken cache file is an empty cache, not an error.
        std::fs::write(&saved, "{not json").unwrap();
        assert!(MapCache::load(&saved).is_empty());
    }
}
