//! Where the `claude` program is.

use std::path::{Path, PathBuf};

/// Where `scripts/setup` installs the pinned CLI, relative to the repository.
pub const LOCAL_INSTALL: &str = "tools/claude-code/node_modules/.bin/claude";

/// The binary to run: `[claude] binary` when set; else the pinned local install found next to
/// the running `valor` (target/{debug,release}/valor in the repository) or below the working
/// directory; else `claude` from PATH.
pub fn locate(configured: &str) -> PathBuf {
    if !configured.is_empty() {
        return PathBuf::from(configured);
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/valor or target/<profile>/deps/<test> -> repository root
        for up in exe.ancestors().skip(1).take(4) {
            candidates.push(up.join(LOCAL_INSTALL));
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        candidates.push(cwd.join(LOCAL_INSTALL));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("claude"))
}

/// `claude --version`, to check that the binary runs.
pub async fn version(binary: &Path) -> Result<String, String> {
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tokio::process::Command::new(binary)
            .arg("--version")
            .env("DISABLE_AUTOUPDATER", "1")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("{} --version did not answer within 20 s", binary.display()))?
    .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} --version failed ({}): {}",
            binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
