//! Charts drawn on the server as SVG: axes with units and times, a value on hover for every
//! bucket (an SVG `<title>`, no script), a threshold line and alert markers. The stylesheet
//! colours them, so they follow dark mode.

use maud::{Markup, html};

/// One chart: a series over time.
#[derive(Debug, Clone, Default)]
pub struct Chart<'a> {
    pub title: &'a str,
    /// The unit of the values ("turns", "$", "s", "MiB").
    pub unit: &'a str,
    /// (bucket start, Unix ms; value), oldest first, evenly spaced.
    pub points: Vec<(u64, f64)>,
    /// How wide a bucket is, in milliseconds (for the hover text).
    pub bucket_ms: u64,
    /// Bars (counts, sums) or a line (levels).
    pub bars: bool,
    /// A level worth seeing (an alert threshold), drawn dashed.
    pub threshold: Option<f64>,
    /// Times something happened (alerts raised), marked under the axis.
    pub marks: Vec<(u64, String)>,
    /// Bars drawn as failures (red).
    pub bad: bool,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 8.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 34.0;

/// A value as an axis or hover shows it.
pub fn figure(value: f64, unit: &str) -> String {
    let number = if unit == "$" {
        if value.abs() >= 1.0 || value == 0.0 {
            format!("{value:.2}")
        } else {
            format!("{value:.4}")
        }
    } else if value.fract() == 0.0 || value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    };
    match unit {
        "$" => format!("${number}"),
        "" => number,
        unit => format!("{number} {unit}"),
    }
}

