//! Precision and recall of the watcher on a labelled set, as its tests and `valor learnings
//! train` report them: a finding counts as right only with the right type, at the asking
//! threshold.

use crate::detector::{Detector, Embed};
use crate::watcher::Trigger;

/// How the watcher did on a set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    pub messages: usize,
    pub true_positives: u32,
    pub false_positives: u32,
    pub false_negatives: u32,
    /// What it got wrong, a line each.
    pub mistakes: Vec<String>,
    /// Whether it asked when it should, whatever the type: asked rightly, asked about nothing
    /// worth it, did not ask.
    pub asked_rightly: u32,
    pub asked_wrongly: u32,
    pub not_asked: u32,
}

fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        return 1.0;
    }
    f64::from(part) / f64::from(whole)
}

impl Score {
    /// Findings of the right type, of all findings.
    pub fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    /// Findings of the right type, of all statements worth one.
    pub fn recall(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }

    /// Of the questions asked, those about something worth asking.
    pub fn ask_precision(&self) -> f64 {
        ratio(self.asked_rightly, self.asked_rightly + self.asked_wrongly)
    }

    /// Of the statements worth asking about, those asked about.
    pub fn ask_recall(&self) -> f64 {
        ratio(self.asked_rightly, self.asked_rightly + self.not_asked)
    }

    /// Of the statements rightly asked about, those named with the right type.
    pub fn type_accuracy(&self) -> f64 {
        ratio(self.true_positives, self.asked_rightly)
    }

    /// Adds another set's counts.
    pub fn merge(&mut self, other: Score) {
        self.messages += other.messages;
        self.true_positives += other.true_positives;
        self.false_positives += other.false_positives;
        self.false_negatives += other.false_negatives;
        self.asked_rightly += other.asked_rightly;
        self.asked_wrongly += other.asked_wrongly;
        self.not_asked += other.not_asked;
        self.mistakes.extend(other.mistakes);
    }

    /// Counts one message: what was wanted and what the watcher asked about.
    pub fn add(&mut self, text: &str, want: Option<Trigger>, got: Option<Trigger>) {
        self.messages += 1;
        match (want.is_some(), got.is_some()) {
            (true, true) => self.asked_rightly += 1,
            (false, true) => self.asked_wrongly += 1,
            (true, false) => self.not_asked += 1,
            (false, false) => {}
        }
        match (want, got) {
            (Some(w), Some(g)) if w == g => self.true_positives += 1,
            (Some(w), Some(g)) => {
                self.false_positives += 1;
                self.false_negatives += 1;
                self.mistakes.push(format!("{w} read as {g}: {text}"));
            }
            (Some(w), None) => {
                self.false_negatives += 1;
                self.mistakes.push(format!("{w} missed: {text}"));
            }
            (None, Some(g)) => {
                self.false_positives += 1;
                self.mistakes.push(format!("none read as {g}: {text}"));
            }
            (None, None) => {}
        }
    }
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "asking: precision {:.3}, recall {:.3}; with the type: precision {:.3}, recall {:.3} \
             (type right for {:.3} of those asked rightly) on {} messages",
            self.ask_precision(),
            self.ask_recall(),
            self.precision(),
            self.recall(),
            self.type_accuracy(),
            self.messages
        )
    }
}

/// Scores `detector` on `rows` (label, message), each message's embedding given (`None`: the
/// rules alone), at `threshold`.
pub fn score(
    detector: &Detector,
    rows: &[(Option<Trigger>, &str)],
    embeddings: &[Option<Vec<f32>>],
    embed: &Embed<'_>,
    threshold: f32,
) -> Score {
    let mut score = Score::default();
    for ((want, text), embedding) in rows.iter().zip(embeddings) {
        let got = detector
            .detect(text, embedding.as_deref(), embed)
            .into_iter()
            .find(|d| d.confidence >= threshold)
            .map(|d| d.trigger);
        score.add(text, *want, got);
    }
    score
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_type_counts_against_both() {
        let mut s = Score::default();
        s.add("a", Some(Trigger::Switching), Some(Trigger::Switching));
        s.add("b", Some(Trigger::Switching), Some(Trigger::NowUsing));
        s.add("c", None, Some(Trigger::BugFixed));
        s.add("d", Some(Trigger::EdgeCase), None);
        s.add("e", None, None);
        assert_eq!(
            (s.true_positives, s.false_positives, s.false_negatives),
            (1, 2, 2)
        );
        assert!((s.precision() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.mistakes.len(), 3);
        assert_eq!(s.messages, 5);
        assert_eq!((s.asked_rightly, s.asked_wrongly, s.not_asked), (2, 1, 1));
        assert!((s.ask_precision() - 2.0 / 3.0).abs() < 1e-9);
        assert!((s.type_accuracy() - 0.5).abs() < 1e-9);
    }
}
