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
use valor_store::{Document, MemoryCounts, Store, StoreError, StoredVector};

use crate::catalogue::{Catalogue, Entry, Filter};
use crate::keyword::KeywordIndex;
use crate::search::{
    CANDIDATES, Hit, MAX_QUERY_BYTES, Query, SearchMode, SearchResult, fuse, snippet,
};
use crate::vector::{IndexError, VectorIndex};

/// Texts embedded per pass of the worker: small enough that a query embedded meanwhile waits
/// little for the cores.
const WORKER_BATCH: usize = 16;
/// Vectors added between two saves of the index.
const SAVE_EVERY: u64 = 5_000;
/// How long the worker sleeps when nothing wakes it.
const IDLE_WAIT: Duration = Duration::from_secs(30);
/// How often a missing model is looked for again.
const MODEL_RETRY: Duration = Duration::from_secs(60);
/// Filters matching fewer documents than this are searched exactly, not through the graph.
const EXACT_BELOW: usize = 2_000;

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
    Store(#[from] StoreError),
    #[error("the embedding model is not available: {0}")]
    NoModel(String),
    #[error(transparent)]
    Embed(#[from] valor_embed::EmbedError),
    #[error("a memory task failed: {0}")]
    Task(String),
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
}

struct Inner {
    store: Store,
    settings: MemorySettings,
    indexes: RwLock<Indexes>,
    vectors: RwLock<Option<Arc<VectorIndex>>>,
    embedder: RwLock<Option<Arc<Embedder>>>,
    state: Mutex<MemoryState>,
    wake: tokio::sync::Notify,
    reindex_requested: AtomicBool,
    embedded: AtomicU64,
    unsaved: AtomicU64,
    /// Failures per queued document; at [`POISON_STRIKES`] it leaves the queue.
    strikes: Mutex<HashMap<u64, u32>>,
    /// Queued documents set aside after failing [`POISON_STRIKES`] times.
    set_aside: AtomicU64,
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
        valor_store::MemoryKind::Message => document.text.clone(),
        _ => format!("{}\n{}", document.title, document.text),
    }
}

impl Memory {
    /// Builds the keyword index and catalogue from the store, queues documents a crash left
    /// unembedded, and follows the store's writes from now on. The model and the vector index
    /// are the worker's business ([`Memory::run_worker`]).
    pub fn open(store: Store, settings: MemorySettings) -> Result<Memory, MemoryError> {
        let (loaded, _) = tokio::sync::watch::channel(false);
        let memory = Memory {
            inner: Arc::new(Inner {
                store: store.clone(),
                settings,
                indexes: RwLock::new(Indexes::default()),
                vectors: RwLock::new(None),
                embedder: RwLock::new(None),
                state: Mutex::new(MemoryState::Starting),
                wake: tokio::sync::Notify::new(),
                reindex_requested: AtomicBool::new(false),
                embedded: AtomicU64::new(0),
                unsaved: AtomicU64::new(0),
                strikes: Mutex::new(HashMap::new()),
                set_aside: AtomicU64::new(0),
                loaded,
                queries: Default::default(),
            }),
        };
        let weak = Arc::downgrade(&memory.inner);
        store.set_listener(Arc::new(move |document| {
            if let Some(inner) = weak.upgrade() {
                add_to(
                    &mut inner
                        .indexes
                        .write()
                        .unwrap_or_else(PoisonError::into_inner),
                    document,
                );
                inner.wake.notify_one();
            }
        }));
        // Reading 100k documents takes seconds: start-up does not wait for it. Until it is
        // done, searches see the documents written since (the listener) and what is read.
        let building = memory.clone();
        std::thread::Builder::new()
            .name("memory-index".to_owned())
            .spawn(move || building.load_indexes())
            .map_err(|e| MemoryError::Task(format!("cannot start the index loader: {e}")))?;
        Ok(memory)
    }

