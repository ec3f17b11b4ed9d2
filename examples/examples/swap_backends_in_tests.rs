//! How a service that embeds chatvault tests its own code: the in-memory reference stores (feature
//! `testing` of chatvault-core) instead of SQLite and tantivy, and a mockall mock to inject a fault.
//!
//! `cargo run -p chatvault-examples --example swap_backends_in_tests`

use std::sync::Arc;

use chatvault_collector::{Collector, ImportOptions, Relay, RelayOptions};
use chatvault_core::testing::{MemoryContentStore, MemoryMetadataStore};
use chatvault_core::{
    ContentStore, Embedder, Error, HashingEmbedder, MetadataStore, MockEmbedder, WorkspaceId,
};
use chatvault_query::{QueryEngine, SearchRequest};

#[tokio::main]
async fn main() -> chatvault_core::Result<()> {
    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let content: Arc<dyn ContentStore> = Arc::new(MemoryContentStore::new());
    let ws = WorkspaceId::new("test-ws")?;
    let export = chatvault_examples::sample_export().join("../slack-export-viewer-testarchive");
    Collector::new(meta.clone(), ws.clone())
        .import_export(&export, ImportOptions::default())
        .await?;

    // 1. A mocked embedder that is down: the relay retries, then dead-letters; nothing is lost.
    let mut down = MockEmbedder::new();
    down.expect_model_id().return_const("mock".to_string());
    down.expect_dimension().return_const(8usize);
    down.expect_max_batch().return_const(64usize);
    down.expect_embed()
        .returning(|_| Err(Error::unavailable("embedding service down")));
    let mut options = RelayOptions::default();
    options.retry.max_attempts = 1;
    let report = Relay::new(meta.clone(), content.clone(), Arc::new(down), options)
        .drain()
        .await?;
    println!(
        "with the embedder down: {} delivered, {} dead-lettered",
        report.acked, report.dead_lettered
    );

    // 2. Re-queue and deliver with a working embedder.
    let n = meta.requeue_dead_letters(Some(ws.clone()), None).await?;
    let embedder: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(8)?);
    // The mock created the collection with its model id; a real service would keep one model.
    content.drop_collection(&ws).await?;
    let report = Relay::new(
        meta.clone(),
        content.clone(),
        embedder.clone(),
        RelayOptions::default(),
    )
    .drain()
    .await?;
    println!("re-queued {n}, then delivered {}", report.acked);

    let engine = QueryEngine::new(meta, content, embedder);
    let hits = engine
        .search(&ws, SearchRequest::new("weather").limit(3))
        .await?
        .hits;
    assert!(
        !hits.is_empty(),
        "the in-memory stores answer like the real ones"
    );
    println!("search works on the in-memory stores: {} hits", hits.len());
    Ok(())
}
