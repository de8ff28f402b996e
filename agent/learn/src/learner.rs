//! From a "yes" to a learning (seed 003's learnings engine).
//!
//! - A new learning is compared by meaning with the chat's active ones: above the duplicate
//!   similarity (0.85) it reinforces the one it repeats (times seen + 1, confidence up the
//!   ladder) instead of adding a second.
//! - A statement that replaces something ("switching from Bootstrap to Tailwind", "we no longer
//!   use Jest") retires the active learnings about what it replaces: kept in history, gone
//!   from search and from later turns.
//! - Without the embedding model (loading, missing) only identical texts count as duplicates.

use std::sync::Arc;

use valor_memory::Memory;
use valor_protocol::StoreFailure;
use valor_protocol::learnings::{Category, LearningRecord, confidence_for, rank};
use valor_protocol::proposals::{LearningDraft, PROPOSAL_TTL_MS, Proposal, ProposalState};
use valor_protocol::records::MemoryKind;

use crate::port::LearningStore;

use crate::detector::Detector;
use crate::watcher::{detect, negated};

/// Cosine similarity above which a statement said the other way contradicts a learning (it
/// is about the same thing). Lower than a repeat's, as a "not" moves the vector: "we deploy
/// on Fridays" and "we never deploy on Fridays" score 0.69, related but unrelated-in-meaning
/// pairs probed score below 0.56.
const CONTRADICTION_SIMILARITY: f32 = 0.62;

#[derive(Debug, Clone)]
pub struct LearnSettings {
    /// The watcher asks only about statements at least this confident.
    pub ask_threshold: f32,
    /// The threshold of particular chats.
    pub ask_threshold_by_chat: std::collections::BTreeMap<i64, f32>,
    /// Cosine similarity above which a new learning repeats an existing one.
    pub duplicate_similarity: f32,
}