    /// Builds the keyword index and catalogue from the store, merges what the listener added
    /// meanwhile, and queues documents a crash left unembedded.
    fn load_indexes(&self) {
        let started = Instant::now();
        let mut built = Indexes::default();
        let read = self
            .inner
            .store
            .for_each_document(|document| add_to(&mut built, &document));
        if let Err(e) = read {
            tracing::error!(error = %e, "cannot read memory from the store; search sees new documents only");
        }
        {
            let mut live = self
                .inner
                .indexes
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let added: Vec<u64> = live
                .catalogue
                .entries()
                .iter()
                .map(|e| e.id)
                .filter(|id| built.catalogue.slot(*id).is_none())
                .collect();
            for id in added {
                if let Ok(Some(document)) = self.inner.store.document(id) {
                    add_to(&mut built, &document);
                }
            }
            *live = built;
        }
        let requeued = match self.inner.store.requeue_missing() {
            Ok(ids) => ids.len(),
            Err(e) => {
                tracing::error!(error = %e, "cannot check the embedding queue");
                0
            }
        };
        tracing::info!(
            documents = self.indexes().catalogue.len(),
            requeued,
            ms = started.elapsed().as_millis() as u64,
            "memory indexes loaded"
        );
        self.inner.loaded.send_replace(true);
        self.inner.wake.notify_one();
    }

    /// Waits until the keyword index and catalogue hold everything in the store.
    pub async fn loaded(&self) {
        let mut loaded = self.inner.loaded.subscribe();
        let _ = loaded.wait_for(|done| *done).await;
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
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

    pub fn counts(&self) -> MemoryCounts {
        self.inner.store.memory_counts()
    }

    /// Vectors in the search index.
    pub fn indexed_vectors(&self) -> usize {
        self.vector_index().map_or(0, |v| v.len())
    }

    /// Searches memory. Hybrid when the embedder and index are up, keywords alone otherwise.
    pub fn search(&self, query: &Query) -> Result<SearchResult, MemoryError> {
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
        let mut hits = Vec::with_capacity(limit);
        for (id, score) in fused {
            if hits.len() == limit {
                break;
            }
            // A document gone since it was indexed (a retired learning) is skipped.
            let Some(document) = self.inner.store.document(id)? else {
                continue;
            };
            let similarity = vector_hits.iter().find(|h| h.0 == id).map(|h| h.1);
            hits.push(Hit {
                id,
                kind: document.kind,
                chat_id: document.chat_id,
                at_ms: document.at_ms,
                title: document.title,
                snippet: snippet(&document.text, 300),
                chars: document.text.chars().count(),
                url: document.url,
                score,
                keyword_match: keyword_ids.contains(&id),
                similarity,
            });
        }
        Ok(SearchResult { mode, hits })
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
        if let Some(ids) = matching {
            let mut exact: Vec<(u64, f32)> = ids
                .iter()
                .filter_map(|&id| {
                    let stored = self.inner.store.vector(id).ok()??;
                    (stored.model_id == embedder.model_id())
                        .then(|| (id, valor_embed::cosine(vector, &stored.vector)))
                })
                .collect();
            exact.sort_by(|a, b| b.1.total_cmp(&a.1));
            exact.truncate(candidates);
            return Some(exact);
        }
        if query.filter.is_open() && query.filter.exclude.is_empty() {
            let hits = index.search(vector, candidates, None);
            return Some(self.rescored(embedder.model_id(), vector, hits));
        }
        let hits = {
            let indexes = self.indexes();
            let catalogue = &indexes.catalogue;
            let keep = |id: u64| catalogue.by_id(id).is_some_and(|e| query.filter.accepts(e));
            index.search(vector, candidates, Some(&keep))
        };
        Some(self.rescored(embedder.model_id(), vector, hits))
    }

    /// The index's candidates ordered by their exact similarity: the index compares quantized
    /// vectors, which cannot tell near-duplicates apart; the store has them in full.
    fn rescored(&self, model_id: &str, query: &[f32], hits: Vec<(u64, f32)>) -> Vec<(u64, f32)> {
        let mut exact: Vec<(u64, f32)> = hits
            .into_iter()
            .map(|(id, approximate)| match self.inner.store.vector(id) {
                Ok(Some(stored)) if stored.model_id == model_id => {
                    (id, valor_embed::cosine(query, &stored.vector))
                }
                _ => (id, approximate),
            })
            .collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1));
        exact
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

