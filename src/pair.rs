//! `valor pair`: a one-time code that lets a Telegram user join the allow-list; `--list` shows
//! who is on it and `--revoke ID` takes a paired user off it. While `valor run` holds the store,
//! the list and revocations go through it (so a revocation takes effect at once).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use valor_config::Config;
use valor_store::{Store, StoreError};
use valor_telegram::pairing::Pairing;

use crate::memory_cmd::AgentClient;

#[derive(Debug, clap::Args)]
pub struct PairArgs {
    /// List who may talk to Valor: the configured users and the paired ones.
    #[arg(long, conflicts_with = "revoke")]
    list: bool,
    /// Take a paired user (Telegram user id) off the allow-list.
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    revoke: Option<i64>,
    /// What the user who pairs with the code becomes: chatter (the default), approver (answers
    /// approvals in groups) or admin.
    #[arg(long, value_name = "ROLE", default_value = "chatter", value_parser = ["chatter", "approver", "admin"])]
    role: String,
}

pub async fn pair(config_path: Option<PathBuf>, args: PairArgs) -> ExitCode {
    let loaded = match crate::config_cmd::load(config_path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let config = &loaded.config;
    let done = if args.list {
        list(config).await
    } else if let Some(user) = args.revoke {
        revoke(config, user).await
    } else {
        issue(config, &args.role)
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn issue(config: &Config, role: &str) -> anyhow::Result<()> {
    let role = valor_protocol::access::Role::parse(role).unwrap_or_default();
    let code = Pairing::for_store(&config.store.path).issue_for(role)?;
    println!("Pairing code ({}): {code}", role.as_str());
    println!("Valid for 10 minutes, once. In Telegram, send the bot: /pair {code}");
    Ok(())
}

async fn list(config: &Config) -> anyhow::Result<()> {
    let paired = match Store::open(&config.store.path) {
        Ok(store) => store.paired_users()?,
        Err(StoreError::Locked { .. }) => {
            let answer: serde_json::Value = agent(config)?
                .get("/telegram/paired")
                .await
                .map_err(|e| anyhow::anyhow!("{e} (is Telegram on in the running Valor?)"))?;
            serde_json::from_value(answer["paired"].clone())
                .context("the running Valor answered an unexpected list")?
        }
        Err(e) => return Err(e.into()),
    };
    for user in &config.telegram.allowed_users {
        println!("{user}\tconfigured ([telegram] allowed_users)");
    }
    for user in &paired {
        println!("{user}\tpaired (valor pair --revoke {user} takes it back)");
    }
    if config.telegram.allowed_users.is_empty() && paired.is_empty() {
        println!("nobody: Valor answers no one (valor pair gives a code)");
    }
    Ok(())
}

async fn revoke(config: &Config, user: i64) -> anyhow::Result<()> {
    let configured = config.telegram.allowed_users.contains(&user);
    let removed = match Store::open(&config.store.path) {
        Ok(store) => {
            let removed = store.remove_paired_user(user)?;
            store.flush()?;
            removed
        }
        Err(StoreError::Locked { .. }) => {
            let answer = agent(config)?
                .delete::<serde_json::Value>(&format!("/telegram/paired/{user}"))
                .await;
            match answer {
                Ok(_) => true,
                Err(e) if e.contains("is not paired") => false,
                Err(e) => anyhow::bail!(e),
            }
        }
        Err(e) => return Err(e.into()),
    };
    match (removed, configured) {
        (true, false) => println!("Revoked: user {user} is no longer on the allow-list."),
        (true, true) => println!(
            "Revoked the pairing of user {user}; they are still in [telegram] allowed_users: remove them there too."
        ),
        (false, true) => anyhow::bail!(
            "user {user} is in [telegram] allowed_users, not paired: remove them from the config"
        ),
        (false, false) => {
            anyhow::bail!("user {user} is not paired (valor pair --list shows who is)")
        }
    }
    Ok(())
}

/// The running agent's Telegram access API (`/telegram/paired...`).
fn agent(config: &Config) -> anyhow::Result<AgentClient> {
    crate::memory_cmd::agent_client(config, Duration::from_secs(10)).map_err(anyhow::Error::msg)
}