impl Default for LearnSettings {
    fn default() -> Self {
        LearnSettings {
            ask_threshold: 0.75,
            ask_threshold_by_chat: std::collections::BTreeMap::new(),
            duplicate_similarity: 0.85,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error(transparent)]
    Store(#[from] StoreFailure),
    #[error("a learning task failed: {0}")]
    Task(String),
    #[error("a learning needs some text")]
    Empty,
    #[error("there is no active learning #{0} in this chat (see /learnings)")]
    NoSuchLearning(u64),
}

/// What keeping a learning did.
#[derive(Debug, Clone)]
pub enum Accepted {
    New {
        learning: LearningRecord,
        /// Active learnings it replaced, now retired.
        retired: Vec<LearningRecord>,
        /// Active learnings it contradicts: less confident now, marked for review.
        contradicted: Vec<LearningRecord>,
    },
    Reinforced {
        learning: LearningRecord,
        similarity: f32,
    },
}

impl Accepted {
    pub fn learning(&self) -> &LearningRecord {
        match self {
            Accepted::New { learning, .. } | Accepted::Reinforced { learning, .. } => learning,
        }
    }

    /// One line for the chat.
    pub fn describe(&self) -> String {
        match self {
            Accepted::New {
                learning,
                retired,
                contradicted,
            } => {
                let mut line = format!(
                    "Remembered as #{} ({}): {}",
                    learning.number, learning.category, learning.content
                );
                for old in retired {
                    line.push_str(&format!("\nRetired #{}: {}", old.number, old.content));
                }
                for old in contradicted {
                    line.push_str(&format!(
                        "\nThis contradicts #{} (confidence now {:.2}; /learnings review): {}",
                        old.number, old.confidence, old.content
                    ));
                }
                line
            }
            Accepted::Reinforced { learning, .. } => format!(
                "I knew that already (#{}, seen {} times, confidence {:.2}): {}",
                learning.number, learning.times_seen, learning.confidence, learning.content
            ),
        }
    }
}

impl LearnSettings {
    /// The asking threshold in `chat_id`.
    pub fn ask_threshold_in(&self, chat_id: i64) -> f32 {
        (self.ask_threshold_by_chat.get(&chat_id).copied()).unwrap_or(self.ask_threshold)
    }
}

/// The learnings of every chat, over the store and the embedding model.
#[derive(Clone)]
pub struct Learner {
    memory: Memory,
    store: Arc<dyn LearningStore>,
    settings: std::sync::Arc<LearnSettings>,
    detector: std::sync::Arc<Detector>,
}

impl Learner {
    /// A learner with the committed watcher weights.
    pub fn new(memory: Memory, store: Arc<dyn LearningStore>, settings: LearnSettings) -> Learner {
        Learner::with_detector(memory, store, settings, Detector::builtin().clone())
    }

    /// A learner whose watcher is `detector` (weights trained elsewhere).
    pub fn with_detector(
        memory: Memory,
        store: Arc<dyn LearningStore>,
        settings: LearnSettings,
        detector: Detector,
    ) -> Learner {
        Learner {
            memory,
            store,
            settings: std::sync::Arc::new(settings),
            detector: std::sync::Arc::new(detector),
        }
    }

    /// The memory it keeps learnings in.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    fn store(&self) -> &dyn LearningStore {
        self.store.as_ref()
    }

    /// The question worth asking about a user's message, if the watcher finds a confident
    /// statement in it (the most confident one). The message's embedding is the one recall
    /// computes for the same turn (computed once, whoever asks first).
    pub fn watch(&self, chat_id: i64, text: &str, source: &str, now_ms: u64) -> Option<Proposal> {
        let threshold = self.settings.ask_threshold_in(chat_id);
        let embedding = self.memory.embed_query(text);
        let embed = |texts: &[&str]| self.memory.embed(texts);
        let found = (self
            .detector
            .detect(text, embedding.as_deref(), &embed)
            .into_iter())
        .find(|d| d.confidence >= threshold)?;
        tracing::info!(
            chat_id,
            trigger = %found.trigger,
            confidence = found.confidence,
            "a statement worth remembering"
        );
        Some(Proposal {
            id: 0,
            chat_id,
            text: found.sentence,
            kind: MemoryKind::Learning,
            source: source.to_owned(),
            created_ms: now_ms,
            expires_ms: now_ms + PROPOSAL_TTL_MS,
            message_id: None,
            state: ProposalState::Pending,
            asked_of: None,
            learning: Some(LearningDraft {
                category: found.trigger.category(),
                trigger: Some(found.trigger.as_str().to_owned()),
                detected_pct: (found.confidence * 100.0).round() as u8,
                source_message: Some(text.chars().take(2000).collect()),
                replaces: found.replaces,
            }),
        })
    }

    /// The user said yes to `proposal`: keep it (or reinforce what it repeats).
    pub async fn accept(&self, proposal: &Proposal, now_ms: u64) -> Result<Accepted, LearnError> {
        let draft = proposal.learning.clone();
        let category = draft
            .as_ref()
            .map_or_else(|| Category::guess(&proposal.text), |d| d.category);
        let record = LearningRecord {
            source_message: draft.as_ref().and_then(|d| d.source_message.clone()),
            trigger: draft.as_ref().and_then(|d| d.trigger.clone()),
            ..LearningRecord::new(
                Some(proposal.chat_id),
                category,
                &proposal.text,
                &proposal.source,
                false,
                now_ms,
            )
        };
        self.keep(record, draft.and_then(|d| d.replaces)).await
    }

    /// A learning the user typed (`/remember ...`): manual, confidence 1.
    pub async fn remember(
        &self,
        chat_id: i64,
        text: &str,
        source: &str,
        now_ms: u64,
    ) -> Result<Accepted, LearnError> {
        let replaces = detect(text).into_iter().find_map(|d| d.replaces);
        let record = LearningRecord::new(
            Some(chat_id),
            Category::guess(text),
            text,
            source,
            true,
            now_ms,
        );
        self.keep(record, replaces).await
    }

    async fn keep(
        &self,
        record: LearningRecord,
        replaces: Option<String>,
    ) -> Result<Accepted, LearnError> {
        if record.content.is_empty() {
            return Err(LearnError::Empty);
        }
        let now_ms = record.created_ms;
        let active = self.store().learnings_of(record.chat_id, false).await?;
        let source = record.sources.first().cloned().unwrap_or_default();
        if let Some((mut existing, similarity)) = self
            .duplicate_of(&record.content, replaces.as_deref(), &active)
            .await?
        {
            existing.reinforce(&source, now_ms);
            if record.manual {
                existing.manual = true;
                existing.confidence = confidence_for(existing.times_seen, true);
            }
            self.store().update_learning(existing.clone()).await?;
            tracing::info!(
                number = existing.number,
                times_seen = existing.times_seen,
                confidence = existing.confidence,
                similarity,
                "learning reinforced"
            );
            return Ok(Accepted::Reinforced {
                learning: existing,
                similarity,
            });
        }
        let learning = self.store().add_learning(record).await?;
        let mut retired = Vec::new();
        if let Some(old) = replaces.as_deref() {
            for candidate in active.iter().filter(|l| mentions(&l.content, old)) {
                let reason = format!("replaced by #{}: {}", learning.number, learning.content);
                if let Some(done) = (self.store())
                    .retire_learning(candidate.id, reason, Some(learning.id), now_ms)
                    .await?
                {
                    self.memory.forget(done.id);
                    retired.push(done);
                }
            }
        }
        let contradicted = (self.contradict(&learning, &active, &retired, now_ms)).await?;
        tracing::info!(
            number = learning.number,
            category = %learning.category,
            retired = retired.len(),
            contradicted = contradicted.len(),
            "learning kept"
        );
        Ok(Accepted::New {
            learning,
            retired,
            contradicted,
        })
    }

    /// The active learnings `learning` contradicts (about the same thing, said the other way:
    /// one negated, the other not), each less confident by 0.3 and marked for review. Those it
    /// retired as replaced are left alone.
    async fn contradict(
        &self,
        learning: &LearningRecord,
        active: &[LearningRecord],
        retired: &[LearningRecord],
        now_ms: u64,
    ) -> Result<Vec<LearningRecord>, LearnError> {
        let said_no = negated(&learning.content);
        let opposite: Vec<&LearningRecord> = (active.iter())
            .filter(|l| !retired.iter().any(|r| r.id == l.id))
            .filter(|l| negated(&l.content) != said_no)
            .collect();
        if opposite.is_empty() {
            return Ok(Vec::new());
        }
        let similarities = self.similarities(&learning.content, &opposite).await?;
        let mut contradicted = Vec::new();
        for (old, similarity) in opposite.into_iter().zip(similarities) {
            if similarity < CONTRADICTION_SIMILARITY {
                continue;
            }
            let mut old = old.clone();
            old.contradict(
                format!("contradicted by #{}: {}", learning.number, learning.content),
                now_ms,
            );
            self.store().update_learning(old.clone()).await?;
            tracing::info!(
                event = "learning.invalidated",
                number = old.number,
                by = learning.number,
                similarity,
                confidence = old.confidence,
                "a learning was contradicted; marked for review"
            );
            contradicted.push(old);
        }
        Ok(contradicted)
    }

    /// The active learning `content` repeats, with the similarity, if any. A statement that
    /// replaces something repeats only one that replaces the same thing: "from Tailwind to
    /// Bootstrap" reads much like "from Bootstrap to Tailwind" and says the opposite.
    async fn duplicate_of(
        &self,
        content: &str,
        replaces: Option<&str>,
        active: &[LearningRecord],
    ) -> Result<Option<(LearningRecord, f32)>, LearnError> {
        // "We deploy on Fridays" is no repeat of "we don't deploy on Fridays".
        let said_no = negated(content);
        let comparable: Vec<&LearningRecord> = active
            .iter()
            .filter(|l| negated(&l.content) == said_no)
            .filter(|l| match replaces {
                Some(old) => detect(&l.content).iter().any(|d| {
                    d.replaces
                        .as_deref()
                        .is_some_and(|r| r.eq_ignore_ascii_case(old))
                }),
                None => true,
            })
            .collect();
        if comparable.is_empty() {
            return Ok(None);
        }
        let similarities = self.similarities(content, &comparable).await?;
        Ok(comparable
            .into_iter()
            .zip(similarities)
            .filter(|(_, s)| *s > self.settings.duplicate_similarity)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(l, s)| (l.clone(), s)))
    }

