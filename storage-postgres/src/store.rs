//! [`SqlMetadataStore`]: connecting, migrations, and the [`MetadataStore`] implementation.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chatvault_core::{
    redact_url, AggregateOptions, ApplyReport, Bookmark, BotConfig, Channel, ChannelActivity,
    ChannelId, ChannelLatest, ClaimRequest, ContentIndexEntry, DomainCount, Error, FailOutcome,
    Installation, LatestOptions, LinkCount, LinkQuery, MessageDetails, MessageFilter, MessageKey,
    MetadataStore, OutboxEntry, OutboxFailure, OutboxId, OutboxStats, PageRequest,
    ProcessingQueueEntry, ReactedMessage, Result, RetryPolicy, SharedLink, SyncStatus, Team,
    TeamId, ThreadActivity, User, UserActivity, UserId, Workspace, WorkspaceId, WorkspaceStats,
    WriteBatch,
};
use chrono::Utc;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::{
    ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, SqlxSqliteConnector,
    TransactionTrait,
};
use sea_orm_migration::{IntoSchemaManagerConnection, MigratorTrait};
use tokio::sync::{Mutex, MutexGuard};

use crate::crypto::TokenKey;
use crate::error::{connect_error, DbResultExt};
use crate::migration::{known_versions, Migrator, MIGRATION_TABLE};
use crate::sql::{opt_str, Sql};
use crate::validate::{check, MAX_NAME};
use crate::{apply, outbox, read};

/// How [`SqlMetadataStore::connect`] sets up the store.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Run pending migrations on connect (default `true`). With `false`, connecting to a schema
    /// that is not up to date fails with a `Conflict` error.
    pub run_migrations: bool,
    /// The key bot tokens are encrypted with. Without one, `put_installation` and
    /// `get_installation` return an `Unsupported` error.
    pub token_key: Option<TokenKey>,
    /// The most connections the pool opens (default: 10 for PostgreSQL, 4 for SQLite; 1 for an
    /// in-memory SQLite database, which exists only inside its connection).
    pub max_connections: Option<u32>,
    /// How long SQLite waits for a lock held by another connection or process (default 10 s).
    pub busy_timeout: Duration,
    /// Open for reading only (default `false`), while another process may be writing: no
    /// migrations are run (a schema that is not current is a `Conflict`: a writer must open the
    /// database first), nothing is created, SQLite's journal mode is left as the writer set it and
    /// no checkpoints are run, and every write method returns an `Unsupported` error without
    /// touching the database. SQLite opens the file with `mode=ro`, so each read sees the writer's
    /// commits as they land; PostgreSQL sessions get `default_transaction_read_only = on`.
    pub read_only: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            run_migrations: true,
            token_key: None,
            max_connections: None,
            busy_timeout: Duration::from_secs(10),
            read_only: false,
        }
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("run_migrations", &self.run_migrations)
            .field("token_key", &self.token_key.as_ref().map(|_| "[redacted]"))
            .field("max_connections", &self.max_connections)
            .field("busy_timeout", &self.busy_timeout)
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// WAL size (pages) at which a committing SQLite connection checkpoints itself: a backstop for
/// when the background checkpointer cannot keep up (about 80 MB with 4 KiB pages).
const WAL_BACKSTOP_PAGES: u32 = 20_000;

/// Bytes the WAL file is truncated to after a checkpoint resets it.
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// Runs SQLite WAL checkpoints off the write path: by default the connection that commits copies
/// the log into the database file (and syncs it) whenever the log passes 1,000 pages, which for
/// a 10,000-message batch is every commit and a fifth of its time. Here a task does a `PASSIVE`
/// checkpoint (the same kind SQLite's automatic one is: it never waits for readers or writers)
/// on its own connection after each `apply`, while the caller goes on. Durability is unchanged:
/// a commit is durable once it is in the WAL, checkpointed or not. The task ends when the store
/// is dropped (its sender goes away).
fn spawn_checkpointer(pool: sea_orm::sqlx::SqlitePool) -> Checkpointer {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            if let Err(e) = sea_orm::sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %e, "background WAL checkpoint failed");
            }
        }
    });
    tx
}

/// A [`MetadataStore`] on SeaORM: PostgreSQL (`postgres://…`) or SQLite (`sqlite://path?mode=rwc`),
/// same schema, same migrations, same SQL.
pub struct SqlMetadataStore {
    db: DatabaseConnection,
    backend: &'static str,
    token_key: Option<TokenKey>,
    /// SQLite allows one writer at a time; taking this before a write transaction keeps the
    /// store's own writers from failing each other with `SQLITE_BUSY` on lock upgrades.
    writer: Option<Mutex<()>>,
    /// SQLite file databases: wakes the background WAL checkpointer (see [`spawn_checkpointer`]).
    checkpoint: Option<Checkpointer>,
    /// Opened with [`ConnectOptions::read_only`]: every write fails before reaching the database.
    read_only: bool,
}

