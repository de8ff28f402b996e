//! `valor chat`: talk to Valor in the terminal, through the same engine as Telegram. With
//! `--once "text"` one turn, the answer on stdout; without it a conversation, one line a message.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use valor_core::TurnEvent;
use valor_core::engine::{Author, Incoming};
use valor_monitor::{ChildRegistry, MetricsRegistry};

/// The console's chat id: consecutive `valor chat` calls continue one conversation.
pub const CONSOLE_CHAT_ID: i64 = 0;

#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// Send this one message, print the answer, exit.
    #[arg(long, value_name = "TEXT")]
    once: Option<String>,
    /// Start a new conversation instead of continuing the last one.
    #[arg(long)]
    new: bool,
    /// Chat id to talk as (the console's own by default).
    #[arg(long, default_value_t = CONSOLE_CHAT_ID, allow_hyphen_values = true)]
    chat_id: i64,
}

pub async fn chat(config_path: Option<PathBuf>, args: ChatArgs) -> ExitCode {
    let loaded = match crate::config_cmd::load(config_path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
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
    let username = std::env::var("USER").ok();
    // Ctrl-C stops the running answer (and its Claude process group, which the terminal's
    // signal would not reach); at the prompt it ends the conversation.
    let running = Running::default();
    let quit = tokio_util::sync::CancellationToken::new();
    {
        let (running, quit) = (running.clone(), quit.clone());
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if !running.cancel() {
                    quit.cancel();
                    break;
                }
            }
        });
    }
    // The tool servers, on a loopback port of this process's own: pictures a tool makes are
    // named on stderr (there is no chat to send them to).
    let tools_stop = tokio_util::sync::CancellationToken::new();
    let browser = match host_tools(&loaded.config, &loaded.secrets, &agent, &tools_stop).await {
        Ok(browser) => Some(browser),
        Err(e) => {
            eprintln!("warning: the tools are off: {e:#}");
            None
        }
    };
    // A one-off turn comes right after start: let memory finish reading the store (it takes
    // milliseconds for most stores; a huge one is not waited for beyond two seconds).
    let _ = tokio::time::timeout(Duration::from_secs(2), agent.memory.loaded()).await;
    let code = match args.once {
        Some(text) => {
            if one_turn(&agent, args.chat_id, &username, text, args.new, &running).await {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        None => {
            // A conversation lasts: memory embeds what is said meanwhile, as under `valor run`.
            let stop = tokio_util::sync::CancellationToken::new();
            let worker = tokio::spawn(agent.memory.clone().run_worker(stop.clone()));
            let learner = crate::learning::learner(&loaded.config, &agent.memory).map(|l| {
                std::sync::Arc::new(l) as std::sync::Arc<dyn valor_memory::proposals::Learning>
            });
            let talk = Conversation {
                agent: &agent,
                chat_id: args.chat_id,
                username: &username,
                running: &running,
                learner,
            };
            let code = talk.run(args.new, &quit).await;
            stop.cancel();
            let _ = worker.await;
            code
        }
    };
    agent.shutdown().await;
    tools_stop.cancel();
    if let Some(browser) = browser {
        browser.close().await;
    }
    code
}

/// Serves the tool servers on 127.0.0.1 for this process's turns until `stop`; returns the
/// dev server's browser, to close at the end.
async fn host_tools(
    config: &valor_config::Config,
    secrets: &valor_config::Secrets,
    agent: &crate::agent::Agent,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<std::sync::Arc<valor_tool_dev::WarmBrowser>> {
    let listener = valor_monitor::server::bind(([127, 0, 0, 1], 0).into()).await?;
    let base_url = crate::health_cmd::base_url(listener.local_addr()?);
    let deliver: valor_tools::Deliver = std::sync::Arc::new(|d: valor_tools::Delivery| {
        eprintln!("[picture] {} ({})", d.path.display(), d.caption);
    });
    let hosted = crate::tool_servers::host_tools(config, secrets, agent, &base_url, Some(deliver))?;
    let stop = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = valor_monitor::server::serve(listener, hosted.routes, stop).await {
            tracing::error!(error = %e, "the tool server stopped");
        }
    });
    Ok(hosted.browser)
}

/// The running turn's cancel token, for Ctrl-C.
#[derive(Clone, Default)]
struct Running(std::sync::Arc<std::sync::Mutex<Option<tokio_util::sync::CancellationToken>>>);

impl Running {
    fn set(&self, token: Option<tokio_util::sync::CancellationToken>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = token;
    }

