//! Memory in a turn: the engine's [`Recall`] and the `/health` component.

use serde_json::{Map, Value, json};
use valor_core::observe::Observation;
use valor_core::recall::{LearnedFact, Recall, Recollection};
use valor_core::session::SessionSummary;
use valor_monitor::{HealthComponent, Status};
use valor_protocol::learnings::rank;
use valor_protocol::records::{MemoryKind, MemoryRecord};
use valor_protocol::time::now_ms;

use crate::catalogue::Filter;
use crate::search::Query;
use crate::service::{Memory, MemoryState};

/// Memories offered to a turn at most (the prompt budget usually stops earlier).
const RECALLED: usize = 8;
/// A vector-only hit below this similarity is noise, not a memory worth the prompt.
const MIN_SIMILARITY: f32 = 0.35;

#[async_trait::async_trait]
impl Recall for Memory {
    async fn recall(&self, chat_id: i64, text: &str, exclude: &[u64]) -> Vec<Recollection> {
        let query = Query {
            text: text.to_owned(),
            filter: Filter {
                chat_id: Some(chat_id),
                include_shared: true,
                exclude: exclude.to_vec(),
                ..Filter::default()
            },
            limit: RECALLED,
        };
        let result = match self.search(&query).await {
            Ok(result) => result,
            Err(e) => {
                tracing::warn!(chat_id, error = %e, "memory recall failed; the turn goes on without it");
                return Vec::new();
            }
        };
        result
            .hits
            .into_iter()
            // A hit found by meaning alone must be close enough to matter.
            .filter(|h| h.keyword_match || h.similarity.is_some_and(|s| s >= MIN_SIMILARITY))
            .map(|h| Recollection {
                id: h.id,
                kind: h.kind.as_str().to_owned(),
                at_ms: h.at_ms,
                title: h.title,
                excerpt: h.snippet,
            })
            .collect()
    }

    /// The chat's active learnings and those of no chat, highest confidence first.
    async fn learnings(&self, chat_id: i64) -> Vec<LearnedFact> {
        // One pass over the records: this runs before every turn.
        let mut learnings: Vec<_> = match self.store().all_learnings().await {
            Ok(all) => all
                .into_iter()
                .filter(|l| l.is_active() && l.chat_id.is_none_or(|c| c == chat_id))
                .collect(),
            Err(e) => {
                tracing::warn!(chat_id, error = %e, "cannot read learnings; the turn goes on without them");
                return Vec::new();
            }
        };
        rank(&mut learnings);
        learnings
            .into_iter()
            .map(|l| LearnedFact {
                id: l.id,
                number: l.number,
                category: l.category.as_str().to_owned(),
                text: l.content,
                confidence: l.confidence,
            })
            .collect()
    }

    /// Observations become searchable memory of the chat (kind `observation`).
    async fn keep_observations(&self, chat_id: i64, observations: &[Observation]) {
        let at_ms = now_ms();
        let records = observations
            .iter()
            .map(|o| MemoryRecord {
                id: 0,
                kind: MemoryKind::Observation,
                chat_id: Some(chat_id),
                at_ms,
                // Kept memory is a way out: what a tool call carried stays out of it.
                title: valor_redact::redact_owned(o.title.clone()),
                text: valor_redact::redact_owned(o.text()),
                url: None,
            })
            .collect();
        if let Err(e) = self.store().save_memories(records).await {
            tracing::warn!(chat_id, error = %e, "cannot keep the turn's observations");
        }
    }

    async fn keep_summary(&self, chat_id: i64, summary: &SessionSummary) {
        let record = MemoryRecord {
            id: 0,
            kind: MemoryKind::Summary,
            chat_id: Some(chat_id),
            at_ms: now_ms(),
            title: valor_redact::redact_owned(summary.title.clone()),
            text: valor_redact::redact_owned(summary.text.clone()),
            url: None,
        };
        if let Err(e) = self.store().save_memories(vec![record]).await {
            tracing::warn!(chat_id, error = %e, "cannot keep the session summary");
        }
    }

    async fn last_summary(&self, chat_id: i64) -> Option<String> {
        match self
            .store()
            .latest_memory(MemoryKind::Summary, chat_id)
            .await
        {
            Ok(found) => found.map(|r| r.text),
            Err(e) => {
                tracing::warn!(chat_id, error = %e, "cannot read the last session summary");
                None
            }
        }
    }
}

/// `/health` component `memory_index` (long-term memory's index; `ram` is the process's own
/// resident memory).
#[derive(Clone)]
pub struct MemoryHealth(pub Memory);

impl HealthComponent for MemoryHealth {
    fn name(&self) -> &'static str {
        "memory_index"
    }

    fn check(&self) -> (Status, Map<String, Value>) {
        let memory = &self.0;
        let state = memory.state();
        let counts = memory.counts();
        let mut figures = Map::new();
        if let Ok(Value::Object(state_fields)) = serde_json::to_value(&state) {
            figures.extend(state_fields);
        }
        figures.insert("documents".into(), json!(counts.documents()));
        figures.insert("vectors".into(), json!(counts.vectors));
        figures.insert("queued".into(), json!(counts.queued));
        figures.insert("set_aside".into(), json!(memory.set_aside()));
        figures.insert("indexed".into(), json!(memory.indexed_vectors()));
        figures.insert("model".into(), json!(memory.model_id()));
        let search = match state {
            MemoryState::KeywordOnly { .. } => "keyword_only",
            MemoryState::Ready => "hybrid",
            _ if memory.indexed_vectors() > 0 => "hybrid_partial",
            _ => "keyword_only",
        };
        figures.insert("search".into(), json!(search));
        let status = if state.is_degraded() {
            Status::Degraded
        } else {
            Status::Ok
        };
        (status, figures)
    }
}
