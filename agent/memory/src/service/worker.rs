//! The background worker: loads the model and the vector index, embeds queued documents in
//! small batches, strikes and sets aside what cannot be embedded, rebuilds the index when the
//! model changes and saves it when it is dirty.

use super::*;

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
            self.start_reindex(&model).await?;
            return Ok(true);
        }
        if self.vector_index().is_none() {
            self.open_index(embedder).await?;
            return Ok(true);
        }
        let ids = self.inner.store.queued_for_embedding(WORKER_BATCH).await?;
        if ids.is_empty() {
            self.inner.queued.store(0, Ordering::Relaxed);
            self.set_state(MemoryState::Ready);
            return Ok(false);
        }
        let (documents, gone) = self.read_queued(&ids).await?;
        let left = gone.len();
        self.inner.store.unqueue(gone).await?;
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
        let index = self.vector_index();
        if let Some(index) = index.clone() {
            // Before the store has them: a crash from here on leaves the index marked as
            // lacking vectors, and the next start adds them from the store. The mark is
            // fsynced once per save: not on a runtime thread.
            tokio::task::spawn_blocking(move || index.mark_unsaved())
                .await
                .map_err(|e| MemoryError::Task(e.to_string()))??;
        }
        let left = left + stored.len();
        self.inner.store.put_vectors(stored.clone()).await?;
        self.dequeued(left);
        if let Some(index) = index {
            let items: Vec<(u64, Vec<f32>)> =
                stored.into_iter().map(|(id, v)| (id, v.vector)).collect();
            let count = items.len() as u64;
            // A graph insert reads and links a few hundred nodes: not on a runtime thread.
            let inserted = tokio::task::spawn_blocking(move || index.insert(&items))
                .await
                .map_err(|e| MemoryError::Task(e.to_string()))?;
            if let Err(e) = inserted {
                // The vectors are in the store: the index takes them at its next opening.
                tracing::warn!(error = %e, "cannot add vectors to the index");
            }
            self.inner.embedded.fetch_add(count, Ordering::Relaxed);
            if self.inner.unsaved.fetch_add(count, Ordering::Relaxed) >= SAVE_EVERY {
                self.save_if_dirty().await;
            }
        }
        self.report_progress();
        Ok(true)
    }

    /// The queued documents of `ids`, and the ids whose documents are gone. One read for the
    /// batch; when it fails, one read each, so a record that cannot be read is struck instead
    /// of blocking the queue behind it.
    async fn read_queued(&self, ids: &[u64]) -> Result<(Vec<Document>, Vec<u64>), MemoryError> {
        let mut documents = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        if let Ok(found) = self.inner.store.documents(ids).await {
            for (id, document) in ids.iter().zip(found) {
                match document {
                    Some(document) => documents.push(document),
                    None => gone.push(*id),
                }
            }
            return Ok((documents, gone));
        }
        for id in ids {
            match crate::port::document(self.store(), *id).await {
                Ok(Some(document)) => documents.push(document),
                Ok(None) => gone.push(*id),
                Err(e) => self.strike(*id, &e.to_string()).await?,
            }
        }
        Ok((documents, gone))
    }

    /// `count` documents left the embedding queue (counted here, not walked in the store).
    fn dequeued(&self, count: usize) {
        let _ = (self.inner.queued).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
            Some(queued.saturating_sub(count as u64))
        });
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
                    self.strike(d.id, &e.to_string()).await?;
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
                Ok(None) => self.strike(document.id, "no vector came back").await?,
                Err(e) => self.strike(document.id, &e.to_string()).await?,
            }
        }
        Ok(embedded)
    }

    /// Counts a failure of a queued document; the third takes it off the queue (logged and
    /// counted): it stays in the store and keyword search, without a vector.
    async fn strike(&self, id: u64, error: &str) -> Result<(), MemoryError> {
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
            self.inner.store.unqueue(vec![id]).await?;
            self.dequeued(1);
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
    async fn start_reindex(&self, model: &str) -> Result<(), MemoryError> {
        let store = &self.inner.store;
        store.clear_vectors().await?;
        let ids: Vec<u64> = self
            .indexes()
            .catalogue
            .entries()
            .iter()
            .map(|e| e.id)
            .collect();
        let total = ids.len() as u64;
        store.queue_for_embedding(ids).await?;
        self.inner.queued.store(total, Ordering::Relaxed);
        *self
            .inner
            .vectors
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let _ = std::fs::remove_dir_all(&self.inner.settings.index_dir);
        self.set_state(MemoryState::Reindexing { done: 0, total });
        tracing::info!(documents = total, model, "memory reindex started");
        Ok(())
    }

    /// Loads the saved index, or builds it from the stored vectors; notices vectors of another
    /// model and starts a reindex. The stored vectors are read only when the index is new or
    /// its last run ended before saving it: sled keeps every page a walk reads in memory.
    async fn open_index(&self, embedder: &Arc<Embedder>) -> Result<(), MemoryError> {
        let model = embedder.model_id().to_owned();
        let dim = embedder.dim();
        let dir = self.inner.settings.index_dir.clone();
        let started = Instant::now();
        let loaded = {
            let (dir, model) = (dir.clone(), model.clone());
            tokio::task::spawn_blocking(move || VectorIndex::open(&dir, &model))
                .await
                .map_err(|e| MemoryError::Task(e.to_string()))?
        };
        let index = match loaded {
            Ok(index) => {
                tracing::info!(
                    vectors = index.len(),
                    interrupted = index.is_unsaved(),
                    ms = started.elapsed().as_millis() as u64,
                    "vector index loaded"
                );
                index
            }
            Err(reason) => {
                if !matches!(reason, IndexError::Missing(_)) {
                    tracing::warn!(%reason, "vector index not usable; rebuilding it from the store");
                }
                let total = self.counts().documents();
                self.set_state(MemoryState::Reindexing { done: 0, total });
                let model = model.clone();
                tokio::task::spawn_blocking(move || VectorIndex::create(&dir, &model, dim))
                    .await
                    .map_err(|e| MemoryError::Task(e.to_string()))??
            }
        };
        let index = Arc::new(index);
        if !index.is_unsaved() {
            self.use_index(index, 0);
            return Ok(());
        }
        // One pass over the stored vectors: any of another model (the model files changed)
        // means embedding everything again; ours the index lacks are added.
        let caught_up = {
            let (feed, index, model) =
                (self.inner.store.vector_feed(), index.clone(), model.clone());
            tokio::task::spawn_blocking(move || catch_up(feed, &index, &model))
                .await
                .map_err(|e| MemoryError::Task(e.to_string()))??
        };
        let added = match caught_up {
            CatchUp::Added(added) => added,
            CatchUp::Foreign(stored) => {
                tracing::warn!(
                    stored,
                    current = model,
                    "stored vectors come from another model: reindexing"
                );
                self.start_reindex(&model).await?;
                self.set_state(MemoryState::ModelMismatch {
                    stored,
                    current: model,
                });
                return Ok(());
            }
        };
        // Saved even when nothing was added: the save marks the index complete.
        self.use_index(index, added.max(1));
        Ok(())
    }

    /// Searches and the worker use `index` from now on; `unsaved` vectors in it wait for a save.
    fn use_index(&self, index: Arc<VectorIndex>, unsaved: usize) {
        *self
            .inner
            .vectors
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(index);
        self.inner
            .unsaved
            .fetch_add(unsaved as u64, Ordering::Relaxed);
        self.report_progress();
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
        let started = Instant::now();
        let saved = tokio::task::spawn_blocking(move || index.save()).await;
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

/// What the pass over the stored vectors found.
enum CatchUp {
    /// Vectors of this model the index lacked, now added.
    Added(usize),
    /// A vector of another model: everything must be embedded again.
    Foreign(String),
}

/// Adds the stored vectors of `model` that `index` lacks, a batch at a time; stops at the
/// first vector of another model.
fn catch_up(
    mut feed: crate::port::Feed<(u64, StoredVector)>,
    index: &VectorIndex,
    model: &str,
) -> Result<CatchUp, MemoryError> {
    const BATCH: usize = 1024;
    let mut foreign: Option<String> = None;
    let mut batch = Vec::new();
    let mut added = 0;
    let mut failed = None;
    while let Some(stored) = feed.blocking_recv() {
        let (id, v) = stored?;
        if foreign.is_some() || failed.is_some() {
            break;
        }
        if v.model_id != model {
            foreign = Some(v.model_id);
        } else if !index.contains(id) {
            batch.push((id, v.vector));
            if batch.len() == BATCH {
                match index.insert(&batch) {
                    Ok(n) => added += n,
                    Err(e) => failed = Some(e),
                }
                batch.clear();
            }
        }
    }
    if let Some(stored) = foreign {
        return Ok(CatchUp::Foreign(stored));
    }
    if let Some(e) = failed {
        return Err(e.into());
    }
    added += index.insert(&batch)?;
    Ok(CatchUp::Added(added))
}
