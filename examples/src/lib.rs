//! # chatvault-examples
//!
//! The `chatvault` command-line program and the runnable examples. This library holds what they
//! share: opening the stores from a data directory or a database URL, choosing the embedder, and
//! resolving names a person types (`#general`, `ann`) into ids.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chatvault_core::{
    ChannelId, ContentStore, Embedder, Error, ErrorKind, HashingEmbedder, MetadataStore, Result,
    WorkspaceId,
};
use chatvault_embed::MiniLmEmbedder;
use chatvault_storage_chroma::{ChromaContentStore, ChromaOptions};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};

/// The dimension of the built-in hashing embedder: the same as all-MiniLM-L6-v2's.
pub const HASHING_DIMENSION: usize = 384;

/// Where the stores live.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The data directory: the SQLite file (unless `database_url` is set) and the vector
    /// collections.
    pub data_dir: PathBuf,
    /// A `postgres://` (or `sqlite://`) URL for the metadata store instead of the SQLite file.
    pub database_url: Option<String>,
    /// A ChromaDB server (`http://host:8000`, optionally `?tenant=…&database=…`) for the content
    /// instead of the local collections; its token comes from `$CHATVAULT_CHROMA_TOKEN`.
    /// Hybrid search then runs semantic only and says so (Chroma has no BM25).
    pub chroma_url: Option<String>,
}

impl StorageConfig {
    /// Stores in `data_dir`: the SQLite file and the local collections.
    pub fn in_dir(data_dir: impl Into<PathBuf>) -> Self {
        StorageConfig {
            data_dir: data_dir.into(),
            database_url: None,
            chroma_url: None,
        }
    }
}

impl StorageConfig {
    /// The SQLite file the metadata store uses when `database_url` is not set.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("metadata.db")
    }

    /// Where the content store's collections live.
    pub fn content_dir(&self) -> PathBuf {
        self.data_dir.join("content")
    }
}

/// Which embedder to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmbedderChoice {
    /// The model if it can be found, else the hashing embedder (and say so).
    #[default]
    Auto,
    /// all-MiniLM-L6-v2 (or another sentence-transformers model directory); fail without it.
    MiniLm,
    /// The built-in hashing embedder.
    Hashing,
}

/// How a command opens the stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only: no lock, no writes, no migrations; any number of readers work beside the one
    /// writer, on a read-only data directory too.
    Read,
    /// The workspace's one writer: takes its writer lock before anything is written, waiting up
    /// to `wait` for another writer to finish.
    Write {
        /// How long to wait for another process's writer lock.
        wait: Duration,
    },
}

/// The stores and embedder a command works with.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Metadata (SQLite or PostgreSQL).
    pub meta: Arc<dyn MetadataStore>,
    /// Content (tantivy + HNSW, or a ChromaDB server).
    pub content: Arc<dyn ContentStore>,
    /// The embedder.
    pub embedder: Arc<dyn Embedder>,
    /// One line saying which embedder was picked and, for the hashing one, how to get the model.
    pub embedder_note: String,
    /// Where the writer locks live (the local content store, also with ChromaDB); `None` when
    /// opened read-only. [`LocalLocks::close`] flushes and lets the locks go.
    pub locks: Option<LocalLocks>,
}

/// The data directory's writer locks, one per workspace (see [`lock_workspaces`]). With the
/// local content store these are the store's own locks; with ChromaDB the same lock files
/// serialize the writers that share this data directory (writers on other machines sharing
/// one Chroma database are not serialized: give each its own database).
#[derive(Debug, Clone)]
pub struct LocalLocks {
    vector: VectorStore,
}

impl LocalLocks {
    /// Flushes the local collections (if they are the content store) and releases every lock.
    pub fn close(&self) {
        self.vector.close();
    }
}

/// Opens (creating when needed) the metadata store and the content store for writing. Writes
/// to a workspace also need its writer lock: [`open_all`] with [`Access::Write`] takes it.
///
/// # Errors
/// `Unavailable` when the database or ChromaDB cannot be reached; I/O errors creating the data
/// directory.
pub async fn open_stores(
    config: &StorageConfig,
) -> Result<(Arc<dyn MetadataStore>, Arc<dyn ContentStore>)> {
    let (meta, content, _) = open_stores_as(config, false).await?;
    Ok((meta, content))
}

