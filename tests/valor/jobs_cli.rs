//! `valor jobs`: the jobs from the config and the store with no Valor running, and from the
//! running agent while `valor run` holds the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use crate::support::{Service, output, valor};
use serde_json::Value;

#[test]
fn jobs_are_listed_with_schedules_policies_and_next_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = output(valor(dir.path()).arg("jobs"));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("job "), "{stdout}");
    assert!(
        lines[1].starts_with("resource-tick  every 30s        skip "),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("reaper         every 1m         skip "),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with("daydream       0 0 */6 * * *    catch up within 6 h    never "),
        "{stdout}"
    );
    assert!(
        lines[4].starts_with("questions      every 30s        skip "),
        "{stdout}"
    );
    assert!(
        lines[5].starts_with("cleanup        0 15 * * * *     catch up within 6 h    never "),
        "{stdout}"
    );
    // The next cleanup is at a quarter past an hour, the next daydream on a six-hour mark.
    assert!(lines[5].trim_end().ends_with(":15:00"), "{stdout}");
    let next_daydream = lines[3].trim_end();
    assert!(
        ["00:00:00", "06:00:00", "12:00:00", "18:00:00"]
            .iter()
            .any(|t| next_daydream.ends_with(t)),
        "{stdout}"
    );

    // A bad policy is a config error that names the key.
    let (out, _, stderr) = output(
        valor(dir.path())
            .arg("jobs")
            .env("VALOR__SCHEDULER__CLEANUP_MISSED", "later"),
    );
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("scheduler.cleanup_missed"), "{stderr}");
    assert!(
        stderr.contains("unknown variant `later`, expected one of `catch_up`, `skip`, `notify`"),
        "{stderr}"
    );
}

#[test]
fn a_running_valor_reports_its_jobs_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = Service::start(
        valor(dir.path())
            .arg("run")
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
            .env("VALOR__MONITOR__INTERVAL_SECS", "1"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (out, stdout, stderr) = output(valor(dir.path()).args(["jobs", "--json"]));
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let jobs: Value = serde_json::from_str(&stdout).unwrap();
        let tick = &jobs[0];
        assert_eq!(tick["name"], "resource-tick");
        assert_eq!(tick["schedule"], "every 1s");
        if tick["last"]["outcome"] == "ok" {
            assert!(
                tick["last"]["detail"].as_str().unwrap().contains("(score "),
                "{tick}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{stdout}\n{}", service.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    service.signal("TERM");
    assert!(
        service.wait_for_exit(Duration::from_secs(5)).success(),
        "{}",
        service.logs()
    );
}
