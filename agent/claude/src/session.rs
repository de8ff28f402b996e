//! One Claude Code process and the reading of a turn from it.

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use valor_monitor::ChildRegistry;
use valor_protocol::{Event, ToolCallRecord};

use crate::ClaudeError;
use crate::codec::{Block, CliEvent, CliResult, Line, LineReader, MAX_LINE_BYTES, parse_line};
use crate::failure::Stop;
use crate::jail::Jail;
use crate::process::{ProcessGroup, terminate};
use crate::spawn::{McpConfigFile, SpawnSpec, user_message_line};

/// Bytes of stderr kept for error details.
const STDERR_TAIL: usize = 8 * 1024;

/// Time limits of one turn.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub total: Duration,
    pub idle: Duration,
    pub grace: Duration,
}

/// What reading one turn found.
#[derive(Debug, Default)]
pub struct TurnRead {
    pub result: Option<CliResult>,
    pub stop: Option<Stop>,
    /// stdout closed before a result.
    pub ended: bool,
    pub session_id: Option<String>,
    pub model: Option<String>,
    pub failed_mcp_servers: Vec<String>,
    pub tool_calls: Vec<ToolCallRecord>,
    pub malformed_lines: u64,
    pub oversized_lines: u64,
    /// Tool names by tool-use id, to name the results.
    tool_names: std::collections::HashMap<String, String>,
    /// Each tool call's input as JSON (redacted and cut), by tool-use id, in call order.
    pub tool_inputs: Vec<(String, String)>,
    /// Each tool call's input in short, by tool-use id.
    tool_summaries: std::collections::HashMap<String, String>,
    /// Each model message's tokens (model, usage), in order: what a run that never reached
    /// its result still cost.
    pub messages: Vec<(String, valor_protocol::Usage)>,
    /// The account's usage window as the API last reported it: (status, reset in Unix ms).
    pub rate_limit: Option<(String, Option<u64>)>,
}

impl TurnRead {
    /// The tokens of every model message, summed.
    pub fn messages_usage(&self) -> valor_protocol::Usage {
        let mut total = valor_protocol::Usage::default();
        for (_, u) in &self.messages {
            total.input_tokens += u.input_tokens;
            total.output_tokens += u.output_tokens;
            total.cache_read_input_tokens += u.cache_read_input_tokens;
            total.cache_creation_input_tokens += u.cache_creation_input_tokens;
        }
        total
    }
}

/// The tool calls of a turn whose whole input is kept for its page (the rest in short).
const TOOL_INPUTS_KEPT: usize = 100;
/// The most of a tool call's input kept for its turn's page.
pub const TOOL_INPUT_KEPT: usize = 4 * 1024;
/// The most of it kept with the run's figures (the Turns list shows this).
const TOOL_INPUT_SHORT: usize = 200;

/// A tool call's input in short: the one field that says what it does (the command, the
/// path, the pattern, the query, the address), else the JSON; redacted, on one line.
fn input_summary(input: &serde_json::Value) -> String {
    const TELLING: [&str; 8] = [
        "command",
        "file_path",
        "path",
        "pattern",
        "query",
        "url",
        "prompt",
        "description",
    ];
    let telling = (TELLING.iter()).find_map(|key| input.get(*key)?.as_str());
    let text = match telling {
        Some(text) => text.to_owned(),
        None => input.to_string(),
    };
    let line: String = (text.chars())
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    valor_redact::redact_cut(&line, TOOL_INPUT_SHORT)
}

/// A running Claude Code process (the leader of its own process group).
pub struct ClaudeProcess {
    child: Child,
    group: ProcessGroup,
    stdin: Option<ChildStdin>,
    lines: LineReader<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    stderr_task: tokio::task::JoinHandle<()>,
    /// The MCP config file of an unsandboxed process (a sandbox gets it as data, no file).
    _mcp_config: Option<McpConfigFile>,
    /// Its sandbox, when it runs in one.
    jail: Option<Jail>,
    /// What it was started with, to decide whether a later turn may reuse it.
    pub spec: SpawnSpec,
    pub session_id: Option<String>,
    pub last_used: Instant,
    pub turns: u64,
    /// The `total_cost_usd` of its last result: the CLI reports the whole process's cost so
    /// far, so a turn's own is the difference.
    cost_reported: f64,
}

