//! Learning's tests, one test program: the watcher on the labelled sets, the learner.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod in_memory;
mod learner;
mod watcher_set;

fn model() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
}
