//! What the driver's benches share: a driver over a store in a folder, the sandbox as Valor
//! probes it, the fake MCP server.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use valor_claude::proxy::Upstream;
use valor_claude::sandbox::{EgressRules, SandboxMode, SandboxSetup, SandboxState};
use valor_claude::{ClaudeDriver, DriverSetup};
use valor_config::ClaudeConfig;

pub fn chats(dir: &Path) -> valor_chatfs::ChatFs {
    valor_chatfs::ChatFs::new(
        dir.join("ws"),
        dir.join("homes"),
        valor_chatfs::ChatFs::sandbox_owner(true, 2_000_000),
    )
}

/// The sandbox as Valor probes it: user and network namespaces, seccomp, cgroup, API proxy.
pub async fn sandbox(dir: &Path, api: &str) -> SandboxState {
    let env = std::collections::BTreeMap::from([
        ("ANTHROPIC_BASE_URL".to_owned(), api.to_owned()),
        ("ANTHROPIC_API_KEY".to_owned(), "sk-ant-bench".to_owned()),
    ]);
    SandboxState::probe(
        SandboxMode::Required,
        SandboxSetup {
            bwrap: valor_sandbox::locate_bwrap(),
            init: valor_sandbox::locate_init(),
            chats: chats(dir),
            limits: valor_sandbox::Limits::default(),
            egress: EgressRules::default(),
            upstream: Upstream::from_env(&env, None, ""),
        },
    )
    .await
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn driver(
    dir: &Path,
    name: &str,
    api: &str,
    keep_warm: bool,
    sandbox: SandboxState,
) -> ClaudeDriver {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    ClaudeDriver::new(DriverSetup {
        config: ClaudeConfig {
            workspaces_dir: dir.join("ws"),
            homes_dir: dir.join("homes"),
            keep_warm_secs: if keep_warm { 300 } else { 0 },
            allowed_tools: vec!["mcp__fake".to_owned()],
            ..ClaudeConfig::default()
        },
        binary: repo().join(valor_claude::binary::LOCAL_INSTALL),
        persona: None,
        parent_env: vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap()),
            ("HOME".to_owned(), home.display().to_string()),
            ("ANTHROPIC_BASE_URL".to_owned(), api.to_owned()),
            ("ANTHROPIC_API_KEY".to_owned(), "sk-ant-bench".to_owned()),
        ],
        runtime_dir: dir.join("run"),
        sandbox,
        chats: chats(dir),
        ledger: std::sync::Arc::new(valor_store::Store::open(&dir.join(name)).unwrap()),
        children: valor_monitor::ChildRegistry::new(),
        metrics: valor_monitor::MetricsRegistry::new(),
    })
    .unwrap()
}

pub fn fake_mcp() -> Option<PathBuf> {
    ["debug", "release"]
        .iter()
        .map(|p| repo().join("target").join(p).join("fake-mcp"))
        .find(|p| p.is_file())
}
