//! [`MemoryContentStore`]: the in-memory reference [`ContentStore`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;

use crate::{
    cosine, CollectionInfo, CollectionSpec, ContentDelete, ContentDocument, ContentStore,
    ContentVersion, Error, MessageKey, PageRequest, Result, ScoredKey, SearchOptions, WorkspaceId,
    WriteOutcome,
};

const BACKEND: &str = "memory";

/// BM25 term-frequency saturation.
const BM25_K1: f32 = 1.2;
/// BM25 length normalisation.
const BM25_B: f32 = 0.75;

/// The in-memory reference [`ContentStore`]: exact cosine search over every live document, real
/// BM25 lexical search (lowercased Unicode word tokens, k1 = 1.2, b = 0.75, Lucene's idf), the
/// reference filter semantics of [`ContentFilter::matches`](crate::ContentFilter::matches), and
/// versioned writes with tombstones.
///
/// Searches scan every document: meant for tests, examples and small data. It passes
/// [`content_store_suite`](crate::testing::content_store_suite).
///
/// ```
/// use chatvault_core::testing::MemoryContentStore;
/// use chatvault_core::{CollectionSpec, ContentStore, WorkspaceId};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> chatvault_core::Result<()> {
/// let store = MemoryContentStore::new();
/// let ws = WorkspaceId::new("T1")?;
/// store.create_collection(&ws, &CollectionSpec { dimension: 8, model_id: "m".into() }).await?;
/// assert_eq!(store.collection_info(&ws).await?.map(|c| c.documents), Some(0));
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct MemoryContentStore {
    collections: RwLock<BTreeMap<WorkspaceId, Collection>>,
}

impl fmt::Debug for MemoryContentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryContentStore")
            .field("collections", &self.read().len())
            .finish()
    }
}

struct Collection {
    spec: CollectionSpec,
    /// Ordered by key, i.e. (channel, ts).
    entries: BTreeMap<MessageKey, Entry>,
    index_version: u32,
}

enum Entry {
    Live(Box<Live>),
    Tombstone(u64),
}

/// A live document with its lexical index entry: term frequencies and length in tokens.
struct Live {
    doc: ContentDocument,
    term_freqs: HashMap<String, u32>,
    len: usize,
}

impl Live {
    fn new(doc: ContentDocument) -> Self {
        let tokens = tokenize(&doc.content.index_text());
        let len = tokens.len();
        let mut term_freqs: HashMap<String, u32> = HashMap::new();
        for t in tokens {
            *term_freqs.entry(t).or_default() += 1;
        }
        Live {
            doc,
            term_freqs,
            len,
        }
    }
}

impl Entry {
    fn version(&self) -> u64 {
        match self {
            Entry::Live(l) => l.doc.version,
            Entry::Tombstone(v) => *v,
        }
    }
}

impl Collection {
    fn live(&self) -> impl Iterator<Item = &ContentDocument> {
        self.indexed().map(|l| &l.doc)
    }

    fn indexed(&self) -> impl Iterator<Item = &Live> {
        self.entries.values().filter_map(|e| match e {
            Entry::Live(l) => Some(&**l),
            Entry::Tombstone(_) => None,
        })
    }

    fn stored_version(&self, key: &MessageKey) -> Option<u64> {
        self.entries.get(key).map(Entry::version)
    }
}

/// Splits text into lowercased Unicode words: runs of alphanumeric characters.
fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn no_collection(ws: &WorkspaceId) -> Error {
    Error::not_found(format!("workspace {ws} has no content collection"))
        .with_context("workspace", ws)
        .with_backend(BACKEND)
}

fn check_key(ws: &WorkspaceId, key: &MessageKey) -> Result<()> {
    key.ensure_workspace(ws)
        .map_err(|e| e.with_context("key", key).with_backend(BACKEND))
}

fn rank(mut hits: Vec<ScoredKey>, k: usize) -> Vec<ScoredKey> {
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key)));
    hits.truncate(k);
    hits
}

