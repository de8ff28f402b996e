//! The memory service: search indexes kept in step with the store, and the background worker
//! that embeds queued documents. Searching never waits for the worker: without an embedder or
//! an index it answers from keywords alone and says so on `/health`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use valor_embed::Embedder;
use valor_protocol::StoreFailure;
use valor_protocol::memory::MemoryCounts;
use valor_protocol::records::{Document, MemoryKind, StoredVector};

use crate::catalogue::{Catalogue, Entry, Filter};
use crate::keyword::KeywordIndex;
use crate::port::MemoryStore;
use crate::search::{
    CANDIDATES, Hit, MAX_QUERY_BYTES, Query, SearchMode, SearchResult, fuse, snippet,
};
use crate::vector::{IndexError, VectorIndex};

mod shared;
mod worker;

/// Texts embedded per pass of the worker: small enough that a query embedded meanwhile waits
/// little for the cores.
const WORKER_BATCH: usize = 16;
/// Vectors added between two saves of the index.
const SAVE_EVERY: u64 = 5_000;
/// How long the worker sleeps when nothing wakes it.
const IDLE_WAIT: Duration = Duration::from_secs(30);
/// How often a missing model is looked for again.
const MODEL_RETRY: Duration = Duration::from_secs(60);
/// Filters matching fewer documents than this (one chat's, as a rule) are searched by comparing
/// each of their vectors in memory, not through the graph: 10,000 comparisons take about a
/// millisecond, a filtered graph walk at 2% of 100k took eight.
const EXACT_BELOW: usize = 10_000;

#[derive(Debug, Clone)]
pub struct MemorySettings {
    /// Where the vector index is saved (beside the store).
    pub index_dir: PathBuf,
    /// The embedding model (`config.json`, `tokenizer.json`, `model.safetensors`).
    pub model_dir: PathBuf,
}

