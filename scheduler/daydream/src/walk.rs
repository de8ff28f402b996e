//! A workspace's source files, found without following anything the workspace's owner could
//! have planted: every folder is opened beneath the root with no link followed (valor-chatfs),
//! `.gitignore` files are read the same way (their rules come from ripgrep's `ignore` crate),
//! links are never walked into or read, and the walk has a depth and a file count it stops at.

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use valor_chatfs::{ChatDir, Entry, Kind};

/// A `.gitignore` larger than this is not read (its rules are left out).
const MAX_GITIGNORE: u64 = 256 * 1024;
/// Folders never walked: git's own, and what builds and package managers fill.
const SKIPPED: [&str; 6] = [
    ".git",
    "node_modules",
    "target",
    "__pycache__",
    ".venv",
    "venv",
];

/// One regular file of the workspace.
#[derive(Debug, Clone)]
pub struct Walked {
    /// Relative to the workspace's root.
    pub relative: PathBuf,
    pub entry: Entry,
}

/// The regular files below `root` (at most `max_files`, `max_depth` folders deep) that
/// `keep` accepts and no `.gitignore` on their way ignores.
pub fn files(
    root: &ChatDir,
    max_depth: usize,
    max_files: usize,
    keep: impl Fn(&Path) -> bool,
) -> Vec<Walked> {
    let mut found = Vec::new();
    let mut stack: Vec<(ChatDir, PathBuf, usize, Vec<Gitignore>)> = Vec::new();
    match reopen(root) {
        Some(dir) => stack.push((dir, PathBuf::new(), 0, Vec::new())),
        None => return found,
    }
    while let Some((dir, relative, depth, mut rules)) = stack.pop() {
        let Ok(mut entries) = dir.entries() else {
            continue;
        };
        // Sorted: the same workspace gives the same files in the same order.
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(ignore) = gitignore(&dir, &entries) {
            rules.push(ignore);
        }
        for entry in entries {
            let path = relative.join(&entry.name);
            let is_dir = entry.kind == Kind::Dir;
            let ignored = rules
                .iter()
                .rev()
                .map(|r| r.matched(dir.join(&entry.name), is_dir))
                .find(|m| !m.is_none())
                .is_some_and(|m| m.is_ignore());
            if ignored {
                continue;
            }
            match entry.kind {
                Kind::File if keep(&path) => {
                    found.push(Walked {
                        relative: path,
                        entry,
                    });
                    if found.len() >= max_files {
                        return found;
                    }
                }
                Kind::Dir if depth < max_depth => {
                    let name = entry.name.to_string_lossy();
                    if SKIPPED.contains(&name.as_ref()) {
                        continue;
                    }
                    // Replaced by a link since it was listed: refused, and passed over.
                    if let Ok(sub) = dir.subdir(&entry.name) {
                        stack.push((sub, path, depth + 1, rules.clone()));
                    }
                }
                // Links, FIFOs, devices: never followed or read.
                _ => {}
            }
        }
    }
    found
}

/// The folder's `.gitignore`, read through the helper, as rules matched against full paths.
fn gitignore(dir: &ChatDir, entries: &[Entry]) -> Option<Gitignore> {
    entries
        .iter()
        .find(|e| e.name == ".gitignore" && e.kind == Kind::File)?;
    let text = dir.read_to_string(".gitignore", MAX_GITIGNORE).ok()?;
    let mut builder = GitignoreBuilder::new(dir.path());
    for line in text.lines() {
        let _ = builder.add_line(None, line);
    }
    builder.build().ok()
}

fn reopen(root: &ChatDir) -> Option<ChatDir> {
    root.subdir("").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_ignored_files_are_left_out() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("ws");
        std::fs::create_dir_all(root.join("src/deep")).unwrap();
        std::fs::create_dir_all(root.join("target/debug")).unwrap();
        std::fs::create_dir_all(root.join("generated")).unwrap();
        std::fs::write(root.join("src/main.rs"), "fn main() {}").unwrap();
        std::fs::write(root.join("src/deep/lib.rs"), "fn f() {}").unwrap();
        std::fs::write(root.join("target/debug/x.rs"), "").unwrap();
        std::fs::write(root.join("generated/g.rs"), "").unwrap();
        std::fs::write(root.join(".gitignore"), "generated/\n*.tmp.rs\n").unwrap();
        std::fs::write(root.join("src/a.tmp.rs"), "").unwrap();
        let outside = tmp.path().join("other");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.rs"), "fn secret() {}").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("src/linked")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.rs"), root.join("src/s.rs")).unwrap();
        let dir = ChatDir::open(&root, None).unwrap();
        let mut found: Vec<String> = files(&dir, 16, 100, |_| true)
            .into_iter()
            .map(|w| w.relative.display().to_string())
            .collect();
        found.sort();
        assert_eq!(found, [".gitignore", "src/deep/lib.rs", "src/main.rs"]);
        assert_eq!(
            files(&dir, 0, 100, |_| true).len(),
            1,
            "depth 0: the root's files"
        );
        assert_eq!(files(&dir, 16, 1, |_| true).len(), 1, "stops at the count");
    }
}
