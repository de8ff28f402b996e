//! The step between Valor and bubblewrap (`valor-sandbox-init --launch`).
//!
//! What a sandbox's first process must do before bubblewrap runs (join its cgroup, take its
//! rlimits, find its descriptors at their numbers, see the staged folders, give up root) used to
//! run in Valor between `fork` and `exec`. A `fork` of Valor copies its page tables: with a
//! model and indexes loaded, 20-40 ms per cold turn, every turn. So Valor now starts this small
//! program with `posix_spawn` (no copy, whatever Valor's size) and hands it the plan and the
//! descriptors over the socket that is its stdin; it does the steps in its own single thread
//! and `exec`s bubblewrap in its place (same pid: Valor's child, the process group's leader).
//!
//! Only stdin is given to the child at spawn: every other descriptor goes over the socket, so
//! none is ever open without close-on-exec in Valor, where another spawn could inherit it.

use std::ffi::CString;
use std::io::{IoSlice, IoSliceMut, Read as _, Write as _};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use valor_chatfs::Owner;

/// The first argument that selects the launcher in `valor-sandbox-init`.
pub const LAUNCH_ARG: &str = "--launch";

/// The most descriptors one launch may pass (the kernel's limit per message is 253).
pub const MAX_FDS: usize = 200;

/// The plan's upper size: it holds paths and numbers, nothing a tenant writes.
const MAX_PLAN: u64 = 1 << 20;

/// The staging mount point (in the launcher's own mount namespace only).
const STAGE: &str = "/tmp";

/// What the launcher does before it becomes bubblewrap. The descriptors come in this order:
/// the cgroup files, then one per entry of `maps`, then the program's stdin if `stdin`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Plan {
    /// How many `cgroup.procs` files to join (written "0": the launcher itself).
    pub cgroups: usize,
    /// `(resource, value)`: soft and hard limit alike.
    pub rlimits: Vec<(Rlimit, u64)>,
    /// The number each of the next descriptors gets in bubblewrap.
    pub maps: Vec<RawFd>,
    pub stdin: bool,
    /// Folders and files shown to bubblewrap at `/tmp/<i>` in a mount namespace of the
    /// launcher's own (as root, before it gives up root for the sandbox's user).
    pub stage: Vec<Staged>,
    /// `(uid, gid)` to become before bubblewrap runs.
    pub run_as: Option<(u32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Rlimit {
    Core,
    Fsize,
    Nproc,
}

/// A bound source, by the path Valor opened it at (a descriptor's mount belongs to the mount
/// namespace it was opened in and cannot be bound in another).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Staged {
    pub source: PathBuf,
    pub target: PathBuf,
    pub is_dir: bool,
}

impl Staged {
    pub fn new(index: usize, source: PathBuf, is_dir: bool) -> Staged {
        Staged {
            source,
            target: PathBuf::from(format!("{STAGE}/{index}")),
            is_dir,
        }
    }
}

impl Plan {
    pub fn run_as(&mut self, owner: Option<Owner>) {
        self.run_as = owner.map(|o| (o.uid, o.gid));
    }
}

/// Valor's side: sends `plan` and its descriptors (in the plan's order) to the launcher, then
/// closes the socket's write side so the launcher reads to the end.
pub(crate) fn hand_over(socket: &UnixStream, plan: &Plan, fds: &[OwnedFd]) -> std::io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(std::io::Error::other(format!(
            "{} descriptors for one sandbox, at most {MAX_FDS}",
            fds.len()
        )));
    }
    let bytes = serde_json::to_vec(plan)?;
    let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !borrowed.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
        return Err(std::io::Error::other("no room for the descriptors"));
    }
    // The descriptors ride with the first byte; the rest of the plan follows as a stream.
    let (first, rest) = bytes.split_at(1.min(bytes.len()));
    rustix::net::sendmsg(
        socket,
        &[IoSlice::new(first)],
        &mut control,
        SendFlags::empty(),
    )?;
    (&*socket).write_all(rest)?;
    socket.shutdown(std::net::Shutdown::Write)
}

