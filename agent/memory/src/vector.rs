//! The vector index: hnsw_rs over unit vectors (dot product), saved next to the store and
//! reloaded at start. sled holds the vectors; this index is only a fast path to them, so a
//! missing, corrupt or foreign index is rebuilt from sled rather than trusted. The index keeps
//! its vectors quantized to a byte a dimension ([`valor_embed::quantized`]): it is the part of
//! memory that grows with every message.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use hnsw_rs::api::AnnT;
use hnsw_rs::hnsw::Point;
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::{Distance, Hnsw};
use serde::{Deserialize, Serialize};
use valor_embed::quantized;

/// Neighbours kept per node and layer.
const CONNECTIONS: usize = 16;
const LAYERS: usize = 16;
const EF_CONSTRUCTION: usize = 100;
/// Candidates explored per search: recall@10 ≥ 0.95 on chat-like data at 100k items.
pub const EF_SEARCH: usize = 64;
const BASENAME: &str = "vectors";
const META_FILE: &str = "index.json";
/// The layout of the saved index: 1 = quantized vectors. An index saved in another layout is
/// rebuilt.
const FORMAT: u32 = 1;

/// Dot-product distance between quantized unit vectors.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuantizedDot;

impl Distance<i8> for QuantizedDot {
    fn eval(&self, a: &[i8], b: &[i8]) -> f32 {
        (1.0 - quantized::dot(a, b)).max(0.0)
    }
}

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
    #[error("cannot save the index to {}: {reason}", path.display())]
    Save { path: PathBuf, reason: String },
}

/// What is saved beside hnsw_rs's two files, to check them before loading.
#[derive(Debug, Serialize, Deserialize)]
struct IndexMeta {
    /// Absent in indexes saved before the layout was numbered (f32 vectors).
    #[serde(default)]
    format: u32,
    model_id: String,
    dim: usize,
    basename: String,
    /// Document ids in the index.
    ids: Vec<u64>,
    graph_crc: u32,
    data_crc: u32,
}

/// A vector index of one model's vectors.
pub struct VectorIndex {
    hnsw: Hnsw<'static, i8, QuantizedDot>,
    model_id: String,
    dim: usize,
    entries: Mutex<Entries>,
}

/// The documents in the index, each with the graph's own point once the graph has it, so a
/// narrow filter (one chat's documents) is searched exactly over the vectors the graph already
/// holds: a filtered walk of the graph explores far more nodes than it keeps, and the store's
/// full vectors are slow to read by the thousand. A point is shared with the graph, not copied.
#[derive(Default)]
struct Entries {
    /// `None` between an id's acceptance by `insert` and the graph's point for it.
    by_id: HashMap<u64, Option<Arc<Point<'static, i8>>>>,
    /// Points of each layer already in `by_id` (the graph appends new points to their layer).
    seen_per_layer: Vec<usize>,
}

impl Entries {
    /// Takes `id` for insertion; false when the index has it already.
    fn accept(&mut self, id: u64) -> bool {
        match self.by_id.entry(id) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(None);
                true
            }
            std::collections::hash_map::Entry::Occupied(_) => false,
        }
    }
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("model_id", &self.model_id)
            .field("len", &self.len())
            .finish()
    }
}

fn crc_of(path: &Path) -> Result<u32, std::io::Error> {
    let mut hasher = crc32fast::Hasher::new();
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = std::io::Read::read(&mut file, &mut buffer)?;
        if read == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buffer[..read]);
    }
}