impl fmt::Debug for SqlMetadataStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlMetadataStore")
            .field("backend", &self.backend)
            .field("token_key", &self.token_key.as_ref().map(|_| "[redacted]"))
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// Wakes the background WAL checkpointer (see [`spawn_checkpointer`]).
type Checkpointer = tokio::sync::mpsc::Sender<()>;

/// How a read-only SQLite database is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOnlyMode {
    /// `mode=ro`, falling back to `immutable` when the WAL's shared-memory file cannot be created.
    Ro,
    /// `immutable=1` straight away (tests use it to reach the fallback on any file system).
    #[cfg(test)]
    Immutable,
}

/// The SQLite pool for `opts` with the store's settings, and the background checkpointer's handle
/// (file databases with a second connection to run it on).
async fn open_sqlite_pool(
    opts: SqliteConnectOptions,
    memory: bool,
    options: &ConnectOptions,
) -> Result<(DatabaseConnection, Option<Checkpointer>)> {
    if options.read_only && !memory {
        return open_sqlite_read_only_pool(opts, options, ReadOnlyMode::Ro).await;
    }
    let opts = opts
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        // A 64 MiB page cache (the default is 2 MiB) keeps the indexes a large write
        // batch touches in memory; temporary b-trees stay in memory too.
        .pragma("cache_size", "-65536")
        .pragma("temp_store", "memory")
        .foreign_keys(true)
        .busy_timeout(options.busy_timeout);
    let max = if memory {
        1
    } else {
        options.max_connections.unwrap_or(4).max(1)
    };
    // Checkpoints run on their own connection after each `apply` (see
    // `spawn_checkpointer`); the committing connection checkpoints only as a backstop,
    // when the log has grown far beyond a batch (the default is 1,000 pages).
    let background_checkpoints = !memory && max >= 2;
    let opts = if background_checkpoints {
        opts.pragma("wal_autocheckpoint", WAL_BACKSTOP_PAGES.to_string())
            .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string())
    } else {
        opts
    };
    let mut pool = SqlitePoolOptions::new().max_connections(max);
    if memory {
        // The database lives as long as its one connection: never let it go idle.
        pool = pool
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
    }
    let file = opts.get_filename().display().to_string();
    let pool = pool.connect_with(opts).await.map_err(|e| {
        Error::unavailable(format!("cannot open the SQLite database {file}: {e}"))
            .with_backend("sqlite")
            .with_source(e)
    })?;
    let checkpoint = background_checkpoints.then(|| spawn_checkpointer(pool.clone()));
    Ok((SqlxSqliteConnector::from_sqlx_sqlite_pool(pool), checkpoint))
}

/// A read-only pool on an existing SQLite file: `mode=ro`, no journal-mode change, no
/// checkpoints. Reading a WAL database needs its `-shm` file; where it cannot be created (a
/// read-only directory or mount with no writer running), the file is opened `immutable`
/// instead, which then never sees later commits.
pub(crate) async fn open_sqlite_read_only_pool(
    opts: SqliteConnectOptions,
    options: &ConnectOptions,
    mode: ReadOnlyMode,
) -> Result<(DatabaseConnection, Option<Checkpointer>)> {
    let file = opts.get_filename().display().to_string();
    if !opts.get_filename().is_file() {
        return Err(Error::not_found(format!(
            "cannot open the SQLite database {file} read-only: no such file (a writer creates it)"
        ))
        .with_backend("sqlite")
        .with_context("file", &file));
    }
    let opts = opts
        .read_only(true)
        .create_if_missing(false)
        .pragma("cache_size", "-65536")
        .pragma("temp_store", "memory")
        .foreign_keys(true)
        .busy_timeout(options.busy_timeout);
    let max = options.max_connections.unwrap_or(4).max(1);
    let pool = match mode {
        #[cfg(test)]
        ReadOnlyMode::Immutable => try_open_read_only(opts.immutable(true), max).await,
        ReadOnlyMode::Ro => match try_open_read_only(opts.clone(), max).await {
            Err(e) if cannot_create_wal_files(&e) => {
                let wal = format!("{file}-wal");
                if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                    tracing::warn!(
                        "{wal} holds commits that a read-only open of this directory cannot \
                         see: the writer did not close cleanly. Run a writing command (e.g. \
                         `chatvault reconcile`) where the directory is writable to fold them in"
                    );
                }
                tracing::debug!(
                    file = %file,
                    error = %e,
                    "read-only SQLite open failed (the -shm/-wal files cannot be created); \
                     opening it immutable: later commits by a writer will not be seen"
                );
                try_open_read_only(opts.immutable(true), max).await
            }
            other => other,
        },
    }
    .map_err(|e| {
        Error::unavailable(format!(
            "cannot open the SQLite database {file} read-only: {e}"
        ))
        .with_backend("sqlite")
        .with_context("file", &file)
        .with_source(e)
    })?;
    Ok((SqlxSqliteConnector::from_sqlx_sqlite_pool(pool), None))
}

