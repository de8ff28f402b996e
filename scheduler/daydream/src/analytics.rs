//! Usage trends from the recorded runs (one per turn): turns, success rate, cost, errors and
//! tools per day over the last week (aggregated by the store's [`RunAnalytics`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use valor_protocol::analytics::RunAnalytics;
use valor_protocol::records::RunRecord;

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
        // The daydream's own analyses and session summaries are not usage.
        let usage: Vec<&RunRecord> = (runs.iter())
            .filter(|r| !valor_protocol::turn::is_background_chat(r.chat_id))
            .collect();
        let dates: Vec<String> = (0..7)
            .rev()
            .map(|back| {
                (now - chrono::Duration::days(back))
                    .format("%Y-%m-%d")
                    .to_string()
            })
            .collect();
        let week: Vec<&RunRecord> = (usage.into_iter())
            .filter(|r| {
                DateTime::from_timestamp_millis(r.started_at_ms as i64)
                    .is_some_and(|at| dates.contains(&at.format("%Y-%m-%d").to_string()))
            })
            .collect();
        let analytics = RunAnalytics::of(week);
        let days = (dates.into_iter())
            .map(|date| {
                let totals = analytics.day(&date);
                Day {
                    date,
                    turns: totals.turns as usize,
                    failed: totals.failed as usize,
                    cost_usd: totals.cost_usd,
                }
            })
            .collect();
        let count = |map: &BTreeMap<String, u64>| -> BTreeMap<String, usize> {
            map.iter().map(|(k, n)| (k.clone(), *n as usize)).collect()
        };
        Trends {
            days,
            turns: analytics.all.turns as usize,
            success_rate: analytics.all.success_rate(),
            cost_usd: analytics.all.cost_usd,
            errors: count(&analytics.errors),
            tools: count(&analytics.tools),
            chats: analytics.by_chat.len(),
        }
    }
}
