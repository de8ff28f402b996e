//! The HNSW graph (Malkov and Yashunin) over quantized unit vectors, laid out in flat
//! memory-mapped columns: a node is a vector, a document id and a fixed block of layer-0
//! neighbours, each a record of its own column. The upper layers hold about one node in
//! sixteen and stay on the heap.
//!
//! Why not hnsw_rs, which built this index before: it keeps every neighbour link as an `Arc`
//! and every node's layers as a vector of vectors on the heap, about 2.5 KB a node at these
//! settings (250 MB at 100k documents), and it can map only the vectors, not the graph.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::path::Path;

use valor_embed::quantized;

use super::column::Column;

/// Neighbours per node on the upper layers; twice as many on layer 0.
pub(super) const M: usize = 16;
const M0: usize = 2 * M;
const EF_CONSTRUCTION: usize = 100;
const MAX_LEVEL: usize = 12;
/// A layer-0 block: the number of neighbours, then their slots.
const LINK_RECORD: usize = 4 + 4 * M0;

pub(super) const VECTORS_FILE: &str = "vectors.bin";
pub(super) const IDS_FILE: &str = "ids.bin";
pub(super) const LINKS_FILE: &str = "links.bin";

/// A similarity with the node it belongs to, ordered by similarity.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scored {
    pub(super) similarity: f32,
    pub(super) node: u32,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.similarity
            .total_cmp(&other.similarity)
            .then(other.node.cmp(&self.node))
    }
}

/// The highest node, where every search starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct EntryPoint {
    pub(super) node: u32,
    pub(super) level: u8,
}

#[derive(Debug)]
pub(super) struct Graph {
    vectors: Column,
    ids: Column,
    links: Column,
    pub(super) count: u32,
    pub(super) by_id: HashMap<u64, u32>,
    /// The links of nodes above layer 0: `upper[&node][l - 1]` is layer `l`.
    pub(super) upper: HashMap<u32, Vec<Vec<u32>>>,
    pub(super) entry: Option<EntryPoint>,
}

/// Nodes seen by one search, a bit each.
struct Visited(Vec<u64>);

impl Visited {
    fn new(count: u32) -> Visited {
        Visited(vec![0; count as usize / 64 + 1])
    }

    /// Marks `node`; false when it was marked already.
    fn mark(&mut self, node: u32) -> bool {
        let (word, bit) = (node as usize / 64, 1u64 << (node % 64));
        match self.0.get_mut(word) {
            Some(w) if *w & bit == 0 => {
                *w |= bit;
                true
            }
            _ => false,
        }
    }
}

/// The level of a new node: geometric with ratio 1/M, drawn from its id so that the same
/// documents always make the same graph.
fn level_of(id: u64) -> usize {
    let mut x = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let uniform = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let level = -uniform.ln() / (M as f64).ln();
    (level as usize).min(MAX_LEVEL)
}

impl Graph {
    /// An empty graph in `dir` for vectors of `vector_bytes` (the quantized form).
    pub(super) fn create(dir: &Path, vector_bytes: usize) -> io::Result<Graph> {
        Ok(Graph {
            vectors: Column::create(&dir.join(VECTORS_FILE), vector_bytes)?,
            ids: Column::create(&dir.join(IDS_FILE), 8)?,
            links: Column::create(&dir.join(LINKS_FILE), LINK_RECORD)?,
            count: 0,
            by_id: HashMap::new(),
            upper: HashMap::new(),
            entry: None,
        })
    }

    /// The graph saved in `dir` with `count` nodes; its columns must hold them. Links to nodes
    /// past `count` (written after the last save) are ignored when read.
    pub(super) fn open(
        dir: &Path,
        vector_bytes: usize,
        count: u32,
        upper: HashMap<u32, Vec<Vec<u32>>>,
        entry: Option<EntryPoint>,
    ) -> io::Result<Graph> {
        let mut graph = Graph {
            vectors: Column::open(&dir.join(VECTORS_FILE), vector_bytes)?,
            ids: Column::open(&dir.join(IDS_FILE), 8)?,
            links: Column::open(&dir.join(LINKS_FILE), LINK_RECORD)?,
            count,
            by_id: HashMap::with_capacity(count as usize),
            upper,
            entry,
        };
        let short = [&graph.vectors, &graph.ids, &graph.links]
            .iter()
            .any(|c| c.capacity() < count as usize);
        if short {
            return Err(invalid(format!("the files hold fewer than {count} nodes")));
        }
        for node in 0..count {
            if graph.by_id.insert(graph.id(node), node).is_some() {
                return Err(invalid(format!(
                    "document #{} is in it twice",
                    graph.id(node)
                )));
            }
        }
        let outside = |n: &u32| *n >= count;
        if graph.entry.is_some_and(|e| outside(&e.node))
            || graph.upper.keys().any(outside)
            || graph.upper.values().flatten().flatten().any(outside)
        {
            return Err(invalid("a link leads outside the graph".to_owned()));
        }
        Ok(graph)
    }

