//! [`ChromaContentStore`]: the [`ContentStore`] contract on a ChromaDB server.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use chatvault_core::{
    CollectionInfo, CollectionSpec, ContentCapabilities, ContentDelete, ContentDocument,
    ContentStore, ContentVersion, Error, ErrorKind, MessageKey, PageRequest, Result, ScoredKey,
    SearchOptions, WorkspaceId, WriteOutcome,
};
use serde_json::{json, Map, Value};

use crate::client::{Client, Collection, Records, BACKEND};
use crate::naming;
use crate::options::{ChromaOptions, HnswSettings};
use crate::record::{self, Translated};

const ROLE: &str = "chatvault_role";
const ROLE_CONTENT: &str = "content";
const ROLE_TOMBSTONES: &str = "tombstones";
const WORKSPACE: &str = "chatvault_workspace";
const DIMENSION: &str = "chatvault_dimension";
const MODEL_ID: &str = "chatvault_model_id";
const FORMAT: &str = "chatvault_format";
const FORMAT_VERSION: i64 = 1;
/// The index-text version the documents are indexed with (`ContentStore::set_index_version`).
const INDEX_VERSION: &str = "chatvault_index_version";

/// Extra neighbours asked for beyond `k`, so that ties at the cut are broken by key, not by the
/// server's order.
const TIE_MARGIN: usize = 16;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// A workspace's two collections on the server.
#[derive(Debug)]
struct Handles {
    content: String,
    tombstones: String,
    spec: CollectionSpec,
}

/// A [`ContentStore`] on a ChromaDB server (the `chromadb` 1.x HTTP API v2).
///
/// Each workspace has two collections: `chatvault_<ws>` holds the live documents (id
/// `channel:ts`, the embedding in cosine space, the text as the document, version, content hash
/// and filter attributes as metadata) and `chatvault_<ws>.tombstones` holds one record per deleted
/// key with the version of its delete. Tombstones live apart so that searches need no extra
/// `where` condition (every `where` makes Chroma pre-filter the whole collection) and deleted
/// vectors leave the HNSW graph.
///
/// Versions are enforced by reading the stored versions of a batch's keys and writing only the
/// newer changes, under a per-workspace lock: exact within one process. Chroma has no
/// compare-and-set, so two *processes* writing the same key at once could both pass the check;
/// the outbox's claim leases make that rare, and the higher version still wins once any later
/// change of that key arrives.
///
/// What Chroma cannot do: BM25 lexical search (a single-node server has only substring
/// matching), so [`capabilities`](ContentStore::capabilities) says `lexical_search: false` and
/// [`search_lexical`](ContentStore::search_lexical) returns `Unsupported`.
pub struct ChromaContentStore {
    client: Client,
    hnsw: HnswSettings,
    url: String,
    handles: RwLock<HashMap<WorkspaceId, Arc<Handles>>>,
    locks: Mutex<HashMap<WorkspaceId, Arc<tokio::sync::Mutex<()>>>>,
}

impl fmt::Debug for ChromaContentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChromaContentStore")
            .field("url", &self.url)
            .field("max_batch_size", &self.client.limits.max_batch_size)
            .finish_non_exhaustive()
    }
}

fn lock_poisoned() -> Error {
    Error::backend_error("internal lock poisoned by a panic").with_backend(BACKEND)
}

fn meta_str<'a>(c: &'a Collection, key: &str) -> Option<&'a str> {
    c.metadata.as_ref()?.get(key)?.as_str()
}

fn meta_i64(c: &Collection, key: &str) -> Option<i64> {
    c.metadata.as_ref()?.get(key)?.as_i64()
}

/// The index-text version recorded on a content collection (0: never recorded).
fn index_version_of(c: &Collection) -> u32 {
    meta_i64(c, INDEX_VERSION)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0)
}

