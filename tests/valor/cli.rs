//! The `valor` commands other than `run`, as a user calls them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{assert_no_secret, output, valor, with_secrets};

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, _) = output(valor(dir.path()).arg("--version"));
    assert!(out.status.success());
    assert_eq!(stdout, format!("valor {}\n", env!("CARGO_PKG_VERSION")));
    let (out, stdout, _) = output(valor(dir.path()).arg("--help"));
    assert!(out.status.success());
    for command in [
        "run", "chat", "stats", "pair", "health", "config", "doctor", "memory",
    ] {
        assert!(stdout.contains(&format!("  {command} ")), "{stdout}");
    }
}

#[test]
fn config_check_prints_the_resolved_config_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("valor.toml"),
        "[monitor]\ninterval_secs = 10\n[claude.env]\nANTHROPIC_BASE_URL = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let (out, stdout, stderr) = output(
        with_secrets(&mut valor(dir.path()))
            .args(["config", "check"])
            .env("VALOR__CLAUDE__ENV__GITHUB_TOKEN", "ghp-env-secret-123")
            .env("VALOR__HEALTH__BIND", "127.0.0.1:9000")
            .env("RUST_LOG", "trace"),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("(working directory)"), "{stdout}");
    assert!(stdout.contains("# override: health.bind from VALOR__HEALTH__BIND"));
    assert!(stdout.contains("# secret: OPENAI_API_KEY set (redacted)"));
    assert!(stdout.contains("interval_secs = 10\n"));
    assert!(stdout.contains("bind = \"127.0.0.1:9000\"\n"));
    assert!(stdout.contains("GITHUB_TOKEN = \"(redacted)\""), "{stdout}");
    assert!(!stdout.contains("ghp-env-secret-123"), "{stdout}");
    assert!(
        stdout.contains("ANTHROPIC_BASE_URL = \"http://127.0.0.1:1\""),
        "{stdout}"
    );
    assert_no_secret(&stdout);
    assert_no_secret(&stderr);
}

#[test]
fn config_check_fails_with_the_problem_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[health]\nbind = 8088\n").unwrap();
    let (out, stdout, stderr) = output(
        valor(dir.path())
            .args(["config", "check", "--config"])
            .arg(&path),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        stderr,
        format!(
            "error: invalid configuration:\n  - {}:2: key `health.bind`: invalid type: integer \
             `8088`, expected a string\n",
            path.display()
        )
    );
}

#[test]
fn an_old_key_name_is_read_with_a_warning_and_its_value_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("old-store");
    std::fs::write(
        dir.path().join("valor.toml"),
        format!(
            "[memory]\npath = \"{}\"\n[monitor]\nalert_chat = 77\n",
            store.display()
        ),
    )
    .unwrap();
    let (out, stdout, _) = output(valor(dir.path()).args(["config", "check"]));
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("# warning: `memory.path` is now `store.path`"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("[store]\npath = \"{}\"", store.display())),
        "{stdout}"
    );
    assert!(stdout.contains("[admin]\nchat = 77"), "{stdout}");
    // Every other command says so on stderr before it starts.
    let (_, _, stderr) = output(valor(dir.path()).args(["tools", "list", "--json"]));
    assert!(
        stderr.contains("warning: config: `monitor.alert_chat` is now `admin.chat`"),
        "{stderr}"
    );
}

#[test]
fn config_check_with_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, stderr) =
        output(valor(dir.path()).args(["config", "check", "--config", "nope.toml"]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr,
        "error: config file nope.toml does not exist (it was given with --config)\n"
    );
}

#[test]
fn health_of_nothing_is_unreachable_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let (out, _, stderr) = output(
        valor(dir.path())
            .arg("health")
            .env("VALOR__HEALTH__BIND", addr.to_string()),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.starts_with(&format!(
            "unhealthy: cannot reach Valor at http://{addr}/health"
        )),
        "{stderr}"
    );
}

