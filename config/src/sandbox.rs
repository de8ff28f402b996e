//! `[claude.limits]`, `[claude.egress]`: what each chat's sandbox may use and reach.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[claude.limits]`: each sandbox's share of the machine. Memory and processes are kept in a
/// cgroup of the sandbox's own where one can be had (else by rlimit, said so on /health).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxLimitsConfig {
    /// Memory (MB) of everything a chat's sandbox runs, its `/tmp` included.
    pub memory_mb: u64,
    /// Processes and threads at once (the Claude Code CLI itself uses some 30).
    pub processes: u64,
    /// CPU share against other sandboxes (1-10000; 100 is even).
    pub cpu_weight: u64,
    /// A chat's workspace on disk (MB), and the largest file a sandbox may write.
    pub disk_mb: u64,
    /// The sandbox's private `/tmp` (MB, memory counted in `memory_mb`).
    pub tmp_mb: u64,
}

impl Default for SandboxLimitsConfig {
    fn default() -> Self {
        SandboxLimitsConfig {
            memory_mb: 2048,
            processes: 512,
            cpu_weight: 100,
            disk_mb: 1024,
            tmp_mb: 512,
        }
    }
}

/// `[claude.egress]`: the hosts a chat's sandbox may reach through Valor's egress proxy. Nothing
/// else is reachable from inside (no host loopback, LAN or metadata address, whatever the name
/// resolves to), and every attempt is logged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Hosts every chat may reach: `example.com` (ports 80 and 443), `*.example.com`,
    /// `example.com:8443`.
    pub allow: Vec<String>,
    /// More hosts per chat id.
    pub chats: BTreeMap<String, Vec<String>>,
    /// Hosts of `allow` or `chats` reached even at private addresses (an intranet server).
    pub private: Vec<String>,
}
