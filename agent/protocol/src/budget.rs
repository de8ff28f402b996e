//! Spend caps (`[budget]`): who a run's spend counts against, over which period, and what a
//! chat is told when a cap comes near or is spent. Spend is kept per key (period, its start,
//! scope), so a check is a handful of point reads and every node adds to the same counters.

use serde::{Deserialize, Serialize};

use crate::time::civil_date;

/// Whose spend a cap limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Scope {
    Chat(i64),
    User(i64),
    /// Everything: every chat, every user, Valor's own background work.
    Global,
    /// One kind of background work (the daydream, session summaries): counted, not capped.
    Job(i64),
}

impl Scope {
    /// The scope a counter's key names (`chat:42`, `global`, `job:-9…`): [`Scope::key`]'s
    /// inverse.
    pub fn from_key(text: &str) -> Option<Scope> {
        Some(match text.split_once(':') {
            None if text == "global" => Scope::Global,
            Some(("chat", id)) => Scope::Chat(id.parse().ok()?),
            Some(("user", id)) => Scope::User(id.parse().ok()?),
            Some(("job", id)) => Scope::Job(id.parse().ok()?),
            _ => return None,
        })
    }

    fn key(self) -> String {
        match self {
            Scope::Chat(id) => format!("chat:{id}"),
            Scope::User(id) => format!("user:{id}"),
            Scope::Global => "global".to_owned(),
            Scope::Job(chat) => format!("job:{chat}"),
        }
    }

    /// How a person reads it.
    pub fn describe(self) -> String {
        match self {
            Scope::Chat(_) => "this chat's".to_owned(),
            Scope::User(_) => "your".to_owned(),
            Scope::Global => "Valor's overall".to_owned(),
            Scope::Job(chat) => format!(
                "{}'s",
                crate::turn::background_name(chat).unwrap_or("background work")
            ),
        }
    }
}

/// The period a cap covers, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Month,
    /// The subscription's usage window (`[budget] window_hours`, counted from midnight UTC).
    Window,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
            Period::Window => "window",
        }
    }

    /// The current period as a person says it.
    pub fn current(self) -> &'static str {
        match self {
            Period::Day => "today",
            Period::Month => "this month",
            Period::Window => "this usage window",
        }
    }

    /// How a person reads it in "the daily cap".
    pub fn describe(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
            Period::Window => "usage-window",
        }
    }

    /// The label of the period `now_ms` falls in (`2026-12-08`, `2026-12`, the window's start
    /// in ms), which keys its counters.
    pub fn label(self, now_ms: u64, window_ms: u64) -> String {
        match self {
            Period::Day => civil_date(now_ms),
            Period::Month => civil_date(now_ms)[..7].to_owned(),
            Period::Window => (now_ms - now_ms % window_ms.max(60_000)).to_string(),
        }
    }

    /// When the period `now_ms` falls in ends (Unix ms).
    pub fn ends_at(self, now_ms: u64, window_ms: u64) -> u64 {
        match self {
            Period::Day => now_ms - now_ms % 86_400_000 + 86_400_000,
            Period::Month => {
                let date = civil_date(now_ms);
                let (year, month) = (
                    date[..4].parse().unwrap_or(1970),
                    date[5..7].parse().unwrap_or(1),
                );
                let (year, month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                crate::time::unix_ms(year, month, 1, 0, 0).unwrap_or(now_ms + 86_400_000)
            }
            Period::Window => {
                let window = window_ms.max(60_000);
                now_ms - now_ms % window + window
            }
        }
    }
}

/// What caps count: dollars (an API key) or tokens (a subscription login).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Usd,
    Tokens,
}

impl Unit {
    /// An amount as a person reads it: `$1.25`, `120k tokens`.
    pub fn show(self, amount: f64) -> String {
        match self {
            Unit::Usd if amount < 0.1 && amount > 0.0 => format!("${amount:.3}"),
            Unit::Usd => format!("${amount:.2}"),
            Unit::Tokens if amount >= 1e6 => format!("{:.1}M tokens", amount / 1e6),
            Unit::Tokens if amount >= 1e3 => format!("{:.0}k tokens", amount / 1e3),
            Unit::Tokens => format!("{amount:.0} tokens"),
        }
    }
}

/// The counter of one scope over one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CapKey {
    pub scope: Scope,
    pub period: Period,
}

impl CapKey {
    pub fn new(scope: Scope, period: Period) -> CapKey {
        CapKey { scope, period }
    }

    /// The counter's key for the period `now_ms` falls in: `day:2026-12-08:chat:42`.
    pub fn counter(self, now_ms: u64, window_ms: u64) -> String {
        format!(
            "{}:{}:{}",
            self.period.as_str(),
            self.period.label(now_ms, window_ms),
            self.scope.key()
        )
    }

    /// Short and stable, for a button's data (`chat:42:day`).
    pub fn code(self) -> String {
        format!("{}:{}", self.scope.key(), self.period.as_str())
    }

