//! `valor config check`: validate and print the resolved config, secrets redacted.

use std::path::PathBuf;
use std::process::ExitCode;

use valor_config::{ConfigSource, Loaded, SourceKind};

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
    for (var, key) in &loaded.overrides {
        out.push_str(&format!("# override: {key} from {var}\n"));
    }
    for (var, set) in loaded.secrets.presence() {
        let state = if set { "set (redacted)" } else { "not set" };
        out.push_str(&format!("# secret: {var} {state}\n"));
    }
    out.push('\n');
    out.push_str(&toml::to_string_pretty(&loaded.config)?);
    Ok(out)
}