/// Opens both stores for writing, with the data directory's writer locks (none taken yet: see
/// [`lock_workspaces`]). What `chatvault serve` runs on.
///
/// # Errors
/// As [`open_stores`].
pub async fn open_stores_for_writing(
    config: &StorageConfig,
) -> Result<(Arc<dyn MetadataStore>, Arc<dyn ContentStore>, LocalLocks)> {
    let (meta, content, locks) = open_stores_as(config, false).await?;
    let locks = locks.ok_or_else(|| Error::backend_error("a writable open has no locks"))?;
    Ok((meta, content, locks))
}

/// Opens both stores read-only: nothing is created, locked, migrated or written.
///
/// # Errors
/// `NotFound` when the data directory holds no metadata store; `Unavailable` when the database
/// cannot be read; `Conflict` when its schema needs migrating by a writer first.
pub async fn open_stores_read_only(
    config: &StorageConfig,
) -> Result<(Arc<dyn MetadataStore>, Arc<dyn ContentStore>)> {
    let (meta, content, _) = open_stores_as(config, true).await?;
    Ok((meta, content))
}

/// Opens the stores; for writing also the local lock holder.
async fn open_stores_as(
    config: &StorageConfig,
    read_only: bool,
) -> Result<(
    Arc<dyn MetadataStore>,
    Arc<dyn ContentStore>,
    Option<LocalLocks>,
)> {
    if read_only {
        if config.database_url.is_none() && !config.sqlite_path().exists() {
            return Err(Error::not_found(format!(
                "{} holds no chatvault data yet: run `chatvault ingest-export <dir|zip>` first",
                config.data_dir.display()
            )));
        }
    } else {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::unavailable(format!(
                "cannot create the data directory {}: {e}",
                config.data_dir.display()
            ))
        })?;
    }
    let options = ConnectOptions {
        read_only,
        ..ConnectOptions::default()
    };
    let meta = match &config.database_url {
        Some(url) => SqlMetadataStore::connect(url, options).await?,
        None => SqlMetadataStore::open_sqlite(config.sqlite_path(), options).await?,
    };
    let local = |read_only| {
        VectorStore::open(
            config.content_dir(),
            VectorStoreOptions {
                read_only,
                ..VectorStoreOptions::default()
            },
        )
    };
    let (content, locks): (Arc<dyn ContentStore>, _) = match &config.chroma_url {
        Some(url) => {
            let chroma = ChromaContentStore::connect(ChromaOptions::from_url(url.trim())?).await?;
            let locks = if read_only { None } else { Some(local(false)?) };
            (Arc::new(chroma), locks)
        }
        None => {
            let vector = local(read_only)?;
            let locks = (!read_only).then(|| vector.clone());
            (Arc::new(vector), locks)
        }
    };
    Ok((
        Arc::new(meta),
        content,
        locks.map(|vector| LocalLocks { vector }),
    ))
}

/// Takes the writer lock of every workspace in `workspaces`, waiting up to `wait` for each and
/// saying (on standard error) whom it waits for.
///
/// # Errors
/// `Conflict` naming the other writer (process, host, since when) when it still holds a
/// workspace after the wait.
pub async fn lock_workspaces(
    locks: &LocalLocks,
    workspaces: &[WorkspaceId],
    wait: Duration,
) -> Result<()> {
    for ws in workspaces {
        let (vector, ws) = (locks.vector.clone(), ws.clone());
        tokio::task::spawn_blocking(move || lock_workspace(&vector, &ws, wait))
            .await
            .map_err(|e| Error::backend_error(format!("taking the writer lock failed: {e}")))??;
    }
    Ok(())
}

/// Takes `workspace`'s writer lock in `content`, waiting up to `wait` and saying (on standard
/// error) whom it waits for.
fn lock_workspace(content: &VectorStore, workspace: &WorkspaceId, wait: Duration) -> Result<()> {
    match content.acquire_writer(workspace, Duration::ZERO) {
        Err(e) if e.kind() == ErrorKind::Conflict && !wait.is_zero() => {
            let who = content
                .writer_holder(workspace)
                .map_or_else(|| "another process".to_string(), |h| h.to_string());
            eprintln!(
                "workspace {workspace} is being written by {who}: waiting up to {} s for it (--wait)",
                wait.as_secs()
            );
            content.acquire_writer(workspace, wait)
        }
        other => other,
    }
}

