//! Schedules: six-field cron (`sec min hour day-of-month month day-of-week`, the form
//! tokio-cron-scheduler reads, e.g. `0 0 */6 * * *`) or a fixed interval (`every 30s`, `every
//! 6h`). Due times are computed from the time passed in, never from the system clock, so tests
//! fix the clock.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

#[derive(Debug, thiserror::Error)]
#[error("schedule {text:?}: {reason}")]
pub struct ScheduleError {
    pub text: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub enum Schedule {
    Cron { text: String, cron: Box<Cron> },
    Every(Duration),
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let text = text.trim();
        let error = |reason: String| ScheduleError {
            text: text.to_owned(),
            reason,
        };
        if let Some(every) = text.strip_prefix("every ") {
            let every = every.trim();
            let split = every
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(|| error("an interval needs a unit: s, m, h or d".to_owned()))?;
            let (count, unit) = every.split_at(split);
            let count: u64 = count
                .parse()
                .map_err(|_| error("an interval starts with a whole number".to_owned()))?;
            let unit_secs = match unit.trim() {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                other => return Err(error(format!("unknown unit {other:?}: use s, m, h or d"))),
            };
            if count == 0 {
                return Err(error("an interval must be longer than zero".to_owned()));
            }
            return Ok(Schedule::Every(Duration::from_secs(count * unit_secs)));
        }
        if text.split_whitespace().count() != 6 {
            return Err(error(
                "expected six cron fields (second minute hour day-of-month month day-of-week), \
                 e.g. \"0 0 */6 * * *\", or an interval such as \"every 30s\""
                    .to_owned(),
            ));
        }
        // The parser settings tokio-cron-scheduler uses, so due times here match its firing.
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(text)
            .map_err(|e| error(e.to_string()))?;
        Ok(Schedule::Cron {
            text: text.to_owned(),
            cron: Box::new(cron),
        })
    }

    /// The first due time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron { cron, .. } => {
                cron.find_next_occurrence(&whole_seconds(after), false).ok()
            }
            Schedule::Every(every) => chrono::Duration::from_std(*every).ok().map(|d| after + d),
        }
    }

    /// The latest due time at or before `now` (cron only: an interval has no fixed times).
    pub fn latest_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron { cron, .. } => cron
                .find_previous_occurrence(&whole_seconds(now), true)
                .ok(),
            Schedule::Every(_) => None,
        }
    }
}

/// `at` without its fraction of a second. croner keeps the fraction of the time it is given in
/// the occurrence it returns (00:01:00.750 gave a latest due time of 00:00:00.750), so a run
/// that fired at 00:00:00.003 looked older than its own due time and ran again after a restart.
fn whole_seconds(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(0).unwrap_or(at)
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Cron { text, .. } => f.write_str(text),
            Schedule::Every(every) => {
                let secs = every.as_secs();
                match secs {
                    s if s % 86_400 == 0 => write!(f, "every {}d", s / 86_400),
                    s if s % 3600 == 0 => write!(f, "every {}h", s / 3600),
                    s if s % 60 == 0 => write!(f, "every {}m", s / 60),
                    s => write!(f, "every {s}s"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn every_six_hours_falls_on_the_quarter_days() {
        let six = Schedule::parse("0 0 */6 * * *").unwrap();
        assert_eq!(
            six.next_after(at("2026-12-01T02:47:00Z")),
            Some(at("2026-12-01T06:00:00Z"))
        );
        assert_eq!(
            six.next_after(at("2026-12-01T06:00:00Z")),
            Some(at("2026-12-01T12:00:00Z"))
        );
        assert_eq!(
            six.next_after(at("2026-12-31T23:00:00Z")),
            Some(at("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            six.latest_due(at("2026-12-01T05:59:59Z")),
            Some(at("2026-12-01T00:00:00Z"))
        );
        assert_eq!(
            six.latest_due(at("2026-12-01T06:00:00Z")),
            Some(at("2026-12-01T06:00:00Z"))
        );
        assert_eq!(six.to_string(), "0 0 */6 * * *");
    }

    #[test]
    fn intervals_and_their_errors() {
        let tick = Schedule::parse("every 30s").unwrap();
        assert_eq!(
            tick.next_after(at("2026-12-01T00:00:00Z")),
            Some(at("2026-12-01T00:00:30Z"))
        );
        assert_eq!(tick.latest_due(at("2026-12-01T00:00:00Z")), None);
        assert_eq!(tick.to_string(), "every 30s");
        assert_eq!(Schedule::parse("every 6h").unwrap().to_string(), "every 6h");
        for (bad, says) in [
            ("every 0s", "longer than zero"),
            ("every 5", "needs a unit"),
            ("every 5y", "unknown unit"),
            ("0 */6 * * *", "expected six cron fields"),
            ("0 0 25 * * *", "schedule"),
        ] {
            let error = Schedule::parse(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
