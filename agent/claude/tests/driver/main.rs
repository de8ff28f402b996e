//! The Claude Code driver's tests, one test program: the codec on recorded fixtures, process faults with fake programs, the real CLI against the fake API (sandboxed), warm processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod codec_fixtures;
mod hostile;
mod process_faults;
mod real_cli;
mod spend;
mod support;
mod warm;
