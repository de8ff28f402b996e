//! Valor's daydream: every six hours Valor studies the workspaces it works on and reports.
//!
//! - [`codemap`]: files and functions per language with tree-sitter, and the functions a diff
//!   touched.
//! - [`git`]: git on an untrusted repository: its hooks, fsmonitor and diff programs off, an
//!   empty environment, a time limit, its own process group, an explicit `--git-dir`, and a
//!   sandbox of its own with only the workspace, read-only.
//! - [`walk`]: a workspace's source files found through the no-follow helper.
//! - [`turn_map`]: the code map for turns: the function-map layer of a chat's prompt and the
//!   functions an observation names ([`WorkspaceMaps`]).
//! - [`workspace`]: one workspace's context: git branch, status and recent commits, the stack
//!   from its manifests, its code map, the functions changed since the last daydream.
//! - [`analytics`]: usage trends from the recorded runs.
//! - [`chart`]: the report's PNG chart (plotters): turns per day, health over time.
//! - [`openai`]: the analysis through an OpenAI-compatible endpoint (a local Ollama).
//! - [`prompt`]: the one analysis prompt.
//! - [`report`]: the report file, its archive and rotation.
//! - [`run`]: the six phases under one session id ([`Daydream`]), and the [`Host`] seam to the
//!   agent around it.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod analytics;
pub mod chart;
pub mod codemap;
pub mod git;
pub mod openai;
pub mod prompt;
pub mod report;
pub mod run;
pub mod turn_map;
pub mod walk;
pub mod workspace;

pub use codemap::{CodeMap, FunctionInfo, Language, MapCache};
pub use git::GitJail;
pub use run::{
    DAYDREAM_CHAT_ID, Daydream, DaydreamOutcome, DaydreamReport, DaydreamSettings, Host,
    HostFuture, Phase, Readiness,
};
pub use turn_map::WorkspaceMaps;
pub use workspace::{GitInfo, WorkspaceContext, gather_workspaces};
