//! Run analytics: the one aggregation of recorded runs (one per turn) that every report uses —
//! `valor stats`, Telegram's `/status`, the daydream's trends. What counts as failed and how an
//! error is named are [`RunRecord::failed`] and [`RunRecord::error_key`].

use std::collections::BTreeMap;

use crate::time::civil_date;
use serde::Serialize;

use crate::records::RunRecord;

/// Totals of a set of runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunTotals {
    pub turns: u64,
    pub failed: u64,
    pub cost_usd: f64,
    /// Input tokens, cache reads included.
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub duration_ms: u64,
}

impl RunTotals {
    pub fn add(&mut self, run: &RunRecord) {
        self.turns += 1;
        if run.failed() {
            self.failed += 1;
        }
        self.cost_usd += run.cost_usd;
        self.input_tokens += run.usage.input_tokens + run.usage.cache_read_input_tokens;
        self.output_tokens += run.usage.output_tokens;
        self.duration_ms += run.duration_ms;
    }

    /// Share of turns that did not fail (1 without turns).
    pub fn success_rate(&self) -> f64 {
        if self.turns == 0 {
            1.0
        } else {
            (self.turns - self.failed) as f64 / self.turns as f64
        }
    }

    /// These totals and `other`'s together.
    pub fn plus(&self, other: &RunTotals) -> RunTotals {
        RunTotals {
            turns: self.turns + other.turns,
            failed: self.failed + other.failed,
            cost_usd: self.cost_usd + other.cost_usd,
            input_tokens: self.input_tokens + other.input_tokens,
            output_tokens: self.output_tokens + other.output_tokens,
            duration_ms: self.duration_ms + other.duration_ms,
        }
    }

    pub fn mean_duration_ms(&self) -> f64 {
        self.duration_ms as f64 / self.turns.max(1) as f64
    }
}

/// Runs aggregated per day (UTC), model, routing class and chat, with errors and tool calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunAnalytics {
    pub all: RunTotals,
    /// `YYYY-MM-DD` -> totals.
    pub by_day: BTreeMap<String, RunTotals>,
    /// Model -> totals (`(none)` when no model answered).
    pub by_model: BTreeMap<String, RunTotals>,
    /// Routing class -> totals (`(none)` for unrouted turns).
    pub by_class: BTreeMap<String, RunTotals>,
    /// Reasoning effort -> totals (`(none)`: the backend's default).
    pub by_effort: BTreeMap<String, RunTotals>,
    /// Chat -> totals; Valor's own background runs (session summaries, the daydream) are in
    /// `background`, not here.
    pub by_chat: BTreeMap<i64, RunTotals>,
    pub background: RunTotals,
    /// Error key -> runs (denied tools included: they are recorded, not failed).
    pub errors: BTreeMap<String, u64>,
    /// Tool name -> calls.
    pub tools: BTreeMap<String, u64>,
}

fn or_none(text: &str) -> String {
    if text.is_empty() {
        "(none)".to_owned()
    } else {
        text.to_owned()
    }
}

