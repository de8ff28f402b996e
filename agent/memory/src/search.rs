//! Hybrid ranking: the keyword and vector rankings merged by reciprocal-rank fusion (each list
//! gives a document 1 / (K + rank); the sums order the result). Rank fusion needs no score
//! calibration between BM25 and cosine, and a document both lists like rises to the top.

use serde::{Deserialize, Serialize};
use valor_protocol::records::MemoryKind;

use crate::catalogue::Filter;

/// The usual constant: damps the difference between the first few ranks.
pub const RRF_K: f32 = 60.0;
/// Candidates each ranking contributes before fusion.
pub const CANDIDATES: usize = 50;
/// Longest query text used (the rest of a pasted page adds nothing to the ranking).
pub const MAX_QUERY_BYTES: usize = 4096;

/// A search.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Query {
    pub text: String,
    #[serde(default)]
    pub filter: Filter,
    pub limit: usize,
}

impl Query {
    pub fn new(text: impl Into<String>, limit: usize) -> Query {
        Query {
            text: text.into(),
            filter: Filter::default(),
            limit,
        }
    }
}

/// How a search was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    /// Keyword and vector rankings fused.
    Hybrid,
    /// Keywords only: the embedder or the index is not available.
    KeywordOnly,
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub id: u64,
    pub kind: MemoryKind,
    pub chat_id: Option<i64>,
    pub at_ms: u64,
    pub title: String,
    /// The text, cut to a few hundred characters (the full text: `valor memory show ID`).
    pub snippet: String,
    /// Characters of the whole text.
    #[serde(default)]
    pub chars: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Fused score.
    pub score: f32,
    /// The keyword ranking found it.
    #[serde(default)]
    pub keyword_match: bool,
    /// Cosine similarity to the query, when the vector ranking had it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchResult {
    pub mode: SearchMode,
    pub hits: Vec<Hit>,
}

/// Fuses rankings (ids, best first) into one ranking with scores, best first.
pub fn fuse(rankings: &[&[u64]]) -> Vec<(u64, f32)> {
    let mut scores: std::collections::HashMap<u64, f32> = std::collections::HashMap::new();
    for ranking in rankings {
        for (rank, id) in ranking.iter().enumerate() {
            *scores.entry(*id).or_default() += 1.0 / (RRF_K + rank as f32 + 1.0);
        }
    }
    let mut fused: Vec<(u64, f32)> = scores.into_iter().collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
    fused
}

/// `text` cut at a character boundary to at most `max` bytes, with "…" when cut.
pub fn snippet(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_both_rankings_like_comes_first() {
        let keyword = [1, 2, 3];
        let vector = [4, 2, 5];
        let fused = fuse(&[&keyword, &vector]);
        assert_eq!(fused[0].0, 2);
        assert_eq!(fused.len(), 5);
        // Equal ranks in either list score the same.
        let score = |id| fused.iter().find(|f| f.0 == id).map(|f| f.1);
        assert_eq!(score(1), score(4));
        assert!(fuse(&[]).is_empty());
    }

    #[test]
    fn snippets_cut_on_character_boundaries() {
        assert_eq!(snippet("short", 10), "short");
        assert_eq!(snippet("ééééé", 5), "éé…");
    }
}
