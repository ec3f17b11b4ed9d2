//! The content side: message text, its embedding and a lexical index, one collection per workspace.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::filter::{ContentFilter, PageRequest};
use crate::ids::{MessageKey, WorkspaceId};
use crate::message::MessageContent;

/// A document as the content store keeps it: content, embedding and version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentDocument {
    /// Text and attributes.
    pub content: MessageContent,
    /// The text's embedding; its length must equal the collection's dimension, and every value
    /// must be finite.
    pub embedding: Vec<f32>,
    /// The version of this change (the outbox id that carried it). Only grows per key.
    pub version: u64,
}

impl ContentDocument {
    /// The message it belongs to.
    pub fn key(&self) -> &MessageKey {
        &self.content.key
    }

    /// Checks the embedding against the collection's dimension and for NaN/infinite values, and
    /// the text for being present (not empty or whitespace: there is nothing to search) and not
    /// over-long.
    ///
    /// # Errors
    /// `InvalidInput` naming the key.
    pub fn validate(&self, dimension: usize) -> Result<()> {
        if self.embedding.len() != dimension {
            return Err(Error::invalid_input(format!(
                "embedding has {} dimensions, the collection has {dimension}",
                self.embedding.len()
            ))
            .with_context("key", self.key()));
        }
        if let Some(i) = self.embedding.iter().position(|v| !v.is_finite()) {
            return Err(
                Error::invalid_input(format!("embedding value {i} is not finite"))
                    .with_context("key", self.key()),
            );
        }
        if self.content.text.trim().is_empty() {
            return Err(Error::invalid_input("text is empty").with_context("key", self.key()));
        }
        if self.content.text.len() > crate::message::MAX_TEXT_BYTES {
            return Err(Error::invalid_input(format!(
                "text is {} bytes, more than {}",
                self.content.text.len(),
                crate::message::MAX_TEXT_BYTES
            ))
            .with_context("key", self.key()));
        }
        Ok(())
    }
}

/// A delete of one message's content at a version: leaves a tombstone so that an older upsert
/// arriving later cannot bring it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentDelete {
    /// The message.
    pub key: MessageKey,
    /// The version of the delete.
    pub version: u64,
}

/// How a collection is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionSpec {
    /// The embedding dimension.
    pub dimension: usize,
    /// The embedder's model id: a collection never mixes two models' vectors.
    pub model_id: String,
}

/// What a collection is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionInfo {
    /// Its workspace.
    pub workspace: WorkspaceId,
    /// How it was created.
    pub spec: CollectionSpec,
    /// Live documents (tombstones not counted).
    pub documents: u64,
    /// The [index-text version](crate::INDEX_TEXT_VERSION) its documents were indexed with, as
    /// last recorded by [`ContentStore::set_index_version`] (0: never recorded, a collection
    /// from before index texts carried context).
    #[serde(default)]
    pub index_version: u32,
}

/// What a backend can do; the query layer plans around it and says what it skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentCapabilities {
    /// `search_vector` works.
    pub vector_search: bool,
    /// `search_lexical` works (BM25 or similar).
    pub lexical_search: bool,
    /// Every [`ContentFilter`] condition is supported in searches.
    pub full_filters: bool,
}

impl Default for ContentCapabilities {
    fn default() -> Self {
        ContentCapabilities {
            vector_search: true,
            lexical_search: true,
            full_filters: true,
        }
    }
}

/// How many results, and which documents may be returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchOptions {
    /// At most this many hits.
    pub k: usize,
    /// Only documents matching this filter.
    pub filter: ContentFilter,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            k: 10,
            filter: ContentFilter::default(),
        }
    }
}

impl SearchOptions {
    /// The top `k`, unfiltered.
    pub fn top(k: usize) -> Self {
        SearchOptions {
            k,
            filter: ContentFilter::default(),
        }
    }

    /// The same with a filter.
    pub fn with_filter(mut self, filter: ContentFilter) -> Self {
        self.filter = filter;
        self
    }
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredKey {
    /// The message.
    pub key: MessageKey,
    /// Higher is better: cosine similarity for vector search, BM25 for lexical search.
    pub score: f32,
}

/// What an upsert or delete did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// Documents written or deleted.
    pub applied: u64,
    /// Changes ignored because the store holds the same or a newer version (redelivery, a late
    /// retry): the store is unchanged by them.
    pub stale: u64,
}

/// A key's stored version, as reconcile compares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentVersion {
    /// The message.
    pub key: MessageKey,
    /// Its version.
    pub version: u64,
    /// The hash of its content ([`MessageContent::content_hash`]).
    pub content_hash: String,
}

