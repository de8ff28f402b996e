//! The learned half of the watcher: a softmax regression over a message's MiniLM embedding
//! (the one recall computes anyway) into "none" or one of the ten trigger types.
//!
//! Trained offline from the labelled file (`valor learnings train`), deterministically: the
//! same file and model give the same weights, which are committed beside the file with its
//! hash. Full-batch gradient descent from zero, sums in f64, in a fixed order.

use sha2::{Digest, Sha256};

use crate::watcher::Trigger;

/// Classes: "none", then [`Trigger::ALL`] in order.
pub const CLASSES: usize = 1 + Trigger::ALL.len();

const MAGIC: &[u8; 8] = b"VLRNWD01";

/// How training goes.
#[derive(Debug, Clone, Copy)]
pub struct TrainSettings {
    pub epochs: usize,
    pub learning_rate: f64,
    /// L2 penalty on the weights (not the biases).
    pub l2: f64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            epochs: 300,
            learning_rate: 0.5,
            l2: 1e-2,
        }
    }
}

/// A trained classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    dims: usize,
    /// Subtracted from an embedding, then multiplied by `scale`: features of unit spread.
    mean: Vec<f32>,
    scale: f32,
    /// `CLASSES` rows of `dims` weights and a bias.
    weights: Vec<f32>,
    /// SHA-256 of the labelled file it was trained on.
    pub trained_on: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error("not a watcher weights file (bad header)")]
    Header,
    #[error("the weights file is cut short or has extra bytes ({0} bytes)")]
    Length(usize),
    #[error("no labelled examples to train on")]
    NoExamples,
    #[error("examples of different dimensions ({0} and {1})")]
    Dimensions(usize, usize),
}

/// The class index of a label: 0 for none.
pub fn class_of(trigger: Option<Trigger>) -> usize {
    trigger.map_or(0, |t| {
        1 + Trigger::ALL.iter().position(|&a| a == t).unwrap_or(0)
    })
}

/// The label of a class index.
pub fn trigger_of(class: usize) -> Option<Trigger> {
    class
        .checked_sub(1)
        .and_then(|i| Trigger::ALL.get(i).copied())
}

/// SHA-256 of a labelled file.
pub fn hash_of(labelled: &str) -> [u8; 32] {
    Sha256::digest(labelled.as_bytes()).into()
}

impl Classifier {
    /// Trains on `(embedding, class)` pairs.
    pub fn train(
        examples: &[(Vec<f32>, usize)],
        settings: TrainSettings,
        trained_on: [u8; 32],
    ) -> Result<Classifier, ClassifierError> {
        let dims = examples.first().ok_or(ClassifierError::NoExamples)?.0.len();
        if let Some((e, _)) = examples.iter().find(|(e, _)| e.len() != dims) {
            return Err(ClassifierError::Dimensions(dims, e.len()));
        }
        let n = examples.len() as f64;
        // Centre and scale: embeddings sit in a narrow cone, their components spread ~0.05.
        let mut mean = vec![0f64; dims];
        for (e, _) in examples {
            for (m, v) in mean.iter_mut().zip(e) {
                *m += f64::from(*v) / n;
            }
        }
        let mut spread = 0f64;
        for (e, _) in examples {
            for (m, v) in mean.iter().zip(e) {
                spread += (f64::from(*v) - m).powi(2);
            }
        }
        let scale = 1.0 / (spread / (n * dims as f64)).sqrt().max(1e-9);
        let features: Vec<Vec<f64>> = (examples.iter())
            .map(|(e, _)| {
                (e.iter().zip(&mean))
                    .map(|(v, m)| (f64::from(*v) - m) * scale)
                    .chain([1.0])
                    .collect()
            })
            .collect();
        let width = dims + 1;
        let mut w = vec![0f64; CLASSES * width];
        let mut gradient = vec![0f64; CLASSES * width];
        let mut probs = [0f64; CLASSES];
        for _ in 0..settings.epochs {
            gradient.iter_mut().for_each(|g| *g = 0.0);
            for (x, (_, class)) in features.iter().zip(examples) {
                softmax_f64(&w, x, &mut probs);
                for (c, p) in probs.iter().enumerate() {
                    let error = p - f64::from(u8::from(c == *class));
                    let row = &mut gradient[c * width..(c + 1) * width];
                    for (g, xi) in row.iter_mut().zip(x) {
                        *g += error * xi;
                    }
                }
            }
            for (i, (wi, g)) in w.iter_mut().zip(&gradient).enumerate() {
                let penalty = if i % width == dims {
                    0.0
                } else {
                    settings.l2 * *wi
                };
                *wi -= settings.learning_rate * (g / n + penalty);
            }
        }
        Ok(Classifier {
            dims,
            mean: mean.iter().map(|m| *m as f32).collect(),
            scale: scale as f32,
            weights: w.iter().map(|v| *v as f32).collect(),
            trained_on,
        })
    }

    /// The probability of each class for an embedding (of the dimensions trained on).
    pub fn probabilities(&self, embedding: &[f32]) -> Option<[f32; CLASSES]> {
        if embedding.len() != self.dims {
            return None;
        }
        let width = self.dims + 1;
        let mut logits = [0f32; CLASSES];
        for (c, logit) in logits.iter_mut().enumerate() {
            let row = &self.weights[c * width..(c + 1) * width];
            let mut sum = row[self.dims];
            for ((w, v), m) in row.iter().zip(embedding).zip(&self.mean) {
                sum += w * (v - m) * self.scale;
            }
            *logit = sum;
        }
        let top = logits.iter().copied().fold(f32::MIN, f32::max);
        let mut total = 0.0;
        for logit in &mut logits {
            *logit = (*logit - top).exp();
            total += *logit;
        }
        Some(logits.map(|e| e / total))
    }

