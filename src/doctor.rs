//! `valor doctor`: checks what Valor needs on this machine; each failure says how to fix it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use valor_config::{ConfigSource, Loaded};
use valor_monitor::ChildRegistry;
use valor_monitor::sample::Sampler;

/// The outcome of one check.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass(String),
    /// Works, but worth knowing.
    Warn {
        found: String,
        fix: String,
    },
    Fail {
        found: String,
        fix: String,
    },
}

pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
}

pub async fn doctor(config_path: Option<PathBuf>) -> ExitCode {
    let checks = run_checks(ConfigSource::from_process(config_path)).await;
    let mut failed = 0;
    for check in &checks {
        match &check.outcome {
            Outcome::Pass(found) => println!("ok    {:<22} {found}", check.name),
            Outcome::Warn { found, fix } => {
                println!(
                    "warn  {:<22} {found}\n      {:<22} fix: {fix}",
                    check.name, ""
                )
            }
            Outcome::Fail { found, fix } => {
                failed += 1;
                println!(
                    "FAIL  {:<22} {found}\n      {:<22} fix: {fix}",
                    check.name, ""
                )
            }
        }
    }
    if failed == 0 {
        println!("\nall {} checks passed", checks.len());
        ExitCode::SUCCESS
    } else {
        println!("\n{failed} of {} checks failed", checks.len());
        ExitCode::FAILURE
    }
}

pub async fn run_checks(source: ConfigSource) -> Vec<Check> {
    let mut checks = Vec::new();
    let loaded = match source.load() {
        Ok(loaded) => {
            let from = loaded.source.path().map_or_else(
                || "built-in defaults".to_owned(),
                |p| p.display().to_string(),
            );
            let outcome = if loaded.warnings.is_empty() {
                Outcome::Pass(format!("valid ({from})"))
            } else {
                Outcome::Warn {
                    found: format!("valid ({from}); {}", loaded.warnings.join("; ")),
                    fix: "rename the keys named (config/valor.example.toml has every key)"
                        .to_owned(),
                }
            };
            checks.push(Check {
                name: "config",
                outcome,
            });
            Some(loaded)
        }
        Err(e) => {
            checks.push(Check {
                name: "config",
                outcome: Outcome::Fail {
                    found: e.to_string(),
                    fix: "correct the keys named above; config/valor.example.toml documents \
                          every key"
                        .to_owned(),
                },
            });
            None
        }
    };
    checks.push(system_figures());
    if let Some(loaded) = &loaded {
        checks.push(health_port(loaded).await);
        checks.push(claude(loaded).await);
        checks.push(claude_login(
            loaded,
            std::env::vars().collect(),
            home_dir().as_deref(),
        ));
        checks.extend(sandbox(loaded).await);
        checks.push(store(loaded));
        checks.extend(crate::cluster_doctor::checks(loaded).await);
        checks.push(embedding_model(loaded));
        checks.push(browser(loaded));
        checks.push(secrets(loaded));
    }
    checks
}

async fn claude(loaded: &Loaded) -> Check {
    let binary = valor_claude::binary::locate(&loaded.config.claude.binary);
    let outcome = match valor_claude::binary::version(&binary).await {
        Ok(version) => Outcome::Pass(format!("{version} at {}", binary.display())),
        Err(e) => Outcome::Fail {
            found: e,
            fix: "run scripts/setup (it installs the pinned Claude Code CLI from npm into \
                  tools/claude-code), or set [claude] binary"
                .to_owned(),
        },
    };
    Check {
        name: "claude",
        outcome,
    }
}

/// Whether Claude can reach the model at all: an API key or token in the environment (or
/// `[claude.env]`), or the subscription login `claude` leaves in `~/.claude`.
fn claude_login(loaded: &Loaded, parent_env: Vec<(String, String)>, home: Option<&str>) -> Check {
    let claude = &loaded.config.claude;
    let env = valor_claude::spawn::child_env(parent_env, &claude.env);
    let upstream = valor_claude::proxy::Upstream::from_env(
        &env,
        valor_claude::sandbox::operator_credentials(home),
        &claude.oauth_token_url,
    );
    let outcome = if upstream.has_credentials() {
        Outcome::Pass(format!(
            "Claude reaches the model with {}",
            upstream.describe()
        ))
    } else {
        Outcome::Warn {
            found: "neither ANTHROPIC_API_KEY nor a subscription login: every turn will fail \
                    to reach the model"
                .to_owned(),
            fix: "set ANTHROPIC_API_KEY, or run `claude` once as the user Valor runs as and \
                  log in with your subscription"
                .to_owned(),
        }
    };
    Check {
        name: "claude login",
        outcome,
    }
}