impl MemoryContentStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<WorkspaceId, Collection>> {
        self.collections
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<WorkspaceId, Collection>> {
        self.collections
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl ContentStore for MemoryContentStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn create_collection(
        &self,
        workspace: &WorkspaceId,
        spec: &CollectionSpec,
    ) -> Result<()> {
        if spec.dimension == 0 {
            return Err(
                Error::invalid_input("collection dimension must be at least 1")
                    .with_context("workspace", workspace)
                    .with_backend(BACKEND),
            );
        }
        let mut cols = self.write();
        match cols.get(workspace) {
            Some(c) if &c.spec == spec => Ok(()),
            Some(c) => Err(Error::conflict(format!(
                "collection exists with dimension {} and model {:?}; asked for dimension {} and model {:?}",
                c.spec.dimension, c.spec.model_id, spec.dimension, spec.model_id
            ))
            .with_context("workspace", workspace)
            .with_backend(BACKEND)),
            None => {
                cols.insert(
                    workspace.clone(),
                    Collection {
                        spec: spec.clone(),
                        entries: BTreeMap::new(),
                        index_version: 0,
                    },
                );
                Ok(())
            }
        }
    }

    async fn collection_info(&self, workspace: &WorkspaceId) -> Result<Option<CollectionInfo>> {
        Ok(self.read().get(workspace).map(|c| CollectionInfo {
            workspace: workspace.clone(),
            spec: c.spec.clone(),
            documents: c.live().count() as u64,
            index_version: c.index_version,
        }))
    }

    async fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        Ok(self
            .read()
            .iter()
            .map(|(ws, c)| CollectionInfo {
                workspace: ws.clone(),
                spec: c.spec.clone(),
                documents: c.live().count() as u64,
                index_version: c.index_version,
            })
            .collect())
    }

    async fn set_index_version(&self, workspace: &WorkspaceId, version: u32) -> Result<()> {
        match self.write().get_mut(workspace) {
            Some(c) => {
                c.index_version = version;
                Ok(())
            }
            None => Err(
                Error::not_found(format!("no collection for workspace {workspace}"))
                    .with_context("workspace", workspace)
                    .with_backend(BACKEND),
            ),
        }
    }

    async fn drop_collection(&self, workspace: &WorkspaceId) -> Result<()> {
        self.write().remove(workspace);
        Ok(())
    }

    async fn upsert(
        &self,
        workspace: &WorkspaceId,
        docs: &[ContentDocument],
    ) -> Result<WriteOutcome> {
        let mut cols = self.write();
        let col = cols
            .get_mut(workspace)
            .ok_or_else(|| no_collection(workspace))?;
        for d in docs {
            check_key(workspace, d.key())?;
            d.validate(col.spec.dimension)
                .map_err(|e| e.with_backend(BACKEND))?;
        }
        // The same key twice in a batch: the highest version wins, the others are stale.
        let mut best: HashMap<&MessageKey, &ContentDocument> = HashMap::new();
        for d in docs {
            let e = best.entry(d.key()).or_insert(d);
            if d.version > e.version {
                *e = d;
            }
        }
        let mut out = WriteOutcome {
            stale: (docs.len() - best.len()) as u64,
            ..Default::default()
        };
        for (key, d) in best {
            if col.stored_version(key).is_some_and(|v| d.version <= v) {
                out.stale += 1;
            } else {
                col.entries
                    .insert(key.clone(), Entry::Live(Box::new(Live::new(d.clone()))));
                out.applied += 1;
            }
        }
        Ok(out)
    }

    async fn delete(
        &self,
        workspace: &WorkspaceId,
        deletes: &[ContentDelete],
    ) -> Result<WriteOutcome> {
        let mut cols = self.write();
        let col = cols
            .get_mut(workspace)
            .ok_or_else(|| no_collection(workspace))?;
        for d in deletes {
            check_key(workspace, &d.key)?;
        }
        let mut out = WriteOutcome::default();
        for d in deletes {
            if col.stored_version(&d.key).is_some_and(|v| d.version <= v) {
                out.stale += 1;
            } else {
                col.entries
                    .insert(d.key.clone(), Entry::Tombstone(d.version));
                out.applied += 1;
            }
        }
        Ok(out)
    }