    /// Cosine similarity of `content` with each learning: by the embedding model when it is
    /// loaded (stored vectors reused), else 1 for the same words and 0 otherwise.
    async fn similarities(
        &self,
        content: &str,
        learnings: &[&LearningRecord],
    ) -> Result<Vec<f32>, LearnError> {
        let model = self.memory.model_id();
        let mut stored: Vec<Option<Vec<f32>>> = Vec::with_capacity(learnings.len());
        for learning in learnings {
            let vector = self
                .store()
                .learning_vector(learning.id)
                .await
                .ok()
                .flatten();
            stored.push(
                vector
                    .filter(|v| Some(&v.model_id) == model.as_ref())
                    .map(|v| v.vector),
            );
        }
        let mut texts: Vec<String> = vec![content.to_owned()];
        for (learning, vector) in learnings.iter().zip(&stored) {
            if vector.is_none() {
                texts.push(learning.content.clone());
            }
        }
        // Embedding is CPU work: on the blocking pool.
        let memory = self.memory.clone();
        let fresh = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            memory.embed(&refs)
        })
        .await
        .map_err(|e| LearnError::Task(e.to_string()))?;
        let Some(mut fresh) = fresh.map(Vec::into_iter) else {
            let words = normalised(content);
            return Ok(learnings
                .iter()
                .map(|l| {
                    if normalised(&l.content) == words {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect());
        };
        let Some(query) = fresh.next() else {
            return Ok(vec![0.0; learnings.len()]);
        };
        Ok(stored
            .into_iter()
            .map(|vector| {
                vector
                    .or_else(|| fresh.next())
                    .map_or(0.0, |v| valor_embed::cosine(&query, &v))
            })
            .collect())
    }

    /// A chat's active learnings, by number.
    pub async fn list(&self, chat_id: i64) -> Result<Vec<LearningRecord>, LearnError> {
        Ok(self.store().learnings_of(Some(chat_id), false).await?)
    }

    /// The chat's active learnings marked for review (contradicted since).
    pub async fn to_review(&self, chat_id: i64) -> Result<Vec<LearningRecord>, LearnError> {
        let mut marked = self.list(chat_id).await?;
        marked.retain(|l| l.review.is_some());
        Ok(marked)
    }

    /// Retires learning `number` of a chat at the user's word.
    pub async fn forget(
        &self,
        chat_id: i64,
        number: u64,
        now_ms: u64,
    ) -> Result<LearningRecord, LearnError> {
        let learning = self
            .list(chat_id)
            .await?
            .into_iter()
            .find(|l| l.number == number)
            .ok_or(LearnError::NoSuchLearning(number))?;
        let retired = self
            .store()
            .retire_learning(
                learning.id,
                "forgotten by the user".to_owned(),
                None,
                now_ms,
            )
            .await?
            .ok_or(LearnError::NoSuchLearning(number))?;
        self.memory.forget(retired.id);
        Ok(retired)
    }

    /// A chat's active learnings for a turn's context: highest confidence first.
    pub async fn for_context(&self, chat_id: i64) -> Vec<LearningRecord> {
        let mut learnings = self.list(chat_id).await.unwrap_or_default();
        rank(&mut learnings);
        learnings
    }
}

/// Lowercase words of a text, for comparing texts without the model.
fn normalised(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// `text` mentions `name` as a whole word (case-insensitive).
pub fn mentions(text: &str, name: &str) -> bool {
    let name = name.trim().to_lowercase();
    if name.chars().count() < 2 {
        return false;
    }
    let lower = text.to_lowercase();
    lower.match_indices(&name).any(|(at, _)| {
        let before = lower[..at].chars().next_back();
        let after = lower[at + name.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
        boundary(before) && boundary(after)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_whole_words_only() {
        assert!(mentions("We use Bootstrap 5 for styling", "bootstrap"));
        assert!(mentions("bootstrap.", "Bootstrap"));
        assert!(!mentions("We bootstrapped the project", "bootstrap"));
        assert!(!mentions("anything", "a"));
        assert!(mentions("We use C++ a lot", "C++"));
    }
}