/// The model directory to try: `explicit`, else `$CHATVAULT_MODEL_DIR`, else the cache folder
/// `scripts/fetch-model.sh` fills by default.
pub fn model_dir_candidate(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(chatvault_embed::MODEL_DIR_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".cache/chatvault/all-MiniLM-L6-v2");
    p.join("config.json").exists().then_some(p)
}

/// Picks the embedder. A workspace's collection records the model it was built with; when
/// `existing_model` names one, the same embedder is used so vectors stay comparable.
///
/// # Errors
/// `InvalidInput`/`NotFound` when the model is required (explicitly, or by the collection) but
/// cannot be loaded — the message says how to get it.
pub fn choose_embedder(
    choice: EmbedderChoice,
    model_dir: Option<&Path>,
    existing_model: Option<&str>,
) -> Result<(Arc<dyn Embedder>, String)> {
    let hashing = || -> Result<(Arc<dyn Embedder>, String)> {
        let e = HashingEmbedder::new(HASHING_DIMENSION)?;
        let note = format!(
            "embedder: built-in hashing embedder ({}) — words only, no synonyms. For real semantic \
             search run scripts/fetch-model.sh and set {}=<the path it prints>.",
            e.model_id(),
            chatvault_embed::MODEL_DIR_ENV
        );
        Ok((Arc::new(e), note))
    };
    let existing_is_hashing = existing_model.is_some_and(|m| m.starts_with("chatvault-hashing"));
    let choice = match (choice, existing_model) {
        (EmbedderChoice::Auto, Some(_)) if existing_is_hashing => EmbedderChoice::Hashing,
        (EmbedderChoice::Auto, Some(_)) => EmbedderChoice::MiniLm,
        (c, _) => c,
    };
    match choice {
        EmbedderChoice::Hashing => hashing(),
        EmbedderChoice::MiniLm | EmbedderChoice::Auto => {
            let Some(dir) = model_dir_candidate(model_dir) else {
                if choice == EmbedderChoice::Auto {
                    return hashing();
                }
                return Err(Error::not_found(format!(
                    "no embedding model found{}: run scripts/fetch-model.sh and set {}",
                    existing_model
                        .map(|m| format!(" (this workspace was indexed with {m})"))
                        .unwrap_or_default(),
                    chatvault_embed::MODEL_DIR_ENV
                )));
            };
            match MiniLmEmbedder::from_dir(&dir) {
                Ok(e) => {
                    let note = format!(
                        "embedder: {} from {} (loaded in {:.1} s)",
                        e.model_id(),
                        dir.display(),
                        e.load_time().as_secs_f64()
                    );
                    Ok((Arc::new(e), note))
                }
                Err(e) if choice == EmbedderChoice::Auto && model_dir.is_none() => {
                    let (h, note) = hashing()?;
                    Ok((
                        h,
                        format!("{note} (the model at {} did not load: {e})", dir.display()),
                    ))
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// Opens the stores and picks an embedder consistent with `workspace`'s collection, if any.
/// With [`Access::Write`] and a workspace, takes the workspace's writer lock first (before
/// anything is written), so that a second writer is refused — or waits — before it starts.
///
/// # Errors
/// As [`open_stores`] and [`choose_embedder`]; `Conflict` naming the other writer (process,
/// host, since when) when it still holds the workspace after the wait.
pub async fn open_all(
    config: &StorageConfig,
    choice: EmbedderChoice,
    model_dir: Option<&Path>,
    workspace: Option<&WorkspaceId>,
    access: Access,
) -> Result<Stores> {
    let (meta, content, locks) = open_stores_as(config, access == Access::Read).await?;
    if let (Access::Write { wait }, Some(ws), Some(locks)) = (access, workspace, &locks) {
        lock_workspaces(locks, std::slice::from_ref(ws), wait).await?;
    }
    let existing = match workspace {
        Some(ws) => content.collection_info(ws).await?.map(|c| c.spec.model_id),
        None => None,
    };
    let (embedder, embedder_note) = choose_embedder(choice, model_dir, existing.as_deref())?;
    Ok(Stores {
        meta,
        content,
        embedder,
        embedder_note,
        locks,
    })
}

/// The workspace to work on: `explicit`, else the only one stored.
///
/// # Errors
/// `NotFound` when there is none or `explicit` does not exist; `InvalidInput` when there are
/// several and none was named (the message lists them).
pub async fn resolve_workspace(
    meta: &dyn MetadataStore,
    explicit: Option<&str>,
) -> Result<WorkspaceId> {
    let all = meta.list_workspaces().await?;
    if let Some(name) = explicit {
        let id = WorkspaceId::new(name)?;
        return if all.iter().any(|w| w.id == id) {
            Ok(id)
        } else {
            Err(Error::not_found(format!(
                "no workspace \"{id}\" in this data directory (stored: {})",
                list_or_none(all.iter().map(|w| w.id.to_string()))
            )))
        };
    }
    match all.len() {
        0 => Err(Error::not_found(
            "this data directory holds no workspace yet: run `chatvault ingest-export <dir|zip>` first",
        )),
        1 => Ok(all[0].id.clone()),
        _ => Err(Error::invalid_input(format!(
            "several workspaces are stored ({}): pick one with --workspace",
            list_or_none(all.iter().map(|w| w.id.to_string()))
        ))),
    }
}

fn list_or_none(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// A workspace id from an export's file name (`slack-export-acme.zip` → `slack-export-acme`).
pub fn workspace_id_from_path(path: &Path) -> Result<WorkspaceId> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cleaned: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(chatvault_core::MAX_ID_LEN)
        .collect();
    WorkspaceId::new(if cleaned.is_empty() {
        "workspace".into()
    } else {
        cleaned
    })
}

/// A channel given as `#name`, `name` or an id.
///
/// # Errors
/// `NotFound` naming the channel.
pub async fn resolve_channel(
    meta: &dyn MetadataStore,
    workspace: &WorkspaceId,
    given: &str,
) -> Result<ChannelId> {
    let name = given.trim_start_matches('#');
    let channels = meta.list_channels(workspace).await?;
    if let Some(c) = channels
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name) || c.id.as_str() == name)
    {
        return Ok(c.id.clone());
    }
    Err(Error::not_found(format!(
        "no channel {given:?} in workspace {workspace}"
    )))
}

pub use chatvault_query::resolve_user;

/// A point in time given as `YYYY-MM-DD` (midnight UTC) or RFC 3339.
///
/// # Errors
/// `InvalidInput` naming the value.
pub fn parse_time(given: &str) -> Result<DateTime<Utc>> {
    if let Ok(d) = NaiveDate::parse_from_str(given, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        return Ok(Utc.from_utc_datetime(&t));
    }
    DateTime::parse_from_rfc3339(given)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            Error::invalid_input(format!(
                "{given:?} is not a date: use YYYY-MM-DD or RFC 3339 (2024-01-31T09:00:00Z)"
            ))
        })
}

/// The process exit code for an error: 3 bad input, 4 not found, 5 store unavailable,
/// 6 conflict, 7 unsupported, 1 anything else (2 is clap's usage error).
pub fn exit_code(e: &Error) -> i32 {
    match e.kind() {
        ErrorKind::InvalidInput => 3,
        ErrorKind::NotFound => 4,
        ErrorKind::Unavailable => 5,
        ErrorKind::Conflict | ErrorKind::AlreadyExists => 6,
        ErrorKind::Unsupported => 7,
        _ => 1,
    }
}

/// The bundled sample export (the real houstondatavis export in `testdata/`).
pub fn sample_export() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/slack-export-houstondatavis")
}