    /// The saved vectors and ids, for checksums (neither changes once written).
    pub(super) fn fixed_bytes(&self) -> (&[u8], &[u8]) {
        let count = self.count as usize;
        (self.vectors.prefix(count), self.ids.prefix(count))
    }

    pub(super) fn sync_and_release(&self) -> io::Result<()> {
        self.vectors.sync_and_release()?;
        self.ids.sync_and_release()?;
        self.links.sync_and_release()
    }

    pub(super) fn id(&self, node: u32) -> u64 {
        u64::from_le_bytes(self.ids.get(node as usize).try_into().unwrap_or([0; 8]))
    }

    pub(super) fn vector(&self, node: u32) -> &[i8] {
        bytemuck::cast_slice(self.vectors.get(node as usize))
    }

    pub(super) fn similarity(&self, query: &[i8], node: u32) -> f32 {
        quantized::dot(query, self.vector(node))
    }

    fn scored(&self, query: &[i8], node: u32) -> Scored {
        Scored {
            similarity: self.similarity(query, node),
            node,
        }
    }

    fn neighbours(&self, node: u32, layer: usize) -> Vec<u32> {
        if layer > 0 {
            return self
                .upper
                .get(&node)
                .and_then(|layers| layers.get(layer - 1))
                .cloned()
                .unwrap_or_default();
        }
        let record = self.links.get(node as usize);
        let word = |i: usize| {
            record
                .get(4 * i..4 * i + 4)
                .and_then(|bytes| bytes.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        let len = (word(0) as usize).min(M0);
        (1..=len)
            .map(word)
            .filter(|n| *n < self.count && *n != node)
            .collect()
    }

    fn set_neighbours(&mut self, node: u32, layer: usize, neighbours: &[u32]) {
        if layer > 0 {
            if let Some(slot) = self
                .upper
                .get_mut(&node)
                .and_then(|layers| layers.get_mut(layer - 1))
            {
                *slot = neighbours.to_vec();
            }
            return;
        }
        let record = self.links.get_mut(node as usize);
        if record.len() < LINK_RECORD {
            return;
        }
        let len = neighbours.len().min(M0);
        record[..4].copy_from_slice(&(len as u32).to_le_bytes());
        for (slot, n) in record[4..].chunks_exact_mut(4).zip(&neighbours[..len]) {
            slot.copy_from_slice(&n.to_le_bytes());
        }
    }

    /// The `ef` nodes nearest to `query` on `layer` found from `entries`, best first; with
    /// `keep`, only nodes it accepts are returned (all are walked through).
    fn search_layer(
        &self,
        query: &[i8],
        entries: &[Scored],
        ef: usize,
        layer: usize,
        keep: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<Scored> {
        let mut visited = Visited::new(self.count);
        let mut candidates: BinaryHeap<Scored> = BinaryHeap::new();
        let mut found: BinaryHeap<Reverse<Scored>> = BinaryHeap::new();
        let accepts = |node: u32| keep.is_none_or(|keep| keep(node));
        for entry in entries {
            if visited.mark(entry.node) {
                candidates.push(*entry);
                if accepts(entry.node) {
                    found.push(Reverse(*entry));
                }
            }
        }
        while let Some(candidate) = candidates.pop() {
            let worst = found.peek().map(|r| r.0.similarity);
            if found.len() >= ef && worst.is_some_and(|w| candidate.similarity < w) {
                break;
            }
            for neighbour in self.neighbours(candidate.node, layer) {
                if !visited.mark(neighbour) {
                    continue;
                }
                let scored = self.scored(query, neighbour);
                let worst = found.peek().map(|r| r.0.similarity);
                if found.len() < ef || worst.is_some_and(|w| scored.similarity > w) {
                    candidates.push(scored);
                    if accepts(neighbour) {
                        found.push(Reverse(scored));
                        if found.len() > ef {
                            found.pop();
                        }
                    }
                }
            }
        }
        let mut found: Vec<Scored> = found.into_iter().map(|r| r.0).collect();
        found.sort_by(|a, b| b.cmp(a));
        found
    }

    /// The nearest node to `query` on the layers above `down_to`, from the entry point.
    fn descend(&self, query: &[i8], entry: EntryPoint, down_to: usize) -> Scored {
        let mut best = self.scored(query, entry.node);
        for layer in (down_to + 1..=entry.level as usize).rev() {
            loop {
                let closer = self
                    .neighbours(best.node, layer)
                    .into_iter()
                    .map(|n| self.scored(query, n))
                    .max()
                    .filter(|n| n.similarity > best.similarity);
                match closer {
                    Some(n) => best = n,
                    None => break,
                }
            }
        }
        best
    }

    /// The heuristic of the paper: a candidate is linked unless a node already linked is
    /// nearer to it than the new node is, which keeps links pointing in many directions.
    fn select(&self, candidates: &[Scored], limit: usize) -> Vec<u32> {
        let mut chosen: Vec<u32> = Vec::with_capacity(limit);
        for candidate in candidates {
            if chosen.len() == limit {
                break;
            }
            let vector = self.vector(candidate.node);
            let crowded = chosen
                .iter()
                .any(|c| quantized::dot(vector, self.vector(*c)) > candidate.similarity);
            if !crowded {
                chosen.push(candidate.node);
            }
        }
        chosen
    }

    /// Adds a document's quantized vector; false when the graph has the id already.
    pub(super) fn insert(&mut self, id: u64, vector: &[i8]) -> io::Result<bool> {
        if self.by_id.contains_key(&id) {
            return Ok(false);
        }
        if vector.len() != self.vectors.record() {
            return Err(invalid(format!(
                "a vector of {} bytes in an index of {}",
                vector.len(),
                self.vectors.record()
            )));
        }
        let node = self.count;
        self.vectors.reserve(node as usize)?;
        self.ids.reserve(node as usize)?;
        self.links.reserve(node as usize)?;
        self.vectors
            .get_mut(node as usize)
            .copy_from_slice(bytemuck::cast_slice(vector));
        self.ids
            .get_mut(node as usize)
            .copy_from_slice(&id.to_le_bytes());
        self.set_neighbours(node, 0, &[]);
        self.count += 1;
        self.by_id.insert(id, node);
        let level = level_of(id);
        if level > 0 {
            self.upper.insert(node, vec![Vec::new(); level]);
        }
        let Some(entry) = self.entry else {
            self.entry = Some(EntryPoint {
                node,
                level: level as u8,
            });
            return Ok(true);
        };
        let top = level.min(entry.level as usize);
        let mut entries = vec![self.descend(vector, entry, top)];
        for layer in (0..=top).rev() {
            let found = self.search_layer(vector, &entries, EF_CONSTRUCTION, layer, None);
            let limit = if layer == 0 { M0 } else { M };
            let chosen = self.select(&found, M);
            self.set_neighbours(node, layer, &chosen);
            for neighbour in chosen {
                self.link_back(neighbour, node, layer, limit);
            }
            entries = found;
        }
        if level > entry.level as usize {
            self.entry = Some(EntryPoint {
                node,
                level: level as u8,
            });
        }
        Ok(true)
    }

    /// Adds `node` to `to`'s links on `layer`, pruning them to `limit` by the heuristic.
    fn link_back(&mut self, to: u32, node: u32, layer: usize, limit: usize) {
        let mut links = self.neighbours(to, layer);
        if links.contains(&node) {
            return;
        }
        links.push(node);
        if links.len() > limit {
            let base = self.vector(to).to_vec();
            let mut scored: Vec<Scored> = links.iter().map(|n| self.scored(&base, *n)).collect();
            scored.sort_by(|a, b| b.cmp(a));
            links = self.select(&scored, limit);
        }
        self.set_neighbours(to, layer, &links);
    }

    /// The `limit` nearest nodes to `query` among those `keep` accepts, best first.
    pub(super) fn search(
        &self,
        query: &[i8],
        limit: usize,
        ef: usize,
        keep: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<Scored> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let start = self.descend(query, entry, 0);
        let mut found = self.search_layer(query, &[start], ef.max(limit), 0, keep);
        found.truncate(limit);
        found
    }
}

fn invalid(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason)
}
