//! `valor stats`: runs per day and per model, from the store.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use valor_core::time::civil_date;
use valor_memory::{RunRecord, Store};

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// How many days back, today included.
    #[arg(long, default_value_t = 7)]
    days: u32,
}

#[derive(Default)]
struct Totals {
    turns: u64,
    failed: u64,
    cost_usd: f64,
    input_tokens: u64,
    output_tokens: u64,
    duration_ms: u64,
}

impl Totals {
    fn add(&mut self, run: &RunRecord) {
        self.turns += 1;
        if run.failed() {
            self.failed += 1;
        }
        self.cost_usd += run.cost_usd;
        self.input_tokens += run.usage.input_tokens + run.usage.cache_read_input_tokens;
        self.output_tokens += run.usage.output_tokens;
        self.duration_ms += run.duration_ms;
    }

    fn row(&self, label: &str) -> String {
        format!(
            "{label:<24} {:>6} {:>7} {:>10.4} {:>10} {:>10} {:>7.1}",
            self.turns,
            self.failed,
            self.cost_usd,
            self.input_tokens,
            self.output_tokens,
            self.duration_ms as f64 / 1000.0 / self.turns.max(1) as f64
        )
    }
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
    let mut by_day: BTreeMap<String, Totals> = BTreeMap::new();
    let mut by_model: BTreeMap<String, Totals> = BTreeMap::new();
    let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
    let mut all = Totals::default();
    for run in runs {
        by_day
            .entry(civil_date(run.started_at_ms))
            .or_default()
            .add(run);
        let model = if run.model.is_empty() {
            "(none)"
        } else {
            &run.model
        };
        by_model.entry(model.to_owned()).or_default().add(run);
        all.add(run);
        if let Some(key) = run.error_key() {
            *errors.entry(key).or_default() += 1;
        }
    }
    let mut out = format!(
        "runs of the last {days} day(s), UTC\n\n{:<24} {HEADER}\n",
        "day"
    );
    for (day, totals) in &by_day {
        out.push_str(&totals.row(day));
        out.push('\n');
    }
    out.push_str(&all.row("total"));
    out.push_str(&format!("\n\n{:<24} {HEADER}\n", "model"));
    for (model, totals) in &by_model {
        out.push_str(&totals.row(model));
        out.push('\n');
    }
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
        out.push_str(&format!("\nerrors: {}\n", list.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use valor_core::{Severity, TurnErrorKind, Usage};
    use valor_memory::RunError;

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
    }
}
