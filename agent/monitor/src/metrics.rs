//! A small metrics registry rendered in the Prometheus text exposition format (version 0.0.4).
//!
//! Parts of Valor register counters (whole or in fractions, e.g. dollars), gauges and
//! histograms here once and update them with atomics; `/metrics` renders them all. Registering
//! the same name and labels twice returns the same series.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::MonitorError;

/// Content type of [`MetricsRegistry::render`].
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    /// A counter of fractions (dollars), stored as f64 bits.
    FloatCounter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter | Kind::FloatCounter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// What a series holds: one number, or a histogram's buckets.
#[derive(Debug, Clone)]
enum Cell {
    Value(Arc<AtomicU64>),
    Histogram(Arc<HistogramCells>),
}

/// A histogram's cumulative-by-render buckets (each counts observations in its own range),
/// its sum (f64 bits) and count.
#[derive(Debug)]
struct HistogramCells {
    bounds: Vec<f64>,
    /// One per bound, then one for above the last.
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

/// Adds to an f64 kept as bits.
fn add_float(cell: &AtomicU64, amount: f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + amount).to_bits())
    });
}

type Labels = Vec<(String, String)>;

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: Kind,
    series: Vec<(Labels, Cell)>,
}

/// Shared registry; clones point at the same metrics.
#[derive(Debug, Clone, Default)]
pub struct MetricsRegistry {
    families: Arc<RwLock<Vec<Family>>>,
}

/// A monotonically increasing count.
#[derive(Debug, Clone)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A count of fractions that only grows (dollars spent).
#[derive(Debug, Clone)]
pub struct FloatCounter(Arc<AtomicU64>);

impl FloatCounter {
    /// Adds `amount` (a negative or non-finite amount is ignored: a counter never goes down).
    pub fn add(&self, amount: f64) {
        if amount.is_finite() && amount > 0.0 {
            add_float(&self.0, amount);
        }
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Observations counted into buckets (durations), with their sum and count.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<HistogramCells>);

impl Histogram {
    pub fn observe(&self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let cells = &self.0;
        let slot = (cells.bounds.iter())
            .position(|bound| value <= *bound)
            .unwrap_or(cells.bounds.len());
        cells.counts[slot].fetch_add(1, Ordering::Relaxed);
        add_float(&cells.sum, value);
        cells.count.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (stored as f64 bits).
#[derive(Debug, Clone)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl MetricsRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter series `name{labels}`; created at 0 on first use.
    pub fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Counter, MonitorError> {
        self.value(name, help, Kind::Counter, labels).map(Counter)
    }

    /// A counter of fractions `name{labels}` (dollars); created at 0 on first use.
    pub fn float_counter(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<FloatCounter, MonitorError> {
        self.value(name, help, Kind::FloatCounter, labels)
            .map(FloatCounter)
    }

    /// A histogram `name{labels}` with these upper bounds (ascending; `+Inf` is added).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
    ) -> Result<Histogram, MonitorError> {
        let fresh = || {
            Cell::Histogram(Arc::new(HistogramCells {
                bounds: bounds.to_vec(),
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicU64::new(0f64.to_bits()),
                count: AtomicU64::new(0),
            }))
        };
        match self.series(name, help, Kind::Histogram, labels, fresh)? {
            Cell::Histogram(cells) => Ok(Histogram(cells)),
            Cell::Value(_) => Err(MonitorError::MetricName(name.to_owned())),
        }
    }

    /// A gauge series `name{labels}`; created at 0 on first use.
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Gauge, MonitorError> {
        self.value(name, help, Kind::Gauge, labels).map(Gauge)
    }

    /// A one-number series.
    fn value(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: &[(&str, &str)],
    ) -> Result<Arc<AtomicU64>, MonitorError> {
        let fresh = || Cell::Value(Arc::new(AtomicU64::new(0)));
        match self.series(name, help, kind, labels, fresh)? {
            Cell::Value(value) => Ok(value),
            Cell::Histogram(_) => Err(MonitorError::MetricName(name.to_owned())),
        }
    }

    fn series(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: &[(&str, &str)],
        fresh: impl FnOnce() -> Cell,
    ) -> Result<Cell, MonitorError> {
        if !valid_name(name)
            || labels
                .iter()
                .any(|(k, _)| !valid_name(k) || k.contains(':') || *k == "le")
        {
            return Err(MonitorError::MetricName(name.to_owned()));
        }
        let labels: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut families = self
            .families
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let family = match families.iter_mut().position(|f| f.name == name) {
            Some(i) => &mut families[i],
            None => {
                families.push(Family {
                    name: name.to_owned(),
                    help: help.to_owned(),
                    kind,
                    series: Vec::new(),
                });
                let last = families.len() - 1;
                &mut families[last]
            }
        };
        if family.kind != kind {
            return Err(MonitorError::MetricKind {
                name: name.to_owned(),
                registered: family.kind.as_str(),
            });
        }
        if let Some((_, cell)) = family.series.iter().find(|(l, _)| *l == labels) {
            return Ok(cell.clone());
        }
        // 0 as a whole number and as f64 bits is the same: every kind starts at zero.
        let cell = fresh();
        family.series.push((labels, cell.clone()));
        Ok(cell)
    }

    /// Every metric in the text exposition format.
    pub fn render(&self) -> String {
        let families = self.families.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(families.len() * 128);
        for family in families.iter() {
            let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
            for (labels, cell) in &family.series {
                match cell {
                    Cell::Value(value) => {
                        sample(&mut out, &family.name, labels, None);
                        let raw = value.load(Ordering::Relaxed);
                        let _ = match family.kind {
                            Kind::Counter => writeln!(out, " {raw}"),
                            _ => writeln!(out, " {}", format_float(f64::from_bits(raw))),
                        };
                    }
                    Cell::Histogram(cells) => {
                        render_histogram(&mut out, &family.name, labels, cells)
                    }
                }
            }
        }
        out
    }
}

/// `name{labels[,le="…"]}` (without the value).
fn sample(out: &mut String, name: &str, labels: &Labels, le: Option<&str>) {
    out.push_str(name);
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
    }
    if let Some(le) = le {
        if !labels.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "le=\"{le}\"");
    }
    out.push('}');
}

