//! The HNSW graph of a collection: derived from tantivy, persisted next to it.
//!
//! A compact HNSW (Malkov & Yashunin, built the way hnswlib builds it) over cosine similarity:
//! vectors are stored l2-normalised, so the similarity is their dot product and the distance the
//! graph orders by is `1 - dot`.
//!
//! Layout (per node, for `M = 16` and 384 dimensions: about 1.1× the raw vectors):
//! - the vector, in contiguous chunks of [`CHUNK`] nodes (`Arc<[f32]>`; appending republishes
//!   only the last, partial chunk);
//! - its `vid`, level and layer-0 neighbours in a fixed-capacity array of `2·M` `u32` node
//!   indices (plus a count), as atomics so that searches read them without locks;
//! - a lock that writers of the node's links take, holding its upper-layer neighbour lists (only
//!   about 1 node in `M` has any).
//!
//! Node ids are `vid`s (see `schema`), mapped to node indices by a chunked table. The graph cannot
//! delete: a replaced or deleted document stays as a dead node that searches traverse but skip
//! through their filter, until compaction rebuilds the graph.
//!
//! Concurrency: one batch is inserted at a time (by all cores); searches run meanwhile on the
//! last published state, which a batch replaces when it is completely linked, so a search never
//! sees half-linked nodes (links to nodes newer than its state are skipped).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use chatvault_core::{Error, Result};
use parking_lot::{Mutex, RwLock};

use crate::error::{io_err, BACKEND};

/// Nodes per storage chunk (a power of two).
const CHUNK_BITS: u32 = 8;
const CHUNK: usize = 1 << CHUNK_BITS;
/// `vid`s per chunk of the `vid` → node table.
const VID_CHUNK_BITS: u32 = 12;
const VID_CHUNK: usize = 1 << VID_CHUNK_BITS;
/// The highest level a node can get.
const MAX_LEVEL: usize = 16;
/// "No node" in the `vid` table.
const NO_NODE: u32 = u32::MAX;

/// The dump file's first bytes and format version.
const MAGIC: &[u8; 8] = b"CVHNSW\0\0";
const FORMAT_VERSION: u32 = 1;
/// The dump file's name in a dump directory is `{basename}.{DUMP_EXT}`.
const DUMP_EXT: &str = "cvhnsw";
const BASENAME: &str = "graph";

/// `vid` of "no covered write yet".
pub(crate) const NONE_COVERED: u64 = u64::MAX;

/// A normalised copy of `v` (zero stays zero: its cosine with anything is 0).
pub(crate) fn normalize(v: &[f32]) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return vec![0.0; v.len()];
    }
    let scale = (1.0 / norm) as f32;
    v.iter().map(|x| x * scale).collect()
}

/// The instruction set picked at first use (AVX2+FMA where the CPU has them, else plain), for
/// [`dot`].
static ARCH: std::sync::LazyLock<pulp::Arch> = std::sync::LazyLock::new(pulp::Arch::new);

/// The dot product, on the widest SIMD the CPU has (detected at run time, so a binary built for
/// any x86-64 still uses AVX2/FMA where they exist), with four independent accumulators.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    ARCH.dispatch(Dot(&a[..n], &b[..n]))
}

struct Dot<'a>(&'a [f32], &'a [f32]);

impl pulp::WithSimd for Dot<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> f32 {
        let (a, a_tail) = S::as_simd_f32s(self.0);
        let (b, b_tail) = S::as_simd_f32s(self.1);
        let zero = simd.splat_f32s(0.0);
        let mut acc = [zero; 4];
        let mut ca = a.chunks_exact(4);
        let mut cb = b.chunks_exact(4);
        for (x, y) in (&mut ca).zip(&mut cb) {
            for i in 0..4 {
                acc[i] = simd.mul_add_e_f32s(x[i], y[i], acc[i]);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            acc[0] = simd.mul_add_e_f32s(*x, *y, acc[0]);
        }
        let sum = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
        let mut total = simd.reduce_sum_f32s(sum);
        for (x, y) in a_tail.iter().zip(b_tail) {
            total += x * y;
        }
        total
    }
}

/// The cosine of two normalised vectors.
#[inline]
pub(crate) fn similarity(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b).clamp(-1.0, 1.0)
}

#[inline]
fn distance(a: &[f32], b: &[f32]) -> f32 {
    1.0 - dot(a, b)
}

/// Graph construction parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GraphParams {
    pub(crate) m: usize,
    pub(crate) ef_construction: usize,
}

/// `f32` ordered by `total_cmp`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF32(f32);
impl Eq for OrdF32 {}
impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF32 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The mutable per-node state of [`CHUNK`] nodes.
struct NodeChunk {
    vids: Box<[AtomicU64]>,
    levels: Box<[AtomicU8]>,
    /// Per node: a count, then `m0` neighbour indices.
    links0: Box<[AtomicU32]>,
    /// Per node: the lock its link writers take, holding layers `1..=level`.
    upper: Box<[RwLock<Vec<Vec<u32>>>]>,
}

impl NodeChunk {
    fn new(stride: usize) -> Self {
        NodeChunk {
            vids: (0..CHUNK).map(|_| AtomicU64::new(0)).collect(),
            levels: (0..CHUNK).map(|_| AtomicU8::new(0)).collect(),
            links0: (0..CHUNK * stride).map(|_| AtomicU32::new(0)).collect(),
            upper: (0..CHUNK).map(|_| RwLock::new(Vec::new())).collect(),
        }
    }
}

/// The nodes `0..len`: vectors (immutable) and per-node state (shared with later storages).
struct Storage {
    len: usize,
    dim: usize,
    m0: usize,
    vectors: Vec<Arc<[f32]>>,
    nodes: Vec<Arc<NodeChunk>>,
    vid_index: Vec<Arc<[AtomicU32]>>,
}

