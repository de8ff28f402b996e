//! What a user sees when a config is wrong, and which source wins.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use valor_config::{Config, ConfigError, ConfigSource, Env, Origin, SourceKind};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn source(dir: &Path, explicit: Option<PathBuf>, env: &[(&str, &str)]) -> ConfigSource {
    ConfigSource {
        explicit,
        cwd: dir.to_owned(),
        env: Env::from_pairs(env.iter().copied()),
    }
}

fn load_file(text: &str, env: &[(&str, &str)]) -> (PathBuf, Result<Config, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "valor.toml", text);
    let result = source(dir.path(), Some(path.clone()), env)
        .load()
        .map(|l| l.config);
    (path, result)
}

#[test]
fn missing_explicit_file_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let err = source(dir.path(), Some(missing.clone()), &[])
        .load()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "config file {} does not exist (it was given with --config)",
            missing.display()
        )
    );
}

#[test]
fn bad_toml_names_file_and_line() {
    let (path, result) = load_file("[health]\nbind = \"127.0.0.1:1\"\nbroken = = 3\n", &[]);
    let err = result.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}:3: not valid TOML:", path.display())),
        "{text}"
    );
}

#[test]
fn unknown_key_names_key_file_line_and_the_expected_keys() {
    let (path, result) = load_file("[health]\nbind = \"127.0.0.1:1\"\nbnid = 3\n", &[]);
    let err = result.unwrap_err();
    let problem = &err.problems()[0];
    assert_eq!(problem.key, "health.bnid");
    assert_eq!(
        problem.origin,
        Origin::File {
            path: path.clone(),
            line: 3
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "invalid configuration:\n  - {}:3: key `health.bnid`: unknown field `bnid`, expected \
             one of `bind`, `allow_non_loopback`, `dashboard`, `dashboard_secure_cookie`",
            path.display()
        )
    );
}

#[test]
fn unknown_section_is_named() {
    let (_, result) = load_file("\n[helth]\nbind = 1\n", &[]);
    let err = result.unwrap_err();
    assert_eq!(err.problems()[0].key, "helth");
    assert!(
        err.to_string().contains(
            ":2: key `helth`: unknown field `helth`, expected one of `log`, `health`, `monitor`"
        ),
        "{err}"
    );
}

#[test]
fn wrong_type_says_what_is_expected() {
    let (path, result) = load_file("[monitor]\n\ninterval_secs = \"often\"\n", &[]);
    let err = result.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid configuration:\n  - {}:3: key `monitor.interval_secs`: invalid type: string \
             \"often\", expected u64",
            path.display()
        )
    );
}

#[test]
fn bad_address_says_what_is_expected() {
    let (path, result) = load_file("[health]\nbind = \"localhost\"\n", &[]);
    let err = result.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid configuration:\n  - {}:2: key `health.bind`: expected an address with a \
             port, such as \"127.0.0.1:8088\", got \"localhost\"",
            path.display()
        )
    );
}

#[test]
fn out_of_range_values_are_all_reported_with_their_lines() {
    let text = "[monitor]\ninterval_secs = 0\n[monitor.thresholds]\ncpu_warn_percent = 99.0\n";
    let (path, result) = load_file(text, &[]);
    let err = result.unwrap_err();
    let shown: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            format!(
                "{}:2: key `monitor.interval_secs`: expected 1 to 3600 seconds, got 0",
                path.display()
            ),
            format!(
                "{}:4: key `monitor.thresholds.cpu_warn_percent`: must be below \
                 monitor.thresholds.cpu_critical_percent (95), got 99",
                path.display()
            ),
        ]
    );
}

#[test]
fn non_loopback_bind_needs_explicit_permission() {
    let (_, result) = load_file("[health]\nbind = \"0.0.0.0:8088\"\n", &[]);
    let err = result.unwrap_err();
    assert!(
        err.to_string()
            .contains("0.0.0.0:8088 is not a loopback address"),
        "{err}"
    );
    let (_, result) = load_file(
        "[health]\nbind = \"0.0.0.0:8088\"\nallow_non_loopback = true\n",
        &[],
    );
    assert_eq!(result.unwrap().health.bind.to_string(), "0.0.0.0:8088");
}

#[test]
fn environment_overrides_beat_the_file() {
    let (_, result) = load_file(
        "[health]\nbind = \"127.0.0.1:7000\"\n[monitor]\ninterval_secs = 5\n",
        &[("VALOR__HEALTH__BIND", "127.0.0.1:9000")],
    );
    let config = result.unwrap();
    assert_eq!(config.health.bind.to_string(), "127.0.0.1:9000");
    assert_eq!(config.monitor.interval_secs, 5);
}

