//! Fault injection: decorators that fail chosen calls with a retryable `Unavailable` error.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::{
    CollectionInfo, CollectionSpec, ContentCapabilities, ContentDelete, ContentDocument,
    ContentStore, ContentVersion, Embedder, Error, MessageKey, PageRequest, Result, ScoredKey,
    SearchOptions, WorkspaceId, WriteOutcome,
};

/// Which calls fail. Calls are numbered from 1, counting only the operations the decorator
/// watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailurePlan {
    /// No call fails.
    Never,
    /// Every call fails.
    Always,
    /// The first `n` calls fail, later ones succeed.
    FirstN(u64),
    /// Every `n`-th call fails (the `n`-th, `2n`-th…).
    EveryNth(u64),
    /// These calls fail.
    Calls(BTreeSet<u64>),
}

impl FailurePlan {
    /// Whether call number `n` (1-based) fails.
    pub fn fails(&self, n: u64) -> bool {
        match self {
            FailurePlan::Never => false,
            FailurePlan::Always => true,
            FailurePlan::FirstN(k) => n <= *k,
            FailurePlan::EveryNth(k) => *k > 0 && n % k == 0,
            FailurePlan::Calls(set) => set.contains(&n),
        }
    }
}

#[derive(Debug)]
struct Injector {
    plan: Mutex<FailurePlan>,
    ops: Option<Vec<&'static str>>,
    calls: AtomicU64,
    failures: AtomicU64,
}

