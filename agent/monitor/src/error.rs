#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("cannot read system figures: {0}")]
    Sample(String),

    #[error("invalid metric or label name `{0}` (expected [a-zA-Z_:][a-zA-Z0-9_:]*)")]
    MetricName(String),

    #[error("metric `{name}` is already registered as a {registered}")]
    MetricKind {
        name: String,
        registered: &'static str,
    },

    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("health server failed: {0}")]
    Serve(#[source] std::io::Error),
}

impl MonitorError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, MonitorError::Sample(_) | MonitorError::Serve(_))
    }
}
