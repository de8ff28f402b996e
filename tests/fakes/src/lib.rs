//! Fakes of the services Valor talks to, for tests. Each listens on 127.0.0.1 and behaves like
//! the real service, limits and error texts included.
//!
//! - [`anthropic`]: the Anthropic Messages API (SSE and non-streaming), scripted per test.
//! - [`corpus`]: chat-like sentences from templates, for memory tests and benchmarks.
//! - [`telegram`]: the Telegram Bot API with its flood limits, length limit and error texts.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod anthropic;
pub mod corpus;
pub mod telegram;
