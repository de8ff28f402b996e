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