    /// Cancels the running turn; false when none runs.
    fn cancel(&self) -> bool {
        match self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

/// A conversation in the terminal, with "Remember this?" as in Telegram (answered y/n).
struct Conversation<'a> {
    agent: &'a crate::agent::Agent,
    chat_id: i64,
    username: &'a Option<String>,
    running: &'a Running,
    learner: Option<std::sync::Arc<dyn valor_memory::proposals::Learning>>,
}

/// A typed answer to "Remember this?": yes, no, or not an answer (a new message).
fn typed_answer(line: &str) -> Option<bool> {
    let words: String = line
        .trim()
        .trim_end_matches(['.', '!'])
        .to_lowercase()
        .replace('’', "'");
    match words.as_str() {
        "y" | "yes" | "yes please" | "sure" | "ok" | "remember" | "remember that"
        | "remember it" | "remember this" => Some(true),
        "n" | "no" | "nope" | "no thanks" | "not now" | "don't" | "dont" | "forget it" => {
            Some(false)
        }
        _ => None,
    }
}

impl Conversation<'_> {
    /// One line a message until /quit, end of input, or Ctrl-C at the prompt.
    async fn run(&self, fresh: bool, quit: &tokio_util::sync::CancellationToken) -> ExitCode {
        use std::io::IsTerminal as _;
        use tokio::io::AsyncBufReadExt as _;
        let interactive = std::io::stdin().is_terminal();
        if interactive {
            println!(
                "Valor, in the terminal. /new starts over, /quit (or Ctrl-D) ends, Ctrl-C stops an answer."
            );
        }
        let mut fresh = fresh;
        let mut question: Option<valor_memory::Proposal> = None;
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        loop {
            if interactive {
                print!("> ");
                let _ = std::io::stdout().flush();
            }
            let line = tokio::select! {
                () = quit.cancelled() => break,
                line = lines.next_line() => line,
            };
            let Ok(Some(line)) = line else { break };
            let text = line.trim();
            if let Some(proposal) = question.take() {
                match typed_answer(text) {
                    Some(yes) => {
                        self.settle(proposal, yes).await;
                        continue;
                    }
                    // Anything else is a new message; the question lapses unanswered.
                    None => println!("(not stored: {})", proposal.text),
                }
            }
            match text {
                "" => continue,
                "/quit" | "/exit" => break,
                "/new" => {
                    fresh = true;
                    println!("(a new conversation starts with your next message)");
                    continue;
                }
                _ => {}
            }
            one_turn(
                self.agent,
                self.chat_id,
                self.username,
                text.to_owned(),
                fresh,
                self.running,
            )
            .await;
            fresh = false;
            question = self.watch(text).await;
        }
        ExitCode::SUCCESS
    }

    /// The watcher's question about what the user said, asked after the answer.
    async fn watch(&self, text: &str) -> Option<valor_memory::Proposal> {
        let learner = self.learner.clone()?;
        let (chat_id, text) = (self.chat_id, text.to_owned());
        let proposal =
            tokio::task::spawn_blocking(move || learner.watch(chat_id, &text, "console"))
                .await
                .ok()??;
        println!("Remember this? {} [y/n]", proposal.text);
        Some(proposal)
    }

    /// A typed yes keeps the learning (as a button press would); a no keeps nothing.
    async fn settle(&self, proposal: valor_memory::Proposal, yes: bool) {
        let Some(learner) = self.learner.clone().filter(|_| yes) else {
            println!("Not stored: {}", proposal.text);
            return;
        };
        let kept = tokio::task::spawn_blocking(move || learner.accept(&proposal)).await;
        match kept {
            Ok(Ok(line)) => println!("{line}"),
            Ok(Err(e)) => eprintln!("error: cannot store it: {e}"),
            Err(e) => eprintln!("error: cannot store it: {e}"),
        }
    }
}

/// Runs one turn and prints it; false when it failed.
async fn one_turn(
    agent: &crate::agent::Agent,
    chat_id: i64,
    username: &Option<String>,
    text: String,
    fresh: bool,
    running: &Running,
) -> bool {
    let incoming = Incoming {
        chat_id,
        author: Some(Author {
            user_id: 0,
            username: username.clone(),
        }),
        text,
        fresh_session: fresh,
        cancel: tokio_util::sync::CancellationToken::new(),
        source: None,
    };
    running.set(Some(incoming.cancel.clone()));
    let mut stream = match agent.engine.turn(incoming) {
        Ok((stream, _)) => stream,
        Err(e) => {
            eprintln!("error: {e}");
            running.set(None);
            return false;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let mut printed = false;
    let mut ok = true;
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
                ok = false;
            }
            _ => {}
        }
    }
    running.set(None);
    ok
}
