//! The watcher against a labelled set of user messages (tests/data/triggers.tsv): positives
//! for each of the ten trigger types and hard negatives. Targets: precision >= 0.9 and recall
//! >= 0.8 at the asking threshold, counting a detection right only with the right type.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use valor_learn::{LearnSettings, Trigger, detect};

#[test]
fn precision_and_recall_on_the_labelled_set() {
    let threshold = LearnSettings::default().ask_threshold;
    let set = include_str!("../data/triggers.tsv");
    let mut rows = 0;
    let (mut true_pos, mut false_pos, mut false_neg) = (0u32, 0u32, 0u32);
    let mut per_type = std::collections::BTreeMap::<&str, usize>::new();
    let mut mistakes = Vec::new();
    for line in set
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (label, text) = line.split_once('\t').expect("label<TAB>text");
        rows += 1;
        let want = match label {
            "none" => None,
            other => Some(Trigger::parse(other).expect("a known trigger")),
        };
        if let Some(t) = want {
            *per_type.entry(t.as_str()).or_default() += 1;
        }
        let got = detect(text)
            .into_iter()
            .find(|d| d.confidence >= threshold)
            .map(|d| d.trigger);
        match (want, got) {
            (Some(w), Some(g)) if w == g => true_pos += 1,
            (Some(w), Some(g)) => {
                false_pos += 1;
                false_neg += 1;
                mistakes.push(format!("{w} read as {g}: {text}"));
            }
            (Some(w), None) => {
                false_neg += 1;
                mistakes.push(format!("{w} missed: {text}"));
            }
            (None, Some(g)) => {
                false_pos += 1;
                mistakes.push(format!("none read as {g}: {text}"));
            }
            (None, None) => {}
        }
    }
    assert!(rows >= 60, "the set has {rows} messages");
    assert_eq!(per_type.len(), 10, "every trigger type has positives");
    assert!(per_type.values().all(|&n| n >= 5), "{per_type:?}");
    let precision = f64::from(true_pos) / f64::from(true_pos + false_pos);
    let recall = f64::from(true_pos) / f64::from(true_pos + false_neg);
    eprintln!(
        "watcher on {rows} messages: precision {precision:.3}, recall {recall:.3}\n{}",
        mistakes.join("\n")
    );
    assert!(precision >= 0.9, "precision {precision:.3}: {mistakes:#?}");
    assert!(recall >= 0.8, "recall {recall:.3}: {mistakes:#?}");
}
