use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ClaudeError {
    #[error("cannot start Claude Code at {}: {source}", binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot prepare the chat workspace {}: {source}", path.display())]
    Workspace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write the turn's MCP config: {0}")]
    McpConfig(#[source] std::io::Error),

    #[error("cannot talk to the Claude Code process: {0}")]
    Pipe(#[source] std::io::Error),

    #[error("the sandbox is required ([claude] sandbox = \"required\") but does not work: {0}")]
    SandboxRequired(String),

    #[error("cannot start the chat's sandbox: {0}")]
    Sandbox(String),

    #[error("cannot make the private runtime folder {}: {reason}", path.display())]
    RuntimeDir { path: PathBuf, reason: String },

    #[error(transparent)]
    Store(#[from] valor_protocol::StoreFailure),
}
