//! Screenshots and bug reports in a chat's workspace.
//!
//! Screenshots live in `screenshots/`, named `<task id>-<unix ms>.png` (Claude Code's own test
//! runs may drop theirs there too, named after the task); bug reports in `bug-reports/` as
//! `<unix ms>-<task id>.md` beside the screenshot they cite.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use valor_chatfs::Kind;
use valor_tools::{Scope, ToolError};

use crate::Capture;

pub const SCREENSHOTS_DIR: &str = "screenshots";
pub const REPORTS_DIR: &str = "bug-reports";
/// Longest task id kept in a file name.
const MAX_TASK_ID: usize = 80;

/// A task id safe in a file name: letters, digits, `-` and `_` only.
pub fn task_file_id(task_id: &str) -> Result<String, ToolError> {
    let id = task_id.trim();
    if id.is_empty() {
        return Err(ToolError::Invalid("the task id is empty".to_owned()));
    }
    if id.len() > MAX_TASK_ID
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ToolError::Invalid(format!(
            "task ids are letters, digits, '-' and '_' (at most {MAX_TASK_ID}), not {id:?}"
        )));
    }
    Ok(id.to_owned())
}

/// A screenshot found in the workspace, read through the no-follow helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub age: Duration,
    pub image: Vec<u8>,
    /// Width and height, when it is a PNG.
    pub size: Option<(u32, u32)>,
}

/// The largest screenshot sent (Telegram's photo limit).
const MAX_SCREENSHOT_BYTES: u64 = 10 * 1024 * 1024;

/// The newest image of `task_id` under `screenshots/`, if one is younger than `max_age`.
/// Links are passed over (they could lead anywhere), and so are files that are not PNG or JPEG
/// by their bytes.
pub fn newest_screenshot(
    scope: &Scope,
    task_id: &str,
    max_age: Duration,
    now: SystemTime,
) -> Result<Option<Found>, ToolError> {
    let id = task_file_id(task_id)?;
    let mut best: Option<(SystemTime, String)> = None;
    for entry in scope.entries(SCREENSHOTS_DIR)? {
        let name = entry.name.to_string_lossy().into_owned();
        let lower = name.to_lowercase();
        let image_name = [".png", ".jpg", ".jpeg"].iter().any(|e| lower.ends_with(e));
        if entry.kind != Kind::File || !name.starts_with(&id) || !image_name {
            continue;
        }
        if now.duration_since(entry.modified).unwrap_or_default() > max_age {
            continue;
        }
        if best.as_ref().is_none_or(|(t, _)| entry.modified > *t) {
            best = Some((entry.modified, name));
        }
    }
    let Some((modified, name)) = best else {
        return Ok(None);
    };
    let (path, image) =
        scope.read_file(&format!("{SCREENSHOTS_DIR}/{name}"), MAX_SCREENSHOT_BYTES)?;
    if !is_image(&image) {
        return Err(ToolError::File(format!(
            "{} is not a PNG or JPEG image",
            path.display()
        )));
    }
    Ok(Some(Found {
        age: now.duration_since(modified).unwrap_or_default(),
        size: png_size(&image),
        path,
        image,
    }))
}

fn is_image(head: &[u8]) -> bool {
    head.starts_with(b"\x89PNG\r\n\x1a\n") || head.starts_with(&[0xff, 0xd8, 0xff])
}

/// A PNG's width and height, from its header.
pub fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || !bytes.starts_with(b"\x89PNG\r\n\x1a\n") || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    let height = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
    Some((width, height))
}

/// Where a bug report went.
#[derive(Debug, Clone)]
pub struct Written {
    pub report: PathBuf,
    pub screenshot: PathBuf,
    pub markdown: String,
}

/// Writes the screenshot and the markdown report into the workspace.
pub fn write_report(
    scope: &Scope,
    task_description: &str,
    task_id: Option<&str>,
    capture: &Capture,
    at: SystemTime,
) -> Result<Written, ToolError> {
    let millis = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let id = task_id.unwrap_or("bug");
    let screenshot_name = format!("{SCREENSHOTS_DIR}/{id}-{millis}.png");
    let report_name = format!("{REPORTS_DIR}/{millis}-{id}.md");
    let screenshot = scope.write_new(&screenshot_name, &capture.png)?;
    let markdown = markdown(task_description, task_id, capture, &screenshot);
    let report = scope.write_new(&report_name, markdown.as_bytes())?;
    Ok(Written {
        report,
        screenshot,
        markdown,
    })
}

fn markdown(
    task_description: &str,
    task_id: Option<&str>,
    capture: &Capture,
    screenshot: &Path,
) -> String {
    let mut out = format!("# Bug report: {}\n\n", headline(task_description));
    out.push_str(&format!("{}\n\n", task_description.trim()));
    if let Some(id) = task_id {
        out.push_str(&format!("- Notion task: {id}\n"));
    }
    out.push_str(&format!("- Page: {} ({})\n", capture.url, capture.title));
    let (w, h) = png_size(&capture.png).unwrap_or((0, 0));
    out.push_str(&format!(
        "- Captured in {} ms ({} browser), {w}x{h} pixels\n",
        capture.elapsed.as_millis(),
        if capture.cold { "cold" } else { "warm" }
    ));
    // The screenshot sits beside the report's folder: link it relatively.
    let relative = screenshot
        .file_name()
        .map(|name| format!("../{SCREENSHOTS_DIR}/{}", name.to_string_lossy()))
        .unwrap_or_else(|| screenshot.display().to_string());
    out.push_str(&format!("\n![screenshot]({relative})\n"));
    section(&mut out, "Console errors", &capture.console_errors);
    section(&mut out, "Failed requests", &capture.failed_requests);
    out
}

fn section(out: &mut String, title: &str, lines: &[String]) {
    out.push_str(&format!("\n## {title} ({})\n\n", lines.len()));
    if lines.is_empty() {
        out.push_str("None.\n");
    }
    for line in lines {
        out.push_str(&format!("- `{}`\n", line.replace('`', "'")));
    }
}

/// The first line of `text`, at most 80 characters.
pub fn headline(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or_default();
    if line.chars().count() <= 80 {
        return line.to_owned();
    }
    let cut: String = line.chars().take(79).collect();
    format!("{cut}…")
}
