//! [`ChatDir`]: an open folder of a chat's tree, and every path below it opened without following
//! a link or leaving it.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::{ChatFsError, Owner};

/// An open folder of a chat's tree (its workspace, its HOME, or a folder below them).
#[derive(Debug)]
pub struct ChatDir {
    fd: OwnedFd,
    path: PathBuf,
    owner: Option<Owner>,
}

/// One entry of a folder, as it is (a link is a link, never what it points to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
    pub kind: Kind,
    /// Bytes of a regular file (0 for anything else).
    pub size: u64,
    /// Bytes the entry takes on disk.
    pub disk_bytes: u64,
    pub modified: SystemTime,
    pub uid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device: never read.
    Other,
}

/// Every lookup below a root: stay beneath it, follow no link of any kind, cross no mount.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

const PRIVATE_FILE: u32 = 0o600;
const PRIVATE_DIR: u32 = 0o700;

impl AsFd for ChatDir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl ChatDir {
    /// Opens `root` itself. Its last component is not followed; the folders above it are
    /// Valor's own (the operator's layout may use links there).
    pub fn open(root: &Path, owner: Option<Owner>) -> Result<ChatDir, ChatFsError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(CWD, root, flags, Mode::empty()).map_err(|e| {
            // `O_DIRECTORY | O_NOFOLLOW` on a link says "not a directory".
            let link = std::fs::symlink_metadata(root).is_ok_and(|m| m.file_type().is_symlink());
            if link {
                ChatFsError::Link(root.to_owned())
            } else {
                classify(e, root)
            }
        })?;
        Ok(ChatDir {
            fd,
            path: root.to_owned(),
            owner,
        })
    }

    /// `parent/name`, made (0700, given to `owner`) when missing. `parent` is Valor's own
    /// folder (the workspaces or homes root), made private when missing. A `name` found to be
    /// a link is refused; a folder of another owner is given to `owner` (a tree Valor made
    /// before sandboxes ran as their own user).
    pub fn create_in(
        parent: &Path,
        name: &str,
        owner: Option<Owner>,
    ) -> Result<ChatDir, ChatFsError> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR)
            .create(parent)
            .map_err(|source| io_error(parent, source))?;
        let parent_dir = ChatDir::open(parent, None)?;
        let created = parent_dir.make_dir(Path::new(name))?;
        let dir = parent_dir.subdir(name)?;
        if let Some(owner) = owner {
            let stat = rustix::fs::fstat(&dir.fd).map_err(|e| classify(e, &dir.path))?;
            if created || stat.st_uid != owner.uid {
                dir.chown_tree(owner)?;
            }
        }
        Ok(ChatDir { owner, ..dir })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path` as a path below this folder: a relative one as it is, an absolute one only when
    /// it lies below this folder. `..`, a root or a prefix anywhere is refused.
    pub fn relative<'a>(&self, path: &'a Path) -> Result<&'a Path, ChatFsError> {
        let relative = if path.is_absolute() {
            path.strip_prefix(&self.path)
                .map_err(|_| ChatFsError::Outside(path.to_owned()))?
        } else {
            path
        };
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(ChatFsError::Outside(path.to_owned()));
        }
        Ok(relative)
    }

    /// The full path of `relative` (for messages and for handing to the sandbox).
    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.path.join(relative)
    }

    /// A regular file below this folder, open for reading. A FIFO or device is refused before
    /// anything reads it (opened non-blocking, checked, then made blocking again).
    pub fn open_file(&self, relative: impl AsRef<Path>) -> Result<File, ChatFsError> {
        let relative = relative.as_ref();
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = self.resolve(relative, flags, Mode::empty())?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| classify(e, &self.join(relative)))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(ChatFsError::NotAFile(self.join(relative)));
        }
        rustix::fs::fcntl_setfl(&fd, OFlags::empty())
            .map_err(|e| classify(e, &self.join(relative)))?;
        Ok(File::from(fd))
    }

    /// A regular file's bytes, at most `max` of them (a bigger file is refused, not cut).
    pub fn read(&self, relative: impl AsRef<Path>, max: u64) -> Result<Vec<u8>, ChatFsError> {
        let relative = relative.as_ref();
        let file = self.open_file(relative)?;
        let size = file
            .metadata()
            .map_err(|e| io_error(&self.join(relative), e))?
            .len();
        if size > max {
            return Err(ChatFsError::TooLarge {
                path: self.join(relative),
                size,
                max,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        // The file may grow while it is read: never more than `max` (+1 to see that it did).
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(&self.join(relative), e))?;
        if bytes.len() as u64 > max {
            return Err(ChatFsError::TooLarge {
                path: self.join(relative),
                size: bytes.len() as u64,
                max,
            });
        }
        Ok(bytes)
    }

    /// A regular file's text (lossy UTF-8), at most `max` bytes.
    pub fn read_to_string(
        &self,
        relative: impl AsRef<Path>,
        max: u64,
    ) -> Result<String, ChatFsError> {
        let bytes = self.read(relative, max)?;
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// What `relative` is, without following it; `None` when it does not exist. A link in a
    /// folder on the way is an error, a link at the end is reported as [`Kind::Symlink`].
    pub fn entry(&self, relative: impl AsRef<Path>) -> Result<Option<Entry>, ChatFsError> {
        let relative = relative.as_ref();
        let (parent, name) = split(relative).ok_or_else(|| self.outside(relative))?;
        let parent = match parent {
            Some(parent) => match self.subdir(parent) {
                Ok(dir) => dir,
                Err(ChatFsError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            },
            None => self.reopen()?,
        };
        match rustix::fs::statat(&parent.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(entry_of(name.into(), &stat))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(classify(e, &self.join(relative))),
        }
    }

    /// An existing folder below this one.
    pub fn subdir(&self, relative: impl AsRef<Path>) -> Result<ChatDir, ChatFsError> {
        let relative = relative.as_ref();
        let fd = self.resolve(relative, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        Ok(ChatDir {
            fd,
            path: self.join(relative),
            owner: self.owner,
        })
    }

    /// The folder `relative` with every missing folder on the way made (0700, the owner's).
    pub fn create_dir_all(&self, relative: impl AsRef<Path>) -> Result<ChatDir, ChatFsError> {
        let relative = self.relative(relative.as_ref())?.to_owned();
        let mut current = self.reopen()?;
        for component in relative.components() {
            let Component::Normal(name) = component else {
                continue;
            };
            current.make_dir(Path::new(name))?;
            current = current.subdir(name)?;
        }
        Ok(current)
    }

    /// A new file (it must not exist: `O_EXCL`), 0600, given to the owner, open for writing.
    pub fn create_new(&self, relative: impl AsRef<Path>) -> Result<File, ChatFsError> {
        let relative = relative.as_ref();
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOCTTY;
        let fd = self.resolve(relative, flags, Mode::from_raw_mode(PRIVATE_FILE))?;
        self.give(&fd, &self.join(relative))?;
        Ok(File::from(fd))
    }

    /// Writes `bytes` to `relative` atomically: a private new file beside it, then renamed over
    /// it (a link or file planted at the name is replaced, never written through).
    pub fn write_atomic(
        &self,
        relative: impl AsRef<Path>,
        bytes: &[u8],
    ) -> Result<(), ChatFsError> {
        let relative = relative.as_ref();
        let (parent, name) = split(relative).ok_or_else(|| self.outside(relative))?;
        let dir = match parent {
            Some(parent) => self.subdir(parent)?,
            None => self.reopen()?,
        };
        let temporary = format!(
            ".{}.{}.partial",
            name.to_string_lossy(),
            uuid::Uuid::new_v4().simple()
        );
        let result = (|| {
            let mut file = dir.create_new(&temporary)?;
            file.write_all(bytes)
                .map_err(|e| io_error(&dir.join(&temporary), e))?;
            rustix::fs::renameat(&dir.fd, temporary.as_str(), &dir.fd, name)
                .map_err(|e| classify(e, &self.join(relative)))
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&dir.fd, temporary.as_str(), AtFlags::empty());
        }
        result
    }

    /// The entries of this folder, each as it is (links not followed), `.` and `..` left out.
    pub fn entries(&self) -> Result<Vec<Entry>, ChatFsError> {
        let reader = rustix::fs::Dir::read_from(&self.fd).map_err(|e| classify(e, &self.path))?;
        let mut entries = Vec::new();
        for item in reader {
            let item = item.map_err(|e| classify(e, &self.path))?;
            let name = item.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsString::from(std::ffi::OsStr::from_bytes(name));
            match rustix::fs::statat(&self.fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => entries.push(entry_of(name, &stat)),
                // Removed while listed.
                Err(Errno::NOENT) => {}
                Err(e) => return Err(classify(e, &self.join(&name))),
            }
        }
        Ok(entries)
    }

    /// Removes `relative` and, for a folder, everything in it; a link is removed, never what it
    /// points to. Missing is fine.
    pub fn remove(&self, relative: impl AsRef<Path>) -> Result<(), ChatFsError> {
        let relative = relative.as_ref();
        let (parent, name) = split(relative).ok_or_else(|| self.outside(relative))?;
        let dir = match parent {
            Some(parent) => match self.subdir(parent) {
                Ok(dir) => dir,
                Err(ChatFsError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            },
            None => self.reopen()?,
        };
        dir.remove_entry(name)
    }

    /// Bytes this folder and everything below it take on disk (links counted as themselves).
    pub fn disk_usage(&self) -> Result<u64, ChatFsError> {
        let mut total = 0u64;
        for entry in self.entries()? {
            total = total.saturating_add(entry.disk_bytes);
            if entry.kind == Kind::Dir {
                match self.subdir(&entry.name) {
                    Ok(dir) => total = total.saturating_add(dir.disk_usage()?),
                    // Replaced or removed meanwhile: the sandbox is writing; count what is seen.
                    Err(ChatFsError::NotFound(_) | ChatFsError::Link(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(total)
    }

    /// Gives this folder and everything below it to `owner` (links themselves, never their
    /// targets).
    fn chown_tree(&self, owner: Owner) -> Result<(), ChatFsError> {
        chown(&self.fd, owner, &self.path)?;
        for entry in self.entries()? {
            let name = entry.name.as_os_str();
            match entry.kind {
                Kind::Dir => match self.subdir(name) {
                    Ok(dir) => dir.chown_tree(owner)?,
                    Err(ChatFsError::NotFound(_) | ChatFsError::Link(_)) => {}
                    Err(e) => return Err(e),
                },
                _ => {
                    let uid = Some(rustix::fs::Uid::from_raw(owner.uid));
                    let gid = Some(rustix::fs::Gid::from_raw(owner.gid));
                    rustix::fs::chownat(&self.fd, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| classify(e, &self.join(name)))?;
                }
            }
        }
        Ok(())
    }

    fn remove_entry(&self, name: &std::ffi::OsStr) -> Result<(), ChatFsError> {
        let stat = match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(classify(e, &self.join(name))),
        };
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            let dir = self.subdir(name)?;
            for entry in dir.entries()? {
                dir.remove_entry(&entry.name)?;
            }
            rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)
        } else {
            rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())
        }
        .or_else(|e| if e == Errno::NOENT { Ok(()) } else { Err(e) })
        .map_err(|e| classify(e, &self.join(name)))
    }

    /// Makes one folder (0700, the owner's); true when it was made, false when it was there.
    fn make_dir(&self, name: &Path) -> Result<bool, ChatFsError> {
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(PRIVATE_DIR)) {
            Ok(()) => {
                let dir = self.subdir(name)?;
                self.give(&dir.fd, &dir.path)?;
                Ok(true)
            }
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(classify(e, &self.join(name))),
        }
    }

    fn is_link(&self, relative: &Path) -> bool {
        matches!(
            self.entry(relative),
            Ok(Some(Entry {
                kind: Kind::Symlink,
                ..
            }))
        )
    }

    fn reopen(&self) -> Result<ChatDir, ChatFsError> {
        let fd =
            rustix::io::fcntl_dupfd_cloexec(&self.fd, 0).map_err(|e| classify(e, &self.path))?;
        Ok(ChatDir {
            fd,
            path: self.path.clone(),
            owner: self.owner,
        })
    }

    fn give(&self, fd: &OwnedFd, path: &Path) -> Result<(), ChatFsError> {
        match self.owner {
            Some(owner) => chown(fd, owner, path),
            None => Ok(()),
        }
    }

    fn outside(&self, relative: &Path) -> ChatFsError {
        ChatFsError::Outside(self.join(relative))
    }

    /// Opens `relative` beneath this folder: no link followed anywhere, no `..`, no mount
    /// crossed. `openat2` where the kernel has it (5.6+), else one `O_NOFOLLOW` step a
    /// component.
    fn resolve(&self, relative: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, ChatFsError> {
        let relative = self.relative(relative)?;
        let path: &Path = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        let full = self.join(relative);
        let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let opened = match rustix::fs::openat2(&self.fd, path, flags, mode, RESOLVE) {
            Err(Errno::NOSYS) => return self.resolve_stepwise(path, flags, mode),
            opened => opened,
        };
        opened.map_err(|e| match e {
            // `O_DIRECTORY | O_NOFOLLOW` on a link at the end says "not a directory".
            Errno::NOTDIR if self.is_link(path) => ChatFsError::Link(full),
            e => classify(e, &full),
        })
    }

    fn resolve_stepwise(
        &self,
        path: &Path,
        flags: OFlags,
        mode: Mode,
    ) -> Result<OwnedFd, ChatFsError> {
        let full = self.join(path);
        let components: Vec<&std::ffi::OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name),
                _ => None,
            })
            .collect();
        let Some((last, folders)) = components.split_last() else {
            return rustix::io::fcntl_dupfd_cloexec(&self.fd, 0).map_err(|e| classify(e, &full));
        };
        let step = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut current: Option<OwnedFd> = None;
        for folder in folders {
            let at = current.as_ref().map_or(self.fd.as_fd(), |fd| fd.as_fd());
            let next =
                rustix::fs::openat(at, *folder, step, Mode::empty()).map_err(|e| match e {
                    Errno::NOTDIR if self.is_link(path) => ChatFsError::Link(full.clone()),
                    e => classify(e, &full),
                })?;
            current = Some(next);
        }
        let at = current.as_ref().map_or(self.fd.as_fd(), |fd| fd.as_fd());
        rustix::fs::openat(at, *last, flags, mode).map_err(|e| classify(e, &full))
    }
}

/// `(parent, name)` of a relative path with at least one component.
fn split(relative: &Path) -> Option<(Option<&Path>, &std::ffi::OsStr)> {
    let name = relative.file_name()?;
    let parent = relative.parent().filter(|p| !p.as_os_str().is_empty());
    Some((parent, name))
}

fn chown(fd: &OwnedFd, owner: Owner, path: &Path) -> Result<(), ChatFsError> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(owner.uid)),
        Some(rustix::fs::Gid::from_raw(owner.gid)),
    )
    .map_err(|e| classify(e, path))
}

fn entry_of(name: OsString, stat: &rustix::fs::Stat) -> Entry {
    let kind = match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    };
    let seconds = u64::try_from(stat.st_mtime).unwrap_or(0);
    let nanos = u32::try_from(stat.st_mtime_nsec).unwrap_or(0);
    Entry {
        name,
        kind,
        size: if kind == Kind::File {
            u64::try_from(stat.st_size).unwrap_or(0)
        } else {
            0
        },
        disk_bytes: u64::try_from(stat.st_blocks)
            .unwrap_or(0)
            .saturating_mul(512),
        modified: SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos.min(999_999_999)),
        uid: stat.st_uid,
    }
}

/// The error a failed lookup means: a link (`ELOOP`), a way out (`EXDEV`: `..` or a mount),
/// missing, or plain I/O.
fn classify(errno: Errno, path: &Path) -> ChatFsError {
    match errno {
        Errno::LOOP | Errno::MLINK => ChatFsError::Link(path.to_owned()),
        Errno::XDEV => ChatFsError::Outside(path.to_owned()),
        Errno::NOENT => ChatFsError::NotFound(path.to_owned()),
        Errno::NOTDIR => ChatFsError::NotADir(path.to_owned()),
        other => io_error(path, other.into()),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> ChatFsError {
    ChatFsError::Io {
        path: path.to_owned(),
        source,
    }
}
