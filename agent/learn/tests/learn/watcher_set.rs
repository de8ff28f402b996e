//! The watcher on the labelled sets (data/train.tsv, data/heldout.tsv), with the real
//! embedding model: the held-out part, which training never sees, must reach precision 0.9
//! and recall 0.85 in asking about what is worth asking; the committed weights must come back
//! from the training file; the rules alone are measured beside.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use valor_embed::Embedder;
use valor_learn::LearnSettings;
use valor_learn::classifier::hash_of;
use valor_learn::detector::{self, Blend, Detector, HELD_OUT_SET, TRAINING_SET, labelled};
use valor_learn::evaluate::{Score, score};

fn embedder() -> Embedder {
    Embedder::load(&super::model()).expect("the embedding model (scripts/setup installs it)")
}

/// The builtin detector and the rules alone on a set.
fn measure(embedder: &Embedder, set: &str) -> (Score, Score) {
    let rows = labelled(set).unwrap();
    let texts: Vec<&str> = rows.iter().map(|r| r.1).collect();
    let vectors: Vec<Option<Vec<f32>>> = embedder
        .embed(&texts)
        .unwrap()
        .into_iter()
        .map(Some)
        .collect();
    let embed = |texts: &[&str]| embedder.embed(texts).ok();
    let threshold = LearnSettings::default().ask_threshold;
    let both = score(Detector::builtin(), &rows, &vectors, &embed, threshold);
    let rules = Detector::new(None, Blend::default());
    let alone = score(&rules, &rows, &vec![None; rows.len()], &embed, threshold);
    (both, alone)
}

#[test]
fn the_held_out_part_reaches_the_targets_and_beats_the_rules_alone() {
    let embedder = embedder();
    let (held, rules) = measure(&embedder, HELD_OUT_SET);
    let (train, _) = measure(&embedder, TRAINING_SET);
    eprintln!(
        "held out: {held}\nheld out, rules alone: {rules}\ntraining file (trained on): {train}\n{}",
        held.mistakes.join("\n")
    );
    assert!(held.messages >= 100, "{held}");
    assert!(held.ask_precision() >= 0.9, "{held}: {:#?}", held.mistakes);
    assert!(held.ask_recall() >= 0.85, "{held}: {:#?}", held.mistakes);
    // The type is named right for most: a floor that catches a regression.
    assert!(held.type_accuracy() >= 0.75, "{held}");
    assert!(
        held.ask_recall() > rules.ask_recall() + 0.3,
        "{held} vs {rules}"
    );
}

#[test]
fn the_sets_are_large_enough_and_apart() {
    let train = labelled(TRAINING_SET).unwrap();
    let held = labelled(HELD_OUT_SET).unwrap();
    assert!(train.len() + held.len() >= 300);
    for trigger in valor_learn::Trigger::ALL {
        let n = train.iter().filter(|r| r.0 == Some(trigger)).count();
        assert!(n >= 20, "{trigger}: {n} training examples");
    }
    assert!(train.iter().filter(|r| r.0.is_none()).count() >= 100);
    for (_, text) in &held {
        assert!(
            !train.iter().any(|(_, t)| t == text),
            "held out but trained on: {text}"
        );
    }
}

#[test]
fn the_committed_weights_come_back_from_the_training_file() {
    let embedder = embedder();
    let committed = Detector::builtin().classifier().expect("the weights load");
    assert_eq!(
        committed.trained_on,
        hash_of(TRAINING_SET),
        "the weights are not from this training file: run `valor learnings train`"
    );
    let embed = |texts: &[&str]| embedder.embed(texts).ok();
    let retrained = detector::train(TRAINING_SET, &embed).unwrap();
    // Equal up to the float rounding of another CPU's embedding kernels.
    let difference = retrained.max_difference(committed);
    assert!(
        difference < 1e-3,
        "the retrained weights differ by {difference}"
    );
}