/// Per-thread search state: a generation-stamped visited set and the two heaps.
#[derive(Default)]
struct Scratch {
    stamps: Vec<u16>,
    generation: u16,
    candidates: BinaryHeap<Reverse<(OrdF32, u32)>>,
    results: BinaryHeap<(OrdF32, u32)>,
}

impl Scratch {
    fn reset(&mut self, n: usize) {
        if self.stamps.len() < n {
            self.stamps.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamps.iter_mut().for_each(|s| *s = 0);
            self.generation = 1;
        }
        self.candidates.clear();
        self.results.clear();
    }

    /// Marks `i` visited; false if it already was.
    #[inline]
    fn visit(&mut self, i: u32) -> bool {
        let s = &mut self.stamps[i as usize];
        if *s == self.generation {
            false
        } else {
            *s = self.generation;
            true
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

impl Storage {
    fn empty(dim: usize, m0: usize) -> Self {
        Storage {
            len: 0,
            dim,
            m0,
            vectors: Vec::new(),
            nodes: Vec::new(),
            vid_index: Vec::new(),
        }
    }

    fn stride(&self) -> usize {
        self.m0 + 1
    }

    #[inline]
    fn vector(&self, i: u32) -> &[f32] {
        let i = i as usize;
        let o = (i & (CHUNK - 1)) * self.dim;
        &self.vectors[i >> CHUNK_BITS][o..o + self.dim]
    }

    #[inline]
    fn node(&self, i: u32) -> (&NodeChunk, usize) {
        let i = i as usize;
        (&self.nodes[i >> CHUNK_BITS], i & (CHUNK - 1))
    }

    #[inline]
    fn vid(&self, i: u32) -> u64 {
        let (c, o) = self.node(i);
        c.vids[o].load(Ordering::Relaxed)
    }

    fn level(&self, i: u32) -> usize {
        let (c, o) = self.node(i);
        usize::from(c.levels[o].load(Ordering::Relaxed))
    }

    /// The node index of `vid`, if this storage holds it.
    #[inline]
    fn index_of(&self, vid: u64) -> Option<u32> {
        let chunk = self
            .vid_index
            .get(usize::try_from(vid >> VID_CHUNK_BITS).ok()?)?;
        let i = chunk[(vid as usize) & (VID_CHUNK - 1)].load(Ordering::Relaxed);
        (i != NO_NODE && (i as usize) < self.len).then_some(i)
    }

    /// Calls `f` with each neighbour of `i` at `layer` (possibly nodes beyond `len`).
    #[inline]
    fn for_links(&self, i: u32, layer: usize, mut f: impl FnMut(u32)) {
        let (c, o) = self.node(i);
        if layer == 0 {
            let base = o * self.stride();
            let n = (c.links0[base].load(Ordering::Acquire) as usize).min(self.m0);
            for l in &c.links0[base + 1..base + 1 + n] {
                f(l.load(Ordering::Relaxed));
            }
        } else if let Some(list) = c.upper[o].read().get(layer - 1) {
            list.iter().copied().for_each(f);
        }
    }

    /// Greedy descent at `layer` from `(ep, d)`.
    fn greedy(&self, q: &[f32], mut ep: u32, mut d: f32, layer: usize) -> (u32, f32) {
        loop {
            let mut changed = false;
            let cur = ep;
            self.for_links(cur, layer, |n| {
                if (n as usize) < self.len {
                    let dn = distance(q, self.vector(n));
                    if dn < d {
                        d = dn;
                        ep = n;
                        changed = true;
                    }
                }
            });
            if !changed {
                return (ep, d);
            }
        }
    }

    /// The `ef` nodes nearest `q` at `layer` reachable from `eps` and passing `filter` (on
    /// `vid`), nearest first. Nodes failing the filter are traversed but not returned.
    fn search_layer(
        &self,
        q: &[f32],
        eps: &[(f32, u32)],
        ef: usize,
        layer: usize,
        filter: Option<&dyn Fn(u64) -> bool>,
    ) -> Vec<(f32, u32)> {
        let ef = ef.max(1);
        let pass = |i: u32| filter.is_none_or(|f| f(self.vid(i)));
        with_scratch(|sc| {
            sc.reset(self.len);
            for &(d, e) in eps {
                if (e as usize) < self.len && sc.visit(e) {
                    sc.candidates.push(Reverse((OrdF32(d), e)));
                    if pass(e) {
                        sc.results.push((OrdF32(d), e));
                        if sc.results.len() > ef {
                            sc.results.pop();
                        }
                    }
                }
            }
            let mut bound = if sc.results.len() >= ef {
                sc.results.peek().map_or(f32::INFINITY, |r| r.0 .0)
            } else {
                f32::INFINITY
            };
            while let Some(Reverse((OrdF32(d), c))) = sc.candidates.pop() {
                if d > bound {
                    break;
                }
                self.for_links(c, layer, |n| {
                    if (n as usize) >= self.len || !sc.visit(n) {
                        return;
                    }
                    let dn = distance(q, self.vector(n));
                    if dn < bound {
                        sc.candidates.push(Reverse((OrdF32(dn), n)));
                        if pass(n) {
                            sc.results.push((OrdF32(dn), n));
                            if sc.results.len() > ef {
                                sc.results.pop();
                            }
                            if sc.results.len() >= ef {
                                bound = sc.results.peek().map_or(f32::INFINITY, |r| r.0 .0);
                            }
                        }
                    }
                });
            }
            let mut out: Vec<(f32, u32)> = sc.results.drain().map(|(d, i)| (d.0, i)).collect();
            out.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            out
        })
    }
}

/// A consistent state of the graph for reading: the nodes of one completed batch and its entry
/// point.
#[derive(Clone)]
pub(crate) struct View {
    storage: Arc<Storage>,
    entry: Option<(u32, usize)>,
}

impl View {
    /// Whether `vid` is a node.
    #[inline]
    pub(crate) fn contains(&self, vid: u64) -> bool {
        self.storage.index_of(vid).is_some()
    }

    /// The normalised vector of `vid`'s node.
    #[inline]
    pub(crate) fn vector(&self, vid: u64) -> Option<&[f32]> {
        self.storage.index_of(vid).map(|i| self.storage.vector(i))
    }

    /// How many nodes.
    pub(crate) fn len(&self) -> usize {
        self.storage.len
    }

    /// Every node as (vid, vector), in insertion order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &[f32])> + '_ {
        let s = &self.storage;
        (0..s.len as u32).map(move |i| (s.vid(i), s.vector(i)))
    }

    /// The `k` nearest nodes passing `filter` (on `vid`) found by a walk of breadth `ef`, as
    /// (vid, cosine), best first.
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&dyn Fn(u64) -> bool>,
    ) -> Vec<(u64, f32)> {
        let s = &self.storage;
        let Some((ep, top)) = self.entry else {
            return Vec::new();
        };
        if query.len() != s.dim || k == 0 {
            return Vec::new();
        }
        let mut cur = (ep, distance(query, s.vector(ep)));
        for layer in (1..=top).rev() {
            cur = s.greedy(query, cur.0, cur.1, layer);
        }
        let found = s.search_layer(query, &[(cur.1, cur.0)], ef.max(k), 0, filter);
        found
            .into_iter()
            .take(k)
            .map(|(d, i)| (s.vid(i), (1.0 - d).clamp(-1.0, 1.0)))
            .collect()
    }
}

/// The graph: the published [`View`] plus what inserts need.
pub(crate) struct Graph {
    dim: usize,
    m: usize,
    m0: usize,
    ef_construction: usize,
    ml: f64,
    published: RwLock<View>,
    /// The entry point while a batch links (published with the batch).
    build_entry: RwLock<Option<(u32, usize)>>,
    /// Serialises inserts.
    grow: Mutex<()>,
    /// Every committed write with `vid <= covered` is in the graph.
    covered: AtomicU64,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("points", &self.len())
            .field("covered", &self.covered())
            .finish()
    }
}