/// The spec a content collection was created with, read from its metadata.
fn spec_of(c: &Collection) -> Result<CollectionSpec> {
    let bad = |what: &str| {
        Error::backend_error(format!(
            "ChromaDB collection {:?} is not a chatvault collection: {what}",
            c.name
        ))
        .with_backend(BACKEND)
    };
    if meta_str(c, ROLE) != Some(ROLE_CONTENT) {
        return Err(bad("no chatvault_role=content metadata"));
    }
    let dimension = meta_i64(c, DIMENSION)
        .and_then(|d| usize::try_from(d).ok())
        .ok_or_else(|| bad("no dimension"))?;
    let model_id = meta_str(c, MODEL_ID).ok_or_else(|| bad("no model id"))?;
    Ok(CollectionSpec {
        dimension,
        model_id: model_id.to_string(),
    })
}

fn chunks<T>(v: &[T], n: usize) -> std::slice::Chunks<'_, T> {
    v.chunks(n.max(1))
}

/// A key's stored state: the live record's version and the tombstone's.
#[derive(Debug, Default, Clone, Copy)]
struct Stored {
    live: Option<u64>,
    tomb: Option<u64>,
}

impl Stored {
    /// The version the key is at (a change must be newer to apply).
    fn current(self) -> Option<u64> {
        self.live.max(self.tomb)
    }

    /// Whether a live record exists that a tombstone at the same or a newer version has
    /// superseded (a delete interrupted between its two steps): it is not live.
    fn lingering(self) -> bool {
        matches!((self.live, self.tomb), (Some(l), Some(t)) if t >= l)
    }

    fn is_live(self) -> bool {
        self.live.is_some() && !self.lingering()
    }
}