/// A round top for the axis at or above `max`.
fn nice_top(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * magnitude >= max {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// An axis time: the hour and minute, with the date when the span is longer than a day.
fn tick(ms: u64, span_ms: u64) -> String {
    let secs = ms / 1000;
    let clock = format!("{:02}:{:02}", secs / 3600 % 24, secs / 60 % 60);
    if span_ms > 86_400_000 {
        let date = valor_protocol::time::civil_date(ms);
        format!("{} {clock}", date.get(5..).unwrap_or(&date))
    } else {
        clock
    }
}

pub fn render(chart: &Chart<'_>) -> Markup {
    let n = chart.points.len().max(1);
    let max = (chart.points.iter().map(|p| p.1))
        .chain(chart.threshold)
        .fold(0.0_f64, f64::max);
    let top = nice_top(max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / n as f64;
    let y = |v: f64| TOP + plot_h - (v / top).clamp(0.0, 1.0) * plot_h;
    let first = chart.points.first().map_or(0, |p| p.0);
    let last_end = chart.points.last().map_or(0, |p| p.0 + chart.bucket_ms);
    let span = last_end.saturating_sub(first).max(1);
    let x_of = |ms: u64| LEFT + (ms.saturating_sub(first) as f64 / span as f64) * plot_w;
    let line: Vec<String> = (chart.points.iter().enumerate())
        .map(|(i, (_, v))| format!("{:.1},{:.1}", LEFT + (i as f64 + 0.5) * slot, y(*v)))
        .collect();
    let latest = chart.points.last().map_or(0.0, |p| p.1);
    let ticks = [0, n / 2, n.saturating_sub(1)];
    html! {
        figure.chart {
            figcaption { strong { (chart.title) } " · now " (figure(latest, chart.unit)) }
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(chart.title) {
                // Values inside the plot at their lines (above the zero line, under the
                // others), times anchored inward at the ends: nothing is cut at any size.
                @for frac in [0.0, 0.5, 1.0] {
                    line.axis x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(top * frac)) y2=(y(top * frac)) {}
                    @if frac == 0.0 {
                        text x=(LEFT + 2.0) y=(y(0.0) - 3.0) text-anchor="start" { (figure(0.0, chart.unit)) }
                    } @else {
                        text x=(LEFT + 2.0) y=(y(top * frac) + 2.0) text-anchor="start" dominant-baseline="hanging" { (figure(top * frac, chart.unit)) }
                    }
                }
                @for (k, i) in ticks.into_iter().enumerate() {
                    @if let Some((at, _)) = chart.points.get(i) {
                        text x=(LEFT + (i as f64 + 0.5) * slot) y=(HEIGHT - BOTTOM + 4.0) dominant-baseline="hanging"
                            text-anchor=(match k { 0 => "start", 1 => "middle", _ => "end" }) { (tick(*at, span)) }
                    }
                }
                @if chart.bars {
                    @for (i, (at, v)) in chart.points.iter().enumerate() {
                        rect class=(if chart.bad { "bar bad" } else { "bar" }) x=(LEFT + i as f64 * slot + slot * 0.12) y=(y(*v)) width=(slot * 0.76) height=(TOP + plot_h - y(*v)) {
                            title { (crate::pages::when(*at)) ": " (figure(*v, chart.unit)) }
                        }
                    }
                } @else if !line.is_empty() {
                    polyline.line points=(line.join(" ")) {}
                }
                // Hover targets: the whole height of each bucket.
                @for (i, (at, v)) in chart.points.iter().enumerate() {
                    rect x=(LEFT + i as f64 * slot) y=(TOP) width=(slot) height=(plot_h) fill="transparent" {
                        title { (crate::pages::when(*at)) ": " (figure(*v, chart.unit)) }
                    }
                }
                @if let Some(limit) = chart.threshold {
                    line.limit x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(limit)) y2=(y(limit)) {
                        title { "threshold " (figure(limit, chart.unit)) }
                    }
                }
                @for (at, what) in &chart.marks {
                    @if *at >= first && *at <= last_end {
                        circle.mark cx=(x_of(*at)) cy=(HEIGHT - BOTTOM + 28.0) r="4" {
                            title { (crate::pages::when(*at)) ": " (what) }
                        }
                    }
                }
            }
        }
    }
}

/// `values` summed into `buckets` of `bucket_ms` ending at `end_ms` (the last one holds
/// `end_ms`): (bucket start, sum), oldest first, empty buckets as zero.
pub fn bucket(
    values: impl IntoIterator<Item = (u64, f64)>,
    end_ms: u64,
    bucket_ms: u64,
    buckets: usize,
) -> Vec<(u64, f64)> {
    let bucket_ms = bucket_ms.max(1);
    let last_start = end_ms / bucket_ms * bucket_ms;
    let first_start = last_start.saturating_sub(bucket_ms * (buckets as u64).saturating_sub(1));
    let mut out: Vec<(u64, f64)> = (0..buckets as u64)
        .map(|i| (first_start + i * bucket_ms, 0.0))
        .collect();
    for (at, value) in values {
        if at < first_start {
            continue;
        }
        let i = ((at - first_start) / bucket_ms) as usize;
        if let Some(slot) = out.get_mut(i) {
            slot.1 += value;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_empty_hours_as_zero_and_drop_what_is_older() {
        let hour = 3_600_000;
        let end = 10 * hour + 5;
        let b = bucket(
            [(9 * hour + 1, 2.0), (10 * hour, 1.0), (3 * hour, 9.0)],
            end,
            hour,
            3,
        );
        assert_eq!(b, vec![(8 * hour, 0.0), (9 * hour, 2.0), (10 * hour, 1.0)]);
    }

    #[test]
    fn a_chart_has_axes_units_hover_values_a_threshold_and_marks() {
        let hour = 3_600_000;
        let chart = Chart {
            title: "Cost",
            unit: "$",
            points: vec![(0, 0.5), (hour, 1.25)],
            bucket_ms: hour,
            bars: true,
            threshold: Some(2.0),
            marks: vec![(hour + 60_000, "<b>alert</b>".into())],
            bad: false,
        };
        let svg = render(&chart).into_string();
        assert!(
            svg.contains(">$2.00<") || svg.contains(">$2.50<"),
            "a round top: {svg}"
        );
        assert!(svg.contains(">$0.00<"), "{svg}");
        assert!(
            svg.contains("1970-01-01 01:00:00 UTC: $1.25"),
            "hover: {svg}"
        );
        assert!(svg.contains("class=\"limit\""), "{svg}");
        assert!(
            svg.contains("&lt;b&gt;alert&lt;/b&gt;"),
            "escaped mark: {svg}"
        );
        assert!(!svg.contains("style="), "no inline style (CSP)");
        assert_eq!(nice_top(0.0), 1.0);
        assert_eq!(nice_top(7.0), 10.0);
        assert_eq!(nice_top(0.3), 0.5);
        assert_eq!(figure(3.0, "turns"), "3 turns");
    }
}
