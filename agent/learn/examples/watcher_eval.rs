//! `cargo run -p valor-learn --example watcher_eval --release`: the watcher on the labelled
//! sets, rules alone and with the classifier: 5-fold cross-validation on the training file,
//! then trained on all of it and measured on the held-out file. With `--write`, writes the
//! weights trained on the whole training file to data/watcher.weights. `--grid` and
//! `--grid-blend` cross-validate training and blending settings on the training file alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;

use valor_embed::Embedder;
use valor_learn::classifier::{Classifier, TrainSettings, class_of, hash_of};
use valor_learn::detector::{Blend, Detector, HELD_OUT_SET, TRAINING_SET, labelled};
use valor_learn::evaluate::score;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let embedder = Embedder::load_with(
        &dir.join("../../models/all-MiniLM-L6-v2"),
        valor_embed::Precision::F32,
    )
    .expect("the model (scripts/setup)");
    let embed = |texts: &[&str]| embedder.embed(texts).ok();
    let threshold = valor_learn::LearnSettings::default().ask_threshold;
    let train = labelled(TRAINING_SET).unwrap();
    let held = labelled(HELD_OUT_SET).unwrap();
    let vectors = |rows: &[(Option<valor_learn::Trigger>, &str)]| -> Vec<Option<Vec<f32>>> {
        let texts: Vec<&str> = rows.iter().map(|r| r.1).collect();
        embedder
            .embed(&texts)
            .unwrap()
            .into_iter()
            .map(Some)
            .collect()
    };
    let (train_v, held_v) = (vectors(&train), vectors(&held));
    let rules = Detector::new(None, Blend::default());
    let none: Vec<Option<Vec<f32>>> = vec![None; train.len().max(held.len())];
    println!(
        "rules alone, training file: {}",
        score(&rules, &train, &none, &embed, threshold)
    );
    println!(
        "rules alone, held out:      {}",
        score(&rules, &held, &none, &embed, threshold)
    );

    // Cross-validation on the training file: every fifth message held out in turn.
    let cross_validate = |settings: TrainSettings, blend: Blend| {
        let mut total = valor_learn::evaluate::Score::default();
        for fold in 0..5 {
            let pairs: Vec<(Vec<f32>, usize)> = (train.iter().zip(&train_v).enumerate())
                .filter(|(i, _)| i % 5 != fold)
                .map(|(_, ((label, _), v))| (v.clone().unwrap(), class_of(*label)))
                .collect();
            let classifier = Classifier::train(&pairs, settings, [0; 32]).unwrap();
            let detector = Detector::new(Some(classifier), blend);
            let rows: Vec<_> = train
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 5 == fold)
                .map(|(_, r)| *r)
                .collect();
            let vs: Vec<_> = train_v
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 5 == fold)
                .map(|(_, v)| v.clone())
                .collect();
            total.merge(score(&detector, &rows, &vs, &embed, threshold));
        }
        total
    };
    if std::env::args().any(|a| a == "--grid") {
        for l2 in [3e-3, 1e-2, 3e-2] {
            for epochs in [300, 600] {
                for margin in [0.1, 0.15, 0.25] {
                    let settings = TrainSettings {
                        epochs,
                        l2,
                        ..TrainSettings::default()
                    };
                    let blend = Blend {
                        margin,
                        ..Blend::default()
                    };
                    let s = cross_validate(settings, blend);
                    println!(
                        "grid l2 {l2} epochs {epochs} margin {margin}: ask P {:.3} R {:.3}, typed P {:.3} R {:.3}",
                        s.ask_precision(),
                        s.ask_recall(),
                        s.precision(),
                        s.recall()
                    );
                }
            }
        }
        return;
    }
    if std::env::args().any(|a| a == "--grid-blend") {
        for base in [0.5, 0.55] {
            for margin in [0.0, 0.05] {
                for veto_penalty in [0.05, 0.1, 0.15] {
                    let blend = Blend {
                        base,
                        margin,
                        veto_penalty,
                        ..Blend::default()
                    };
                    let s = cross_validate(TrainSettings::default(), blend);
                    println!(
                        "grid base {base} margin {margin} veto penalty {veto_penalty}: ask P {:.3} R {:.3}",
                        s.ask_precision(),
                        s.ask_recall(),
                    );
                }
            }
        }
        return;
    }
    let total = cross_validate(TrainSettings::default(), Blend::default());
    println!("rules + classifier, 5-fold CV on the training file: {total}");
    if std::env::args().any(|a| a == "--mistakes") {
        for m in &total.mistakes {
            println!("  cv: {m}");
        }
    }

    let pairs: Vec<(Vec<f32>, usize)> = (train.iter().zip(&train_v))
        .map(|((label, _), v)| (v.clone().unwrap(), class_of(*label)))
        .collect();
    let classifier = Classifier::train(&pairs, Default::default(), hash_of(TRAINING_SET)).unwrap();
    let detector = Detector::new(Some(classifier.clone()), Blend::default());
    if std::env::args().any(|a| a == "--held-out") {
        let s = score(&detector, &held, &held_v, &embed, threshold);
        println!("rules + classifier, held out: {s}");
        for m in &s.mistakes {
            println!("  held out: {m}");
        }
    }
    if std::env::args().any(|a| a == "--write") {
        std::fs::write(dir.join("data/watcher.weights"), classifier.to_bytes()).unwrap();
        println!("wrote data/watcher.weights");
    }
}