    /// The key a [`CapKey::code`] was made from.
    pub fn parse_code(code: &str) -> Option<CapKey> {
        let (scope, period) = code.rsplit_once(':')?;
        let period = match period {
            "day" => Period::Day,
            "month" => Period::Month,
            "window" => Period::Window,
            _ => return None,
        };
        // A job's counter is counted, never raised: no button names it.
        let scope = Scope::from_key(scope).filter(|s| !matches!(s, Scope::Job(_)))?;
        Some(CapKey { scope, period })
    }
}

/// One counter: what was spent and what was allowed on top of the cap, in both units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spent {
    pub usd: f64,
    pub tokens: u64,
    /// Raised by [Allow +$X today] for this period.
    #[serde(default)]
    pub allowed_usd: f64,
    #[serde(default)]
    pub allowed_tokens: u64,
    /// The 80% notice went out for this period.
    #[serde(default)]
    pub warned: bool,
    /// The spent notice went out for this period.
    #[serde(default)]
    pub stopped: bool,
}

impl Spent {
    pub fn amount(&self, unit: Unit) -> f64 {
        match unit {
            Unit::Usd => self.usd,
            Unit::Tokens => self.tokens as f64,
        }
    }

    pub fn allowed(&self, unit: Unit) -> f64 {
        match unit {
            Unit::Usd => self.allowed_usd,
            Unit::Tokens => self.allowed_tokens as f64,
        }
    }
}

/// A cap came near or is spent: said in the chat (and to the admins), with [Allow more] and
/// [Stop].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetNotice {
    pub key: CapKey,
    pub unit: Unit,
    pub spent: f64,
    /// The cap, with what was allowed on top.
    pub cap: f64,
    /// True: spent (the run was refused or stopped); false: past the warning share.
    pub reached: bool,
    /// What one press of [Allow more] adds.
    pub step: f64,
    /// When the period ends (Unix ms).
    pub resets_at_ms: u64,
    /// The chat of the run it is about (a background job's for Valor's own work).
    pub chat_id: i64,
}

impl BudgetNotice {
    /// The message: what is spent, of what, and what happens now.
    pub fn text(&self, now_ms: u64) -> String {
        let (spent, cap) = (self.unit.show(self.spent), self.unit.show(self.cap));
        let what = format!(
            "{} {} cap",
            self.key.scope.describe(),
            self.key.period.describe()
        );
        let resets = crate::time::clock_time(self.resets_at_ms, now_ms);
        if self.reached {
            format!(
                "💸 {what} is spent: {spent} of {cap}. I stopped; it resets at {resets}. An \
                 approver can allow {} more.",
                self.unit.show(self.step)
            )
        } else {
            let share = if self.cap > 0.0 {
                self.spent / self.cap * 100.0
            } else {
                100.0
            };
            format!("💸 {share:.0}% of {what} is spent: {spent} of {cap} (resets at {resets}).")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_keyed_by_period_and_scope() {
        let now = crate::time::unix_ms(2026, 12, 8, 15, 30).unwrap();
        let hours5 = 5 * 3_600_000;
        let day = CapKey::new(Scope::Chat(-42), Period::Day);
        assert_eq!(day.counter(now, hours5), "day:2026-12-08:chat:-42");
        let month = CapKey::new(Scope::User(7), Period::Month);
        assert_eq!(month.counter(now, hours5), "month:2026-12:user:7");
        let window = CapKey::new(Scope::Global, Period::Window);
        let start = crate::time::unix_ms(2026, 12, 8, 15, 0).unwrap();
        assert_eq!(
            window.counter(now, hours5),
            format!("window:{start}:global")
        );
        assert_eq!(Period::Window.ends_at(now, hours5), start + hours5);
        assert_eq!(
            Period::Day.ends_at(now, hours5),
            crate::time::unix_ms(2026, 12, 9, 0, 0).unwrap()
        );
        assert_eq!(
            Period::Month.ends_at(now, hours5),
            crate::time::unix_ms(2027, 1, 1, 0, 0).unwrap()
        );
        for key in [day, month, window] {
            assert_eq!(CapKey::parse_code(&key.code()), Some(key));
        }
        for forged in ["", "chat:x:day", "job:1:day", "global:year", "chat:1"] {
            assert_eq!(CapKey::parse_code(forged), None, "{forged}");
        }
    }

    #[test]
    fn notices_say_what_is_spent_of_what_and_when_it_resets() {
        let now = crate::time::unix_ms(2026, 12, 8, 15, 30).unwrap();
        let mut notice = BudgetNotice {
            key: CapKey::new(Scope::Chat(1), Period::Day),
            unit: Unit::Usd,
            spent: 4.1,
            cap: 5.0,
            reached: false,
            step: 1.0,
            resets_at_ms: Period::Day.ends_at(now, 0),
            chat_id: 1,
        };
        let warning = notice.text(now);
        assert!(
            warning.contains("82% of this chat's daily cap"),
            "{warning}"
        );
        assert!(warning.contains("$4.10 of $5.00"), "{warning}");
        notice.reached = true;
        let spent = notice.text(now);
        assert!(
            spent.contains("is spent") && spent.contains("allow $1.00 more"),
            "{spent}"
        );
        assert!(spent.contains("2026-12-09 00:00 UTC"), "{spent}");
        assert_eq!(Unit::Tokens.show(120_000.0), "120k tokens");
    }
}
