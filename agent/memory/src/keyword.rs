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

/// One term's postings: (slot, term frequency) pairs in increasing slot order, each as two
/// LEB128 varints (the slot as the gap from the one before). About 2.5 bytes a posting where
/// `(u32, u16)` pairs took 8: the index grows with every message Valor keeps, so its size per
/// document is what a long-running process's memory grows by.
#[derive(Debug, Default)]
struct Postings {
    bytes: Vec<u8>,
    last: u32,
    count: u32,
}

impl Postings {
    fn push(&mut self, slot: u32, tf: u16) {
        // Slots come in increasing order; one out of order would corrupt the gaps.
        if self.count > 0 && slot <= self.last {
            return;
        }
        put_varint(
            &mut self.bytes,
            slot - if self.count > 0 { self.last } else { 0 },
        );
        put_varint(&mut self.bytes, u32::from(tf));
        self.last = slot;
        self.count += 1;
    }

    fn iter(&self) -> impl Iterator<Item = (u32, u16)> + '_ {
        let mut at = 0;
        let mut slot = 0u32;
        std::iter::from_fn(move || {
            let gap = take_varint(&self.bytes, &mut at)?;
            let tf = take_varint(&self.bytes, &mut at)?;
            slot = slot.checked_add(gap)?;
            Some((slot, u16::try_from(tf).unwrap_or(u16::MAX)))
        })
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(bytes: &[u8], at: &mut usize) -> Option<u32> {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

/// The inverted index. Documents are numbered by slot (their position in the catalogue).
#[derive(Debug, Default)]
pub struct KeywordIndex {
    postings: HashMap<Box<str>, Postings>,
    /// Terms per slot (capped: a document's text is cut at 64 KiB).
    lengths: Vec<u16>,
    total_length: u64,
}

impl KeywordIndex {
    /// Indexes the document in `slot` (slots are added in increasing order).
    pub fn add(&mut self, slot: u32, text: &str) {
        let mut counts: HashMap<String, u16> = HashMap::new();
        let mut length = 0u16;
        for term in terms(cut(text)) {
            length = length.saturating_add(1);
            let count = counts.entry(term).or_default();
            *count = count.saturating_add(1);
        }
        for (term, count) in counts {
            match self.postings.get_mut(term.as_str()) {
                Some(postings) => postings.push(slot, count),
                None => {
                    let mut postings = Postings::default();
                    postings.push(slot, count);
                    self.postings.insert(term.into_boxed_str(), postings);
                }
            }
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

    /// Bytes the postings hold (their allocations' length, not capacity).
    pub fn posting_bytes(&self) -> usize {
        self.postings.values().map(|p| p.bytes.len()).sum()
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
            let Some(postings) = self.postings.get(term.as_str()) else {
                continue;
            };
            let n = postings.count as f32;
            let idf = ((docs - n + 0.5) / (n + 0.5) + 1.0).ln();
            for (slot, tf) in postings.iter() {
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
    fn postings_come_back_as_they_went_in_and_take_few_bytes() {
        let mut postings = Postings::default();
        let pairs = [
            (0u32, 1u16),
            (1, 3),
            (130, 1),
            (20_000, 700),
            (u32::MAX, u16::MAX),
        ];
        for (slot, tf) in pairs {
            postings.push(slot, tf);
        }
        // Out of order: ignored, not corrupting.
        postings.push(5, 1);
        assert_eq!(postings.iter().collect::<Vec<_>>(), pairs);
        assert_eq!(postings.count, 5);

        let texts: Vec<String> = (0..1_000)
            .map(|i| format!("deploy the billing service {i} today"))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let index = index(&refs);
        // Four shared terms a document in one-byte gaps and counts, one unique term each.
        assert!(
            index.posting_bytes() <= 1_000 * (4 * 2 + 3),
            "{}",
            index.posting_bytes()
        );
        assert_eq!(index.search("billing", 2_000, |_| true).len(), 1_000);
        assert_eq!(index.search("777", 10, |_| true)[0].0, 777);
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
