//! The watcher as it runs: the rules ([`crate::watcher`]) and the learned classifier
//! ([`crate::classifier`]) together.
//!
//! - The guards stay first: a question, a joke, someone else's words or a hypothetical is
//!   never asked about, whatever the classifier thinks.
//! - A rule match the classifier agrees with gains confidence; one it firmly calls "none"
//!   loses some.
//! - A statement no rule knows is found by the classifier alone, less confidently, and only
//!   when it is clearly not "none". Negated and hedged sentences lose confidence.
//! - Without a model (not loaded yet, switched off) it is the rules alone.

use std::sync::OnceLock;

use regex::Regex;

use crate::classifier::{CLASSES, Classifier, class_of, hash_of, trigger_of};
use crate::watcher::{self, Detection, Trigger, detect};

/// The committed weights, trained on `data/train.tsv` (whose hash they carry).
const BUILTIN_WEIGHTS: &[u8] = include_bytes!("../data/watcher.weights");
/// The committed training file.
pub const TRAINING_SET: &str = include_str!("../data/train.tsv");
/// The held-out file: never trained on.
pub const HELD_OUT_SET: &str = include_str!("../data/heldout.tsv");

/// Embeds texts (the model's vectors, `None` without a model).
pub type Embed<'a> = dyn Fn(&[&str]) -> Option<Vec<Vec<f32>>> + 'a;

/// How the two halves are weighed.
#[derive(Debug, Clone, Copy)]
pub struct Blend {
    /// Confidence added when the classifier agrees with a rule.
    pub agree_bonus: f32,
    /// A rule match loses this when the classifier puts "none" above `none_veto`.
    pub veto_penalty: f32,
    pub none_veto: f32,
    /// The classifier alone: confidence = `base + span * p`, `p` the probability of any
    /// trigger, when that beats "none" by `margin`; the type is its likeliest trigger.
    pub base: f32,
    pub span: f32,
    pub margin: f32,
    /// Lost by a negated sentence whose type is not negative by nature.
    pub negation_penalty: f32,
}

impl Default for Blend {
    fn default() -> Self {
        Blend {
            agree_bonus: 0.05,
            veto_penalty: 0.1,
            none_veto: 0.85,
            // Chosen by 5-fold cross-validation on the training file alone (the example's
            // --grid-blend), never on the held-out file.
            base: 0.55,
            span: 0.45,
            margin: 0.0,
            negation_penalty: 0.3,
        }
    }
}

/// The rules and, when there is one, the classifier.
#[derive(Debug, Clone)]
pub struct Detector {
    classifier: Option<Classifier>,
    blend: Blend,
}

impl Detector {
    pub fn new(classifier: Option<Classifier>, blend: Blend) -> Detector {
        Detector { classifier, blend }
    }

    /// The detector with the committed weights (the rules alone if they do not load).
    pub fn builtin() -> &'static Detector {
        static BUILTIN: OnceLock<Detector> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            let classifier = match Classifier::from_bytes(BUILTIN_WEIGHTS) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "the watcher's weights do not load; rules alone");
                    None
                }
            };
            Detector::new(classifier, Blend::default())
        })
    }

    pub fn classifier(&self) -> Option<&Classifier> {
        self.classifier.as_ref()
    }

    /// The findings in `text`, best first. `embedding` is the message's (shared with recall);
    /// `embed` embeds sentences, asked only when a message of several sentences holds a
    /// statement no rule found.
    pub fn detect(
        &self,
        text: &str,
        embedding: Option<&[f32]>,
        embed: &Embed<'_>,
    ) -> Vec<Detection> {
        let mut found = detect(text);
        let probabilities = (self.classifier.as_ref())
            .zip(embedding)
            .and_then(|(c, e)| c.probabilities(e));
        let Some(p) = probabilities else {
            return found;
        };
        if found.is_empty() {
            return self.unruled(text, &p, embed).into_iter().collect();
        }
        let b = self.blend;
        for d in &mut found {
            let agrees = p[class_of(Some(d.trigger))];
            if agrees >= 0.5 {
                d.confidence =
                    (d.confidence.max(b.base + b.span * agrees) + b.agree_bonus).min(0.99);
            } else if p[0] >= b.none_veto {
                d.confidence -= b.veto_penalty;
            }
        }
        found.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        found
    }

    /// A statement no rule matched, by the classifier: its best trigger when clearly above
    /// "none", in the sentence that shows it best.
    fn unruled(&self, text: &str, p: &[f32; CLASSES], embed: &Embed<'_>) -> Option<Detection> {
        let b = self.blend;
        // Worth asking is judged on all the triggers together: near types share the mass.
        let any = 1.0 - p[0];
        if any < p[0] + b.margin {
            return None;
        }
        let (class, _) = best_trigger(p);
        let trigger = trigger_of(class)?;
        let candidates: Vec<&str> = watcher::sentences(text)
            .filter(|s| watcher::passed_over(s).is_none())
            .collect();
        let sentence = match candidates.as_slice() {
            [] => return None,
            [one] => *one,
            several => self.clearest(several, class, embed)?,
        };
        let mut confidence = b.base + b.span * any;
        if watcher::negated(sentence) && !negative_by_nature(trigger) {
            confidence -= b.negation_penalty;
        }
        if watcher::hedged(sentence) {
            confidence -= 0.2;
        }
        Some(Detection {
            trigger,
            confidence,
            sentence: watcher::cut(sentence.trim()),
            replaces: replaced_in(sentence, trigger),
        })
    }

    /// Of several sentences, the one the classifier finds most of `class` in.
    fn clearest<'a>(
        &self,
        sentences: &[&'a str],
        class: usize,
        embed: &Embed<'_>,
    ) -> Option<&'a str> {
        let classifier = self.classifier.as_ref()?;
        let vectors = embed(sentences)?;
        (sentences.iter().zip(&vectors))
            .filter_map(|(s, v)| Some((*s, classifier.probabilities(v)?[class])))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, _)| s)
    }
}