/// The launcher: reads its plan on stdin, does it, becomes `program`. Returns only on failure
/// (the message for stderr, which Valor reads when a sandbox does not start).
pub fn run(program: &[std::ffi::OsString]) -> String {
    let Some((bwrap, args)) = program.split_first() else {
        return "valor-sandbox-init --launch: no program".to_owned();
    };
    let error = match receive().and_then(|(plan, fds)| prepare(&plan, fds)) {
        Ok(()) => std::process::Command::new(bwrap).args(args).exec(),
        Err(e) => e,
    };
    format!("valor-sandbox-init --launch: {error}")
}

/// The plan and its descriptors, from the socket at stdin.
#[allow(unsafe_code)]
fn receive() -> std::io::Result<(Plan, Vec<OwnedFd>)> {
    // SAFETY: stdin is the socket Valor gave this process for the plan alone; it is owned from
    // here on (and replaced by the program's stdin before the exec).
    let socket = unsafe { UnixStream::from_raw_fd(0) };
    let (first, fds) = receive_with_fds(&socket, MAX_FDS)?;
    let mut bytes = first.map(|b| vec![b]).unwrap_or_default();
    (&socket).take(MAX_PLAN).read_to_end(&mut bytes)?;
    let plan: Plan = serde_json::from_slice(&bytes)
        .map_err(|e| std::io::Error::other(format!("a bad plan: {e}")))?;
    let wanted = plan.cgroups + plan.maps.len() + usize::from(plan.stdin);
    if fds.len() != wanted {
        return Err(std::io::Error::other(format!(
            "{} descriptors came, the plan names {wanted}",
            fds.len()
        )));
    }
    // The socket closes here: the program's stdin, or /dev/null, takes number 0 below.
    drop(socket);
    Ok((plan, fds))
}

/// One byte (`None` at the end of the stream) and the descriptors that came with it, each
/// close-on-exec; more than `max` is an error.
pub(crate) fn receive_with_fds(
    socket: impl AsFd,
    max: usize,
) -> std::io::Result<(Option<u8>, Vec<OwnedFd>)> {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(max))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let message = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    if message.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        return Err(std::io::Error::other("too many descriptors"));
    }
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    Ok(((message.bytes > 0).then_some(byte[0]), fds))
}

/// Its own session, its cgroup, its rlimits, its descriptors at their numbers, the staged
/// folders, and last the sandbox's own user.
fn prepare(plan: &Plan, fds: Vec<OwnedFd>) -> std::io::Result<()> {
    rustix::process::setsid()?;
    let mut fds = fds.into_iter();
    for procs in fds.by_ref().take(plan.cgroups) {
        // Joined before root is given up.
        std::fs::File::from(procs).write_all(b"0")?;
    }
    for (resource, value) in &plan.rlimits {
        let resource = match resource {
            Rlimit::Core => rustix::process::Resource::Core,
            Rlimit::Fsize => rustix::process::Resource::Fsize,
            Rlimit::Nproc => rustix::process::Resource::Nproc,
        };
        let limit = rustix::process::Rlimit {
            current: Some(*value),
            maximum: Some(*value),
        };
        rustix::process::setrlimit(resource, limit)?;
    }
    let mapped: Vec<(OwnedFd, RawFd)> = fds
        .by_ref()
        .take(plan.maps.len())
        .zip(plan.maps.iter().copied())
        .collect();
    let stdin = match plan.stdin {
        true => fds.next(),
        false => None,
    };
    let stdin = match stdin {
        Some(fd) => fd,
        None => std::fs::File::open("/dev/null")?.into(),
    };
    place(mapped.into_iter().chain([(stdin, 0)]).collect())?;
    if !plan.stage.is_empty() {
        stage(&plan.stage)?;
    }
    if let Some((uid, gid)) = plan.run_as {
        let uid = rustix::process::Uid::from_raw(uid);
        let gid = rustix::process::Gid::from_raw(gid);
        rustix::thread::set_thread_groups(&[])?;
        rustix::thread::set_thread_res_gid(gid, gid, gid)?;
        rustix::thread::set_thread_res_uid(uid, uid, uid)?;
    }
    Ok(())
}

