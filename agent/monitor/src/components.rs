//! The parts that report their own health (Telegram, the Claude driver, memory's index), kept
//! over time: since when each has had its status, its last error and when it came, and an
//! alert once one has not been ok for a minute. `/health`, the dashboard's Overview and the
//! alerts all read this one book.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::alerts::{Alert, AlertBook, AlertChange, AlertKind, Severity};
use crate::score::Status;

/// A part not ok for this long raises an alert (`[monitor] part_alert_after_secs`).
pub const ALERT_AFTER_MS: u64 = 60_000;
/// ... and a critical one after this long (or at once when it is unhealthy).
pub const CRITICAL_AFTER_MS: u64 = 15 * 60_000;
/// An error text kept at most (characters).
const ERROR_CHARS: usize = 300;

/// One part as the book knows it now.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentState {
    pub name: String,
    pub status: Status,
    /// Unix milliseconds since it has had this status (since Valor started, for a part that
    /// has always been ok).
    pub since_ms: u64,
    /// The latest error it reported: (Unix milliseconds, text).
    pub last_error: Option<(u64, String)>,
    /// Its own figures, as on `/health`.
    pub figures: Map<String, Value>,
}

impl ComponentState {
    /// How long it has not been ok, in milliseconds (0 when ok).
    pub fn failing_ms(&self, now_ms: u64) -> u64 {
        if self.status == Status::Ok {
            0
        } else {
            now_ms.saturating_sub(self.since_ms)
        }
    }
}

/// What the book remembers of each part between checks.
#[derive(Debug)]
pub struct ComponentBook {
    seen: BTreeMap<String, Seen>,
    alerts: AlertBook,
    /// A part not ok for this long raises an alert.
    alert_after_ms: u64,
}

impl Default for ComponentBook {
    fn default() -> Self {
        ComponentBook::new(ALERT_AFTER_MS)
    }
}

/// A part between checks: its status, since when, its last error (when, what).
#[derive(Debug)]
struct Seen(Status, u64, Option<(u64, String)>);

/// The alert kind of a part, when it has one.
fn alert_kind(name: &str) -> Option<AlertKind> {
    match name {
        "telegram" => Some(AlertKind::Telegram),
        "claude" => Some(AlertKind::Claude),
        "memory_index" => Some(AlertKind::MemoryIndex),
        "monitor" => Some(AlertKind::MonitorStale),
        _ => None,
    }
}

/// The error a part's figures carry (`last_error`), or for a part that is not ok without one,
/// its figures in a line.
fn error_of(status: Status, figures: &Map<String, Value>) -> Option<String> {
    let text = match figures.get("last_error") {
        Some(Value::String(text)) if !text.is_empty() => text.clone(),
        _ if status != Status::Ok => figures
            .iter()
            .filter(|(k, _)| k.as_str() != "status")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => return None,
    };
    Some(text.chars().take(ERROR_CHARS).collect())
}

impl ComponentBook {
    pub fn new(alert_after_ms: u64) -> ComponentBook {
        ComponentBook {
            seen: BTreeMap::new(),
            alerts: AlertBook::default(),
            alert_after_ms: alert_after_ms.max(1000),
        }
    }

    /// Takes in each part's check at `now_ms` (`started_ms`: when Valor started).
    pub fn update(
        &mut self,
        checks: Vec<(String, Status, Map<String, Value>)>,
        started_ms: u64,
        now_ms: u64,
    ) -> Checked {
        let mut checked = Checked {
            states: Vec::with_capacity(checks.len()),
            changes: Vec::new(),
            moved: false,
        };
        for (name, status, figures) in checks {
            let entry = self.seen.entry(name.clone()).or_insert_with(|| {
                checked.moved = true;
                Seen(status, started_ms, None)
            });
            if entry.0 != status {
                // A part that reports how long it has failed knows better than the sweep.
                let failing_for = (figures.get("failing_for_secs").and_then(Value::as_u64))
                    .map(|secs| now_ms.saturating_sub(secs * 1000));
                entry.0 = status;
                entry.1 = failing_for
                    .filter(|_| status != Status::Ok)
                    .unwrap_or(now_ms);
                checked.moved = true;
            }
            // The same error again keeps the time it first came.
            if let Some(text) = error_of(status, &figures)
                && entry.2.as_ref().map(|(_, old)| old) != Some(&text)
            {
                entry.2 = Some((now_ms, text));
                checked.moved = true;
            }
            let state = ComponentState {
                name,
                status,
                since_ms: entry.1,
                last_error: entry.2.clone(),
                figures,
            };
            if let Some(kind) = alert_kind(&state.name) {
                let alert = alert_for(kind, &state, now_ms, self.alert_after_ms);
                self.alerts.update(kind, alert, &mut checked.changes);
            }
            checked.states.push(state);
        }
        checked.moved |= !checked.changes.is_empty();
        checked
    }

    /// The parts' active alerts.
    pub fn active(&self) -> Vec<Alert> {
        self.alerts.active()
    }
}

/// What a look at the parts found.
#[derive(Debug)]
pub struct Checked {
    pub states: Vec<ComponentState>,
    pub changes: Vec<AlertChange>,
    /// A part's status, since or last error changed, or an alert did (what a page shows).
    pub moved: bool,
}

