//! The stream-json codec: Claude Code prints one JSON object per line on stdout. Lines are read
//! with a bound (a 10 MB line costs at most the bound in memory) and parsed into [`CliEvent`]s.
//! Unknown types and fields are tolerated; malformed lines are skipped and counted.

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest line kept. Longer lines are dropped (and counted), never buffered whole.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// An MCP server as `system/init` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpServerStatus {
    pub name: String,
    /// `connected`, `failed`, `pending`, ...
    pub status: String,
}

/// One content block of an `assistant` message.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    Thinking(String),
    Other(String),
}

/// A tool result reported back to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub tool_use_id: String,
    pub content: String,
    pub is_error: bool,
}

/// The final `result` event of a turn.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CliResult {
    pub subtype: String,
    pub is_error: bool,
    pub api_error_status: Option<u16>,
    pub result: Option<String>,
    pub num_turns: u32,
    pub duration_ms: u64,
    pub duration_api_ms: u64,
    pub session_id: String,
    pub total_cost_usd: f64,
    pub usage: valor_protocol::Usage,
    /// Names of tools the model was not allowed to use.
    pub permission_denials: Vec<String>,
    pub errors: Vec<String>,
}

/// A parsed stdout line.
#[derive(Debug, Clone, PartialEq)]
pub enum CliEvent {
    Init {
        session_id: String,
        model: String,
        tools: Vec<String>,
        mcp_servers: Vec<McpServerStatus>,
    },
    /// `system/status`: a new API request begins.
    Status,
    ApiRetry {
        attempt: u32,
        max_retries: u32,
        retry_delay_ms: u64,
        error_status: Option<u16>,
        error: Option<String>,
    },
    /// A new model message begins (partial messages only), with what its input cost.
    MessageStart {
        model: String,
        usage: valor_protocol::Usage,
    },
    /// A model message ends (partial messages only): its output tokens, all of them.
    MessageDelta {
        output_tokens: u64,
    },
    /// The account's usage window as the API reported it (subscription logins): `status`
    /// `allowed`, `allowed_warning` or `rejected`.
    RateLimit {
        status: String,
        resets_at_ms: Option<u64>,
        window: String,
    },
    /// Token-level text (partial messages only).
    TextDelta(String),
    ThinkingDelta(String),
    /// A whole assistant block; `synthetic` when the CLI made it up (API errors).
    Assistant {
        blocks: Vec<Block>,
        synthetic: bool,
    },
    ToolResults(Vec<ToolResult>),
    Result(CliResult),
    /// A line of a type (or stream event) this codec does not use.
    Other(String),
}

/// Why a line was not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line is not JSON: {0}")]
    NotJson(String),
    #[error("line is JSON but has no string `type`")]
    NoType,
    #[error("line of {0} bytes is over the limit")]
    TooLong(usize),
}

fn str_of(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .or_else(|| v[key].as_f64().map(|f| f.max(0.0) as u64))
        .unwrap_or(0)
}

fn usage_of(usage: &Value) -> valor_protocol::Usage {
    valor_protocol::Usage {
        input_tokens: u64_of(usage, "input_tokens"),
        output_tokens: u64_of(usage, "output_tokens"),
        cache_read_input_tokens: u64_of(usage, "cache_read_input_tokens"),
        cache_creation_input_tokens: u64_of(usage, "cache_creation_input_tokens"),
    }
}

fn status_of(v: &Value) -> Option<u16> {
    v.as_u64().and_then(|s| u16::try_from(s).ok())
}