/// Puts each descriptor at its number (without close-on-exec, so bubblewrap inherits it):
/// every one first to a free number above all targets, so a descriptor whose number is another's
/// target is never overwritten before it is placed.
#[allow(unsafe_code)]
fn place(fds: Vec<(OwnedFd, RawFd)>) -> std::io::Result<()> {
    let above = fds.iter().map(|(_, t)| *t).max().unwrap_or(2) + 1;
    let mut moved = Vec::with_capacity(fds.len());
    for (fd, target) in fds {
        moved.push((rustix::io::fcntl_dupfd_cloexec(&fd, above)?, target));
    }
    for (fd, target) in &moved {
        // SAFETY: dup2 onto a number this process uses for nothing else (every descriptor it
        // holds is above the targets now, or closes at exec); the copy has no close-on-exec.
        if unsafe { libc::dup2(fd.as_raw_fd(), *target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A tmpfs over `/tmp` in a mount namespace of the launcher's own (nothing of it reaches the
/// host's mounts), one bind mount per staged source: as root, the sandbox's own user may not
/// pass through the folders above what it binds (Valor's data under /root).
fn stage(staged: &[Staged]) -> std::io::Result<()> {
    use rustix::mount::{MountFlags, MountPropagationFlags};
    // SAFETY: the launcher is single-threaded; only the mount namespace is unshared.
    #[allow(unsafe_code)]
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }?;
    rustix::mount::mount_change(
        c"/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )?;
    // The sources are opened before the tmpfs covers /tmp (one may lie below it), bound after.
    let mut opened = Vec::with_capacity(staged.len());
    for entry in staged {
        let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC;
        let fd = rustix::fs::open(&entry.source, flags, rustix::fs::Mode::empty())?;
        opened.push(fd);
    }
    rustix::mount::mount(
        c"tmpfs",
        c"/tmp",
        c"tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        c"mode=0755",
    )?;
    for (entry, fd) in staged.iter().zip(&opened) {
        if entry.is_dir {
            rustix::fs::mkdir(&entry.target, rustix::fs::Mode::from_raw_mode(0o755))?;
        } else {
            let flags = rustix::fs::OFlags::CREATE
                | rustix::fs::OFlags::WRONLY
                | rustix::fs::OFlags::CLOEXEC;
            drop(rustix::fs::open(
                &entry.target,
                flags,
                rustix::fs::Mode::from_raw_mode(0o644),
            )?);
        }
        let source = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        rustix::mount::mount_bind(source.as_c_str(), entry.target.as_os_str().as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_and_its_descriptors_cross_the_socket_in_order() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let plan = Plan {
            cgroups: 1,
            maps: vec![10, 3],
            stdin: true,
            stage: vec![Staged::new(0, PathBuf::from("/work"), true)],
            rlimits: vec![(Rlimit::Core, 0)],
            run_as: Some((2_000_000, 2_000_000)),
        };
        let files: Vec<OwnedFd> = (0..4)
            .map(|i| {
                let file = tempfile::tempfile().unwrap();
                (&file).write_all(format!("fd{i}").as_bytes()).unwrap();
                file.into()
            })
            .collect();
        hand_over(&ours, &plan, &files).unwrap();
        // What receive() does, on a socket that is not stdin.
        let (first, fds) = receive_with_fds(&theirs, MAX_FDS).unwrap();
        let mut bytes = vec![first.unwrap()];
        (&theirs).read_to_end(&mut bytes).unwrap();
        let back: Plan = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.maps, [10, 3]);
        assert_eq!(back.stage[0].target, PathBuf::from("/tmp/0"));
        assert_eq!(back.run_as, Some((2_000_000, 2_000_000)));
        let contents: Vec<String> = fds
            .into_iter()
            .map(|fd| {
                let mut file = std::fs::File::from(fd);
                std::io::Seek::rewind(&mut file).unwrap();
                let mut text = String::new();
                file.read_to_string(&mut text).unwrap();
                text
            })
            .collect();
        assert_eq!(contents, ["fd0", "fd1", "fd2", "fd3"]);
        assert!(
            hand_over(&ours, &plan, &[]).is_err(),
            "the write side is shut"
        );
    }
}