#[test]
fn doctor_passes_on_a_good_machine_and_fails_on_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, _) = output(
        valor(dir.path())
            .arg("doctor")
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0"),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("ok    config"), "{stdout}");
    assert!(stdout.contains("ok    system"), "{stdout}");
    assert!(stdout.contains("ok    embedding model"), "{stdout}");
    assert!(
        stdout.contains("ok    sandbox                each chat's Claude runs in its own sandbox"),
        "{stdout}"
    );
    for wall in [
        "ok    user namespace",
        "ok    no capabilities",
        "ok    no new user namespaces",
        "ok    seccomp filter",
        "ok    network namespace",
    ] {
        assert!(stdout.contains(wall), "{wall}: {stdout}");
    }
    // No key and no login: a warning that says how to get one; then a key, then a login.
    assert!(stdout.contains("warn  claude login"), "{stdout}");
    assert!(stdout.contains("neither ANTHROPIC_API_KEY nor a subscription login"));
    let (_, stdout, _) = output(
        valor(dir.path())
            .arg("doctor")
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
            .env("ANTHROPIC_API_KEY", "sk-ant-doctor"),
    );
    assert!(
        stdout.contains("ok    claude login           Claude reaches the model with an API key"),
        "{stdout}"
    );
    assert!(!stdout.contains("sk-ant-doctor"), "{stdout}");
    let login = tempfile::tempdir().unwrap();
    std::fs::create_dir(login.path().join(".claude")).unwrap();
    std::fs::write(login.path().join(".claude/.credentials.json"), "{}").unwrap();
    let (_, stdout, _) = output(
        valor(dir.path())
            .arg("doctor")
            .env("HOME", login.path())
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
            .env("VALOR__CLAUDE__SANDBOX", "off"),
    );
    assert!(
        stdout.contains("subscription login (~/.claude)"),
        "{stdout}"
    );
    let (_, stdout, _) = output(
        valor(dir.path())
            .arg("doctor")
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
            .env("VALOR__CLAUDE__SANDBOX", "off"),
    );
    assert!(
        stdout.contains("warn  sandbox                off"),
        "{stdout}"
    );
    let (_, stdout, _) = output(
        valor(dir.path())
            .arg("doctor")
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
            .env("VALOR__MEMORY__MODEL_DIR", dir.path().join("none")),
    );
    assert!(stdout.contains("warn  embedding model"), "{stdout}");
    assert!(stdout.contains("keywords only"), "{stdout}");
    let (_, stdout, _) = output(
        valor(dir.path())
            .arg("doctor")
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
            .env("VALOR__TOOLS__DEV__APP_URL", "http://127.0.0.1:3000")
            .env(
                "VALOR__TOOLS__DEV__CHROMIUM",
                dir.path().join("no-chromium"),
            ),
    );
    assert!(stdout.contains("warn  browser"), "{stdout}");
    assert!(
        stdout.contains("no-chromium ([tools.dev] chromium) does not exist"),
        "{stdout}"
    );

    std::fs::write(
        dir.path().join("valor.toml"),
        "[health]\nbind = \"0.0.0.0:1\"\n",
    )
    .unwrap();
    let (out, stdout, _) = output(valor(dir.path()).arg("doctor"));
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  config"), "{stdout}");
    assert!(stdout.contains("is not a loopback address"), "{stdout}");
    assert!(
        stdout.contains("fix: correct the keys named above"),
        "{stdout}"
    );
}

#[test]
fn pair_prints_a_code_and_refuses_a_fourth_while_three_wait() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let run = || {
        output(
            valor(dir.path())
                .arg("pair")
                .env("VALOR__STORE__PATH", &store),
        )
    };
    for _ in 0..3 {
        let (out, stdout, _) = run();
        assert!(out.status.success());
        let code = stdout
            .lines()
            .next()
            .unwrap()
            .strip_prefix("Pairing code (chatter): ")
            .unwrap();
        assert_eq!(code.len(), 9);
        assert!(stdout.contains(&format!("send the bot: /pair {code}")));
    }
    let (out, _, stderr) = run();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("3 pairing codes are already waiting"),
        "{stderr}"
    );
}

