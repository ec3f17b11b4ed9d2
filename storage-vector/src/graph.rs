//! The hnsw_rs graph of a collection: derived from tantivy, persisted next to it.
//!
//! Vectors are stored l2-normalised and scaled to a norm slightly below 1, so that the dot
//! product (`DistDot`, SIMD in anndists) is the cosine times a constant and can never exceed 1
//! through rounding (anndists asserts it does not). Node ids are `vid`s (see `schema`); hnsw_rs
//! cannot delete, so a replaced or deleted document stays in the graph as a dead node that
//! searches skip through their filter until compaction rebuilds the graph.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chatvault_core::{Error, Result};
use hnsw_rs::api::AnnT;
use hnsw_rs::hnsw::{Hnsw, Point};
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::{DistDot, Distance, FilterT};
use parking_lot::{Mutex, RwLock};

use crate::error::BACKEND;

/// hnsw_rs's fixed number of layers.
const MAX_LAYERS: usize = 16;

/// Squared norm of stored vectors: a cosine of 1 is a dot product of this.
pub(crate) const NORM2: f32 = 1.0 - 1.0 / 1024.0;

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
    let scale = (f64::from(NORM2).sqrt() / norm) as f32;
    v.iter().map(|x| x * scale).collect()
}

/// The cosine of two normalised vectors.
#[inline]
pub(crate) fn similarity(a: &[f32], b: &[f32]) -> f32 {
    distance_to_similarity(DistDot.eval(a, b))
}

#[inline]
pub(crate) fn distance_to_similarity(d: f32) -> f32 {
    ((1.0 - d) / NORM2).clamp(-1.0, 1.0)
}

/// Graph construction parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GraphParams {
    pub(crate) m: usize,
    pub(crate) ef_construction: usize,
}

/// The graph and a `vid` → node table (for exact scans over graph vectors).
pub(crate) struct Graph {
    hnsw: Hnsw<'static, f32, DistDot>,
    nodes: RwLock<Vec<Option<Arc<Point<'static, f32>>>>>,
    /// How many points of each layer are already in `nodes`.
    mapped: Mutex<[usize; MAX_LAYERS]>,
    /// Every committed write with `vid <= covered` is in the graph.
    covered: AtomicU64,
    dimension: usize,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("points", &self.len())
            .field("covered", &self.covered())
            .finish()
    }
}

impl Graph {
    pub(crate) fn new(params: GraphParams, dimension: usize, capacity: usize) -> Self {
        let hnsw = Hnsw::new(
            params.m,
            capacity.max(1024),
            MAX_LAYERS,
            params.ef_construction,
            DistDot,
        );
        Graph {
            hnsw,
            nodes: RwLock::new(Vec::new()),
            mapped: Mutex::new([0; MAX_LAYERS]),
            covered: AtomicU64::new(NONE_COVERED),
            dimension,
        }
    }