impl MemorySettings {
    /// The usual layout: the index beside the store at `store_path`.
    pub fn beside(store_path: &Path, model_dir: PathBuf) -> MemorySettings {
        let mut index = store_path.as_os_str().to_owned();
        index.push(".index");
        MemorySettings {
            index_dir: PathBuf::from(index),
            model_dir,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(transparent)]
    Store(#[from] StoreFailure),
    #[error("the embedding model is not available: {0}")]
    NoModel(String),
    #[error(transparent)]
    Embed(#[from] valor_embed::EmbedError),
    #[error("a memory task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// Where the memory layer stands, for `/health` and `valor memory stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MemoryState {
    /// The worker has not looked at the model and index yet.
    Starting,
    /// Hybrid search over an index that covers every embedded document.
    Ready,
    /// No embedder: keyword search only.
    KeywordOnly { reason: String },
    /// The stored vectors come from another model: everything is being embedded again.
    ModelMismatch { stored: String, current: String },
    /// The index is being rebuilt from the stored vectors, or documents re-embedded.
    Reindexing { done: u64, total: u64 },
}

impl MemoryState {
    pub fn is_degraded(&self) -> bool {
        !matches!(self, MemoryState::Ready | MemoryState::Starting)
    }
}

#[derive(Default)]
pub(crate) struct Indexes {
    pub(crate) catalogue: Catalogue,
    keyword: KeywordIndex,
    /// While the indexes are built from the store: the documents written meanwhile, added
    /// to what was built before it replaces these.
    written_while_loading: Option<Vec<Document>>,
}

struct Inner {
    store: Arc<dyn MemoryStore>,
    settings: MemorySettings,
    indexes: RwLock<Indexes>,
    vectors: RwLock<Option<Arc<VectorIndex>>>,
    embedder: RwLock<Option<Arc<Embedder>>>,
    state: Mutex<MemoryState>,
    wake: tokio::sync::Notify,
    reindex_requested: AtomicBool,
    embedded: AtomicU64,
    unsaved: AtomicU64,
    /// The embedding queue's length: read from the store at start, then counted as documents
    /// are written and embedded (`/health` reads it often; a count in the store walks it).
    queued: AtomicU64,
    /// Failures per queued document; at [`POISON_STRIKES`] it leaves the queue.
    strikes: Mutex<HashMap<u64, u32>>,
    /// Queued documents set aside after failing [`POISON_STRIKES`] times.
    set_aside: AtomicU64,
    /// Several machines: searches run in the shared store ([`Memory::search_through`]).
    shared: std::sync::OnceLock<Arc<dyn crate::port::SharedSearch>>,
    /// True once the indexes hold everything that was in the store at open.
    loaded: tokio::sync::watch::Sender<bool>,
    /// The latest queries' embeddings, shared by recall and the watcher.
    queries: crate::query_cache::QueryEmbeddings,
}

/// Long-term memory; clones share it.
#[derive(Clone)]
pub struct Memory {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("state", &self.state())
            .finish()
    }
}

/// Failures after which a queued document leaves the embedding queue.
const POISON_STRIKES: u32 = 3;

/// What is indexed and embedded: a message's title is cut from its text, so the text alone;
/// a saved memory's title says something of its own.
fn embed_text(document: &Document) -> String {
    match document.kind {
        MemoryKind::Message => document.text.clone(),
        _ => format!("{}\n{}", document.title, document.text),
    }
}

impl Memory {
    /// Builds the keyword index and catalogue from the store, queues documents a crash left
    /// unembedded, and follows the store's writes from now on. The model and the vector index
    /// are the worker's business ([`Memory::run_worker`]). Runs inside a tokio runtime.
    pub fn open(
        store: Arc<dyn MemoryStore>,
        settings: MemorySettings,
    ) -> Result<Memory, MemoryError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| MemoryError::Task("memory opens inside a tokio runtime".to_owned()))?;
        let (loaded, _) = tokio::sync::watch::channel(false);
        let memory = Memory {
            inner: Arc::new(Inner {
                store: store.clone(),
                settings,
                indexes: RwLock::new(Indexes {
                    written_while_loading: Some(Vec::new()),
                    ..Indexes::default()
                }),
                vectors: RwLock::new(None),
                embedder: RwLock::new(None),
                state: Mutex::new(MemoryState::Starting),
                wake: tokio::sync::Notify::new(),
                reindex_requested: AtomicBool::new(false),
                embedded: AtomicU64::new(0),
                unsaved: AtomicU64::new(0),
                queued: AtomicU64::new(0),
                strikes: Mutex::new(HashMap::new()),
                set_aside: AtomicU64::new(0),
                shared: std::sync::OnceLock::new(),
                loaded,
                queries: Default::default(),
            }),
        };
        let weak = Arc::downgrade(&memory.inner);
        store.follow_documents(Arc::new(move |document| {
            if let Some(inner) = weak.upgrade() {
                let mut indexes = inner
                    .indexes
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(written) = indexes.written_while_loading.as_mut() {
                    written.push(document.clone());
                }
                add_to(&mut indexes, document);
                // Every document written is queued for embedding.
                inner.queued.fetch_add(1, Ordering::Relaxed);
                inner.wake.notify_one();
            }
        }));
        // Reading 100k documents takes seconds: start-up does not wait for it. Until it is
        // done, searches see the documents written since (the listener) and what is read.
        let building = memory.clone();
        runtime.spawn(async move { building.load_indexes().await });
        Ok(memory)
    }