#[test]
fn pair_lists_and_revokes_paired_users_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, _) = output(valor(dir.path()).args(["pair", "--list"]));
    assert!(out.status.success());
    assert!(stdout.contains("nobody"), "{stdout}");
    {
        let store = valor_store::Store::open(&dir.path().join(".local/share/valor/store")).unwrap();
        store.add_paired_user(555).unwrap();
    }
    let (_, stdout, _) = output(
        valor(dir.path())
            .args(["pair", "--list"])
            .env("VALOR__TELEGRAM__ALLOWED_USERS", "[100]"),
    );
    assert!(stdout.contains("100\tconfigured"), "{stdout}");
    assert!(stdout.contains("555\tpaired"), "{stdout}");
    let (out, stdout, _) = output(valor(dir.path()).args(["pair", "--revoke", "555"]));
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("Revoked: user 555"), "{stdout}");
    let (out, _, stderr) = output(valor(dir.path()).args(["pair", "--revoke", "555"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("user 555 is not paired"), "{stderr}");
    let (out, _, stderr) = output(
        valor(dir.path())
            .args(["pair", "--revoke", "100"])
            .env("VALOR__TELEGRAM__ALLOWED_USERS", "[100]"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("remove them from the config"), "{stderr}");
}

#[test]
fn doctor_checks_the_shared_database_when_the_cluster_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let doctor = |url: Option<&str>| {
        let mut command = valor(dir.path());
        command
            .arg("doctor")
            .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
            .env("VALOR__CLUSTER__ENABLED", "true")
            .env("VALOR__CLUSTER__NODE_ID", "doctor-node")
            .env_remove("VALOR_DATABASE_URL");
        if let Some(url) = url {
            command.env("VALOR_DATABASE_URL", url);
        }
        output(&mut command)
    };
    let url = std::env::var("VALOR_TEST_DATABASE_URL")
        .expect("VALOR_TEST_DATABASE_URL: run scripts/test (it starts a PostgreSQL)");
    let (_, stdout, _) = doctor(Some(&url));
    assert!(
        stdout.contains("ok    database               PostgreSQL 15"),
        "{stdout}"
    );
    assert!(stdout.contains("ok    pgvector"), "{stdout}");
    assert!(stdout.contains("ok    schema"), "{stdout}");
    assert!(stdout.contains("ok    leases"), "{stdout}");
    assert!(stdout.contains("warn  shared_dir"), "{stdout}");

    let (out, stdout, _) = doctor(None);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  database"), "{stdout}");
    assert!(stdout.contains("VALOR_DATABASE_URL is not set"), "{stdout}");

    let (out, stdout, _) = doctor(Some("postgres://valor:doctor-secret-pw@127.0.0.1:1/valor"));
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  database               cannot reach the database"),
        "{stdout}"
    );
    assert!(!stdout.contains("doctor-secret-pw"), "{stdout}");

    // A shared_dir that is not mounted here fails; one that is passes.
    let shared = dir.path().join("nfs");
    let with_shared = |path: &std::path::Path| {
        output(
            valor(dir.path())
                .arg("doctor")
                .env("VALOR__HEALTH__BIND", "127.0.0.1:0")
                .env("VALOR__CLUSTER__ENABLED", "true")
                .env("VALOR__CLUSTER__SHARED_DIR", path)
                .env("VALOR_DATABASE_URL", &url),
        )
    };
    let (_, stdout, _) = with_shared(&shared);
    assert!(stdout.contains("FAIL  shared_dir"), "{stdout}");
    std::fs::create_dir(&shared).unwrap();
    let (_, stdout, _) = with_shared(&shared);
    assert!(
        stdout.contains("ok    shared_dir") && stdout.contains("nfs/workspaces"),
        "{stdout}"
    );
}