/// The content store: per-workspace collections of message text, embeddings and a lexical index.
///
/// Contract shared by every method:
/// - Every call names one workspace and reads or writes only its collection; a key naming another
///   workspace is `InvalidInput`. A collection that does not exist is `NotFound` (except where a
///   method says otherwise).
/// - Writes are **versioned**: a key keeps the highest version it has seen (a delete leaves a
///   tombstone at its version); an upsert or delete at the same or a lower version is ignored and
///   counted as `stale`. So redelivery, two relays, or a late retry can never roll content back or
///   resurrect it, and every write is idempotent.
/// - A batch is atomic for readers: a search sees all of it or none of it. A write is durable when
///   the call returns.
/// - Results are sorted by descending score; ties are broken by key so results are deterministic.
///
/// Backends: `chatvault-storage-vector` (tantivy + HNSW) and the in-memory reference store in
/// `chatvault_core::testing`. Every backend passes `chatvault_core::testing::content_store_suite`.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait ContentStore: Send + Sync + std::fmt::Debug + 'static {
    /// The backend's name (`"tantivy-hnsw"`, `"chroma"`, `"memory"`).
    fn backend(&self) -> &'static str;

    /// What this backend can do.
    fn capabilities(&self) -> ContentCapabilities {
        ContentCapabilities::default()
    }

    /// Creates the workspace's collection. Idempotent when it exists with the same spec.
    ///
    /// # Errors
    /// `Conflict` if it exists with another dimension or model; `InvalidInput` for dimension 0.
    async fn create_collection(&self, workspace: &WorkspaceId, spec: &CollectionSpec)
        -> Result<()>;

    /// The workspace's collection, or `None`.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn collection_info(&self, workspace: &WorkspaceId) -> Result<Option<CollectionInfo>>;

    /// All collections, ordered by workspace.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn list_collections(&self) -> Result<Vec<CollectionInfo>>;

    /// Records the [index-text version](crate::INDEX_TEXT_VERSION) the collection's documents
    /// are (or, once the outbox has delivered a migration, will be) indexed with; returned as
    /// [`CollectionInfo::index_version`] from then on, by this and every later handle. Durable
    /// when the call returns.
    ///
    /// # Errors
    /// `NotFound` (no collection); `Unavailable`/`Backend` when the store fails.
    async fn set_index_version(&self, workspace: &WorkspaceId, version: u32) -> Result<()>;

    /// Drops the workspace's collection and frees its space. Dropping a missing one succeeds.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn drop_collection(&self, workspace: &WorkspaceId) -> Result<()>;

    /// Writes documents (versioned, see the trait doc). Lexical search indexes each document's
    /// [index text](crate::MessageContent::index_text) (its context and text); `get` returns the
    /// text and the context as written. Atomic: on error nothing of the batch is
    /// written. The same key twice in one batch: the higher version wins.
    ///
    /// # Errors
    /// `InvalidInput` naming the key (wrong dimension, non-finite values, oversized text, key of
    /// another workspace); `NotFound` (no collection).
    async fn upsert(
        &self,
        workspace: &WorkspaceId,
        docs: &[ContentDocument],
    ) -> Result<WriteOutcome>;

    /// Deletes documents (versioned tombstones). Deleting a key never stored still records the
    /// tombstone and counts as applied.
    ///
    /// # Errors
    /// `InvalidInput` (key of another workspace); `NotFound` (no collection).
    async fn delete(
        &self,
        workspace: &WorkspaceId,
        deletes: &[ContentDelete],
    ) -> Result<WriteOutcome>;

    /// The live documents with these keys, in the order of `keys`; missing and deleted keys are
    /// left out.
    ///
    /// # Errors
    /// `InvalidInput` (key of another workspace); `NotFound` (no collection).
    async fn get(
        &self,
        workspace: &WorkspaceId,
        keys: &[MessageKey],
    ) -> Result<Vec<ContentDocument>>;

    /// The `k` live documents most similar (cosine) to `query` among those matching the filter.
    /// Exact when the filter leaves few candidates; otherwise approximate with high recall.
    ///
    /// # Errors
    /// `InvalidInput` (wrong dimension, non-finite query); `NotFound` (no collection);
    /// `Unsupported` if the backend has no vector search.
    async fn search_vector(
        &self,
        workspace: &WorkspaceId,
        query: &[f32],
        options: &SearchOptions,
    ) -> Result<Vec<ScoredKey>>;

    /// The `k` live documents best matching `query` by BM25 among those matching the filter. Words
    /// are matched case-insensitively; an empty query returns nothing.
    ///
    /// # Errors
    /// `NotFound` (no collection); `Unsupported` if the backend has no lexical search.
    async fn search_lexical(
        &self,
        workspace: &WorkspaceId,
        query: &str,
        options: &SearchOptions,
    ) -> Result<Vec<ScoredKey>>;

    /// Live keys with their versions and content hashes, ordered by key (channel, then ts), after
    /// `page.after` — for reconcile.
    ///
    /// # Errors
    /// `NotFound` (no collection).
    async fn list_versions(
        &self,
        workspace: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Vec<ContentVersion>>;
}
