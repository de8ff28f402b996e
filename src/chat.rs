//! `valor chat`: talk to Valor in the terminal, an adapter of the same conversation service as
//! Telegram (ops in, events printed). With `--once "text"` one turn, the answer on stdout;
//! without it a conversation, one line a message, with "Remember this?" answered y/n.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use valor_core::Conversations;
use valor_monitor::{ChildRegistry, MetricsRegistry};
use valor_protocol::{Author, Event, Op, UserTurn};

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
    crate::logging::init("error", false);
    let metrics = MetricsRegistry::new();
    let agent = match crate::agent::Agent::build(
        &loaded.config,
        loaded.secrets.database_url.as_ref(),
        &metrics,
        ChildRegistry::new(),
        false,
    )
    .await
    .and_then(crate::agent::Agent::refuse_without_required_sandbox)
    {
        Ok(agent) => agent,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // The tool servers, on a loopback port of this process's own: pictures a tool makes are
    // named on stderr (there is no chat to send them to).
    let tools_stop = tokio_util::sync::CancellationToken::new();
    let people = crate::tool_servers::People::default();
    let (browser, tools) = match host_tools(
        &loaded.config,
        &loaded.secrets,
        &agent,
        &tools_stop,
        &people,
    )
    .await
    {
        Ok((browser, tools)) => (Some(browser), Some(tools)),
        Err(e) => {
            eprintln!("warning: the tools are off: {e:#}");
            (None, None)
        }
    };
    let service = match agent.conversations(&loaded.config, &metrics, tools) {
        Ok(service) => service,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    people.set(std::sync::Arc::new(service.clone()));
    agent.ask_about_unlisted_hosts(&loaded.config, &people);
    agent.wait_for_people(&service);
    let quit = tokio_util::sync::CancellationToken::new();
    interrupt_on_ctrl_c(&service, args.chat_id, &quit);
    // A one-off turn comes right after start: let memory finish reading the store (it takes
    // milliseconds for most stores; a huge one is not waited for beyond two seconds).
    let _ = tokio::time::timeout(Duration::from_secs(2), agent.memory.loaded()).await;
    let console = Console {
        service: &service,
        chat_id: args.chat_id,
        username: std::env::var("USER").ok(),
    };
    let code = match args.once {
        Some(text) => {
            if args.new {
                console.start_over();
            }
            let said = console.say(text, false, None).await;
            // The session stays open, but what the turn did is kept before the process ends.
            service.kept().await;
            if said {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        None => {
            // A conversation lasts: memory embeds what is said meanwhile, as under `valor run`.
            let stop = tokio_util::sync::CancellationToken::new();
            let worker = tokio::spawn(agent.memory.clone().run_worker(stop.clone()));
            let code = console.run(args.new, &quit).await;
            stop.cancel();
            let _ = worker.await;
            // Leaving the console ends the session (a one-off message does not).
            service.shutdown().await;
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

/// Ctrl-C stops the running answer (and its Claude process group, which the terminal's
/// signal would not reach); at the prompt it ends the conversation.
fn interrupt_on_ctrl_c(
    service: &Conversations,
    chat_id: i64,
    quit: &tokio_util::sync::CancellationToken,
) {
    let (service, quit) = (service.clone(), quit.clone());
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            let mut events = service.submit(Op::Interrupt { chat_id });
            if !matches!(
                events.try_next(),
                Some(Event::Interrupted { was_running: true })
            ) {
                quit.cancel();
                break;
            }
        }
    });
}

/// Serves the tool servers on 127.0.0.1 for this process's turns until `stop`; returns the
/// dev server's browser, to close at the end, and every turn's tool grant.
async fn host_tools(
    config: &valor_config::Config,
    secrets: &valor_config::Secrets,
    agent: &crate::agent::Agent,
    stop: &tokio_util::sync::CancellationToken,
    people: &crate::tool_servers::People,
) -> anyhow::Result<(
    std::sync::Arc<valor_tool_dev::WarmBrowser>,
    valor_core::engine::ToolGrantFn,
)> {
    let listener = valor_monitor::server::bind(([127, 0, 0, 1], 0).into()).await?;
    let base_url = agent
        .driver
        .mcp_base_url(&crate::health_cmd::base_url(listener.local_addr()?));
    let deliver: valor_tools::Deliver = std::sync::Arc::new(|d: valor_tools::Delivery| {
        eprintln!(
            "[picture] {} KB ({})",
            d.png.len().div_ceil(1024),
            d.caption
        );
    });
    let grants = valor_tools::host::Grants::default();
    let tools = crate::tool_servers::tool_grant(config, &base_url, &grants);
    let hosted =
        crate::tool_servers::host_tools(config, secrets, agent, &grants, Some(deliver), people)?;
    agent.driver.serve_mcp(hosted.routes.clone());
    let stop = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = valor_monitor::server::serve(listener, hosted.routes, stop).await {
            tracing::error!(error = %e, "the tool server stopped");
        }
    });
    Ok((hosted.browser, tools))
}

/// The terminal as a channel of the conversation service.
struct Console<'a> {
    service: &'a Conversations,
    chat_id: i64,
    username: Option<String>,
}