/// A deterministic level for node `i`: `floor(-ln(u) · mL)`.
fn random_level(i: usize, ml: f64) -> usize {
    // splitmix64
    let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    ((-u.ln() * ml).floor() as usize).min(MAX_LEVEL)
}

impl Graph {
    pub(crate) fn new(params: GraphParams, dimension: usize) -> Self {
        let m = params.m.max(2);
        Self::with_parts(
            dimension,
            m,
            2 * m,
            params.ef_construction.max(1),
            Storage::empty(dimension, 2 * m),
            None,
        )
    }

    fn with_parts(
        dim: usize,
        m: usize,
        m0: usize,
        ef_construction: usize,
        storage: Storage,
        entry: Option<(u32, usize)>,
    ) -> Self {
        Graph {
            dim,
            m,
            m0,
            ef_construction,
            ml: 1.0 / (m as f64).ln(),
            published: RwLock::new(View {
                storage: Arc::new(storage),
                entry,
            }),
            build_entry: RwLock::new(entry),
            grow: Mutex::new(()),
            covered: AtomicU64::new(NONE_COVERED),
        }
    }

    /// The published state, for reading.
    pub(crate) fn view(&self) -> View {
        self.published.read().clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.published.read().storage.len
    }

    pub(crate) fn covered(&self) -> u64 {
        self.covered.load(Ordering::Acquire)
    }

    pub(crate) fn set_covered(&self, vid: u64) {
        self.covered.store(vid, Ordering::Release);
    }

