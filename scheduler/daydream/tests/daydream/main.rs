//! The daydream's tests, one test program: whole runs, workspace context.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daydream;
mod workspace;
