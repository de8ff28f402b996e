//! Tool errors. Each says what went wrong in words a chat user understands, and whether trying
//! again later can help; the model reads them as the tool's answer.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The service's key is not set: the tool answers this instead of failing the turn.
    #[error("not configured: set {setting}")]
    NotConfigured { setting: &'static str },
    /// The call asks for something outside this turn's chat or workspace.
    #[error("refused: {0}")]
    Refused(String),
    /// The arguments are wrong (the model can fix them and call again).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The service answered with an error.
    #[error("{service} error ({status}): {message}")]
    Api {
        service: &'static str,
        status: u16,
        message: String,
    },
    /// The service could not be reached or did not answer in time.
    #[error("{service} is unreachable: {reason}")]
    Unreachable {
        service: &'static str,
        reason: String,
    },
    /// The service keeps answering 429.
    #[error("{service} is rate-limiting us; try again in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        service: &'static str,
        retry_after: Duration,
    },
    /// The service answered something we cannot read.
    #[error("{service} sent an answer we cannot read: {reason}")]
    Malformed {
        service: &'static str,
        reason: String,
    },
    /// A file is missing, of the wrong type or too large.
    #[error("file problem: {0}")]
    File(String),
    /// Encoding or decoding data (images, base64, text) failed.
    #[error("encoding problem: {0}")]
    Encoding(String),
    /// Reading or writing local files failed.
    #[error("disk problem: {0}")]
    Io(String),
}

impl ToolError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ToolError::Unreachable { .. } | ToolError::RateLimited { .. }
        ) || matches!(self, ToolError::Api { status, .. } if *status >= 500)
    }

    /// The category shown to users and in logs: `api`, `file`, `encoding`, `io`, ...
    pub fn category(&self) -> &'static str {
        match self {
            ToolError::NotConfigured { .. } => "not_configured",
            ToolError::Refused(_) => "refused",
            ToolError::Invalid(_) => "invalid",
            ToolError::Api { .. }
            | ToolError::Unreachable { .. }
            | ToolError::RateLimited { .. }
            | ToolError::Malformed { .. } => "api",
            ToolError::File(_) => "file",
            ToolError::Encoding(_) => "encoding",
            ToolError::Io(_) => "io",
        }
    }
}

/// Tools answer `Result<String, String>`: rmcp turns the error side into a tool result marked
/// as an error, which the model reads (the turn goes on).
impl From<ToolError> for String {
    fn from(error: ToolError) -> String {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passing_failures_are_retryable() {
        let api = |status| ToolError::Api {
            service: "X",
            status,
            message: String::new(),
        };
        assert!(api(503).is_retryable());
        assert!(!api(401).is_retryable());
        assert!(
            ToolError::RateLimited {
                service: "X",
                retry_after: Duration::from_secs(1)
            }
            .is_retryable()
        );
        assert!(!ToolError::Refused("x".to_owned()).is_retryable());
        assert_eq!(api(500).category(), "api");
        assert_eq!(ToolError::File("x".to_owned()).category(), "file");
    }
}
