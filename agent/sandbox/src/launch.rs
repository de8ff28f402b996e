//! Starting a program in a sandbox of its own.
//!
//! bubblewrap builds it: a user namespace (an unprivileged uid inside, every capability dropped,
//! no further user namespaces), its own PID, IPC, UTS, cgroup and network namespaces, the two
//! seccomp programs, the system read-only and nothing else but what the launch binds. Every
//! option reaches bubblewrap through a descriptor (`--args`), never its command line, and so do
//! the folders it binds (`--bind-fd`: bubblewrap resolves no path Valor did not open) and the
//! files it shows (`--ro-bind-data`: no file on disk). When Valor runs as root, the sandbox runs
//! as an unprivileged host user of its own, so nothing it does is done by uid 0 (a process of uid
//! 0 in a user namespace may still write what root owns, such as `/proc/sys`).

use std::ffi::{CStr, CString, OsString};
use std::fs::File;
use std::io::{IoSliceMut, Write as _};
use std::mem::MaybeUninit;
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::process::{Resource, Rlimit};
use valor_chatfs::Owner;

use crate::limits::{Cgroups, Limits};
use crate::probe::Inside;
use crate::seccomp::SeccompPrograms;
use crate::{Cgroup, SandboxError};

/// The uid and gid inside every sandbox (mapped to Valor's user, or the sandbox's own user when
/// Valor is root).
pub const INNER_ID: u32 = 1000;

/// Where the init program is inside a sandbox.
const INIT_INSIDE: &str = "/run/valor/init";

/// How long a sandbox may take to hand its listening socket over.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Top-level system folders: bound read-only, or recreated as the symlinks they are (merged
/// /usr), when they exist.
const SYSTEM_DIRS: [&str; 7] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32",
];

/// What of `/etc` programs need (names, certificates, time zone, the loader, fonts). Not all of
/// it: an operator's `/etc/valor` stays out.
const ETC_ENTRIES: [&str; 18] = [
    "/etc/alternatives",
    "/etc/ca-certificates",
    "/etc/ssl",
    "/etc/pki",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/mime.types",
    "/etc/fonts",
];

/// bubblewrap and what every sandbox shares: the init program, the seccomp programs, the
/// machine's cgroups.
#[derive(Debug)]
pub struct Sandbox {
    bwrap: PathBuf,
    init: PathBuf,
    seccomp: SeccompPrograms,
    cgroups: Cgroups,
}

/// A folder or file Valor opened, bound at `target` inside.
#[derive(Debug)]
pub struct Bind {
    pub source: OwnedFd,
    /// The path `source` was opened at (Valor's own folders: nothing a tenant can swap).
    pub source_path: PathBuf,
    pub target: PathBuf,
    pub writable: bool,
}

impl Bind {
    /// A path of Valor's own (a program's folder), opened here: bubblewrap never resolves it.
    pub fn path(source: &Path, target: &Path, writable: bool) -> Result<Bind, SandboxError> {
        let fd = rustix::fs::open(
            source,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| SandboxError::Open {
            path: source.to_owned(),
            source: e.into(),
        })?;
        Ok(Bind {
            source: fd,
            source_path: source.to_owned(),
            target: target.to_owned(),
            writable,
        })
    }

    /// An open folder (a chat's workspace or HOME), bound at its own path.
    pub fn dir(dir: &valor_chatfs::ChatDir, writable: bool) -> Result<Bind, SandboxError> {
        let fd =
            rustix::io::fcntl_dupfd_cloexec(dir.as_fd(), 0).map_err(|e| SandboxError::Open {
                path: dir.path().to_owned(),
                source: e.into(),
            })?;
        Ok(Bind {
            source: fd,
            source_path: dir.path().to_owned(),
            target: dir.path().to_owned(),
            writable,
        })
    }
}

/// A read-only file the sandbox sees at `target`, from bytes (nothing on disk).
#[derive(Debug, Clone)]
pub struct DataFile {
    pub target: PathBuf,
    pub bytes: Vec<u8>,
}

