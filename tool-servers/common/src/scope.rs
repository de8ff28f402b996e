//! Which chat and workspace a tool call may touch.
//!
//! Over HTTP the agent's token check puts the turn's [`Scope`] into the request; a tool then
//! refuses any other chat id, and any path outside that chat's workspace. Over stdio
//! (`valor tools serve <name>`) the scope is the server's `--chat` flag, or, without it, the chat
//! id the call names (the local user's own process).

use std::path::{Component, Path, PathBuf};

use rmcp::RoleServer;
use rmcp::service::RequestContext;

use crate::ToolError;

/// One chat and its workspace directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub chat_id: i64,
    pub workspace: PathBuf,
}

impl Scope {
    /// The chat's scope under the workspaces root (`<root>/chat_<id>`, as the Claude driver
    /// lays them out).
    pub fn for_chat(workspaces_dir: &Path, chat_id: i64) -> Scope {
        Scope {
            chat_id,
            workspace: workspaces_dir.join(format!("chat_{chat_id}")),
        }
    }

    /// `path` (absolute, or relative to the workspace) as a real path inside the workspace.
    /// Symbolic links are followed before the check, so a link out of the workspace is refused.
    pub fn existing_path(&self, path: &str) -> Result<PathBuf, ToolError> {
        let candidate = self.join(path)?;
        let real = candidate.canonicalize().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ToolError::File(format!("{path} does not exist")),
            _ => ToolError::Io(format!("cannot open {path}: {e}")),
        })?;
        let root = self.workspace.canonicalize().map_err(|e| {
            ToolError::Io(format!(
                "the chat's workspace {} cannot be opened: {e}",
                self.workspace.display()
            ))
        })?;
        if !real.starts_with(&root) {
            return Err(outside(path));
        }
        Ok(real)
    }

    /// A path for a new file inside the workspace (the directory is created).
    pub fn new_path(&self, relative: &str) -> Result<PathBuf, ToolError> {
        let path = self.join(relative)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ToolError::Io(format!("cannot create {}: {e}", parent.display())))?;
        }
        Ok(path)
    }

    fn join(&self, path: &str) -> Result<PathBuf, ToolError> {
        if path.trim().is_empty() {
            return Err(ToolError::Invalid("the path is empty".to_owned()));
        }
        let given = Path::new(path);
        let relative = if given.is_absolute() {
            given
                .strip_prefix(&self.workspace)
                .map_err(|_| outside(path))?
        } else {
            given
        };
        // `..` is refused outright: a lexical check cannot be fooled by it.
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(outside(path));
        }
        Ok(self.workspace.join(relative))
    }
}

fn outside(path: &str) -> ToolError {
    ToolError::Refused(format!("{path} is outside this chat's workspace"))
}

/// Where a server's calls get their scope.
#[derive(Debug, Clone)]
pub struct ScopeSource {
    /// Workspaces root, for stdio servers not bound to one chat.
    pub workspaces_dir: PathBuf,
    /// A stdio server bound to one chat (`--chat`).
    pub fixed: Option<Scope>,
    /// Served over HTTP by the agent: every call must carry a token's chat scope; one
    /// without is refused (fail closed), never served as an open server.
    pub hosted: bool,
}

impl ScopeSource {
    /// The scope of a call that names `requested_chat`: the turn's own (HTTP), the server's
    /// (`--chat`), or that chat's when the server is open. Another chat than the turn's is
    /// refused.
    pub fn resolve(
        &self,
        context: &RequestContext<RoleServer>,
        requested_chat: i64,
    ) -> Result<Scope, ToolError> {
        let no_scope = || ToolError::Refused("this request carries no chat scope".to_owned());
        let bound = match context.extensions.get::<http::request::Parts>() {
            Some(parts) => Some(
                parts
                    .extensions
                    .get::<Scope>()
                    .cloned()
                    .ok_or_else(no_scope)?,
            ),
            None if self.hosted => return Err(no_scope()),
            None => self.fixed.clone(),
        };
        match bound {
            Some(scope) if scope.chat_id == requested_chat => Ok(scope),
            Some(scope) => Err(ToolError::Refused(format!(
                "this conversation is chat {}; chat {requested_chat} is out of reach",
                scope.chat_id
            ))),
            None => Ok(Scope::for_chat(&self.workspaces_dir, requested_chat)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_stay_inside_the_workspace() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let scope = Scope::for_chat(&dir, 7);
        std::fs::create_dir_all(scope.workspace.join("received")).unwrap();
        std::fs::write(scope.workspace.join("received/a.png"), b"x").unwrap();
        std::fs::write(dir.join("secret.txt"), b"x").unwrap();

        assert!(scope.existing_path("received/a.png").is_ok());
        let absolute = scope.workspace.join("received/a.png");
        assert!(scope.existing_path(absolute.to_str().unwrap()).is_ok());
        for hostile in [
            "../secret.txt",
            "received/../../secret.txt",
            "/etc/passwd",
            "",
        ] {
            let error = scope.existing_path(hostile).unwrap_err();
            assert!(
                matches!(error, ToolError::Refused(_) | ToolError::Invalid(_)),
                "{hostile}: {error}"
            );
        }
        // A symbolic link pointing out of the workspace is refused too.
        std::os::unix::fs::symlink(dir.join("secret.txt"), scope.workspace.join("link")).unwrap();
        assert!(matches!(
            scope.existing_path("link"),
            Err(ToolError::Refused(_))
        ));
        assert!(matches!(
            scope.existing_path("missing.png"),
            Err(ToolError::File(_))
        ));
    }
}
