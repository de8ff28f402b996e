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

/// A new database in the PostgreSQL scripts/test started; its URL.
pub fn fresh_database() -> String {
    let url = std::env::var("VALOR_TEST_DATABASE_URL")
        .expect("VALOR_TEST_DATABASE_URL: run scripts/test (it starts a PostgreSQL)");
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    sql_strings(&url, &format!("CREATE DATABASE {name}"), None);
    format!("{}/{name}", url.rsplit_once('/').unwrap().0)
}

/// The first column of `sql`'s rows, as text (`param`: its one parameter, `$1`).
pub fn sql_strings(database: &str, sql: &str, param: Option<&str>) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(database, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let selects = sql.trim_start().to_ascii_uppercase().starts_with("SELECT");
        let rows = match param {
            Some(param) => client.query(sql, &[&param]).await.unwrap(),
            None if selects => client.query(sql, &[]).await.unwrap(),
            None => {
                client.batch_execute(sql).await.unwrap();
                Vec::new()
            }
        };
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    })
}