/// Lowers the CPU priority of the calling thread, and of the threads it starts afterwards, to
/// `nice` (a nice value, 1–19) unless it is already lower. The CLI's read-only commands call it
/// before starting their runtime when `--read-nice` is set: a reader then takes mostly the CPU a
/// writer beside it leaves idle — the writer keeps its pace, the reader waits (measured by
/// `cargo bench -p chatvault-storage-vector --bench readers`). Failure (a platform without
/// priorities) is logged and ignored.
pub fn lower_cpu_priority(nice: u8) {
    let wanted = i32::from(nice.min(19));
    match rustix::process::getpriority_process(None) {
        Ok(current) if current >= wanted => {}
        Ok(_) | Err(_) => {
            if let Err(e) = rustix::process::setpriority_process(None, wanted) {
                tracing::debug!(error = %e, nice = wanted, "cannot lower the CPU priority");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_ids_parse() {
        assert_eq!(
            parse_time("2016-01-02").unwrap().to_rfc3339(),
            "2016-01-02T00:00:00+00:00"
        );
        assert!(parse_time("02/01/2016").is_err());
        assert_eq!(
            workspace_id_from_path(Path::new("/x/slack export (1).zip"))
                .unwrap()
                .as_str(),
            "slack-export--1-"
        );
        assert_eq!(exit_code(&Error::not_found("x")), 4);
    }
}