async fn try_open_read_only(
    opts: SqliteConnectOptions,
    max: u32,
) -> std::result::Result<sea_orm::sqlx::SqlitePool, sea_orm::sqlx::Error> {
    let pool = SqlitePoolOptions::new()
        .max_connections(max)
        .connect_with(opts)
        .await?;
    // Opening is lazy: the first read is what needs the WAL's shared-memory file.
    if let Err(e) = sea_orm::sqlx::query("SELECT COUNT(*) FROM sqlite_master")
        .execute(&pool)
        .await
    {
        pool.close().await;
        return Err(e);
    }
    Ok(pool)
}

/// SQLITE_READONLY (8) or SQLITE_CANTOPEN (14), with their extended codes: what a `mode=ro`
/// connection gets when it cannot create a WAL database's `-shm` file.
fn cannot_create_wal_files(e: &sea_orm::sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i64>().ok())
        .is_some_and(|c| matches!(c & 0xff, 8 | 14))
}

fn scheme_of(url: &str) -> &str {
    url.split_once(':').map(|(s, _)| s).unwrap_or("")
}

impl SqlMetadataStore {
    /// Connects to `url`, checks the schema version and (unless opted out) runs pending migrations.
    ///
    /// SQLite connections use WAL journaling, `synchronous = NORMAL` (a commit survives a crash
    /// of the process; a power loss may lose the last commits, never corrupt the database),
    /// foreign keys on and a busy timeout. File databases checkpoint the WAL in the background
    /// after each `apply` rather than in the committing call.
    ///
    /// # Errors
    /// `InvalidInput` for a URL that is neither `postgres://`/`postgresql://` nor `sqlite:`;
    /// `Unavailable` when the database cannot be reached; `Conflict` when the schema was written
    /// by a newer chatvault (or is out of date and migrations are off).
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<SqlMetadataStore> {
        match scheme_of(url) {
            "postgres" | "postgresql" => {
                let mut o = sea_orm::ConnectOptions::new(url.to_string());
                o.max_connections(options.max_connections.unwrap_or(10))
                    .min_connections(0)
                    .connect_timeout(Duration::from_secs(10))
                    .acquire_timeout(Duration::from_secs(30))
                    .sqlx_logging(false);
                if options.read_only {
                    o.map_sqlx_postgres_opts(|pg| {
                        pg.options([("default_transaction_read_only", "on")])
                    });
                }
                let db = Database::connect(o)
                    .await
                    .map_err(|e| connect_error(e, url, "postgres", "connecting to PostgreSQL"))?;
                Self::finish_open(db, "postgres", None, options).await
            }
            "sqlite" => {
                let memory = url.contains(":memory:") || url.contains("mode=memory");
                if memory && options.read_only {
                    return Err(Error::invalid_input(
                        "an in-memory SQLite database cannot be opened read-only: it exists only \
                         inside its own connection",
                    )
                    .with_backend("sqlite"));
                }
                let opts = SqliteConnectOptions::from_str(url).map_err(|e| {
                    Error::invalid_input(format!("invalid SQLite URL: {e}")).with_backend("sqlite")
                })?;
                let (db, checkpoint) = open_sqlite_pool(opts, memory, &options).await?;
                Self::finish_open(db, "sqlite", checkpoint, options).await
            }
            other => Err(Error::invalid_input(format!(
                "unsupported database URL scheme {other:?} in {}: expected postgres://, postgresql:// or sqlite:",
                redact_url(url)
            ))),
        }
    }

    /// Checks the schema and runs pending migrations (unless opted out) on a new connection.
    async fn finish_open(
        db: DatabaseConnection,
        backend: &'static str,
        checkpoint: Option<Checkpointer>,
        options: ConnectOptions,
    ) -> Result<SqlMetadataStore> {
        let read_only = options.read_only;
        let run_migrations = options.run_migrations && !read_only;
        let store = SqlMetadataStore {
            writer: (backend == "sqlite").then(|| Mutex::new(())),
            checkpoint,
            db,
            backend,
            token_key: options.token_key,
            read_only,
        };
        store.check_schema(run_migrations).await?;
        if run_migrations {
            store.migrate_up().await?;
        }
        Ok(store)
    }

