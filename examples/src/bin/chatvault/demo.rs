//! `chatvault demo`: the bundled sample export ingested into a fresh data directory, then a few
//! searches.

use std::path::PathBuf;

use chatvault_collector::ImportOptions;
use chatvault_core::{Error, Result, WorkspaceId};
use chatvault_examples::{sample_export, StorageConfig};
use chatvault_query::SearchRequest;
use clap::Args;

use crate::cli::Global;
use crate::ingest::ingest;
use crate::search::print_search;
use crate::stores::{engine, open_for, write_access};

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Where to put the data (default: a new temporary directory).
    #[arg(long)]
    into: Option<PathBuf>,
}

pub(crate) async fn run(g: &Global, args: &DemoArgs) -> Result<()> {
    let dir = match args.into.clone() {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("chatvault-demo-{}", std::process::id())),
    };
    if dir.join("metadata.db").exists() {
        return Err(Error::invalid_input(format!(
            "{} already holds a chatvault data directory: the demo wants a fresh one (pass another --into)",
            dir.display()
        )));
    }
    let config = StorageConfig {
        data_dir: dir.clone(),
        database_url: g.database_url.clone(),
        chroma_url: g.chroma_url.clone(),
    };
    let ws = WorkspaceId::new("houstondatavis")?;
    let stores = open_for(g, &config, &ws, write_access(g)).await?;
    out!("data directory: {}", dir.display());
    out!("{}", stores.embedder_note);
    let export = sample_export();
    ingest(g, &stores, &ws, &export, ImportOptions::default()).await?;
    let engine = engine(&stores);
    for query in [
        "where is the next meetup",
        "d3 tutorial for beginners",
        "python library for interactive maps",
    ] {
        out!("\n=== hybrid search: {query:?}");
        let response = engine
            .search(&ws, SearchRequest::new(query).limit(3))
            .await?;
        print_search(query, &response);
    }
    out!(
        "\nTry more: cargo run -p chatvault-examples --bin chatvault -- --data-dir {} search \"<words>\"",
        dir.display()
    );
    Ok(())
}