impl ChromaContentStore {
    /// Connects to the server the options name: checks its heartbeat, reads its maximum batch
    /// size, and creates the tenant and database if asked to.
    ///
    /// # Errors
    /// `Unavailable` if the server cannot be reached; `Backend` if it refuses the credentials or
    /// answers something unexpected.
    pub async fn connect(options: ChromaOptions) -> Result<Self> {
        let client = Client::connect(&options).await?;
        tracing::debug!(
            url = %options.url,
            tenant = %options.tenant,
            database = %options.database,
            max_batch_size = client.limits.max_batch_size,
            "connected to ChromaDB"
        );
        Ok(ChromaContentStore {
            client,
            hnsw: options.hnsw,
            url: options.url.to_string(),
            handles: RwLock::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// Connects to `url` (`http://host:port[?tenant=…&database=…]`), the token read from
    /// [`TOKEN_ENV`](crate::TOKEN_ENV).
    ///
    /// # Errors
    /// As [`ChromaOptions::from_url`] and [`connect`](Self::connect).
    pub async fn connect_url(url: &str) -> Result<Self> {
        Self::connect(ChromaOptions::from_url(url)?).await
    }

    /// The largest number of records the server takes in one request; bigger batches are split.
    pub fn max_batch_size(&self) -> usize {
        self.client.limits.max_batch_size
    }

    /// Deletes this store's whole Chroma database (every workspace in it). For tests and tools.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the server fails.
    pub async fn delete_database(&self) -> Result<()> {
        self.client.delete_database().await?;
        self.handles.write().map_err(|_| lock_poisoned())?.clear();
        Ok(())
    }

    fn write_lock(&self, ws: &WorkspaceId) -> Result<Arc<tokio::sync::Mutex<()>>> {
        let mut locks = self.locks.lock().map_err(|_| lock_poisoned())?;
        Ok(locks.entry(ws.clone()).or_default().clone())
    }

    fn forget(&self, ws: &WorkspaceId) {
        if let Ok(mut h) = self.handles.write() {
            h.remove(ws);
        }
    }

    fn collection_configuration(&self, space: &str) -> Value {
        let mut hnsw = Map::new();
        hnsw.insert("space".into(), space.into());
        if let Some(m) = self.hnsw.max_neighbors {
            hnsw.insert("max_neighbors".into(), m.into());
        }
        if let Some(e) = self.hnsw.ef_construction {
            hnsw.insert("ef_construction".into(), e.into());
        }
        if let Some(e) = self.hnsw.ef_search {
            hnsw.insert("ef_search".into(), e.into());
        }
        json!({ "hnsw": hnsw })
    }

    async fn tombstone_collection(&self, ws: &WorkspaceId) -> Result<Collection> {
        let mut meta = Map::new();
        meta.insert(ROLE.into(), ROLE_TOMBSTONES.into());
        meta.insert(WORKSPACE.into(), ws.as_str().into());
        meta.insert(FORMAT.into(), FORMAT_VERSION.into());
        // Tombstones need no vector; Chroma wants one, so each gets the 1-d vector [1].
        self.client
            .get_or_create_collection(
                &naming::tombstone_collection(ws),
                meta,
                self.collection_configuration("l2"),
            )
            .await
    }

    /// The workspace's collections, or `None` when it has none.
    async fn lookup(&self, ws: &WorkspaceId) -> Result<Option<Arc<Handles>>> {
        if let Some(h) = self.handles.read().map_err(|_| lock_poisoned())?.get(ws) {
            return Ok(Some(h.clone()));
        }
        let Some(content) = self
            .client
            .get_collection(&naming::content_collection(ws))
            .await?
        else {
            return Ok(None);
        };
        let spec = spec_of(&content)?;
        if meta_str(&content, WORKSPACE) != Some(ws.as_str()) {
            return Err(Error::backend_error(format!(
                "ChromaDB collection {:?} belongs to workspace {:?}, not {ws}",
                content.name,
                meta_str(&content, WORKSPACE)
            ))
            .with_backend(BACKEND));
        }
        // Created after the content collection, so a crash in between leaves it to be made here.
        let tomb = self.tombstone_collection(ws).await?;
        let h = Arc::new(Handles {
            content: content.id,
            tombstones: tomb.id,
            spec,
        });
        self.handles
            .write()
            .map_err(|_| lock_poisoned())?
            .insert(ws.clone(), h.clone());
        Ok(Some(h))
    }

    async fn handles(&self, ws: &WorkspaceId) -> Result<Arc<Handles>> {
        self.lookup(ws).await?.ok_or_else(|| {
            Error::not_found(format!("workspace {ws} has no content collection"))
                .with_context("workspace", ws)
                .with_backend(BACKEND)
        })
    }

    /// Runs `op` on the workspace's collections; if the server no longer knows them (dropped and
    /// re-created by another process), looks them up again and runs it once more.
    async fn with_handles<'a, T, F>(&'a self, ws: &'a WorkspaceId, op: F) -> Result<T>
    where
        F: Fn(Arc<Handles>) -> BoxFut<'a, T>,
    {
        let h = self.handles(ws).await?;
        match op(h).await {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.forget(ws);
                let h = self.handles(ws).await?;
                op(h).await.map_err(|e| e.with_context("workspace", ws))
            }
            other => other.map_err(|e| e.with_context("workspace", ws)),
        }
    }

    /// The stored versions (live and tombstone) of these ids.
    async fn stored(&self, h: &Handles, ids: &[String]) -> Result<HashMap<String, Stored>> {
        let mut out: HashMap<String, Stored> = HashMap::with_capacity(ids.len());
        for part in chunks(ids, self.client.limits.max_batch_size) {
            let (live, tomb) = tokio::join!(
                self.client
                    .get(&h.content, Some(part), &["metadatas"], None, None),
                self.client
                    .get(&h.tombstones, Some(part), &["metadatas"], None, None),
            );
            let (live, tomb) = (live?, tomb?);
            let metas = live.metadatas.unwrap_or_default();
            for (i, id) in live.ids.iter().enumerate() {
                let v = record::version_of(metas.get(i).and_then(Option::as_ref), id)?;
                out.entry(id.clone()).or_default().live = Some(v);
            }
            let metas = tomb.metadatas.unwrap_or_default();
            for (i, id) in tomb.ids.iter().enumerate() {
                let v = record::version_of(metas.get(i).and_then(Option::as_ref), id)?;
                out.entry(id.clone()).or_default().tomb = Some(v);
            }
        }
        Ok(out)
    }

    async fn upsert_in(
        &self,
        ws: &WorkspaceId,
        h: &Handles,
        docs: &[ContentDocument],
    ) -> Result<WriteOutcome> {
        for d in docs {
            d.key().ensure_workspace(ws)?;
            d.validate(h.spec.dimension)?;
            record::version_value(d.version, d.key())?;
        }
        // The same key twice: the higher version wins, the other counts as stale.
        let mut newest: BTreeMap<String, &ContentDocument> = BTreeMap::new();
        for d in docs {
            let id = d.key().content_id();
            match newest.get(&id) {
                Some(o) if o.version >= d.version => {}
                _ => {
                    newest.insert(id, d);
                }
            }
        }
        let lock = self.write_lock(ws)?;
        let _guard = lock.lock().await;
        let ids: Vec<String> = newest.keys().cloned().collect();
        let stored = self.stored(h, &ids).await?;
        let mut apply: Vec<(&String, &ContentDocument)> = Vec::new();
        let mut clear_tombstones = Vec::new();
        for (id, d) in &newest {
            let s = stored.get(id).copied().unwrap_or_default();
            if s.current().is_none_or(|c| d.version > c) {
                apply.push((id, d));
                if s.tomb.is_some() {
                    clear_tombstones.push(id.clone());
                }
            }
        }
        for part in chunks(&apply, self.client.limits.max_batch_size) {
            let mut recs = Records {
                ids: Vec::with_capacity(part.len()),
                embeddings: Vec::with_capacity(part.len()),
                documents: Some(Vec::with_capacity(part.len())),
                metadatas: Vec::with_capacity(part.len()),
            };
            for (id, d) in part {
                recs.ids.push((*id).clone());
                recs.embeddings.push(&d.embedding);
                if let Some(docs) = recs.documents.as_mut() {
                    docs.push(&d.content.text);
                }
                recs.metadatas.push(record::metadata(d)?);
            }
            self.client.upsert(&h.content, &recs).await?;
        }
        // The live record now outranks the tombstone; removing it only keeps the collection small.
        for part in chunks(&clear_tombstones, self.client.limits.max_batch_size) {
            self.client.delete(&h.tombstones, part).await?;
        }
        let applied = apply.len() as u64;
        Ok(WriteOutcome {
            applied,
            stale: docs.len() as u64 - applied,
        })
    }

    async fn delete_in(
        &self,
        ws: &WorkspaceId,
        h: &Handles,
        deletes: &[ContentDelete],
    ) -> Result<WriteOutcome> {
        for d in deletes {
            d.key.ensure_workspace(ws)?;
            record::version_value(d.version, &d.key)?;
        }
        let lock = self.write_lock(ws)?;
        let _guard = lock.lock().await;
        let mut ids: Vec<String> = deletes.iter().map(|d| d.key.content_id()).collect();
        ids.sort_unstable();
        ids.dedup();
        let stored = self.stored(h, &ids).await?;
        // In input order, as if applied one by one: a delete applies when it is newer than
        // everything stored or applied before it for its key.
        let mut state: HashMap<&str, (Stored, Option<u64>)> = HashMap::new();
        let mut applied = 0u64;
        for d in deletes {
            let id = ids
                .binary_search(&d.key.content_id())
                .map(|i| ids[i].as_str())
                .map_err(|_| Error::backend_error("delete id vanished").with_backend(BACKEND))?;
            let (s, newest) = state
                .entry(id)
                .or_insert_with(|| (stored.get(id).copied().unwrap_or_default(), None));
            let current = s.current().max(*newest);
            if current.is_none_or(|c| d.version > c) {
                *newest = Some(d.version);
                applied += 1;
            }
        }
        let mut tombstones: Vec<(String, i64)> = Vec::new();
        let mut remove_live: Vec<String> = Vec::new();
        for (id, (s, newest)) in &state {
            if let Some(v) = newest {
                let v = i64::try_from(*v).map_err(|_| Error::invalid_input("version too large"))?;
                tombstones.push(((*id).to_string(), v));
                if s.live.is_some() {
                    remove_live.push((*id).to_string());
                }
            } else if s.lingering() {
                // A delete interrupted after its tombstone: finish it.
                remove_live.push((*id).to_string());
            }
        }
        tombstones.sort_unstable();
        remove_live.sort_unstable();
        // Tombstone first, then remove the live record: a crash in between leaves a tombstone
        // that outranks the record, and the redelivered delete finishes the job.
        let one = [1.0f32];
        for part in chunks(&tombstones, self.client.limits.max_batch_size) {
            let recs = Records {
                ids: part.iter().map(|(id, _)| id.clone()).collect(),
                embeddings: part.iter().map(|_| &one[..]).collect(),
                documents: None,
                metadatas: part
                    .iter()
                    .map(|(_, v)| record::tombstone_metadata(*v))
                    .collect(),
            };
            self.client.upsert(&h.tombstones, &recs).await?;
        }
        for part in chunks(&remove_live, self.client.limits.max_batch_size) {
            self.client.delete(&h.content, part).await?;
        }
        Ok(WriteOutcome {
            applied,
            stale: deletes.len() as u64 - applied,
        })
    }

    async fn get_in(
        &self,
        ws: &WorkspaceId,
        h: &Handles,
        keys: &[MessageKey],
    ) -> Result<Vec<ContentDocument>> {
        let mut ids: Vec<String> = keys.iter().map(MessageKey::content_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut found: HashMap<String, ContentDocument> = HashMap::with_capacity(ids.len());
        for part in chunks(&ids, self.client.limits.max_batch_size) {
            let (live, tomb) = tokio::join!(
                self.client.get(
                    &h.content,
                    Some(part),
                    &["metadatas", "documents", "embeddings"],
                    None,
                    None
                ),
                self.client
                    .get(&h.tombstones, Some(part), &["metadatas"], None, None),
            );
            let (live, tomb) = (live?, tomb?);
            let mut tombs: HashMap<&str, u64> = HashMap::new();
            let tmetas = tomb.metadatas.unwrap_or_default();
            for (i, id) in tomb.ids.iter().enumerate() {
                let v = record::version_of(tmetas.get(i).and_then(Option::as_ref), id)?;
                tombs.insert(id, v);
            }
            let n = live.ids.len();
            let mut docs = live.documents.unwrap_or_default().into_iter();
            let mut embs = live.embeddings.unwrap_or_default().into_iter();
            let metas = live.metadatas.unwrap_or_default();
            if metas.len() != n {
                return Err(Error::backend_error(format!(
                    "ChromaDB answered {n} ids but {} metadatas",
                    metas.len()
                ))
                .with_backend(BACKEND));
            }
            for (i, id) in live.ids.into_iter().enumerate() {
                let text = docs.next().flatten();
                let emb = embs.next().unwrap_or_default();
                let doc = record::document(ws, &id, text, emb, metas[i].as_ref())?;
                let s = Stored {
                    live: Some(doc.version),
                    tomb: tombs.get(id.as_str()).copied(),
                };
                if s.is_live() {
                    found.insert(id, doc);
                }
            }
        }
        Ok(keys
            .iter()
            .filter_map(|k| found.get(&k.content_id()).cloned())
            .collect())
    }

    async fn search_in(
        &self,
        ws: &WorkspaceId,
        h: &Handles,
        query: &[f32],
        options: &SearchOptions,
    ) -> Result<Vec<ScoredKey>> {
        if query.len() != h.spec.dimension {
            return Err(Error::invalid_input(format!(
                "query has {} dimensions, the collection has {}",
                query.len(),
                h.spec.dimension
            ))
            .with_context("workspace", ws));
        }
        if let Some(i) = query.iter().position(|v| !v.is_finite()) {
            return Err(
                Error::invalid_input(format!("query value {i} is not finite"))
                    .with_context("workspace", ws),
            );
        }
        let (where_, ids) = match record::translate(ws, &options.filter)? {
            Translated::Nothing => return Ok(Vec::new()),
            Translated::Query { where_, ids } => (where_, ids),
        };
        if options.k == 0 {
            return Ok(Vec::new());
        }
        let n = options.k.saturating_add(options.k.min(TIE_MARGIN));
        let mut attempt = 0;
        let resp = loop {
            // chromadb 1.5 fails a query whose `ids` names a record it does not hold ("Error
            // finding id"), so the allow-list is first narrowed to the ids that exist.
            let ids = match &ids {
                None => None,
                Some(ids) => {
                    let existing = self.existing_ids(&h.content, ids).await?;
                    if existing.is_empty() {
                        return Ok(Vec::new());
                    }
                    Some(existing)
                }
            };
            match self
                .client
                .query(&h.content, query, n, where_.as_ref(), ids.as_deref())
                .await
            {
                // A record deleted between the two requests: narrow again.
                Err(e)
                    if ids.is_some() && attempt < 3 && e.message().contains("Error finding id") =>
                {
                    attempt += 1;
                }
                other => break other?,
            }
        };
        let ids = resp.ids.into_iter().next().unwrap_or_default();
        let dists = resp
            .distances
            .and_then(|d| d.into_iter().next())
            .unwrap_or_default();
        let mut hits = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let key = MessageKey::from_content_id(ws, id).map_err(|e| {
                Error::backend_error(format!("ChromaDB returned a foreign id {id:?}: {e}"))
                    .with_backend(BACKEND)
            })?;
            // Cosine distance is 1 - cosine similarity; a zero query has no defined distance.
            let score = dists.get(i).copied().flatten().map_or(0.0, |d| 1.0 - d);
            hits.push(ScoredKey { key, score });
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key)));
        hits.truncate(options.k);
        Ok(hits)
    }