    /// Builds the keyword index and catalogue from the store, merges what the listener added
    /// meanwhile, and queues documents a crash left unembedded.
    async fn load_indexes(&self) {
        let started = Instant::now();
        let mut feed = self.inner.store.document_feed();
        // Indexing is CPU work: on the blocking pool, reading the feed as the store fills it.
        let built = tokio::task::spawn_blocking(move || {
            let mut built = Indexes::default();
            while let Some(document) = feed.blocking_recv() {
                match document {
                    Ok(document) => add_to(&mut built, &document),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read memory from the store; search sees new documents only");
                        break;
                    }
                }
            }
            built
        })
        .await;
        match built {
            Ok(mut built) => {
                let mut live = self
                    .inner
                    .indexes
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                for document in live.written_while_loading.take().unwrap_or_default() {
                    add_to(&mut built, &document);
                }
                *live = built;
            }
            Err(e) => {
                tracing::error!(error = %e, "the memory index loader failed; search sees new documents only");
                self.inner
                    .indexes
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .written_while_loading = None;
            }
        }
        let requeued = match self.inner.store.requeue_missing().await {
            Ok(ids) => ids.len(),
            Err(e) => {
                tracing::error!(error = %e, "cannot check the embedding queue");
                0
            }
        };
        self.refresh_queued().await;
        tracing::info!(
            documents = self.indexes().catalogue.len(),
            requeued,
            ms = started.elapsed().as_millis() as u64,
            "memory indexes loaded"
        );
        self.inner.loaded.send_replace(true);
        self.inner.wake.notify_one();
    }

    /// Reads the embedding queue's length from the store.
    async fn refresh_queued(&self) {
        match self.inner.store.queued_count().await {
            Ok(queued) => self.inner.queued.store(queued, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "cannot count the embedding queue"),
        }
    }

    /// Waits until the keyword index and catalogue hold everything in the store.
    pub async fn loaded(&self) {
        let mut loaded = self.inner.loaded.subscribe();
        let _ = loaded.wait_for(|done| *done).await;
    }

    /// The store memory reads and writes.
    pub(crate) fn store(&self) -> &dyn MemoryStore {
        self.inner.store.as_ref()
    }

    pub(crate) fn indexes(&self) -> std::sync::RwLockReadGuard<'_, Indexes> {
        self.inner
            .indexes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn state(&self) -> MemoryState {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_state(&self, state: MemoryState) {
        let mut current = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *current != state {
            tracing::info!(state = ?state, "memory state");
            *current = state;
        }
    }

    fn embedder(&self) -> Option<Arc<Embedder>> {
        self.inner
            .embedder
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn vector_index(&self) -> Option<Arc<VectorIndex>> {
        self.inner
            .vectors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The model id vectors are made with now, once the model is loaded.
    pub fn model_id(&self) -> Option<String> {
        self.embedder().map(|e| e.model_id().to_owned())
    }

    /// What memory holds: documents as the catalogue counts them, vectors as the index holds
    /// them, and the embedding queue. Never a walk over the store: sled keeps in memory every
    /// page a walk reads, and this runs after every batch the worker embeds.
    pub fn counts(&self) -> MemoryCounts {
        let indexes = self.indexes();
        let live = |kind| indexes.catalogue.live(kind);
        MemoryCounts {
            messages: live(MemoryKind::Message),
            links: live(MemoryKind::Link),
            learnings: live(MemoryKind::Learning),
            insights: live(MemoryKind::Insight),
            observations: live(MemoryKind::Observation),
            summaries: live(MemoryKind::Summary),
            vectors: self.indexed_vectors() as u64,
            queued: self.inner.queued.load(Ordering::Relaxed),
        }
    }

    /// Vectors in the search index.
    pub fn indexed_vectors(&self) -> usize {
        self.vector_index().map_or(0, |v| v.len())
    }

    /// Searches memory. Hybrid when the embedder and index are up, keywords alone otherwise.
    pub async fn search(&self, query: &Query) -> Result<SearchResult, MemoryError> {
        if let Some(shared) = self.inner.shared.get() {
            return self.search_shared(Arc::clone(shared), query).await;
        }
        let limit = query.limit.clamp(1, 200);
        // Embedding the query and walking the indexes is CPU work: on the blocking pool.
        let ranked = {
            let (memory, query) = (self.clone(), query.clone());
            tokio::task::spawn_blocking(move || memory.rank(&query))
                .await
                .map_err(|e| MemoryError::Task(e.to_string()))?
        };
        let mut hits = Vec::with_capacity(limit);
        // Read a limit's worth at a time: a few may be gone, rarely more.
        for chunk in ranked.fused.chunks(limit) {
            if hits.len() == limit {
                break;
            }
            let ids: Vec<u64> = chunk.iter().map(|(id, _)| *id).collect();
            let documents = self.inner.store.documents(&ids).await?;
            for ((id, score), document) in chunk.iter().zip(documents) {
                // A document gone since it was indexed (a retired learning) is skipped.
                let Some(document) = document else {
                    continue;
                };
                if hits.len() == limit {
                    break;
                }
                let similarity = ranked.vector_hits.iter().find(|h| h.0 == *id).map(|h| h.1);
                hits.push(Hit {
                    id: *id,
                    kind: document.kind,
                    chat_id: document.chat_id,
                    at_ms: document.at_ms,
                    title: document.title,
                    snippet: snippet(&document.text, 300),
                    chars: document.text.chars().count(),
                    url: document.url,
                    score: *score,
                    keyword_match: ranked.keyword_ids.contains(id),
                    similarity,
                });
            }
        }
        Ok(SearchResult {
            mode: ranked.mode,
            hits,
        })
    }

    /// The keyword and vector rankings of a query, fused (ids, best first).
    fn rank(&self, query: &Query) -> Ranked {
        let text = snippet_bytes(&query.text, MAX_QUERY_BYTES);
        let limit = query.limit.clamp(1, 200);
        let candidates = CANDIDATES.max(limit);
        let filter = &query.filter;
        // The query's embedding (the slowest part) runs beside the keyword search.
        let embedder = self.embedder().filter(|_| !text.trim().is_empty());
        let (query_vector, (keyword_ids, matching)) = std::thread::scope(|scope| {
            let embedding = embedder
                .as_ref()
                .map(|e| scope.spawn(move || self.embed_query_with(e, text)));
            let keyword = self.keyword_ranking(text, candidates, filter);
            let vector = embedding.and_then(|handle| handle.join().ok()).flatten();
            (vector, keyword)
        });
        let vector_hits = match (&embedder, query_vector) {
            (Some(embedder), Some(vector)) => {
                self.vector_ranking(embedder, &vector, candidates, query, matching.as_deref())
            }
            _ => None,
        };
        let mode = if vector_hits.is_some() {
            SearchMode::Hybrid
        } else {
            SearchMode::KeywordOnly
        };
        let vector_hits = vector_hits.unwrap_or_default();
        let vector_ids: Vec<u64> = vector_hits.iter().map(|h| h.0).collect();
        let fused = fuse(&[&keyword_ids, &vector_ids]);
        Ranked {
            mode,
            fused,
            keyword_ids,
            vector_hits,
        }
    }

    /// The keyword ranking (ids, best first), and the ids a narrow filter admits (searched
    /// exactly: the graph would miss most of its few ids).
    fn keyword_ranking(
        &self,
        text: &str,
        candidates: usize,
        filter: &Filter,
    ) -> (Vec<u64>, Option<Vec<u64>>) {
        let indexes = self.indexes();
        let catalogue = &indexes.catalogue;
        let keep = |slot: u32| catalogue.entry(slot).is_some_and(|e| filter.accepts(e));
        let ids: Vec<u64> = indexes
            .keyword
            .search(text, candidates, keep)
            .into_iter()
            .filter_map(|(slot, _)| catalogue.entry(slot).map(|e| e.id))
            .collect();
        let matching: Option<Vec<u64>> = (!filter.is_open()).then(|| {
            catalogue
                .entries()
                .iter()
                .filter(|e| filter.accepts(e))
                .take(EXACT_BELOW)
                .map(|e| e.id)
                .collect()
        });
        (ids, matching.filter(|m| m.len() < EXACT_BELOW))
    }

    /// The vector ranking, or `None` when there is no index of this model to make it.
    fn vector_ranking(
        &self,
        embedder: &Embedder,
        vector: &[f32],
        candidates: usize,
        query: &Query,
        matching: Option<&[u64]>,
    ) -> Option<Vec<(u64, f32)>> {
        let index = self.vector_index()?;
        if index.model_id() != embedder.model_id() {
            return None;
        }
        // The index's similarities are the quantized vectors' (within about 0.01 of the exact
        // ones). Candidates are not rescored from the store's full vectors: sled keeps every
        // page a read touches, so rescoring 50 candidates a search made the heap grow with
        // every search (+55 MB over 900 searches at 100k documents), to reorder only
        // near-duplicates.
        if let Some(ids) = matching {
            return Some(index.search_among(vector, ids, candidates));
        }
        if query.filter.is_open() && query.filter.exclude.is_empty() {
            return Some(index.search(vector, candidates, None));
        }
        let indexes = self.indexes();
        let catalogue = &indexes.catalogue;
        let keep = |id: u64| catalogue.by_id(id).is_some_and(|e| query.filter.accepts(e));
        Some(index.search(vector, candidates, Some(&keep)))
    }

    /// The embedding of a query (a user's message), computed once for recall and the watcher
    /// alike; `None` without a model or when it fails (logged).
    pub fn embed_query(&self, text: &str) -> Option<Vec<f32>> {
        let text = snippet_bytes(text, MAX_QUERY_BYTES);
        let embedder = self.embedder().filter(|_| !text.trim().is_empty())?;
        self.embed_query_with(&embedder, text)
    }

    fn embed_query_with(&self, embedder: &Embedder, text: &str) -> Option<Vec<f32>> {
        self.inner
            .queries
            .get_or_embed(embedder.model_id(), text, || {
                match embedder.embed(&[text]) {
                    Ok(mut vectors) => vectors.pop(),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot embed a query; keywords only");
                        None
                    }
                }
            })
    }

    /// Embeds texts with the loaded model; `None` while there is none (loading, keyword-only)
    /// or when it fails (logged).
    pub fn embed(&self, texts: &[&str]) -> Option<Vec<Vec<f32>>> {
        let embedder = self.embedder()?;
        match embedder.embed(texts) {
            Ok(vectors) => Some(vectors),
            Err(e) => {
                tracing::warn!(error = %e, "cannot embed");
                None
            }
        }
    }

    /// Takes a document the store no longer has (a retired learning) out of search at once.
    pub fn forget(&self, id: u64) {
        self.inner
            .indexes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .catalogue
            .remove(id);
    }

    /// The vector index's nearest documents to `vector`, unfiltered, as searches see them
    /// (for measurements).
    pub fn vector_hits(&self, vector: &[f32], limit: usize) -> Vec<(u64, f32)> {
        self.vector_index()
            .map(|index| index.search(vector, limit, None))
            .unwrap_or_default()
    }

    /// Asks the worker to embed everything again (after the model changed, or on request).
    pub fn request_reindex(&self) {
        self.inner.reindex_requested.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    /// Documents embedded by this process so far.
    pub fn embedded(&self) -> u64 {
        self.inner.embedded.load(Ordering::Relaxed)
    }
}

/// A query's rankings, before the documents are read.
struct Ranked {
    mode: SearchMode,
    /// Ids and fused scores, best first.
    fused: Vec<(u64, f32)>,
    keyword_ids: Vec<u64>,
    /// Ids and similarities.
    vector_hits: Vec<(u64, f32)>,
}

fn snippet_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn add_to(indexes: &mut Indexes, document: &Document) {
    if let Some(slot) = indexes.catalogue.add(Entry::from(document)) {
        indexes.keyword.add(slot, &embed_text(document));
    }
}
