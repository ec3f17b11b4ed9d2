//! A synthetic archive loaded through the real write path, for the benches that run the server
//! or the query engine over a large archive (`serve_load`, `web_pages`, `ask_latency`): the
//! embedded default's stores (SQLite metadata, the vector store with its graph) in a directory,
//! filled by [`message_batch`]es, delivered by the relay, graph built.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chatvault_collector::{Relay, RelayOptions};
use chatvault_core::{
    CollectionSpec, ContentStore, Embedder, Error, HashingEmbedder, MetadataStore, Result,
    Workspace, WorkspaceId, WriteBatch,
};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};

use crate::{message_batch, sqlite_store, workspace, workspace_batch, Vocabulary};

/// Messages per metadata transaction while loading.
const APPLY_BATCH: usize = 5_000;

/// The loaded archive.
#[derive(Debug)]
pub struct Preloaded {
    /// The workspace ([`workspace`]).
    pub ws: WorkspaceId,
    /// Its metadata store (SQLite under the directory).
    pub meta: Arc<dyn MetadataStore>,
    /// Its content store (the vector store under the directory).
    pub content: Arc<dyn ContentStore>,
    /// The vocabulary the messages were written from (queries drawn from it find them).
    pub vocab: Vocabulary,
}

/// Loads `n` synthetic messages (and then the `extra` batches) into fresh stores under `dir`,
/// embedding them with `embedder` through the relay, and waits until the graph covers them.
/// Prints how long it took, prefixed by `label`.
///
/// # Errors
/// The stores' and the embedder's.
pub async fn preload(
    dir: &Path,
    label: &str,
    n: usize,
    embedder: Arc<dyn Embedder>,
    extra: Vec<WriteBatch>,
) -> Result<Preloaded> {
    let ws = workspace();
    let store = VectorStore::open(dir.join("vectors"), VectorStoreOptions::default())?;
    let content: Arc<dyn ContentStore> = Arc::new(store.clone());
    let meta: Arc<dyn MetadataStore> = Arc::new(sqlite_store(dir).await?);
    let started = Instant::now();
    let mut w = Workspace::new(ws.clone(), "bench");
    w.domain = Some("bench".into());
    meta.upsert_workspace(&w).await?;
    meta.apply(workspace_batch(&ws)).await?;
    content
        .create_collection(
            &ws,
            &CollectionSpec {
                dimension: embedder.dimension(),
                model_id: embedder.model_id().to_string(),
            },
        )
        .await?;
    let vocab = Vocabulary::new(1);
    let mut from = 0;
    while from < n {
        let count = APPLY_BATCH.min(n - from);
        meta.apply(message_batch(&ws, &vocab, from, count)).await?;
        from += count;
    }
    let extra_messages: usize = extra.iter().map(|b| b.messages.len()).sum();
    for batch in extra {
        meta.apply(batch).await?;
    }
    // the real write path: the relay embeds and delivers what the batches enqueued
    Relay::new(
        meta.clone(),
        content.clone(),
        embedder,
        RelayOptions::default(),
    )
    .drain()
    .await?;
    store.wait_for_graph(&ws)?;
    eprintln!(
        "{label}: {} messages loaded, delivered and indexed in {:.1} s",
        n + extra_messages,
        started.elapsed().as_secs_f64()
    );
    Ok(Preloaded {
        ws,
        meta,
        content,
        vocab,
    })
}

/// The hashing embedder under another model's name: preloads a collection the model's
/// embedder will accept, without spending minutes embedding synthetic text with the model.
#[derive(Debug)]
struct Relabelled {
    inner: HashingEmbedder,
    model_id: String,
}

#[async_trait::async_trait]
impl Embedder for Relabelled {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.inner.embed(texts).await
    }
}

/// The embedders of a bench, chosen by `CHATVAULT_BENCH_EMBEDDER`.
#[derive(Debug, Clone)]
pub struct BenchEmbedders {
    /// What embeds queries (and, in a server, new messages).
    pub query: Arc<dyn Embedder>,
    /// What the preload writes the vectors with.
    pub preload: Arc<dyn Embedder>,
    /// The model's name.
    pub name: String,
}

/// `CHATVAULT_BENCH_EMBEDDER`: `hashing` (default, the built-in 384-d hashing embedder for
/// everything) or `minilm` (all-MiniLM-L6-v2 from `CHATVAULT_MODEL_DIR` embeds queries; the
/// preloaded vectors are the hashing embedder's under the model's name, since embedding 100,000
/// texts with the model would take 10 minutes on 2 cores: searches then pay the model's query
/// embedding and walk a graph of the same size, but result quality means nothing).
///
/// # Errors
/// `InvalidInput` for another value or a missing model directory; the model's loading errors.
pub fn bench_embedders() -> Result<BenchEmbedders> {
    let hashing = HashingEmbedder::new(384)?;
    match std::env::var("CHATVAULT_BENCH_EMBEDDER").as_deref() {
        Ok("minilm") => {
            let dir = std::env::var(chatvault_embed::MODEL_DIR_ENV).map_err(|_| {
                Error::invalid_input(format!(
                    "CHATVAULT_BENCH_EMBEDDER=minilm needs {} (scripts/fetch-model.sh)",
                    chatvault_embed::MODEL_DIR_ENV
                ))
            })?;
            let model = chatvault_embed::MiniLmEmbedder::from_dir(&dir)?;
            let name = model.model_id().to_string();
            let preload = Relabelled {
                inner: hashing,
                model_id: name.clone(),
            };
            Ok(BenchEmbedders {
                query: Arc::new(model),
                preload: Arc::new(preload),
                name,
            })
        }
        Ok("hashing") | Err(_) => {
            let name = hashing.model_id().to_string();
            let e: Arc<dyn Embedder> = Arc::new(hashing);
            Ok(BenchEmbedders {
                query: e.clone(),
                preload: e,
                name,
            })
        }
        Ok(other) => Err(Error::invalid_input(format!(
            "CHATVAULT_BENCH_EMBEDDER={other:?}: use hashing or minilm"
        ))),
    }
}
