//! The social tool server's tests, one test program: the tools against wiremock, MCP in process and hosted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mcp;
mod social;