impl std::fmt::Debug for ClaudeProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaudeProcess")
            .field("pgid", &self.group.pgid())
            .field("session_id", &self.session_id)
            .finish()
    }
}

impl ClaudeProcess {
    /// Takes charge of a started process (its sandbox, or its MCP config file, with it).
    pub async fn adopt(
        mut child: Child,
        jail: Option<Jail>,
        mcp_config: Option<McpConfigFile>,
        spec: SpawnSpec,
        chat_id: i64,
        children: &ChildRegistry,
        store: &crate::ledger::Ledger,
    ) -> Result<ClaudeProcess, ClaudeError> {
        let pid = child.id().ok_or_else(|| {
            ClaudeError::Pipe(std::io::Error::other("the process exited at once"))
        })?;
        let group = ProcessGroup::adopt(pid, "claude", Some(chat_id), children, Some(store)).await;
        let missing = |what| ClaudeError::Pipe(std::io::Error::other(format!("no {what} pipe")));
        let stdout = child.stdout.take().ok_or_else(|| missing("stdout"))?;
        let stdin = child.stdin.take().ok_or_else(|| missing("stdin"))?;
        let stderr_pipe = child.stderr.take().ok_or_else(|| missing("stderr"))?;
        let stderr = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let stderr_task = tokio::spawn(collect_tail(stderr_pipe, Arc::clone(&stderr)));
        tracing::debug!(pgid = pid, chat_id, resume = ?spec.resume, model = ?spec.model, "claude started");
        Ok(ClaudeProcess {
            child,
            group,
            stdin: Some(stdin),
            lines: LineReader::new(BufReader::with_capacity(64 * 1024, stdout), MAX_LINE_BYTES),
            stderr,
            stderr_task,
            _mcp_config: mcp_config,
            jail,
            session_id: spec.resume.clone(),
            spec,
            last_used: Instant::now(),
            turns: 0,
            cost_reported: 0.0,
        })
    }

    pub fn pgid(&self) -> u32 {
        self.group.pgid()
    }

