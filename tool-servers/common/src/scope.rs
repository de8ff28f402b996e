//! Which chat and workspace a tool call may touch.
//!
//! Over HTTP the agent's token check puts the turn's [`Scope`] into the request; a tool then
//! refuses any other chat id, and any path outside that chat's workspace. Over stdio
//! (`valor tools serve <name>`) the scope is the server's `--chat` flag, or, without it, the chat
//! id the call names (the local user's own process).

use std::path::{Path, PathBuf};

use rmcp::RoleServer;
use rmcp::service::RequestContext;
use valor_chatfs::{ChatDir, ChatFs, ChatFsError, Entry};

use crate::ToolError;

/// One chat and its workspace directory. Every file a tool reads or writes there goes through
/// the no-follow helper (`valor-chatfs`): a link the chat planted, a `..` or a FIFO is refused,
/// never followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub chat_id: i64,
    /// The workspace's path (for messages; never opened by path).
    pub workspace: PathBuf,
    chats: ChatFs,
}

impl Scope {
    /// The chat's scope among `chats`' folders.
    pub fn of(chats: &ChatFs, chat_id: i64) -> Scope {
        Scope {
            chat_id,
            workspace: chats.paths(chat_id).workspace,
            chats: chats.clone(),
        }
    }

    /// The chat's scope under the workspaces root (`<root>/chat_<id>`), files owned by Valor's
    /// own user (a stdio server, a test).
    pub fn for_chat(workspaces_dir: &Path, chat_id: i64) -> Scope {
        let chats = ChatFs::new(
            workspaces_dir.to_owned(),
            workspaces_dir.join(".homes"),
            None,
        );
        Scope::of(&chats, chat_id)
    }

    /// The workspace, made when missing.
    pub fn workspace_dir(&self) -> Result<ChatDir, ToolError> {
        self.chats.workspace(self.chat_id).map_err(|e| {
            ToolError::Io(format!(
                "the chat's workspace {} cannot be opened: {e}",
                self.workspace.display()
            ))
        })
    }

    /// A file of the workspace (`path` absolute inside it, or relative), whole, when at most
    /// `max` bytes: its full path and bytes.
    pub fn read_file(&self, path: &str, max: u64) -> Result<(PathBuf, Vec<u8>), ToolError> {
        let dir = self.workspace_dir()?;
        let relative = self.relative(&dir, path)?;
        let bytes = dir
            .read(relative, max)
            .map_err(|e| file_error(path, e, max))?;
        Ok((dir.join(relative), bytes))
    }

    /// Writes a new file at `relative` (its folders made), private; returns its full path.
    pub fn write_new(&self, relative: &str, bytes: &[u8]) -> Result<PathBuf, ToolError> {
        use std::io::Write as _;
        let dir = self.workspace_dir()?;
        let relative = self.relative(&dir, relative)?;
        if let Some(parent) = relative.parent().filter(|p| !p.as_os_str().is_empty()) {
            dir.create_dir_all(parent)
                .map_err(|e| file_error(&parent.display().to_string(), e, 0))?;
        }
        let shown = relative.display().to_string();
        let mut file = dir
            .create_new(relative)
            .map_err(|e| file_error(&shown, e, 0))?;
        file.write_all(bytes)
            .map_err(|e| ToolError::Io(format!("cannot write {shown}: {e}")))?;
        Ok(dir.join(relative))
    }

    /// The entries of a folder of the workspace (none when it does not exist yet).
    pub fn entries(&self, relative: &str) -> Result<Vec<Entry>, ToolError> {
        let dir = self.workspace_dir()?;
        let relative = self.relative(&dir, relative)?;
        match dir.subdir(relative) {
            Ok(sub) => sub
                .entries()
                .map_err(|e| file_error(relative.to_str().unwrap_or(""), e, 0)),
            Err(ChatFsError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(file_error(relative.to_str().unwrap_or(""), e, 0)),
        }
    }

    fn relative<'a>(&self, dir: &ChatDir, path: &'a str) -> Result<&'a Path, ToolError> {
        if path.trim().is_empty() {
            return Err(ToolError::Invalid("the path is empty".to_owned()));
        }
        dir.relative(Path::new(path)).map_err(|_| outside(path))
    }
}