impl Console<'_> {
    /// One line a message until /quit, end of input, or Ctrl-C at the prompt.
    async fn run(&self, fresh: bool, quit: &tokio_util::sync::CancellationToken) -> ExitCode {
        use std::io::IsTerminal as _;
        use tokio::io::AsyncBufReadExt as _;
        let interactive = std::io::stdin().is_terminal();
        if interactive {
            println!(
                "Valor, in the terminal. /new starts over, /learnings lists what I learned, /quit (or Ctrl-D) ends, Ctrl-C stops an answer."
            );
        }
        if fresh {
            self.start_over();
        }
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
            match line.trim() {
                "" => continue,
                "/quit" | "/exit" => break,
                "/new" => {
                    self.start_over();
                    println!("(a new conversation starts with your next message)");
                }
                text if self.command(text).await => {}
                // A typed yes or no to "Remember this?" is the service's to recognise.
                text => {
                    self.say(text.to_owned(), true, Some(&mut lines)).await;
                }
            }
        }
        ExitCode::SUCCESS
    }

    /// `/status`, `/learnings [review]`, `/forget N`, `/remember <text>` as in Telegram;
    /// false when `text` is not one of them.
    async fn command(&self, text: &str) -> bool {
        let (name, args) = text.split_once(' ').unwrap_or((text, ""));
        let Some(command) = valor_protocol::Command::parse(name, args) else {
            return false;
        };
        let mut events = self.service.submit(Op::Command {
            chat_id: self.chat_id,
            command,
            source: "console".to_owned(),
            by: None,
        });
        if let Some(Event::Reply(answer)) = events.next().await {
            println!("{answer}");
        }
        true
    }

    fn start_over(&self) {
        (self.service).submit(Op::NewConversation {
            chat_id: self.chat_id,
        });
    }

    /// Submits a message and prints what comes back (with `ask`, "Remember this?" too);
    /// false when the turn failed.
    async fn say(&self, text: String, ask: bool, mut input: Option<&mut Input>) -> bool {
        let turn = UserTurn {
            author: Some(Author {
                user_id: 0,
                username: self.username.clone(),
            }),
            ask,
            ..UserTurn::new(self.chat_id, text)
        };
        let mut events = self.service.submit(Op::UserTurn(turn));
        let mut stdout = std::io::stdout().lock();
        let mut printed = false;
        let mut ok = true;
        while let Some(event) = events.next().await {
            match event {
                Event::Queued { position } | Event::WaitingForSlot { position } => {
                    eprintln!("(queued: {position} ahead)")
                }
                Event::MessageStart if printed => {
                    let _ = writeln!(stdout);
                }
                Event::TextDelta(text) => {
                    let _ = write!(stdout, "{text}");
                    let _ = stdout.flush();
                    printed = true;
                }
                Event::Retrying {
                    attempt,
                    max_retries,
                    status,
                    ..
                } => eprintln!(
                    "(Claude API busy{}, retry {attempt} of {max_retries})",
                    status.map(|s| format!(" ({s})")).unwrap_or_default()
                ),
                Event::Final(summary) => {
                    if !printed && !summary.text.is_empty() {
                        let _ = write!(stdout, "{}", summary.text);
                        printed = true;
                    }
                    if printed {
                        let _ = writeln!(stdout);
                    }
                    if !summary.permission_denials.is_empty() {
                        eprintln!(
                            "{}",
                            valor_protocol::TurnErrorKind::ToolDenied.user_message()
                        );
                    }
                    for server in &summary.failed_mcp_servers {
                        eprintln!(
                            "(tool server {server} failed to start: this answer was made without it)"
                        );
                    }
                }
                Event::Failed { error, .. } => {
                    if printed {
                        let _ = writeln!(stdout);
                    }
                    eprintln!("{}", error.user_message());
                    ok = false;
                }
                Event::Refused(text) => {
                    eprintln!("{text}");
                    ok = false;
                }
                Event::Proposal(question) if ask => {
                    let _ = writeln!(stdout, "Remember this? {} [y/n]", question.text);
                }
                Event::Lapsed(question) => {
                    let _ = writeln!(stdout, "(not stored: {})", question.text);
                }
                Event::ApprovalNeeded(approval) => {
                    let _ = stdout.flush();
                    let decision = match input.as_deref_mut() {
                        Some(lines) => ask_at_terminal(&approval, lines).await,
                        None => {
                            eprintln!(
                                "({} needs a person's approval, and a one-off message has nobody to ask: denied. Run `valor chat` to be asked.)",
                                approval.ask.tool
                            );
                            valor_protocol::approval::Decision::Deny
                        }
                    };
                    let mut decided = self.service.submit(Op::Decide {
                        chat_id: self.chat_id,
                        approval: approval.id,
                        decision,
                        by: None,
                    });
                    if let Some(Event::Decided(word)) = decided.next().await {
                        eprintln!("({word})");
                    }
                }
                Event::ApprovalSettled { line, .. } => eprintln!("{line}"),
                Event::Answered(answered) => {
                    let _ = writeln!(stdout, "{}", answered.outcome.unwrap_or(answered.reply));
                }
                _ => {}
            }
        }
        ok
    }
}

