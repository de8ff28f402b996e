//! The real `valor run` binary: serves /health and /metrics over TCP and stops cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::support::{Service, assert_no_secret, http_get, output, valor, with_secrets};

#[test]
fn run_serves_health_and_metrics_and_stops_on_sigterm_within_5s() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = Service::start(
        with_secrets(&mut valor(dir.path()))
            .arg("run")
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
            // Never the public Bot API from a test: a closed local port.
            .env("VALOR__TELEGRAM__API_URL", "http://127.0.0.1:9/")
            .env("RUST_LOG", "trace"),
    );

    let (code, content_type, body) = http_get(&service.url("/health"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(content_type, "application/json");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["components"]["ram"]["rss_bytes"].as_u64().unwrap() > 0);

    // Long-term memory is up with the model scripts/setup installed (or still starting).
    let recall = &health["components"]["memory_index"];
    assert_eq!(recall["status"], "ok", "{health}");
    assert_eq!(recall["documents"], 0);

    let (code, content_type, metrics) = http_get(&service.url("/metrics"));
    assert_eq!(code, 200);
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    assert!(metrics.contains("\nvalor_health_score 100\n"), "{metrics}");
    assert!(
        metrics.contains("\nvalor_monitor_samples_total 1\n"),
        "{metrics}"
    );

    assert_eq!(http_get(&service.url("/ready")).0, 200);

    // `valor health` against the running instance.
    let (out, stdout, _) = output(
        valor(dir.path())
            .arg("health")
            .arg("--url")
            .arg(service.url("/health")),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("status: ok (score 100/100)"), "{stdout}");

    service.signal("TERM");
    let status = service.wait_for_exit(Duration::from_secs(5));
    assert!(status.success(), "exit {status:?}\n{}", service.logs());
    let logs = service.logs();
    assert!(logs.contains("shutting down signal=\"SIGTERM\""), "{logs}");
    assert!(logs.contains("valor stopped"), "{logs}");
    // The token turned Telegram on; its polling failed against a closed port and said so.
    assert!(logs.contains("Telegram is on"), "{logs}");
    assert!(logs.contains("polling Telegram failed"), "{logs}");
    // Even at trace level, no secret reaches the log.
    assert_no_secret(&logs);
}

#[test]
fn sigint_also_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = Service::start(
        valor(dir.path())
            .arg("run")
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0"),
    );
    assert_eq!(http_get(&service.url("/health")).0, 200);
    service.signal("INT");
    let status = service.wait_for_exit(Duration::from_secs(5));
    assert!(status.success(), "{}", service.logs());
    assert!(
        service
            .logs()
            .contains("Telegram is off: TELEGRAM_BOT_TOKEN is not set")
    );
}

#[test]
fn a_taken_port_fails_fast_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (out, _, stderr) = output(
        valor(dir.path())
            .arg("run")
            .env("VALOR__HEALTH__BIND", addr.to_string()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[test]
fn an_invalid_config_stops_run_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("valor.toml"),
        "[monitor]\ninterval_secs = 0\n",
    )
    .unwrap();
    let (out, _, stderr) = output(valor(dir.path()).arg("run"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains(
            "valor.toml:2: key `monitor.interval_secs`: expected 1 to 3600 seconds, got 0"
        ),
        "{stderr}"
    );
}

/// `valor health` exit codes against real instances pushed over their thresholds by config.
#[test]
fn health_exit_codes_follow_a_real_instance() {
    let dir = tempfile::tempdir().unwrap();
    let start_with_rss_levels = |warn_mb: &str, critical_mb: &str| {
        Service::start(
            valor(dir.path())
                .arg("run")
                .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
                .env("VALOR__MONITOR__THRESHOLDS__RSS_WARN_MB", warn_mb)
                .env("VALOR__MONITOR__THRESHOLDS__RSS_CRITICAL_MB", critical_mb)
                // One store per instance: a store belongs to one process.
                .env(
                    "VALOR__STORE__PATH",
                    dir.path().join(format!("store-{critical_mb}")),
                ),
        )
    };
    // Valor's own RSS (several MiB) is over a 1 MiB warning level: degraded.
    let degraded = start_with_rss_levels("1", "100000");
    let (out, stdout, _) = output(
        valor(dir.path())
            .args(["health", "--url"])
            .arg(degraded.url("/health")),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.starts_with("status: degraded"), "{stdout}");
    assert!(
        stdout.contains("alert [warning] Valor's resident memory is"),
        "{stdout}"
    );
    assert!(stdout.contains("what to do: Restart Valor"), "{stdout}");

    // Over a 2 MiB critical level: unhealthy, and /health answers 503.
    let unhealthy = start_with_rss_levels("1", "2");
    let (out, stdout, _) = output(
        valor(dir.path())
            .args(["health", "--json", "--url"])
            .arg(unhealthy.url("/health")),
    );
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let body: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["alerts"][0]["severity"], "critical");
    assert_eq!(http_get(&unhealthy.url("/health")).0, 503);
}

