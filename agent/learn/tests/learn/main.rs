//! Learning's tests, one test program: the watcher on the labelled set, the learner.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod learner;
mod watcher_set;