/// One program to start in a sandbox.
#[derive(Debug)]
pub struct Launch {
    /// What runs (`claude`, `chromium`): names its cgroup.
    pub name: &'static str,
    /// The program, by the path it has inside (bind its folder).
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Its whole environment.
    pub env: Vec<(OsString, OsString)>,
    pub binds: Vec<Bind>,
    pub data: Vec<DataFile>,
    pub chdir: Option<PathBuf>,
    /// The port the init listens on inside and hands to Valor.
    pub listen_port: Option<u16>,
    /// Descriptors the program gets at fixed numbers (below 10).
    pub keep_fds: Vec<(OwnedFd, RawFd)>,
    /// The host user to run as when Valor is root.
    pub run_as: Option<Owner>,
    pub limits: Limits,
    /// Memory, processes and CPU in a cgroup of its own (where one can be had); file size and
    /// core dumps are limited either way.
    pub own_cgroup: bool,
}

/// A started sandbox.
#[derive(Debug)]
pub struct Launched {
    pub child: tokio::process::Child,
    /// bubblewrap's outer process (the process group's leader).
    pub leader: u32,
    /// The socket the init listens on inside (`None` without `listen_port`).
    pub listener: Option<TcpListener>,
    pub cgroup: Option<Cgroup>,
}

impl Sandbox {
    /// `init` is the `valor-sandbox-init` program.
    pub fn new(bwrap: PathBuf, init: PathBuf) -> Result<Sandbox, SandboxError> {
        Ok(Sandbox {
            bwrap,
            init,
            seccomp: SeccompPrograms::build()?,
            cgroups: Cgroups::detect(),
        })
    }

    pub fn bwrap(&self) -> &Path {
        &self.bwrap
    }

    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    /// Starts `launch`: builds the sandbox, waits for the init to hand its socket over.
    pub async fn launch(&self, launch: Launch) -> Result<Launched, SandboxError> {
        self.start(launch, false).await
    }

    /// Runs the init's probe in a sandbox shaped as a chat's (no folder of anyone's bound, so
    /// nothing is left behind) and returns what it saw inside.
    pub async fn probe(&self, run_as: Option<Owner>) -> Result<Inside, SandboxError> {
        use tokio::io::AsyncReadExt as _;
        let launch = Launch {
            name: "probe",
            program: PathBuf::new(),
            args: Vec::new(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            binds: Vec::new(),
            data: Vec::new(),
            chdir: None,
            listen_port: Some(41000),
            keep_fds: Vec::new(),
            run_as,
            limits: Limits::default(),
            own_cgroup: false,
        };
        let mut launched = self.start(launch, true).await?;
        drop(launched.child.stdin.take());
        let mut report = String::new();
        if let Some(mut stdout) = launched.child.stdout.take() {
            let read = stdout.read_to_string(&mut report);
            if tokio::time::timeout(START_TIMEOUT, read).await.is_err() {
                return Err(SandboxError::Start("the probe did not finish".to_owned()));
            }
        }
        let _ = launched.child.wait().await;
        serde_json::from_str(report.trim())
            .map_err(|e| SandboxError::Start(format!("the probe said {report:?}: {e}")))
    }

    async fn start(&self, launch: Launch, probe: bool) -> Result<Launched, SandboxError> {
        let listen = launch.listen_port.is_some();
        let prepared = self.prepare(launch, probe)?;
        let mut command = tokio::process::Command::from(prepared.command);
        command.kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| SandboxError::Spawn {
            program: self.bwrap.clone(),
            source,
        })?;
        // The child has its copies; ours close now, so a dead sandbox reads as EOF.
        drop(prepared.descriptors);
        let leader = child
            .id()
            .ok_or_else(|| SandboxError::Start("bubblewrap exited at once".to_owned()))?;
        let listener = match listen {
            false => None,
            true => {
                match tokio::time::timeout(START_TIMEOUT, receive_listener(prepared.bridge)).await {
                    Ok(Ok(listener)) => Some(listener),
                    Ok(Err(e)) => return Err(start_failed(&mut child, e.to_string()).await),
                    Err(_) => {
                        return Err(start_failed(&mut child, "no answer in 15 s".to_owned()).await);
                    }
                }
            }
        };
        Ok(Launched {
            child,
            leader,
            listener,
            cgroup: prepared.cgroup,
        })
    }