    /// Sends a prompt; with `close`, stdin is closed after it and the process exits after the
    /// turn.
    pub async fn send(&mut self, prompt: &str, close: bool) -> Result<(), ClaudeError> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| ClaudeError::Pipe(std::io::Error::other("stdin already closed")))?;
        stdin
            .write_all(user_message_line(prompt).as_bytes())
            .await
            .map_err(ClaudeError::Pipe)?;
        stdin.flush().await.map_err(ClaudeError::Pipe)?;
        if close {
            self.stdin = None;
        }
        Ok(())
    }

    /// A turn begins (its sandbox's API token counts from now).
    pub fn begin_turn(&mut self) {
        if let Some(jail) = &mut self.jail {
            jail.begin_turn();
        }
    }

    /// A turn is over: its token stops counting, what it left running in the sandbox ends.
    pub async fn end_turn(&mut self) {
        if let Some(jail) = &mut self.jail {
            jail.end_turn().await;
        }
    }

    /// Whether it runs in a sandbox.
    pub fn sandboxed(&self) -> bool {
        self.jail.is_some()
    }

    /// Whether the process has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Reads one turn's events, forwarding them to `tx`, until the result, the end of output,
    /// a time limit or cancellation.
    pub async fn read_turn(
        &mut self,
        tx: &mpsc::Sender<Event>,
        limits: Limits,
        cancel: &CancellationToken,
        waiting_for_person: &(dyn Fn() -> bool + Sync),
    ) -> TurnRead {
        let mut read = TurnRead::default();
        let total_deadline = Instant::now() + limits.total;
        let mut idle_deadline = Instant::now() + limits.idle;
        // A person was deciding during this silence: the CLI gets a whole idle window after.
        let mut person_was_deciding = false;
        let sandboxed = self.jail.is_some();
        let mut watch = tokio::time::interval(crate::jail::WATCH_EVERY);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = total_deadline.min(idle_deadline);
            let line = tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    read.stop = Some(Stop::Cancelled);
                    break;
                }
                () = tokio::time::sleep_until(deadline) => {
                    // Silent while a person decides on an approval: not a stalled turn (nor
                    // in the first idle window after the answer).
                    if deadline != total_deadline
                        && (waiting_for_person() || std::mem::take(&mut person_was_deciding))
                    {
                        person_was_deciding |= waiting_for_person();
                        idle_deadline = Instant::now() + limits.idle;
                        continue;
                    }
                    read.stop = Some(if deadline == total_deadline {
                        Stop::TotalTimeout(limits.total)
                    } else {
                        Stop::IdleTimeout(limits.idle)
                    });
                    break;
                }
                _ = watch.tick(), if sandboxed => None,
                line = self.lines.next_line() => Some(line),
            };
            let Some(line) = line else {
                // A limit the sandbox went over ends the turn, with what it was.
                if let Some(hit) = self.check_limits().await {
                    read.stop = Some(Stop::Limit(hit.kind, hit.detail));
                    break;
                }
                continue;
            };
            idle_deadline = Instant::now() + limits.idle;
            let bytes = match line {
                Ok(Some(Line::Complete(bytes))) => bytes,
                Ok(Some(Line::TooLong(n))) => {
                    read.oversized_lines += 1;
                    tracing::warn!(bytes = n, "skipped an over-long line from claude");
                    continue;
                }
                Ok(None) | Err(_) => {
                    read.ended = true;
                    // The CLI itself may be what the kernel ended for memory.
                    if let Some(hit) = self.check_limits().await {
                        read.stop = Some(Stop::Limit(hit.kind, hit.detail));
                    }
                    break;
                }
            };
            let event = match parse_line(&bytes) {
                Ok(event) => event,
                Err(e) => {
                    read.malformed_lines += 1;
                    tracing::debug!(error = %e, "skipped a malformed line from claude");
                    continue;
                }
            };
            let is_result = matches!(event, CliEvent::Result(_));
            if matches!(event, CliEvent::Init { .. })
                && let Some(jail) = &mut self.jail
            {
                jail.note_residents().await;
            }
            // A turn that used no tool wrote nothing: its workspace's size is not looked at.
            let used_tools = !read.tool_calls.is_empty();
            if is_result
                && let Some(jail) = &mut self.jail
                && let Some(hit) = jail.check_all(used_tools).await
            {
                // Over a limit by the end (a file that filled the workspace): said, not hidden
                // behind an answer.
                read.stop = Some(Stop::Limit(hit.kind, hit.detail));
                break;
            }
            for turn_event in self.translate(event, &mut read) {
                if tx.send(turn_event).await.is_err() {
                    // Nobody listens any more: the turn is abandoned.
                    read.stop = Some(Stop::Cancelled);
                    return read;
                }
            }
            if is_result {
                break;
            }
        }
        // Behind the proxy the CLI does not know its login's usage window: the proxy saw it.
        if let Some((status, resets_at_ms)) = self.jail.as_ref().and_then(Jail::usage_window)
            && read.rate_limit.is_none()
        {
            read.rate_limit = Some((status.clone(), resets_at_ms));
            let window = "subscription".to_owned();
            let _ = (tx.send(Event::UsageWindow {
                status,
                resets_at_ms,
                window,
            }))
            .await;
        }
        self.last_used = Instant::now();
        read
    }

    async fn check_limits(&mut self) -> Option<crate::jail::LimitHit> {
        match &mut self.jail {
            Some(jail) => jail.check().await,
            None => None,
        }
    }

    fn translate(&mut self, event: CliEvent, read: &mut TurnRead) -> Vec<Event> {
        match event {
            CliEvent::Init {
                session_id,
                model,
                mcp_servers,
                ..
            } => {
                let failed: Vec<String> = mcp_servers
                    .into_iter()
                    .filter(|s| s.status == "failed")
                    .map(|s| s.name)
                    .collect();
                for name in &failed {
                    tracing::warn!(server = %name, "MCP server failed to start: this turn runs without its tools");
                }
                self.session_id = Some(session_id.clone());
                read.session_id = Some(session_id.clone());
                read.model = Some(model.clone());
                read.failed_mcp_servers = failed.clone();
                vec![Event::Started {
                    session_id,
                    model,
                    failed_mcp_servers: failed,
                }]
            }
            CliEvent::MessageStart { model, usage } => {
                let message = read.messages.len() as u32;
                read.messages.push((model.clone(), usage.clone()));
                vec![
                    Event::MessageStart,
                    Event::Usage {
                        message,
                        model,
                        usage,
                    },
                ]
            }
            CliEvent::MessageDelta { output_tokens } => match read.messages.len().checked_sub(1) {
                Some(last) => {
                    let (model, usage) = &mut read.messages[last];
                    usage.output_tokens = output_tokens;
                    vec![Event::Usage {
                        message: last as u32,
                        model: model.clone(),
                        usage: usage.clone(),
                    }]
                }
                None => Vec::new(),
            },
            CliEvent::RateLimit {
                status,
                resets_at_ms,
                window,
            } => {
                read.rate_limit = Some((status.clone(), resets_at_ms));
                vec![Event::UsageWindow {
                    status,
                    resets_at_ms,
                    window,
                }]
            }
            CliEvent::TextDelta(text) => vec![Event::TextDelta(text)],
            CliEvent::Assistant { blocks, synthetic } => blocks
                .into_iter()
                .filter_map(|block| match block {
                    // A synthetic message is the CLI's own error text, not an answer.
                    Block::Text(text) if !synthetic => Some(Event::Text(text)),
                    Block::ToolUse { id, name, input } => {
                        read.tool_names.insert(id.clone(), name.clone());
                        if read.tool_inputs.len() < TOOL_INPUTS_KEPT {
                            let json =
                                valor_redact::redact_cut(&input.to_string(), TOOL_INPUT_KEPT);
                            read.tool_inputs.push((id.clone(), json));
                        }
                        read.tool_summaries
                            .insert(id.clone(), input_summary(&input));
                        Some(Event::ToolCall { id, name, input })
                    }
                    _ => None,
                })
                .collect(),
            CliEvent::ToolResults(results) => results
                .into_iter()
                .map(|r| {
                    let name = read
                        .tool_names
                        .get(&r.tool_use_id)
                        .cloned()
                        .unwrap_or_default();
                    let input =
                        (read.tool_summaries.get(&r.tool_use_id).cloned()).unwrap_or_default();
                    read.tool_calls.push(ToolCallRecord {
                        id: r.tool_use_id.clone(),
                        name,
                        ok: !r.is_error,
                        input,
                    });
                    Event::ToolResult {
                        id: r.tool_use_id,
                        ok: !r.is_error,
                        content: r.content,
                    }
                })
                .collect(),
            CliEvent::ApiRetry {
                attempt,
                max_retries,
                retry_delay_ms,
                error_status,
                ..
            } => vec![Event::Retrying {
                attempt,
                max_retries,
                delay_ms: retry_delay_ms,
                status: error_status,
            }],
            CliEvent::Result(mut result) => {
                if !result.session_id.is_empty() {
                    self.session_id = Some(result.session_id.clone());
                }
                // A warm process's figure is its total so far: this turn's is what it added.
                let total = result.total_cost_usd;
                result.total_cost_usd = (total - self.cost_reported).max(0.0);
                self.cost_reported = total;
                read.result = Some(result);
                Vec::new()
            }
            CliEvent::Status | CliEvent::ThinkingDelta(_) | CliEvent::Other(_) => Vec::new(),
        }
    }

    /// After a result: waits up to `grace` for the process to exit by itself (stdin closed),
    /// then stops the group.
    pub async fn finish(mut self, grace: Duration) -> Ended {
        self.stdin = None;
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                let exit = status.ok();
                self.ended(exit).await
            }
            Err(_) => self.stop(grace).await,
        }
    }

    /// Stops the whole group: SIGTERM, SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) -> Ended {
        self.stdin = None;
        let child = &mut self.child;
        terminate(&self.group, grace, child.wait()).await;
        let exit = self.child.try_wait().ok().flatten();
        self.ended(exit).await
    }

    /// Ends the group and collects the rest of stderr.
    async fn ended(self, exit: Option<ExitStatus>) -> Ended {
        let self_sandboxed = self.jail.is_some();
        let ClaudeProcess {
            group,
            stderr,
            stderr_task,
            jail,
            ..
        } = self;
        // bubblewrap reports a program killed by signal N as exit code 128 + N: say it as the
        // signal, as an unsandboxed run would.
        let exit = match (&self_sandboxed, exit) {
            (true, Some(status)) => Some(unwrap_sandbox_status(status)),
            (_, exit) => exit,
        };
        // Dropping the group kills what is left of it, which closes stderr.
        let pgid = group.pgid();
        drop(group);
        // Its cgroup (and whatever is still in it) goes with it.
        drop(jail);
        if self_sandboxed && !crate::process::wait_group_gone(pgid, Duration::from_secs(2)).await {
            tracing::warn!(pgid, "the sandbox's processes outlived it by 2 s");
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), stderr_task).await;
        let tail = stderr.lock().unwrap_or_else(PoisonError::into_inner);
        Ended {
            exit,
            stderr: String::from_utf8_lossy(&tail.iter().copied().collect::<Vec<u8>>())
                .into_owned(),
        }
    }
}

