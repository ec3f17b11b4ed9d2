//! One workspace's collection: a tantivy index (source of truth) and the HNSW graph derived
//! from it, plus the fresh tail of vectors the graph has not absorbed yet.
//!
//! Write path: validate → compare versions → one tantivy commit (the batch is durable and, once
//! the reader reloads, searchable) → the batch's vectors join the tail of a new snapshot. The
//! background indexer moves tail vectors into the graph and persists the graph with the `vid`
//! watermark it covers. Readers take a snapshot (searcher + live set + tail) and the graph;
//! vector search scans the tail exactly and merges it with the graph's results.

use std::collections::{BinaryHeap, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use chatvault_core::{
    CollectionSpec, ContentDelete, ContentDocument, ContentFilter, ContentVersion, Error,
    MessageKey, PageRequest, Result, ScoredKey, WorkspaceId, WriteOutcome,
};
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use serde::{Deserialize, Serialize};
use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term,
};

use crate::error::{io_err, tantivy_err, BACKEND};
use crate::filter::{self, SegmentKeys, SegmentLive, VidAddrCollector, VidCollector, VidSet};
use crate::graph::{self, Graph, GraphParams, NONE_COVERED};
use crate::lock::WriterLock;
use crate::markup;
use crate::read_only::ReadOnlyDirectory;
use crate::schema::{Fields, StoredEmbedding};
use crate::{SearchTuning, VectorStoreOptions};

const SPEC_FILE: &str = "collection.json";
const INDEX_DIR: &str = "tantivy";
const GRAPH_DIR: &str = "graph";
const GRAPH_META: &str = "current.json";

/// One table per segment of a snapshot, in segment order (see [`SegmentLive`]).
type SegmentTables = Arc<Vec<Arc<SegmentLive>>>;

/// What `collection.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SpecFile {
    pub(crate) workspace: String,
    pub(crate) dimension: usize,
    pub(crate) model_id: String,
    /// The index-text version its documents are indexed with (0: from before it was recorded).
    #[serde(default)]
    pub(crate) index_version: u32,
}

/// The tantivy commit payload.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CommitPayload {
    next_vid: u64,
}

/// What the graph directory's `current.json` records: which dump is current and which writes
/// it covers.
#[derive(Debug, Serialize, Deserialize)]
struct GraphMeta {
    dump_dir: String,
    basename: String,
    covered: u64,
    points: usize,
    opstamp: u64,
}

/// A committed batch's normalised vectors, not yet (known to be) in the graph.
#[derive(Debug)]
struct TailChunk {
    vids: Vec<u64>,
    data: Vec<f32>,
}

impl TailChunk {
    fn max_vid(&self) -> u64 {
        self.vids.last().copied().unwrap_or(0)
    }
    fn vector(&self, i: usize, dim: usize) -> &[f32] {
        &self.data[i * dim..(i + 1) * dim]
    }
}

/// What a reader sees: one tantivy commit and the vectors it needs that the graph may lack.
#[derive(Clone)]
struct Snapshot {
    searcher: Searcher,
    live: Arc<VidSet>,
    /// `vid` → the live document's address in `searcher` (segment << 32 | doc), or `u64::MAX`.
    addrs: Arc<Vec<u64>>,
    /// Each segment's keys, by segment ordinal.
    keys: Arc<Vec<Arc<SegmentKeys>>>,
    /// Each segment's non-tombstone documents, by segment ordinal (`live` is made from them).
    lives: Arc<Vec<Arc<SegmentLive>>>,
    tail: Vec<Arc<TailChunk>>,
    opstamp: u64,
}

#[derive(Debug, Default)]
struct IndexerSignal {
    pending: bool,
    shutdown: bool,
    /// Set when the graph changed since the last dump.
    dirty: bool,
}

/// What a reader last loaded, to notice the writer's new commits and graph dumps.
#[derive(Debug, Default)]
struct ReadWatch {
    /// `meta.json` of the tantivy commit the snapshot holds.
    meta: Option<FileSig>,
    /// The graph record (`current.json`) of the graph the reader holds.
    graph: Option<FileSig>,
    /// The tail holds every live vector with `floor < vid <= read_vid` (`None`: from the first
    /// vid) of the snapshot; `floor` is the graph's coverage when the tail was last trimmed.
    floor: Option<u64>,
    read_vid: Option<u64>,
    /// When the reader last looked for a newer commit.
    checked: Option<std::time::Instant>,
}

/// Identifies a version of a file that is replaced atomically (rename).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileSig {
    len: u64,
    modified: SystemTime,
}

fn file_sig(path: &Path) -> Option<FileSig> {
    let m = fs::metadata(path).ok()?;
    Some(FileSig {
        len: m.len(),
        modified: m.modified().ok()?,
    })
}

/// An open collection: the writer (holds the writer lock, runs the graph indexer) or a reader
/// (no lock, no writes; follows the writer's commits and graph dumps).
pub(crate) struct Collection {
    pub(crate) workspace: WorkspaceId,
    pub(crate) spec: CollectionSpec,
    dir: PathBuf,
    fields: Fields,
    index: Index,
    reader: IndexReader,
    /// `None` for a reader.
    writer: Option<Mutex<WriterState>>,
    state: RwLock<Snapshot>,
    graph: RwLock<Arc<Graph>>,
    /// Held while the graph is modified (indexer step, compaction, dump).
    graph_work: Mutex<()>,
    signal: Mutex<IndexerSignal>,
    wake: Condvar,
    progress: Condvar,
    indexer: Mutex<Option<JoinHandle<()>>>,
    options: VectorStoreOptions,
    /// `Some` for a reader.
    /// Per-segment matches of the most recent filters, newest last (see `filtered_vids`).
    filter_cache: Mutex<Vec<(String, SegmentTables)>>,
    watch: Option<Mutex<ReadWatch>>,
    _lock: Option<Arc<WriterLock>>,
}

struct WriterState {
    writer: IndexWriter,
    next_vid: u64,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("workspace", &self.workspace)
            .field("dir", &self.dir)
            .finish()
    }
}

fn ctx(e: Error, workspace: &WorkspaceId) -> Error {
    e.with_context("workspace", workspace)
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync of the directory).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| io_err(tmp.display(), e))?;
    f.write_all(bytes).map_err(|e| io_err(tmp.display(), e))?;
    f.sync_all().map_err(|e| io_err(tmp.display(), e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path.display(), e))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir.display(), e))
}

