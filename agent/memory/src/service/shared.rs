//! Search through the shared store (several machines). The query is embedded here, with this
//! node's model; the store ranks by keywords and by vectors and fuses the rankings, so a
//! document another node stored a moment ago is found.

use std::sync::Arc;

use crate::Memory;
use crate::port::SharedSearch;
use crate::search::{CANDIDATES, Hit, MAX_QUERY_BYTES, Query, SearchMode, SearchResult, snippet};
use crate::service::MemoryError;

impl Memory {
    /// From now on searches run in the shared store (`[cluster]`).
    pub fn search_through(&self, shared: Arc<dyn SharedSearch>) {
        if self.inner.shared.set(shared).is_err() {
            tracing::warn!("memory already searches through a shared store");
        }
    }

    /// The shared store searches run through, on several machines.
    pub(crate) fn shared_search(&self) -> Option<Arc<dyn SharedSearch>> {
        self.inner.shared.get().cloned()
    }

    pub(super) async fn search_shared(
        &self,
        shared: Arc<dyn SharedSearch>,
        query: &Query,
    ) -> Result<SearchResult, MemoryError> {
        let limit = query.limit.clamp(1, 200);
        let text = super::snippet_bytes(&query.text, MAX_QUERY_BYTES).to_owned();
        let model = self.embedder().map(|e| e.model_id().to_owned());
        // Embedding is CPU work: on the blocking pool.
        let embedding = match model {
            Some(_) => {
                let (memory, text) = (self.clone(), text.clone());
                tokio::task::spawn_blocking(move || memory.embed_query(&text))
                    .await
                    .map_err(|e| MemoryError::Task(e.to_string()))?
            }
            None => None,
        };
        let with = model.as_deref().zip(embedding.as_deref());
        let mode = if with.is_some() {
            SearchMode::Hybrid
        } else {
            SearchMode::KeywordOnly
        };
        let ranked = shared
            .search_shared(&text, with, &query.filter, CANDIDATES.max(limit))
            .await?;
        let ids: Vec<u64> = ranked.iter().map(|h| h.id).collect();
        let documents = self.inner.store.documents(&ids).await?;
        let hits = (ranked.into_iter().zip(documents))
            .filter_map(|(hit, document)| {
                let document = document?;
                Some(Hit {
                    id: hit.id,
                    kind: document.kind,
                    chat_id: document.chat_id,
                    at_ms: document.at_ms,
                    title: document.title,
                    snippet: snippet(&document.text, 300),
                    chars: document.text.chars().count(),
                    url: document.url,
                    score: hit.score,
                    keyword_match: hit.keyword,
                    similarity: hit.similarity,
                })
            })
            .take(limit)
            .collect();
        Ok(SearchResult { mode, hits })
    }
}
