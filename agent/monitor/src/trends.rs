//! What is unusual for this instance and what runs out, from its own history (seed 000's
//! anomaly detector and predictive analytics). Pure functions of the recorded runs and health
//! points; `assess` in the monitor turns their findings into alerts.
//!
//! - Anomalies: the last complete hour's cost, failure rate, median turn duration, peak
//!   memory and longest queue against the same hour of the previous days, by median and MAD
//!   (a robust z-score: one bad day in the history does not hide the next). Only a rise is
//!   flagged, only with a week of that hour behind it, and only past a floor per metric (a
//!   quiet instance's "3x" of a cent is not news).
//! - Forecasts: free disk and memory toward their limits by a least-squares line through
//!   the recent points, and the month's spend by its pace over the last seven days.

use valor_protocol::health::HealthPoint;
use valor_protocol::records::RunRecord;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;
/// Days of the same hour an anomaly is judged against (at most), and the fewest it needs.
pub const HISTORY_DAYS: u64 = 28;
const MIN_HISTORY: usize = 7;
/// A robust z-score above this is unusual (Iglewicz and Hoaglin's 3.5).
const Z_LIMIT: f64 = 3.5;
/// Turns an hour needs before its failure rate means anything, and failed turns before a
/// rate is news (one or two failures in a quiet hour are a third of it, and nothing unusual).
const MIN_TURNS_FOR_RATE: u64 = 3;
const MIN_FAILED_FOR_NEWS: u64 = 4;

/// What an anomaly is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Cost,
    FailureRate,
    Duration,
    Memory,
    Queue,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::Cost,
        Metric::FailureRate,
        Metric::Duration,
        Metric::Memory,
        Metric::Queue,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Metric::Cost => "cost",
            Metric::FailureRate => "failure rate",
            Metric::Duration => "median turn duration",
            Metric::Memory => "Valor's peak memory",
            Metric::Queue => "longest queue of turns",
        }
    }

    /// The smallest spread taken as the history's (a flat history makes any change look
    /// infinitely unusual): in the metric's unit.
    fn min_spread(self) -> f64 {
        match self {
            Metric::Cost => 0.05,
            Metric::FailureRate => 0.05,
            Metric::Duration => 2.0,
            Metric::Memory => 20.0,
            Metric::Queue => 1.0,
        }
    }

    /// The value as people read it.
    pub fn show(self, value: f64) -> String {
        match self {
            Metric::Cost => format!("${value:.2}"),
            Metric::FailureRate => format!("{:.0}%", value * 100.0),
            Metric::Duration => format!("{value:.1} s"),
            Metric::Memory => format!("{value:.0} MiB"),
            Metric::Queue => format!("{value:.0} turns"),
        }
    }
}

/// One hour's figures; `None` where the hour says nothing (no turns, no samples).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hour {
    pub at_ms: u64,
    pub values: [Option<f64>; 5],
    /// Its failed turns (a failure rate is flagged only past a few).
    pub failed: u64,
}

impl Hour {
    pub fn get(&self, metric: Metric) -> Option<f64> {
        self.values[metric as usize]
    }
}

