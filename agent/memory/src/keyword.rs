//! Keyword search: BM25 over an in-memory inverted index, so recall works while the embedder is
//! missing, loading or rebuilding.
//!
//! Why not tantivy: it is the better engine for millions of long documents, but it costs a
//! large build on 2 cores and keeps a second on-disk copy of what sled already holds. Valor's
//! documents are chat-sized; an inverted index of 100k of them builds from sled in well under a
//! second at start and answers in about a millisecond.

use std::collections::HashMap;

/// BM25 parameters (the usual values).
const K1: f32 = 1.2;
const B: f32 = 0.75;
/// Text indexed per document at most: a pasted megabyte is still found by its beginning.
pub const MAX_INDEXED_BYTES: usize = 64 * 1024;

/// Lower-cased words of `text` (letters and digits), without the commonest English words.
pub fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() <= 64)
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
}

const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "of", "on", "or", "so", "that", "the", "their", "then", "there", "these", "this", "to", "was",
    "will", "with",
];

fn cut(text: &str) -> &str {
    if text.len() <= MAX_INDEXED_BYTES {
        return text;
    }
    let mut end = MAX_INDEXED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The inverted index. Documents are numbered by slot (their position in the catalogue).
#[derive(Debug, Default)]
pub struct KeywordIndex {
    postings: HashMap<String, Vec<(u32, u16)>>,
    lengths: Vec<u32>,
    total_length: u64,
}

impl KeywordIndex {
    /// Indexes the document in `slot` (slots are added in increasing order).
    pub fn add(&mut self, slot: u32, text: &str) {
        let mut counts: HashMap<String, u16> = HashMap::new();
        let mut length = 0u32;
        for term in terms(cut(text)) {
            length += 1;
            let count = counts.entry(term).or_default();
            *count = count.saturating_add(1);
        }
        for (term, count) in counts {
            self.postings.entry(term).or_default().push((slot, count));
        }
        let slot = slot as usize;
        if self.lengths.len() <= slot {
            self.lengths.resize(slot + 1, 0);
        }
        self.lengths[slot] = length;
        self.total_length += u64::from(length);
    }

    pub fn terms_indexed(&self) -> usize {
        self.postings.len()
    }

    /// The `limit` best slots for `query` among those `keep` accepts, best first.
    pub fn search(&self, query: &str, limit: usize, keep: impl Fn(u32) -> bool) -> Vec<(u32, f32)> {
        let docs = self.lengths.len() as f32;
        if docs == 0.0 || limit == 0 {
            return Vec::new();
        }
        let average = (self.total_length as f32 / docs).max(1.0);
        let mut query_terms: Vec<String> = terms(cut(query)).collect();
        query_terms.sort();
        query_terms.dedup();
        // Dense scores: common terms touch a large share of 100k documents, where a hash map
        // of partial scores costs several milliseconds.
        let mut scores = vec![0f32; self.lengths.len()];
        let mut touched: Vec<u32> = Vec::new();
        for term in &query_terms {
            let Some(postings) = self.postings.get(term) else {
                continue;
            };
            let n = postings.len() as f32;
            let idf = ((docs - n + 0.5) / (n + 0.5) + 1.0).ln();
            for &(slot, tf) in postings {
                let tf = f32::from(tf);
                let length = self.lengths[slot as usize] as f32;
                let score = idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * length / average));
                let entry = &mut scores[slot as usize];
                if *entry == 0.0 {
                    touched.push(slot);
                }
                *entry += score;
            }
        }
        let mut ranked: Vec<(u32, f32)> = touched
            .into_iter()
            .filter(|&slot| keep(slot))
            .map(|slot| (slot, scores[slot as usize]))
            .collect();
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0));
        if ranked.len() > limit {
            ranked.select_nth_unstable_by(limit, order);
            ranked.truncate(limit);
        }
        ranked.sort_by(order);
        ranked.truncate(limit);
        ranked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(texts: &[&str]) -> KeywordIndex {
        let mut index = KeywordIndex::default();
        for (slot, text) in texts.iter().enumerate() {
            index.add(slot as u32, text);
        }
        index
    }

    #[test]
    fn rare_words_outrank_common_ones() {
        let index = index(&[
            "the deploy went fine",
            "the billing service times out",
            "deploy the billing fix today",
            "lunch at noon",
        ]);
        let hits = index.search("billing timeout times", 10, |_| true);
        assert_eq!(hits[0].0, 1, "{hits:?}");
        assert_eq!(hits.len(), 2);
        assert!(index.search("LUNCH!", 10, |_| true)[0].0 == 3);
        assert!(index.search("the of", 10, |_| true).is_empty());
    }

    #[test]
    fn filters_and_limits_apply() {
        let index = index(&["deploy one", "deploy two", "deploy three"]);
        let hits = index.search("deploy", 10, |slot| slot != 1);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>().len(), 2);
        assert!(hits.iter().all(|h| h.0 != 1));
        assert_eq!(index.search("deploy", 1, |_| true).len(), 1);
    }

    #[test]
    fn huge_and_non_latin_text_is_indexed() {
        let big = "word ".repeat(300_000) + "needle";
        let index = index(&[&big, "Привет мир, 東京 tower"]);
        // Only the first 64 KiB count: the needle at the end of a megabyte is not indexed.
        assert!(index.search("needle", 10, |_| true).is_empty());
        assert_eq!(index.search("привет", 10, |_| true)[0].0, 1);
        assert_eq!(index.search("東京", 10, |_| true)[0].0, 1);
    }
}