    /// The `k` nearest nodes passing `filter`, as (vid, cosine), best first.
    #[cfg(test)]
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&dyn Fn(u64) -> bool>,
    ) -> Vec<(u64, f32)> {
        self.view().search(query, k, ef, filter)
    }

    /// Inserts normalised vectors (all cores). Vectors of the wrong dimension and `vid`s already
    /// in the graph are skipped.
    pub(crate) fn insert(&self, items: &[(u64, &[f32])]) {
        let _grow = self.grow.lock();
        let old = Arc::clone(&self.published.read().storage);
        let mut seen = std::collections::HashSet::new();
        let mut items: Vec<(u64, &[f32])> = items
            .iter()
            .filter(|(vid, v)| v.len() == self.dim && old.index_of(*vid).is_none())
            .filter(|(vid, _)| seen.insert(*vid))
            .copied()
            .collect();
        let room = (NO_NODE as usize - 1).saturating_sub(old.len);
        if items.len() > room {
            tracing::error!("the graph is full ({} nodes)", old.len);
            items.truncate(room);
        }
        if items.is_empty() {
            return;
        }
        let first = old.len;
        let storage = self.extend(&old, &items);
        drop(old);
        let next = AtomicUsize::new(0);
        let n = items.len();
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            self.link(&storage, (first + i) as u32);
        };
        let threads = if n >= 64 {
            std::thread::available_parallelism().map_or(1, |p| p.get().min(8))
        } else {
            1
        };
        if threads > 1 {
            std::thread::scope(|s| {
                for _ in 1..threads {
                    s.spawn(work);
                }
                work();
            });
        } else {
            work();
        }
        let entry = *self.build_entry.read();
        *self.published.write() = View {
            storage: Arc::new(storage),
            entry,
        };
    }

    /// `old` plus `items` as new, unlinked nodes.
    fn extend(&self, old: &Storage, items: &[(u64, &[f32])]) -> Storage {
        let dim = self.dim;
        let mut vectors = old.vectors.clone();
        let mut nodes = old.nodes.clone();
        let mut vid_index = old.vid_index.clone();
        let mut len = old.len;
        let mut cur: Vec<f32> = Vec::new();
        if len % CHUNK != 0 {
            if let Some(last) = vectors.pop() {
                cur.reserve(CHUNK * dim);
                cur.extend_from_slice(&last);
            }
        }
        for &(vid, v) in items {
            if len % CHUNK == 0 {
                if !cur.is_empty() {
                    vectors.push(Arc::from(std::mem::take(&mut cur)));
                }
                cur.reserve(CHUNK * dim);
                nodes.push(Arc::new(NodeChunk::new(self.m0 + 1)));
            }
            cur.extend_from_slice(v);
            let level = random_level(len, self.ml);
            let c = &nodes[len >> CHUNK_BITS];
            let o = len & (CHUNK - 1);
            c.vids[o].store(vid, Ordering::Relaxed);
            c.levels[o].store(level as u8, Ordering::Relaxed);
            *c.upper[o].write() = vec![Vec::new(); level];
            let vc = (vid >> VID_CHUNK_BITS) as usize;
            while vid_index.len() <= vc {
                vid_index.push((0..VID_CHUNK).map(|_| AtomicU32::new(NO_NODE)).collect());
            }
            vid_index[vc][(vid as usize) & (VID_CHUNK - 1)].store(len as u32, Ordering::Relaxed);
            len += 1;
        }
        if !cur.is_empty() {
            vectors.push(Arc::from(cur));
        }
        Storage {
            len,
            dim,
            m0: self.m0,
            vectors,
            nodes,
            vid_index,
        }
    }

    /// Links node `q` of `s` into the graph.
    fn link(&self, s: &Storage, q: u32) {
        let level = s.level(q);
        let entry = *self.build_entry.read();
        let (ep, top) = match entry {
            Some(e) => e,
            None => {
                let mut e = self.build_entry.write();
                match *e {
                    Some(e) => e,
                    None => {
                        *e = Some((q, level));
                        return;
                    }
                }
            }
        };
        let qv = s.vector(q);
        let mut cur = (ep, distance(qv, s.vector(ep)));
        for layer in (level + 1..=top).rev() {
            cur = s.greedy(qv, cur.0, cur.1, layer);
        }
        let mut eps = vec![(cur.1, cur.0)];
        for layer in (0..=level.min(top)).rev() {
            let mut found = s.search_layer(qv, &eps, self.ef_construction, layer, None);
            found.retain(|&(_, i)| i != q);
            let selected = self.select(s, &found, self.m);
            self.set_links(s, q, layer, &selected);
            let max = if layer == 0 { self.m0 } else { self.m };
            for &(d, e) in &selected {
                self.add_link(s, e, q, d, layer, max);
            }
            if !found.is_empty() {
                eps = found;
            }
        }
        if level > top {
            let mut e = self.build_entry.write();
            if e.is_none_or(|(_, l)| level > l) {
                *e = Some((q, level));
            }
        }
    }

    /// hnswlib's neighbour-selection heuristic: from candidates nearest first, keep one only if
    /// it is nearer the base than every kept one.
    fn select(&self, s: &Storage, candidates: &[(f32, u32)], m: usize) -> Vec<(f32, u32)> {
        if candidates.len() <= m {
            return candidates.to_vec();
        }
        let mut kept: Vec<(f32, u32)> = Vec::with_capacity(m);
        for &(d, c) in candidates {
            if kept.len() >= m {
                break;
            }
            let cv = s.vector(c);
            if kept.iter().all(|&(_, r)| distance(cv, s.vector(r)) >= d) {
                kept.push((d, c));
            }
        }
        kept
    }

    fn set_links(&self, s: &Storage, q: u32, layer: usize, links: &[(f32, u32)]) {
        let (c, o) = s.node(q);
        let mut upper = c.upper[o].write();
        if layer == 0 {
            let base = o * s.stride();
            let n = links.len().min(self.m0);
            for (slot, &(_, l)) in c.links0[base + 1..].iter().zip(&links[..n]) {
                slot.store(l, Ordering::Relaxed);
            }
            c.links0[base].store(n as u32, Ordering::Release);
        } else if let Some(list) = upper.get_mut(layer - 1) {
            *list = links.iter().map(|&(_, l)| l).collect();
        }
    }

    /// Adds `q` (at distance `d`) to `e`'s links at `layer`, pruning by the heuristic when full.
    fn add_link(&self, s: &Storage, e: u32, q: u32, d: f32, layer: usize, max: usize) {
        let (c, o) = s.node(e);
        let mut upper = c.upper[o].write();
        let mut current: Vec<u32> = Vec::with_capacity(max + 1);
        let base = o * s.stride();
        if layer == 0 {
            let n = (c.links0[base].load(Ordering::Relaxed) as usize).min(self.m0);
            current.extend(
                c.links0[base + 1..base + 1 + n]
                    .iter()
                    .map(|l| l.load(Ordering::Relaxed)),
            );
        } else if let Some(list) = upper.get(layer - 1) {
            current.extend_from_slice(list);
        } else {
            return;
        }
        if current.contains(&q) {
            return;
        }
        let new: Vec<u32> = if current.len() < max {
            current.push(q);
            current
        } else {
            let ev = s.vector(e);
            let mut cands: Vec<(f32, u32)> = current
                .iter()
                .map(|&n| (distance(ev, s.vector(n)), n))
                .collect();
            cands.push((d, q));
            cands.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            self.select(s, &cands, max)
                .into_iter()
                .map(|(_, n)| n)
                .collect()
        };
        if layer == 0 {
            for (slot, &l) in c.links0[base + 1..].iter().zip(&new) {
                slot.store(l, Ordering::Relaxed);
            }
            c.links0[base].store(new.len() as u32, Ordering::Release);
        } else if let Some(list) = upper.get_mut(layer - 1) {
            *list = new;
        }
    }

    // ------------------------------------------------------------------ persistence

    /// Writes the graph as `{basename}.cvhnsw` into `dir`; returns the basename used. Inserts
    /// must not run meanwhile (the collection serialises them).
    pub(crate) fn dump(&self, dir: &Path) -> Result<String> {
        let view = self.view();
        let path = dir.join(format!("{BASENAME}.{DUMP_EXT}"));
        let file = File::create(&path).map_err(|e| io_err(path.display(), e))?;
        let mut w = HashWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            sum: Checksum::default(),
        };
        self.write_to(&view, &mut w)
            .map_err(|e| io_err(path.display(), e))?;
        let sum = w.sum.finish();
        let mut inner = w.inner;
        inner
            .write_all(&sum.to_le_bytes())
            .and_then(|()| inner.flush())
            .map_err(|e| io_err(path.display(), e))?;
        Ok(BASENAME.to_string())
    }

    fn write_to(&self, view: &View, w: &mut impl Write) -> std::io::Result<()> {
        let s = &view.storage;
        let n = s.len;
        w.write_all(MAGIC)?;
        for v in [
            FORMAT_VERSION,
            self.dim as u32,
            self.m as u32,
            self.m0 as u32,
            self.ef_construction as u32,
        ] {
            w.write_all(&v.to_le_bytes())?;
        }
        w.write_all(&(n as u64).to_le_bytes())?;
        let (ep, top) = view.entry.map_or((NO_NODE, 0), |(e, l)| (e, l as u32));
        w.write_all(&ep.to_le_bytes())?;
        w.write_all(&top.to_le_bytes())?;
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK * self.dim * 4);
        for start in (0..n).step_by(CHUNK) {
            buf.clear();
            for i in start..(start + CHUNK).min(n) {
                buf.extend_from_slice(&s.vid(i as u32).to_le_bytes());
            }
            w.write_all(&buf)?;
        }
        for start in (0..n).step_by(CHUNK) {
            buf.clear();
            for i in start..(start + CHUNK).min(n) {
                buf.push(s.level(i as u32) as u8);
            }
            w.write_all(&buf)?;
        }
        for chunk in &s.vectors {
            buf.clear();
            for x in chunk.iter() {
                buf.extend_from_slice(&x.to_le_bytes());
            }
            w.write_all(&buf)?;
        }
        let stride = s.stride();
        for start in (0..n).step_by(CHUNK) {
            buf.clear();
            let c = &s.nodes[start >> CHUNK_BITS];
            let filled = (n - start).min(CHUNK);
            for l in &c.links0[..filled * stride] {
                buf.extend_from_slice(&l.load(Ordering::Relaxed).to_le_bytes());
            }
            w.write_all(&buf)?;
        }
        for i in 0..n as u32 {
            let level = s.level(i);
            if level == 0 {
                continue;
            }
            let (c, o) = s.node(i);
            let upper = c.upper[o].read();
            for layer in 1..=level {
                let list = upper.get(layer - 1).map_or(&[][..], |l| l.as_slice());
                w.write_all(&(list.len() as u32).to_le_bytes())?;
                for &l in list {
                    w.write_all(&l.to_le_bytes())?;
                }
            }
        }
        Ok(())
    }

    /// Loads a dump written by [`dump`](Self::dump). A missing, truncated, corrupt or foreign
    /// file (including an hnsw_rs dump of an older version) is an error, never a panic.
    pub(crate) fn load(dir: &Path, basename: &str, dimension: usize, covered: u64) -> Result<Self> {
        let path = dir.join(format!("{basename}.{DUMP_EXT}"));
        let corrupt = |what: String| {
            Error::backend_error(format!("the graph dump {} {what}", path.display()))
                .with_backend(BACKEND)
        };
        let file = File::open(&path).map_err(|e| io_err(path.display(), e))?;
        let size = file
            .metadata()
            .map_err(|e| io_err(path.display(), e))?
            .len();
        let mut r = HashReader {
            inner: BufReader::with_capacity(1 << 20, file),
            sum: Checksum::default(),
        };
        let g = Self::read_from(&mut r, dimension, size).map_err(|e| match e {
            LoadError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                corrupt("is truncated".into())
            }
            LoadError::Io(e) => io_err(path.display(), e),
            LoadError::Invalid(what) => corrupt(what),
        })?;
        let expected = r.sum.finish();
        let mut tail = [0u8; 8];
        r.inner
            .read_exact(&mut tail)
            .map_err(|_| corrupt("is truncated".into()))?;
        if u64::from_le_bytes(tail) != expected {
            return Err(corrupt("is corrupt (checksum mismatch)".into()));
        }
        let mut extra = [0u8; 1];
        if r.inner
            .read(&mut extra)
            .map_err(|e| io_err(path.display(), e))?
            != 0
        {
            return Err(corrupt("has trailing bytes".into()));
        }
        g.set_covered(covered);
        Ok(g)
    }

    fn read_from(
        r: &mut impl Read,
        dimension: usize,
        size: u64,
    ) -> std::result::Result<Self, LoadError> {
        let invalid = |s: String| Err(LoadError::Invalid(s));
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return invalid("is not a chatvault graph (wrong magic)".into());
        }
        let version = read_u32(r)?;
        if version != FORMAT_VERSION {
            return invalid(format!(
                "has format version {version}, expected {FORMAT_VERSION}"
            ));
        }
        let dim = read_u32(r)? as usize;
        let m = read_u32(r)? as usize;
        let m0 = read_u32(r)? as usize;
        let ef_construction = read_u32(r)? as usize;
        let n = read_u64(r)?;
        let ep = read_u32(r)?;
        let top = read_u32(r)? as usize;
        if dim != dimension {
            return invalid(format!("has dimension {dim}, the collection {dimension}"));
        }
        if dim == 0 || !(2..=4096).contains(&m) || m0 < m || m0 > 8192 || ef_construction == 0 {
            return invalid(format!(
                "has invalid parameters (dim {dim}, M {m}, M0 {m0})"
            ));
        }
        let stride = m0 + 1;
        // every node takes at least its vector and layer-0 links: bounds `n` before allocating
        let per_node = 9 + 4 * (dim as u64 + stride as u64);
        if n >= u64::from(NO_NODE) || n.saturating_mul(per_node) > size {
            return invalid(format!("claims {n} nodes, more than its size allows"));
        }
        let n = n as usize;
        if (n == 0) != (ep == NO_NODE) || (n > 0 && (ep as usize >= n || top > MAX_LEVEL)) {
            return invalid(format!("has an invalid entry point {ep} (level {top})"));
        }
        let mut storage = Storage::empty(dim, m0);
        let mut buf = vec![0u8; CHUNK * 8];
        let mut vids = Vec::with_capacity(n);
        for start in (0..n).step_by(CHUNK) {
            let k = (n - start).min(CHUNK);
            r.read_exact(&mut buf[..k * 8])?;
            vids.extend(buf[..k * 8].chunks_exact(8).map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                u64::from_le_bytes(a)
            }));
        }
        let mut levels = vec![0u8; n];
        r.read_exact(&mut levels)?;
        if let Some(l) = levels.iter().find(|l| usize::from(**l) > MAX_LEVEL) {
            return invalid(format!("has a node of level {l}"));
        }
        if n > 0 && usize::from(levels[ep as usize]) != top {
            return invalid("has an entry point of the wrong level".into());
        }
        let mut fbuf = vec![0u8; CHUNK * dim * 4];
        for start in (0..n).step_by(CHUNK) {
            let k = (n - start).min(CHUNK);
            let bytes = &mut fbuf[..k * dim * 4];
            r.read_exact(bytes)?;
            let v: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if v.iter().any(|x| !x.is_finite()) {
                return invalid("holds a non-finite vector value".into());
            }
            storage.vectors.push(Arc::from(v));
            storage.nodes.push(Arc::new(NodeChunk::new(stride)));
        }
        let mut lbuf = vec![0u8; CHUNK * stride * 4];
        for start in (0..n).step_by(CHUNK) {
            let k = (n - start).min(CHUNK);
            let bytes = &mut lbuf[..k * stride * 4];
            r.read_exact(bytes)?;
            let c = &storage.nodes[start >> CHUNK_BITS];
            for (j, b) in bytes.chunks_exact(4).enumerate() {
                let x = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                let valid = if j % stride == 0 {
                    (x as usize) <= m0
                } else {
                    (x as usize) < n
                };
                if !valid {
                    return invalid(format!(
                        "has an invalid link {x} at node {}",
                        start + j / stride
                    ));
                }
                c.links0[j].store(x, Ordering::Relaxed);
            }
        }
        for (i, &level) in levels.iter().enumerate() {
            let (c, o) = (&storage.nodes[i >> CHUNK_BITS], i & (CHUNK - 1));
            c.vids[o].store(vids[i], Ordering::Relaxed);
            c.levels[o].store(level, Ordering::Relaxed);
            let mut layers = Vec::with_capacity(usize::from(level));
            for _ in 0..level {
                let count = read_u32(r)? as usize;
                if count > m {
                    return invalid(format!("has {count} links at node {i}, more than M = {m}"));
                }
                let mut list = Vec::with_capacity(count);
                for _ in 0..count {
                    let x = read_u32(r)?;
                    if x as usize >= n {
                        return invalid(format!("has an invalid link {x} at node {i}"));
                    }
                    list.push(x);
                }
                layers.push(list);
            }
            *c.upper[o].write() = layers;
        }
        for (i, &vid) in vids.iter().enumerate() {
            let vc = usize::try_from(vid >> VID_CHUNK_BITS)
                .ok()
                .filter(|vc| *vc <= n.max(1) * 64 + (1 << 20));
            let Some(vc) = vc else {
                return invalid(format!("has an implausible vid {vid}"));
            };
            while storage.vid_index.len() <= vc {
                storage
                    .vid_index
                    .push((0..VID_CHUNK).map(|_| AtomicU32::new(NO_NODE)).collect());
            }
            let slot = &storage.vid_index[vc][(vid as usize) & (VID_CHUNK - 1)];
            if slot.load(Ordering::Relaxed) != NO_NODE {
                return invalid(format!("holds vid {vid} twice"));
            }
            slot.store(i as u32, Ordering::Relaxed);
        }
        storage.len = n;
        let entry = (n > 0).then_some((ep, top));
        Ok(Graph::with_parts(
            dim,
            m,
            m0,
            ef_construction,
            storage,
            entry,
        ))
    }
}