/// A Valor that crashed left a Claude process group behind; the next `valor run` ends it.
#[test]
fn run_ends_process_groups_an_earlier_valor_left_behind() {
    use std::os::unix::process::CommandExt as _;
    let dir = tempfile::tempdir().unwrap();
    let mut orphan = std::process::Command::new("sh")
        .args(["-c", "sleep 60 & sleep 60"])
        .process_group(0)
        .spawn()
        .unwrap();
    // Let the shell start its background child, so the group has two members.
    std::thread::sleep(Duration::from_millis(100));
    let store_path = dir.path().join("store");
    {
        let store = valor_store::Store::open(&store_path).unwrap();
        store
            .put_process(&valor_store::ProcessRecord {
                pgid: orphan.id(),
                start_ticks: valor_claude::process::start_ticks(orphan.id()).unwrap(),
                boot_id: valor_claude::process::boot_id().unwrap(),
                owner_pid: 1,
                label: "claude".to_owned(),
                chat_id: Some(42),
                started_at_ms: 0,
            })
            .unwrap();
    }
    let mut service = Service::start(
        valor(dir.path())
            .arg("run")
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
            .env("VALOR__STORE__PATH", &store_path),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while orphan.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphan is still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(valor_claude::process::group_members(orphan.id()).is_empty());
    let (_, _, metrics) = http_get(&service.url("/metrics"));
    assert!(
        metrics.contains("\nvalor_claude_orphans_reaped_total 1\n"),
        "{metrics}"
    );
    let (_, _, health) = http_get(&service.url("/health"));
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["components"]["claude"]["orphans_reaped_total"], 1);
    assert_eq!(health["components"]["claude"]["status"], "ok");
    service.signal("TERM");
    assert!(service.wait_for_exit(Duration::from_secs(5)).success());
}

#[test]
fn a_required_sandbox_that_cannot_be_had_stops_valor_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // No bubblewrap on this PATH: the sandbox cannot be built.
    let (out, _, stderr) = output(
        valor(dir.path())
            .arg("run")
            .env("PATH", dir.path())
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
            .env("VALOR__CLAUDE__SANDBOX", "required"),
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("and the sandbox does not work here: bubblewrap (bwrap) is not on PATH"),
        "{stderr}"
    );
    assert!(stderr.contains("valor doctor"), "{stderr}");
    // The same machine under `auto` starts, degraded, and says so.
    let service = crate::support::Service::start(
        valor(dir.path())
            .arg("run")
            .env("PATH", dir.path())
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
            .env("VALOR__TELEGRAM__API_URL", "http://127.0.0.1:9/"),
    );
    let (_, _, body) = http_get(&service.url("/health"));
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        health["components"]["claude"]["sandbox"], "unavailable",
        "{health}"
    );
    assert_eq!(
        health["components"]["claude"]["status"], "degraded",
        "{health}"
    );
    service.signal("TERM");
}