    /// The vector index's nearest documents to `vector`, unfiltered and rescored as searches
    /// are (for measurements).
    pub fn vector_hits(&self, vector: &[f32], limit: usize) -> Vec<(u64, f32)> {
        let Some(index) = self.vector_index() else {
            return Vec::new();
        };
        let hits = index.search(vector, CANDIDATES.max(limit), None);
        let mut exact = self.rescored(index.model_id(), vector, hits);
        exact.truncate(limit);
        exact
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

// -- the worker ---------------------------------------------------------------------------------

impl Memory {
    /// Loads the model and the index, then embeds queued documents until `shutdown`. Saves the
    /// index before it returns.
    pub async fn run_worker(self, shutdown: tokio_util::sync::CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = self.loaded() => {}
        }
        let mut last_model_try: Option<Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if self.embedder().is_none()
                && last_model_try.is_none_or(|t| t.elapsed() >= MODEL_RETRY)
            {
                last_model_try = Some(Instant::now());
                self.load_model().await;
            }
            let progressed = match self.embedder() {
                Some(embedder) => match self.step(&embedder).await {
                    Ok(progressed) => progressed,
                    Err(e) => {
                        tracing::error!(error = %e, "memory worker step failed");
                        false
                    }
                },
                None => false,
            };
            if !progressed {
                self.save_if_dirty().await;
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.inner.wake.notified() => {}
                    () = tokio::time::sleep(IDLE_WAIT) => {}
                }
            }
        }
        self.save_if_dirty().await;
    }

    async fn load_model(&self) {
        let dir = self.inner.settings.model_dir.clone();
        let loaded = tokio::task::spawn_blocking(move || Embedder::load(&dir)).await;
        match loaded {
            Ok(Ok(embedder)) => {
                tracing::info!(model = embedder.model_id(), "embedding model loaded");
                *self
                    .inner
                    .embedder
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(embedder));
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "no embedding model: memory search uses keywords only");
                self.set_state(MemoryState::KeywordOnly {
                    reason: e.to_string(),
                });
            }
            Err(e) => self.set_state(MemoryState::KeywordOnly {
                reason: format!("the model loader failed: {e}"),
            }),
        }
    }

    /// One unit of work; false when there was nothing to do.
    async fn step(&self, embedder: &Arc<Embedder>) -> Result<bool, MemoryError> {
        let model = embedder.model_id().to_owned();
        if self.inner.reindex_requested.swap(false, Ordering::SeqCst) {
            self.start_reindex(&model)?;
            return Ok(true);
        }
        if self.vector_index().is_none() {
            self.open_index(embedder).await?;
            return Ok(true);
        }
        let ids = self.inner.store.queued_for_embedding(WORKER_BATCH)?;
        if ids.is_empty() {
            self.set_state(MemoryState::Ready);
            return Ok(false);
        }
        let mut documents = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for id in ids {
            match self.inner.store.document(id) {
                Ok(Some(d)) => documents.push(d),
                Ok(None) => gone.push(id),
                // A record that cannot be read must not block the queue behind it.
                Err(e) => self.strike(id, &e.to_string())?,
            }
        }
        self.inner.store.unqueue(&gone)?;
        let embedded = self.embed_documents(embedder, documents).await?;
        let stored: Vec<(u64, StoredVector)> = embedded
            .into_iter()
            .map(|(d, vector)| {
                (
                    d.id,
                    StoredVector {
                        model_id: model.clone(),
                        vector,
                    },
                )
            })
            .collect();
        self.inner.store.put_vectors(&stored)?;
        if let Some(index) = self.vector_index() {
            let items: Vec<(u64, Vec<f32>)> =
                stored.into_iter().map(|(id, v)| (id, v.vector)).collect();
            index.insert(&items);
            self.inner
                .embedded
                .fetch_add(items.len() as u64, Ordering::Relaxed);
            if self
                .inner
                .unsaved
                .fetch_add(items.len() as u64, Ordering::Relaxed)
                >= SAVE_EVERY
            {
                self.save_if_dirty().await;
            }
        }
        self.report_progress();
        Ok(true)
    }

    /// Embeds a batch; when the batch fails, each document alone, so one that cannot be
    /// embedded is struck (and in the end set aside) instead of failing every batch it is in.
    async fn embed_documents(
        &self,
        embedder: &Arc<Embedder>,
        documents: Vec<Document>,
    ) -> Result<Vec<(Document, Vec<f32>)>, MemoryError> {
        let texts: Vec<String> = documents.iter().map(embed_text).collect();
        let worker_embedder = Arc::clone(embedder);
        let batch = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            worker_embedder.embed(&refs)
        })
        .await
        .map_err(|e| MemoryError::Task(e.to_string()))?;
        match batch {
            Ok(vectors) => return Ok(documents.into_iter().zip(vectors).collect()),
            Err(e) if documents.len() <= 1 => {
                for d in &documents {
                    self.strike(d.id, &e.to_string())?;
                }
                return Ok(Vec::new());
            }
            Err(e) => {
                tracing::warn!(error = %e, "a batch failed to embed; trying its documents one by one")
            }
        }
        let mut embedded = Vec::with_capacity(documents.len());
        for document in documents {
            let text = embed_text(&document);
            let worker_embedder = Arc::clone(embedder);
            let one = tokio::task::spawn_blocking(move || worker_embedder.embed(&[text.as_str()]))
                .await
                .map_err(|e| MemoryError::Task(e.to_string()))?;
            match one.map(|mut v| v.pop()) {
                Ok(Some(vector)) => embedded.push((document, vector)),
                Ok(None) => self.strike(document.id, "no vector came back")?,
                Err(e) => self.strike(document.id, &e.to_string())?,
            }
        }
        Ok(embedded)
    }

    /// Counts a failure of a queued document; the third takes it off the queue (logged and
    /// counted): it stays in the store and keyword search, without a vector.
    fn strike(&self, id: u64, error: &str) -> Result<(), MemoryError> {
        let strikes = {
            let mut all = self
                .inner
                .strikes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let count = all.entry(id).or_insert(0);
            *count += 1;
            let strikes = *count;
            if strikes >= POISON_STRIKES {
                all.remove(&id);
            }
            strikes
        };
        tracing::warn!(id, strikes, error, "a queued document cannot be embedded");
        if strikes >= POISON_STRIKES {
            tracing::error!(
                id,
                "set aside from the embedding queue after {POISON_STRIKES} failures"
            );
            self.inner.store.unqueue(&[id])?;
            self.inner.set_aside.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Queued documents set aside because they failed to embed again and again.
    pub fn set_aside(&self) -> u64 {
        self.inner.set_aside.load(Ordering::Relaxed)
    }

    fn report_progress(&self) {
        let counts = self.counts();
        match self.state() {
            MemoryState::ModelMismatch { .. } | MemoryState::Reindexing { .. }
                if counts.queued > 0 =>
            {
                self.set_state(MemoryState::Reindexing {
                    done: counts.vectors,
                    total: counts.documents(),
                });
            }
            _ if counts.queued == 0 => self.set_state(MemoryState::Ready),
            _ => {}
        }
    }

    /// Drops every vector and queues every document for the current model.
    fn start_reindex(&self, model: &str) -> Result<(), MemoryError> {
        let store = &self.inner.store;
        store.clear_vectors()?;
        let ids: Vec<u64> = self
            .indexes()
            .catalogue
            .entries()
            .iter()
            .map(|e| e.id)
            .collect();
        store.queue_for_embedding(&ids)?;
        *self
            .inner
            .vectors
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let _ = std::fs::remove_dir_all(&self.inner.settings.index_dir);
        self.set_state(MemoryState::Reindexing {
            done: 0,
            total: ids.len() as u64,
        });
        tracing::info!(documents = ids.len(), model, "memory reindex started");
        Ok(())
    }

    /// Loads the saved index, or builds it from the stored vectors; notices vectors of another
    /// model and starts a reindex.
    async fn open_index(&self, embedder: &Arc<Embedder>) -> Result<(), MemoryError> {
        let model = embedder.model_id().to_owned();
        let dim = embedder.dim();
        let store = self.inner.store.clone();
        let dir = self.inner.settings.index_dir.clone();
        let started = Instant::now();
        let loaded = {
            let model = model.clone();
            tokio::task::spawn_blocking(move || VectorIndex::load(&dir, &model))
                .await
                .map_err(|e| MemoryError::Task(e.to_string()))?
        };
        let index = match loaded {
            Ok(index) => {
                tracing::info!(
                    vectors = index.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "vector index loaded"
                );
                index
            }
            Err(reason) => {
                if !matches!(reason, IndexError::Missing(_)) {
                    tracing::warn!(%reason, "vector index not usable; rebuilding it from the store");
                }
                let total = store.memory_counts().vectors;
                self.set_state(MemoryState::Reindexing { done: 0, total });
                let model = model.clone();
                let rebuilt = tokio::task::spawn_blocking(move || rebuild(&store, &model, dim))
                    .await
                    .map_err(|e| MemoryError::Task(e.to_string()))??;
                // Built, not loaded: it must be saved, or the next start builds it again.
                self.inner
                    .unsaved
                    .fetch_add(rebuilt.len().max(1) as u64, Ordering::Relaxed);
                rebuilt
            }
        };
        // One pass over the stored vectors: any of another model (the model files changed)
        // means embedding everything again; ours the saved index lacks were written after its
        // last save.
        let mut foreign: Option<String> = None;
        let mut missing = Vec::new();
        self.inner.store.for_each_vector(|id, v| {
            if v.model_id != model {
                foreign.get_or_insert(v.model_id);
            } else if !index.contains(id) {
                missing.push((id, v.vector));
            }
        })?;
        if let Some(stored) = foreign {
            tracing::warn!(
                stored,
                current = model,
                "stored vectors come from another model: reindexing"
            );
            self.start_reindex(&model)?;
            self.set_state(MemoryState::ModelMismatch {
                stored,
                current: model,
            });
            return Ok(());
        }
        index.insert(&missing);
        *self
            .inner
            .vectors
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(index));
        self.inner
            .unsaved
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        self.report_progress();
        Ok(())
    }

    /// Loads the model and the index if they are not loaded yet, without embedding anything
    /// (for a one-off search from the command line).
    pub async fn prepare(&self) {
        self.loaded().await;
        if self.embedder().is_none() {
            self.load_model().await;
        }
        if let Some(embedder) = self.embedder()
            && self.vector_index().is_none()
            && let Err(e) = self.open_index(&embedder).await
        {
            tracing::warn!(error = %e, "cannot open the vector index; keywords only");
        }
    }

    /// Runs the worker until nothing is queued (a reindex from the command line), calling
    /// `progress` after each batch, and saves the index.
    pub async fn work_until_idle(
        &self,
        progress: &(dyn Fn(&MemoryState, &MemoryCounts) + Sync),
    ) -> Result<(), MemoryError> {
        self.prepare().await;
        let Some(embedder) = self.embedder() else {
            return Err(MemoryError::NoModel(match self.state() {
                MemoryState::KeywordOnly { reason } => reason,
                other => format!("{other:?}"),
            }));
        };
        while self.step(&embedder).await? {
            progress(&self.state(), &self.counts());
        }
        self.save_if_dirty().await;
        Ok(())
    }

    /// Saves the index when vectors were added since the last save.
    pub async fn save_if_dirty(&self) {
        if self.inner.unsaved.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Some(index) = self.vector_index() else {
            return;
        };
        let unsaved = self.inner.unsaved.swap(0, Ordering::Relaxed);
        let dir = self.inner.settings.index_dir.clone();
        let started = Instant::now();
        let saved = tokio::task::spawn_blocking(move || index.save(&dir)).await;
        match saved {
            Ok(Ok(())) => tracing::info!(
                added = unsaved,
                ms = started.elapsed().as_millis() as u64,
                "vector index saved"
            ),
            Ok(Err(e)) => {
                self.inner.unsaved.fetch_add(unsaved, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot save the vector index (it is rebuilt from the store if lost)");
            }
            Err(e) => tracing::warn!(error = %e, "the index saver failed"),
        }
    }
}

/// A fresh index of the stored vectors of `model`.
fn rebuild(store: &Store, model: &str, dim: usize) -> Result<VectorIndex, MemoryError> {
    let mut items = Vec::new();
    store.for_each_vector(|id, v| {
        if v.model_id == model && v.dim() == dim {
            items.push((id, v.vector));
        }
    })?;
    let index = VectorIndex::new(model, dim, items.len());
    for chunk in items.chunks(4096) {
        index.insert(chunk);
    }
    Ok(index)
}