enum LoadError {
    Io(std::io::Error),
    Invalid(String),
}

impl From<std::io::Error> for LoadError {
    fn from(e: std::io::Error) -> Self {
        LoadError::Io(e)
    }
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// A 64-bit checksum of a byte stream (word-wise multiply-rotate; detects corruption, not
/// tampering).
#[derive(Default, Clone, Copy)]
struct Checksum {
    h: u64,
    carry: [u8; 8],
    pending: usize,
    total: u64,
}

impl Checksum {
    #[inline]
    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }

    fn update(&mut self, mut b: &[u8]) {
        self.total += b.len() as u64;
        if self.pending > 0 {
            let take = (8 - self.pending).min(b.len());
            self.carry[self.pending..self.pending + take].copy_from_slice(&b[..take]);
            self.pending += take;
            b = &b[take..];
            if self.pending < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.carry));
            self.pending = 0;
        }
        let mut words = b.chunks_exact(8);
        for w in &mut words {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            self.word(u64::from_le_bytes(a));
        }
        let rest = words.remainder();
        self.carry[..rest.len()].copy_from_slice(rest);
        self.pending = rest.len();
    }

    fn finish(&self) -> u64 {
        let mut c = *self;
        let mut last = [0u8; 8];
        last[..self.pending].copy_from_slice(&self.carry[..self.pending]);
        c.word(u64::from_le_bytes(last));
        c.word(self.total);
        c.h
    }
}