    /// Starts `launch` from blocking code (a helper with no network: `listen_port` is ignored),
    /// its stdio as the caller set none: stdin null, stdout piped, stderr null. The child leads
    /// its own process group; its cgroup, if any, comes with it.
    pub fn spawn_blocking(
        &self,
        mut launch: Launch,
    ) -> Result<(std::process::Child, Option<Cgroup>), SandboxError> {
        launch.listen_port = None;
        let mut prepared = self.prepare(launch, false)?;
        prepared
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let child = prepared
            .command
            .spawn()
            .map_err(|source| SandboxError::Spawn {
                program: self.bwrap.clone(),
                source,
            })?;
        Ok((child, prepared.cgroup))
    }

    /// bubblewrap's command for `launch`, with what the child needs set up before its exec.
    fn prepare(&self, launch: Launch, probe: bool) -> Result<Prepared, SandboxError> {
        let mut fds = FdPlan::new(&launch.keep_fds);
        let mut options = Options::default();
        options.flags(&[
            "--unshare-user",
            "--disable-userns",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--unshare-net",
            "--die-with-parent",
            "--cap-drop",
            "ALL",
        ]);
        options.pair("--uid", INNER_ID.to_string());
        options.pair("--gid", INNER_ID.to_string());
        let refuse = fds.add(memfd("seccomp", &self.seccomp.refuse)?);
        let unsupported = fds.add(memfd("seccomp", &self.seccomp.unsupported)?);
        options.pair("--add-seccomp-fd", refuse.to_string());
        options.pair("--add-seccomp-fd", unsupported.to_string());
        system(&mut options);
        let tmp = launch.limits.tmp_mb.saturating_mul(1024 * 1024);
        options.pair("--size", tmp.to_string());
        options.pair("--tmpfs", "/tmp");
        let init = Bind::path(&self.init, Path::new(INIT_INSIDE), false)?;
        let mut binds = launch.binds;
        binds.push(init);
        // As root, the sandbox's own user may not pass through the folders above what it
        // binds (Valor's data under /root): the starting process shows bubblewrap each bound
        // folder at a path of a private staging mount instead, before it gives up root.
        let mut stage = launch.run_as.map(|_| Stage::default());
        for (i, bind) in binds.iter().enumerate() {
            let op = match (bind.writable, &stage) {
                (true, None) => "--bind-fd",
                (false, None) => "--ro-bind-fd",
                (true, Some(_)) => "--bind",
                (false, Some(_)) => "--ro-bind",
            };
            let source = match &mut stage {
                Some(stage) => stage.add(i, bind)?,
                None => {
                    let fd = rustix::io::fcntl_dupfd_cloexec(&bind.source, 0)
                        .map_err(std::io::Error::from)?;
                    fds.add(fd).to_string().into()
                }
            };
            options.op(op, source, &bind.target);
        }
        // Files after folders: a file shown inside a bound folder (a HOME's settings) must be
        // mounted over it, not hidden under it.
        for file in &launch.data {
            let fd = fds.add(memfd("data", &file.bytes)?);
            options.pair("--perms", "0444");
            options.op("--ro-bind-data", fd.to_string(), &file.target);
        }
        if let Some(dir) = &launch.chdir {
            options.0.push("--chdir".into());
            options.0.push(dir.into());
        }
        let (ours, theirs) = UnixStream::pair()?;
        let bridge = fds.add(OwnedFd::from(theirs));
        let args_fd = fds.add(memfd("args", &options.bytes())?);

        let cgroup = match launch.own_cgroup {
            true => self.cgroups.create(launch.name, &launch.limits)?,
            false => None,
        };
        let mut command = std::process::Command::new(&self.bwrap);
        command.arg("--args").arg(args_fd.to_string()).arg("--");
        command.arg(INIT_INSIDE).arg(crate::init::INIT_ARG);
        if let Some(port) = launch.listen_port {
            command.arg("--listen").arg(port.to_string());
        }
        command.arg("--bridge-fd").arg(bridge.to_string());
        for (_, target) in &launch.keep_fds {
            command.arg("--keep-fd").arg(target.to_string());
        }
        if probe {
            command.arg("--probe");
        } else {
            command.arg("--").arg(&launch.program).args(&launch.args);
        }
        command
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let setup = ChildSetup {
            cgroup_procs: match &cgroup {
                Some(cgroup) => cgroup.procs_files()?,
                None => Vec::new(),
            },
            rlimits: self.rlimits(&launch.limits, launch.run_as.is_some()),
            maps: fds.maps(),
            temps: vec![-1; fds.len()],
            stage,
            run_as: launch.run_as,
        };
        install(&mut command, setup);
        Ok(Prepared {
            command,
            bridge: ours,
            cgroup,
            descriptors: (fds, binds),
        })
    }

