//! Valor's sandboxes: every helper Valor starts for a tenant (a chat's Claude Code, the browser)
//! runs as a tenant itself.
//!
//! - [`launch`]: [`Sandbox`] starts a program under bubblewrap: a user namespace with no
//!   capabilities and no further user namespaces, its own PID, IPC, UTS and network namespaces,
//!   seccomp, the system read-only and only the folders and files the launch names, passed by
//!   descriptor; as root, an unprivileged host user of its own.
//! - [`launcher`]: the step between Valor and bubblewrap (cgroup, rlimits, descriptors, the
//!   sandbox's user), so Valor spawns without a `fork` of itself.
//! - [`init`]: the first program inside (`valor-sandbox-init`): closes what it inherited, hands
//!   Valor the socket it listens on inside, runs the program.
//! - [`gateway`]: Valor serving that socket from outside: the egress proxy and Valor's routes
//!   (the model API proxy, the MCP servers).
//! - [`egress`]: the allow-list proxy, the only way to the web.
//! - [`limits`]: memory, processes and CPU per sandbox in a cgroup (v2 or v1), rlimits always.
//! - [`procs`]: a sandbox's processes seen from outside; a turn's leftovers ended.
//! - [`seccomp`]: the filters.
//! - [`probe`]: what a sandbox allows, seen from inside, for the start-up check and `valor
//!   doctor`.

// stdout belongs to the init's probe report only; libraries print nothing else.
#![deny(clippy::print_stderr)]

pub mod egress;
mod error;
pub mod gateway;
pub mod init;
pub mod launch;
pub mod launcher;
pub mod limits;
pub mod probe;
pub mod procs;
pub mod seccomp;

pub use egress::{EgressPolicy, HostRule};
pub use error::SandboxError;
pub use gateway::{Gateway, Serving, Tenant, serve};
pub use launch::{Bind, DataFile, INNER_ID, Launch, Launched, Sandbox};
pub use limits::{Cgroup, Cgroups, LimitEvents, Limits};
pub use probe::{Check, Inside};

/// bubblewrap on Valor's own `PATH`, as an absolute path (a sandbox's program is looked up on
/// the sandbox's `PATH`, which is not Valor's); `bwrap` itself, which will not be found, when
/// it is not there.
pub fn locate_bwrap() -> std::path::PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("bwrap"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| std::path::PathBuf::from("/nonexistent/bwrap"))
}

/// Where `valor-sandbox-init` is: beside the running program (`target/<profile>/`, also from a
/// test in `target/<profile>/deps/`), else `valor-sandbox-init` on PATH.
pub fn locate_init() -> std::path::PathBuf {
    const NAME: &str = "valor-sandbox-init";
    let beside = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .take(2)
            .map(|dir| dir.join(NAME))
            .find(|p| p.is_file())
    });
    beside.unwrap_or_else(|| {
        std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join(NAME))
                    .find(|p| p.is_file())
            })
            .unwrap_or_else(|| std::path::PathBuf::from(NAME))
    })
}
