//! The first program of every sandbox (`valor-sandbox-init`), run by bubblewrap inside the
//! sandbox's own network namespace before anything the sandbox's tenant controls:
//!
//! 1. closes every file descriptor it was not told to keep (bubblewrap's own included: a
//!    descriptor of a folder outside the sandbox would be a way out of it);
//! 2. listens on `127.0.0.1:<port>` in the namespace, where the model API, the MCP servers
//!    and the egress proxy will answer, and hands that listening socket to Valor over the
//!    bridge socket, so Valor serves it from outside (nothing listens on the host);
//! 3. runs the real program in its place (`exec`), or, with `--probe`, reports what the
//!    sandbox allows as one JSON line on stdout.

use std::ffi::OsString;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::net::TcpListener;
use std::os::fd::{AsFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

/// The first argument that selects this program in a binary that has others.
pub const INIT_ARG: &str = "__sandbox-init";

/// What the init is told on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitArgs {
    pub listen: Option<u16>,
    pub bridge_fd: Option<RawFd>,
    /// Descriptors the program gets (the browser's DevTools pipe).
    pub keep_fds: Vec<RawFd>,
    pub probe: bool,
    pub program: Vec<OsString>,
}

impl InitArgs {
    /// `--listen PORT --bridge-fd FD [--keep-fd FD]... [--probe] -- PROGRAM ARGS...`
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<InitArgs, String> {
        let mut parsed = InitArgs {
            listen: None,
            bridge_fd: None,
            keep_fds: Vec::new(),
            probe: false,
            program: Vec::new(),
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match arg.to_str() {
                Some("--") => {
                    parsed.program = args.collect();
                    break;
                }
                Some(INIT_ARG) => {}
                Some("--probe") => parsed.probe = true,
                Some("--listen") => {
                    let port = value("--listen")?;
                    parsed.listen = Some(port.parse().map_err(|_| format!("bad port {port}"))?);
                }
                Some("--bridge-fd") => {
                    let fd = value("--bridge-fd")?;
                    parsed.bridge_fd = Some(fd.parse().map_err(|_| format!("bad fd {fd}"))?);
                }
                Some("--keep-fd") => {
                    let fd = value("--keep-fd")?;
                    parsed
                        .keep_fds
                        .push(fd.parse().map_err(|_| format!("bad fd {fd}"))?);
                }
                _ => return Err(format!("unknown argument {arg:?}")),
            }
        }
        if parsed.program.is_empty() && !parsed.probe {
            return Err("no program to run after --".to_owned());
        }
        Ok(parsed)
    }
}

/// Runs the init; returns only on failure (the message for stderr).
pub fn run(args: InitArgs) -> String {
    let bridge = match take_descriptors(&args) {
        Ok(bridge) => bridge,
        Err(e) => return format!("valor-sandbox-init: {e}"),
    };
    if let (Some(port), Some(bridge)) = (args.listen, bridge.as_ref())
        && let Err(e) = listen_and_hand_over(port, bridge)
    {
        return format!("valor-sandbox-init: cannot bridge the network: {e}");
    }
    drop(bridge);
    if args.probe {
        println!("{}", crate::probe::inside_report());
        return String::new();
    }
    let Some((program, rest)) = args.program.split_first() else {
        return "valor-sandbox-init: no program".to_owned();
    };
    let error = std::process::Command::new(program)
        .args(rest)
        .arg0(program)
        .exec();
    format!("valor-sandbox-init: cannot run {program:?}: {error}")
}

/// Closes every inherited descriptor but stdio, the bridge and the kept ones; takes the bridge.
#[allow(unsafe_code)]
fn take_descriptors(args: &InitArgs) -> std::io::Result<Option<OwnedFd>> {
    let keep = |fd: RawFd| fd <= 2 || Some(fd) == args.bridge_fd || args.keep_fds.contains(&fd);
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open.into_iter().filter(|fd| !keep(*fd)) {
        // SAFETY: this single-threaded process owns every descriptor it inherited and uses none
        // of these (the one read_dir used is already closed, so closing it again only fails).
        unsafe {
            libc::close(fd);
        }
    }
    Ok(args.bridge_fd.map(|fd| {
        // SAFETY: the bridge descriptor was given to this process for it alone and is open
        // (kept above); it is owned from here on and closed when dropped.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }))
}

fn listen_and_hand_over(port: u16, bridge: &OwnedFd) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let fds = [listener.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("no room for the descriptor"));
    }
    rustix::net::sendmsg(
        bridge,
        &[IoSlice::new(b"L")],
        &mut control,
        SendFlags::empty(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<InitArgs, String> {
        InitArgs::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn the_command_line_is_read_strictly() {
        let args = parse(&[
            INIT_ARG,
            "--listen",
            "41000",
            "--bridge-fd",
            "9",
            "--keep-fd",
            "3",
            "--",
            "claude",
            "-p",
            "--listen",
        ])
        .unwrap();
        assert_eq!(args.listen, Some(41000));
        assert_eq!(args.bridge_fd, Some(9));
        assert_eq!(args.keep_fds, [3]);
        assert_eq!(
            args.program,
            ["claude", "-p", "--listen"].map(OsString::from)
        );
        assert!(parse(&["--listen", "x", "--", "a"]).is_err());
        assert!(parse(&["--listen", "1"]).is_err(), "no program");
        assert!(parse(&["--what", "--", "a"]).is_err());
        assert!(parse(&["--probe"]).unwrap().probe);
    }
}