fn home_dir() -> Option<String> {
    std::env::var("HOME").ok().filter(|h| !h.is_empty())
}

/// Whether each chat's Claude can run in its own sandbox: one line per wall the probe checks
/// from inside, how limits are kept, and which credentials the API proxy adds.
async fn sandbox(loaded: &Loaded) -> Vec<Check> {
    use valor_claude::sandbox::SandboxState;
    let config = &loaded.config;
    let mode = config.claude.sandbox;
    let chats = crate::agent::chat_folders(config);
    let parent_env: Vec<(String, String)> = std::env::vars().collect();
    let home = std::env::var("HOME").ok();
    let state = crate::agent::sandbox(config, mode, &chats, &parent_env, home.as_deref()).await;
    let fix = "run scripts/setup (it installs bubblewrap), on a kernel that allows user \
               namespaces (sysctl kernel.unprivileged_userns_clone=1, \
               user.max_user_namespaces > 0)";
    let mut checks = Vec::new();
    let overall = match &state {
        SandboxState::Active(sandbox) => {
            for check in sandbox.checks() {
                checks.push(Check {
                    name: check.name,
                    outcome: Outcome::Pass(check.detail.clone()),
                });
            }
            let limits = sandbox.limits_mode();
            checks.push(Check {
                name: "limits",
                outcome: if sandbox.limits_memory() {
                    Outcome::Pass(limits)
                } else {
                    Outcome::Warn {
                        found: limits,
                        fix: "run Valor where it may write a cgroup: a systemd unit with \
                              Delegate=yes (README, Isolation), or as root"
                            .to_owned(),
                    }
                },
            });
            // Without credentials the "claude login" check says what to do.
            let upstream = sandbox.upstream();
            if upstream.has_credentials() {
                checks.push(Check {
                    name: "api proxy",
                    outcome: Outcome::Pass(format!(
                        "adds {} outside the sandbox",
                        upstream.describe()
                    )),
                });
            }
            Outcome::Pass(format!(
                "each chat's Claude runs in its own sandbox{}",
                chats
                    .owner()
                    .map(|o| format!(" as uid {} (Valor runs as root)", o.uid))
                    .unwrap_or_default()
            ))
        }
        SandboxState::Off => Outcome::Warn {
            found: "off ([claude] sandbox = \"off\"): every chat's Claude can read the others' \
                    files and the network"
                .to_owned(),
            fix: "set [claude] sandbox = \"auto\" or \"required\"".to_owned(),
        },
        SandboxState::Unavailable {
            reason,
            required: false,
        } => Outcome::Warn {
            found: format!("unavailable, turns run unsandboxed (degraded): {reason}"),
            fix: fix.to_owned(),
        },
        SandboxState::Unavailable {
            reason,
            required: true,
        } => Outcome::Fail {
            found: format!("required but unavailable, Valor will not start: {reason}"),
            fix: fix.to_owned(),
        },
    };
    checks.insert(
        0,
        Check {
            name: "sandbox",
            outcome: overall,
        },
    );
    checks
}

fn store(loaded: &Loaded) -> Check {
    let path = &loaded.config.store.path;
    let outcome = match valor_store::Store::open(path) {
        Ok(_) => Outcome::Pass(format!("{} opens", path.display())),
        Err(e @ valor_store::StoreError::Locked { .. }) => Outcome::Warn {
            found: e.to_string(),
            fix: "nothing to do if that is your running `valor run`".to_owned(),
        },
        Err(e) => Outcome::Fail {
            found: e.to_string(),
            fix: "point [memory] path (or VALOR__STORE__PATH) at a writable directory".to_owned(),
        },
    };
    Check {
        name: "store",
        outcome,
    }
}

