//! The embeddings of the latest queries, computed once: recall embeds a user's message for its
//! search while the watcher embeds the same message to classify it, side by side. The first
//! to ask computes; the other waits for that result instead of computing it again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Queries kept (a few turns' worth across chats).
const KEPT: usize = 32;

type Slot = Arc<OnceLock<Option<Vec<f32>>>>;

/// Recent query embeddings by model and text.
#[derive(Default)]
pub struct QueryEmbeddings {
    slots: Mutex<VecDeque<(String, String, Slot)>>,
}

impl QueryEmbeddings {
    /// The embedding of `text` by `model`: kept, being computed by another caller (waited
    /// for), or computed now by `embed`.
    pub fn get_or_embed(
        &self,
        model: &str,
        text: &str,
        embed: impl FnOnce() -> Option<Vec<f32>>,
    ) -> Option<Vec<f32>> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            match slots.iter().find(|(m, t, _)| m == model && t == text) {
                Some((_, _, slot)) => Arc::clone(slot),
                None => {
                    if slots.len() >= KEPT {
                        slots.pop_front();
                    }
                    let slot = Slot::default();
                    slots.push_back((model.to_owned(), text.to_owned(), Arc::clone(&slot)));
                    slot
                }
            }
        };
        slot.get_or_init(embed).clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn two_callers_at_once_share_one_computation() {
        let cache = Arc::new(QueryEmbeddings::default());
        let computed = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let (cache, computed, barrier) = (
                    Arc::clone(&cache),
                    Arc::clone(&computed),
                    Arc::clone(&barrier),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    cache.get_or_embed("m", "hello", || {
                        computed.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        Some(vec![1.0, 2.0])
                    })
                })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.join().unwrap(), Some(vec![1.0, 2.0]));
        }
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        // Another model or text is its own.
        let other = cache.get_or_embed("m2", "hello", || Some(vec![3.0]));
        assert_eq!(other, Some(vec![3.0]));
    }

    #[test]
    fn only_the_latest_queries_are_kept() {
        let cache = QueryEmbeddings::default();
        for i in 0..(KEPT + 1) {
            cache.get_or_embed("m", &i.to_string(), || Some(vec![i as f32]));
        }
        let again = cache.get_or_embed("m", "0", || Some(vec![-1.0]));
        assert_eq!(
            again,
            Some(vec![-1.0]),
            "the oldest was dropped and computed again"
        );
        assert_eq!(cache.slots.lock().unwrap().len(), KEPT);
    }
}