/// Text of a tool result's `content`: a string, or a list of blocks whose text is joined.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Parses one stdout line.
pub fn parse_line(line: &[u8]) -> Result<CliEvent, LineError> {
    let v: Value = serde_json::from_slice(line).map_err(|e| LineError::NotJson(e.to_string()))?;
    let kind = v["type"].as_str().ok_or(LineError::NoType)?;
    Ok(match kind {
        "system" => match v["subtype"].as_str().unwrap_or_default() {
            "init" => CliEvent::Init {
                session_id: str_of(&v, "session_id"),
                model: str_of(&v, "model"),
                tools: v["tools"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect(),
                mcp_servers: v["mcp_servers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| McpServerStatus {
                        name: str_of(s, "name"),
                        status: str_of(s, "status"),
                    })
                    .collect(),
            },
            "status" => CliEvent::Status,
            "api_retry" => CliEvent::ApiRetry {
                attempt: u64_of(&v, "attempt") as u32,
                max_retries: u64_of(&v, "max_retries") as u32,
                retry_delay_ms: u64_of(&v, "retry_delay_ms"),
                error_status: status_of(&v["error_status"]),
                error: v["error"].as_str().map(str::to_owned),
            },
            other => CliEvent::Other(format!("system/{other}")),
        },
        "stream_event" => {
            let event = &v["event"];
            match event["type"].as_str().unwrap_or_default() {
                "message_start" => CliEvent::MessageStart {
                    model: str_of(&event["message"], "model"),
                    usage: usage_of(&event["message"]["usage"]),
                },
                "message_delta" if event["usage"]["output_tokens"].is_number() => {
                    CliEvent::MessageDelta {
                        output_tokens: u64_of(&event["usage"], "output_tokens"),
                    }
                }
                "content_block_delta" => {
                    let delta = &event["delta"];
                    match delta["type"].as_str().unwrap_or_default() {
                        "text_delta" => CliEvent::TextDelta(str_of(delta, "text")),
                        "thinking_delta" => CliEvent::ThinkingDelta(str_of(delta, "thinking")),
                        other => CliEvent::Other(format!("stream_event/{other}")),
                    }
                }
                other => CliEvent::Other(format!("stream_event/{other}")),
            }
        }
        "assistant" => {
            let message = &v["message"];
            let blocks = message["content"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| match b["type"].as_str().unwrap_or_default() {
                    "text" => Block::Text(str_of(b, "text")),
                    "tool_use" => Block::ToolUse {
                        id: str_of(b, "id"),
                        name: str_of(b, "name"),
                        input: b["input"].clone(),
                    },
                    "thinking" => Block::Thinking(str_of(b, "thinking")),
                    other => Block::Other(other.to_owned()),
                })
                .collect();
            CliEvent::Assistant {
                blocks,
                synthetic: message["model"] == "<synthetic>",
            }
        }
        "user" => CliEvent::ToolResults(
            v["message"]["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| b["type"] == "tool_result")
                .map(|b| ToolResult {
                    tool_use_id: str_of(b, "tool_use_id"),
                    content: content_text(&b["content"]),
                    is_error: b["is_error"].as_bool().unwrap_or(false),
                })
                .collect(),
        ),
        "rate_limit_event" => {
            let info = &v["rate_limit_info"];
            CliEvent::RateLimit {
                status: str_of(info, "status"),
                resets_at_ms: info["resetsAt"].as_u64().map(|s| s.saturating_mul(1000)),
                window: str_of(info, "rateLimitType"),
            }
        }
        "result" => CliEvent::Result(CliResult {
            subtype: str_of(&v, "subtype"),
            is_error: v["is_error"].as_bool().unwrap_or(false),
            api_error_status: status_of(&v["api_error_status"]),
            result: v["result"].as_str().map(str::to_owned),
            num_turns: u64_of(&v, "num_turns") as u32,
            duration_ms: u64_of(&v, "duration_ms"),
            duration_api_ms: u64_of(&v, "duration_api_ms"),
            session_id: str_of(&v, "session_id"),
            total_cost_usd: v["total_cost_usd"].as_f64().unwrap_or(0.0),
            usage: usage_of(&v["usage"]),
            permission_denials: v["permission_denials"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| str_of(d, "tool_name"))
                .collect(),
            errors: v["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect(),
        }),
        other => CliEvent::Other(other.to_owned()),
    })
}

/// Reads lines with a length bound.
pub struct LineReader<R> {
    inner: R,
    max: usize,
    buf: Vec<u8>,
}

/// One line, or the size of one that was too long.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Complete(Vec<u8>),
    TooLong(usize),
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            max,
            buf: Vec::new(),
        }
    }

    /// The next line without its newline; `None` at end of input.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        let mut dropped: Option<usize> = None;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(match dropped {
                    Some(n) => Some(Line::TooLong(n)),
                    None if self.buf.is_empty() => None,
                    None => Some(Line::Complete(std::mem::take(&mut self.buf))),
                });
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let take = newline.unwrap_or(available.len());
            match &mut dropped {
                Some(n) => *n += take,
                None if self.buf.len() + take > self.max => {
                    dropped = Some(self.buf.len() + take);
                    self.buf = Vec::new();
                }
                None => self.buf.extend_from_slice(&available[..take]),
            }
            let consumed = take + usize::from(newline.is_some());
            self.inner.consume(consumed);
            if newline.is_some() {
                return Ok(Some(match dropped {
                    Some(n) => Line::TooLong(n),
                    None => Line::Complete(std::mem::take(&mut self.buf)),
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_over_the_bound_are_dropped_without_buffering() {
        let mut input = b"{\"a\":1}\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
        input.extend(b"\nlast-without-newline");
        let reader = tokio::io::BufReader::with_capacity(64 * 1024, &input[..]);
        let mut lines = LineReader::new(reader, 1024);
        assert_eq!(
            lines.next_line().await.unwrap(),
            Some(Line::Complete(b"{\"a\":1}".to_vec()))
        );
        assert_eq!(
            lines.next_line().await.unwrap(),
            Some(Line::TooLong(10 * 1024 * 1024))
        );
        assert!(
            lines.buf.capacity() <= 1024 + 64 * 1024,
            "buffer grew to {}",
            lines.buf.capacity()
        );
        assert_eq!(
            lines.next_line().await.unwrap(),
            Some(Line::Complete(b"last-without-newline".to_vec()))
        );
        assert_eq!(lines.next_line().await.unwrap(), None);
    }

    #[test]
    fn malformed_and_typeless_lines_are_errors() {
        assert!(matches!(
            parse_line(b"{not json"),
            Err(LineError::NotJson(_))
        ));
        assert!(matches!(
            parse_line(&[0xff, 0xfe, 0x00]),
            Err(LineError::NotJson(_))
        ));
        assert_eq!(parse_line(b"{\"x\":1}"), Err(LineError::NoType));
        assert_eq!(
            parse_line(b"{\"type\":\"brand_new\",\"x\":1}"),
            Ok(CliEvent::Other("brand_new".to_owned()))
        );
    }
}
