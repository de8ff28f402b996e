//! The vector index: an HNSW graph over unit vectors (dot product) in memory-mapped files
//! beside the store ([`graph`], [`column`]), so what Valor remembers lives in the page cache
//! and not on its heap. sled holds the vectors; this index is only a fast path to them, so a
//! missing, corrupt or foreign index is rebuilt from sled rather than trusted. The index keeps
//! its vectors quantized to a byte a dimension ([`valor_embed::quantized`]).
//!
//! The files change in place as vectors are added; `index.json`, replaced whole at each save,
//! says how many nodes were complete then. After a crash the index opens at its last save: the
//! vectors and ids of those nodes never change once written (a checksum guards them), links to
//! nodes added since are ignored, and the worker adds the missing vectors again from the store.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};
use valor_embed::quantized;

mod column;
mod graph;

use graph::{EntryPoint, Graph};

/// Candidates explored per search: recall@10 ≥ 0.95 on chat-like data at 100k items.
pub const EF_SEARCH: usize = 64;
const META_FILE: &str = "index.json";
/// Present while the store may hold vectors the saved index lacks: from before the first
/// vector written after a save until the next save.
const UNSAVED_FILE: &str = "unsaved";
/// The layout of the saved index: 1 = hnsw_rs's files with quantized vectors, 2 = the
/// memory-mapped graph. An index saved in another layout is rebuilt.
const FORMAT: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("no saved index at {}", .0.display())]
    Missing(PathBuf),
    #[error("the saved index was built with {found}, not {expected}")]
    OtherModel { found: String, expected: String },
    #[error("the saved index has layout {found}, this Valor writes {FORMAT}")]
    OtherFormat { found: u32 },
    #[error("the saved index at {} is damaged: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write the index at {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
}

/// What `index.json` says of the graph's files.
#[derive(Debug, Serialize, Deserialize)]
struct IndexMeta {
    /// Absent in indexes saved before the layout was numbered.
    #[serde(default)]
    format: u32,
    model_id: String,
    dim: usize,
    /// Nodes complete at the save.
    #[serde(default)]
    count: u32,
    #[serde(default)]
    entry: Option<EntryPoint>,
    /// The upper layers' links, by node.
    #[serde(default)]
    upper: Vec<(u32, Vec<Vec<u32>>)>,
    #[serde(default)]
    vectors_crc: u32,
    #[serde(default)]
    ids_crc: u32,
}

/// A vector index of one model's vectors; searches run beside each other, an insert alone.
pub struct VectorIndex {
    model_id: String,
    dim: usize,
    dir: PathBuf,
    graph: RwLock<Graph>,
    /// Whether [`UNSAVED_FILE`] exists; held through a save, so that a vector marked meanwhile
    /// is never unmarked by it.
    unsaved: Mutex<bool>,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("model_id", &self.model_id)
            .field("len", &self.len())
            .finish()
    }
}

fn write_error(dir: &Path) -> impl Fn(std::io::Error) -> IndexError + '_ {
    move |e| IndexError::Write {
        path: dir.to_owned(),
        reason: e.to_string(),
    }
}

impl VectorIndex {
    /// A new, empty index in `dir`, replacing whatever was there.
    pub fn create(dir: &Path, model_id: &str, dim: usize) -> Result<VectorIndex, IndexError> {
        let fail = write_error(dir);
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
            _ => {}
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(&fail)?;
        let graph = Graph::create(dir, dim + quantized::SCALE_BYTES).map_err(&fail)?;
        let index = VectorIndex {
            model_id: model_id.to_owned(),
            dim,
            dir: dir.to_owned(),
            graph: RwLock::new(graph),
            unsaved: Mutex::new(false),
        };
        // Empty, it lacks whatever the store has until it is filled and saved.
        index.mark_unsaved()?;
        index.write_meta()?;
        Ok(index)
    }