impl Collection {
    /// Creates the collection's directory and index (the spec file is written last: a directory
    /// without it is an interrupted creation and is replaced).
    pub(crate) fn create(
        dir: &Path,
        workspace: &WorkspaceId,
        spec: &CollectionSpec,
        options: &VectorStoreOptions,
        lock: Arc<WriterLock>,
    ) -> Result<Arc<Collection>> {
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(|e| io_err(dir.display(), e))?;
        }
        let index_dir = dir.join(INDEX_DIR);
        fs::create_dir_all(&index_dir).map_err(|e| io_err(index_dir.display(), e))?;
        fs::create_dir_all(dir.join(GRAPH_DIR)).map_err(|e| io_err(dir.display(), e))?;
        let fields = Fields::new();
        let mmap = MmapDirectory::open(&index_dir).map_err(|e| {
            Error::unavailable(format!("cannot open {}: {e}", index_dir.display()))
                .with_backend(BACKEND)
        })?;
        Index::create(
            mmap,
            fields.schema.clone(),
            tantivy::IndexSettings::default(),
        )
        .map_err(|e| ctx(tantivy_err(e), workspace))?;
        let spec_file = SpecFile {
            workspace: workspace.to_string(),
            dimension: spec.dimension,
            model_id: spec.model_id.clone(),
            index_version: 0,
        };
        let bytes = serde_json::to_vec_pretty(&spec_file)
            .map_err(|e| Error::backend_error(format!("spec: {e}")))?;
        write_atomic(&dir.join(SPEC_FILE), &bytes)?;
        Self::open(dir, workspace, spec.clone(), options, Some(lock))
    }

    /// Reads a collection's spec file, `None` if the directory holds no complete collection.
    pub(crate) fn read_spec(dir: &Path) -> Result<Option<SpecFile>> {
        let path = dir.join(SPEC_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::backend_error(format!("{} is corrupt: {e}", path.display()))
                    .with_backend(BACKEND)
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(path.display(), e)),
        }
    }

    /// Opens an existing collection: for writing with the workspace's writer `lock`, or, without
    /// one, as a reader.
    pub(crate) fn open(
        dir: &Path,
        workspace: &WorkspaceId,
        spec: CollectionSpec,
        options: &VectorStoreOptions,
        lock: Option<Arc<WriterLock>>,
    ) -> Result<Arc<Collection>> {
        let fields = Fields::new();
        let index_dir = dir.join(INDEX_DIR);
        // before the commit is opened: a commit landing meanwhile is then picked up next time
        let meta_sig = file_sig(&index_dir.join("meta.json"));
        let index = match &lock {
            Some(_) => Index::open_in_dir(&index_dir),
            None => MmapDirectory::open(&index_dir)
                .map_err(tantivy::TantivyError::from)
                .and_then(|d| Index::open(ReadOnlyDirectory::new(d))),
        }
        .map_err(|e| ctx(tantivy_err(e), workspace))?;
        index
            .tokenizers()
            .register(markup::ANALYZER, markup::analyzer());
        let writer: Option<IndexWriter> = match lock {
            Some(_) => Some(
                index
                    .writer_with_num_threads(1, options.writer_memory.max(15_000_000))
                    .map_err(|e| ctx(tantivy_err(e), workspace))?,
            ),
            None => None,
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| ctx(tantivy_err(e), workspace))?;
        let metas = index
            .load_metas()
            .map_err(|e| ctx(tantivy_err(e), workspace))?;
        let payload: CommitPayload = metas
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default();
        let searcher = reader.searcher();
        let all_vids = searcher
            .search(&tantivy::query::AllQuery, &VidCollector)
            .map_err(|e| ctx(tantivy_err(e), workspace))?;
        let next_vid = payload
            .next_vid
            .max(all_vids.iter().copied().max().map_or(0, |m| m + 1));
        let params = GraphParams {
            m: options.hnsw_m,
            ef_construction: options.ef_construction,
        };
        // the graph: the persisted dump if it is sound and not ahead of tantivy, else empty (a
        // reader may see a dump newer than the commit it opened: nodes it does not know yet
        // are dropped from results, so it takes any sound dump)
        let read_only = writer.is_none();
        let graph_sig = file_sig(&dir.join(GRAPH_DIR).join(GRAPH_META));
        let graph = Self::load_graph(dir, spec.dimension, (!read_only).then_some(next_vid))
            .unwrap_or_else(|e| {
                tracing::warn!(workspace = %workspace, error = %e, "rebuilding the graph from tantivy");
                None
            })
            .unwrap_or_else(|| Graph::new(params, spec.dimension));
        let lives =
            filter::segment_lives(&searcher, &[], fields.deleted).map_err(|e| ctx(e, workspace))?;
        let (live, addrs) = Self::live_set(&fields, workspace, &searcher, &lives)?;
        let keys = filter::segment_keys(&searcher, &[]).map_err(|e| ctx(e, workspace))?;
        let covered = graph.covered();
        let coll = Collection {
            workspace: workspace.clone(),
            spec,
            dir: dir.to_path_buf(),
            fields,
            index,
            reader,
            writer: writer.map(|writer| Mutex::new(WriterState { writer, next_vid })),
            state: RwLock::new(Snapshot {
                searcher: searcher.clone(),
                live: Arc::new(live),
                addrs: Arc::new(addrs),
                keys: Arc::new(keys),
                lives: Arc::new(lives),
                tail: Vec::new(),
                opstamp: metas.opstamp,
            }),
            graph: RwLock::new(Arc::new(graph)),
            graph_work: Mutex::new(()),
            signal: Mutex::new(IndexerSignal::default()),
            wake: Condvar::new(),
            progress: Condvar::new(),
            indexer: Mutex::new(None),
            options: options.clone(),
            filter_cache: Mutex::new(Vec::new()),
            watch: read_only.then(|| {
                Mutex::new(ReadWatch {
                    meta: meta_sig,
                    graph: graph_sig,
                    floor: (covered != NONE_COVERED).then_some(covered),
                    read_vid: None,
                    checked: Some(std::time::Instant::now()),
                })
            }),
            _lock: lock,
        };
        // catch up: live documents the graph does not cover form the tail
        let addrs = Arc::clone(&coll.state.read().addrs);
        let tail = coll.read_tail(&searcher, &addrs, covered)?;
        coll.state.write().tail = tail;
        if let Some(w) = &coll.watch {
            let max = coll.state.read().tail.iter().map(|c| c.max_vid()).max();
            w.lock().read_vid = max;
        }
        let coll = Arc::new(coll);
        if options.background_indexing && !read_only {
            let worker = Arc::clone(&coll);
            let handle = std::thread::Builder::new()
                .name(format!("chatvault-graph-{workspace}"))
                .spawn(move || worker.indexer_loop())
                .map_err(|e| io_err("spawning the graph indexer", e))?;
            *coll.indexer.lock() = Some(handle);
            coll.notify_indexer();
        }
        Ok(coll)
    }

    /// The persisted graph, if any. `next_vid`: the writer's, which the graph may not be ahead of.
    fn load_graph(dir: &Path, dimension: usize, next_vid: Option<u64>) -> Result<Option<Graph>> {
        let meta_path = dir.join(GRAPH_DIR).join(GRAPH_META);
        let bytes = match fs::read(&meta_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(meta_path.display(), e)),
        };
        let meta: GraphMeta = serde_json::from_slice(&bytes).map_err(|e| {
            Error::backend_error(format!("{} is corrupt: {e}", meta_path.display()))
        })?;
        if let Some(next_vid) = next_vid {
            if meta.covered != NONE_COVERED && meta.covered >= next_vid {
                return Err(Error::backend_error(format!(
                    "the graph covers writes up to {} but tantivy only has {next_vid}",
                    meta.covered
                )));
            }
        }
        let g = Graph::load(
            &dir.join(GRAPH_DIR).join(&meta.dump_dir),
            &meta.basename,
            dimension,
            meta.covered,
        )?;
        if g.len() != meta.points {
            return Err(Error::backend_error(format!(
                "the graph dump has {} points, its record says {}",
                g.len(),
                meta.points
            )));
        }
        Ok(Some(g))
    }

    /// Live documents with `vid > covered`, with their vectors, in `vid` order. `addrs` is the
    /// snapshot's vid → address table of `searcher` (see [`filter::live_set`]), so finding them
    /// costs nothing; each vector is then read from the document store without the rest of
    /// its document.
    fn read_tail(
        &self,
        searcher: &Searcher,
        addrs: &[u64],
        covered: u64,
    ) -> Result<Vec<Arc<TailChunk>>> {
        let from = if covered == NONE_COVERED {
            0
        } else {
            usize::try_from(covered).map_or(usize::MAX, |c| c.saturating_add(1))
        };
        let missing: Vec<(u64, DocAddress)> = addrs
            .get(from..)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter(|(_, &packed)| packed != u64::MAX)
            .map(|(i, &packed)| {
                let vid = (from + i) as u64;
                (vid, DocAddress::new((packed >> 32) as u32, packed as u32))
            })
            .collect();
        let dim = self.spec.dimension;
        let mut chunks = Vec::new();
        for part in missing.chunks(self.options.index_batch.max(1)) {
            let mut vids = Vec::with_capacity(part.len());
            let mut data = Vec::with_capacity(part.len() * dim);
            for (vid, addr) in part {
                let stored: StoredEmbedding =
                    searcher.doc(*addr).map_err(|e| self.err(tantivy_err(e)))?;
                let embedding = stored.vector().ok_or_else(|| {
                    self.err(Error::backend_error(format!(
                        "stored document of vid {vid} has no readable embedding"
                    )))
                })?;
                if embedding.len() != dim {
                    return Err(self.err(Error::backend_error(format!(
                        "stored embedding has {} dimensions, the collection {dim}",
                        embedding.len()
                    ))));
                }
                vids.push(*vid);
                data.extend(graph::normalize(&embedding));
            }
            chunks.push(Arc::new(TailChunk { vids, data }));
        }
        Ok(chunks)
    }

    /// The live `vid`s of a commit and where their documents are.
    /// The live set and addresses of `searcher` from its segments' tables. In debug builds it
    /// is checked against a query over the whole collection (what it replaces).
    fn live_set(
        fields: &Fields,
        workspace: &WorkspaceId,
        searcher: &Searcher,
        lives: &[Arc<SegmentLive>],
    ) -> Result<(VidSet, Vec<u64>)> {
        let (set, addrs) = filter::live_set(searcher, lives);
        if cfg!(debug_assertions) {
            let q = TermQuery::new(
                Term::from_field_bool(fields.deleted, false),
                IndexRecordOption::Basic,
            );
            let mut found = searcher
                .search(&q, &VidAddrCollector)
                .map_err(|e| ctx(tantivy_err(e), workspace))?;
            found.sort_by_key(|(v, _)| *v);
            let mut expected = vec![u64::MAX; found.last().map_or(0, |(v, _)| *v as usize + 1)];
            for (vid, a) in &found {
                expected[*vid as usize] = (u64::from(a.segment_ord) << 32) | u64::from(a.doc_id);
            }
            let mut got = addrs.clone();
            while got.last() == Some(&u64::MAX) {
                got.pop();
            }
            assert_eq!(set.len(), found.len(), "live set size of {workspace}");
            assert!(got == expected, "live set addresses of {workspace}");
        }
        Ok((set, addrs))
    }

    fn err(&self, e: Error) -> Error {
        ctx(e, &self.workspace)
    }

    /// The writer's state; `Unsupported` for a reader.
    fn writer(&self) -> Result<MutexGuard<'_, WriterState>> {
        self.ensure_writer()?;
        Ok(self.writer.as_ref().expect("checked: a writer").lock())
    }

    /// `Unsupported` for a reader.
    fn ensure_writer(&self) -> Result<()> {
        if self.writer.is_some() {
            return Ok(());
        }
        Err(self.err(
            Error::unsupported(
                "the content store is opened read-only: open it for writing (one writer per \
                 workspace) to change it",
            )
            .with_backend(BACKEND),
        ))
    }

    /// For a reader: picks up the writer's newer commit and graph dump, if any. Cheap when
    /// nothing changed (two `stat`s). The graph dump is loaded before the commit is opened; the
    /// tail then holds every live vector the loaded graph does not cover, so search results
    /// never depend on how far the writer's graph has caught up.
    fn refresh(&self) -> Result<()> {
        let Some(watch) = &self.watch else {
            return Ok(());
        };
        let mut w = watch.lock();
        let interval = self.options.reader_refresh_interval;
        if w.checked.is_some_and(|t| t.elapsed() < interval) {
            return Ok(());
        }
        w.checked = Some(std::time::Instant::now());
        let meta_sig = file_sig(&self.dir.join(INDEX_DIR).join("meta.json"));
        let graph_sig = file_sig(&self.dir.join(GRAPH_DIR).join(GRAPH_META));
        let commit_changed = w.meta != meta_sig;
        if !commit_changed && w.graph == graph_sig {
            return Ok(());
        }
        let lacking: usize = {
            let covered = self.graph.read().covered();
            self.state
                .read()
                .tail
                .iter()
                .flat_map(|c| c.vids.iter())
                .filter(|&&v| covered == NONE_COVERED || v > covered)
                .count()
        };
        // a newer dump is loaded only once the tail is worth it (see `reader_tail_limit`)
        let graph_due = w.graph != graph_sig && lacking >= self.options.reader_tail_limit;
        if !commit_changed && !graph_due {
            return Ok(());
        }
        if graph_due {
            match Self::load_graph(&self.dir, self.spec.dimension, None) {
                Ok(graph) => {
                    let graph = graph.unwrap_or_else(|| {
                        Graph::new(
                            GraphParams {
                                m: self.options.hnsw_m,
                                ef_construction: self.options.ef_construction,
                            },
                            self.spec.dimension,
                        )
                    });
                    *self.graph.write() = Arc::new(graph);
                    w.graph = graph_sig;
                }
                // The writer replaced the dump while we read it: keep ours, retry next time.
                Err(e) => {
                    tracing::debug!(workspace = %self.workspace, error = %e, "graph dump not reloaded")
                }
            }
        }
        if commit_changed {
            self.reload_reader()?;
            w.meta = meta_sig;
        }
        let covered = self.graph.read().covered();
        let snap = self.state.read().clone();
        let searcher = if commit_changed {
            self.reader.searcher()
        } else {
            snap.searcher.clone()
        };
        let (live, addrs, keys, lives) = if commit_changed {
            let lives = filter::segment_lives(&searcher, &snap.lives, self.fields.deleted)
                .map_err(|e| self.err(e))?;
            let (live, addrs) = Self::live_set(&self.fields, &self.workspace, &searcher, &lives)?;
            let keys = filter::segment_keys(&searcher, &snap.keys).map_err(|e| self.err(e))?;
            (
                Arc::new(live),
                Arc::new(addrs),
                Arc::new(keys),
                Arc::new(lives),
            )
        } else {
            (snap.live, snap.addrs, snap.keys, snap.lives)
        };
        // vids are given in increasing order, so "everything after vid v" is one range
        let graph_upto = (covered != NONE_COVERED).then_some(covered);
        let tail = if graph_upto < w.floor {
            // the graph covers less than the tail assumed (it was rebuilt): read the tail anew
            w.floor = graph_upto;
            w.read_vid = None;
            self.read_tail(&searcher, &addrs, covered)?
        } else {
            let mut tail: Vec<Arc<TailChunk>> = snap
                .tail
                .iter()
                .filter(|c| graph_upto.is_none_or(|g| c.max_vid() > g))
                .cloned()
                .collect();
            w.floor = graph_upto;
            let from = w.read_vid.max(w.floor).unwrap_or(NONE_COVERED);
            tail.extend(self.read_tail(&searcher, &addrs, from)?);
            tail
        };
        if let Some(max) = tail.iter().map(|c| c.max_vid()).max() {
            w.read_vid = w.read_vid.max(Some(max));
        }
        let opstamp = if commit_changed {
            self.index
                .load_metas()
                .map(|m| m.opstamp)
                .unwrap_or(snap.opstamp)
        } else {
            snap.opstamp
        };
        *self.state.write() = Snapshot {
            searcher,
            live,
            addrs,
            keys,
            lives,
            tail,
            opstamp,
        };
        Ok(())
    }

    /// Reloads the reader's commit. Without the meta lock (a read-only directory) the writer may
    /// delete a merged segment while it is opened: try again on the newer commit.
    fn reload_reader(&self) -> Result<()> {
        let mut attempt = 0;
        loop {
            match self.reader.reload() {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 5 => {
                    tracing::debug!(workspace = %self.workspace, error = %e, "reloading the commit again");
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(20 << attempt));
                }
                Err(e) => return Err(self.err(tantivy_err(e))),
            }
        }
    }

    fn notify_indexer(&self) {
        let mut s = self.signal.lock();
        s.pending = true;
        self.wake.notify_all();
    }

    /// Stops the indexer (persisting the graph if it changed) and waits for it.
    pub(crate) fn close(&self) {
        {
            let mut s = self.signal.lock();
            s.shutdown = true;
            self.wake.notify_all();
        }
        if let Some(h) = self.indexer.lock().take() {
            if h.join().is_err() {
                tracing::error!(workspace = %self.workspace, "the graph indexer panicked");
            }
        }
    }

    // ---------------------------------------------------------------- writes

    /// Validates documents: nothing is written unless all are valid.
    fn validate(&self, docs: &[ContentDocument]) -> Result<()> {
        for d in docs {
            d.key().ensure_workspace(&self.workspace)?;
            d.validate(self.spec.dimension)
                .map_err(|e| e.with_context("workspace", &self.workspace))?;
            if d.content.text.trim().is_empty() {
                return Err(Error::invalid_input("text is empty")
                    .with_context("key", d.key())
                    .with_context("workspace", &self.workspace));
            }
        }
        Ok(())
    }

    /// The stored (version, deleted) of a key.
    fn stored_version(&self, searcher: &Searcher, key: &MessageKey) -> Result<Option<u64>> {
        let term = Term::from_field_text(self.fields.key, &key.content_id());
        match filter::find_doc(searcher, &term)? {
            Some(addr) => filter::fast_u64(searcher, addr, "version"),
            None => Ok(None),
        }
    }

    pub(crate) fn upsert(&self, docs: &[ContentDocument]) -> Result<WriteOutcome> {
        self.validate(docs)?;
        // the same key twice: the higher version wins
        let mut best: HashMap<&MessageKey, &ContentDocument> = HashMap::new();
        for d in docs {
            let e = best.entry(d.key()).or_insert(d);
            if d.version > e.version {
                *e = d;
            }
        }
        let mut stale = (docs.len() - best.len()) as u64;
        let mut w = self.writer()?;
        let searcher = self.state.read().searcher.clone();
        let mut todo: Vec<&ContentDocument> = Vec::new();
        for d in docs {
            if !best.get(d.key()).is_some_and(|b| std::ptr::eq(*b, d)) {
                continue;
            }
            match self.stored_version(&searcher, d.key())? {
                Some(v) if v >= d.version => stale += 1,
                _ => todo.push(d),
            }
        }
        if todo.is_empty() {
            return Ok(WriteOutcome { applied: 0, stale });
        }
        let first_vid = w.next_vid;
        let dim = self.spec.dimension;
        let mut chunk = TailChunk {
            vids: Vec::with_capacity(todo.len()),
            data: Vec::with_capacity(todo.len() * dim),
        };
        let mut vid = first_vid;
        for d in &todo {
            w.writer.delete_term(Term::from_field_text(
                self.fields.key,
                &d.key().content_id(),
            ));
            let doc = self.fields.live_doc(d, vid);
            if let Err(e) = w.writer.add_document(doc) {
                let _ = w.writer.rollback();
                return Err(self.err(tantivy_err(e)).with_context("key", d.key()));
            }
            chunk.vids.push(vid);
            chunk.data.extend(graph::normalize(&d.embedding));
            vid += 1;
        }
        self.commit(&mut w, vid, Some(chunk))?;
        Ok(WriteOutcome {
            applied: todo.len() as u64,
            stale,
        })
    }

    pub(crate) fn delete(&self, deletes: &[ContentDelete]) -> Result<WriteOutcome> {
        for d in deletes {
            d.key.ensure_workspace(&self.workspace)?;
        }
        let mut best: HashMap<&MessageKey, u64> = HashMap::new();
        for d in deletes {
            let e = best.entry(&d.key).or_insert(d.version);
            *e = (*e).max(d.version);
        }
        let mut stale = (deletes.len() - best.len()) as u64;
        let mut w = self.writer()?;
        let searcher = self.state.read().searcher.clone();
        let mut todo = Vec::new();
        let mut keys: Vec<_> = best.into_iter().collect();
        keys.sort();
        for (key, version) in keys {
            match self.stored_version(&searcher, key)? {
                Some(v) if v >= version => stale += 1,
                _ => todo.push((key, version)),
            }
        }
        if todo.is_empty() {
            return Ok(WriteOutcome { applied: 0, stale });
        }
        let mut vid = w.next_vid;
        for (key, version) in &todo {
            w.writer
                .delete_term(Term::from_field_text(self.fields.key, &key.content_id()));
            let doc = self.fields.tombstone(key, *version, vid);
            if let Err(e) = w.writer.add_document(doc) {
                let _ = w.writer.rollback();
                return Err(self.err(tantivy_err(e)).with_context("key", key));
            }
            vid += 1;
        }
        self.commit(&mut w, vid, None)?;
        Ok(WriteOutcome {
            applied: todo.len() as u64,
            stale,
        })
    }

    /// Commits what the writer holds and publishes a snapshot with `chunk` in its tail.
    fn commit(&self, w: &mut WriterState, next_vid: u64, chunk: Option<TailChunk>) -> Result<()> {
        let payload = serde_json::to_string(&CommitPayload { next_vid })
            .map_err(|e| Error::backend_error(format!("commit payload: {e}")))?;
        let committed = (|| {
            let mut prepared = w.writer.prepare_commit()?;
            prepared.set_payload(&payload);
            prepared.commit()
        })();
        let opstamp = match committed {
            Ok(o) => o,
            Err(e) => {
                let _ = w.writer.rollback();
                return Err(self.err(tantivy_err(e)));
            }
        };
        w.next_vid = next_vid;
        // durable from here on; a failure below only delays visibility until the next reload
        self.reader.reload().map_err(|e| self.err(tantivy_err(e)))?;
        let searcher = self.reader.searcher();
        let (previous, previous_lives) = {
            let st = self.state.read();
            (Arc::clone(&st.keys), Arc::clone(&st.lives))
        };
        let lives = filter::segment_lives(&searcher, &previous_lives, self.fields.deleted)
            .map_err(|e| self.err(e))?;
        let (live, addrs) = Self::live_set(&self.fields, &self.workspace, &searcher, &lives)?;
        let keys = filter::segment_keys(&searcher, &previous).map_err(|e| self.err(e))?;
        {
            let covered = self.graph.read().covered();
            let mut st = self.state.write();
            let mut tail: Vec<Arc<TailChunk>> = st
                .tail
                .iter()
                .filter(|c| covered == NONE_COVERED || c.max_vid() > covered)
                .cloned()
                .collect();
            if let Some(c) = chunk {
                tail.push(Arc::new(c));
            }
            *st = Snapshot {
                searcher,
                live: Arc::new(live),
                addrs: Arc::new(addrs),
                keys: Arc::new(keys),
                lives: Arc::new(lives),
                tail,
                opstamp,
            };
        }
        self.notify_indexer();
        Ok(())
    }

    // ---------------------------------------------------------------- reads

    /// The live documents of `keys`, in the order of `keys`. One term-set query finds them all
    /// (instead of a dictionary lookup per key and segment), and they are read in address
    /// order, so documents stored together are decompressed together.
    pub(crate) fn get(&self, keys: &[MessageKey]) -> Result<Vec<ContentDocument>> {
        for k in keys {
            k.ensure_workspace(&self.workspace)?;
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.refresh()?;
        let searcher = self.state.read().searcher.clone();
        let q = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_bool(self.fields.deleted, false),
                    IndexRecordOption::Basic,
                )) as Box<dyn Query>,
            ),
            (
                Occur::Must,
                Box::new(tantivy::query::TermSetQuery::new(keys.iter().map(|k| {
                    Term::from_field_text(self.fields.key, &k.content_id())
                }))),
            ),
        ]);
        let mut addrs: Vec<DocAddress> = searcher
            .search(&q, &DocSetCollector)
            .map_err(|e| self.err(tantivy_err(e)))?
            .into_iter()
            .collect();
        addrs.sort_unstable();
        let mut found: HashMap<MessageKey, ContentDocument> = HashMap::with_capacity(addrs.len());
        for addr in addrs {
            let doc: TantivyDocument = searcher.doc(addr).map_err(|e| self.err(tantivy_err(e)))?;
            let d = self.fields.to_content(&self.workspace, &doc)?;
            found.insert(d.key().clone(), d);
        }
        Ok(keys.iter().filter_map(|k| found.get(k).cloned()).collect())
    }

    /// The index-text version recorded in the spec file.
    pub(crate) fn index_version(&self) -> Result<u32> {
        Ok(Self::read_spec(&self.dir)?.map_or(0, |s| s.index_version))
    }

    /// Records the index-text version in the spec file (atomically replaced). Writers only.
    pub(crate) fn set_index_version(&self, version: u32) -> Result<()> {
        if self.writer.is_none() {
            return Err(Error::unsupported(
                "the content store is opened read-only: it cannot record an index version",
            )
            .with_context("workspace", &self.workspace)
            .with_backend(BACKEND));
        }
        let mut spec = Self::read_spec(&self.dir)?.ok_or_else(|| {
            Error::not_found("the collection's spec file is gone")
                .with_context("workspace", &self.workspace)
                .with_backend(BACKEND)
        })?;
        spec.index_version = version;
        let bytes = serde_json::to_vec_pretty(&spec)
            .map_err(|e| Error::backend_error(format!("spec: {e}")))?;
        write_atomic(&self.dir.join(SPEC_FILE), &bytes)
    }

    pub(crate) fn documents(&self) -> Result<u64> {
        self.refresh()?;
        Ok(self.state.read().live.len() as u64)
    }

    /// The vids of the live documents passing `filter`. In debug builds the result is checked
    /// against the filter run over the whole collection.
    fn filtered_vids(&self, searcher: &Searcher, filter: &ContentFilter) -> Result<VidSet> {
        let q = filter::filter_query(&self.fields, &self.workspace, filter)?;
        let set = match self.filter_tables(searcher, filter, &*q)? {
            Some(lists) => filter::alive_vids(searcher, &lists),
            None => {
                let vids = searcher
                    .search(&*q, &VidCollector)
                    .map_err(|e| self.err(tantivy_err(e)))?;
                VidSet::from_vids(&vids)
            }
        };
        if cfg!(debug_assertions) {
            let vids = searcher
                .search(&*q, &VidCollector)
                .map_err(|e| self.err(tantivy_err(e)))?;
            let expected = VidSet::from_vids(&vids);
            assert_eq!(
                set.len(),
                expected.len(),
                "filtered set size of {}",
                self.workspace
            );
            assert!(
                vids.iter().all(|&v| set.contains(v)),
                "filtered set of {}",
                self.workspace
            );
        }
        Ok(set)
    }

    /// The documents passing `filter` (whose query is `q`), one table per segment of
    /// `searcher`, from tables kept for the most recent filters (a viewer's channel list repeats
    /// on every search): a search pays for its new segments only. `None` for allow-lists of
    /// keys, which differ from search to search and are not kept.
    fn filter_tables(
        &self,
        searcher: &Searcher,
        filter: &ContentFilter,
        q: &dyn Query,
    ) -> Result<Option<SegmentTables>> {
        const KEPT_FILTERS: usize = 16;
        if filter.keys.is_some() {
            return Ok(None);
        }
        let cache_key = format!("{filter:?}");
        let previous = {
            let cache = self.filter_cache.lock();
            cache
                .iter()
                .find(|(f, _)| f == &cache_key)
                .map(|(_, l)| Arc::clone(l))
                .unwrap_or_default()
        };
        let lists =
            Arc::new(filter::segment_matches(searcher, q, &previous).map_err(|e| self.err(e))?);
        let mut cache = self.filter_cache.lock();
        cache.retain(|(f, _)| f != &cache_key);
        if cache.len() >= KEPT_FILTERS {
            cache.remove(0);
        }
        cache.push((cache_key, Arc::clone(&lists)));
        Ok(Some(lists))
    }

    /// Keys of graph ids, for the final ranking.
    fn keys_of(&self, snap: &Snapshot, vids: &[u64]) -> Result<Vec<Option<MessageKey>>> {
        vids.iter()
            .map(|&vid| {
                let packed = snap.addrs.get(vid as usize).copied().unwrap_or(u64::MAX);
                if packed == u64::MAX {
                    return Ok(None);
                }
                self.key_at(snap, (packed >> 32) as u32, packed as u32)
            })
            .collect()
    }

    /// The key of document `doc` of segment `segment` in `snap` (`None`: it has none).
    fn key_at(&self, snap: &Snapshot, segment: u32, doc: u32) -> Result<Option<MessageKey>> {
        match snap.keys.get(segment as usize).and_then(|k| k.key(doc)) {
            Some(id) => MessageKey::from_content_id(&self.workspace, id).map(Some),
            None => Ok(None),
        }
    }

    /// Sorts by descending score then key and keeps `k`.
    fn rank(mut hits: Vec<ScoredKey>, k: usize) -> Vec<ScoredKey> {
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key)));
        hits.truncate(k);
        hits
    }

    pub(crate) fn search_vector(
        &self,
        query: &[f32],
        k: usize,
        filter: &ContentFilter,
        tuning: &SearchTuning,
    ) -> Result<Vec<ScoredKey>> {
        if query.len() != self.spec.dimension {
            return Err(self.err(Error::invalid_input(format!(
                "query vector has {} dimensions, the collection has {}",
                query.len(),
                self.spec.dimension
            ))));
        }
        if let Some(i) = query.iter().position(|v| !v.is_finite()) {
            return Err(self.err(Error::invalid_input(format!(
                "query vector value {i} is not finite"
            ))));
        }
        if k == 0 {
            return Ok(Vec::new());
        }
        self.refresh()?;
        // the snapshot first: a graph view taken after it covers every tail chunk it lacks
        let snap = self.state.read().clone();
        let view = self.graph.read().view();
        let allowed: Arc<VidSet> = if filter.is_empty() {
            Arc::clone(&snap.live)
        } else {
            Arc::new(self.filtered_vids(&snap.searcher, filter)?)
        };
        if allowed.len() == 0 {
            return Ok(Vec::new());
        }
        let q = graph::normalize(query);
        let dim = self.spec.dimension;
        // tail vectors the graph view lacks, then the graph's: each vid from one source only
        let mut top = TopK::new(k);
        let mut tail_only = 0usize;
        for chunk in &snap.tail {
            for (i, &vid) in chunk.vids.iter().enumerate() {
                if allowed.contains(vid) && !view.contains(vid) {
                    tail_only += 1;
                    top.push(graph::similarity(&q, chunk.vector(i, dim)), vid);
                }
            }
        }
        let in_graph = allowed.len().saturating_sub(tail_only);
        if in_graph > 0 && view.len() > 0 {
            let threshold = tuning
                .exact_scan_threshold
                .unwrap_or(self.options.exact_scan_threshold);
            let few_for_size = tuning.exact_scan_threshold.is_none()
                && (in_graph as f64)
                    <= self.options.exact_scan_sqrt_factor * (view.len() as f64).sqrt();
            if in_graph <= threshold || few_for_size {
                for vid in allowed.iter() {
                    if let Some(v) = view.vector(vid) {
                        top.push(graph::similarity(&q, v), vid);
                    }
                }
            } else {
                let selectivity = in_graph as f64 / view.len().max(1) as f64;
                let ef = self.effective_ef(k, selectivity, tuning.ef_search, view.len());
                // without dead nodes and without a filter, the walk needs no filter
                let unfiltered = filter.is_empty() && in_graph == view.len();
                let allowed_ref = &allowed;
                let f = move |vid: u64| allowed_ref.contains(vid);
                let filt: Option<&dyn Fn(u64) -> bool> = if unfiltered { None } else { Some(&f) };
                for (vid, sim) in view.search(&q, ef, ef, filt) {
                    if allowed.contains(vid) {
                        top.push(sim, vid);
                    }
                }
            }
        }
        self.finish(&snap, top.into_vec(), k)
    }

    /// `ef` for a graph search keeping `selectivity` of the graph: a filtered walk holds only
    /// matching nodes in its result list, so `ef` grows as the filter tightens.
    fn effective_ef(&self, k: usize, selectivity: f64, ef: Option<usize>, n: usize) -> usize {
        // the configured ef holds up to 100k nodes; larger graphs need a wider search for the
        // same recall (measured: ef 64 gives recall@10 0.9995 at 100k but 0.876 at 1M, where
        // ef 160 reaches 0.95), so the default grows with (n / 100k)^0.4
        let scaled = || {
            let growth = (n as f64 / 100_000.0).max(1.0).powf(0.4);
            (self.options.ef_search as f64 * growth).ceil() as usize
        };
        let base = ef.unwrap_or_else(scaled).max(k);
        let factor = if selectivity >= 0.3 {
            1.0
        } else {
            (0.3 / selectivity.max(1e-6)).sqrt().min(4.0)
        };
        (base as f64 * factor).ceil() as usize
    }

    /// Keys and final ranking of the candidates [`TopK`] kept.
    fn finish(&self, snap: &Snapshot, found: Vec<(f32, u64)>, k: usize) -> Result<Vec<ScoredKey>> {
        let vids: Vec<u64> = found.iter().map(|(_, v)| *v).collect();
        let keys = self.keys_of(snap, &vids)?;
        let hits = found
            .iter()
            .zip(keys)
            .filter_map(|((s, _), key)| key.map(|key| ScoredKey { key, score: *s }))
            .collect();
        Ok(Self::rank(hits, k))
    }

    pub(crate) fn search_lexical(
        &self,
        query: &str,
        k: usize,
        filter: &ContentFilter,
    ) -> Result<Vec<ScoredKey>> {
        let mut analyzer = markup::analyzer();
        let normalized = markup::normalize(query);
        let mut stream = analyzer.token_stream(&normalized);
        let mut words: Vec<String> = Vec::new();
        while stream.advance() {
            let t = stream.token().text.clone();
            if !words.contains(&t) {
                words.push(t);
            }
        }
        if words.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let text_q = BooleanQuery::new(
            words
                .iter()
                .map(|w| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_text(self.fields.body, w),
                        IndexRecordOption::WithFreqs,
                    ));
                    (Occur::Should, q)
                })
                .collect(),
        );
        self.refresh()?;
        let snap = self.state.read().clone();
        let filter_q = filter::filter_query(&self.fields, &self.workspace, filter)?;
        // Without a filter the tombstone term alone is cheaper than walking a table.
        let filter_q: Box<dyn Query> = if filter.is_empty() {
            filter_q
        } else {
            match self.filter_tables(&snap.searcher, filter, &*filter_q)? {
                Some(lists) => Box::new(filter::KnownMatches::new(lists)),
                None => filter_q,
            }
        };
        let q = BooleanQuery::new(vec![
            (Occur::Must, Box::new(text_q) as Box<dyn Query>),
            (Occur::Must, Box::new(ConstScoreQuery::new(filter_q, 0.0))),
        ]);
        let limit = k.saturating_mul(2).saturating_add(16);
        let top = snap
            .searcher
            .search(&q, &TopDocs::with_limit(limit))
            .map_err(|e| self.err(tantivy_err(e)))?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            if let Some(key) = self.key_at(&snap, addr.segment_ord, addr.doc_id)? {
                hits.push(ScoredKey { key, score });
            }
        }
        Ok(Self::rank(hits, k))
    }

    pub(crate) fn list_versions(&self, page: &PageRequest) -> Result<Vec<ContentVersion>> {
        if let Some(after) = &page.after {
            after.ensure_workspace(&self.workspace)?;
        }
        self.refresh()?;
        let searcher = self.state.read().searcher.clone();
        let live_q = TermQuery::new(
            Term::from_field_bool(self.fields.deleted, false),
            IndexRecordOption::Basic,
        );
        let addrs = searcher
            .search(&live_q, &DocSetCollector)
            .map_err(|e| self.err(tantivy_err(e)))?;
        let mut by_segment: HashMap<u32, Vec<u32>> = HashMap::new();
        for a in addrs {
            by_segment.entry(a.segment_ord).or_default().push(a.doc_id);
        }
        let mut keyed = Vec::new();
        let mut id = String::new();
        for (seg_ord, docs) in by_segment {
            let seg = searcher.segment_reader(seg_ord);
            let Some(col) = seg
                .fast_fields()
                .str("key")
                .map_err(|e| self.err(tantivy_err(e)))?
            else {
                continue;
            };
            for doc in docs {
                let Some(ord) = col.term_ords(doc).next() else {
                    continue;
                };
                id.clear();
                col.ord_to_str(ord, &mut id)
                    .map_err(|e| self.err(tantivy_err(e.into())))?;
                let key = MessageKey::from_content_id(&self.workspace, &id)?;
                if page.after.as_ref().is_none_or(|a| &key > a) {
                    keyed.push((key, DocAddress::new(seg_ord, doc)));
                }
            }
        }
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        keyed.truncate(page.limit);
        keyed
            .into_iter()
            .map(|(key, addr)| {
                let doc: TantivyDocument =
                    searcher.doc(addr).map_err(|e| self.err(tantivy_err(e)))?;
                let version = doc
                    .get_first(self.fields.version)
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0);
                let content_hash = doc
                    .get_first(self.fields.content_hash)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string();
                Ok(ContentVersion {
                    key,
                    version,
                    content_hash,
                })
            })
            .collect()
    }

    // ---------------------------------------------------------------- the graph

    /// How many committed vectors wait for the graph.
    pub(crate) fn tail_len(&self) -> Result<usize> {
        self.refresh()?;
        let covered = self.graph.read().covered();
        Ok(self
            .state
            .read()
            .tail
            .iter()
            .filter(|c| covered == NONE_COVERED || c.max_vid() > covered)
            .map(|c| c.vids.len())
            .sum())
    }

    /// Blocks until every committed vector is in the graph (or `timeout` passes).
    pub(crate) fn wait_for_graph(&self, timeout: Duration) -> Result<()> {
        self.ensure_writer()?;
        let deadline = std::time::Instant::now() + timeout;
        if !self.options.background_indexing {
            while self.index_step()? {}
            return Ok(());
        }
        self.notify_indexer();
        loop {
            if self.tail_len()? == 0 {
                return Ok(());
            }
            let mut s = self.signal.lock();
            if s.shutdown {
                return Err(self.err(Error::unavailable("the collection is closing")));
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(self.err(Error::unavailable(format!(
                    "the graph did not catch up within {timeout:?}"
                ))));
            }
            self.progress
                .wait_for(&mut s, (deadline - now).min(Duration::from_millis(50)));
        }
    }

    /// Waits for the graph and writes it to disk.
    pub(crate) fn flush_graph(&self, timeout: Duration) -> Result<()> {
        self.wait_for_graph(timeout)?;
        self.persist_graph()
    }

    /// Moves one batch of the tail into the graph; false when there was nothing to do.
    fn index_step(&self) -> Result<bool> {
        let _work = self.graph_work.lock();
        let graph = Arc::clone(&*self.graph.read());
        let covered = graph.covered();
        let chunks: Vec<Arc<TailChunk>> = {
            let st = self.state.read();
            let mut taken = Vec::new();
            let mut n = 0;
            for c in st.tail.iter() {
                if covered != NONE_COVERED && c.max_vid() <= covered {
                    continue;
                }
                if n > 0 && n + c.vids.len() > self.options.index_batch {
                    break;
                }
                n += c.vids.len();
                taken.push(Arc::clone(c));
            }
            taken
        };
        let Some(last) = chunks.last() else {
            return Ok(false);
        };
        let dim = self.spec.dimension;
        let live = Arc::clone(&self.state.read().live);
        let items: Vec<(u64, &[f32])> = chunks
            .iter()
            .flat_map(|c| {
                c.vids
                    .iter()
                    .enumerate()
                    .filter(|(_, vid)| covered == NONE_COVERED || **vid > covered)
                    // a write already replaced or deleted never needs a node (every vid taken
                    // here was committed at or before `live`)
                    .filter(|(_, vid)| live.contains(**vid))
                    .map(move |(i, vid)| (*vid, c.vector(i, dim)))
            })
            .collect();
        graph.insert(&items);
        graph.set_covered(last.max_vid());
        {
            let mut st = self.state.write();
            let cov = last.max_vid();
            st.tail.retain(|c| c.max_vid() > cov);
        }
        self.signal.lock().dirty = true;
        self.progress.notify_all();
        Ok(true)
    }

    fn indexer_loop(self: Arc<Self>) {
        loop {
            {
                let mut s = self.signal.lock();
                while !s.pending && !s.shutdown {
                    self.wake.wait(&mut s);
                }
                if s.shutdown {
                    break;
                }
                s.pending = false;
            }
            let mut since_dump = 0usize;
            loop {
                if self.signal.lock().shutdown {
                    break;
                }
                let before = self.graph.read().len();
                match self.index_step() {
                    Ok(true) => {
                        since_dump += self.graph.read().len().saturating_sub(before);
                        let size = self.graph.read().len();
                        if since_dump >= self.options.persist_every.max(size / 4) {
                            if let Err(e) = self.persist_graph() {
                                tracing::warn!(workspace = %self.workspace, error = %e, "graph not persisted");
                            }
                            since_dump = 0;
                        }
                    }
                    Ok(false) => break,
                    Err(e) => {
                        tracing::error!(workspace = %self.workspace, error = %e, "graph indexing failed");
                        break;
                    }
                }
            }
            if let Err(e) = self.maybe_compact() {
                tracing::warn!(workspace = %self.workspace, error = %e, "graph compaction failed");
            }
            self.progress.notify_all();
        }
        if self.signal.lock().dirty {
            if let Err(e) = self.persist_graph() {
                tracing::warn!(workspace = %self.workspace, error = %e, "graph not persisted at close");
            }
        }
        self.progress.notify_all();
    }

    /// Dead nodes in the graph (replaced or deleted writes).
    fn dead_nodes(&self) -> usize {
        let view = self.graph.read().view();
        let live = Arc::clone(&self.state.read().live);
        let live_in_graph = view.iter().filter(|(vid, _)| live.contains(*vid)).count();
        view.len().saturating_sub(live_in_graph)
    }

    fn maybe_compact(&self) -> Result<()> {
        let len = self.graph.read().len();
        if len < 1000 {
            return Ok(());
        }
        let dead = self.dead_nodes();
        if dead as f64 > self.options.compaction_threshold * len as f64 {
            self.compact_graph()?;
        }
        Ok(())
    }

    /// Rebuilds the graph from its live nodes, then persists it.
    fn compact_graph(&self) -> Result<()> {
        let _work = self.graph_work.lock();
        let old = Arc::clone(&*self.graph.read());
        let live = Arc::clone(&self.state.read().live);
        let view = old.view();
        let items: Vec<(u64, &[f32])> =
            view.iter().filter(|(vid, _)| live.contains(*vid)).collect();
        let params = GraphParams {
            m: self.options.hnsw_m,
            ef_construction: self.options.ef_construction,
        };
        let fresh = Graph::new(params, self.spec.dimension);
        fresh.insert(&items);
        fresh.set_covered(old.covered());
        drop(items);
        drop(view);
        *self.graph.write() = Arc::new(fresh);
        self.signal.lock().dirty = true;
        drop(_work);
        self.persist_graph()
    }

    /// Rebuilds the graph without dead nodes and merges tantivy's segments so deleted
    /// documents leave the disk.
    pub(crate) fn compact(&self) -> Result<()> {
        self.wait_for_graph(Duration::from_secs(3600))?;
        self.compact_graph()?;
        let mut w = self.writer()?;
        let ids = self
            .index
            .searchable_segment_ids()
            .map_err(|e| self.err(tantivy_err(e)))?;
        if ids.len() > 1
            || self
                .state
                .read()
                .searcher
                .segment_readers()
                .iter()
                .any(|s| s.has_deletes())
        {
            w.writer
                .merge(&ids)
                .wait()
                .map_err(|e| self.err(tantivy_err(e)))?;
        }
        let next_vid = w.next_vid;
        self.commit(&mut w, next_vid, None)?;
        w.writer
            .garbage_collect_files()
            .wait()
            .map_err(|e| self.err(tantivy_err(e)))?;
        Ok(())
    }

    /// Writes the graph dump and points `current.json` at it; older dumps are removed.
    pub(crate) fn persist_graph(&self) -> Result<()> {
        self.ensure_writer()?;
        let _work = self.graph_work.lock();
        let graph = Arc::clone(&*self.graph.read());
        let opstamp = self.state.read().opstamp;
        let gdir = self.dir.join(GRAPH_DIR);
        self.signal.lock().dirty = false;
        if graph.len() == 0 {
            // nothing to load: an absent record means "rebuild from tantivy", which is empty work
            let meta = gdir.join(GRAPH_META);
            if meta.exists() {
                fs::remove_file(&meta).map_err(|e| io_err(meta.display(), e))?;
            }
            return Ok(());
        }
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tmp = gdir.join(format!("tmp-{nonce}"));
        fs::create_dir_all(&tmp).map_err(|e| io_err(tmp.display(), e))?;
        let basename = graph.dump(&tmp)?;
        for entry in fs::read_dir(&tmp).map_err(|e| io_err(tmp.display(), e))? {
            let path = entry.map_err(|e| io_err(tmp.display(), e))?.path();
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| io_err(path.display(), e))?;
        }
        sync_dir(&tmp)?;
        let name = format!("dump-{nonce}");
        let fin = gdir.join(&name);
        fs::rename(&tmp, &fin).map_err(|e| io_err(fin.display(), e))?;
        sync_dir(&gdir)?;
        let meta = GraphMeta {
            dump_dir: name.clone(),
            basename,
            covered: graph.covered(),
            points: graph.len(),
            opstamp,
        };
        let bytes = serde_json::to_vec_pretty(&meta)
            .map_err(|e| Error::backend_error(format!("graph record: {e}")))?;
        write_atomic(&gdir.join(GRAPH_META), &bytes)?;
        for entry in fs::read_dir(&gdir).map_err(|e| io_err(gdir.display(), e))? {
            let entry = entry.map_err(|e| io_err(gdir.display(), e))?;
            let n = entry.file_name().to_string_lossy().to_string();
            if (n.starts_with("dump-") || n.starts_with("tmp-")) && n != name {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    /// Bytes on disk under the collection's directory.
    pub(crate) fn disk_usage(&self) -> u64 {
        dir_size(&self.dir)
    }
}

pub(crate) fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
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

/// The best `k` (similarity, vid) candidates, plus every candidate tied with the `k`-th, so that
/// ties break by key in the final ranking. Memory stays bounded by `k` (and the ties).
struct TopK {
    k: usize,
    heap: BinaryHeap<std::cmp::Reverse<(OrdF32, u64)>>,
    /// Candidates out of the heap whose similarity equalled the heap's minimum when they left.
    ties: Vec<(f32, u64)>,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
            ties: Vec::new(),
        }
    }

    fn min(&self) -> f32 {
        self.heap.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0 .0)
    }

    #[inline]
    fn push(&mut self, s: f32, vid: u64) {
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse((OrdF32(s), vid)));
            return;
        }
        let min = self.min();
        if s > min {
            self.heap.push(std::cmp::Reverse((OrdF32(s), vid)));
            if let Some(std::cmp::Reverse((OrdF32(out), out_vid))) = self.heap.pop() {
                if out.total_cmp(&self.min()).is_eq() {
                    self.ties.push((out, out_vid));
                }
            }
            if self.ties.len() > 4 * self.k + 64 {
                let min = self.min();
                self.ties.retain(|(t, _)| *t >= min);
            }
        } else if s.total_cmp(&min).is_eq() {
            self.ties.push((s, vid));
        }
    }

    fn into_vec(self) -> Vec<(f32, u64)> {
        let kth = if self.heap.len() >= self.k {
            self.min()
        } else {
            f32::NEG_INFINITY
        };
        let mut out: Vec<(f32, u64)> = self.heap.into_iter().map(|r| (r.0 .0 .0, r.0 .1)).collect();
        out.extend(self.ties.into_iter().filter(|(t, _)| *t >= kth));
        out
    }
}
