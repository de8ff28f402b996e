//! `valor pair`: a one-time code that lets a Telegram user join the allow-list.

use std::path::PathBuf;
use std::process::ExitCode;

use valor_config::ConfigSource;
use valor_telegram::pairing::Pairing;

pub fn pair(config_path: Option<PathBuf>) -> ExitCode {
    let loaded = match ConfigSource::from_process(config_path).load() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match Pairing::for_store(&loaded.config.memory.path).issue() {
        Ok(code) => {
            println!("Pairing code: {code}");
            println!("Valid for 10 minutes, once. In Telegram, send the bot: /pair {code}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
