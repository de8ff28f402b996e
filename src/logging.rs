//! Logs go to stderr; stdout belongs to command output.

use std::io::IsTerminal as _;

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use valor_dashboard::logs::LogRing;

/// The last log lines, for the dashboard's Logs page (filled once the logger is installed).
static RING: OnceLock<LogRing> = OnceLock::new();

/// The ring the logger fills.
pub fn ring() -> LogRing {
    RING.get_or_init(LogRing::default).clone()
}

/// Dependencies whose INFO lines are chatter to a Valor operator ("Job creator created",
/// sled's recovery details): warnings only, unless the filter names them itself.
const CHATTY_DEPENDENCIES: [&str; 2] = ["tokio_cron_scheduler", "sled"];

/// Installs the stderr logger, and with `ring` the dashboard's ring of last lines. `RUST_LOG`
/// wins over `[log] filter`.
pub fn init(config_filter: &str, ring: bool) {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| EnvFilter::try_new(v).is_ok())
        .unwrap_or_else(|| config_filter.to_owned());
    // A second init (tests) is harmless: keep the first subscriber.
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(|| Redacting(std::io::stderr()))
        .with_ansi(std::io::stderr().is_terminal());
    // Each layer has its own filter: the ring keeps Valor's debug and trace lines for the Logs
    // page whatever stderr shows.
    let _ = tracing_subscriber::registry()
        .with(stderr.with_filter(filter_for(&spec)))
        .with(ring.then(|| {
            self::ring()
                .layer()
                .with_filter(valor_dashboard::logs::ring_filter())
        }))
        .try_init();
}

/// A writer that redacts what passes (the formatter writes a line at a time): no secret
/// reaches a log line, whoever logged it.
struct Redacting<W>(W);

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        match valor_redact::redact(&text) {
            std::borrow::Cow::Borrowed(_) => self.0.write_all(buf)?,
            std::borrow::Cow::Owned(clean) => self.0.write_all(clean.as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The filter `spec` asks for ("info" when it is not a filter), with the chatty dependencies
/// held at warnings unless `spec` names them.
pub fn filter_for(spec: &str) -> EnvFilter {
    let spec = if EnvFilter::try_new(spec).is_ok() {
        spec
    } else {
        "info"
    };
    CHATTY_DEPENDENCIES
        .iter()
        .filter(|name| !spec.contains(*name))
        .filter_map(|name| format!("{name}=warn").parse().ok())
        .fold(EnvFilter::new(spec), EnvFilter::add_directive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_are_quiet_unless_named() {
        let filter = filter_for("info").to_string();
        assert!(filter.contains("sled=warn"), "{filter}");
        assert!(filter.contains("tokio_cron_scheduler=warn"), "{filter}");
        let named = filter_for("info,sled=debug").to_string();
        assert!(named.contains("sled=debug"), "{named}");
        assert!(!named.contains("sled=warn"), "{named}");
        let broken = filter_for("[[[").to_string();
        assert!(broken.contains("info"), "{broken}");
    }
}
