//! When a run has failed, and why. A run failed when the exit code is non-zero, the result says
//! `is_error`, or no result came; `subtype` is not relied on (an overloaded API still says
//! "success").

use std::process::ExitStatus;
use std::time::Duration;

use valor_protocol::{TurnError, TurnErrorKind};

use crate::codec::CliResult;

/// Why the driver stopped a run itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Cancelled,
    TotalTimeout(Duration),
    IdleTimeout(Duration),
    /// The sandbox went over a limit (memory, processes, disk).
    Limit(TurnErrorKind, String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Ok,
    /// `--resume` named a session the CLI does not know: start a new one.
    SessionUnknown,
    Failed(TurnError),
}

/// Decides a run's outcome.
pub fn classify(
    result: Option<&CliResult>,
    stop: Option<Stop>,
    exit: Option<ExitStatus>,
    stderr_tail: &str,
) -> Verdict {
    let failed = |kind, detail: String| Verdict::Failed(TurnError::new(kind, detail));
    match stop {
        Some(Stop::Cancelled) => {
            return failed(TurnErrorKind::Cancelled, "stopped on request".to_owned());
        }
        Some(Stop::TotalTimeout(limit)) => {
            return failed(
                TurnErrorKind::Timeout,
                format!("no result within {} s", limit.as_secs()),
            );
        }
        Some(Stop::IdleTimeout(limit)) => {
            return failed(
                TurnErrorKind::Timeout,
                format!("no output for {} s", limit.as_secs()),
            );
        }
        Some(Stop::Limit(kind, detail)) => return failed(kind, detail),
        None => {}
    }
    let exit_ok = exit.is_none_or(|s| s.success());
    let Some(result) = result else {
        let tail = stderr_tail.trim();
        if tail.contains("No conversation found with session ID") {
            return Verdict::SessionUnknown;
        }
        return failed(
            TurnErrorKind::Crashed,
            format!(
                "Claude Code ended without a result ({}); stderr: {tail:?}",
                describe(exit)
            ),
        );
    };
    if result
        .errors
        .iter()
        .any(|e| e.starts_with("No conversation found with session ID"))
    {
        return Verdict::SessionUnknown;
    }
    if result.subtype == "error_max_turns" {
        return failed(TurnErrorKind::MaxTurns, result.errors.join("; "));
    }
    if !result.is_error && exit_ok {
        return Verdict::Ok;
    }
    let text = result
        .result
        .clone()
        .unwrap_or_else(|| result.errors.join("; "));
    let kind = match result.api_error_status {
        Some(529) => TurnErrorKind::Overloaded,
        Some(429) => TurnErrorKind::RateLimited,
        Some(401 | 403) => TurnErrorKind::Auth,
        Some(400 | 404 | 413 | 422) => TurnErrorKind::BadRequest,
        Some(_) => TurnErrorKind::Api,
        None => kind_from_text(&text, result.is_error),
    };
    failed(
        kind,
        format!("{text} ({}, subtype {})", describe(exit), result.subtype),
    )
}

/// A failure that is the account's usage limit (a subscription's window, the API's spend
/// limit), told apart from a passing 429, with when it resets when that was said: the usage
/// window's `rejected` report (`resets_at_ms`), else the CLI's "resets 5:10am (UTC)", else the
/// API's "regain access on 2026-01-01 at 00:00 UTC". Without a time, an hour from `now_ms`.
pub fn usage_limit(
    error: TurnError,
    rejected_until: Option<Option<u64>>,
    now_ms: u64,
) -> TurnError {
    use TurnErrorKind::{Api, BadRequest, RateLimited};
    if !matches!(error.kind, RateLimited | BadRequest | Api) {
        return error;
    }
    let lower = error.detail.to_lowercase();
    let said = lower.contains("usage limit")
        || lower.contains("regain access on")
        || (lower.contains("hit your") && lower.contains("limit"));
    if rejected_until.is_none() && !said {
        return error;
    }
    let at = (rejected_until.flatten())
        .or_else(|| regain_access_at(&lower))
        .or_else(|| resets_at(&lower, now_ms))
        .unwrap_or(now_ms + 3_600_000);
    TurnError::new(TurnErrorKind::UsageLimit, error.detail).retry_at(at)
}

/// "regain access on 2026-01-01 at 00:00 utc" (the API's spend limit).
fn regain_access_at(lower: &str) -> Option<u64> {
    let rest = &lower[lower.find("regain access on ")? + "regain access on ".len()..];
    let date = rest.get(..10)?;
    let (y, m, d) = (date.get(..4)?, date.get(5..7)?, date.get(8..10)?);
    let time = rest.get(10..)?.trim_start().strip_prefix("at ")?;
    let (h, min) = (time.get(..2)?, time.get(3..5)?);
    valor_protocol::time::unix_ms(
        y.parse().ok()?,
        m.parse().ok()?,
        d.parse().ok()?,
        h.parse().ok()?,
        min.parse().ok()?,
    )
}