    /// Those of `ids` the collection holds.
    async fn existing_ids(&self, collection: &str, ids: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(ids.len());
        for part in chunks(ids, self.client.limits.max_batch_size) {
            let r = self
                .client
                .get(collection, Some(part), &[], None, None)
                .await?;
            out.extend(r.ids);
        }
        Ok(out)
    }

    /// Every record's metadata of a collection, page by page.
    async fn scan_metadatas(&self, id: &str) -> Result<Vec<(String, Option<Map<String, Value>>)>> {
        let page = self.client.limits.max_batch_size;
        let mut out = Vec::new();
        loop {
            let r = self
                .client
                .get(id, None, &["metadatas"], Some(page), Some(out.len()))
                .await?;
            let n = r.ids.len();
            let metas = r.metadatas.unwrap_or_default();
            let mut metas = metas.into_iter();
            for id in r.ids {
                out.push((id, metas.next().flatten()));
            }
            if n < page {
                return Ok(out);
            }
        }
    }

    async fn list_versions_in(
        &self,
        ws: &WorkspaceId,
        h: &Handles,
        page: &PageRequest,
    ) -> Result<Vec<ContentVersion>> {
        if let Some(after) = &page.after {
            after.ensure_workspace(ws)?;
        }
        if page.limit == 0 {
            return Ok(Vec::new());
        }
        // Chroma pages in insertion order and cannot compare strings, so ordering by key means
        // reading every record's metadata (no vectors, no text) and sorting here.
        let (live, tombs) = tokio::join!(
            self.scan_metadatas(&h.content),
            self.scan_metadatas(&h.tombstones)
        );
        let mut tomb_versions: HashMap<String, u64> = HashMap::new();
        for (id, m) in tombs? {
            let v = record::version_of(m.as_ref(), &id)?;
            tomb_versions.insert(id, v);
        }
        let mut out = Vec::new();
        for (id, m) in live? {
            let key = MessageKey::from_content_id(ws, &id).map_err(|e| {
                Error::backend_error(format!("ChromaDB record id {id:?}: {e}"))
                    .with_backend(BACKEND)
            })?;
            if page.after.as_ref().is_some_and(|a| &key <= a) {
                continue;
            }
            let version = record::version_of(m.as_ref(), &id)?;
            let s = Stored {
                live: Some(version),
                tomb: tomb_versions.get(&id).copied(),
            };
            if !s.is_live() {
                continue;
            }
            out.push(ContentVersion {
                key,
                version,
                content_hash: record::hash_of(m.as_ref(), &id)?,
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.truncate(page.limit);
        Ok(out)
    }
}

#[async_trait]
impl ContentStore for ChromaContentStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> ContentCapabilities {
        ContentCapabilities {
            vector_search: true,
            lexical_search: false,
            full_filters: true,
        }
    }

    async fn create_collection(&self, ws: &WorkspaceId, spec: &CollectionSpec) -> Result<()> {
        if spec.dimension == 0 {
            return Err(
                Error::invalid_input("embedding dimension must be at least 1")
                    .with_context("workspace", ws),
            );
        }
        let dimension = i64::try_from(spec.dimension).map_err(|_| {
            Error::invalid_input(format!("dimension {} is too large", spec.dimension))
        })?;
        let mut meta = Map::new();
        meta.insert(ROLE.into(), ROLE_CONTENT.into());
        meta.insert(WORKSPACE.into(), ws.as_str().into());
        meta.insert(DIMENSION.into(), dimension.into());
        meta.insert(MODEL_ID.into(), spec.model_id.as_str().into());
        meta.insert(FORMAT.into(), FORMAT_VERSION.into());
        let name = naming::content_collection(ws);
        let c = self
            .client
            .get_or_create_collection(&name, meta, self.collection_configuration("cosine"))
            .await
            .map_err(|e| e.with_context("workspace", ws))?;
        let existing = spec_of(&c)?;
        if &existing != spec {
            return Err(Error::conflict(format!(
                "workspace {ws} has a collection of dimension {} and model {:?}, not {} and {:?}",
                existing.dimension, existing.model_id, spec.dimension, spec.model_id
            ))
            .with_context("workspace", ws)
            .with_backend(BACKEND));
        }
        self.forget(ws);
        self.handles(ws).await?;
        Ok(())
    }

    async fn collection_info(&self, ws: &WorkspaceId) -> Result<Option<CollectionInfo>> {
        for attempt in 0..2 {
            let Some(h) = self.lookup(ws).await? else {
                return Ok(None);
            };
            match self.client.count(&h.content).await {
                Ok(documents) => {
                    let index_version = match self
                        .client
                        .get_collection(&naming::content_collection(ws))
                        .await?
                    {
                        Some(c) => index_version_of(&c),
                        None if attempt == 0 => {
                            self.forget(ws);
                            continue;
                        }
                        None => return Ok(None),
                    };
                    return Ok(Some(CollectionInfo {
                        workspace: ws.clone(),
                        spec: h.spec.clone(),
                        documents,
                        index_version,
                    }));
                }
                Err(e) if e.kind() == ErrorKind::NotFound && attempt == 0 => self.forget(ws),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.with_context("workspace", ws)),
            }
        }
        Ok(None)
    }

    async fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        let mut out = Vec::new();
        for c in self.client.list_collections().await? {
            if meta_str(&c, ROLE) != Some(ROLE_CONTENT) {
                continue;
            }
            let Some(ws) = meta_str(&c, WORKSPACE).and_then(|w| WorkspaceId::new(w).ok()) else {
                continue;
            };
            if naming::content_collection(&ws) != c.name {
                continue;
            }
            let spec = spec_of(&c)?;
            match self.client.count(&c.id).await {
                Ok(documents) => out.push(CollectionInfo {
                    workspace: ws,
                    spec,
                    documents,
                    index_version: index_version_of(&c),
                }),
                // Dropped meanwhile.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.workspace.cmp(&b.workspace));
        Ok(out)
    }

    async fn set_index_version(&self, ws: &WorkspaceId, version: u32) -> Result<()> {
        let lock = self.write_lock(ws)?;
        let _guard = lock.lock().await;
        let name = naming::content_collection(ws);
        let c = self.client.get_collection(&name).await?.ok_or_else(|| {
            Error::not_found(format!("no collection for workspace {ws}"))
                .with_context("workspace", ws)
                .with_backend(BACKEND)
        })?;
        let mut meta = c.metadata.clone().unwrap_or_default();
        meta.insert(INDEX_VERSION.into(), i64::from(version).into());
        self.client
            .modify_collection_metadata(&c.id, meta)
            .await
            .map_err(|e| e.with_context("workspace", ws))
    }

    async fn drop_collection(&self, ws: &WorkspaceId) -> Result<()> {
        let lock = self.write_lock(ws)?;
        let _guard = lock.lock().await;
        self.forget(ws);
        // Tombstones first: a re-created collection must never inherit old tombstones.
        self.client
            .delete_collection(&naming::tombstone_collection(ws))
            .await
            .map_err(|e| e.with_context("workspace", ws))?;
        self.client
            .delete_collection(&naming::content_collection(ws))
            .await
            .map_err(|e| e.with_context("workspace", ws))?;
        self.forget(ws);
        Ok(())
    }

    async fn upsert(&self, ws: &WorkspaceId, docs: &[ContentDocument]) -> Result<WriteOutcome> {
        for d in docs {
            d.key().ensure_workspace(ws)?;
        }
        self.with_handles(ws, |h| {
            Box::pin(async move { self.upsert_in(ws, &h, docs).await })
        })
        .await
    }

    async fn delete(&self, ws: &WorkspaceId, deletes: &[ContentDelete]) -> Result<WriteOutcome> {
        for d in deletes {
            d.key.ensure_workspace(ws)?;
        }
        self.with_handles(ws, |h| {
            Box::pin(async move { self.delete_in(ws, &h, deletes).await })
        })
        .await
    }

    async fn get(&self, ws: &WorkspaceId, keys: &[MessageKey]) -> Result<Vec<ContentDocument>> {
        for k in keys {
            k.ensure_workspace(ws)?;
        }
        self.with_handles(ws, |h| {
            Box::pin(async move { self.get_in(ws, &h, keys).await })
        })
        .await
    }

    async fn search_vector(
        &self,
        ws: &WorkspaceId,
        query: &[f32],
        options: &SearchOptions,
    ) -> Result<Vec<ScoredKey>> {
        self.with_handles(ws, |h| {
            Box::pin(async move { self.search_in(ws, &h, query, options).await })
        })
        .await
    }

    async fn search_lexical(
        &self,
        ws: &WorkspaceId,
        _query: &str,
        _options: &SearchOptions,
    ) -> Result<Vec<ScoredKey>> {
        // No round trip: whether or not the collection exists, the answer is the same.
        Err(Error::unsupported(
            "ChromaDB has no BM25 lexical search on a single-node server; use vector search \
             (capabilities().lexical_search is false)",
        )
        .with_context("workspace", ws)
        .with_backend(BACKEND))
    }

    async fn list_versions(
        &self,
        ws: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Vec<ContentVersion>> {
        self.with_handles(ws, |h| {
            Box::pin(async move { self.list_versions_in(ws, &h, page).await })
        })
        .await
    }
}
