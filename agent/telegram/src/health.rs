//! The `telegram` component of `/health` and `/ready`: when Telegram last answered a poll, and
//! whether polling has been failing. A loop that cannot reach Telegram (or cannot store what it
//! got) for a minute is degraded, so an operator sees it without reading logs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::time::Instant;
use valor_monitor::{HealthComponent, Status};

/// Failing this long makes the component degraded (by default: `[monitor]
/// part_alert_after_secs` sets it).
pub const DEGRADED_AFTER: Duration = Duration::from_secs(60);

/// Shared between the channel (which records) and the health server (which reads).
#[derive(Debug)]
pub struct PollHealth {
    started: Instant,
    state: Mutex<PollState>,
    /// Updates that could not be taken in after retries and were skipped.
    set_aside: AtomicU64,
    webhook: bool,
    degraded_after: Duration,
}

#[derive(Debug, Default)]
struct PollState {
    last_ok: Option<Instant>,
    failing_since: Option<Instant>,
    last_error: Option<String>,
}

impl PollHealth {
    pub fn new(webhook: bool, degraded_after: Duration) -> PollHealth {
        PollHealth {
            started: Instant::now(),
            state: Mutex::new(PollState::default()),
            set_aside: AtomicU64::new(0),
            webhook,
            degraded_after,
        }
    }

    /// A poll answered (or a webhook update was taken in).
    pub fn ok(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.last_ok = Some(Instant::now());
        state.failing_since = None;
    }

    /// A poll, or taking in what it returned, failed.
    pub fn failed(&self, error: &str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.failing_since.get_or_insert_with(Instant::now);
        state.last_error = Some(error.chars().take(300).collect());
    }

    pub fn set_aside(&self) {
        self.set_aside.fetch_add(1, Ordering::Relaxed);
    }

    /// Ok, or degraded after failing for its `degraded_after`.
    pub fn status(&self) -> Status {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.failing_since {
            Some(since) if since.elapsed() >= self.degraded_after => Status::Degraded,
            _ => Status::Ok,
        }
    }
}

impl HealthComponent for PollHealth {
    fn name(&self) -> &'static str {
        "telegram"
    }

    fn check(&self) -> (Status, Map<String, Value>) {
        let status = self.status();
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let figures = json!({
            "mode": if self.webhook { "webhook" } else { "polling" },
            "last_ok_secs_ago": state.last_ok.map(|t| t.elapsed().as_secs()),
            "failing_for_secs": state.failing_since.map(|t| t.elapsed().as_secs()),
            "last_error": state.last_error,
            "updates_set_aside": self.set_aside.load(Ordering::Relaxed),
            "up_secs": self.started.elapsed().as_secs(),
        });
        let map = match figures {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        (status, map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_minute_of_failures_is_degraded_and_one_success_heals() {
        let health = PollHealth::new(false, DEGRADED_AFTER);
        health.ok();
        assert_eq!(health.status(), Status::Ok);
        health.failed("store: disk full");
        tokio::time::advance(Duration::from_secs(59)).await;
        health.failed("store: disk full");
        assert_eq!(health.status(), Status::Ok, "the first failure counts");
        tokio::time::advance(Duration::from_secs(2)).await;
        let (status, figures) = health.check();
        assert_eq!(status, Status::Degraded);
        assert_eq!(figures["failing_for_secs"], 61);
        assert_eq!(figures["last_error"], "store: disk full");
        health.ok();
        assert_eq!(health.status(), Status::Ok);
    }
}