/// A histogram's `_bucket` lines (cumulative, `+Inf` last), `_sum` and `_count`.
fn render_histogram(out: &mut String, name: &str, labels: &Labels, cells: &HistogramCells) {
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (i, count) in cells.counts.iter().enumerate() {
        cumulative += count.load(Ordering::Relaxed);
        let le = cells
            .bounds
            .get(i)
            .map_or("+Inf".to_owned(), |b| format_float(*b));
        sample(out, &bucket, labels, Some(&le));
        let _ = writeln!(out, " {cumulative}");
    }
    sample(out, &format!("{name}_sum"), labels, None);
    let sum = f64::from_bits(cells.sum.load(Ordering::Relaxed));
    let _ = writeln!(out, " {}", format_float(sum));
    sample(out, &format!("{name}_count"), labels, None);
    let _ = writeln!(out, " {}", cells.count.load(Ordering::Relaxed));
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let registry = MetricsRegistry::new();
        let turns = registry
            .counter("valor_turns_total", "Turns run.", &[("outcome", "ok")])
            .unwrap();
        turns.inc_by(3);
        registry
            .counter(
                "valor_turns_total",
                "Turns run.",
                &[("outcome", "a\"b\\c\nd")],
            )
            .unwrap()
            .inc();
        registry
            .gauge("valor_score", "Health\nscore.", &[])
            .unwrap()
            .set(97.5);
        assert_eq!(
            registry.render(),
            "# HELP valor_turns_total Turns run.\n# TYPE valor_turns_total counter\n\
             valor_turns_total{outcome=\"ok\"} 3\n\
             valor_turns_total{outcome=\"a\\\"b\\\\c\\nd\"} 1\n\
             # HELP valor_score Health\\nscore.\n# TYPE valor_score gauge\nvalor_score 97.5\n"
        );
    }

    #[test]
    fn same_name_and_labels_share_a_series() {
        let registry = MetricsRegistry::new();
        let a = registry.counter("c", "h", &[("k", "v")]).unwrap();
        let b = registry.counter("c", "h", &[("k", "v")]).unwrap();
        a.inc();
        b.inc();
        assert_eq!(a.get(), 2);
    }

    #[test]
    fn bad_names_and_kind_clashes_are_errors() {
        let registry = MetricsRegistry::new();
        assert!(registry.counter("1bad", "h", &[]).is_err());
        assert!(registry.counter("ok", "h", &[("bad-label", "v")]).is_err());
        registry.counter("ok", "h", &[]).unwrap();
        let err = registry.gauge("ok", "h", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metric `ok` is already registered as a counter"
        );
    }

    #[test]
    fn histograms_render_cumulative_buckets_with_sum_and_count_and_dollars_add_up() {
        let registry = MetricsRegistry::new();
        let took = (registry.histogram(
            "valor_took_seconds",
            "Took.",
            &[("source", "chat")],
            &[1.0, 5.0],
        ))
        .unwrap();
        for secs in [0.5, 0.9, 3.0, 60.0, f64::NAN] {
            took.observe(secs);
        }
        let spent = registry
            .float_counter("valor_cost_usd_total", "Spent.", &[])
            .unwrap();
        spent.add(0.25);
        spent.add(0.125);
        spent.add(-3.0);
        assert_eq!(took.count(), 4);
        assert_eq!(
            registry.render(),
            "# HELP valor_took_seconds Took.\n# TYPE valor_took_seconds histogram\n\
             valor_took_seconds_bucket{source=\"chat\",le=\"1\"} 2\n\
             valor_took_seconds_bucket{source=\"chat\",le=\"5\"} 3\n\
             valor_took_seconds_bucket{source=\"chat\",le=\"+Inf\"} 4\n\
             valor_took_seconds_sum{source=\"chat\"} 64.4\n\
             valor_took_seconds_count{source=\"chat\"} 4\n\
             # HELP valor_cost_usd_total Spent.\n# TYPE valor_cost_usd_total counter\n\
             valor_cost_usd_total 0.375\n"
        );
        assert!(
            registry.counter("valor_took_seconds", "h", &[]).is_err(),
            "a kind clash"
        );
        assert!(
            registry
                .histogram("h", "h", &[("le", "1")], &[1.0])
                .is_err(),
            "le is the histogram's"
        );
    }

    #[test]
    fn special_floats_use_prometheus_spelling() {
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(2.0), "2");
    }
}
