//! A chat's folders as Valor's own code touches them.
//!
//! A chat's workspace and HOME are written by its sandbox, so everything in them may be a trap:
//! a link to another chat's files, a `..`, a FIFO that blocks a reader forever. Valor runs
//! outside the sandbox with more rights than the chat, so it never resolves a path there the
//! usual way. Every file Valor reads or writes below a chat's root goes through [`ChatDir`]:
//! opened beneath the root with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)` (a component walk with `O_NOFOLLOW` on kernels
//! without it), regular files only, new files private (0600) and owned by the sandbox's user.
//!
//! [`ChatFs`] is the one place that knows where a chat's folders are ([`ChatPaths`]) and who
//! owns what Valor makes in them ([`Owner`]).

mod dir;

use std::path::{Path, PathBuf};

pub use dir::{ChatDir, Entry, Kind};

/// Where a chat's folders live, and who owns what Valor makes in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatFs {
    workspaces_dir: PathBuf,
    homes_dir: PathBuf,
    owner: Option<Owner>,
}

/// The user and group a sandbox runs as, when Valor runs as root: folders and files Valor makes
/// in a chat's tree are given to them, or the sandbox could not use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// A chat's places: its workspace (the sandbox's working directory) and its HOME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatPaths {
    pub chat_id: i64,
    pub workspace: PathBuf,
    pub home: PathBuf,
}

/// Files a user sends are saved in this folder of the workspace.
pub const RECEIVED: &str = "received";

/// Why a path below a chat's root was not opened.
#[derive(Debug, thiserror::Error)]
pub enum ChatFsError {
    #[error("{0} is outside the chat's folder")]
    Outside(PathBuf),
    #[error("{0} is or passes through a symbolic link")]
    Link(PathBuf),
    #[error("{0} does not exist")]
    NotFound(PathBuf),
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("{0} is not a folder")]
    NotADir(PathBuf),
    #[error("{path} is {size} bytes, more than the {max} read here")]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ChatFsError {
    /// Whether the path was refused as hostile (a link, `..`, not a regular file), rather than
    /// missing or unreadable.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ChatFsError::Outside(_)
                | ChatFsError::Link(_)
                | ChatFsError::NotAFile(_)
                | ChatFsError::NotADir(_)
        )
    }
}

impl ChatFs {
    /// `owner` is the sandbox's user when Valor runs as root (see [`ChatFs::sandbox_owner`]).
    pub fn new(workspaces_dir: PathBuf, homes_dir: PathBuf, owner: Option<Owner>) -> ChatFs {
        ChatFs {
            workspaces_dir,
            homes_dir,
            owner,
        }
    }

    /// The owner to give a chat's files: `uid` (and the group of the same number) when this
    /// process runs as root and sandboxes are on, else none (files stay Valor's user's).
    pub fn sandbox_owner(sandboxed: bool, uid: u32) -> Option<Owner> {
        (sandboxed && rustix::process::geteuid().is_root()).then_some(Owner { uid, gid: uid })
    }

    pub fn owner(&self) -> Option<Owner> {
        self.owner
    }

    pub fn workspaces_dir(&self) -> &Path {
        &self.workspaces_dir
    }

    pub fn homes_dir(&self) -> &Path {
        &self.homes_dir
    }

    /// Where the chat's folders are (nothing is created).
    pub fn paths(&self, chat_id: i64) -> ChatPaths {
        ChatPaths {
            chat_id,
            workspace: self.workspaces_dir.join(folder_name(chat_id)),
            home: self.homes_dir.join(folder_name(chat_id)),
        }
    }

    /// The chat's workspace, created (0700, the sandbox's) on first use.
    pub fn workspace(&self, chat_id: i64) -> Result<ChatDir, ChatFsError> {
        ChatDir::create_in(&self.workspaces_dir, &folder_name(chat_id), self.owner)
    }

    /// The chat's workspace if it exists; `None` when it was never made.
    pub fn existing_workspace(&self, chat_id: i64) -> Result<Option<ChatDir>, ChatFsError> {
        match ChatDir::open(&self.paths(chat_id).workspace, self.owner) {
            Ok(dir) => Ok(Some(dir)),
            Err(ChatFsError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The chat's HOME, created (0700, the sandbox's) on first use.
    pub fn home(&self, chat_id: i64) -> Result<ChatDir, ChatFsError> {
        ChatDir::create_in(&self.homes_dir, &folder_name(chat_id), self.owner)
    }
}

/// `chat_<id>`: a chat's folder below the workspaces and homes roots.
pub fn folder_name(chat_id: i64) -> String {
    format!("chat_{chat_id}")
}

#[cfg(test)]
mod tests;
