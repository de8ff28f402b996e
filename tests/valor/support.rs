//! Helpers for tests that run the real `valor` binary.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SECRET_VALUES: [(&str, &str); 5] = [
    ("TELEGRAM_BOT_TOKEN", "123456:tg-secret-value-abc"),
    ("ANTHROPIC_API_KEY", "sk-ant-secret-value-def"),
    ("PERPLEXITY_API_KEY", "pplx-secret-value-ghi"),
    ("OPENAI_API_KEY", "sk-openai-secret-value-jkl"),
    ("NOTION_API_KEY", "ntn-secret-value-mno"),
];

/// A `valor` command isolated from this machine: its own HOME and working directory, no
/// VALOR__ variables or secrets inherited from the caller.
pub fn valor(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_valor"));
    cmd.current_dir(dir)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("VALOR__") {
            cmd.env_remove(key);
        }
    }
    for (var, _) in SECRET_VALUES {
        cmd.env_remove(var);
    }
    // The model scripts/setup installs; tests that want none point elsewhere.
    cmd.env(
        "VALOR__MEMORY__MODEL_DIR",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2"),
    );
    cmd
}

pub fn with_secrets(cmd: &mut Command) -> &mut Command {
    for (var, value) in SECRET_VALUES {
        cmd.env(var, value);
    }
    cmd
}

pub fn assert_no_secret(text: &str) {
    for (var, value) in SECRET_VALUES {
        assert!(!text.contains(value), "{var}'s value leaked into:\n{text}");
    }
}

pub fn output(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// A running `valor run`, with its stderr collected.
pub struct Service {
    pub child: Child,
    pub addr: String,
    pub stderr: Arc<Mutex<String>>,
    pub spawned_at: Instant,
    pub listening_after: Duration,
}

impl Service {
    /// Starts `cmd` (a `valor run`) and waits for its "listening" log line.
    pub fn start(cmd: &mut Command) -> Service {
        let spawned_at = Instant::now();
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let reader = BufReader::new(child.stderr.take().unwrap());
        let collected = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                if line.contains("health server listening") {
                    let addr = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .map(str::to_owned);
                    let _ = tx.send(addr);
                }
                let mut all = collected.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("valor run did not start:\n{}", stderr.lock().unwrap()))
            .expect("listening line has an addr field");
        Service {
            child,
            addr,
            stderr,
            listening_after: spawned_at.elapsed(),
            spawned_at,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit; panics after `limit`.
    pub fn wait_for_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "valor run still running {limit:?} after the signal:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP GET over plain TCP: (status code, content type, body).
pub fn http_get(url: &str) -> (u16, String, String) {
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let response = client.get(url).send().unwrap();
    let code = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (code, content_type, response.text().unwrap())
}
