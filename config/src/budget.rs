//! `[budget]`: spend caps that stop runs (each Claude run, background work included, counts
//! against its chat's, its user's and the global caps for the day and the month).

use serde::{Deserialize, Serialize};

/// `[budget]`. A cap of 0 is no cap; with no cap set nothing is refused, but spend is still
/// counted (`/cost`, the dashboard's Usage page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// What the caps count: `usd` (an API key), `tokens` (a subscription login, which has no
    /// dollar price), or `auto`: tokens when Claude Code logs in with a subscription token
    /// (`CLAUDE_CODE_OAUTH_TOKEN` and no `ANTHROPIC_API_KEY`), else dollars.
    pub unit: String,
    /// Caps in dollars (`unit` usd).
    pub usd: CapsConfig,
    /// Caps in tokens (`unit` tokens; input, output and cache tokens alike).
    pub tokens: CapsConfig,
    /// The share of a cap at which the chat (and the admins) are told, once per period.
    pub warn_at_percent: u32,
    /// What one press of [Allow more] adds to a cap for the rest of its period.
    pub allow_step_usd: f64,
    pub allow_step_tokens: u64,
    /// The subscription's usage window in hours (counted from midnight UTC), for
    /// `tokens.global_window`.
    pub window_hours: u32,
}

/// One set of caps (0: none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapsConfig {
    pub chat_daily: f64,
    pub chat_monthly: f64,
    pub user_daily: f64,
    pub user_monthly: f64,
    pub global_daily: f64,
    pub global_monthly: f64,
    /// Over one usage window (`window_hours`).
    pub global_window: f64,
}

impl CapsConfig {
    fn values(&self) -> [(&'static str, f64); 7] {
        [
            ("chat_daily", self.chat_daily),
            ("chat_monthly", self.chat_monthly),
            ("user_daily", self.user_daily),
            ("user_monthly", self.user_monthly),
            ("global_daily", self.global_daily),
            ("global_monthly", self.global_monthly),
            ("global_window", self.global_window),
        ]
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            unit: "auto".to_owned(),
            usd: CapsConfig::default(),
            tokens: CapsConfig::default(),
            warn_at_percent: 80,
            allow_step_usd: 1.0,
            allow_step_tokens: 200_000,
            window_hours: 5,
        }
    }
}

/// The `[budget]` values types cannot check.
pub(crate) fn validate(c: &BudgetConfig, problems: &mut Vec<(String, String)>) {
    if !["auto", "usd", "tokens"].contains(&c.unit.as_str()) {
        problems.push((
            "budget.unit".to_owned(),
            format!("must be \"auto\", \"usd\" or \"tokens\", not {:?}", c.unit),
        ));
    }
    for (table, caps) in [("usd", &c.usd), ("tokens", &c.tokens)] {
        for (name, value) in caps.values() {
            if !value.is_finite() || value < 0.0 {
                problems.push((
                    format!("budget.{table}.{name}"),
                    format!("must be 0 (no cap) or more, not {value}"),
                ));
            }
        }
    }
    if !(1..=100).contains(&c.warn_at_percent) {
        problems.push((
            "budget.warn_at_percent".to_owned(),
            format!("must be 1-100, not {}", c.warn_at_percent),
        ));
    }
    if !c.allow_step_usd.is_finite() || c.allow_step_usd <= 0.0 {
        problems.push((
            "budget.allow_step_usd".to_owned(),
            format!("must be more than 0, not {}", c.allow_step_usd),
        ));
    }
    if c.allow_step_tokens == 0 {
        problems.push((
            "budget.allow_step_tokens".to_owned(),
            "must be more than 0".to_owned(),
        ));
    }
    if !(1..=24 * 7).contains(&c.window_hours) {
        problems.push((
            "budget.window_hours".to_owned(),
            format!("must be 1-168 hours, not {}", c.window_hours),
        ));
    }
}
