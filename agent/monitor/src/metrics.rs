//! A small metrics registry rendered in the Prometheus text exposition format (version 0.0.4).
//!
//! Parts of Valor register counters and gauges here once and update them with atomics; `/metrics`
//! renders them all. Registering the same name and labels twice returns the same series.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::MonitorError;

/// Content type of [`MetricsRegistry::render`].
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

type Labels = Vec<(String, String)>;

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: Kind,
    series: Vec<(Labels, Arc<AtomicU64>)>,
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
        self.series(name, help, Kind::Counter, labels).map(Counter)
    }

    /// A gauge series `name{labels}`; created at 0 on first use.
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Gauge, MonitorError> {
        self.series(name, help, Kind::Gauge, labels).map(Gauge)
    }

    fn series(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: &[(&str, &str)],
    ) -> Result<Arc<AtomicU64>, MonitorError> {
        if !valid_name(name)
            || labels
                .iter()
                .any(|(k, _)| !valid_name(k) || k.contains(':'))
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
        if let Some((_, value)) = family.series.iter().find(|(l, _)| *l == labels) {
            return Ok(Arc::clone(value));
        }
        let value = Arc::new(AtomicU64::new(match kind {
            Kind::Counter => 0,
            Kind::Gauge => 0f64.to_bits(),
        }));
        family.series.push((labels, Arc::clone(&value)));
        Ok(value)
    }

    /// Every metric in the text exposition format.
    pub fn render(&self) -> String {
        let families = self.families.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(families.len() * 128);
        for family in families.iter() {
            let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
            for (labels, value) in &family.series {
                out.push_str(&family.name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                    }
                    out.push('}');
                }
                let raw = value.load(Ordering::Relaxed);
                let _ = match family.kind {
                    Kind::Counter => writeln!(out, " {raw}"),
                    Kind::Gauge => writeln!(out, " {}", format_float(f64::from_bits(raw))),
                };
            }
        }
        out
    }
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
    fn special_floats_use_prometheus_spelling() {
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(2.0), "2");
    }
}