    /// Core dumps off, file size capped, and processes capped by rlimit where no cgroup counts
    /// them (only when the sandbox has a user of its own: the count is per user).
    fn rlimits(&self, limits: &Limits, own_user: bool) -> Vec<(Resource, u64)> {
        let mut rlimits = vec![
            (Resource::Core, 0),
            (Resource::Fsize, limits.disk_mb.saturating_mul(1024 * 1024)),
        ];
        if !self.cgroups.limits_processes() && own_user {
            rlimits.push((Resource::Nproc, limits.processes));
        }
        rlimits
    }
}

/// bubblewrap's command, ready to spawn, and what must live until it has.
struct Prepared {
    command: std::process::Command,
    /// Valor's end of the bridge the init hands its socket over.
    bridge: UnixStream,
    cgroup: Option<Cgroup>,
    /// Valor's copies of the child's descriptors: dropped once it has spawned.
    descriptors: (FdPlan, Vec<Bind>),
}

/// The error for a sandbox that did not start, with what bubblewrap said.
async fn start_failed(child: &mut tokio::process::Child, why: String) -> SandboxError {
    use tokio::io::AsyncReadExt as _;
    let _ = child.start_kill();
    let mut said = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), stderr.read_to_end(&mut bytes)).await;
        said = String::from_utf8_lossy(&bytes).trim().to_owned();
    }
    let _ = child.wait().await;
    SandboxError::Start(if said.is_empty() {
        why
    } else {
        format!("{why}: {said}")
    })
}