struct HashWriter<W> {
    inner: W,
    sum: Checksum,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sum.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct HashReader<R> {
    inner: R,
    sum: Checksum,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sum.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, Normal};

    const DIM: usize = 48;

    /// `n` normalised vectors from a seeded mixture of Gaussians.
    fn mixture(seed: u64, n: usize) -> Vec<Vec<f32>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let unit = Normal::new(0.0f32, 1.0).unwrap();
        let noise = Normal::new(0.0f32, 0.5).unwrap();
        let centres: Vec<Vec<f32>> = (0..200)
            .map(|_| (0..DIM).map(|_| unit.sample(&mut rng)).collect())
            .collect();
        (0..n)
            .map(|_| {
                let c = &centres[rng.random_range(0..centres.len())];
                let v: Vec<f32> = c.iter().map(|x| x + noise.sample(&mut rng)).collect();
                normalize(&v)
            })
            .collect()
    }

    fn params() -> GraphParams {
        GraphParams {
            m: 16,
            ef_construction: 100,
        }
    }

    /// vids are `3 * i + 1`: sparse, not node indices.
    fn vid(i: usize) -> u64 {
        3 * i as u64 + 1
    }

    fn build(data: &[Vec<f32>], batch: usize) -> Graph {
        let g = Graph::new(params(), DIM);
        let items: Vec<(u64, &[f32])> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (vid(i), v.as_slice()))
            .collect();
        for part in items.chunks(batch) {
            g.insert(part);
        }
        g
    }

    fn brute(data: &[Vec<f32>], q: &[f32], k: usize, filter: &dyn Fn(u64) -> bool) -> Vec<u64> {
        let mut all: Vec<(f32, u64)> = data
            .iter()
            .enumerate()
            .filter(|(i, _)| filter(vid(*i)))
            .map(|(i, v)| (dot(q, v), vid(i)))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        all.into_iter().take(k).map(|(_, v)| v).collect()
    }

    fn recall(
        g: &Graph,
        data: &[Vec<f32>],
        queries: &[Vec<f32>],
        filter: Option<&dyn Fn(u64) -> bool>,
    ) -> f64 {
        let mut hit = 0;
        let mut total = 0;
        for q in queries {
            let truth = brute(data, q, 10, filter.unwrap_or(&|_| true));
            let found: Vec<u64> = g
                .search(q, 10, 100, filter)
                .into_iter()
                .map(|(v, _)| v)
                .collect();
            if let Some(f) = filter {
                assert!(found.iter().all(|v| f(*v)), "a result fails the filter");
            }
            hit += truth.iter().filter(|v| found.contains(v)).count();
            total += truth.len();
        }
        hit as f64 / total as f64
    }

    #[test]
    fn dot_matches_a_plain_sum() {
        let v = mixture(1, 2);
        for len in [0, 1, 15, 16, 17, 48] {
            let plain: f32 = v[0][..len]
                .iter()
                .zip(&v[1][..len])
                .map(|(a, b)| a * b)
                .sum();
            assert!((dot(&v[0][..len], &v[1][..len]) - plain).abs() < 1e-5);
        }
        let n = normalize(&[3.0, 4.0]);
        assert!((dot(&n, &n) - 1.0).abs() < 1e-6);
        assert_eq!(normalize(&[0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn recall_against_brute_force_unfiltered_and_filtered() {
        let data = mixture(7, 6000);
        let queries = mixture(8, 60);
        // uneven batches: partial chunks are republished, single inserts take the serial path
        let g = Graph::new(params(), DIM);
        let items: Vec<(u64, &[f32])> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (vid(i), v.as_slice()))
            .collect();
        g.insert(&items[..1]);
        g.insert(&items[1..40]);
        for part in items[40..].chunks(1000) {
            g.insert(part);
        }
        assert_eq!(g.len(), data.len());
        let r = recall(&g, &data, &queries, None);
        println!("unfiltered recall@10 {r}");
        assert!(r >= 0.95, "unfiltered recall@10 {r}");
        let tenth = |v: u64| v % 10 == 1;
        let r = recall(&g, &data, &queries, Some(&tenth));
        println!("recall@10 with a 10% filter {r}");
        assert!(r >= 0.95, "recall@10 with a 10% filter {r}");
        // results are ordered best first and carry the cosine
        let q = &queries[0];
        let res = g.search(q, 10, 64, None);
        assert_eq!(res.len(), 10);
        assert!(res.windows(2).all(|w| w[0].1 >= w[1].1));
        let (v0, s0) = res[0];
        let i0 = ((v0 - 1) / 3) as usize;
        assert!((s0 - dot(q, &data[i0])).abs() < 1e-5);
    }

    #[test]
    fn vids_vectors_and_duplicates() {
        let data = mixture(3, 300);
        let g = build(&data, 100);
        let view = g.view();
        assert_eq!(view.len(), 300);
        assert!(view.contains(vid(17)));
        assert!(!view.contains(vid(17) + 1));
        assert!(!view.contains(u64::MAX));
        assert_eq!(view.vector(vid(17)), Some(data[17].as_slice()));
        assert_eq!(view.iter().count(), 300);
        // a vid already present and a vector of the wrong dimension are skipped
        let short = vec![0.5f32; DIM - 1];
        g.insert(&[(vid(5), data[6].as_slice()), (9999, short.as_slice())]);
        assert_eq!(g.len(), 300);
        assert_eq!(g.view().vector(vid(5)), Some(data[5].as_slice()));
        // an empty graph answers nothing
        let empty = Graph::new(params(), DIM);
        assert!(empty.search(&data[0], 10, 64, None).is_empty());
    }

    #[test]
    fn dump_and_load_round_trip() {
        let data = mixture(11, 1500);
        let queries = mixture(12, 20);
        let g = build(&data, 700);
        let dir = tempfile::tempdir().unwrap();
        let base = g.dump(dir.path()).unwrap();
        let l = Graph::load(dir.path(), &base, DIM, 42).unwrap();
        assert_eq!(l.len(), g.len());
        assert_eq!(l.covered(), 42);
        assert!(g.view().iter().zip(l.view().iter()).all(|(a, b)| a == b));
        for q in &queries {
            assert_eq!(g.search(q, 10, 50, None), l.search(q, 10, 50, None));
        }
        // a loaded graph keeps growing
        let more = mixture(13, 100);
        let items: Vec<(u64, &[f32])> = more
            .iter()
            .enumerate()
            .map(|(i, v)| (100_000 + i as u64, v.as_slice()))
            .collect();
        l.insert(&items);
        assert_eq!(l.len(), 1600);
        assert_eq!(l.search(&more[3], 1, 50, None)[0].0, 100_003);
        // an empty graph round-trips too
        let e = Graph::new(params(), DIM);
        let dir2 = tempfile::tempdir().unwrap();
        let base = e.dump(dir2.path()).unwrap();
        assert_eq!(
            Graph::load(dir2.path(), &base, DIM, NONE_COVERED)
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn damaged_dumps_are_clean_errors() {
        let data = mixture(21, 600);
        let g = build(&data, 600);
        let dir = tempfile::tempdir().unwrap();
        let base = g.dump(dir.path()).unwrap();
        let path = dir.path().join(format!("{base}.{DUMP_EXT}"));
        let good = std::fs::read(&path).unwrap();
        assert!(Graph::load(dir.path(), &base, DIM, 0).is_ok());
        // the wrong dimension
        assert!(Graph::load(dir.path(), &base, DIM + 1, 0).is_err());
        // truncated anywhere
        for cut in [
            0,
            4,
            8,
            30,
            47,
            100,
            good.len() / 2,
            good.len() - 9,
            good.len() - 1,
        ] {
            std::fs::write(&path, &good[..cut]).unwrap();
            let e = Graph::load(dir.path(), &base, DIM, 0).unwrap_err();
            assert!(
                e.to_string().contains("graph dump") || e.to_string().contains("No such"),
                "{e}"
            );
        }
        // a flipped bit anywhere, trailing bytes
        for at in [
            3,
            9,
            20,
            40,
            60,
            200,
            good.len() / 3,
            good.len() - 20,
            good.len() - 3,
        ] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                Graph::load(dir.path(), &base, DIM, 0).is_err(),
                "flip at {at}"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        assert!(Graph::load(dir.path(), &base, DIM, 0).is_err());
        // a header claiming a huge graph, with a matching checksum-free body: no huge allocation
        let mut huge = good[..48].to_vec();
        huge[28..36].copy_from_slice(&(u64::from(u32::MAX) - 2).to_le_bytes());
        std::fs::write(&path, &huge).unwrap();
        assert!(Graph::load(dir.path(), &base, DIM, 0).is_err());
        // garbage, and a directory holding an old hnsw_rs dump instead
        std::fs::write(&path, b"definitely not a graph").unwrap();
        assert!(Graph::load(dir.path(), &base, DIM, 0).is_err());
        std::fs::remove_file(&path).unwrap();
        std::fs::write(dir.path().join("graph.hnsw.graph"), b"old format").unwrap();
        std::fs::write(dir.path().join("graph.hnsw.data"), b"old format").unwrap();
        assert!(Graph::load(dir.path(), "graph", DIM, 0).is_err());
    }

    #[test]
    fn searches_run_while_batches_insert() {
        let data = mixture(31, 4000);
        let g = Graph::new(params(), DIM);
        let items: Vec<(u64, &[f32])> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (vid(i), v.as_slice()))
            .collect();
        g.insert(&items[..500]);
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let searcher = s.spawn(|| {
                let mut searches = 0;
                while !done.load(Ordering::Acquire) || searches < 50 {
                    let i = searches % data.len();
                    let view = g.view();
                    let res = view.search(&data[i], 10, 40, Some(&|v: u64| v % 2 == 1));
                    assert!(!res.is_empty());
                    assert!(res.windows(2).all(|w| w[0].1 >= w[1].1));
                    assert!(res.iter().all(|(v, _)| v % 2 == 1 && view.contains(*v)));
                    searches += 1;
                }
                searches
            });
            for part in items[500..].chunks(250) {
                g.insert(part);
            }
            done.store(true, Ordering::Release);
            assert!(searcher.join().unwrap() >= 50);
        });
        assert_eq!(g.len(), 4000);
        let queries = mixture(32, 40);
        let r = recall(&g, &data, &queries, None);
        println!("recall after concurrent inserts {r}");
        assert!(r >= 0.95, "recall after concurrent inserts {r}");
    }
}