/// The hours ending at the last complete one before `now_ms`, oldest first, `count` of them.
pub fn hours(runs: &[RunRecord], points: &[HealthPoint], now_ms: u64, count: usize) -> Vec<Hour> {
    let end = now_ms / HOUR_MS * HOUR_MS;
    let start = end.saturating_sub(count as u64 * HOUR_MS);
    let slot = |at: u64| (at >= start && at < end).then(|| ((at - start) / HOUR_MS) as usize);
    let mut cost = vec![0.0; count];
    let mut turns = vec![0u64; count];
    let mut failed = vec![0u64; count];
    let mut durations: Vec<Vec<u64>> = vec![Vec::new(); count];
    for run in runs {
        if let Some(i) = slot(run.started_at_ms) {
            cost[i] += run.cost_usd;
            turns[i] += 1;
            failed[i] += u64::from(run.failed());
            durations[i].push(run.duration_ms);
        }
    }
    let mut rss: Vec<Option<f64>> = vec![None; count];
    let mut queued: Vec<Option<f64>> = vec![None; count];
    for point in points {
        if let Some(i) = slot(point.at_ms) {
            let peak = |old: Option<f64>, new: f64| Some(old.map_or(new, |o| o.max(new)));
            rss[i] = peak(rss[i], f64::from(point.rss_mb));
            queued[i] = peak(queued[i], f64::from(point.queued));
        }
    }
    (0..count)
        .map(|i| {
            let median = median_of(&mut durations[i]).map(|ms| ms / 1000.0);
            let rate = (turns[i] >= MIN_TURNS_FOR_RATE).then(|| failed[i] as f64 / turns[i] as f64);
            Hour {
                at_ms: start + i as u64 * HOUR_MS,
                // An hour with samples and no turns cost nothing; one with neither is unknown.
                values: [
                    (turns[i] > 0 || rss[i].is_some()).then_some(cost[i]),
                    rate,
                    median,
                    rss[i],
                    queued[i],
                ],
                failed: failed[i],
            }
        })
        .collect()
}

fn median_of(values: &mut [u64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) as f64 / 2.0
    } else {
        values[mid] as f64
    })
}

/// Median and median absolute deviation.
pub fn robust(values: &[f64]) -> Option<(f64, f64)> {
    let median = |v: &mut Vec<f64>| -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        Some(if v.len().is_multiple_of(2) {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        })
    };
    let mut sorted = values.to_vec();
    let m = median(&mut sorted)?;
    let mut deviations: Vec<f64> = values.iter().map(|v| (v - m).abs()).collect();
    Some((m, median(&mut deviations)?))
}

/// A figure unusual for its hour.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Anomaly {
    pub metric: Metric,
    /// The hour it is about (its start, Unix ms).
    pub hour_ms: u64,
    pub value: f64,
    /// The same hour on earlier days: median, MAD, how many days.
    pub median: f64,
    pub mad: f64,
    pub days: usize,
    /// The robust z-score.
    pub z: f64,
}

impl Anomaly {
    /// The numbers behind it, in a line.
    pub fn describe(&self) -> String {
        let m = self.metric;
        format!(
            "{} in the hour from {:02}:00 UTC was {}, unusual for that hour: the median over {} days is {} (MAD {}), z = {:.1}",
            capitalised(m.describe()),
            self.hour_ms / HOUR_MS % 24,
            m.show(self.value),
            self.days,
            m.show(self.median),
            m.show(self.mad),
            self.z
        )
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

/// The last hour of `hours` judged against the same hour of the days before it.
pub fn anomalies(hours: &[Hour]) -> Vec<Anomaly> {
    let Some(last) = hours.last() else {
        return Vec::new();
    };
    let same_hour: Vec<&Hour> = (hours.iter().rev().skip(24).step_by(24))
        .take(HISTORY_DAYS as usize)
        .collect();
    let mut found = Vec::new();
    for metric in Metric::ALL {
        let Some(value) = last.get(metric) else {
            continue;
        };
        if metric == Metric::FailureRate && last.failed < MIN_FAILED_FOR_NEWS {
            continue;
        }
        let history: Vec<f64> = same_hour.iter().filter_map(|h| h.get(metric)).collect();
        if history.len() < MIN_HISTORY {
            continue;
        }
        let Some((median, mad)) = robust(&history) else {
            continue;
        };
        let spread = mad.max(0.05 * median.abs()).max(metric.min_spread());
        let z = 0.6745 * (value - median) / spread;
        if z > Z_LIMIT {
            found.push(Anomaly {
                metric,
                hour_ms: last.at_ms,
                value,
                median,
                mad,
                days: history.len(),
                z,
            });
        }
    }
    found
}

/// What runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Disk,
    Memory,
    Spend,
}

/// A forecast: where a figure is, where it is going, and when it reaches its limit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Forecast {
    pub resource: Resource,
    pub now: f64,
    /// Free disk (MiB) reaches 0; memory (MiB) reaches the critical level; the month's
    /// projected spend (dollars) against the warning level (0: none set).
    pub limit: f64,
    /// Change per day (disk, memory) or the projected month's total (spend).
    pub trend: f64,
    /// When the limit is reached at this pace (Unix ms); `None`: not while the trend holds.
    pub eta_ms: Option<u64>,
}

