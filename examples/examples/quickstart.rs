//! The embedded default: SQLite + the in-process vector/BM25 index under one data directory.
//! Ingests the bundled sample export and runs a hybrid search.
//!
//! `cargo run -p chatvault-examples --example quickstart`

use std::sync::Arc;

use chatvault_collector::{Collector, ImportOptions, Relay, RelayOptions};
use chatvault_core::{HashingEmbedder, WorkspaceId};
use chatvault_query::{QueryEngine, SearchRequest};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};

#[tokio::main]
async fn main() -> chatvault_core::Result<()> {
    let dir = std::env::temp_dir().join(format!("chatvault-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| chatvault_core::Error::unavailable(e.to_string()))?;
    let meta = Arc::new(
        SqlMetadataStore::open_sqlite(dir.join("metadata.db"), ConnectOptions::default()).await?,
    );
    let content = Arc::new(VectorStore::open(
        dir.join("content"),
        VectorStoreOptions::default(),
    )?);
    let embedder = Arc::new(HashingEmbedder::new(384)?); // or chatvault_embed::MiniLmEmbedder::from_env()?

    let ws = WorkspaceId::new("houstondatavis")?;
    let summary = Collector::new(meta.clone(), ws.clone())
        .import_export(
            chatvault_examples::sample_export(),
            ImportOptions::default(),
        )
        .await?;
    Relay::new(
        meta.clone(),
        content.clone(),
        embedder.clone(),
        RelayOptions::default(),
    )
    .drain()
    .await?;
    println!(
        "imported {} messages into {}",
        summary.totals.messages,
        dir.display()
    );

    let engine = QueryEngine::new(meta, content, embedder);
    for hit in engine
        .search(&ws, SearchRequest::new("meetup venue"))
        .await?
        .hits
    {
        println!(
            "{} {}: {}",
            hit.message.channel_label(),
            hit.message.author_label(),
            hit.snippet.marked
        );
    }
    Ok(())
}
