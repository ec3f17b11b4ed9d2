//! [`VectorStore`]: the collections under one root directory, as a [`ContentStore`].

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chatvault_core::{
    CollectionInfo, CollectionSpec, ContentDelete, ContentDocument, ContentStore, ContentVersion,
    Error, MessageKey, PageRequest, Result, ScoredKey, SearchOptions, WorkspaceId, WriteOutcome,
};
use parking_lot::Mutex;

use crate::collection::{dir_size, Collection};
use crate::error::{io_err, BACKEND};
use crate::lock::{WriterInfo, WriterLock};

/// Tuning of a [`VectorStore`]. `Default` suits collections of up to a few million messages.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorStoreOptions {
    /// hnsw `M`: links per node (layer 0 keeps `2·M`). More links, better recall, more memory.
    pub hnsw_m: usize,
    /// hnsw `ef_construction`: the breadth of the search that links a new node.
    pub ef_construction: usize,
    /// hnsw `ef` of unfiltered searches over up to 100k vectors; larger graphs search wider,
    /// by `(n / 100k)^0.4` (1M: × 2.5), to keep recall (raised too for `k > ef` and for
    /// selective filters). [`SearchTuning::ef_search`] sets it exactly for one search.
    pub ef_search: usize,
    /// When a search's filter leaves at most this many candidates in the graph, they are scanned
    /// exactly instead of walking the graph. Measured at 100k × 384-d, one thread: exact scans of
    /// 1,000 / 2,000 / 5,000 candidates answer 2,285 / 1,790 / 417 queries per CPU-second when
    /// the same filter repeats (the drop at 5,000: their 7.5 MB of vectors no longer stay in the
    /// CPU cache between queries).
    pub exact_scan_threshold: usize,
    /// Filtered searches also scan exactly when the candidates are at most this factor times
    /// the square root of the graph's size. A filtered walk keeps only matching nodes in its
    /// result list, so it crosses much of the graph when few nodes match, while an exact scan
    /// reads every candidate's vector (memory-bound: about 200 ns per 384-d vector out of RAM);
    /// the walk's cost grows with 1 / selectivity and the scan's with the candidates, so they
    /// break even near a fixed multiple of √n candidates. Measured (384-d Gaussian mixture, one
    /// thread, queries per CPU-second, exact scan vs walk): at 20k, 1,923 vs 1,927 at 30 % (6,000
    /// candidates, 42·√n); at 100k, 218 vs 163 and 224 vs 209 at 20 % (20,000, 63·√n), 188 vs
    /// 308 at 30 %; at 1M, 81 vs 71 at 5 % (50,000, 50·√n) and 49 vs 153 at 10 %. The default
    /// 50 switches at 7,100 / 15,800 / 50,000 candidates for 20k / 100k / 1M vectors. Ignored
    /// when a search sets [`SearchTuning::exact_scan_threshold`].
    pub exact_scan_sqrt_factor: f64,
    /// When more than this fraction of the graph's nodes are dead (replaced or deleted), the
    /// graph is rebuilt from the live ones.
    pub compaction_threshold: f64,
    /// tantivy's indexing memory budget in bytes (at least 15 MB).
    pub writer_memory: usize,
    /// How many tail vectors the background indexer adds to the graph at once.
    pub index_batch: usize,
    /// The graph is written to disk after this many new nodes (or a quarter of the graph,
    /// whichever is more), and when the collection closes.
    pub persist_every: usize,
    /// Index the graph in a background thread. When `false`, vectors join the graph only in
    /// [`VectorStore::wait_for_graph`] (searches stay exact over the tail meanwhile).
    pub background_indexing: bool,
    /// Open as a reader: no writer lock is taken, nothing is written (writes return
    /// `Unsupported`), and any number of readers (in any number of processes) work beside the
    /// one writer. A reader sees the latest committed state as commits land: each read first
    /// checks, with two `stat` calls, whether the writer committed or persisted its graph since,
    /// and scans exactly every vector its loaded graph does not cover, so its recall equals the
    /// writer's. Works on a read-only directory. See [`VectorStore::open_read_only`].
    pub read_only: bool,
    /// A reader loads the writer's newer graph dump only once the vectors its own graph lacks
    /// (which it scans exactly) exceed this many: loading a dump costs as much as reading the
    /// whole graph, in every reader process, while scanning 20,000 vectors takes about a
    /// millisecond per query.
    pub reader_tail_limit: usize,
    /// A reader looks for the writer's newer commits at most this often (default 250 ms): each
    /// newer commit costs every reader a reload, so under a fast writer this bounds what readers
    /// take from it, at the price of seeing a commit up to this much later. `Duration::ZERO`:
    /// before every read.
    pub reader_refresh_interval: Duration,
}