#[test]
fn a_bad_override_names_the_variable() {
    let (_, result) = load_file("", &[("VALOR__MONITOR__INTERVAL_SECS", "soon")]);
    assert_eq!(
        result.unwrap_err().to_string(),
        "invalid configuration:\n  - environment variable VALOR__MONITOR__INTERVAL_SECS: key \
         `monitor.interval_secs`: invalid type: string \"soon\", expected u64"
    );
    let (_, result) = load_file("", &[("VALOR__HEALTH__PORT", "1")]);
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains(
            "environment variable VALOR__HEALTH__PORT: key `health.port`: unknown field `port`"
        ),
        "{err}"
    );
}

#[test]
fn a_secret_in_the_file_is_refused_without_echoing_it() {
    let (path, result) = load_file("[telegram]\nbot_token = \"123:very-secret-token\"\n", &[]);
    let text = result.unwrap_err().to_string();
    assert!(!text.contains("very-secret"), "{text}");
    assert!(
        text.contains(&format!(
            "{}:2: key `telegram.bot_token`: secrets are read only from the environment",
            path.display()
        )),
        "{text}"
    );
    assert!(text.contains("TELEGRAM_BOT_TOKEN"), "{text}");
}

#[test]
fn search_order_is_explicit_then_cwd_then_xdg_then_defaults() {
    let cwd = tempfile::tempdir().unwrap();
    let xdg = tempfile::tempdir().unwrap();
    let xdg_file = xdg.path().join("valor").join("valor.toml");
    std::fs::create_dir_all(xdg_file.parent().unwrap()).unwrap();
    std::fs::write(&xdg_file, "[monitor]\ninterval_secs = 7\n").unwrap();
    let xdg_env = [("XDG_CONFIG_HOME", xdg.path().to_str().unwrap())];

    let loaded = source(cwd.path(), None, &xdg_env).load().unwrap();
    assert_eq!(loaded.source, SourceKind::Xdg(xdg_file.clone()));
    assert_eq!(loaded.config.monitor.interval_secs, 7);

    let local = write(cwd.path(), "valor.toml", "[monitor]\ninterval_secs = 8\n");
    let loaded = source(cwd.path(), None, &xdg_env).load().unwrap();
    assert_eq!(loaded.source, SourceKind::WorkingDir(local));
    assert_eq!(loaded.config.monitor.interval_secs, 8);

    let explicit = write(xdg.path(), "other.toml", "[monitor]\ninterval_secs = 9\n");
    let loaded = source(cwd.path(), Some(explicit.clone()), &xdg_env)
        .load()
        .unwrap();
    assert_eq!(loaded.source, SourceKind::Explicit(explicit));
    assert_eq!(loaded.config.monitor.interval_secs, 9);

    let empty = tempfile::tempdir().unwrap();
    let home = [("HOME", empty.path().to_str().unwrap())];
    let loaded = source(empty.path(), None, &home).load().unwrap();
    assert_eq!(loaded.source, SourceKind::Defaults);
    let mut defaults = Config::default();
    defaults.expand_home(empty.path().to_str());
    assert_eq!(loaded.config, defaults);
    assert_eq!(
        loaded.config.store.path,
        empty.path().join(".local/share/valor/store"),
        "a leading ~ is the home directory"
    );
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("valor.example.toml")
}

#[test]
fn the_example_parses_to_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = source(dir.path(), Some(example_path()), &[])
        .load()
        .unwrap();
    assert_eq!(loaded.config, Config::default());
}

#[test]
fn the_example_documents_every_key() {
    fn keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let toml::Value::Table(table) = value {
            for (k, v) in table {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_table() {
                    keys(v, &key, out);
                } else {
                    out.push(key);
                }
            }
        }
    }
    let example: toml::Value = std::fs::read_to_string(example_path())
        .unwrap()
        .parse::<toml::Table>()
        .map(toml::Value::Table)
        .unwrap();
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let (mut documented, mut schema) = (Vec::new(), Vec::new());
    keys(&example, "", &mut documented);
    keys(&defaults, "", &mut schema);
    documented.sort();
    schema.sort();
    assert_eq!(documented, schema);
}