impl Injector {
    fn new(plan: FailurePlan) -> Self {
        Injector {
            plan: Mutex::new(plan),
            ops: None,
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    fn check(&self, op: &'static str) -> Result<()> {
        if self.ops.as_ref().is_some_and(|ops| !ops.contains(&op)) {
            return Ok(());
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let fails = self
            .plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fails(n);
        if fails {
            self.failures.fetch_add(1, Ordering::SeqCst);
            Err(
                Error::unavailable(format!("injected failure of {op} (call {n})"))
                    .with_context("op", op)
                    .with_backend("failing"),
            )
        } else {
            Ok(())
        }
    }

    fn set_plan(&self, plan: FailurePlan) {
        *self.plan.lock().unwrap_or_else(PoisonError::into_inner) = plan;
    }
}

/// A [`ContentStore`] that fails the calls its [`FailurePlan`] names with a retryable
/// `Unavailable` error (before reaching the inner store, so a failed call changes nothing), and
/// passes the others through.
///
/// ```
/// use std::sync::Arc;
/// use chatvault_core::testing::{FailingContentStore, FailurePlan, MemoryContentStore};
/// use chatvault_core::{CollectionSpec, ContentStore, WorkspaceId};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> chatvault_core::Result<()> {
/// let store = FailingContentStore::new(Arc::new(MemoryContentStore::new()), FailurePlan::FirstN(1));
/// let ws = WorkspaceId::new("T1")?;
/// let spec = CollectionSpec { dimension: 4, model_id: "m".into() };
/// let err = store.create_collection(&ws, &spec).await.unwrap_err();
/// assert!(err.is_retryable());
/// store.create_collection(&ws, &spec).await?; // the retry succeeds
/// assert_eq!((store.calls(), store.failures()), (2, 1));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FailingContentStore<S: ?Sized> {
    inner: Arc<S>,
    injector: Injector,
}

impl<S: ContentStore + ?Sized> FailingContentStore<S> {
    /// Wraps `inner`, failing the calls `plan` names.
    pub fn new(inner: Arc<S>, plan: FailurePlan) -> Self {
        FailingContentStore {
            inner,
            injector: Injector::new(plan),
        }
    }

    /// Watches only these operations (method names such as `"upsert"`, `"delete"`,
    /// `"search_vector"`); the others pass through uncounted.
    pub fn only(mut self, ops: &[&'static str]) -> Self {
        self.injector.ops = Some(ops.to_vec());
        self
    }

    /// Replaces the plan (call numbering continues).
    pub fn set_plan(&self, plan: FailurePlan) {
        self.injector.set_plan(plan);
    }

    /// How many watched calls were made.
    pub fn calls(&self) -> u64 {
        self.injector.calls.load(Ordering::SeqCst)
    }

    /// How many of them failed.
    pub fn failures(&self) -> u64 {
        self.injector.failures.load(Ordering::SeqCst)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }
}

#[async_trait]
impl<S: ContentStore + ?Sized> ContentStore for FailingContentStore<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn capabilities(&self) -> ContentCapabilities {
        self.inner.capabilities()
    }

    async fn create_collection(
        &self,
        workspace: &WorkspaceId,
        spec: &CollectionSpec,
    ) -> Result<()> {
        self.injector.check("create_collection")?;
        self.inner.create_collection(workspace, spec).await
    }

    async fn collection_info(&self, workspace: &WorkspaceId) -> Result<Option<CollectionInfo>> {
        self.injector.check("collection_info")?;
        self.inner.collection_info(workspace).await
    }

    async fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        self.injector.check("list_collections")?;
        self.inner.list_collections().await
    }

    async fn set_index_version(&self, workspace: &WorkspaceId, version: u32) -> Result<()> {
        self.injector.check("set_index_version")?;
        self.inner.set_index_version(workspace, version).await
    }

    async fn drop_collection(&self, workspace: &WorkspaceId) -> Result<()> {
        self.injector.check("drop_collection")?;
        self.inner.drop_collection(workspace).await
    }

    async fn upsert(
        &self,
        workspace: &WorkspaceId,
        docs: &[ContentDocument],
    ) -> Result<WriteOutcome> {
        self.injector.check("upsert")?;
        self.inner.upsert(workspace, docs).await
    }

    async fn delete(
        &self,
        workspace: &WorkspaceId,
        deletes: &[ContentDelete],
    ) -> Result<WriteOutcome> {
        self.injector.check("delete")?;
        self.inner.delete(workspace, deletes).await
    }

    async fn get(
        &self,
        workspace: &WorkspaceId,
        keys: &[MessageKey],
    ) -> Result<Vec<ContentDocument>> {
        self.injector.check("get")?;
        self.inner.get(workspace, keys).await
    }

    async fn search_vector(
        &self,
        workspace: &WorkspaceId,
        query: &[f32],
        options: &SearchOptions,
    ) -> Result<Vec<ScoredKey>> {
        self.injector.check("search_vector")?;
        self.inner.search_vector(workspace, query, options).await
    }

    async fn search_lexical(
        &self,
        workspace: &WorkspaceId,
        query: &str,
        options: &SearchOptions,
    ) -> Result<Vec<ScoredKey>> {
        self.injector.check("search_lexical")?;
        self.inner.search_lexical(workspace, query, options).await
    }

    async fn list_versions(
        &self,
        workspace: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Vec<ContentVersion>> {
        self.injector.check("list_versions")?;
        self.inner.list_versions(workspace, page).await
    }
}

/// An [`Embedder`] that fails the `embed` calls its [`FailurePlan`] names with a retryable
/// `Unavailable` error, and passes the others through.
///
/// ```
/// use std::sync::Arc;
/// use chatvault_core::testing::{FailingEmbedder, FailurePlan};
/// use chatvault_core::{Embedder, HashingEmbedder};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> chatvault_core::Result<()> {
/// let e = FailingEmbedder::new(Arc::new(HashingEmbedder::new(8)?), FailurePlan::EveryNth(2));
/// let texts = vec!["hi".to_string()];
/// assert!(e.embed(&texts).await.is_ok());
/// assert!(e.embed(&texts).await.unwrap_err().is_retryable());
/// assert_eq!(e.calls(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FailingEmbedder<E: ?Sized> {
    inner: Arc<E>,
    injector: Injector,
}

impl<E: Embedder + ?Sized> FailingEmbedder<E> {
    /// Wraps `inner`, failing the `embed` calls `plan` names.
    pub fn new(inner: Arc<E>, plan: FailurePlan) -> Self {
        FailingEmbedder {
            inner,
            injector: Injector::new(plan),
        }
    }

    /// Replaces the plan (call numbering continues).
    pub fn set_plan(&self, plan: FailurePlan) {
        self.injector.set_plan(plan);
    }

    /// How many `embed` calls were made.
    pub fn calls(&self) -> u64 {
        self.injector.calls.load(Ordering::SeqCst)
    }

    /// How many of them failed.
    pub fn failures(&self) -> u64 {
        self.injector.failures.load(Ordering::SeqCst)
    }

    /// The wrapped embedder.
    pub fn inner(&self) -> &Arc<E> {
        &self.inner
    }
}

#[async_trait]
impl<E: Embedder + ?Sized> Embedder for FailingEmbedder<E> {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.injector.check("embed")?;
        self.inner.embed(texts).await
    }

    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        self.injector.check("embed")?;
        self.inner.embed_query(query).await
    }
}
