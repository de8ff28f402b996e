//! Runs that fell due while Valor was down. Each job has a policy; whatever it decides is
//! recorded as a run, so `valor jobs` shows it and the next restart does not decide again.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::Schedule;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissedPolicy {
    /// Run once at start-up if the missed due time is at most `window` old; older: skipped,
    /// and recorded as such.
    CatchUp { window: Duration },
    /// Do not run it; record that it was skipped.
    Skip,
    /// Do not run it; tell the operator (the admin chat) and record that.
    Notify,
}

impl std::fmt::Display for MissedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MissedPolicy::CatchUp { window } => {
                write!(f, "catch up within {} h", window.as_secs() / 3600)
            }
            MissedPolicy::Skip => f.write_str("skip"),
            MissedPolicy::Notify => f.write_str("notify"),
        }
    }
}

/// What to do at start-up about a job's runs missed while down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissedDecision {
    /// Nothing fell due since the job last ran (or it never ran: nothing was owed yet).
    UpToDate,
    /// Run it now for the time it was due.
    RunNow { due: DateTime<Utc> },
    /// Do not run it; say why.
    Skip { due: DateTime<Utc>, reason: String },
    /// Do not run it; tell the operator.
    Notify { due: DateTime<Utc> },
}

/// The decision for a job that last started at `last_started` (none: never ran), at `now`.
pub fn decide(
    schedule: &Schedule,
    policy: MissedPolicy,
    last_started: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> MissedDecision {
    let (Some(due), Some(last)) = (schedule.latest_due(now), last_started) else {
        return MissedDecision::UpToDate;
    };
    if last >= due {
        return MissedDecision::UpToDate;
    }
    let late = (now - due).to_std().unwrap_or_default();
    match policy {
        MissedPolicy::CatchUp { window } if late <= window => MissedDecision::RunNow { due },
        MissedPolicy::CatchUp { window } => MissedDecision::Skip {
            due,
            reason: format!(
                "missed while Valor was down; {} h late, past the {} h catch-up window",
                late.as_secs() / 3600,
                window.as_secs() / 3600
            ),
        },
        MissedPolicy::Skip => MissedDecision::Skip {
            due,
            reason: "missed while Valor was down; the policy is to skip".to_owned(),
        },
        MissedPolicy::Notify => MissedDecision::Notify { due },
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
    fn each_policy_after_a_restart() {
        let six = Schedule::parse("0 0 */6 * * *").unwrap();
        let catch_up = MissedPolicy::CatchUp {
            window: Duration::from_secs(6 * 3600),
        };
        let ran = Some(at("2026-12-01T00:00:05Z"));
        // Down from 01:00 to 05:00: nothing fell due.
        assert_eq!(
            decide(&six, catch_up, ran, at("2026-12-01T05:00:00Z")),
            MissedDecision::UpToDate
        );
        // Down over 06:00, back at 07:30: once, for 06:00.
        let due = at("2026-12-01T06:00:00Z");
        assert_eq!(
            decide(&six, catch_up, ran, at("2026-12-01T07:30:00Z")),
            MissedDecision::RunNow { due }
        );
        // Several due times missed: still one run, for the latest.
        assert_eq!(
            decide(&six, catch_up, ran, at("2026-12-01T13:00:00Z")),
            MissedDecision::RunNow {
                due: at("2026-12-01T12:00:00Z")
            }
        );
        assert_eq!(
            decide(&six, MissedPolicy::Skip, ran, at("2026-12-01T07:30:00Z")),
            MissedDecision::Skip {
                due,
                reason: "missed while Valor was down; the policy is to skip".to_owned()
            }
        );
        assert_eq!(
            decide(&six, MissedPolicy::Notify, ran, at("2026-12-01T07:30:00Z")),
            MissedDecision::Notify { due }
        );
        // Outside the window: skipped, with the reason.
        let narrow = MissedPolicy::CatchUp {
            window: Duration::from_secs(3600),
        };
        match decide(&six, narrow, ran, at("2026-12-01T08:30:00Z")) {
            MissedDecision::Skip { reason, .. } => {
                assert!(
                    reason.contains("2 h late, past the 1 h catch-up window"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Never ran: nothing owed.
        assert_eq!(
            decide(&six, catch_up, None, at("2026-12-01T07:30:00Z")),
            MissedDecision::UpToDate
        );
    }

    #[test]
    fn a_run_that_fired_in_its_due_second_is_not_run_again_after_a_restart() {
        let six = Schedule::parse("0 0 */6 * * *").unwrap();
        let catch_up = MissedPolicy::CatchUp {
            window: Duration::from_secs(6 * 3600),
        };
        // The 00:00 run fired 3 ms into its second; Valor restarted at 00:01:00.750.
        let ran = Some(at("2026-12-01T00:00:00.003Z"));
        for now in [
            "2026-12-01T00:01:00.750Z",
            "2026-12-01T00:00:00.999Z",
            "2026-12-01T05:59:59.999Z",
        ] {
            assert_eq!(
                decide(&six, catch_up, ran, at(now)),
                MissedDecision::UpToDate,
                "restart at {now}"
            );
        }
        assert_eq!(
            six.latest_due(at("2026-12-01T00:01:00.750Z")),
            Some(at("2026-12-01T00:00:00Z")),
            "due times are whole seconds"
        );
        assert_eq!(
            six.next_after(at("2026-11-30T23:59:59.250Z")),
            Some(at("2026-12-01T00:00:00Z"))
        );
        // The next slot is still owed once its second has come.
        assert_eq!(
            decide(&six, catch_up, ran, at("2026-12-01T06:00:00.400Z")),
            MissedDecision::RunNow {
                due: at("2026-12-01T06:00:00Z")
            }
        );
    }
}