    /// Opens (creating it if missing) the SQLite database file at `path`, as
    /// [`connect`](Self::connect) does for a `sqlite://` URL — but the path is taken as written:
    /// a URL would read `%20` in a directory name as a space and `?` as the start of options.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn open_sqlite(
        path: impl AsRef<std::path::Path>,
        options: ConnectOptions,
    ) -> Result<SqlMetadataStore> {
        let opts = SqliteConnectOptions::new()
            .filename(path.as_ref())
            .create_if_missing(!options.read_only);
        let (db, checkpoint) = open_sqlite_pool(opts, false, &options).await?;
        Self::finish_open(db, "sqlite", checkpoint, options).await
    }

    /// Opens the existing SQLite database file at `path` for reading only, as
    /// [`open_sqlite`](Self::open_sqlite) with [`ConnectOptions::read_only`] set: any number of
    /// readers may open it while one writer (another process, or a store in this one) writes,
    /// and they see its commits as they land. Where the directory is read-only and no writer has
    /// the file open, it is opened `immutable` instead (logged at debug level).
    ///
    /// # Errors
    /// `NotFound` if the file does not exist (it is never created); `Conflict` if its schema is
    /// not current (a writer must open it first); `Unavailable` if it cannot be opened.
    pub async fn open_sqlite_read_only(
        path: impl AsRef<std::path::Path>,
        options: ConnectOptions,
    ) -> Result<SqlMetadataStore> {
        Self::open_sqlite(
            path,
            ConnectOptions {
                read_only: true,
                ..options
            },
        )
        .await
    }

    /// Opens `path` read-only with `immutable` straight away: the fallback of a read-only open,
    /// reachable in tests on any file system.
    #[cfg(test)]
    pub(crate) async fn open_sqlite_immutable(
        path: impl AsRef<std::path::Path>,
        options: ConnectOptions,
    ) -> Result<SqlMetadataStore> {
        let options = ConnectOptions {
            read_only: true,
            ..options
        };
        let opts = SqliteConnectOptions::new().filename(path.as_ref());
        let (db, checkpoint) =
            open_sqlite_read_only_pool(opts, &options, ReadOnlyMode::Immutable).await?;
        Self::finish_open(db, "sqlite", checkpoint, options).await
    }

    /// Whether the store was opened read-only ([`ConnectOptions::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The underlying SeaORM connection (for tests and tools; writes should go through `apply`).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Applies every pending migration.
    ///
    /// # Errors
    /// `Backend`/`Unavailable` when a migration fails.
    pub async fn migrate_up(&self) -> Result<()> {
        self.migrate(true).await
    }

    /// Reverts every migration: drops all of chatvault's tables (and their data).
    ///
    /// # Errors
    /// `Backend`/`Unavailable` when a migration fails.
    pub async fn migrate_down(&self) -> Result<()> {
        self.migrate(false).await
    }

    /// Runs the migrations up or down. sea-orm-migration wraps them in a transaction on
    /// PostgreSQL only; on SQLite each statement would go to whichever pooled connection is free,
    /// and a connection that last read the schema before it changed compiles DDL against its old
    /// copy ("index … already exists" for an index that was dropped). One transaction keeps every
    /// statement on one connection, whose first statement re-reads the schema, and makes a
    /// migration all-or-nothing on SQLite too.
    async fn migrate(&self, up: bool) -> Result<()> {
        self.ensure_writable()?;
        let what = if up {
            "running migrations"
        } else {
            "reverting migrations"
        };
        async fn run<'c, C: IntoSchemaManagerConnection<'c>>(
            c: C,
            up: bool,
        ) -> Result<(), sea_orm::DbErr> {
            if up {
                Migrator::up(c, None).await
            } else {
                Migrator::down(c, None).await
            }
        }
        if self.db.get_database_backend() != DatabaseBackend::Sqlite {
            return run(&self.db, up).await.db(self.backend, what);
        }
        let _w = self.writer_lock().await?;
        let txn = self.db.begin().await.db(self.backend, what)?;
        run(&txn, up).await.db(self.backend, what)?;
        txn.commit().await.db(self.backend, what)
    }

    /// The migration versions applied to the database, oldest first.
    ///
    /// # Errors
    /// `Backend`/`Unavailable` when the database fails.
    pub async fn applied_migrations(&self) -> Result<Vec<String>> {
        let be = self.backend;
        let exists = match self.db.get_database_backend() {
            DatabaseBackend::Postgres => Sql::new(&format!(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '{MIGRATION_TABLE}'"
            )),
            _ => Sql::new(&format!(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{MIGRATION_TABLE}'"
            )),
        };
        let backend = self.db.get_database_backend();
        if self
            .db
            .query_one(exists.stmt(backend))
            .await
            .db(be, "reading the schema version")?
            .is_none()
        {
            return Ok(Vec::new());
        }
        let q = Sql::new(&format!(
            "SELECT version FROM {MIGRATION_TABLE} ORDER BY version"
        ));
        let rows = self
            .db
            .query_all(q.stmt(backend))
            .await
            .db(be, "reading the schema version")?;
        rows.iter()
            .map(|r| {
                r.try_get_by_index::<String>(0)
                    .db(be, "reading the schema version")
            })
            .collect()
    }

    async fn check_schema(&self, will_migrate: bool) -> Result<()> {
        let applied = self.applied_migrations().await?;
        let known = known_versions();
        if let Some(unknown) = applied.iter().find(|v| !known.contains(v)) {
            return Err(Error::conflict(format!(
                "the database schema is newer than this chatvault: migration {unknown:?} is applied but \
                 this build knows only up to {:?}; upgrade chatvault-storage-postgres",
                known.last().map(String::as_str).unwrap_or("")
            ))
            .with_backend(self.backend));
        }
        if !will_migrate {
            if let Some(pending) = known.iter().find(|v| !applied.contains(v)) {
                let fix = if self.read_only {
                    "it is opened read-only; a writer must open it first to bring it up to date"
                } else {
                    "migrations are turned off; connect with run_migrations = true"
                };
                return Err(Error::conflict(format!(
                    "the database schema is out of date (migration {pending:?} is not applied) and \
                     {fix}"
                ))
                .with_backend(self.backend));
            }
        }
        Ok(())
    }

    /// Asks the background checkpointer (SQLite file databases) to copy the write-ahead log into
    /// the database file; a request already pending covers this one.
    pub(crate) fn request_checkpoint(&self) {
        if let Some(tx) = &self.checkpoint {
            let _ = tx.try_send(());
        }
    }

    /// An `Unsupported` error if the store was opened read-only. Every write path calls it (through
    /// [`writer_lock`](Self::writer_lock), or first thing when it may return before taking that).
    pub(crate) fn ensure_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::unsupported(
                "the metadata store was opened read-only: writes need a store opened for writing",
            )
            .with_backend(self.backend));
        }
        Ok(())
    }

    /// Serialises this store's SQLite writers (no-op on PostgreSQL); fails with `Unsupported` on
    /// a read-only store, before anything touches the database.
    pub(crate) async fn writer_lock(&self) -> Result<Option<MutexGuard<'_, ()>>> {
        self.ensure_writable()?;
        Ok(match &self.writer {
            Some(m) => Some(m.lock().await),
            None => None,
        })
    }

    /// Serialises write batches of one workspace on PostgreSQL until the transaction ends (the
    /// read-then-write of `apply` must not interleave with another's). SQLite: the writer lock.
    pub(crate) async fn lock_workspace<C: ConnectionTrait>(
        &self,
        txn: &C,
        ws: &WorkspaceId,
    ) -> Result<()> {
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            let mut q = Sql::new("SELECT pg_advisory_xact_lock(hashtextextended(");
            q.bind(ws.as_str()).push(", 7261))");
            txn.execute(q.stmt(DatabaseBackend::Postgres))
                .await
                .db(self.backend, "locking the workspace")?;
        }
        Ok(())
    }

    fn token_key(&self) -> Result<&TokenKey> {
        self.token_key.as_ref().ok_or_else(|| {
            Error::unsupported(
                "installations need a token encryption key: set ConnectOptions::token_key",
            )
            .with_backend(self.backend)
        })
    }
}