/// A part's alert: none before a minute not ok.
fn alert_for(kind: AlertKind, state: &ComponentState, now_ms: u64, after_ms: u64) -> Option<Alert> {
    let failing = state.failing_ms(now_ms);
    if failing < after_ms {
        return None;
    }
    let severity = if state.status == Status::Unhealthy || failing >= CRITICAL_AFTER_MS {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let error = (state.last_error.as_ref())
        .map(|(_, text)| format!(": {text}"))
        .unwrap_or_default();
    Some(Alert {
        kind,
        severity,
        message: format!(
            "{} has been {} for {} s{error}",
            kind.describe(),
            state.status.as_str(),
            failing / 1000
        ),
        action: kind.action().to_owned(),
        value: (failing / 1000) as f64,
        threshold: (after_ms / 1000) as f64,
        since: state.since_ms / 1000,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn figures(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn telegram_failing_for_a_minute_raises_an_alert_with_its_error_and_clears_on_recovery() {
        let mut book = ComponentBook::default();
        let start = 1_000_000;
        let ok = |book: &mut ComponentBook, at| {
            book.update(
                vec![(
                    "telegram".into(),
                    Status::Ok,
                    figures(json!({"mode": "polling"})),
                )],
                start,
                at,
            )
        };
        let Checked {
            states, changes, ..
        } = ok(&mut book, start + 5_000);
        assert_eq!(states[0].since_ms, start, "ok since Valor started");
        assert!(changes.is_empty());
        // Looking again finds nothing new: live pages are not woken by a look.
        assert!(!ok(&mut book, start + 6_000).moved);
        // Failing from +10 s; Telegram says degraded once it has failed for 60 s.
        let failing = |secs: u64| {
            vec![(
                "telegram".to_owned(),
                if secs >= 60 {
                    Status::Degraded
                } else {
                    Status::Ok
                },
                figures(json!({"failing_for_secs": secs, "last_error": "502 Bad Gateway"})),
            )]
        };
        let Checked {
            states, changes, ..
        } = book.update(failing(30), start, start + 40_000);
        assert_eq!(states[0].status, Status::Ok);
        assert_eq!(
            states[0].last_error,
            Some((start + 40_000, "502 Bad Gateway".to_owned()))
        );
        assert!(changes.is_empty(), "not yet a minute");
        let Checked {
            states, changes, ..
        } = book.update(failing(61), start, start + 71_000);
        assert_eq!(states[0].status, Status::Degraded);
        assert_eq!(states[0].since_ms, start + 10_000, "failing since it said");
        assert_eq!(states[0].failing_ms(start + 71_000), 61_000);
        let [AlertChange::Raised(alert)] = changes.as_slice() else {
            panic!("{changes:?}")
        };
        assert_eq!(alert.kind, AlertKind::Telegram);
        assert_eq!(alert.severity, Severity::Warning);
        assert!(
            alert.message.contains("502 Bad Gateway"),
            "{}",
            alert.message
        );
        assert!(alert.message.contains("for 61 s"), "{}", alert.message);
        // Still failing a quarter of an hour later: critical.
        let Checked { changes, .. } = book.update(failing(910), start, start + 920_000);
        assert!(
            matches!(changes.as_slice(), [AlertChange::SeverityChanged { alert, .. }] if alert.severity == Severity::Critical),
            "{changes:?}"
        );
        let Checked {
            states, changes, ..
        } = ok(&mut book, start + 930_000);
        assert!(
            matches!(changes.as_slice(), [AlertChange::Cleared(a)] if a.kind == AlertKind::Telegram)
        );
        assert_eq!(states[0].since_ms, start + 930_000, "ok again from now");
        assert_eq!(
            states[0].last_error.as_ref().map(|e| e.1.as_str()),
            Some("502 Bad Gateway"),
            "the last error stays to be read"
        );
        assert_eq!(book.active().len(), 0);
    }

    #[test]
    fn a_part_not_ok_without_an_error_is_described_by_its_figures() {
        let mut book = ComponentBook::default();
        let Checked {
            states, changes, ..
        } = book.update(
            vec![(
                "memory_index".into(),
                Status::Degraded,
                figures(json!({"state": "keyword_only", "queued": 12})),
            )],
            0,
            1_000,
        );
        assert_eq!(
            states[0].last_error.as_ref().unwrap().1,
            "queued=12, state=\"keyword_only\""
        );
        assert!(changes.is_empty());
        let Checked { changes, .. } = book.update(
            vec![("memory_index".into(), Status::Degraded, Map::new())],
            0,
            61_000,
        );
        assert!(
            matches!(changes.as_slice(), [AlertChange::Raised(a)] if a.kind == AlertKind::MemoryIndex)
        );
        // A part with no alert kind is shown, never alerted on.
        let Checked {
            states, changes, ..
        } = book.update(
            vec![("other".into(), Status::Unhealthy, Map::new())],
            0,
            900_000,
        );
        assert_eq!(states.len(), 1);
        assert!(changes.is_empty());
    }
}
