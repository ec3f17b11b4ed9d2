//! Opening the stores as a command needs them: read-only for the commands that only read, as the
//! workspace's one writer for the others.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatvault_collector::{Relay, RelayOptions};
use chatvault_core::{MetadataStore, Result, TimeRange, WorkspaceId};
use chatvault_examples::{
    open_all, parse_time, resolve_user, resolve_workspace, Access, EmbedderChoice, StorageConfig,
    Stores,
};
use chatvault_query::{QueryEngine, Scope};

use crate::cli::{EmbedderArg, Global, ScopeArgs};
use crate::output::Bars;

pub(crate) fn storage(g: &Global) -> StorageConfig {
    StorageConfig {
        data_dir: g.data_dir.clone(),
        database_url: g.database_url.clone(),
        chroma_url: g.chroma_url.clone(),
    }
}

pub(crate) fn embedder_choice(g: &Global) -> EmbedderChoice {
    match g.embedder {
        EmbedderArg::Auto => EmbedderChoice::Auto,
        EmbedderArg::Minilm => EmbedderChoice::MiniLm,
        EmbedderArg::Hashing => EmbedderChoice::Hashing,
    }
}

/// The metadata stores opened for writing, closed (flushed) when the command ends.
pub(crate) static WRITERS: Mutex<Vec<Arc<dyn MetadataStore>>> = Mutex::new(Vec::new());

/// Closes the stores opened for writing: SQLite folds its write-ahead log into the database
/// file, so a copy or a read-only mount of the data directory holds every commit.
pub(crate) async fn close_writers() -> Result<()> {
    let writers: Vec<_> = WRITERS
        .lock()
        .map(|mut w| w.drain(..).collect())
        .unwrap_or_default();
    let mut result = Ok(());
    for w in writers {
        result = result.and(w.close().await);
    }
    result
}

/// Opens both stores and the embedder for `ws` as the global options say.
pub(crate) async fn open_for(
    g: &Global,
    config: &StorageConfig,
    ws: &WorkspaceId,
    access: Access,
) -> Result<Stores> {
    let stores = open_all(
        config,
        embedder_choice(g),
        g.model_dir.as_deref(),
        Some(ws),
        access,
    )
    .await?;
    if access != Access::Read {
        if let Ok(mut w) = WRITERS.lock() {
            w.push(stores.meta.clone());
        }
    }
    Ok(stores)
}

/// How a writing command opens the stores: as the workspace's one writer, waiting `--wait`.
pub(crate) fn write_access(g: &Global) -> Access {
    Access::Write {
        wait: Duration::from_secs(g.wait),
    }
}

/// As [`open_for`] with the configured storage, as the workspace's writer, telling a person (not
/// a script) which embedder writes the vectors.
pub(crate) async fn open_for_writing(g: &Global, ws: &WorkspaceId) -> Result<Stores> {
    let stores = open_for(g, &storage(g), ws, write_access(g)).await?;
    if !g.json {
        eprintln!("{}", stores.embedder_note);
    }
    Ok(stores)
}

/// Opens the stores for an existing workspace.
pub(crate) async fn open_workspace(g: &Global, access: Access) -> Result<(Stores, WorkspaceId)> {
    // Resolve the workspace first (metadata only), then pick the embedder its collection uses.
    let config = storage(g);
    let (meta, _) = match access {
        Access::Read => chatvault_examples::open_stores_read_only(&config).await?,
        Access::Write { .. } => chatvault_examples::open_stores(&config).await?,
    };
    let ws = resolve_workspace(meta.as_ref(), g.workspace.as_deref()).await?;
    drop(meta);
    let stores = open_for(g, &config, &ws, access).await?;
    Ok((stores, ws))
}

pub(crate) fn engine(stores: &Stores) -> QueryEngine {
    QueryEngine::new(
        stores.meta.clone(),
        stores.content.clone(),
        stores.embedder.clone(),
    )
}

pub(crate) async fn resolve_scope(
    stores: &Stores,
    ws: &WorkspaceId,
    scope: &ScopeArgs,
) -> Result<Scope> {
    if scope.admin {
        return Ok(Scope::Admin);
    }
    match &scope.viewer {
        Some(v) => Ok(Scope::User(
            resolve_user(stores.meta.as_ref(), ws, v).await?,
        )),
        None => Ok(Scope::Public),
    }
}

pub(crate) fn range(since: Option<&str>, until: Option<&str>) -> Result<TimeRange> {
    Ok(TimeRange {
        start: since.map(parse_time).transpose()?,
        end: until.map(parse_time).transpose()?,
    })
}

pub(crate) async fn relay_all(
    stores: &Stores,
    ws: &WorkspaceId,
    bars: &Arc<Bars>,
) -> Result<chatvault_collector::RelayReport> {
    let relay = Relay::new(
        stores.meta.clone(),
        stores.content.clone(),
        stores.embedder.clone(),
        RelayOptions {
            workspace: Some(ws.clone()),
            ..Default::default()
        },
    )
    .with_progress(bars.clone());
    relay.drain().await
}