/// "resets 5:10am (utc)" or "resets 5pm (utc)": the next such time after `now_ms` (only in
/// UTC: another zone's name is not guessed at).
fn resets_at(lower: &str, now_ms: u64) -> Option<u64> {
    let rest = &lower[lower.find("resets ")? + "resets ".len()..];
    if !rest.contains("(utc)") {
        return None;
    }
    let clock: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '(')
        .collect();
    let (digits, pm) = match (clock.strip_suffix("am"), clock.strip_suffix("pm")) {
        (Some(d), _) => (d, false),
        (_, Some(d)) => (d, true),
        _ => (clock.as_str(), false),
    };
    let (h, m) = digits.split_once(':').unwrap_or((digits, "0"));
    let (h, m): (u64, u64) = (h.parse().ok()?, m.parse().ok()?);
    let twelve_hour = clock.ends_with("am") || pm;
    if h > 23 || m > 59 || (twelve_hour && !(1..=12).contains(&h)) {
        return None;
    }
    let h = match (h, pm, twelve_hour) {
        (12, false, true) => 0,
        (12, true, _) => 12,
        (h, true, _) => h + 12,
        (h, _, _) => h,
    };
    let day = now_ms - now_ms % 86_400_000;
    let at = day + (h * 60 + m) * 60_000;
    Some(if at > now_ms { at } else { at + 86_400_000 })
}

fn kind_from_text(text: &str, is_error: bool) -> TurnErrorKind {
    let lower = text.to_lowercase();
    if lower.contains("overloaded") {
        TurnErrorKind::Overloaded
    } else if lower.contains("rate limit") || lower.contains("rate_limit") {
        TurnErrorKind::RateLimited
    } else if lower.contains("/login")
        || lower.contains("api key")
        || lower.contains("authentication")
        || lower.contains("unauthorized")
    {
        TurnErrorKind::Auth
    } else if is_error || lower.contains("api error") {
        TurnErrorKind::Api
    } else {
        TurnErrorKind::Crashed
    }
}

