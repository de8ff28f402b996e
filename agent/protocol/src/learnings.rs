//! Learnings: what a chat taught Valor and the user agreed to keep (seed 003's learnings
//! engine): category, confidence, how often it was seen, where it came from, its retirement.

use serde::{Deserialize, Serialize};

use crate::records::{MemoryKind, MemoryRecord, headline};

/// What kind of knowledge a learning is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Architecture,
    Convention,
    Gotcha,
    Dependency,
    Pattern,
    Decision,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::Architecture,
        Category::Convention,
        Category::Gotcha,
        Category::Dependency,
        Category::Pattern,
        Category::Decision,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Architecture => "architecture",
            Category::Convention => "convention",
            Category::Gotcha => "gotcha",
            Category::Dependency => "dependency",
            Category::Pattern => "pattern",
            Category::Decision => "decision",
        }
    }

    pub fn parse(text: &str) -> Option<Category> {
        let text = text.trim().to_ascii_lowercase();
        Category::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// A category for a text nobody categorised (a typed `/remember`, a daydream candidate,
    /// an old plain memory): by the words it uses, `decision` when none says more.
    pub fn guess(text: &str) -> Category {
        let lower = text.to_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
        if has(&[
            "watch out",
            "careful",
            "gotcha",
            "beware",
            "edge case",
            "pitfall",
            "bug",
            "slow",
            "breaks",
            "fails",
            "crash",
            "timeout",
            "leak",
        ]) {
            Category::Gotcha
        } else if has(&[
            "always ",
            "never ",
            "convention",
            "naming",
            "style",
            "format",
            "we name",
            "prefix",
        ]) {
            Category::Convention
        } else if has(&[
            "architecture",
            "service",
            "module",
            "layer",
            "microservice",
            "monolith",
            "refactor",
            "split",
            "database schema",
            "event bus",
        ]) {
            Category::Architecture
        } else if has(&[
            "library",
            "crate",
            "package",
            "dependency",
            "framework",
            "version",
            "upgrade",
        ]) {
            Category::Dependency
        } else if has(&["pattern", "approach", "we handle", "the way we"]) {
            Category::Pattern
        } else {
            Category::Decision
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Confidence of a learning seen `times` times (seed 003): 0.5 when new, 0.7 the second time,
/// 0.85 the third and fourth, 0.95 from the fifth. A manual learning is 1.0.
pub fn confidence_for(times: u32, manual: bool) -> f32 {
    if manual {
        return 1.0;
    }
    match times {
        0 | 1 => 0.5,
        2 => 0.7,
        3 | 4 => 0.85,
        _ => 0.95,
    }
}

/// Why and when a learning left use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retirement {
    pub at_ms: u64,
    /// "replaced by #7", "forgotten by the user".
    pub reason: String,
    /// The learning that replaced it.
    pub replaced_by: Option<u64>,
}

/// One learning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearningRecord {
    /// The id of its searchable memory (assigned when it is added).
    pub id: u64,
    /// The chat it was learned in; `None` for what is about no chat.
    pub chat_id: Option<i64>,
    /// Its number in its chat, from 1, never reused: `/learnings` shows it, `/forget N` uses it.
    pub number: u64,
    pub category: Category,
    pub content: String,
    pub confidence: f32,
    pub times_seen: u32,
    /// Where it came from each time it was seen (`tg:<update>`, `daydream dd-...`), oldest
    /// first, the last 20.
    pub sources: Vec<String>,
    /// The user's message it was detected in, if it came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_message: Option<String>,
    /// The watcher's trigger (`switching`, `bug_fixed`, ...), if it came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Typed by the user (`/remember`) rather than detected.
    pub manual: bool,
    pub created_ms: u64,
    pub updated_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<Retirement>,
    /// Why it needs a look (a later statement contradicted it); cleared when it is seen or
    /// confirmed again. Listed by `/learnings review`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
}

/// Sources kept per learning.
const MAX_SOURCES: usize = 20;

impl LearningRecord {
    /// A new learning, seen once at `now_ms` from `source` (id and number are given when it is
    /// added to the store). A manual one starts at confidence 1.
    pub fn new(
        chat_id: Option<i64>,
        category: Category,
        content: &str,
        source: &str,
        manual: bool,
        now_ms: u64,
    ) -> LearningRecord {
        LearningRecord {
            id: 0,
            chat_id,
            number: 0,
            category,
            content: content.trim().to_owned(),
            confidence: confidence_for(1, manual),
            times_seen: 1,
            sources: (!source.is_empty())
                .then(|| source.to_owned())
                .into_iter()
                .collect(),
            source_message: None,
            trigger: None,
            manual,
            created_ms: now_ms,
            updated_ms: now_ms,
            retired: None,
            review: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.retired.is_none()
    }

    /// Seen once more: times seen + 1, confidence up the ladder (never down), the source noted.
    pub fn reinforce(&mut self, source: &str, now_ms: u64) {
        self.review = None;
        self.times_seen = self.times_seen.saturating_add(1);
        self.confidence = self
            .confidence
            .max(confidence_for(self.times_seen, self.manual));
        self.note_source(source);
        self.updated_ms = now_ms;
    }

    /// Contradicted by a later statement: confidence down by 0.3 (not below 0.1, seed 003)
    /// and marked for review with `why`.
    pub fn contradict(&mut self, why: String, now_ms: u64) {
        self.confidence = (self.confidence - 0.3).max(0.1);
        self.review = Some(why);
        self.updated_ms = now_ms;
    }

    pub fn note_source(&mut self, source: &str) {
        if !source.is_empty() && self.sources.last().is_none_or(|s| s != source) {
            self.sources.push(source.to_owned());
            if self.sources.len() > MAX_SOURCES {
                self.sources.remove(0);
            }
        }
    }

    /// The searchable memory it is kept as.
    pub fn memory(&self) -> MemoryRecord {
        MemoryRecord {
            id: self.id,
            kind: MemoryKind::Learning,
            chat_id: self.chat_id,
            at_ms: self.created_ms,
            title: format!("{}: {}", self.category, headline(&self.content, 80)),
            text: self.content.clone(),
            url: None,
        }
    }
}

/// Active learnings first by confidence, then by times seen, then newest.
pub fn rank(learnings: &mut [LearningRecord]) {
    learnings.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then(b.times_seen.cmp(&a.times_seen))
            .then(b.updated_ms.cmp(&a.updated_ms))
    });
}