/// The embedding model loads and embeds (without it memory search is keyword-only).
fn embedding_model(loaded: &Loaded) -> Check {
    let home = std::env::var("HOME").ok();
    let dir = loaded.config.memory.resolved_model_dir(home.as_deref());
    let started = std::time::Instant::now();
    let outcome = match valor_embed::Embedder::load(&dir).and_then(|e| {
        e.embed(&["doctor check"])?;
        Ok(e)
    }) {
        Ok(embedder) => Outcome::Pass(format!(
            "{} ({} dimensions) loads and embeds in {} ms ({} matrix kernels)",
            embedder.model_id(),
            embedder.dim(),
            started.elapsed().as_millis(),
            embedder.kernels()
        )),
        Err(e) => Outcome::Warn {
            found: format!("{e}; memory search will use keywords only"),
            fix: "run scripts/setup, or set [memory] model_dir (VALOR__MEMORY__MODEL_DIR)"
                .to_owned(),
        },
    };
    Check {
        name: "embedding model",
        outcome,
    }
}

/// The dev tools' browser (without it bug reports and screenshots answer with the fix).
fn browser(loaded: &Loaded) -> Check {
    let dev = &loaded.config.tools.dev;
    let browser = valor_tool_dev::WarmBrowser::new(valor_tool_dev::BrowserSettings {
        executable: dev.chromium.clone(),
        ..valor_tool_dev::BrowserSettings::default()
    });
    let outcome = match browser.executable() {
        Ok(path) if dev.app_url.is_empty() => Outcome::Warn {
            found: format!("{} found; [tools.dev] app_url is not set", path.display()),
            fix: "set [tools.dev] app_url to the app bug reports should open".to_owned(),
        },
        Ok(path) => Outcome::Pass(format!(
            "{} for bug reports of {}",
            path.display(),
            dev.app_url
        )),
        Err(e) => Outcome::Warn {
            found: format!("{e}; the dev tools cannot take screenshots"),
            fix: "run scripts/setup (it installs Debian's chromium), or set [tools.dev] chromium"
                .to_owned(),
        },
    };
    Check {
        name: "browser",
        outcome,
    }
}

fn system_figures() -> Check {
    let outcome = match Sampler::new(ChildRegistry::new(), Duration::from_secs(60))
        .and_then(|mut s| s.sample())
    {
        Ok(sample) => Outcome::Pass(format!(
            "readable (Valor uses {:.1} MiB now; machine memory {:.0}% used)",
            sample.rss_mb(),
            sample.system_memory_used_percent()
        )),
        Err(e) => Outcome::Fail {
            found: e.to_string(),
            fix: "the resource monitor reads /proc: run Valor where /proc is mounted and readable"
                .to_owned(),
        },
    };
    Check {
        name: "system",
        outcome,
    }
}

async fn health_port(loaded: &Loaded) -> Check {
    let addr = loaded.config.health.bind;
    let outcome = match tokio::net::TcpListener::bind(addr).await {
        Ok(_) => Outcome::Pass(format!("{addr} is free for the health server")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Outcome::Warn {
            found: format!("{addr} is in use (a running Valor, or another program)"),
            fix: format!(
                "if `valor health --url http://{addr}/health` does not answer, choose another \
                 address with [health] bind or VALOR__HEALTH__BIND"
            ),
        },
        Err(e) => Outcome::Fail {
            found: format!("cannot listen on {addr}: {e}"),
            fix: "choose an address this machine has with [health] bind or VALOR__HEALTH__BIND"
                .to_owned(),
        },
    };
    Check {
        name: "health port",
        outcome,
    }
}

fn secrets(loaded: &Loaded) -> Check {
    let presence = loaded.secrets.presence();
    let set: Vec<&str> = presence
        .iter()
        .filter(|(_, s)| *s)
        .map(|(v, _)| *v)
        .collect();
    let found = if set.is_empty() {
        "no secrets set in the environment".to_owned()
    } else {
        format!("set: {}", set.join(", "))
    };
    Check {
        name: "secrets",
        outcome: Outcome::Pass(found),
    }
}
