//! The insights report: written to `logs/daydream_insights.md`, a timestamped copy archived
//! beside it, the newest 10 copies kept.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

pub const REPORT_FILE: &str = "daydream_insights.md";
pub const ARCHIVE_DIR: &str = "daydream_archive";
/// The latest run's chart, beside the report.
pub const CHART_FILE: &str = "daydream_chart.png";

/// Where the report went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub report: PathBuf,
    pub archived: PathBuf,
    /// Archived copies removed to keep the newest `keep`.
    pub removed: usize,
}

/// Writes `markdown` as the current report and archives a copy named after `at` (and the
/// session), keeping the newest `keep` copies.
pub fn write_report(
    logs_dir: &Path,
    markdown: &str,
    at: DateTime<Utc>,
    session_id: &str,
    keep: usize,
) -> std::io::Result<Written> {
    let archive_dir = logs_dir.join(ARCHIVE_DIR);
    std::fs::create_dir_all(&archive_dir)?;
    let report = logs_dir.join(REPORT_FILE);
    // Written aside and renamed: a reader never sees half a report.
    let partial = logs_dir.join(format!(".{REPORT_FILE}.partial"));
    // A report is read, sent and shown: what a workspace held of a secret stays out.
    let markdown = valor_redact::redact(markdown);
    std::fs::write(&partial, markdown.as_bytes())?;
    std::fs::rename(&partial, &report)?;
    let archived = archive_dir.join(format!(
        "daydream_insights-{}-{session_id}.md",
        at.format("%Y%m%dT%H%M%SZ")
    ));
    std::fs::copy(&report, &archived)?;
    let removed = rotate(&archive_dir, keep)?;
    Ok(Written {
        report,
        archived,
        removed,
    })
}

/// Removes all but the newest `keep` archived reports (names sort by time).
fn rotate(archive_dir: &Path, keep: usize) -> std::io::Result<usize> {
    let mut archived: Vec<PathBuf> = std::fs::read_dir(archive_dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("daydream_insights-") && n.ends_with(".md"))
        })
        .collect();
    archived.sort();
    let excess = archived.len().saturating_sub(keep);
    for old in &archived[..excess] {
        std::fs::remove_file(old)?;
    }
    Ok(excess)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rotation_keeps_exactly_the_newest_ten() {
        let dir = tempfile::tempdir().unwrap();
        let start: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
        for i in 0..13 {
            let at = start + chrono::Duration::hours(6 * i);
            let written =
                write_report(dir.path(), &format!("report {i}"), at, &format!("s{i}"), 10).unwrap();
            assert_eq!(written.removed, usize::from(i >= 10));
        }
        let mut left: Vec<String> = std::fs::read_dir(dir.path().join(ARCHIVE_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 10);
        assert!(
            left[0].starts_with("daydream_insights-20261101T180000Z-s3"),
            "{left:?}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join(REPORT_FILE)).unwrap(),
            "report 12"
        );
    }
}
