//! `valor chat --once "text"`: one turn through the Claude driver, the answer on stdout.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use valor_config::ConfigSource;
use valor_core::TurnEvent;
use valor_core::engine::{Author, Incoming};
use valor_monitor::{ChildRegistry, MetricsRegistry};

/// The console's chat id: consecutive `valor chat` calls continue one conversation.
pub const CONSOLE_CHAT_ID: i64 = 0;

#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// Send this one message, print the answer, exit.
    #[arg(long, value_name = "TEXT", required = true)]
    once: String,
    /// Start a new conversation instead of continuing the last one.
    #[arg(long)]
    new: bool,
    /// Chat id to talk as (the console's own by default).
    #[arg(long, default_value_t = CONSOLE_CHAT_ID, allow_hyphen_values = true)]
    chat_id: i64,
}

pub async fn chat(config_path: Option<PathBuf>, args: ChatArgs) -> ExitCode {
    let loaded = match ConfigSource::from_process(config_path).load() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Only errors are logged here unless RUST_LOG asks for more: stderr carries the
    // user-facing messages.
    crate::logging::init("error");
    let agent = match crate::agent::Agent::build(
        &loaded.config,
        &MetricsRegistry::new(),
        ChildRegistry::new(),
        false,
    ) {
        Ok(agent) => agent,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let incoming = Incoming {
        chat_id: args.chat_id,
        author: Some(Author {
            user_id: 0,
            username: std::env::var("USER").ok(),
        }),
        text: args.once,
        fresh_session: args.new,
        cancel: tokio_util::sync::CancellationToken::new(),
        source: None,
    };
    // Ctrl-C stops the turn (and its Claude process group), not Valor mid-run.
    let cancel = incoming.cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    });
    let mut stream = match agent.engine.turn(incoming) {
        Ok((stream, _)) => stream,
        Err(e) => {
            eprintln!("error: {e}");
            agent.shutdown().await;
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let mut printed = false;
    let mut code = ExitCode::SUCCESS;
    while let Some(event) = stream.next().await {
        match event {
            TurnEvent::Queued { position } => eprintln!("(queued: {position} ahead)"),
            TurnEvent::MessageStart if printed => {
                let _ = writeln!(stdout);
            }
            TurnEvent::TextDelta(text) => {
                let _ = write!(stdout, "{text}");
                let _ = stdout.flush();
                printed = true;
            }
            TurnEvent::Retrying {
                attempt,
                max_retries,
                status,
                ..
            } => {
                eprintln!(
                    "(Claude API busy{}, retry {attempt} of {max_retries})",
                    status.map(|s| format!(" ({s})")).unwrap_or_default()
                );
            }
            TurnEvent::Finished(summary) => {
                if !printed && !summary.text.is_empty() {
                    let _ = write!(stdout, "{}", summary.text);
                    printed = true;
                }
                if printed {
                    let _ = writeln!(stdout);
                }
                if !summary.permission_denials.is_empty() {
                    eprintln!("{}", valor_core::TurnErrorKind::ToolDenied.user_message());
                }
                for server in &summary.failed_mcp_servers {
                    eprintln!(
                        "(tool server {server} failed to start: this answer was made without it)"
                    );
                }
            }
            TurnEvent::Failed(error) => {
                if printed {
                    let _ = writeln!(stdout);
                }
                eprintln!("{}", error.user_message());
                code = ExitCode::FAILURE;
            }
            _ => {}
        }
    }
    agent.shutdown().await;
    code
}
