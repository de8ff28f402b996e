//! Valor's daydream: every six hours Valor studies the workspaces it works on and reports.
//!
//! - [`codemap`]: files and functions per language with tree-sitter, and the functions a diff
//!   touched.
//! - [`workspace`]: one workspace's context: git branch, status and recent commits, the stack
//!   from its manifests, its code map, the functions changed since the last daydream.

pub mod codemap;
pub mod workspace;

pub use codemap::{CodeMap, FunctionInfo, Language, MapCache};
pub use workspace::{GitInfo, WorkspaceContext, gather_workspaces};