    async fn get(
        &self,
        workspace: &WorkspaceId,
        keys: &[MessageKey],
    ) -> Result<Vec<ContentDocument>> {
        let cols = self.read();
        let col = cols
            .get(workspace)
            .ok_or_else(|| no_collection(workspace))?;
        for k in keys {
            check_key(workspace, k)?;
        }
        Ok(keys
            .iter()
            .filter_map(|k| match col.entries.get(k) {
                Some(Entry::Live(l)) => Some(l.doc.clone()),
                _ => None,
            })
            .collect())
    }

    async fn search_vector(
        &self,
        workspace: &WorkspaceId,
        query: &[f32],
        options: &SearchOptions,
    ) -> Result<Vec<ScoredKey>> {
        let cols = self.read();
        let col = cols
            .get(workspace)
            .ok_or_else(|| no_collection(workspace))?;
        if query.len() != col.spec.dimension {
            return Err(Error::invalid_input(format!(
                "query vector has {} dimensions, the collection has {}",
                query.len(),
                col.spec.dimension
            ))
            .with_context("workspace", workspace)
            .with_backend(BACKEND));
        }
        if let Some(i) = query.iter().position(|v| !v.is_finite()) {
            return Err(
                Error::invalid_input(format!("query vector value {i} is not finite"))
                    .with_context("workspace", workspace)
                    .with_backend(BACKEND),
            );
        }
        let hits = col
            .live()
            .filter(|d| options.filter.matches(d.key(), &d.content.attributes))
            .map(|d| ScoredKey {
                key: d.key().clone(),
                score: cosine(query, &d.embedding),
            })
            .collect();
        Ok(rank(hits, options.k))
    }

    async fn search_lexical(
        &self,
        workspace: &WorkspaceId,
        query: &str,
        options: &SearchOptions,
    ) -> Result<Vec<ScoredKey>> {
        let cols = self.read();
        let col = cols
            .get(workspace)
            .ok_or_else(|| no_collection(workspace))?;
        let mut terms = tokenize(query);
        terms.sort();
        terms.dedup();
        if terms.is_empty() || options.k == 0 {
            return Ok(Vec::new());
        }
        // Corpus statistics over every live document of the collection (as an inverted index
        // keeps them), scores only for the filtered ones.
        let docs: Vec<&Live> = col.indexed().collect();
        let n = docs.len() as f32;
        let avgdl = if docs.is_empty() {
            1.0
        } else {
            (docs.iter().map(|l| l.len).sum::<usize>() as f32 / n).max(1e-6)
        };
        let idf: Vec<f32> = terms
            .iter()
            .map(|t| {
                let df = docs.iter().filter(|l| l.term_freqs.contains_key(t)).count() as f32;
                (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
            })
            .collect();
        let mut hits = Vec::new();
        for l in docs {
            let d = &l.doc;
            if !options.filter.matches(d.key(), &d.content.attributes) {
                continue;
            }
            let dl = l.len as f32;
            let mut score = 0f32;
            let mut matched = false;
            for (t, idf) in terms.iter().zip(&idf) {
                let tf = l.term_freqs.get(t).copied().unwrap_or(0) as f32;
                if tf > 0.0 {
                    matched = true;
                    score += idf * tf * (BM25_K1 + 1.0)
                        / (tf + BM25_K1 * (1.0 - BM25_B + BM25_B * dl / avgdl));
                }
            }
            if matched {
                hits.push(ScoredKey {
                    key: d.key().clone(),
                    score,
                });
            }
        }
        Ok(rank(hits, options.k))
    }

    async fn list_versions(
        &self,
        workspace: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Vec<ContentVersion>> {
        let cols = self.read();
        let col = cols
            .get(workspace)
            .ok_or_else(|| no_collection(workspace))?;
        Ok(col
            .live()
            .filter(|d| {
                page.after
                    .as_ref()
                    .is_none_or(|a| (&d.key().channel, &d.key().ts) > (&a.channel, &a.ts))
            })
            .take(page.limit)
            .map(|d| ContentVersion {
                key: d.key().clone(),
                version: d.version,
                content_hash: d.content.content_hash(),
            })
            .collect())
    }
}
