//! What can go wrong setting up or running a sandbox.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("the sandbox did not start: {0}")]
    Start(String),
    #[error("cannot open {path} for the sandbox: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("seccomp filter: {0}")]
    Seccomp(String),
    #[error("cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
