//! Valor's private runtime folder: per-turn MCP configs (each carrying a chat's tool token) live
//! here, never in a shared `/tmp` folder another user could have prepared.

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::ClaudeError;

/// A folder made fresh for this process (0700, owned by Valor's user), removed when dropped.
#[derive(Debug)]
pub struct RuntimeDir {
    path: PathBuf,
}

impl RuntimeDir {
    /// Under `$XDG_RUNTIME_DIR` when it is set, ours and private; else under `fallback` (made
    /// private if missing). The folder itself must not exist yet: an existing one is refused,
    /// whoever made it.
    pub fn create(
        xdg_runtime_dir: Option<&Path>,
        fallback: &Path,
    ) -> Result<RuntimeDir, ClaudeError> {
        let base = match xdg_runtime_dir.filter(|dir| private_and_ours(dir)) {
            Some(dir) => dir.join("valor"),
            None => fallback.to_owned(),
        };
        let fail = |path: &Path, reason: String| ClaudeError::RuntimeDir {
            path: path.to_owned(),
            reason,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)
            .map_err(|e| fail(&base, e.to_string()))?;
        if !private_and_ours(&base) {
            return Err(fail(
                &base,
                "it is not a folder of Valor's user with mode 0700".to_owned(),
            ));
        }
        let path = base.join(format!(
            "run-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| fail(&path, e.to_string()))?;
        if !private_and_ours(&path) {
            return Err(fail(&path, "it was not made private".to_owned()));
        }
        Ok(RuntimeDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A real folder (not a link), owned by this process's user, that nobody else may enter.
fn private_and_ours(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| {
        m.is_dir()
            && m.uid() == nix::unistd::geteuid().as_raw()
            && m.permissions().mode() & 0o077 == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_folder_is_new_private_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let xdg = root.path().join("xdg");
        std::fs::DirBuilder::new().mode(0o700).create(&xdg).unwrap();
        let dir = RuntimeDir::create(Some(&xdg), &root.path().join("fallback")).unwrap();
        assert!(dir.path().starts_with(xdg.join("valor")));
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let second = RuntimeDir::create(Some(&xdg), &root.path().join("fallback")).unwrap();
        assert_ne!(dir.path(), second.path(), "each start makes its own");
        let path = dir.path().to_owned();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn a_shared_or_foreign_base_is_not_used() {
        let root = tempfile::tempdir().unwrap();
        // An XDG_RUNTIME_DIR others may enter is passed over for the fallback.
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let fallback = root.path().join("store.run");
        let dir = RuntimeDir::create(Some(&open), &fallback).unwrap();
        assert!(
            dir.path().starts_with(&fallback),
            "{}",
            dir.path().display()
        );
        // A fallback someone made world-writable beforehand is refused, not used.
        let planted = root.path().join("planted");
        std::fs::create_dir(&planted).unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = RuntimeDir::create(None, &planted).unwrap_err().to_string();
        assert!(error.contains("mode 0700"), "{error}");
        // A link in place of the folder is refused too.
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&fallback, &link).unwrap();
        assert!(RuntimeDir::create(None, &link).is_err());
    }
}