impl Forecast {
    pub fn describe(&self, now_ms: u64) -> String {
        let when = |eta: Option<u64>| match eta {
            Some(at) => format!("in {}", span(at.saturating_sub(now_ms))),
            None => "not at this pace".to_owned(),
        };
        match self.resource {
            Resource::Disk => format!(
                "Free disk is {:.0} MiB, {} {:.0} MiB a day: full {}",
                self.now,
                if self.trend < 0.0 {
                    "losing"
                } else {
                    "gaining"
                },
                self.trend.abs(),
                when(self.eta_ms)
            ),
            Resource::Memory => format!(
                "Valor's memory is {:.0} MiB, {} {:.0} MiB a day: at the critical {:.0} MiB {}",
                self.now,
                if self.trend > 0.0 {
                    "growing"
                } else {
                    "shrinking"
                },
                self.trend.abs(),
                self.limit,
                when(self.eta_ms)
            ),
            Resource::Spend => {
                let limit = if self.limit > 0.0 {
                    format!(
                        " (warning level ${:.2}: reached {})",
                        self.limit,
                        when(self.eta_ms)
                    )
                } else {
                    String::new()
                };
                format!(
                    "Spent ${:.2} this month; at the last 7 days' pace the month ends at ${:.2}{limit}",
                    self.now, self.trend
                )
            }
        }
    }
}