fn token_aad(ws: &WorkspaceId, team: &str) -> String {
    format!("chatvault-installation/{ws}/{team}")
}

#[async_trait]
impl MetadataStore for SqlMetadataStore {
    fn backend(&self) -> &'static str {
        self.backend
    }

    async fn upsert_workspace(&self, workspace: &Workspace) -> Result<()> {
        check("workspace.name", &workspace.name, MAX_NAME, &workspace.id)
            .map_err(|e| e.with_backend(self.backend))?;
        if let Some(d) = &workspace.domain {
            check("workspace.domain", d, MAX_NAME, &workspace.id)
                .map_err(|e| e.with_backend(self.backend))?;
        }
        let created = workspace
            .created_at
            .unwrap_or_else(Utc::now)
            .timestamp_micros();
        let mut q =
            Sql::new("INSERT INTO workspaces (workspace_id, name, domain, created_at) VALUES (");
        q.bind(workspace.id.as_str())
            .push(", ")
            .bind(workspace.name.as_str())
            .push(", ");
        q.values.push(opt_str(workspace.domain.as_deref()));
        q.push(&format!("${}", q.values.len()));
        q.push(", ").bind(created);
        q.push(") ON CONFLICT (workspace_id) DO UPDATE SET name = excluded.name, domain = excluded.domain");
        let _w = self.writer_lock().await?;
        self.db
            .execute(q.stmt(self.db.get_database_backend()))
            .await
            .db(self.backend, "writing a workspace")?;
        Ok(())
    }

    async fn get_workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>> {
        let mut q = Sql::new(
            "SELECT workspace_id, name, domain, created_at FROM workspaces WHERE workspace_id = ",
        );
        q.bind(id.as_str());
        Ok(self.workspaces(q).await?.into_iter().next())
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        self.workspaces(Sql::new(
            "SELECT workspace_id, name, domain, created_at FROM workspaces ORDER BY workspace_id",
        ))
        .await
    }

    async fn delete_workspace(&self, id: &WorkspaceId) -> Result<()> {
        let be = self.backend;
        let backend = self.db.get_database_backend();
        let _w = self.writer_lock().await?;
        let txn = self
            .db
            .begin()
            .await
            .db(be, "beginning a workspace delete")?;
        self.lock_workspace(&txn, id).await?;
        // Children before parents; message children cascade from message_metadata.
        for table in crate::migration::TABLES.iter().rev() {
            let mut q = Sql::new(&format!("DELETE FROM {table} WHERE workspace_id = "));
            q.bind(id.as_str());
            txn.execute(q.stmt(backend))
                .await
                .db(be, "deleting a workspace")?;
        }
        txn.commit().await.db(be, "deleting a workspace")?;
        Ok(())
    }

    async fn put_installation(&self, inst: &Installation) -> Result<()> {
        let be = self.backend;
        let key = self.token_key()?;
        let team = inst.team.as_ref().map(|t| t.as_str()).unwrap_or("");
        for s in &inst.scopes {
            check("installation.scope", s, MAX_NAME, &inst.workspace)
                .map_err(|e| e.with_backend(be))?;
        }
        let (nonce, ct) = key.seal(&inst.bot_token, &token_aad(&inst.workspace, team))?;
        let scopes = serde_json::to_string(&inst.scopes)
            .map_err(|e| Error::invalid_input(format!("installation scopes: {e}")))?;
        let _w = self.writer_lock().await?;
        if !apply::workspace_exists(&self.db, be, &inst.workspace).await? {
            return Err(
                Error::not_found(format!("workspace {} does not exist", inst.workspace))
                    .with_context("workspace", &inst.workspace)
                    .with_backend(be),
            );
        }
        let mut q = Sql::new(
            "INSERT INTO installations (workspace_id, team_id, bot_user, token_nonce, token_ciphertext, scopes, installed_at) VALUES (",
        );
        q.bind(inst.workspace.as_str())
            .push(", ")
            .bind(team)
            .push(", ");
        q.values
            .push(opt_str(inst.bot_user.as_ref().map(|u| u.as_str())));
        q.push(&format!("${}, ", q.values.len()));
        q.bind(nonce)
            .push(", ")
            .bind(ct)
            .push(", ")
            .bind(scopes)
            .push(", ");
        q.values.push(crate::sql::opt_i64(
            inst.installed_at.map(|t| t.timestamp_micros()),
        ));
        q.push(&format!("${}", q.values.len()));
        q.push(
            ") ON CONFLICT (workspace_id, team_id) DO UPDATE SET bot_user = excluded.bot_user, \
             token_nonce = excluded.token_nonce, token_ciphertext = excluded.token_ciphertext, \
             scopes = excluded.scopes, installed_at = excluded.installed_at",
        );
        self.db
            .execute(q.stmt(self.db.get_database_backend()))
            .await
            .db(be, "writing an installation")?;
        Ok(())
    }

    async fn get_installation(
        &self,
        workspace: &WorkspaceId,
        team: Option<TeamId>,
    ) -> Result<Option<Installation>> {
        let be = self.backend;
        let key = self.token_key()?;
        let mut q = Sql::new(
            "SELECT team_id, bot_user, token_nonce, token_ciphertext, scopes, installed_at FROM installations WHERE workspace_id = ",
        );
        q.bind(workspace.as_str());
        match &team {
            Some(t) => {
                q.push(" AND team_id = ").bind(t.as_str());
            }
            None => {
                q.push(" ORDER BY team_id");
            }
        }
        let rows = self
            .db
            .query_all(q.stmt(self.db.get_database_backend()))
            .await
            .db(be, "loading an installation")?;
        let row = match (&team, rows.len()) {
            (Some(_), _) => rows.first(),
            // No team asked for: the one without a team, else the only one.
            (None, 1) => rows.first(),
            (None, _) => rows
                .iter()
                .find(|r| r.try_get_by_index::<String>(0).is_ok_and(|t| t.is_empty())),
        };
        let Some(row) = row else { return Ok(None) };
        let mut c = crate::sql::Cols::new(row);
        let team_id: String = c.next().db(be, "loading an installation")?;
        let bot_user: Option<String> = c.next().db(be, "loading an installation")?;
        let nonce: Vec<u8> = c.next().db(be, "loading an installation")?;
        let ct: Vec<u8> = c.next().db(be, "loading an installation")?;
        let scopes: String = c.next().db(be, "loading an installation")?;
        let installed_at: Option<i64> = c.next().db(be, "loading an installation")?;
        let token = key
            .open(&nonce, &ct, &token_aad(workspace, &team_id))
            .map_err(|e| e.with_backend(be).with_context("workspace", workspace))?;
        let bad = |what: &str, e: Error| {
            Error::backend_error(format!(
                "stored installation {what} is invalid: {}",
                e.message()
            ))
            .with_backend(be)
        };
        Ok(Some(Installation {
            workspace: workspace.clone(),
            team: if team_id.is_empty() {
                None
            } else {
                Some(TeamId::new(team_id).map_err(|e| bad("team", e))?)
            },
            bot_user: bot_user
                .map(UserId::new)
                .transpose()
                .map_err(|e| bad("bot user", e))?,
            bot_token: token,
            scopes: serde_json::from_str(&scopes).map_err(|e| {
                Error::backend_error(format!("stored installation scopes are invalid: {e}"))
                    .with_backend(be)
            })?,
            installed_at: read::time_of(installed_at),
        }))
    }

    async fn apply(&self, batch: WriteBatch) -> Result<ApplyReport> {
        apply::apply(self, batch).await
    }

    async fn forget_content(&self, workspace: &WorkspaceId, keys: &[MessageKey]) -> Result<u64> {
        let be = self.backend;
        for k in keys {
            k.ensure_workspace(workspace)
                .map_err(|e| e.with_backend(be))?;
        }
        let backend = self.db.get_database_backend();
        let _w = self.writer_lock().await?;
        let mut n = 0;
        for chunk in keys.chunks(crate::sql::key_chunk(backend, 1)) {
            let mut q = Sql::new("UPDATE message_metadata SET content_hash = NULL, content_id = NULL WHERE workspace_id = ");
            q.bind(workspace.as_str()).push(" AND ");
            q.bind_keys(
                "channel_id",
                "ts",
                chunk.iter().map(|k| (&k.channel, &k.ts)),
            );
            n += self
                .db
                .execute(q.stmt(backend))
                .await
                .db(be, "forgetting content")?
                .rows_affected();
        }
        Ok(n)
    }

    async fn reindex_content(&self, workspace: &WorkspaceId, keys: &[MessageKey]) -> Result<u64> {
        crate::reindex::reindex_content(self, workspace, keys).await
    }

    async fn get_messages(
        &self,
        workspace: &WorkspaceId,
        keys: &[MessageKey],
    ) -> Result<Vec<MessageDetails>> {
        read::get_messages(&self.db, self.backend, workspace, keys).await
    }

    async fn filter_messages(
        &self,
        workspace: &WorkspaceId,
        filter: &MessageFilter,
        page: &PageRequest,
    ) -> Result<Vec<MessageKey>> {
        read::filter_messages(&self.db, self.backend, workspace, filter, page).await
    }

    async fn count_messages(&self, workspace: &WorkspaceId, filter: &MessageFilter) -> Result<u64> {
        read::count_messages(&self.db, self.backend, workspace, filter).await
    }

    async fn get_channel(
        &self,
        workspace: &WorkspaceId,
        channel: &ChannelId,
    ) -> Result<Option<Channel>> {
        read::get_channel(&self.db, self.backend, workspace, channel).await
    }

    async fn list_channels(&self, workspace: &WorkspaceId) -> Result<Vec<Channel>> {
        read::list_channels(&self.db, self.backend, workspace).await
    }

    async fn channel_members(
        &self,
        workspace: &WorkspaceId,
        channel: &ChannelId,
    ) -> Result<Vec<UserId>> {
        read::channel_members(&self.db, self.backend, workspace, channel).await
    }

    async fn user_channels(
        &self,
        workspace: &WorkspaceId,
        user: &UserId,
    ) -> Result<Vec<ChannelId>> {
        read::user_channels(&self.db, self.backend, workspace, user).await
    }

    async fn get_users(&self, workspace: &WorkspaceId, ids: &[UserId]) -> Result<Vec<User>> {
        read::get_users(&self.db, self.backend, workspace, ids).await
    }

    async fn list_users(&self, workspace: &WorkspaceId) -> Result<Vec<User>> {
        read::list_users(&self.db, self.backend, workspace).await
    }

    async fn list_teams(&self, workspace: &WorkspaceId) -> Result<Vec<Team>> {
        read::list_teams(&self.db, self.backend, workspace).await
    }

    async fn list_bookmarks(
        &self,
        workspace: &WorkspaceId,
        channel: Option<ChannelId>,
    ) -> Result<Vec<Bookmark>> {
        read::list_bookmarks(&self.db, self.backend, workspace, channel.as_ref()).await
    }

    async fn thread_participants(
        &self,
        workspace: &WorkspaceId,
        parent: &MessageKey,
    ) -> Result<Vec<UserId>> {
        read::thread_participants(&self.db, self.backend, workspace, parent).await
    }

    async fn list_sync_status(&self, workspace: &WorkspaceId) -> Result<Vec<SyncStatus>> {
        read::list_sync_status(&self.db, self.backend, workspace).await
    }

    async fn list_processing_queue(
        &self,
        workspace: &WorkspaceId,
        status: Option<String>,
    ) -> Result<Vec<ProcessingQueueEntry>> {
        read::list_processing_queue(&self.db, self.backend, workspace, status.as_deref()).await
    }

    async fn list_bot_config(&self, workspace: &WorkspaceId) -> Result<Vec<BotConfig>> {
        read::list_bot_config(&self.db, self.backend, workspace).await
    }

    async fn stats(&self, workspace: &WorkspaceId) -> Result<WorkspaceStats> {
        read::stats(&self.db, self.backend, workspace).await
    }

    async fn content_index(
        &self,
        workspace: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Vec<ContentIndexEntry>> {
        read::content_index(&self.db, self.backend, workspace, page).await
    }

    async fn most_reacted(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<ReactedMessage>> {
        read::most_reacted(&self.db, self.backend, workspace, options).await
    }

    async fn most_active_threads(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<ThreadActivity>> {
        read::most_active_threads(&self.db, self.backend, workspace, options).await
    }

    async fn top_links(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<LinkCount>> {
        read::top_links(&self.db, self.backend, workspace, options).await
    }

    async fn top_domains(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<DomainCount>> {
        read::top_domains(&self.db, self.backend, workspace, options).await
    }

    async fn channel_activity(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<ChannelActivity>> {
        read::channel_activity(&self.db, self.backend, workspace, options).await
    }

    async fn channel_latest(
        &self,
        workspace: &WorkspaceId,
        options: &LatestOptions,
    ) -> Result<Vec<ChannelLatest>> {
        read::channel_latest(&self.db, self.backend, workspace, options).await
    }

    async fn user_activity(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<UserActivity>> {
        read::user_activity(&self.db, self.backend, workspace, options).await
    }

    async fn list_links(
        &self,
        workspace: &WorkspaceId,
        query: &LinkQuery,
    ) -> Result<Vec<SharedLink>> {
        read::list_links(&self.db, self.backend, workspace, query).await
    }

    async fn claim_outbox(&self, request: &ClaimRequest) -> Result<Vec<OutboxEntry>> {
        outbox::claim(self, request).await
    }

    async fn ack_outbox(&self, ids: &[OutboxId]) -> Result<()> {
        outbox::ack(self, ids).await
    }

    async fn release_outbox(&self, ids: &[OutboxId]) -> Result<u64> {
        outbox::release(self, ids).await
    }

    async fn fail_outbox(
        &self,
        failures: &[OutboxFailure],
        policy: &RetryPolicy,
    ) -> Result<Vec<FailOutcome>> {
        outbox::fail(self, failures, policy).await
    }

    async fn dead_letters(
        &self,
        workspace: Option<WorkspaceId>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>> {
        outbox::dead_letters(self, workspace.as_ref(), limit).await
    }

    async fn requeue_dead_letters(
        &self,
        workspace: Option<WorkspaceId>,
        ids: Option<Vec<OutboxId>>,
    ) -> Result<u64> {
        outbox::requeue(self, workspace.as_ref(), ids.as_deref()).await
    }

    async fn outbox_stats(&self, workspace: Option<WorkspaceId>) -> Result<OutboxStats> {
        outbox::stats(self, workspace.as_ref()).await
    }

    async fn close(&self) -> Result<()> {
        if self.backend == "sqlite" && !self.is_read_only() {
            let _w = self.writer_lock().await?;
            // TRUNCATE waits for readers to leave the log, then empties it: the database file
            // alone then holds every commit.
            self.db
                .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await
                .db(self.backend, "checkpointing the write-ahead log")?;
        }
        self.db
            .close_by_ref()
            .await
            .db(self.backend, "closing the connections")
    }

    async fn undelivered_keys(
        &self,
        workspace: &WorkspaceId,
        limit: usize,
    ) -> Result<Vec<MessageKey>> {
        outbox::undelivered_keys(self, workspace, limit).await
    }
}

impl SqlMetadataStore {
    async fn workspaces(&self, q: Sql) -> Result<Vec<Workspace>> {
        let be = self.backend;
        let rows = self
            .db
            .query_all(q.stmt(self.db.get_database_backend()))
            .await
            .db(be, "loading workspaces")?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut c = crate::sql::Cols::new(r);
            let id: String = c.next().db(be, "loading workspaces")?;
            let name: String = c.next().db(be, "loading workspaces")?;
            let domain: Option<String> = c.next().db(be, "loading workspaces")?;
            let created: i64 = c.next().db(be, "loading workspaces")?;
            out.push(Workspace {
                id: WorkspaceId::new(id).map_err(|e| {
                    Error::backend_error(format!("stored workspace id is invalid: {}", e.message()))
                })?,
                name,
                domain,
                created_at: read::time_of(Some(created)),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use chatvault_core::{ErrorKind, MessageFilter, MetadataStore, Workspace, WorkspaceId};

    use super::{ConnectOptions, SqlMetadataStore};

    /// The fallback of a read-only open (`immutable`) reads the database and refuses writes.
    #[tokio::test]
    async fn immutable_open_reads_and_refuses_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("chatvault.db");
        let ws = WorkspaceId::new("T1").expect("id");
        let writer = SqlMetadataStore::open_sqlite(&path, ConnectOptions::default())
            .await
            .expect("writer opens");
        writer
            .upsert_workspace(&Workspace::new(ws.clone(), "Acme"))
            .await
            .expect("workspace");
        writer.close().await.expect("close");
        let reader = SqlMetadataStore::open_sqlite_immutable(&path, ConnectOptions::default())
            .await
            .expect("immutable open");
        assert!(reader.is_read_only());
        assert_eq!(
            reader
                .get_workspace(&ws)
                .await
                .expect("read")
                .map(|w| w.name),
            Some("Acme".to_string())
        );
        assert_eq!(
            reader
                .count_messages(&ws, &MessageFilter::default())
                .await
                .expect("count"),
            0
        );
        let e = reader
            .upsert_workspace(&Workspace::new(ws, "Other"))
            .await
            .expect_err("read-only");
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }
}
