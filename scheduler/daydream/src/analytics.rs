//! Usage trends from the recorded runs (one per turn): turns, success rate, cost, errors and
//! tools per day over the last week.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use valor_memory::RunRecord;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Day {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    pub turns: usize,
    pub failed: usize,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Trends {
    pub days: Vec<Day>,
    pub turns: usize,
    pub success_rate: f64,
    pub cost_usd: f64,
    /// Error kind -> count.
    pub errors: BTreeMap<String, usize>,
    /// Tool name -> calls.
    pub tools: BTreeMap<String, usize>,
    pub chats: usize,
}

impl Trends {
    /// The trends of `runs` over the 7 days up to `now` (every day listed, quiet ones too).
    pub fn of(runs: &[RunRecord], now: DateTime<Utc>) -> Trends {
        let mut days: BTreeMap<String, Day> = (0..7)
            .rev()
            .map(|back| {
                let date = (now - chrono::Duration::days(back))
                    .format("%Y-%m-%d")
                    .to_string();
                (
                    date.clone(),
                    Day {
                        date,
                        ..Day::default()
                    },
                )
            })
            .collect();
        let mut trends = Trends::default();
        let mut chats = std::collections::BTreeSet::new();
        // The daydream's own analyses are not usage.
        for run in runs.iter().filter(|r| r.chat_id != crate::DAYDREAM_CHAT_ID) {
            let Some(at) = DateTime::from_timestamp_millis(run.started_at_ms as i64) else {
                continue;
            };
            let Some(day) = days.get_mut(&at.format("%Y-%m-%d").to_string()) else {
                continue;
            };
            day.turns += 1;
            day.cost_usd += run.cost_usd;
            trends.turns += 1;
            trends.cost_usd += run.cost_usd;
            chats.insert(run.chat_id);
            if run.failed() {
                day.failed += 1;
            }
            if let Some(key) = run.error_key() {
                *trends.errors.entry(key.to_owned()).or_default() += 1;
            }
            for call in &run.tool_calls {
                *trends.tools.entry(call.name.clone()).or_default() += 1;
            }
        }
        let failed: usize = days.values().map(|d| d.failed).sum();
        trends.success_rate = if trends.turns == 0 {
            1.0
        } else {
            (trends.turns - failed) as f64 / trends.turns as f64
        };
        trends.chats = chats.len();
        trends.days = days.into_values().collect();
        trends
    }
}
