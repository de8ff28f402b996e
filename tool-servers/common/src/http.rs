//! The client external APIs (Perplexity, OpenAI, Notion) are called with: a time limit per
//! attempt, retries with exponential backoff on 429, 5xx and network failures (a 429's
//! `Retry-After` is honoured when it is short, reported when it is long), a cap on the size of an
//! answer, and error messages taken from the service's own error body.

use std::time::Duration;

use serde_json::Value;

use crate::ToolError;

/// How a service is called.
#[derive(Debug, Clone)]
pub struct CallPolicy {
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// The first backoff; each later one doubles.
    pub backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the tool reports it.
    pub max_wait: Duration,
    /// Answers larger than this are refused.
    pub max_body: usize,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            timeout: Duration::from_secs(60),
            retries: 3,
            backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(20),
            max_body: 8 * 1024 * 1024,
        }
    }
}

/// One external service.
#[derive(Debug, Clone)]
pub struct ApiClient {
    service: &'static str,
    client: reqwest::Client,
    policy: CallPolicy,
}

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self, service: &'static str) -> Result<Value, ToolError> {
        serde_json::from_slice(&self.body).map_err(|e| ToolError::Malformed {
            service,
            reason: format!("not JSON ({e})"),
        })
    }
}

impl ApiClient {
    pub fn new(service: &'static str, policy: CallPolicy) -> Result<ApiClient, ToolError> {
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("valor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ToolError::Unreachable {
                service,
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(ApiClient {
            service,
            client,
            policy,
        })
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Sends the request `build` makes (again for each attempt) and returns the answer of the
    /// first attempt that succeeds.
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Answer, ToolError> {
        let service = self.service;
        let mut attempt = 0;
        loop {
            let (error, wait) = match self.attempt(&build).await {
                Ok(answer) => return Ok(answer),
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::Retry { error, wait }) => (error, wait),
            };
            if attempt >= self.policy.retries {
                return Err(error);
            }
            let wait = wait.unwrap_or(self.policy.backoff * 2u32.saturating_pow(attempt));
            if wait > self.policy.max_wait {
                return Err(ToolError::RateLimited {
                    service,
                    retry_after: wait,
                });
            }
            attempt += 1;
            tracing::warn!(
                service,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// `send`, expecting JSON.
    pub async fn send_json(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Value, ToolError> {
        self.send(build).await?.json(self.service)
    }

    async fn attempt(
        &self,
        build: &impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Answer, Failure> {
        let service = self.service;
        let mut response = build(&self.client)
            .send()
            .await
            .map_err(|e| Failure::Retry {
                error: ToolError::Unreachable {
                    service,
                    reason: describe(&e),
                },
                wait: None,
            })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|s| Duration::from_secs_f64(s.clamp(0.0, 86_400.0)));
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.policy.max_body {
                        return Err(Failure::Final(ToolError::Malformed {
                            service,
                            reason: format!(
                                "the answer is larger than {} KB",
                                self.policy.max_body / 1024
                            ),
                        }));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Failure::Retry {
                        error: ToolError::Unreachable {
                            service,
                            reason: describe(&e),
                        },
                        wait: None,
                    });
                }
            }
        }
        if (200..300).contains(&status) {
            return Ok(Answer {
                status,
                content_type,
                body,
            });
        }
        let error = ToolError::Api {
            service,
            status,
            message: error_message(status, &body),
        };
        if status == 429 {
            let wait = retry_after.unwrap_or(self.policy.backoff);
            if wait > self.policy.max_wait {
                return Err(Failure::Final(ToolError::RateLimited {
                    service,
                    retry_after: wait,
                }));
            }
            return Err(Failure::Retry {
                error: ToolError::RateLimited {
                    service,
                    retry_after: wait,
                },
                wait: Some(wait),
            });
        }
        if status >= 500 {
            return Err(Failure::Retry { error, wait: None });
        }
        Err(Failure::Final(error))
    }
}

enum Failure {
    Retry {
        error: ToolError,
        wait: Option<Duration>,
    },
    Final(ToolError),
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "no answer in time".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        error.to_string()
    }
}

/// The service's own words for an error: `error.message` (OpenAI, Perplexity), `message`
/// (Notion), else the start of the body.
pub fn error_message(status: u16, body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let from_json = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .or_else(|| v.get("detail"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let text = from_json.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            match status {
                401 => "the key was refused".to_owned(),
                403 => "access denied".to_owned(),
                404 => "not found".to_owned(),
                _ => "no details given".to_owned(),
            }
        } else {
            text.chars().take(300).collect()
        }
    });
    match status {
        401 => format!("the key was refused ({text})"),
        _ => text,
    }
}