impl Default for VectorStoreOptions {
    fn default() -> Self {
        VectorStoreOptions {
            hnsw_m: 16,
            ef_construction: 100,
            ef_search: 64,
            exact_scan_threshold: 4096,
            exact_scan_sqrt_factor: 50.0,
            compaction_threshold: 0.3,
            writer_memory: 64 << 20,
            index_batch: 8192,
            persist_every: 50_000,
            background_indexing: true,
            read_only: false,
            reader_tail_limit: 20_000,
            reader_refresh_interval: Duration::from_millis(250),
        }
    }
}

/// Per-search overrides of [`VectorStoreOptions`], for tuning and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchTuning {
    /// Overrides [`VectorStoreOptions::ef_search`] (used as given, not scaled by the graph's size).
    pub ef_search: Option<usize>,
    /// Overrides [`VectorStoreOptions::exact_scan_threshold`] (`Some(0)`: always walk the
    /// graph; `Some(usize::MAX)`: always scan exactly).
    pub exact_scan_threshold: Option<usize>,
}

/// The in-process content store: one collection per workspace under a root directory, each a
/// tantivy index (text, BM25, filter attributes, embeddings: the source of truth) and an
/// HNSW graph derived from it. See the crate documentation.
#[derive(Debug, Clone)]
pub struct VectorStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    options: VectorStoreOptions,
    open: Mutex<HashMap<WorkspaceId, Arc<Collection>>>,
    /// The workspaces whose writer lock this store holds (a writer only).
    locks: Mutex<HashMap<WorkspaceId, Arc<WriterLock>>>,
    /// Serialises creating, opening and dropping collections.
    admin: Mutex<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for (_, c) in self.open.lock().drain() {
            c.close();
        }
        self.locks.lock().clear();
    }
}

const WS_PREFIX: &str = "ws-";

/// How long the convenience waits below wait for the graph at most.
const GRAPH_WAIT: Duration = Duration::from_secs(24 * 3600);

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::backend_error(format!("a content-store task failed: {e}")).with_backend(BACKEND)
    })?
}

impl VectorStore {
    /// Opens (creating if needed) a store rooted at `root`. Collections open lazily, on first use.
    /// A writer (the default) takes each workspace's writer lock when it first opens, creates or
    /// locks ([`acquire_writer`](Self::acquire_writer)) its collection, and holds it until
    /// [`close`](Self::close) or drop, so that no other process or store writes it meanwhile.
    /// With [`VectorStoreOptions::read_only`] the store is a reader: no lock, no writes, the
    /// root is not created.
    ///
    /// # Errors
    /// `Unavailable` if the directory cannot be created; `InvalidInput` for nonsensical options.
    pub fn open(root: impl AsRef<Path>, options: VectorStoreOptions) -> Result<VectorStore> {
        let root = root.as_ref().to_path_buf();
        if options.hnsw_m < 2 || options.hnsw_m > 255 {
            return Err(Error::invalid_input(format!(
                "hnsw_m must be in 2..=255, not {}",
                options.hnsw_m
            )));
        }
        if options.ef_search == 0 || options.ef_construction == 0 {
            return Err(Error::invalid_input(
                "ef_search and ef_construction must be positive",
            ));
        }
        if !(options.exact_scan_sqrt_factor >= 0.0 && options.exact_scan_sqrt_factor.is_finite()) {
            return Err(Error::invalid_input(format!(
                "exact_scan_sqrt_factor must be a finite number >= 0, not {}",
                options.exact_scan_sqrt_factor
            )));
        }
        if !options.read_only {
            fs::create_dir_all(&root).map_err(|e| io_err(root.display(), e))?;
        }
        Ok(VectorStore {
            inner: Arc::new(Inner {
                root,
                options,
                open: Mutex::new(HashMap::new()),
                locks: Mutex::new(HashMap::new()),
                admin: Mutex::new(()),
            }),
        })
    }

    /// Opens a reader of the store rooted at `root` ([`open`](Self::open) with
    /// [`VectorStoreOptions::read_only`]): it takes no lock and never writes, so any number of
    /// readers work beside one writer, on a read-only directory too.
    ///
    /// # Errors
    /// `InvalidInput` for nonsensical options.
    pub fn open_read_only(
        root: impl AsRef<Path>,
        options: VectorStoreOptions,
    ) -> Result<VectorStore> {
        Self::open(
            root,
            VectorStoreOptions {
                read_only: true,
                ..options
            },
        )
    }