fn best_trigger(p: &[f32; CLASSES]) -> (usize, f32) {
    (1..CLASSES)
        .map(|c| (c, p[c]))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0))
}

/// Types whose statements hold a "not" by nature ("no longer", "we won't use", "doesn't
/// handle", "no longer crashes").
fn negative_by_nature(trigger: Trigger) -> bool {
    matches!(
        trigger,
        Trigger::NoLonger | Trigger::RejectedIdea | Trigger::EdgeCase | Trigger::BugFixed
    )
}

/// What a statement found by the classifier leaves behind, for the types that replace
/// something: "Heroku" in "we've ditched Heroku", "Selenium" in "instead of Selenium".
fn replaced_in(sentence: &str, trigger: Trigger) -> Option<String> {
    if !matches!(trigger, Trigger::Switching | Trigger::NoLonger) {
        return None;
    }
    static PATTERN: OnceLock<Option<Regex>> = OnceLock::new();
    let pattern = PATTERN.get_or_init(|| {
        Regex::new(
            // Case-blind verbs; the name itself starts with a capital.
            r"\b(?i:ditched|dropped|killed(?:\s+off)?|sunset|retired|removed|deleted|decommissioned|turned\s+off|shut\s+down|unplugged|got\s+rid\s+of|gave\s+up\s+on|away\s+from|off|instead\s+of|from|replaced)\s+(?i:the\s+|our\s+)?(?P<old>[A-Z][\w.+#-]*(?:\s+[A-Z0-9][\w.+#-]*)?)",
        )
        .ok()
    });
    let found = pattern.as_ref()?.captures(sentence)?;
    let old = found
        .name("old")?
        .as_str()
        .trim_matches(|c: char| !c.is_alphanumeric());
    (!old.is_empty()).then(|| old.to_owned())
}

/// A labelled file's examples: `(label, message)`, comments and blank lines skipped.
pub fn labelled(set: &str) -> Result<Vec<(Option<Trigger>, &str)>, String> {
    (set.lines().enumerate())
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
        .map(|(i, line)| {
            let (label, text) = line
                .split_once('\t')
                .ok_or_else(|| format!("line {}: not <label> TAB <message>", i + 1))?;
            let trigger = match label {
                "none" => None,
                other => Some(
                    Trigger::parse(other)
                        .ok_or_else(|| format!("line {}: unknown label {other:?}", i + 1))?,
                ),
            };
            Ok((trigger, text))
        })
        .collect()
}

/// Trains the classifier on a labelled file, embedding its messages with `embed`.
pub fn train(set: &str, embed: &Embed<'_>) -> Result<Classifier, String> {
    let examples = labelled(set)?;
    let texts: Vec<&str> = examples.iter().map(|(_, t)| *t).collect();
    let vectors = embed(&texts).ok_or("the embedding model is not available")?;
    let pairs: Vec<(Vec<f32>, usize)> = (vectors.into_iter())
        .zip(&examples)
        .map(|(v, (label, _))| (v, class_of(*label)))
        .collect();
    Classifier::train(&pairs, Default::default(), hash_of(set)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_statement_leaves_behind_is_named() {
        let cases = [
            (
                "We've ditched Heroku, everything runs on Fly.io now.",
                Trigger::Switching,
                Some("Heroku"),
            ),
            (
                "We use Playwright instead of Selenium these days.",
                Trigger::Switching,
                Some("Selenium"),
            ),
            ("Jenkins is gone.", Trigger::NoLonger, None),
            ("We ditched Heroku.", Trigger::BugFixed, None),
        ];
        for (sentence, trigger, want) in cases {
            assert_eq!(
                replaced_in(sentence, trigger).as_deref(),
                want,
                "{sentence}"
            );
        }
    }

    #[test]
    fn labelled_files_are_read_and_bad_lines_named() {
        let set = "# comment\nswitching\tWe moved to X.\n\nnone\tHello there friend.\n";
        let rows = labelled(set).unwrap_or_default();
        assert_eq!(
            rows,
            [
                (Some(Trigger::Switching), "We moved to X."),
                (None, "Hello there friend.")
            ]
        );
        assert!(
            labelled("switching We moved")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(
            labelled("guessing\tsomething")
                .unwrap_err()
                .contains("unknown label")
        );
        assert!(labelled(TRAINING_SET).is_ok() && labelled(HELD_OUT_SET).is_ok());
    }

    #[test]
    fn without_an_embedding_it_is_the_rules_alone() {
        let detector = Detector::new(None, Blend::default());
        let none = |_: &[&str]| None;
        let found = detector.detect("We switched from Jenkins to Buildkite.", None, &none);
        assert_eq!(found, detect("We switched from Jenkins to Buildkite."));
    }
}