    /// Opens the index saved in `dir`, if it was built with `model_id` and is intact.
    pub fn open(dir: &Path, model_id: &str) -> Result<VectorIndex, IndexError> {
        let corrupt = |reason: String| IndexError::Corrupt {
            path: dir.to_owned(),
            reason,
        };
        let meta_bytes = match std::fs::read(dir.join(META_FILE)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IndexError::Missing(dir.to_owned()));
            }
            Err(e) => return Err(corrupt(e.to_string())),
        };
        let meta: IndexMeta =
            serde_json::from_slice(&meta_bytes).map_err(|e| corrupt(e.to_string()))?;
        if meta.format != FORMAT {
            return Err(IndexError::OtherFormat { found: meta.format });
        }
        if meta.model_id != model_id {
            return Err(IndexError::OtherModel {
                found: meta.model_id,
                expected: model_id.to_owned(),
            });
        }
        let graph = Graph::open(
            dir,
            meta.dim + quantized::SCALE_BYTES,
            meta.count,
            meta.upper.into_iter().collect(),
            meta.entry,
        )
        .map_err(|e| corrupt(e.to_string()))?;
        let (vectors, ids) = graph.fixed_bytes();
        if crc32fast::hash(vectors) != meta.vectors_crc || crc32fast::hash(ids) != meta.ids_crc {
            return Err(corrupt("its vectors fail their checksum".to_owned()));
        }
        // The checksum read every vector: hand those pages back rather than keep the whole
        // file resident from the start on.
        graph
            .sync_and_release()
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(VectorIndex {
            model_id: meta.model_id,
            dim: meta.dim,
            dir: dir.to_owned(),
            graph: RwLock::new(graph),
            unsaved: Mutex::new(dir.join(UNSAVED_FILE).exists()),
        })
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    fn graph(&self) -> RwLockReadGuard<'_, Graph> {
        self.graph.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn graph_mut(&self) -> RwLockWriteGuard<'_, Graph> {
        self.graph.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn len(&self) -> usize {
        self.graph().count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, id: u64) -> bool {
        self.graph().by_id.contains_key(&id)
    }

    /// Adds vectors of this index's model (others are skipped: the caller checks the model);
    /// an id already present is left as it is. Returns how many were added. Searches run
    /// between two inserts.
    pub fn insert(&self, items: &[(u64, Vec<f32>)]) -> Result<usize, IndexError> {
        let mut added = 0;
        for (id, vector) in items.iter().filter(|(_, v)| v.len() == self.dim) {
            let quantized = quantized::quantize(vector);
            if self
                .graph_mut()
                .insert(*id, &quantized)
                .map_err(write_error(&self.dir))?
            {
                added += 1;
            }
        }
        Ok(added)
    }

    /// The `limit` nearest of `ids` to `query`, compared one by one (ids not in the index are
    /// skipped), with their similarity, best first.
    pub fn search_among(&self, query: &[f32], ids: &[u64], limit: usize) -> Vec<(u64, f32)> {
        if query.len() != self.dim || limit == 0 {
            return Vec::new();
        }
        let query = quantized::quantize(query);
        let mut scored: Vec<(u64, f32)> = {
            let graph = self.graph();
            ids.iter()
                .filter_map(|id| {
                    let node = *graph.by_id.get(id)?;
                    Some((*id, graph.similarity(&query, node)))
                })
                .collect()
        };
        if scored.len() > limit {
            scored.select_nth_unstable_by(limit - 1, |a, b| b.1.total_cmp(&a.1));
            scored.truncate(limit);
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored
    }

    /// The `limit` nearest ids to `query` (among those `keep` accepts, when given), with their
    /// cosine similarity, best first.
    pub fn search(
        &self,
        query: &[f32],
        limit: usize,
        keep: Option<&dyn Fn(u64) -> bool>,
    ) -> Vec<(u64, f32)> {
        if query.len() != self.dim || limit == 0 {
            return Vec::new();
        }
        let query = quantized::quantize(query);
        let graph = self.graph();
        let ef = EF_SEARCH.max(limit);
        let found = match keep {
            None => graph.search(&query, limit, ef, None),
            Some(keep) => {
                let by_node = |node: u32| keep(graph.id(node));
                graph.search(&query, limit, ef, Some(&by_node))
            }
        };
        found
            .into_iter()
            .map(|s| (graph.id(s.node), s.similarity))
            .collect()
    }

    /// True when the store may hold vectors this index lacks: it is new, or vectors were
    /// written after its last save (by a process that then stopped without saving).
    pub fn is_unsaved(&self) -> bool {
        *self.unsaved.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records, durably, that vectors are about to be written to the store: call it before
    /// writing them.
    pub fn mark_unsaved(&self) -> Result<(), IndexError> {
        let mut unsaved = self.unsaved.lock().unwrap_or_else(PoisonError::into_inner);
        if *unsaved {
            return Ok(());
        }
        let mark = || -> std::io::Result<()> {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(self.dir.join(UNSAVED_FILE))?
                .sync_all()?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        mark().map_err(write_error(&self.dir))?;
        *unsaved = true;
        Ok(())
    }

    /// Makes what was added so far survive a restart: the files are synced, then `index.json`
    /// is replaced whole and the index is no longer marked unsaved. The synced pages leave the
    /// process's memory.
    pub fn save(&self) -> Result<(), IndexError> {
        let mut unsaved = self.unsaved.lock().unwrap_or_else(PoisonError::into_inner);
        self.write_meta()?;
        if *unsaved {
            let unmark = || -> std::io::Result<()> {
                std::fs::remove_file(self.dir.join(UNSAVED_FILE))?;
                std::fs::File::open(&self.dir)?.sync_all()
            };
            unmark().map_err(write_error(&self.dir))?;
            *unsaved = false;
        }
        Ok(())
    }

    fn write_meta(&self) -> Result<(), IndexError> {
        let fail = write_error(&self.dir);
        let graph = self.graph();
        graph.sync_and_release().map_err(&fail)?;
        let (vectors, ids) = graph.fixed_bytes();
        let mut upper: Vec<(u32, Vec<Vec<u32>>)> =
            graph.upper.iter().map(|(n, l)| (*n, l.clone())).collect();
        upper.sort_unstable_by_key(|(node, _)| *node);
        let meta = IndexMeta {
            format: FORMAT,
            model_id: self.model_id.clone(),
            dim: self.dim,
            count: graph.count,
            entry: graph.entry,
            upper,
            vectors_crc: crc32fast::hash(vectors),
            ids_crc: crc32fast::hash(ids),
        };
        drop(graph);
        let bytes = serde_json::to_vec(&meta).map_err(|e| fail(e.into()))?;
        let staging = self.dir.join(format!("{META_FILE}.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&staging)?;
            out.write_all(&bytes)?;
            out.sync_all()?;
            std::fs::rename(&staging, self.dir.join(META_FILE))?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(&fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unit vectors in clusters, like sentence embeddings.
    fn vectors(count: usize, dim: usize) -> Vec<(u64, Vec<f32>)> {
        let mut rng = valor_fakes::corpus::Rng::new(3);
        let mut unit = |_| rng.below(2000) as f32 / 1000.0 - 1.0;
        let centres: Vec<Vec<f32>> = (0..20).map(|_| (0..dim).map(&mut unit).collect()).collect();
        (0..count)
            .map(|i| {
                let centre = &centres[i % centres.len()];
                let mut v: Vec<f32> = centre.iter().map(|c| c + 0.3 * unit(0)).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                (i as u64 + 1, v)
            })
            .collect()
    }

    /// The exact nearest among `among`, by the full vectors: what search_among should find.
    fn nearest(items: &[(u64, Vec<f32>)], query: &[f32], among: &[u64], k: usize) -> Vec<u64> {
        let mut scored: Vec<(u64, f32)> = among
            .iter()
            .filter_map(|id| items.iter().find(|item| item.0 == *id))
            .map(|(id, vector)| (*id, valor_embed::cosine(query, vector)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.into_iter().take(k).map(|s| s.0).collect()
    }

    #[test]
    fn finds_itself_first_and_respects_the_filter() {
        let dir = tempfile::tempdir().unwrap();
        let index = VectorIndex::create(&dir.path().join("index"), "m", 16).unwrap();
        let items = vectors(500, 16);
        assert_eq!(index.insert(&items).unwrap(), 500);
        assert_eq!(index.insert(&items[..3]).unwrap(), 0); // again: ignored
        assert_eq!(index.len(), 500);
        let hits = index.search(&items[42].1, 5, None);
        assert_eq!(hits[0].0, 43);
        assert!((hits[0].1 - 1.0).abs() < 0.01, "{hits:?}");
        let hits = index.search(&items[42].1, 5, Some(&|id| id % 2 == 1));
        assert_eq!(hits.len(), 5);
        assert!(hits.iter().all(|h| h.0 % 2 == 1), "{hits:?}");
        assert!(index.search(&[1.0; 3], 5, None).is_empty());
        // A vector of another dimension is skipped, not stored.
        assert_eq!(index.insert(&[(9_000, vec![0.5; 8])]).unwrap(), 0);
        assert!(!index.contains(9_000));
    }

    #[test]
    fn recall_at_10_against_exact_search_is_at_least_095() {
        let dir = tempfile::tempdir().unwrap();
        let index = VectorIndex::create(&dir.path().join("index"), "m", 32).unwrap();
        let items = vectors(4_000, 32);
        index.insert(&items).unwrap();
        let all: Vec<u64> = items.iter().map(|i| i.0).collect();
        let queries = vectors(4_100, 32);
        let mut found = 0;
        for (_, query) in &queries[4_000..] {
            // The graph's recall alone: exact search over the same quantized vectors.
            let exact: Vec<u64> = index
                .search_among(query, &all, 10)
                .iter()
                .map(|h| h.0)
                .collect();
            let hits = index.search(query, 10, None);
            found += hits.iter().filter(|h| exact.contains(&h.0)).count();
        }
        let recall = found as f64 / 1000.0;
        assert!(recall >= 0.95, "recall@10 {recall}");
    }

    #[test]
    fn a_few_ids_are_searched_one_by_one_before_and_after_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let index = VectorIndex::create(&path, "m", 16).unwrap();
        let items = vectors(600, 16);
        index.insert(&items).unwrap();
        let among: Vec<u64> = (1..=600).filter(|id| id % 7 == 0).chain([9_999]).collect();
        let query = &items[300].1;
        let hits = index.search_among(query, &among, 5);
        assert_eq!(hits.len(), 5);
        assert!(hits.iter().all(|h| among.contains(&h.0)), "{hits:?}");
        assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1), "{hits:?}");
        let exact = nearest(&items, query, &among, 5);
        assert_eq!(hits[0].0, exact[0], "{hits:?} vs {exact:?}");
        assert_eq!(index.search_among(&items[3].1, &[4], 1)[0].0, 4);
        assert_eq!(
            index.search_among(query, &among, 1000).len(),
            among.len() - 1
        );

        index.save().unwrap();
        drop(index);
        let loaded = VectorIndex::open(&path, "m").unwrap();
        assert_eq!(loaded.search_among(query, &among, 5), hits);
        loaded.insert(&[(601, items[0].1.clone())]).unwrap();
        assert_eq!(loaded.search_among(&items[0].1, &[601], 1)[0].0, 601);
    }

    #[test]
    fn saved_indexes_reload_and_damaged_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let index = VectorIndex::create(&path, "model-a", 16).unwrap();
        let items = vectors(300, 16);
        index.insert(&items).unwrap();
        index.save().unwrap();
        index.save().unwrap(); // a second save replaces the first
        drop(index);

        let loaded = VectorIndex::open(&path, "model-a").unwrap();
        assert_eq!(loaded.len(), 300);
        assert!(loaded.contains(7));
        assert_eq!(loaded.search(&items[9].1, 1, None)[0].0, 10);
        drop(loaded);

        assert!(matches!(
            VectorIndex::open(&path, "model-b"),
            Err(IndexError::OtherModel { .. })
        ));
        assert!(matches!(
            VectorIndex::open(&dir.path().join("none"), "model-a"),
            Err(IndexError::Missing(_))
        ));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let vectors_file = path.join(graph::VECTORS_FILE);
        let mut bytes = std::fs::read(&vectors_file).unwrap();
        bytes[20 * 20] ^= 0x5a;
        std::fs::write(&vectors_file, &bytes).unwrap();
        let err = VectorIndex::open(&path, "model-a").unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        // A file cut short is refused as well.
        let ids_file = path.join(graph::IDS_FILE);
        std::fs::write(&ids_file, [0u8; 16]).unwrap();
        assert!(matches!(
            VectorIndex::open(&path, "model-a"),
            Err(IndexError::Corrupt { .. })
        ));
    }

    #[test]
    fn after_a_crash_the_index_opens_at_its_last_save_and_takes_the_rest_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let index = VectorIndex::create(&path, "m", 16).unwrap();
        assert!(index.is_unsaved(), "a new index lacks what the store has");
        let items = vectors(900, 16);
        index.insert(&items[..400]).unwrap();
        index.save().unwrap();
        assert!(!index.is_unsaved());
        assert!(!VectorIndex::open(&path, "m").unwrap().is_unsaved());
        // Added after the save, and then the process dies: old nodes' links now point at
        // nodes the saved description does not have.
        index.mark_unsaved().unwrap();
        index.insert(&items[400..]).unwrap();
        drop(index);

        let reopened = VectorIndex::open(&path, "m").unwrap();
        assert!(
            reopened.is_unsaved(),
            "the next start must add what the index lacks"
        );
        assert_eq!(reopened.len(), 400);
        assert!(reopened.contains(400) && !reopened.contains(401));
        let hits = reopened.search(&items[700].1, 10, None);
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| h.0 <= 400), "{hits:?}");
        // The worker adds the missing ones again; the graph finds them and the old ones.
        assert_eq!(reopened.insert(&items[400..]).unwrap(), 500);
        assert_eq!(reopened.search(&items[700].1, 1, None)[0].0, 701);
        assert_eq!(reopened.search(&items[100].1, 1, None)[0].0, 101);
    }

    #[test]
    fn an_empty_index_saves_and_one_saved_by_an_older_valor_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let empty = VectorIndex::create(&path, "model-a", 16).unwrap();
        drop(empty);
        let reopened = VectorIndex::open(&path, "model-a").unwrap();
        assert!(reopened.is_empty());
        assert!(reopened.search(&[0.25; 16], 5, None).is_empty());
        assert_eq!(reopened.dim(), 16);
        let meta_path = path.join(META_FILE);
        let mut meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
        meta["format"] = 1.into();
        std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
        assert!(matches!(
            VectorIndex::open(&path, "model-a"),
            Err(IndexError::OtherFormat { found: 1 })
        ));
        // Creating again replaces the old layout's files.
        let fresh = VectorIndex::create(&path, "model-a", 16).unwrap();
        assert!(fresh.is_empty());
    }
}
