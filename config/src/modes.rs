//! The settings that take one of a few words, as enums: parsed once, when the config is read
//! (an unknown word is an error naming the key, its line and the words it takes).

use serde::{Deserialize, Serialize};

/// `[claude] sandbox`: whether each Claude process runs in its own sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// Sandboxed when the sandbox works here; otherwise unsandboxed, degraded and said so.
    #[default]
    Auto,
    /// No turn runs without it; `valor run` refuses to start.
    Required,
    Off,
}

/// What happens to a scheduled run missed while Valor was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Run it once, if it fell due within `[scheduler] catch_up_window_hours`.
    #[default]
    CatchUp,
    Skip,
    /// Tell the admin chat, do not run it.
    Notify,
}

/// `[daydream] backend`: who writes the daydream's analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaydreamBackend {
    /// The Claude Code driver.
    #[default]
    Claude,
    /// An OpenAI-compatible endpoint (a local Ollama, say) at `openai_base_url`.
    Openai,
}