fn span(ms: u64) -> String {
    match ms / 1000 {
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// Slope (per ms) and the value at `at` of the least-squares line through `points`.
fn line(points: &[(u64, f64)], at: u64) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let x0 = points.first()?.0;
    let xs = points.iter().map(|(x, _)| (x - x0) as f64);
    let (mean_x, mean_y) = (
        xs.clone().sum::<f64>() / n,
        points.iter().map(|(_, y)| y).sum::<f64>() / n,
    );
    let (mut cov, mut var) = (0.0, 0.0);
    for ((_, y), x) in points.iter().zip(xs) {
        cov += (x - mean_x) * (y - mean_y);
        var += (x - mean_x) * (x - mean_x);
    }
    if var == 0.0 {
        return None;
    }
    let slope = cov / var;
    Some((slope, mean_y + slope * ((at - x0) as f64 - mean_x)))
}

/// Points spanning at least this long make a trend.
const TREND_SPAN_MS: u64 = 6 * HOUR_MS;

/// Where a series is going: (value now, change per day, when it crosses `limit` going the
/// way it goes). `rising`: the limit is above (memory) or below (disk, toward 0).
fn trend(
    points: &[(u64, f64)],
    now_ms: u64,
    limit: f64,
    rising: bool,
) -> Option<(f64, f64, Option<u64>)> {
    let (first, last) = (points.first()?.0, points.last()?.0);
    if points.len() < 12 || last - first < TREND_SPAN_MS {
        return None;
    }
    let (slope, now) = line(points, now_ms)?;
    let per_day = slope * DAY_MS as f64;
    let heading = if rising { slope > 0.0 } else { slope < 0.0 };
    let eta =
        (heading && (limit - now) * slope > 0.0).then(|| now_ms + ((limit - now) / slope) as u64);
    let eta = if (rising && now >= limit) || (!rising && now <= limit) {
        Some(now_ms)
    } else {
        eta
    };
    Some((now, per_day, eta))
}

/// Free disk over the last week toward 0.
pub fn disk(points: &[HealthPoint], now_ms: u64) -> Option<Forecast> {
    let recent: Vec<(u64, f64)> = (points.iter())
        .filter(|p| p.at_ms + 7 * DAY_MS >= now_ms && p.disk_free_mb > 0.0)
        .map(|p| (p.at_ms, f64::from(p.disk_free_mb)))
        .collect();
    let (now, per_day, eta) = trend(&recent, now_ms, 0.0, false)?;
    Some(Forecast {
        resource: Resource::Disk,
        now,
        limit: 0.0,
        trend: per_day,
        eta_ms: eta,
    })
}

/// Valor's memory over the last day toward its critical level.
pub fn memory(points: &[HealthPoint], now_ms: u64, critical_mb: f64) -> Option<Forecast> {
    let recent: Vec<(u64, f64)> = (points.iter())
        .filter(|p| p.at_ms + DAY_MS >= now_ms && p.rss_mb > 0.0)
        .map(|p| (p.at_ms, f64::from(p.rss_mb)))
        .collect();
    let (now, per_day, eta) = trend(&recent, now_ms, critical_mb, true)?;
    Some(Forecast {
        resource: Resource::Memory,
        now,
        limit: critical_mb,
        trend: per_day,
        eta_ms: eta,
    })
}

/// The month's spend (UTC) so far and where the last seven days' pace takes it; with a
/// warning level, when the pace reaches it.
pub fn spend(runs: &[RunRecord], now_ms: u64, warn_usd: f64) -> Forecast {
    let (month_start, month_end) = month_bounds(now_ms);
    let so_far: f64 = (runs.iter())
        .filter(|r| r.started_at_ms >= month_start && r.started_at_ms < now_ms)
        .map(|r| r.cost_usd)
        .sum();
    let week_start = now_ms.saturating_sub(7 * DAY_MS);
    let week: f64 = (runs.iter())
        .filter(|r| r.started_at_ms >= week_start && r.started_at_ms < now_ms)
        .map(|r| r.cost_usd)
        .sum();
    let per_ms = week / (now_ms - week_start).max(1) as f64;
    let projected = so_far + per_ms * month_end.saturating_sub(now_ms) as f64;
    let eta = (warn_usd > 0.0).then(|| {
        if so_far >= warn_usd {
            Some(now_ms)
        } else if per_ms > 0.0 {
            Some(now_ms + ((warn_usd - so_far) / per_ms) as u64).filter(|at| *at < month_end)
        } else {
            None
        }
    });
    Forecast {
        resource: Resource::Spend,
        now: so_far,
        limit: warn_usd,
        trend: projected,
        eta_ms: eta.flatten(),
    }
}

/// The UTC month around `ms`: its first and the next month's first millisecond.
fn month_bounds(ms: u64) -> (u64, u64) {
    let date = valor_protocol::time::civil_date(ms);
    let (year, month) = (
        date.get(..4)
            .and_then(|y| y.parse::<i64>().ok())
            .unwrap_or(1970),
        date.get(5..7)
            .and_then(|m| m.parse::<u32>().ok())
            .unwrap_or(1),
    );
    let first = |y: i64, m: u32| days_from_civil(y, m, 1).max(0) as u64 * DAY_MS;
    let next = if month == 12 {
        first(year + 1, 1)
    } else {
        first(year, month + 1)
    };
    (first(year, month), next)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Everything found at one look.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Findings {
    pub at_ms: u64,
    pub anomalies: Vec<Anomaly>,
    pub forecasts: Vec<Forecast>,
}

/// One look at the history: anomalies of the last complete hour and the forecasts.
pub fn assess(
    runs: &[RunRecord],
    points: &[HealthPoint],
    now_ms: u64,
    rss_critical_mb: f64,
    spend_warn_usd: f64,
) -> Findings {
    let count = (HISTORY_DAYS as usize + 1) * 24;
    let hours = hours(runs, points, now_ms, count);
    let mut forecasts = Vec::new();
    forecasts.extend(disk(points, now_ms));
    forecasts.extend(memory(points, now_ms, rss_critical_mb));
    forecasts.push(spend(runs, now_ms, spend_warn_usd));
    Findings {
        at_ms: now_ms,
        anomalies: anomalies(&hours),
        forecasts,
    }
}

#[cfg(test)]
#[path = "trends_tests.rs"]
mod tests;
