//! Long-term memory's tests, one test program: memory with the tiny model, and with the real one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod disclosure;
mod in_memory;
mod memory;
mod real_model;