/// A sandboxed program's status as bubblewrap passed it on: exit code 128 + N is signal N.
fn unwrap_sandbox_status(status: ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt as _;
    match status.code() {
        Some(code @ 129..=192) => ExitStatus::from_raw(code - 128),
        _ => status,
    }
}

/// How a process ended.
#[derive(Debug)]
pub struct Ended {
    pub exit: Option<ExitStatus>,
    pub stderr: String,
}

async fn collect_tail(mut pipe: tokio::process::ChildStderr, tail: Arc<Mutex<VecDeque<u8>>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.extend(&buf[..n]);
        let excess = tail.len().saturating_sub(STDERR_TAIL);
        tail.drain(..excess);
    }
}

#[cfg(test)]
mod input_tests {
    use super::input_summary;
    use serde_json::json;

    #[test]
    fn a_tool_inputs_summary_is_its_telling_field_on_one_line_redacted_and_cut() {
        assert_eq!(
            input_summary(&json!({"command": "ls -la\n/w", "timeout": 5})),
            "ls -la /w"
        );
        assert_eq!(
            input_summary(&json!({"file_path": "/w/src/main.rs"})),
            "/w/src/main.rs"
        );
        assert_eq!(input_summary(&json!({"text": "hi"})), r#"{"text":"hi"}"#);
        let secret = json!({"command": "curl -H 'Authorization: Bearer abcdefghijklmnopqrstu' x"});
        assert_eq!(
            input_summary(&secret),
            "curl -H 'Authorization: Bearer [redacted]' x"
        );
        let long = input_summary(&json!({"command": "x".repeat(1000)}));
        assert!(
            long.len() < 260 && long.ends_with("more bytes not kept]"),
            "{long}"
        );
    }
}