    /// Whether this store is a reader.
    pub fn is_read_only(&self) -> bool {
        self.inner.options.read_only
    }

    /// Takes the workspace's writer lock (whether or not its collection exists yet), waiting up
    /// to `timeout` for another writer to let it go. A writer that will write a workspace takes
    /// it before it writes anything else (the metadata store included), so that a second
    /// writer is told so before doing any work. Idempotent; held until [`close`](Self::close).
    ///
    /// # Errors
    /// `Conflict` naming the holder (process, host, since when) when it is still held after
    /// `timeout`; `Unsupported` on a reader; `Unavailable` when the lock file cannot be made.
    pub fn acquire_writer(&self, workspace: &WorkspaceId, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.writer_lock(workspace) {
                Err(e)
                    if e.kind() == chatvault_core::ErrorKind::Conflict
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => return other.map(|_| ()),
            }
        }
    }

    /// Who holds the workspace's writer lock, if anyone (as the holder recorded it).
    pub fn writer_holder(&self, workspace: &WorkspaceId) -> Option<WriterInfo> {
        if self.inner.locks.lock().contains_key(workspace) {
            return None;
        }
        WriterLock::holder(&self.inner.root, workspace)
    }

    /// The workspace's writer lock, taken now if this store does not hold it yet.
    fn writer_lock(&self, workspace: &WorkspaceId) -> Result<Arc<WriterLock>> {
        if self.inner.options.read_only {
            return Err(Error::unsupported(
                "the content store is opened read-only: it cannot take the writer lock",
            )
            .with_context("workspace", workspace)
            .with_backend(BACKEND));
        }
        let mut locks = self.inner.locks.lock();
        if let Some(l) = locks.get(workspace) {
            return Ok(Arc::clone(l));
        }
        let l = Arc::new(WriterLock::try_acquire(&self.inner.root, workspace)?);
        locks.insert(workspace.clone(), Arc::clone(&l));
        Ok(l)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn dir_of(&self, workspace: &WorkspaceId) -> PathBuf {
        self.inner.root.join(format!("{WS_PREFIX}{workspace}"))
    }

    /// The workspace's open collection, opening it if it exists.
    fn collection(&self, workspace: &WorkspaceId) -> Result<Arc<Collection>> {
        if let Some(c) = self.inner.open.lock().get(workspace) {
            return Ok(Arc::clone(c));
        }
        let _admin = self.inner.admin.lock();
        if let Some(c) = self.inner.open.lock().get(workspace) {
            return Ok(Arc::clone(c));
        }
        let dir = self.dir_of(workspace);
        let Some(spec) = Collection::read_spec(&dir)? else {
            return Err(
                Error::not_found(format!("no collection for workspace {workspace}"))
                    .with_context("workspace", workspace)
                    .with_backend(BACKEND),
            );
        };
        // Workspace ids are case-sensitive, directory names on macOS and Windows are not: `ws-t1`
        // may be T1's directory. Using it would show T1's documents as t1's (and let t1's drop
        // or reconcile delete them).
        if spec.workspace != workspace.as_str() {
            return Err(Error::conflict(format!(
                "{} holds the collection of workspace {:?}, not {workspace:?}: the file system \
                 does not tell their names apart (ids that differ only in case); give one of \
                 them another id or another root directory",
                dir.display(),
                spec.workspace
            ))
            .with_context("workspace", workspace)
            .with_backend(BACKEND));
        }
        let spec = CollectionSpec {
            dimension: spec.dimension,
            model_id: spec.model_id,
        };
        let lock = if self.inner.options.read_only {
            None
        } else {
            Some(self.writer_lock(workspace)?)
        };
        let c = Collection::open(&dir, workspace, spec, &self.inner.options, lock)?;
        self.inner
            .open
            .lock()
            .insert(workspace.clone(), Arc::clone(&c));
        Ok(c)
    }

    /// Opens the workspace's collection now (a writer takes its writer lock) rather than on
    /// first use.
    ///
    /// # Errors
    /// `NotFound` if it does not exist; `Conflict` if another process has it open.
    pub fn open_collection(&self, workspace: &WorkspaceId) -> Result<()> {
        self.collection(workspace).map(|_| ())
    }

    /// Blocks until every committed vector of the workspace is in the graph. Searches never
    /// need this (vectors not yet in the graph are scanned exactly); tests and benches do.
    ///
    /// # Errors
    /// `NotFound` (no collection); `Unavailable` if the collection closes meanwhile.
    pub fn wait_for_graph(&self, workspace: &WorkspaceId) -> Result<()> {
        self.collection(workspace)?.wait_for_graph(GRAPH_WAIT)
    }

    /// [`wait_for_graph`](Self::wait_for_graph), then writes the graph to disk so that the next
    /// open loads it instead of re-indexing.
    ///
    /// # Errors
    /// As `wait_for_graph`; `Unavailable` if the graph cannot be written.
    pub fn flush_graph(&self, workspace: &WorkspaceId) -> Result<()> {
        self.collection(workspace)?.flush_graph(GRAPH_WAIT)
    }

    /// Rebuilds the workspace's graph without dead nodes and merges its index segments, so the
    /// space of replaced and deleted documents returns to the disk.
    ///
    /// # Errors
    /// `NotFound` (no collection); `Unavailable`/`Backend` on I/O failures.
    pub fn compact(&self, workspace: &WorkspaceId) -> Result<()> {
        self.collection(workspace)?.compact()
    }

    /// [`ContentStore::search_vector`] with per-search tuning, on the calling thread.
    ///
    /// # Errors
    /// As `search_vector`.
    pub fn search_vector_tuned(
        &self,
        workspace: &WorkspaceId,
        query: &[f32],
        options: &SearchOptions,
        tuning: &SearchTuning,
    ) -> Result<Vec<ScoredKey>> {
        self.collection(workspace)?
            .search_vector(query, options.k, &options.filter, tuning)
    }

    /// Vectors committed but not yet in the graph.
    ///
    /// # Errors
    /// `NotFound` (no collection).
    pub fn pending_vectors(&self, workspace: &WorkspaceId) -> Result<usize> {
        self.collection(workspace)?.tail_len()
    }

    /// Bytes the workspace's collection takes on disk.
    ///
    /// # Errors
    /// `NotFound` (no collection).
    pub fn disk_usage(&self, workspace: &WorkspaceId) -> Result<u64> {
        Ok(self.collection(workspace)?.disk_usage())
    }

    /// Closes every open collection (persisting graphs that changed) and releases the writer
    /// locks. The store stays usable: collections reopen (and locks are taken again) on next use.
    pub fn close(&self) {
        let open: Vec<_> = self.inner.open.lock().drain().collect();
        for (_, c) in open {
            c.close();
        }
        self.inner.locks.lock().clear();
    }

    fn info(&self, workspace: &WorkspaceId) -> Result<Option<CollectionInfo>> {
        match self.collection(workspace) {
            Ok(c) => Ok(Some(CollectionInfo {
                workspace: workspace.clone(),
                spec: c.spec.clone(),
                documents: c.documents()?,
                index_version: c.index_version()?,
            })),
            Err(e) if e.kind() == chatvault_core::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl ContentStore for VectorStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn create_collection(
        &self,
        workspace: &WorkspaceId,
        spec: &CollectionSpec,
    ) -> Result<()> {
        if spec.dimension == 0 {
            return Err(Error::invalid_input("collection dimension is 0")
                .with_context("workspace", workspace));
        }
        let this = self.clone();
        let (workspace, spec) = (workspace.clone(), spec.clone());
        blocking(move || {
            match this.collection(&workspace) {
                Ok(c) if c.spec == spec => return Ok(()),
                _ if this.is_read_only() => {
                    return Err(Error::unsupported(
                        "the content store is opened read-only: it cannot create a collection",
                    )
                    .with_context("workspace", &workspace)
                    .with_backend(BACKEND))
                }
                Ok(c) => {
                    return Err(Error::conflict(format!(
                        "the collection exists with dimension {} and model {:?}, not {} and {:?}",
                        c.spec.dimension, c.spec.model_id, spec.dimension, spec.model_id
                    ))
                    .with_context("workspace", &workspace)
                    .with_backend(BACKEND))
                }
                Err(e) if e.kind() == chatvault_core::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let lock = this.writer_lock(&workspace)?;
            let _admin = this.inner.admin.lock();
            let c = Collection::create(
                &this.dir_of(&workspace),
                &workspace,
                &spec,
                &this.inner.options,
                lock,
            )?;
            this.inner.open.lock().insert(workspace, c);
            Ok(())
        })
        .await
    }

    async fn set_index_version(&self, workspace: &WorkspaceId, version: u32) -> Result<()> {
        let (this, workspace) = (self.clone(), workspace.clone());
        blocking(move || {
            let c = this.collection(&workspace)?;
            let _admin = this.inner.admin.lock();
            c.set_index_version(version)
        })
        .await
    }

    async fn collection_info(&self, workspace: &WorkspaceId) -> Result<Option<CollectionInfo>> {
        let (this, workspace) = (self.clone(), workspace.clone());
        blocking(move || this.info(&workspace)).await
    }

    async fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        let this = self.clone();
        blocking(move || {
            let root = &this.inner.root;
            let mut out = Vec::new();
            if this.is_read_only() && !root.exists() {
                return Ok(out);
            }
            for entry in fs::read_dir(root).map_err(|e| io_err(root.display(), e))? {
                let entry = entry.map_err(|e| io_err(root.display(), e))?;
                let name = entry.file_name().to_string_lossy().to_string();
                let Some(ws) = name.strip_prefix(WS_PREFIX) else {
                    continue;
                };
                let Ok(ws) = WorkspaceId::new(ws) else {
                    continue;
                };
                if let Some(info) = this.info(&ws)? {
                    out.push(info);
                }
            }
            out.sort_by(|a, b| a.workspace.cmp(&b.workspace));
            Ok(out)
        })
        .await
    }

    async fn drop_collection(&self, workspace: &WorkspaceId) -> Result<()> {
        let (this, workspace) = (self.clone(), workspace.clone());
        blocking(move || {
            // hold the lock while deleting so no other process is writing it
            this.writer_lock(&workspace)?;
            let c = match this.collection(&workspace) {
                Ok(c) => c,
                Err(e) if e.kind() == chatvault_core::ErrorKind::NotFound => {
                    let dir = this.dir_of(&workspace);
                    if dir.exists() {
                        // an interrupted creation: nothing worth keeping
                        fs::remove_dir_all(&dir).map_err(|e| io_err(dir.display(), e))?;
                    }
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let _admin = this.inner.admin.lock();
            this.inner.open.lock().remove(&workspace);
            c.close();
            let dir = this.dir_of(&workspace);
            let trash = this.inner.root.join(format!(
                ".dropped-{workspace}-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ));
            fs::rename(&dir, &trash).map_err(|e| io_err(dir.display(), e))?;
            drop(c);
            fs::remove_dir_all(&trash).map_err(|e| io_err(trash.display(), e))?;
            Ok(())
        })
        .await
    }

    async fn upsert(
        &self,
        workspace: &WorkspaceId,
        docs: &[ContentDocument],
    ) -> Result<WriteOutcome> {
        let c = {
            let (this, ws) = (self.clone(), workspace.clone());
            blocking(move || this.collection(&ws)).await?
        };
        if docs.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let docs = docs.to_vec();
        blocking(move || c.upsert(&docs)).await
    }

    async fn delete(
        &self,
        workspace: &WorkspaceId,
        deletes: &[ContentDelete],
    ) -> Result<WriteOutcome> {
        let c = {
            let (this, ws) = (self.clone(), workspace.clone());
            blocking(move || this.collection(&ws)).await?
        };
        if deletes.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let deletes = deletes.to_vec();
        blocking(move || c.delete(&deletes)).await
    }

    async fn get(
        &self,
        workspace: &WorkspaceId,
        keys: &[MessageKey],
    ) -> Result<Vec<ContentDocument>> {
        let (this, ws, keys) = (self.clone(), workspace.clone(), keys.to_vec());
        blocking(move || this.collection(&ws)?.get(&keys)).await
    }

    async fn search_vector(
        &self,
        workspace: &WorkspaceId,
        query: &[f32],
        options: &SearchOptions,
    ) -> Result<Vec<ScoredKey>> {
        let (this, ws, query, options) = (
            self.clone(),
            workspace.clone(),
            query.to_vec(),
            options.clone(),
        );
        blocking(move || {
            this.collection(&ws)?.search_vector(
                &query,
                options.k,
                &options.filter,
                &SearchTuning::default(),
            )
        })
        .await
    }

    async fn search_lexical(
        &self,
        workspace: &WorkspaceId,
        query: &str,
        options: &SearchOptions,
    ) -> Result<Vec<ScoredKey>> {
        let (this, ws, query, options) = (
            self.clone(),
            workspace.clone(),
            query.to_string(),
            options.clone(),
        );
        blocking(move || {
            this.collection(&ws)?
                .search_lexical(&query, options.k, &options.filter)
        })
        .await
    }

    async fn list_versions(
        &self,
        workspace: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Vec<ContentVersion>> {
        let (this, ws, page) = (self.clone(), workspace.clone(), page.clone());
        blocking(move || this.collection(&ws)?.list_versions(&page)).await
    }
}

/// Bytes under a directory (for tests and benches measuring disk use).
pub fn directory_size(dir: impl AsRef<Path>) -> u64 {
    dir_size(dir.as_ref())
}
