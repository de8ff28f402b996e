//! `valor stats`: runs per day, model and routing class, from the store (the aggregation is
//! the store's [`RunAnalytics`]).

use std::path::PathBuf;
use std::process::ExitCode;

use valor_store::{RunAnalytics, RunRecord, RunTotals, Store};

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// How many days back, today included.
    #[arg(long, default_value_t = 7)]
    days: u32,
}

fn row(label: &str, totals: &RunTotals) -> String {
    format!(
        "{label:<24} {:>6} {:>7} {:>10.4} {:>10} {:>10} {:>7.1}",
        totals.turns,
        totals.failed,
        totals.cost_usd,
        totals.input_tokens,
        totals.output_tokens,
        totals.mean_duration_ms() / 1000.0
    )
}

const HEADER: &str = "turns  failed   cost_usd  tokens_in tokens_out   avg_s";

pub fn stats(config_path: Option<PathBuf>, args: StatsArgs) -> ExitCode {
    let loaded = match crate::config_cmd::load(config_path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let store = match Store::open(&loaded.config.memory.path) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let day_ms = 86_400_000;
    let since = (now_ms / day_ms).saturating_sub(u64::from(args.days.max(1)) - 1) * day_ms;
    let runs = match store.runs_since(since) {
        Ok(runs) => runs,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report(&runs, args.days));
    ExitCode::SUCCESS
}

fn report(runs: &[RunRecord], days: u32) -> String {
    let analytics = RunAnalytics::of(runs);
    let mut out = format!(
        "runs of the last {days} day(s), UTC\n\n{:<24} {HEADER}\n",
        "day"
    );
    for (day, totals) in &analytics.by_day {
        out.push_str(&row(day, totals));
        out.push('\n');
    }
    out.push_str(&row("total", &analytics.all));
    for (title, table) in [
        ("model", &analytics.by_model),
        ("class", &analytics.by_class),
    ] {
        out.push_str(&format!("\n\n{title:<24} {HEADER}\n"));
        for (label, totals) in table {
            out.push_str(&row(label, totals));
            out.push('\n');
        }
        out.pop();
    }
    out.push('\n');
    if !analytics.errors.is_empty() {
        let list: Vec<String> = (analytics.errors.iter())
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        out.push_str(&format!("\nerrors: {}\n", list.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use valor_core::{Severity, TurnErrorKind, Usage};
    use valor_store::RunError;

    fn run(ms: u64, model: &str, cost: f64, error: Option<TurnErrorKind>) -> RunRecord {
        RunRecord {
            chat_id: 1,
            session_id: "s".to_owned(),
            model: model.to_owned(),
            class: String::new(),
            started_at_ms: ms,
            duration_ms: 2000,
            api_duration_ms: 1000,
            cost_usd: cost,
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                ..Usage::default()
            },
            num_turns: 1,
            tool_calls: Vec::new(),
            warm: false,
            error: error.map(|kind| RunError {
                kind,
                severity: Severity::Low,
                detail: String::new(),
            }),
        }
    }

    #[test]
    fn totals_per_day_and_model() {
        let day = 86_400_000;
        let runs = [
            run(1_795_330_000_000, "opus", 0.5, None),
            run(
                1_795_330_000_000 + day,
                "opus",
                0.25,
                Some(TurnErrorKind::Overloaded),
            ),
            run(
                1_795_330_000_000 + day,
                "haiku",
                0.125,
                Some(TurnErrorKind::ToolDenied),
            ),
        ];
        let text = report(&runs, 2);
        assert!(
            text.contains(&format!(
                "{:<24} {:>6} {:>7} {:>10.4}",
                "2026-11-22", 1, 0, 0.5
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{:<24} {:>6} {:>7} {:>10.4}",
                "2026-11-23", 2, 1, 0.375
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{:<24} {:>6} {:>7} {:>10.4}",
                "total", 3, 1, 0.875
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("{:<24} {:>6} {:>7} {:>10.4}", "opus", 2, 1, 0.75)),
            "{text}"
        );
        assert!(
            text.contains("errors: overloaded 1, tool_denied 1"),
            "{text}"
        );
        assert!(
            text.contains(&format!("{:<24} {:>6} {:>7}", "(none)", 3, 1)),
            "the class table: {text}"
        );
    }
}
