//! Metadata in PostgreSQL, content in the in-process index.
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run -p chatvault-examples --example postgres`

use std::sync::Arc;

use chatvault_collector::{Collector, ImportOptions, Relay, RelayOptions};
use chatvault_core::{Error, HashingEmbedder, MetadataStore, WorkspaceId};
use chatvault_query::{QueryEngine, SearchRequest};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};

#[tokio::main]
async fn main() -> chatvault_core::Result<()> {
    let url = std::env::var("DATABASE_URL").map_err(|_| {
        Error::invalid_input("set DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/postgres")
    })?;
    // Migrations run on connect; the same schema serves SQLite.
    let meta = Arc::new(SqlMetadataStore::connect(&url, ConnectOptions::default()).await?);
    println!("connected to {}", meta.backend());

    let dir = std::env::temp_dir().join(format!("chatvault-pg-example-{}", std::process::id()));
    let content = Arc::new(VectorStore::open(&dir, VectorStoreOptions::default())?);
    let embedder = Arc::new(HashingEmbedder::new(384)?);

    let ws = WorkspaceId::new("pg-example-testarchive")?;
    let export = chatvault_examples::sample_export().join("../slack-export-viewer-testarchive");
    let summary = Collector::new(meta.clone(), ws.clone())
        .import_export(&export, ImportOptions::default())
        .await?;
    let relay = Relay::new(
        meta.clone(),
        content.clone(),
        embedder.clone(),
        RelayOptions::default(),
    )
    .drain()
    .await?;
    println!(
        "{} messages in PostgreSQL, {} documents delivered to {}",
        summary.totals.messages,
        relay.acked,
        dir.display()
    );

    let engine = QueryEngine::new(meta.clone(), content, embedder);
    let response = engine
        .search(&ws, SearchRequest::new("sailing weather").limit(3))
        .await?;
    for hit in response.hits {
        println!(
            "{} {}: {}",
            hit.message.channel_label(),
            hit.message.author_label(),
            hit.snippet.marked
        );
    }
    // Leave the database as we found it.
    meta.delete_workspace(&ws).await?;
    Ok(())
}