/// What a tool says of a path the helper refused or could not read.
fn file_error(path: &str, error: ChatFsError, max: u64) -> ToolError {
    match error {
        ChatFsError::Outside(_) => outside(path),
        ChatFsError::Link(_) => ToolError::Refused(format!(
            "{path} is or passes through a symbolic link; links are not followed"
        )),
        ChatFsError::NotFound(_) => ToolError::File(format!("{path} does not exist")),
        ChatFsError::NotAFile(_) => ToolError::File(format!("{path} is not a regular file")),
        ChatFsError::NotADir(_) => ToolError::File(format!("{path} is not a folder")),
        ChatFsError::TooLarge { size, .. } => ToolError::File(format!(
            "{path} is {:.1} MB; at most {:.0} MB",
            size as f64 / 1_048_576.0,
            max as f64 / 1_048_576.0
        )),
        ChatFsError::Io { source, .. } => ToolError::Io(format!("cannot use {path}: {source}")),
    }
}

fn outside(path: &str) -> ToolError {
    ToolError::Refused(format!("{path} is outside this chat's workspace"))
}

/// Where a server's calls get their scope.
#[derive(Debug, Clone)]
pub struct ScopeSource {
    /// Where chats' folders are, for stdio servers not bound to one chat.
    pub chats: ChatFs,
    /// A stdio server bound to one chat (`--chat`).
    pub fixed: Option<Scope>,
    /// Served over HTTP by the agent: every call must carry a token's chat scope; one
    /// without is refused (fail closed), never served as an open server.
    pub hosted: bool,
}

impl ScopeSource {
    /// The chat a call comes from, when the call names none: the turn's own (HTTP, required),
    /// the server's (`--chat`), or none (the operator's own stdio server).
    pub fn caller(&self, context: &RequestContext<RoleServer>) -> Result<Option<Scope>, ToolError> {
        let no_scope = || ToolError::Refused("this request carries no chat scope".to_owned());
        match context.extensions.get::<http::request::Parts>() {
            Some(parts) => parts
                .extensions
                .get::<Scope>()
                .cloned()
                .map(Some)
                .ok_or_else(no_scope),
            None if self.hosted => Err(no_scope()),
            None => Ok(self.fixed.clone()),
        }
    }

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
            None => Ok(Scope::of(&self.chats, requested_chat)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_stay_inside_the_workspace_and_links_are_refused() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let scope = Scope::for_chat(&dir, 7);
        scope.write_new("received/a.png", b"x").unwrap();
        std::fs::write(dir.join("secret.txt"), b"secret").unwrap();

        assert_eq!(scope.read_file("received/a.png", 10).unwrap().1, b"x");
        let absolute = scope.workspace.join("received/a.png");
        assert!(scope.read_file(absolute.to_str().unwrap(), 10).is_ok());
        for hostile in [
            "../secret.txt",
            "received/../../secret.txt",
            "/etc/passwd",
            "",
        ] {
            let error = scope.read_file(hostile, 10).unwrap_err();
            assert!(
                matches!(error, ToolError::Refused(_) | ToolError::Invalid(_)),
                "{hostile}: {error}"
            );
        }
        // A symbolic link pointing out of the workspace is refused, and so is one inside it.
        std::os::unix::fs::symlink(dir.join("secret.txt"), scope.workspace.join("link")).unwrap();
        assert!(matches!(
            scope.read_file("link", 10),
            Err(ToolError::Refused(_))
        ));
        std::os::unix::fs::symlink(&dir, scope.workspace.join("out")).unwrap();
        assert!(matches!(
            scope.write_new("out/new.png", b"x"),
            Err(ToolError::Refused(_))
        ));
        assert!(!dir.join("new.png").exists());
        assert!(matches!(
            scope.read_file("missing.png", 10),
            Err(ToolError::File(_))
        ));
        let names: Vec<_> = scope
            .entries(valor_chatfs::RECEIVED)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["a.png"]);
        assert!(scope.entries("nothing-yet").unwrap().is_empty());
    }
}
