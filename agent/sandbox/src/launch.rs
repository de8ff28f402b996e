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

use std::ffi::OsString;
use std::fs::File;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::fd::{AsFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use valor_chatfs::Owner;

use crate::launcher::{Plan, Rlimit, Staged};
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
        let mut prepared = self.prepare(launch, probe, true)?;
        let mut command = tokio::process::Command::from(std::mem::replace(
            &mut prepared.command,
            std::process::Command::new(""),
        ));
        command.kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| SandboxError::Spawn {
            program: self.init.clone(),
            source,
        })?;
        if let Err(e) = prepared.hand_over() {
            return Err(start_failed(&mut child, e.to_string()).await);
        }
        child.stdin = match prepared.stdin.take() {
            Some(fd) => Some(tokio::process::ChildStdin::from_std(
                std::process::ChildStdin::from(fd),
            )?),
            None => None,
        };
        let Prepared { bridge, cgroup, .. } = prepared;
        let leader = child
            .id()
            .ok_or_else(|| SandboxError::Start("bubblewrap exited at once".to_owned()))?;
        let listener = match listen {
            false => None,
            true => match tokio::time::timeout(START_TIMEOUT, receive_listener(bridge)).await {
                Ok(Ok(listener)) => Some(listener),
                Ok(Err(e)) => return Err(start_failed(&mut child, e.to_string()).await),
                Err(_) => {
                    return Err(start_failed(&mut child, "no answer in 15 s".to_owned()).await);
                }
            },
        };
        Ok(Launched {
            child,
            leader,
            listener,
            cgroup,
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
        let mut prepared = self.prepare(launch, false, false)?;
        prepared.command.stderr(Stdio::null());
        let mut child = prepared
            .command
            .spawn()
            .map_err(|source| SandboxError::Spawn {
                program: self.init.clone(),
                source,
            })?;
        if let Err(e) = prepared.hand_over() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok((child, prepared.cgroup))
    }

    /// bubblewrap's command for `launch`, with what the child needs set up before its exec.
    fn prepare(&self, launch: Launch, probe: bool, stdin: bool) -> Result<Prepared, SandboxError> {
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
        // binds (Valor's data under /root): the launcher shows bubblewrap each bound folder at
        // a path of a private staging mount instead, before it gives up root.
        let mut plan = Plan::default();
        plan.run_as(launch.run_as);
        for (i, bind) in binds.iter().enumerate() {
            let op = match (bind.writable, launch.run_as.is_some()) {
                (true, false) => "--bind-fd",
                (false, false) => "--ro-bind-fd",
                (true, true) => "--bind",
                (false, true) => "--ro-bind",
            };
            let source: OsString = match launch.run_as {
                Some(_) => {
                    let is_dir = rustix::fs::fstat(&bind.source)
                        .map(|s| rustix::fs::FileType::from_raw_mode(s.st_mode).is_dir())
                        .map_err(std::io::Error::from)?;
                    let staged = Staged::new(i, bind.source_path.clone(), is_dir);
                    let target = staged.target.clone().into_os_string();
                    plan.stage.push(staged);
                    target
                }
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
        let (control, launcher_end) = UnixStream::pair()?;
        let mut command = std::process::Command::new(&self.init);
        command
            .arg(crate::launcher::LAUNCH_ARG)
            .arg("--")
            .arg(&self.bwrap);
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
        // No pre_exec closure and no uid: the standard library spawns with posix_spawn, which
        // does not copy Valor. The launcher's stdin is its plan's socket; the rest is sent.
        command
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::from(OwnedFd::from(launcher_end)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut sent: Vec<OwnedFd> = match &cgroup {
            Some(cgroup) => cgroup.procs_files()?,
            None => Vec::new(),
        };
        plan.cgroups = sent.len();
        plan.rlimits = self.rlimits(&launch.limits, launch.run_as.is_some());
        for (fd, target) in fds.owned {
            sent.push(fd);
            plan.maps.push(target);
        }
        let stdin = match stdin {
            true => {
                let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                    .map_err(std::io::Error::from)?;
                sent.push(read);
                plan.stdin = true;
                Some(write)
            }
            false => None,
        };
        Ok(Prepared {
            command,
            control,
            plan,
            sent,
            stdin,
            bridge: ours,
            cgroup,
        })
    }

    /// Core dumps off, file size capped, and processes capped by rlimit where no cgroup counts
    /// them (only when the sandbox has a user of its own: the count is per user).
    fn rlimits(&self, limits: &Limits, own_user: bool) -> Vec<(Rlimit, u64)> {
        let mut rlimits = vec![
            (Rlimit::Core, 0),
            (Rlimit::Fsize, limits.disk_mb.saturating_mul(1024 * 1024)),
        ];
        if !self.cgroups.limits_processes() && own_user {
            rlimits.push((Rlimit::Nproc, limits.processes));
        }
        rlimits
    }
}

/// The launcher's command, ready to spawn, and what it is sent once it has.
struct Prepared {
    command: std::process::Command,
    /// Valor's end of the launcher's stdin: the plan and the descriptors go over it.
    control: UnixStream,
    plan: Plan,
    /// The descriptors, in the plan's order: dropped once sent (the launcher has its copies).
    sent: Vec<OwnedFd>,
    /// The write end of the program's stdin, when it has one.
    stdin: Option<OwnedFd>,
    /// Valor's end of the bridge the init hands its socket over.
    bridge: UnixStream,
    cgroup: Option<Cgroup>,
}

impl Prepared {
    /// Sends the launcher its plan; a launcher that died early shows in what it said.
    fn hand_over(&mut self) -> Result<(), SandboxError> {
        crate::launcher::hand_over(&self.control, &self.plan, &self.sent)
            .map_err(|e| SandboxError::Start(format!("cannot hand the launcher its plan: {e}")))?;
        self.sent.clear();
        Ok(())
    }
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
            let (byte, fds) = crate::launcher::receive_with_fds(&stream, 1)?;
            if byte.is_none() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the sandbox ended before it was ready",
                ));
            }
            fds.into_iter()
                .next()
                .ok_or_else(|| std::io::Error::other("no socket came over the bridge"))
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
}

impl Cgroup {
    /// Copies of the `cgroup.procs` files for one child.
    fn procs_files(&self) -> Result<Vec<OwnedFd>, SandboxError> {
        self.procs
            .iter()
            .map(|f| Ok(OwnedFd::from(f.try_clone()?)))
            .collect()
    }
}