#[test]
fn per_chat_ask_thresholds_are_checked_by_chat() {
    let text =
        "[learning.ask_threshold_by_chat]\n\"-1001\" = 0.9\n\"general\" = 0.8\n\"42\" = 3.0\n";
    let (_, result) = load_file(text, &[]);
    let err = result.unwrap_err();
    let shown: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(
        shown[0].contains("learning.ask_threshold_by_chat.42") && shown[0].contains("got 3"),
        "{shown:?}"
    );
    assert!(
        shown[1].contains("expected a chat id") && shown[1].contains("general"),
        "{shown:?}"
    );
    let (_, good) = load_file("[learning.ask_threshold_by_chat]\n\"-1001\" = 0.9\n", &[]);
    assert_eq!(good.unwrap().learning.ask_threshold_by_chat["-1001"], 0.9);
}

#[test]
fn the_cluster_section_is_read_checked_and_its_url_comes_from_the_environment_only() {
    let text =
        "[cluster]\nenabled = true\nrole = \"worker\"\nnode_id = \"w-1\"\nchat_lease_secs = 20\n";
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "valor.toml", text);
    let env = [("VALOR_DATABASE_URL", "postgres://valor:pw@db:5432/valor")];
    let loaded = source(dir.path(), Some(path), &env).load().unwrap();
    let cluster = &loaded.config.cluster;
    assert!(cluster.enabled);
    assert_eq!(cluster.role, valor_config::ClusterRole::Worker);
    assert!(cluster.role.works() && !cluster.role.ingests());
    assert_eq!(
        (cluster.resolved_node_id(), cluster.chat_lease_secs),
        ("w-1".to_owned(), 20)
    );
    let url = loaded.secrets.database_url.as_ref().unwrap();
    assert_eq!(url.expose(), "postgres://valor:pw@db:5432/valor");
    assert!(
        !format!("{:?}", loaded.secrets).contains("pw@db"),
        "the URL is a secret"
    );

    let (_, result) = load_file("[cluster]\nrole = \"boss\"\n", &[]);
    assert!(result.unwrap_err().to_string().contains("cluster.role"));
    let (_, result) = load_file(
        "[cluster]\nnode_id = \"a b/../c\"\npool_size = 0\nleader_lease_secs = 1\n",
        &[],
    );
    let shown = result.unwrap_err().to_string();
    for key in [
        "cluster.node_id",
        "cluster.pool_size",
        "cluster.leader_lease_secs",
    ] {
        assert!(shown.contains(key), "{key}: {shown}");
    }
    // The URL is never read from the file.
    let (_, result) = load_file("[cluster]\ndatabase_url = \"postgres://x\"\n", &[]);
    assert!(result.is_err());
}

#[test]
fn a_shared_dir_holds_the_chats_folders_and_a_folder_outside_it_is_refused() {
    let home = [("HOME", "/home/v")];
    let (_, loaded) = load_file(
        "[cluster]\nenabled = true\nshared_dir = \"/mnt/valor\"\n",
        &home,
    );
    let claude = loaded.unwrap().claude;
    assert_eq!(
        claude.workspaces_dir,
        PathBuf::from("/mnt/valor/workspaces")
    );
    assert_eq!(claude.homes_dir, PathBuf::from("/mnt/valor/homes"));

    // Set by hand beneath it: kept; `~/` is the user's home on every node.
    let (_, loaded) = load_file(
        "[claude]\nworkspaces_dir = \"~/nfs/ws\"\n[cluster]\nenabled = true\nshared_dir = \"~/nfs\"\n",
        &home,
    );
    let claude = loaded.unwrap().claude;
    assert_eq!(claude.workspaces_dir, PathBuf::from("/home/v/nfs/ws"));
    assert_eq!(claude.homes_dir, PathBuf::from("/home/v/nfs/homes"));

    // Without the cluster on, the folders stay where they were.
    let (_, loaded) = load_file("[cluster]\nshared_dir = \"/mnt/valor\"\n", &home);
    let claude = loaded.unwrap().claude;
    assert_eq!(
        claude.workspaces_dir,
        PathBuf::from("/home/v/.local/share/valor/workspaces")
    );

    let (_, result) = load_file(
        "[claude]\nhomes_dir = \"/var/homes\"\n[cluster]\nenabled = true\nshared_dir = \"/mnt/valor\"\n",
        &home,
    );
    let shown = result.unwrap_err().to_string();
    assert!(
        shown.contains("claude.homes_dir") && shown.contains("outside [cluster] shared_dir"),
        "{shown}"
    );
    let (_, result) = load_file("[cluster]\nshared_dir = \"relative/dir\"\n", &home);
    let shown = result.unwrap_err().to_string();
    assert!(
        shown.contains("cluster.shared_dir") && shown.contains("absolute"),
        "{shown}"
    );
}