/// Waits for the init's listening socket on the bridge.
async fn receive_listener(ours: UnixStream) -> std::io::Result<TcpListener> {
    ours.set_nonblocking(true)?;
    let stream = tokio::net::UnixStream::from_std(ours)?;
    loop {
        stream.readable().await?;
        let received = stream.try_io(tokio::io::Interest::READABLE, || {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut byte = [0u8; 1];
            let message = rustix::net::recvmsg(
                &stream,
                &mut [IoSliceMut::new(&mut byte)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )?;
            if message.bytes == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the sandbox ended before it was ready",
                ));
            }
            let fd: Option<OwnedFd> = control.drain().find_map(|m| match m {
                RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
                _ => None,
            });
            fd.ok_or_else(|| std::io::Error::other("no socket came over the bridge"))
        });
        match received {
            Ok(fd) => {
                let listener = TcpListener::from(fd);
                listener.set_nonblocking(true)?;
                return Ok(listener);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The system read-only, `/proc` and `/dev` of its own.
fn system(options: &mut Options) {
    for dir in SYSTEM_DIRS {
        let path = Path::new(dir);
        match std::fs::read_link(path) {
            Ok(target) => options.op("--symlink", target.into_os_string(), path),
            Err(_) if path.is_dir() => options.op("--ro-bind", path, path),
            Err(_) => {}
        }
    }
    for entry in ETC_ENTRIES {
        options.op("--ro-bind-try", entry, Path::new(entry));
    }
    options.flags(&["--proc", "/proc"]);
    // bubblewrap covers /proc/sys only when it can write the folder itself; cover it always.
    options.op("--ro-bind", "/proc/sys", Path::new("/proc/sys"));
    options.flags(&["--dev", "/dev"]);
}

/// bubblewrap's options, NUL-separated for `--args`.
#[derive(Default)]
struct Options(Vec<OsString>);

impl Options {
    fn flags(&mut self, flags: &[&str]) {
        self.0.extend(flags.iter().map(OsString::from));
    }

    fn pair(&mut self, flag: &str, value: impl Into<OsString>) {
        self.0.push(flag.into());
        self.0.push(value.into());
    }

    fn op(&mut self, op: &str, source: impl Into<OsString>, target: &Path) {
        self.0.push(op.into());
        self.0.push(source.into());
        self.0.push(target.into());
    }

    fn bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for arg in &self.0 {
            bytes.extend_from_slice(arg.as_bytes());
            bytes.push(0);
        }
        bytes
    }
}

/// An in-memory file holding `bytes`, read from its start.
fn memfd(name: &str, bytes: &[u8]) -> Result<OwnedFd, SandboxError> {
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(std::io::Error::from)?;
    let mut file = File::from(fd);
    file.write_all(bytes)?;
    rustix::fs::seek(&file, rustix::fs::SeekFrom::Start(0)).map_err(std::io::Error::from)?;
    Ok(OwnedFd::from(file))
}

/// Which descriptor the child gets at which number: the fixed ones asked for, then ours from 10.
struct FdPlan {
    owned: Vec<(OwnedFd, RawFd)>,
    next: RawFd,
}

impl FdPlan {
    fn new(fixed: &[(OwnedFd, RawFd)]) -> FdPlan {
        let owned = fixed
            .iter()
            .filter_map(|(fd, target)| {
                Some((rustix::io::fcntl_dupfd_cloexec(fd, 0).ok()?, *target))
            })
            .collect();
        FdPlan { owned, next: 10 }
    }

    fn add(&mut self, fd: OwnedFd) -> RawFd {
        let target = self.next;
        self.next += 1;
        self.owned.push((fd, target));
        target
    }

    fn len(&self) -> usize {
        self.owned.len()
    }

    fn maps(&self) -> Vec<(RawFd, RawFd)> {
        use std::os::fd::AsRawFd as _;
        self.owned
            .iter()
            .map(|(fd, t)| (fd.as_raw_fd(), *t))
            .collect()
    }
}

/// What the child does between fork and exec, all of it async-signal-safe and without
/// allocating: its own session, its cgroup, its rlimits, its descriptors at their numbers, and,
/// last, the sandbox's own user.
struct ChildSetup {
    cgroup_procs: Vec<File>,
    rlimits: Vec<(Resource, u64)>,
    maps: Vec<(RawFd, RawFd)>,
    temps: Vec<RawFd>,
    stage: Option<Stage>,
    run_as: Option<Owner>,
}

/// Where the starting process (still root) shows bubblewrap the folders it binds: a tmpfs over
/// `/tmp` in a mount namespace of its own (nothing of it reaches the host's mounts), one entry
/// per bind, each a bind mount of the descriptor Valor opened.
#[derive(Default)]
struct Stage {
    /// `(source path, /tmp/<i>, is a folder)`, made before the fork. By path: a descriptor's
    /// mount belongs to the namespace it was opened in, and cannot be bound in another.
    mounts: Vec<(CString, CString, bool)>,
    /// Each source once opened in the new namespace, with room for its `/proc/self/fd/<n>`:
    /// the sources are opened before the tmpfs covers `/tmp` (one may lie below it), bound
    /// after. The buffers are made before the fork.
    opened: Vec<(Option<OwnedFd>, [u8; 32])>,
}

impl Stage {
    fn add(&mut self, index: usize, bind: &Bind) -> Result<OsString, SandboxError> {
        let is_dir = rustix::fs::fstat(&bind.source)
            .map(|s| rustix::fs::FileType::from_raw_mode(s.st_mode).is_dir())
            .map_err(std::io::Error::from)?;
        let target = format!("{STAGE}/{index}");
        let cstring =
            |text: String| CString::new(text).map_err(|e| SandboxError::Start(e.to_string()));
        self.mounts.push((
            CString::new(bind.source_path.as_os_str().as_bytes())
                .map_err(|e| SandboxError::Start(e.to_string()))?,
            cstring(target.clone())?,
            is_dir,
        ));
        self.opened.push((None, [0; 32]));
        Ok(target.into())
    }

    #[allow(unsafe_code)]
    fn mount(&mut self) -> std::io::Result<()> {
        use rustix::mount::{MountFlags, MountPropagationFlags};
        // SAFETY: only the mount namespace is unshared (no descriptor table), in the forked
        // child's single thread.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }?;
        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )?;
        for ((source, _, _), (slot, path)) in self.mounts.iter().zip(self.opened.iter_mut()) {
            use std::os::fd::AsRawFd as _;
            let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC;
            let fd = rustix::fs::open(source.as_c_str(), flags, rustix::fs::Mode::empty())?;
            fd_path(path, fd.as_raw_fd());
            *slot = Some(fd);
        }
        rustix::mount::mount(
            c"tmpfs",
            c"/tmp",
            c"tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            c"mode=0755",
        )?;
        for ((_, target, is_dir), (_, path)) in self.mounts.iter().zip(&self.opened) {
            let source = CStr::from_bytes_until_nul(path)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
            if *is_dir {
                rustix::fs::mkdir(target.as_c_str(), rustix::fs::Mode::from_raw_mode(0o755))?;
            } else {
                let flags = rustix::fs::OFlags::CREATE
                    | rustix::fs::OFlags::WRONLY
                    | rustix::fs::OFlags::CLOEXEC;
                drop(rustix::fs::open(
                    target.as_c_str(),
                    flags,
                    rustix::fs::Mode::from_raw_mode(0o644),
                )?);
            }
            rustix::mount::mount_bind(source, target.as_c_str())?;
        }
        Ok(())
    }
}