    /// Loads a dump written by [`dump`](Self::dump).
    ///
    /// hnsw_rs ties a loaded graph's lifetime to its loader; the loader (a few paths and
    /// options, no vector data since mmap is off) is leaked once per load to give the graph a
    /// `'static` lifetime. Loads happen once per collection open.
    pub(crate) fn load(dir: &Path, basename: &str, dimension: usize, covered: u64) -> Result<Self> {
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, basename)));
            io.load_hnsw::<f32, DistDot>()
        }));
        let hnsw = match loaded {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                return Err(Error::backend_error(format!(
                    "cannot load the graph dump {basename} in {}: {e}",
                    dir.display()
                ))
                .with_backend(BACKEND))
            }
            Err(_) => {
                return Err(Error::backend_error(format!(
                    "the graph dump {basename} in {} is corrupt",
                    dir.display()
                ))
                .with_backend(BACKEND))
            }
        };
        if hnsw.get_nb_point() > 0 && hnsw.get_point_indexation().get_data_dimension() != dimension
        {
            return Err(Error::backend_error(format!(
                "the graph dump in {} has dimension {}, the collection {dimension}",
                dir.display(),
                hnsw.get_point_indexation().get_data_dimension()
            ))
            .with_backend(BACKEND));
        }
        let g = Graph {
            hnsw,
            nodes: RwLock::new(Vec::new()),
            mapped: Mutex::new([0; MAX_LAYERS]),
            covered: AtomicU64::new(covered),
            dimension,
        };
        g.map_new_points();
        Ok(g)
    }

    pub(crate) fn len(&self) -> usize {
        self.hnsw.get_nb_point()
    }

    pub(crate) fn covered(&self) -> u64 {
        self.covered.load(Ordering::Acquire)
    }

    pub(crate) fn set_covered(&self, vid: u64) {
        self.covered.store(vid, Ordering::Release);
    }

    /// Inserts normalised vectors (all cores).
    pub(crate) fn insert(&self, items: &[(u64, &[f32])]) {
        let data: Vec<(&[f32], usize)> = items
            .iter()
            .filter(|(_, v)| v.len() == self.dimension)
            .map(|(vid, v)| (*v, *vid as usize))
            .collect();
        if data.len() > 1 {
            self.hnsw.parallel_insert_slice(&data);
        } else if let Some(one) = data.first() {
            self.hnsw.insert_slice(*one);
        }
        self.map_new_points();
    }

    fn map_new_points(&self) {
        let mut mapped = self.mapped.lock();
        let pi = self.hnsw.get_point_indexation();
        let mut fresh = Vec::new();
        for (layer, done) in mapped.iter_mut().enumerate() {
            let n = pi.get_layer_nb_point(layer);
            if n > *done {
                fresh.extend(pi.get_layer_iterator(layer).skip(*done));
                *done = n;
            }
        }
        if fresh.is_empty() {
            return;
        }
        let mut nodes = self.nodes.write();
        for p in fresh {
            let vid = p.get_origin_id();
            if nodes.len() <= vid {
                nodes.resize(vid + 1, None);
            }
            nodes[vid] = Some(p);
        }
    }

    /// The normalised vector of a node.
    pub(crate) fn node(&self, vid: u64) -> Option<Arc<Point<'static, f32>>> {
        self.nodes.read().get(vid as usize).cloned().flatten()
    }

    /// Calls `f` for every node (vid, vector).
    pub(crate) fn for_each_node(&self, mut f: impl FnMut(u64, &[f32])) {
        let nodes = self.nodes.read();
        for p in nodes.iter().flatten() {
            f(p.get_origin_id() as u64, p.get_v());
        }
    }

    /// The `knbn` nearest nodes passing `filter`, as (vid, cosine).
    pub(crate) fn search(
        &self,
        query: &[f32],
        knbn: usize,
        ef: usize,
        filter: Option<&dyn Fn(u64) -> bool>,
    ) -> Vec<(u64, f32)> {
        let wrapped = filter.map(|f| move |id: &usize| f(*id as u64));
        let dyn_filter: Option<&dyn FilterT> = wrapped.as_ref().map(|w| w as &dyn FilterT);
        let found = catch_unwind(AssertUnwindSafe(|| {
            self.hnsw.search_filter(query, knbn, ef, dyn_filter)
        }));
        match found {
            Ok(n) => n
                .into_iter()
                .filter(|n| filter.is_none_or(|f| f(n.d_id as u64)))
                .map(|n| (n.d_id as u64, distance_to_similarity(n.distance)))
                .collect(),
            Err(_) => {
                tracing::error!("hnsw_rs search panicked; falling back to no graph results");
                Vec::new()
            }
        }
    }

    /// Writes the graph as `{basename}.hnsw.graph` and `.hnsw.data` into `dir`; returns the
    /// basename used.
    pub(crate) fn dump(&self, dir: &Path) -> Result<String> {
        let res = catch_unwind(AssertUnwindSafe(|| self.hnsw.file_dump(dir, "graph")));
        match res {
            Ok(Ok(name)) => Ok(name),
            Ok(Err(e)) => Err(Error::unavailable(format!(
                "cannot write the graph into {}: {e}",
                dir.display()
            ))
            .with_backend(BACKEND)),
            Err(_) => Err(Error::unavailable(format!(
                "writing the graph into {} failed",
                dir.display()
            ))
            .with_backend(BACKEND)),
        }
    }
}
