//! The last few thousand log lines, for the Logs page: a `tracing` layer beside the stderr
//! one that keeps each event's time, level, target, chat (from the event or the turn's span)
//! and text in a bounded ring. Each line is numbered, so a live page is sent only the lines
//! after the last it has. The ring has its own filter ([`ring_filter`]): Valor's own debug
//! and trace lines are kept whatever stderr shows, and the MCP library's info lines are kept
//! as debug (they were most of what an operator saw at info).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Lines kept at most.
pub const KEPT: usize = 5_000;

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its number: lines ever pushed before it.
    pub seq: u64,
    pub at_ms: u64,
    pub level: Level,
    pub target: &'static str,
    pub chat_id: Option<i64>,
    pub text: String,
}

/// The kept lines; clones share them. Room for all of them is taken at start, so a
/// long-running process does not grow (or leave the gaps of a doubling) as the ring fills.
#[derive(Debug, Clone)]
pub struct LogRing {
    lines: Arc<Mutex<VecDeque<LogLine>>>,
    /// Lines ever pushed: a live page renders again only when it moved.
    pushed: Arc<AtomicU64>,
    /// Told the count of lines ever pushed, for live pages.
    moved: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for LogRing {
    fn default() -> Self {
        LogRing {
            lines: Arc::new(Mutex::new(VecDeque::with_capacity(KEPT))),
            pushed: Arc::default(),
            moved: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

/// Which lines a page shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// This level or more severe.
    pub level: Option<Level>,
    pub chat: Option<i64>,
    /// Words the line (target or text) contains, any case.
    pub text: String,
}

impl LogFilter {
    fn keeps(&self, line: &LogLine) -> bool {
        line.level <= self.level.unwrap_or(Level::INFO)
            && self.chat.is_none_or(|c| line.chat_id == Some(c))
            && (self.text.is_empty() || {
                let needle = self.text.to_lowercase();
                line.text.to_lowercase().contains(&needle) || line.target.contains(&needle)
            })
    }
}

impl LogRing {
    fn push(&self, mut line: LogLine) {
        {
            let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
            line.seq = self.pushed.fetch_add(1, Ordering::AcqRel);
            if lines.len() >= KEPT {
                lines.pop_front();
            }
            lines.push_back(line);
        }
        self.moved.send_replace(self.pushed.load(Ordering::Acquire));
    }

    /// Changes whenever a line is added.
    pub fn version(&self) -> u64 {
        self.pushed.load(Ordering::Acquire)
    }

    /// Moves whenever a line is added.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.moved.subscribe()
    }

    /// The newest `limit` lines at `level` or more severe (and of `chat`, when given), oldest
    /// first.
    pub fn lines(&self, level: Level, chat: Option<i64>, limit: usize) -> Vec<LogLine> {
        let filter = LogFilter {
            level: Some(level),
            chat,
            text: String::new(),
        };
        self.matching(&filter, 0, limit)
    }

    /// The newest `limit` lines `filter` keeps numbered `after` or later, oldest first.
    pub fn matching(&self, filter: &LogFilter, after: u64, limit: usize) -> Vec<LogLine> {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<LogLine> = (lines.iter().rev())
            .take_while(|l| l.seq >= after)
            .filter(|l| filter.keeps(l))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// The layer that fills the ring.
    pub fn layer(&self) -> RingLayer {
        RingLayer { ring: self.clone() }
    }
}

/// Libraries whose info lines the ring keeps as debug: the MCP library logs every request.
const DEMOTED: [&str; 1] = ["rmcp"];

/// What the ring keeps, whatever stderr shows: Valor's own lines down to trace, other
/// libraries' from info (the MCP library's then shown as debug), the chatty ones' warnings.
pub fn ring_filter() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_default(Level::INFO)
        .with_target("valor", Level::TRACE)
        .with_target("sled", Level::WARN)
        .with_target("tokio_cron_scheduler", Level::WARN)
}

/// Fills a [`LogRing`].
pub struct RingLayer {
    ring: LogRing,
}

/// A span's chat, kept in its extensions.
struct SpanChat(i64);

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    chat_id: Option<i64>,
}

impl Visit for Fields {
    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "chat_id" {
            self.chat_id = Some(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

impl<S> Layer<S> for RingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(chat), Some(span)) = (fields.chat_id, ctx.span(id)) {
            span.extensions_mut().insert(SpanChat(chat));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let chat_id = fields.chat_id.or_else(|| {
            ctx.event_scope(event)?
                .find_map(|span| span.extensions().get::<SpanChat>().map(|c| c.0))
        });
        let target = event.metadata().target();
        let mut level = *event.metadata().level();
        if level == Level::INFO && DEMOTED.iter().any(|t| target.starts_with(t)) {
            level = Level::DEBUG;
        }
        self.ring.push(LogLine {
            seq: 0,
            at_ms: valor_protocol::time::now_ms(),
            level,
            target,
            chat_id,
            // The Logs page is a way out too: no secret in what it shows or downloads.
            text: valor_redact::redact_owned(line_text(&fields)),
        });
    }
}

/// A line's text, without the slack its building left (5,000 are kept).
fn line_text(fields: &Fields) -> String {
    let mut text = String::with_capacity(fields.message.len() + fields.rest.len());
    text.push_str(&fields.message);
    text.push_str(&fields.rest);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn lines_are_kept_with_their_chat_and_filtered() {
        let ring = LogRing::default();
        let subscriber = tracing_subscriber::registry().with(ring.layer());
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..(KEPT + 10) {
                tracing::trace!(i, "filler");
            }
            tracing::info!(chat_id = 7_i64, "turn started");
            let span = tracing::info_span!("turn", chat_id = 9_i64);
            span.in_scope(|| tracing::warn!(attempt = 2, "the API is busy"));
        });
        let warnings = ring.lines(Level::WARN, None, 10);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].chat_id, Some(9), "from the span");
        assert_eq!(warnings[0].text, "the API is busy attempt=2");
        let chat7 = ring.lines(Level::TRACE, Some(7), 10);
        assert_eq!(chat7.len(), 1);
        assert_eq!(chat7[0].text, "turn started");
        assert_eq!(
            ring.lines(Level::TRACE, None, usize::MAX).len(),
            KEPT,
            "bounded"
        );
        assert_eq!(ring.lines(Level::TRACE, None, 3).len(), 3);
    }

    #[test]
    fn only_lines_after_a_number_are_read_and_the_mcp_librarys_info_is_debug() {
        let ring = LogRing::default();
        let subscriber = tracing_subscriber::registry().with(ring.layer());
        let mut moved = ring.subscribe();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "rmcp::service", "serve inner");
            tracing::info!(chat_id = 3_i64, "Turn Started");
            tracing::warn!("disk nearly full");
        });
        assert!(moved.has_changed().unwrap());
        moved.mark_unchanged();
        let info = LogFilter::default();
        let all = ring.matching(&info, 0, 100);
        assert_eq!(
            all.len(),
            2,
            "the MCP library's info line is not at info: {all:?}"
        );
        assert_eq!(all[0].seq, 1);
        let debug = LogFilter {
            level: Some(Level::DEBUG),
            ..LogFilter::default()
        };
        let rmcp = &ring.matching(&debug, 0, 100)[0];
        assert_eq!((rmcp.level, rmcp.target), (Level::DEBUG, "rmcp::service"));
        assert_eq!(ring.matching(&info, 2, 100).len(), 1, "after line 1");
        assert!(ring.matching(&info, 3, 100).is_empty());
        let search = LogFilter {
            text: "turn started".into(),
            ..LogFilter::default()
        };
        assert_eq!(
            ring.matching(&search, 0, 100)[0].chat_id,
            Some(3),
            "any case"
        );
    }
}
