//! The daydream's tests, one test program: whole runs, workspace context.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daydream;
mod workspace;

/// git as Valor runs it: in a sandbox of its own (scripts/setup installs bubblewrap; the
/// sandbox's init is built with the workspace).
pub fn jail() -> valor_daydream::GitJail {
    let sandbox =
        valor_sandbox::Sandbox::new(valor_sandbox::locate_bwrap(), valor_sandbox::locate_init())
            .unwrap();
    valor_daydream::GitJail::Sandboxed {
        sandbox: std::sync::Arc::new(sandbox),
        chats: None,
    }
}