fn describe(exit: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match exit {
        None => "still running".to_owned(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            _ => s.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;

    use super::*;

    fn result(is_error: bool, status: Option<u16>, text: &str) -> CliResult {
        CliResult {
            subtype: "success".to_owned(),
            is_error,
            api_error_status: status,
            result: Some(text.to_owned()),
            ..CliResult::default()
        }
    }

    fn kind(v: Verdict) -> Option<TurnErrorKind> {
        match v {
            Verdict::Failed(e) => Some(e.kind),
            _ => None,
        }
    }

    type Case = (
        Option<CliResult>,
        Option<Stop>,
        Option<ExitStatus>,
        Option<TurnErrorKind>,
    );

    #[test]
    fn verdict_table() {
        let ok = Some(ExitStatus::from_raw(0));
        let one = Some(ExitStatus::from_raw(1 << 8));
        let sigkill = Some(ExitStatus::from_raw(9));
        let cases: Vec<Case> = vec![
            (Some(result(false, None, "hi")), None, ok, None),
            (
                Some(result(true, Some(529), "API Error: 529")),
                None,
                one,
                Some(TurnErrorKind::Overloaded),
            ),
            (
                Some(result(true, Some(429), "x")),
                None,
                one,
                Some(TurnErrorKind::RateLimited),
            ),
            (
                Some(result(true, Some(401), "x")),
                None,
                one,
                Some(TurnErrorKind::Auth),
            ),
            (
                Some(result(true, Some(400), "x")),
                None,
                one,
                Some(TurnErrorKind::BadRequest),
            ),
            (
                Some(result(true, Some(500), "x")),
                None,
                one,
                Some(TurnErrorKind::Api),
            ),
            (
                Some(result(true, None, "API Error: Failed to parse JSON")),
                None,
                one,
                Some(TurnErrorKind::Api),
            ),
            (
                Some(result(true, None, "Invalid API key · Please run /login")),
                None,
                one,
                Some(TurnErrorKind::Auth),
            ),
            // A clean result but a non-zero exit still fails.
            (
                Some(result(false, None, "hi")),
                None,
                one,
                Some(TurnErrorKind::Crashed),
            ),
            (None, None, sigkill, Some(TurnErrorKind::Crashed)),
            (None, None, ok, Some(TurnErrorKind::Crashed)),
            (
                None,
                Some(Stop::Cancelled),
                sigkill,
                Some(TurnErrorKind::Cancelled),
            ),
            (
                None,
                Some(Stop::IdleTimeout(Duration::from_secs(5))),
                sigkill,
                Some(TurnErrorKind::Timeout),
            ),
            (
                Some(result(false, None, "hi")),
                Some(Stop::TotalTimeout(Duration::from_secs(5))),
                ok,
                Some(TurnErrorKind::Timeout),
            ),
            (
                None,
                Some(Stop::Limit(TurnErrorKind::MemoryLimit, "over".to_owned())),
                sigkill,
                Some(TurnErrorKind::MemoryLimit),
            ),
        ];
        for (i, (result, stop, exit, expected)) in cases.into_iter().enumerate() {
            assert_eq!(
                kind(classify(result.as_ref(), stop, exit, "")),
                expected,
                "case {i}"
            );
        }
    }

    #[test]
    fn max_turns_and_unknown_sessions() {
        let mut max = result(true, None, "");
        max.subtype = "error_max_turns".to_owned();
        assert_eq!(
            kind(classify(Some(&max), None, None, "")),
            Some(TurnErrorKind::MaxTurns)
        );
        let mut unknown = result(true, None, "");
        unknown.errors = vec!["No conversation found with session ID: abc".to_owned()];
        assert_eq!(
            classify(Some(&unknown), None, None, ""),
            Verdict::SessionUnknown
        );
        assert_eq!(
            classify(
                None,
                None,
                None,
                "No conversation found with session ID: abc\n"
            ),
            Verdict::SessionUnknown
        );
    }

    #[test]
    fn usage_limits_are_told_apart_with_their_reset() {
        let now = valor_protocol::time::unix_ms(2026, 12, 8, 3, 0).unwrap();
        let limited = |detail: &str, rejected| {
            usage_limit(
                TurnError::new(TurnErrorKind::RateLimited, detail),
                rejected,
                now,
            )
        };
        // The usage window's own report wins.
        let e = limited(
            "You've hit your session limit · resets 5:10am (UTC)",
            Some(Some(now + 99)),
        );
        assert_eq!(
            (e.kind, e.retry_at_ms),
            (TurnErrorKind::UsageLimit, Some(now + 99))
        );
        // Else the CLI's line, the next such time.
        let e = limited("You've hit your session limit · resets 5:10am (UTC)", None);
        assert_eq!(
            e.retry_at_ms,
            valor_protocol::time::unix_ms(2026, 12, 8, 5, 10)
        );
        let e = limited("You've hit your weekly limit · resets 2am (UTC)", None);
        assert_eq!(
            e.retry_at_ms,
            valor_protocol::time::unix_ms(2026, 12, 9, 2, 0)
        );
        let e = limited("You've hit your limit · resets 12pm (UTC)", None);
        assert_eq!(
            e.retry_at_ms,
            valor_protocol::time::unix_ms(2026, 12, 8, 12, 0)
        );
        // The API's spend limit.
        let api = TurnError::new(
            TurnErrorKind::BadRequest,
            "API Error: 400 You have reached your specified API usage limits. You will regain access on 2027-01-01 at 00:00 UTC.",
        );
        let e = usage_limit(api, None, now);
        assert_eq!(
            (e.kind, e.retry_at_ms),
            (
                TurnErrorKind::UsageLimit,
                valor_protocol::time::unix_ms(2027, 1, 1, 0, 0)
            )
        );
        // Another zone is not guessed at: an hour.
        let e = limited("You've hit your limit · resets 5pm (Europe/Berlin)", None);
        assert_eq!(e.retry_at_ms, Some(now + 3_600_000));
        // A passing 429 and other failures stay what they are.
        let e = limited("API Error: 429 rate_limit_error", None);
        assert_eq!((e.kind, e.retry_at_ms), (TurnErrorKind::RateLimited, None));
        let crash = TurnError::new(TurnErrorKind::Crashed, "usage limit");
        assert_eq!(
            usage_limit(crash, Some(None), now).kind,
            TurnErrorKind::Crashed
        );
        for nonsense in ["resets 25:00 (UTC)", "resets 13pm (UTC)", "resets x (UTC)"] {
            let e = limited(&format!("hit your limit {nonsense}"), None);
            assert_eq!(e.retry_at_ms, Some(now + 3_600_000), "{nonsense}");
        }
    }

    #[test]
    fn crash_details_name_the_signal_and_stderr() {
        let Verdict::Failed(e) = classify(None, None, Some(ExitStatus::from_raw(11)), "boom\n")
        else {
            panic!()
        };
        assert_eq!(
            e.detail,
            "Claude Code ended without a result (killed by signal 11); stderr: \"boom\""
        );
    }
}
