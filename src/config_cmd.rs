//! `valor config check`: validate and print the resolved config, secrets redacted.

use std::path::PathBuf;
use std::process::ExitCode;

use valor_config::{ConfigSource, Loaded, SourceKind};

/// A command's config, or exit code 2 with the problem on stderr (every command but `config
/// check` and `doctor`, which report a bad config their own way).
pub fn load(config_path: Option<PathBuf>) -> Result<Loaded, ExitCode> {
    let loaded = ConfigSource::from_process(config_path)
        .load()
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(2)
        })?;
    // Before logging starts (its filter is in the config), so straight to stderr.
    for warning in &loaded.warnings {
        eprintln!("warning: config: {warning}");
    }
    valor_redact::set_known_secrets(known_secrets(&loaded));
    Ok(loaded)
}

/// What the redactor replaces by value wherever it turns up: every secret of the environment,
/// and `[claude.env]` values whose names look secret.
pub fn known_secrets(loaded: &Loaded) -> Vec<String> {
    let mut values: Vec<String> = (loaded.secrets.values().into_iter())
        .map(str::to_owned)
        .collect();
    values.extend(
        (loaded.config.claude.env.iter())
            .filter(|(name, _)| looks_secret(name))
            .map(|(_, value)| value.clone()),
    );
    values
}

pub fn check(config_path: Option<PathBuf>) -> ExitCode {
    match ConfigSource::from_process(config_path).load() {
        Ok(loaded) => match report(&loaded) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot print the config: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The report printed on success. Secrets appear only as set / not set.
pub fn report(loaded: &Loaded) -> Result<String, toml::ser::Error> {
    let mut out = String::from("# config is valid\n");
    out.push_str(&match &loaded.source {
        SourceKind::Explicit(p) => format!("# source: {} (--config)\n", p.display()),
        SourceKind::WorkingDir(p) => format!("# source: {} (working directory)\n", p.display()),
        SourceKind::Xdg(p) => format!("# source: {} (XDG config home)\n", p.display()),
        SourceKind::Defaults => "# source: built-in defaults (no config file found)\n".to_owned(),
    });
    for warning in &loaded.warnings {
        out.push_str(&format!("# warning: {warning}\n"));
    }
    for (var, key) in &loaded.overrides {
        out.push_str(&format!("# override: {key} from {var}\n"));
    }
    for (var, set) in loaded.secrets.presence() {
        let state = if set { "set (redacted)" } else { "not set" };
        out.push_str(&format!("# secret: {var} {state}\n"));
    }
    out.push('\n');
    let mut shown = loaded.config.clone();
    for (name, value) in shown.claude.env.iter_mut() {
        if looks_secret(name) {
            *value = "(redacted)".to_owned();
        }
    }
    out.push_str(&toml::to_string_pretty(&shown)?);
    Ok(out)
}

/// A variable name that probably holds a secret (`ANTHROPIC_API_KEY`, `GH_TOKEN`, `DB_PASSWORD`).
fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "KEY",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "AUTH",
        "COOKIE",
        "SESSION",
    ]
    .iter()
    .any(|word| upper.contains(word))
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_looking_names_are_caught() {
        for name in [
            "ANTHROPIC_API_KEY",
            "gh_token",
            "DB_PASSWORD",
            "ANTHROPIC_AUTH_TOKEN",
            "X_SECRET",
        ] {
            assert!(super::looks_secret(name), "{name}");
        }
        for name in [
            "ANTHROPIC_BASE_URL",
            "CLAUDE_CODE_MAX_RETRIES",
            "API_TIMEOUT_MS",
        ] {
            assert!(!super::looks_secret(name), "{name}");
        }
    }
}
