//! The report's chart (PNG): turns per day over the week, failed ones apart, and Valor's health
//! score over time from the resource monitor's samples.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use plotters::prelude::*;

use crate::analytics::Trends;

/// Where Debian (`fonts-dejavu-core`) and others keep a sans-serif TTF.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];
const SIZE: (u32, u32) = (900, 520);

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("no font for the chart's text: install fonts-dejavu-core (scripts/setup does)")]
    NoFont,
    #[error("cannot draw the chart: {0}")]
    Draw(String),
}

static FONT: OnceLock<bool> = OnceLock::new();

/// Registers the first font found as "sans-serif", once per process.
fn font_ready() -> bool {
    *FONT.get_or_init(|| {
        FONT_PATHS.iter().any(|path| {
            let Ok(bytes) = std::fs::read(path) else {
                return false;
            };
            // plotters keeps fonts for the process's life: the bytes are leaked once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        })
    })
}

fn draw_error(e: impl std::fmt::Display) -> ChartError {
    ChartError::Draw(e.to_string())
}

/// Draws the chart into `path` (PNG).
pub fn render(
    path: &Path,
    trends: &Trends,
    health: &[(DateTime<Utc>, u8)],
) -> Result<PathBuf, ChartError> {
    if !font_ready() {
        return Err(ChartError::NoFont);
    }
    {
        let root = BitMapBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let (top, bottom) = root.split_vertically(SIZE.1 / 2);

        let max_turns = trends
            .days
            .iter()
            .map(|d| d.turns)
            .max()
            .unwrap_or(0)
            .max(1);
        let days = trends.days.len().max(1);
        let mut usage = ChartBuilder::on(&top)
            .caption("Turns per day (failed in red)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(24)
            .y_label_area_size(36)
            .build_cartesian_2d(0..days, 0..max_turns + max_turns / 5 + 1)
            .map_err(draw_error)?;
        let labels: Vec<String> = trends.days.iter().map(|d| d.date[5..].to_owned()).collect();
        usage
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(days)
            .x_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
            .draw()
            .map_err(draw_error)?;
        usage
            .draw_series(trends.days.iter().enumerate().map(|(i, day)| {
                Rectangle::new(
                    [(i, 0), (i + 1, day.turns)],
                    RGBColor(70, 120, 200).filled(),
                )
            }))
            .map_err(draw_error)?;
        usage
            .draw_series(trends.days.iter().enumerate().map(|(i, day)| {
                Rectangle::new(
                    [(i, 0), (i + 1, day.failed)],
                    RGBColor(210, 60, 60).filled(),
                )
            }))
            .map_err(draw_error)?;

        let mut score = ChartBuilder::on(&bottom)
            .caption("Health score", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(24)
            .y_label_area_size(36)
            .build_cartesian_2d(0..health.len().max(2), 0u32..100u32)
            .map_err(draw_error)?;
        let times: Vec<String> = health
            .iter()
            .map(|(at, _)| at.format("%d %H:%M").to_string())
            .collect();
        score
            .configure_mesh()
            .x_labels(6)
            .x_label_formatter(&|i| times.get(*i).cloned().unwrap_or_default())
            .draw()
            .map_err(draw_error)?;
        score
            .draw_series(LineSeries::new(
                health
                    .iter()
                    .enumerate()
                    .map(|(i, (_, s))| (i, u32::from(*s))),
                RGBColor(40, 150, 90).stroke_width(2),
            ))
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::analytics::Day;

    #[test]
    fn the_chart_is_a_png_with_bars_and_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let trends = Trends {
            days: (1..=7)
                .map(|d| Day {
                    date: format!("2026-11-{:02}", 24 + d),
                    turns: d * 3,
                    failed: d % 3,
                    cost_usd: 0.1,
                })
                .collect(),
            ..Trends::default()
        };
        let start: DateTime<Utc> = "2026-11-30T00:00:00Z".parse().unwrap();
        let health: Vec<(DateTime<Utc>, u8)> = (0..48)
            .map(|i| {
                (
                    start + chrono::Duration::minutes(30 * i),
                    60 + (i % 40) as u8,
                )
            })
            .collect();
        let path = render(&dir.path().join("chart.png"), &trends, &health).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buffer).unwrap();
        assert_eq!((info.width, info.height), SIZE);
        let pixels: Vec<&[u8]> = buffer.chunks(info.color_type.samples()).collect();
        let blue = pixels
            .iter()
            .filter(|p| p[0] == 70 && p[1] == 120 && p[2] == 200)
            .count();
        let red = pixels
            .iter()
            .filter(|p| p[0] == 210 && p[1] == 60 && p[2] == 60)
            .count();
        let green = pixels
            .iter()
            .filter(|p| p[0] == 40 && p[1] == 150 && p[2] == 90)
            .count();
        let white = pixels.iter().filter(|p| p[..3] == [255, 255, 255]).count();
        assert!(
            blue > 5_000 && red > 500 && green > 300,
            "blue {blue} red {red} green {green}"
        );
        assert!(white < pixels.len(), "not blank");
    }
}