impl RunAnalytics {
    pub fn of<'a>(runs: impl IntoIterator<Item = &'a RunRecord>) -> RunAnalytics {
        let mut out = RunAnalytics::default();
        for run in runs {
            out.all.add(run);
            (out.by_day.entry(civil_date(run.started_at_ms)))
                .or_default()
                .add(run);
            out.by_model
                .entry(or_none(&run.model))
                .or_default()
                .add(run);
            out.by_class
                .entry(or_none(&run.class))
                .or_default()
                .add(run);
            out.by_effort
                .entry(or_none(&run.effort))
                .or_default()
                .add(run);
            if crate::turn::is_background_chat(run.chat_id) {
                out.background.add(run);
            } else {
                out.by_chat.entry(run.chat_id).or_default().add(run);
            }
            if let Some(key) = run.error_key() {
                *out.errors.entry(key.to_owned()).or_default() += 1;
            }
            for call in &run.tool_calls {
                *out.tools.entry(call.name.clone()).or_default() += 1;
            }
        }
        out
    }

    /// The chats' runs together (every run but Valor's own background ones): what a chat's
    /// figures add up to, on every page.
    pub fn chats(&self) -> RunTotals {
        self.by_chat
            .values()
            .fold(RunTotals::default(), |sum, t| sum.plus(t))
    }

    /// What the runs would have cost on one model at `price` (dollars per million tokens,
    /// `[input, output]`, priced as [`crate::pricing`] prices), from their recorded tokens.
    pub fn cost_at(runs: &[RunRecord], price: [f64; 2]) -> f64 {
        runs.iter()
            .map(|run| crate::pricing::cost_at(price, &run.usage))
            .sum()
    }

    /// A day's totals (empty for a quiet day).
    pub fn day(&self, date: &str) -> RunTotals {
        self.by_day.get(date).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::RunError;
    use crate::{Severity, ToolCallRecord, TurnErrorKind, Usage};

    fn run(chat_id: i64, ms: u64, model: &str, error: Option<TurnErrorKind>) -> RunRecord {
        RunRecord {
            chat_id,
            user_id: None,
            session_id: "s".to_owned(),
            model: model.to_owned(),
            class: "development".to_owned(),
            effort: String::new(),
            started_at_ms: ms,
            duration_ms: 2000,
            api_duration_ms: 1000,
            cost_usd: 0.25,
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                cache_read_input_tokens: 100,
                ..Usage::default()
            },
            num_turns: 1,
            tool_calls: vec![ToolCallRecord {
                id: "1".to_owned(),
                name: "Read".to_owned(),
                ok: true,
                input: String::new(),
            }],
            warm: false,
            error: error.map(|kind| RunError {
                kind,
                severity: Severity::Low,
                detail: String::new(),
            }),
        }
    }

    #[test]
    fn a_denied_tool_is_counted_as_an_error_but_not_as_a_failure() {
        let day = 86_400_000;
        let runs = [
            run(1, 1_795_330_000_000, "opus", None),
            run(
                1,
                1_795_330_000_000 + day,
                "",
                Some(TurnErrorKind::Overloaded),
            ),
            run(
                2,
                1_795_330_000_000 + day,
                "haiku",
                Some(TurnErrorKind::ToolDenied),
            ),
        ];
        let a = RunAnalytics::of(&runs);
        assert_eq!((a.all.turns, a.all.failed), (3, 1));
        assert!((a.all.success_rate() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(a.all.input_tokens, 330);
        assert_eq!(a.day("2026-11-23").failed, 1);
        assert_eq!(a.day("2026-11-23").turns, 2);
        assert_eq!(a.day("2026-11-30"), RunTotals::default());
        assert_eq!(a.by_model["(none)"].failed, 1);
        assert_eq!(a.by_class["development"].turns, 3);
        assert_eq!(a.by_chat[&2].failed, 0);
        let errors: Vec<(&str, u64)> = a.errors.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        assert_eq!(errors, [("overloaded", 1), ("tool_denied", 1)]);
        assert_eq!(a.tools["Read"], 3);
    }

    #[test]
    fn summaries_and_the_daydream_are_no_chats_usage_but_still_cost() {
        let runs = [
            run(1, 1_795_330_000_000, "opus", None),
            run(
                crate::turn::SUMMARY_CHAT_ID,
                1_795_330_000_000,
                "haiku",
                None,
            ),
            run(
                crate::turn::DAYDREAM_CHAT_ID,
                1_795_330_000_000,
                "opus",
                None,
            ),
        ];
        let a = RunAnalytics::of(&runs);
        assert_eq!(a.by_chat.keys().copied().collect::<Vec<_>>(), [1]);
        assert_eq!(a.background.turns, 2);
        assert_eq!(a.all.turns, 3);
        assert_eq!(a.by_model["haiku"].turns, 1);
    }

    #[test]
    fn cost_at_prices_recorded_tokens_with_cache_reads_at_a_tenth() {
        let mut one = run(1, 0, "haiku", None);
        one.usage = crate::Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cache_read_input_tokens: 1_000_000,
            cache_creation_input_tokens: 0,
        };
        // $5 input + $0.5 cache reads + $2.5 output on opus's price.
        let cost = RunAnalytics::cost_at(&[one], [5.0, 25.0]);
        assert!((cost - 8.0).abs() < 1e-9, "{cost}");
    }
}