/// The terminal's input, a line at a time.
type Input = tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>;

/// Shows an approval whole on stderr and reads the answer (no answer in time, or anything
/// but o, s or d, denies).
async fn ask_at_terminal(
    approval: &valor_protocol::approval::Approval,
    lines: &mut Input,
) -> valor_protocol::approval::Decision {
    use valor_protocol::approval::Decision;
    let ask = &approval.ask;
    eprintln!("Approval needed ({}): {}", ask.tool, ask.sentence);
    eprintln!(
        "----\n{}\n----",
        valor_telegram::approval::visible(&ask.what)
    );
    if let Some(claimed) = &ask.claimed {
        eprintln!(
            "Claude says it is to: {}",
            valor_telegram::approval::visible(claimed)
        );
    }
    let left = approval
        .deadline_ms
        .saturating_sub(valor_protocol::time::now_ms());
    eprint!(
        "Allow? [o]nce, [s]ession (exactly this), [d]eny (no answer in {} s denies): ",
        left / 1000
    );
    let line = tokio::time::timeout(Duration::from_millis(left), lines.next_line()).await;
    match line
        .ok()
        .and_then(Result::ok)
        .flatten()
        .as_deref()
        .map(str::trim)
    {
        Some("o" | "once") => Decision::AllowOnce,
        Some("s" | "session") => Decision::AllowSession,
        _ => Decision::Deny,
    }
}