    /// The weights file: header, dimensions, the training file's hash, then little-endian
    /// f32s (mean, scale, weights).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + 4 * (self.mean.len() + 1 + self.weights.len()));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.dims as u32).to_le_bytes());
        out.extend_from_slice(&(CLASSES as u32).to_le_bytes());
        out.extend_from_slice(&self.trained_on);
        for v in self.mean.iter().chain([&self.scale]).chain(&self.weights) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Classifier, ClassifierError> {
        let header = bytes
            .get(..48)
            .ok_or(ClassifierError::Length(bytes.len()))?;
        let word = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
                as usize
        };
        if &header[..8] != MAGIC || word(12) != CLASSES {
            return Err(ClassifierError::Header);
        }
        let dims = word(8);
        let floats = dims + 1 + CLASSES * (dims + 1);
        if dims == 0 || dims > 4096 || bytes.len() != 48 + 4 * floats {
            return Err(ClassifierError::Length(bytes.len()));
        }
        let mut values = bytes[48..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        let mean: Vec<f32> = values.by_ref().take(dims).collect();
        let scale = values.next().ok_or(ClassifierError::Length(bytes.len()))?;
        let weights: Vec<f32> = values.collect();
        let mut trained_on = [0u8; 32];
        trained_on.copy_from_slice(&header[16..48]);
        Ok(Classifier {
            dims,
            mean,
            scale,
            weights,
            trained_on,
        })
    }

    /// The largest difference between two classifiers' numbers (for checking a retraining
    /// reproduces committed weights up to float rounding).
    pub fn max_difference(&self, other: &Classifier) -> f32 {
        if self.dims != other.dims {
            return f32::INFINITY;
        }
        (self.mean.iter().chain([&self.scale]).chain(&self.weights))
            .zip(
                other
                    .mean
                    .iter()
                    .chain([&other.scale])
                    .chain(&other.weights),
            )
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }
}

fn softmax_f64(w: &[f64], x: &[f64], probs: &mut [f64; CLASSES]) {
    let width = x.len();
    for (c, p) in probs.iter_mut().enumerate() {
        *p = (w[c * width..(c + 1) * width].iter().zip(x))
            .map(|(a, b)| a * b)
            .sum();
    }
    let top = probs.iter().copied().fold(f64::MIN, f64::max);
    let mut total = 0.0;
    for p in probs.iter_mut() {
        *p = (*p - top).exp();
        total += *p;
    }
    for p in probs.iter_mut() {
        *p /= total;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Three clusters in four dimensions: none, switching, bug_fixed.
    fn examples() -> Vec<(Vec<f32>, usize)> {
        let mut out = Vec::new();
        for i in 0..10 {
            let jitter = i as f32 * 0.01;
            out.push((vec![1.0, jitter, 0.0, 0.1], 0));
            out.push((
                vec![jitter, 1.0, 0.1, 0.0],
                class_of(Some(Trigger::Switching)),
            ));
            out.push((
                vec![0.1, 0.0, 1.0, jitter],
                class_of(Some(Trigger::BugFixed)),
            ));
        }
        out
    }

    #[test]
    fn it_learns_separable_classes_and_round_trips_through_bytes() {
        let trained = Classifier::train(&examples(), TrainSettings::default(), [7; 32]).unwrap();
        let p = trained.probabilities(&[0.0, 0.95, 0.05, 0.0]).unwrap();
        let best = (0..CLASSES).max_by(|a, b| p[*a].total_cmp(&p[*b])).unwrap();
        assert_eq!(trigger_of(best), Some(Trigger::Switching), "{p:?}");
        assert!(p[best] > 0.8, "{p:?}");
        let back = Classifier::from_bytes(&trained.to_bytes()).unwrap();
        assert_eq!(back, trained);
        assert!(trained.probabilities(&[1.0]).is_none(), "other dimensions");
    }

    #[test]
    fn training_is_deterministic() {
        let a = Classifier::train(&examples(), TrainSettings::default(), [0; 32]).unwrap();
        let b = Classifier::train(&examples(), TrainSettings::default(), [0; 32]).unwrap();
        assert_eq!(a.max_difference(&b), 0.0);
    }

    #[test]
    fn broken_weight_files_are_refused() {
        let good = Classifier::train(&examples(), TrainSettings::default(), [0; 32])
            .unwrap()
            .to_bytes();
        assert!(matches!(
            Classifier::from_bytes(b"short"),
            Err(ClassifierError::Length(5))
        ));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(
            Classifier::from_bytes(&bad),
            Err(ClassifierError::Header)
        ));
        assert!(Classifier::from_bytes(&good[..good.len() - 1]).is_err());
        assert!(matches!(
            Classifier::train(&[], TrainSettings::default(), [0; 32]),
            Err(ClassifierError::NoExamples)
        ));
    }

    #[test]
    fn classes_map_to_triggers_and_back() {
        for t in Trigger::ALL {
            assert_eq!(trigger_of(class_of(Some(t))), Some(t));
        }
        assert_eq!(trigger_of(class_of(None)), None);
    }
}
