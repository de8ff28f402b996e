//! Learning from the command line: `valor learnings train` from a labelled file, weights a
//! running Valor loads, and broken files that get a clear error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{output, valor};

/// A tiny labelled set: enough to train on, not to be good.
const TINY: &str = "switching\tWe moved from Jenkins to Buildkite.\n\
switching\tWe replaced Webpack with Vite.\n\
bug_fixed\tThe login crash is fixed.\n\
bug_fixed\tI fixed the parser bug.\n\
none\tGood morning!\n\
none\tCan you look at this?\n";

#[test]
fn train_measures_on_the_held_out_file_and_writes_weights() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.tsv"), TINY).unwrap();
    let (out, stdout, stderr) = output(valor(dir.path()).args([
        "learnings",
        "train",
        "--data",
        "tiny.tsv",
        "--held-out",
        "tiny.tsv",
        "--out",
        "mine.weights",
    ]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("training file: asking: precision"),
        "{stdout}"
    );
    assert!(stdout.contains("held out: asking: precision"), "{stdout}");
    let weights = std::fs::read(dir.path().join("mine.weights")).unwrap();
    assert!(weights.starts_with(b"VLRNWD01"), "a weights file");

    // The shipped sets, by default: the held-out figures a user sees are the test's.
    let (out, stdout, stderr) =
        output(valor(dir.path()).args(["learnings", "train", "--out", "shipped.weights"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("on 230 messages"), "{stdout}");
    // The weights Valor ships are the ones this command writes (trained on fp32 vectors).
    let shipped = std::fs::read(dir.path().join("shipped.weights")).unwrap();
    let committed = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("agent/learn/data/watcher.weights"),
    )
    .unwrap();
    assert_eq!(shipped.len(), committed.len());
    assert_eq!(
        shipped[..48],
        committed[..48],
        "same header and training file hash"
    );
}

#[test]
fn broken_training_files_and_weights_get_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.tsv"), "switching We moved\n").unwrap();
    let (out, _, stderr) =
        output(valor(dir.path()).args(["learnings", "train", "--data", "bad.tsv"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("line 1: not <label> TAB <message>"),
        "{stderr}"
    );
    let (out, _, stderr) =
        output(valor(dir.path()).args(["learnings", "train", "--data", "missing.tsv"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("cannot read missing.tsv"), "{stderr}");

    std::fs::write(dir.path().join("broken.weights"), b"not weights").unwrap();
    let (out, _, stderr) = output(valor(dir.path()).args(["chat", "--once", "hello"]).env(
        "VALOR__LEARNING__WATCHER_WEIGHTS",
        dir.path().join("broken.weights"),
    ));
    assert!(!out.status.success());
    assert!(stderr.contains("[learning] watcher_weights"), "{stderr}");
}
