//! Logs go to stderr; stdout belongs to command output.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// Installs the stderr logger. `RUST_LOG` wins over `[log] filter`.
pub fn init(config_filter: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(config_filter).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .try_init();
}
