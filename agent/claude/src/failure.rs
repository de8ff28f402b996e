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