impl VectorIndex {
    pub fn new(model_id: &str, dim: usize, expected: usize) -> VectorIndex {
        VectorIndex {
            hnsw: Hnsw::new(
                CONNECTIONS,
                expected.max(1024),
                LAYERS,
                EF_CONSTRUCTION,
                QuantizedDot,
            ),
            model_id: model_id.to_owned(),
            dim,
            entries: Mutex::new(Entries::default()),
        }
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn len(&self) -> usize {
        self.entries().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, id: u64) -> bool {
        self.entries().by_id.contains_key(&id)
    }

    /// Adds vectors of this index's model (others are skipped: the caller checks the model).
    /// hnsw_rs has no update: an id already present is left as it is.
    pub fn insert(&self, items: &[(u64, Vec<f32>)]) {
        let fresh: Vec<(Vec<i8>, usize)> = {
            let mut entries = self.entries();
            items
                .iter()
                .filter(|(id, v)| v.len() == self.dim && entries.accept(*id))
                .map(|(id, v)| (quantized::quantize(v), *id as usize))
                .collect()
        };
        match fresh.len() {
            0 => return,
            1..32 => fresh.iter().for_each(|(v, id)| self.hnsw.insert((v, *id))),
            _ => {
                let refs: Vec<(&Vec<i8>, usize)> = fresh.iter().map(|(v, id)| (v, *id)).collect();
                self.hnsw.parallel_insert(&refs)
            }
        }
        self.catch_up_points();
    }

    /// Gives each entry the graph's point for it once the graph has one (all of them after a
    /// load).
    fn catch_up_points(&self) {
        let mut entries = self.entries();
        let Entries {
            by_id,
            seen_per_layer,
        } = &mut *entries;
        let indexation = self.hnsw.get_point_indexation();
        seen_per_layer.resize(LAYERS, 0);
        for (layer, seen) in seen_per_layer.iter_mut().enumerate() {
            // hnsw_rs reaches a layer's points only through an iterator, so reaching the new
            // ones walks past the old (a reference count up and down each), once per batch the
            // worker embeds. Layers without new points are not walked.
            if indexation.get_layer_nb_point(layer) <= *seen {
                continue;
            }
            for point in indexation.get_layer_iterator(layer).skip(*seen) {
                by_id.insert(point.get_origin_id() as u64, Some(point));
                *seen += 1;
            }
        }
    }

    /// The `limit` nearest of `ids` to `query`, compared one by one (ids not in the index are
    /// skipped), with their similarity, best first.
    pub fn search_among(&self, query: &[f32], ids: &[u64], limit: usize) -> Vec<(u64, f32)> {
        if query.len() != self.dim || limit == 0 {
            return Vec::new();
        }
        let query = quantized::quantize(query);
        let mut scored: Vec<(u64, f32)> = {
            let entries = self.entries();
            ids.iter()
                .filter_map(|id| {
                    let point = entries.by_id.get(id)?.as_ref()?;
                    Some((*id, quantized::dot(&query, point.get_v())))
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
        if query.len() != self.dim || limit == 0 || self.is_empty() {
            return Vec::new();
        }
        let ef = EF_SEARCH.max(limit);
        let query = quantized::quantize(query);
        let found = match keep {
            None => self.hnsw.search(&query, limit, ef),
            Some(keep) => {
                let filter = |id: &usize| keep(*id as u64);
                self.hnsw.search_filter(&query, limit, ef, Some(&filter))
            }
        };
        found
            .into_iter()
            .map(|n| (n.d_id as u64, 1.0 - n.distance))
            .collect()
    }

    /// Saves the index into `dir` (replacing what was there; written aside first, so a crash
    /// mid-save leaves the old index or none, never half of one).
    pub fn save(&self, dir: &Path) -> Result<(), IndexError> {
        let fail = |reason: String| IndexError::Save {
            path: dir.to_owned(),
            reason,
        };
        let staging = dir.with_extension(format!("saving-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| fail(e.to_string()))?;
        let mut ids: Vec<u64> = self.entries().by_id.keys().copied().collect();
        ids.sort_unstable();
        let meta = if ids.is_empty() {
            // hnsw_rs cannot dump an empty graph: an empty index is its description alone.
            IndexMeta {
                format: FORMAT,
                model_id: self.model_id.clone(),
                dim: self.dim,
                ids,
                graph_crc: 0,
                data_crc: 0,
                basename: String::new(),
            }
        } else {
            let basename = self
                .hnsw
                .file_dump(&staging, BASENAME)
                .map_err(|e| fail(e.to_string()))?;
            let file = |suffix: &str| staging.join(format!("{basename}.hnsw.{suffix}"));
            IndexMeta {
                format: FORMAT,
                model_id: self.model_id.clone(),
                dim: self.dim,
                ids,
                graph_crc: crc_of(&file("graph")).map_err(|e| fail(e.to_string()))?,
                data_crc: crc_of(&file("data")).map_err(|e| fail(e.to_string()))?,
                basename,
            }
        };
        let write_meta = || -> std::io::Result<()> {
            let mut out = std::fs::File::create(staging.join(META_FILE))?;
            out.write_all(&serde_json::to_vec(&meta).unwrap_or_default())?;
            out.sync_all()
        };
        write_meta().map_err(|e| fail(e.to_string()))?;
        let old = dir.with_extension(format!("old-{}", std::process::id()));
        if dir.exists() {
            std::fs::rename(dir, &old).map_err(|e| fail(e.to_string()))?;
        }
        std::fs::rename(&staging, dir).map_err(|e| fail(e.to_string()))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Loads the index saved in `dir`, if it was built with `model_id` and is intact.
    pub fn load(dir: &Path, model_id: &str) -> Result<VectorIndex, IndexError> {
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
        if meta.ids.is_empty() {
            return Ok(VectorIndex::new(&meta.model_id, meta.dim, 0));
        }
        for (suffix, expected) in [("graph", meta.graph_crc), ("data", meta.data_crc)] {
            let path = dir.join(format!("{}.hnsw.{suffix}", meta.basename));
            let found = crc_of(&path).map_err(|e| corrupt(format!("{}: {e}", path.display())))?;
            if found != expected {
                return Err(corrupt(format!("{} fails its checksum", path.display())));
            }
        }
        // hnsw_rs hands out an index that borrows its loader; the loader (a few paths and
        // options, the vectors are copied out of it) lives as long as the process.
        let loader: &'static HnswIo = Box::leak(Box::new(HnswIo::new(dir, &meta.basename)));
        let loaded = std::panic::catch_unwind(|| loader.load_hnsw_with_dist(QuantizedDot))
            .map_err(|_| corrupt("hnsw_rs could not read it".to_owned()))?
            .map_err(|e| corrupt(e.to_string()))?;
        if loaded.get_nb_point() != meta.ids.len() {
            return Err(corrupt(format!(
                "it holds {} vectors, its description says {}",
                loaded.get_nb_point(),
                meta.ids.len()
            )));
        }
        let index = VectorIndex {
            hnsw: loaded,
            model_id: meta.model_id,
            dim: meta.dim,
            entries: Mutex::new(Entries::default()),
        };
        index.catch_up_points();
        let stranger = {
            let entries = index.entries();
            meta.ids
                .iter()
                .copied()
                .find(|id| !entries.by_id.contains_key(id))
        };
        match stranger {
            Some(id) => Err(corrupt(format!(
                "its description names #{id}, which it does not hold"
            ))),
            None => Ok(index),
        }
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

    #[test]
    fn finds_itself_first_and_respects_the_filter() {
        let index = VectorIndex::new("m", 16, 500);
        let items = vectors(500, 16);
        index.insert(&items);
        index.insert(&items[..3]); // again: ignored
        assert_eq!(index.len(), 500);
        let hits = index.search(&items[42].1, 5, None);
        assert_eq!(hits[0].0, 43);
        assert!((hits[0].1 - 1.0).abs() < 0.01, "{hits:?}");
        let hits = index.search(&items[42].1, 5, Some(&|id| id % 2 == 1));
        assert!(hits.iter().all(|h| h.0 % 2 == 1), "{hits:?}");
        assert!(index.search(&[1.0; 3], 5, None).is_empty());
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
    fn a_few_ids_are_searched_one_by_one_in_memory_before_and_after_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let index = VectorIndex::new("m", 16, 600);
        let items = vectors(600, 16);
        // Inserted in two parts, one small (one by one) and one large (in parallel).
        index.insert(&items[..10]);
        index.insert(&items[10..]);
        let among: Vec<u64> = (1..=600).filter(|id| id % 7 == 0).chain([9_999]).collect();
        let query = &items[300].1;
        let hits = index.search_among(query, &among, 5);
        assert_eq!(hits.len(), 5);
        assert!(hits.iter().all(|h| among.contains(&h.0)), "{hits:?}");
        assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1), "{hits:?}");
        let exact = nearest(&items, query, &among, 5);
        assert_eq!(hits[0].0, exact[0], "{hits:?} vs {exact:?}");
        // Every id of the index is reachable, the first ten (inserted one by one) too.
        assert_eq!(index.search_among(&items[3].1, &[4], 1)[0].0, 4);
        assert_eq!(
            index.search_among(query, &among, 1000).len(),
            among.len() - 1
        );

        index.save(&dir.path().join("index")).unwrap();
        let loaded = VectorIndex::load(&dir.path().join("index"), "m").unwrap();
        assert_eq!(loaded.search_among(query, &among, 5), hits);
        loaded.insert(&[(601, items[0].1.clone())]);
        assert_eq!(loaded.search_among(&items[0].1, &[601], 1)[0].0, 601);
    }

    #[test]
    fn saved_indexes_reload_and_damaged_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let index = VectorIndex::new("model-a", 16, 300);
        let items = vectors(300, 16);
        index.insert(&items);
        index.save(&path).unwrap();
        index.save(&path).unwrap(); // a second save replaces the first

        let loaded = VectorIndex::load(&path, "model-a").unwrap();
        assert_eq!(loaded.len(), 300);
        assert!(loaded.contains(7));
        assert_eq!(loaded.search(&items[9].1, 1, None)[0].0, 10);

        assert!(matches!(
            VectorIndex::load(&path, "model-b"),
            Err(IndexError::OtherModel { .. })
        ));
        assert!(matches!(
            VectorIndex::load(&dir.path().join("none"), "model-a"),
            Err(IndexError::Missing(_))
        ));
        let graph = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".hnsw.graph"))
            .unwrap();
        let mut bytes = std::fs::read(&graph).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&graph, bytes).unwrap();
        let err = VectorIndex::load(&path, "model-a").unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn an_empty_index_saves_and_one_saved_with_f32_vectors_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let empty = VectorIndex::new("model-a", 16, 10);
        empty.save(&path).unwrap();
        let reloaded = VectorIndex::load(&path, "model-a").unwrap();
        assert!(reloaded.is_empty());
        assert_eq!(reloaded.dim(), 16);
        let meta_path = path.join(META_FILE);
        let mut meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
        meta.as_object_mut().unwrap().remove("format");
        std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
        assert!(matches!(
            VectorIndex::load(&path, "model-a"),
            Err(IndexError::OtherFormat { found: 0 })
        ));
    }
}