/// Writes `/proc/self/fd/<fd>` and a NUL into `buffer`, without allocating.
fn fd_path(buffer: &mut [u8; 32], fd: RawFd) {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buffer[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let (mut n, mut count) = (fd.unsigned_abs(), 0);
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..count {
        buffer[PREFIX.len() + i] = digits[count - 1 - i];
    }
    buffer[PREFIX.len() + count] = 0;
}

/// The staging mount point (in the starting process's own mount namespace only).
const STAGE: &str = "/tmp";

impl ChildSetup {
    fn run(&mut self) -> std::io::Result<()> {
        rustix::process::setsid()?;
        for procs in &self.cgroup_procs {
            // "0" is the writing process itself; joined before it gives up root.
            let mut procs = procs;
            procs.write_all(b"0")?;
        }
        for (resource, value) in &self.rlimits {
            let limit = Rlimit {
                current: Some(*value),
                maximum: Some(*value),
            };
            rustix::process::setrlimit(*resource, limit)?;
        }
        self.map_descriptors()?;
        if let Some(stage) = &mut self.stage {
            stage.mount()?;
        }
        if let Some(owner) = self.run_as {
            let uid = rustix::process::Uid::from_raw(owner.uid);
            let gid = rustix::process::Gid::from_raw(owner.gid);
            rustix::thread::set_thread_groups(&[])?;
            rustix::thread::set_thread_res_gid(gid, gid, gid)?;
            rustix::thread::set_thread_res_uid(uid, uid, uid)?;
        }
        Ok(())
    }

    /// Every source first to a free number above all targets, then each onto its target: a
    /// source whose number is another's target is never overwritten before it is copied.
    #[allow(unsafe_code)]
    fn map_descriptors(&mut self) -> std::io::Result<()> {
        let above = self.maps.iter().map(|(_, t)| *t).max().unwrap_or(2) + 1;
        for (i, (source, _)) in self.maps.iter().enumerate() {
            // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor this process holds open; it only
            // creates a new descriptor and is async-signal-safe.
            let temp = unsafe { libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, above) };
            if temp < 0 {
                return Err(std::io::Error::last_os_error());
            }
            self.temps[i] = temp;
        }
        for (i, (_, target)) in self.maps.iter().enumerate() {
            // SAFETY: dup2 onto a number this process does not use for anything else (targets
            // are chosen below the copies); async-signal-safe. The copy at the target has no
            // close-on-exec flag, so the program inherits it; the temporary one closes at exec.
            if unsafe { libc::dup2(self.temps[i], *target) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[allow(unsafe_code)]
fn install(command: &mut std::process::Command, mut setup: ChildSetup) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // that are async-signal-safe (setsid, write, setrlimit, fcntl, dup2, unshare, mount, mkdir,
    // open, close, setgroups, setresgid, setresuid); it allocates nothing (every buffer and
    // path was made before the fork) and takes no lock.
    unsafe {
        command.pre_exec(move || setup.run());
    }
}

impl Cgroup {
    /// Copies of the `cgroup.procs` files for one child.
    fn procs_files(&self) -> Result<Vec<File>, SandboxError> {
        self.procs
            .iter()
            .map(|f| f.try_clone().map_err(SandboxError::from))
            .collect()
    }
}
