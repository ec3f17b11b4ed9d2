//! The schema, as sea-orm-migration migrations: the same migrations create it on PostgreSQL and
//! SQLite. Every table carries `workspace_id`, and every key and index starts with it. No column
//! holds message text except `outbox.payload`, which lives only until the relay acks the row.
//!
//! Foreign keys: the low-volume tables (installations, teams, users, channels, members,
//! bookmarks, sync status, processing queue, bot config) reference `workspaces`, cascading. The
//! high-volume ones written by every batch (messages, tombstones, reactions, links, files, thread
//! participants, outbox) carry none: PostgreSQL checks a foreign key with one trigger and one
//! query per inserted row (with a plan cached per connection; one made while the parent table was
//! small is a sequential scan, which made bulk inserts quadratic), which alone cost more than the
//! inserts. The store keeps them consistent itself: `apply` checks the workspace under a lock that
//! `delete_workspace` takes too, writes a message's reactions, links and files with it, deletes them
//! with it, and `delete_workspace` deletes every table's rows explicitly.

use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr};
use sea_orm_migration::prelude::*;

/// The migrations, oldest first.
pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(M0001Initial),
            Box::new(M0002LeanWriteIndexes),
            Box::new(M0003UserEmail),
        ]
    }
}

/// The migration versions this build knows, oldest first.
pub(crate) fn known_versions() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_string())
        .collect()
}

/// The table sea-orm-migration records applied versions in.
pub(crate) const MIGRATION_TABLE: &str = "seaql_migrations";

struct M0001Initial;

impl MigrationName for M0001Initial {
    fn name(&self) -> &str {
        "m0001_initial"
    }
}

/// Tables in creation order (dropped in reverse).
pub(crate) const TABLES: &[&str] = &[
    "workspaces",
    "installations",
    "teams",
    "users",
    "channels",
    "channel_members",
    "message_metadata",
    "message_tombstones",
    "reactions",
    "links",
    "files",
    "thread_participants",
    "bookmarks",
    "sync_status",
    "processing_queue",
    "bot_config",
    "outbox",
];

const INITIAL: &str = r#"
CREATE TABLE workspaces (
    workspace_id {T} NOT NULL PRIMARY KEY,
    name {T} NOT NULL,
    domain {T},
    created_at BIGINT NOT NULL
);
CREATE TABLE installations (
    workspace_id {T} NOT NULL REFERENCES workspaces (workspace_id) ON DELETE CASCADE,
    team_id {T} NOT NULL,
    bot_user {T},
    token_nonce {BLOB} NOT NULL,
    token_ciphertext {BLOB} NOT NULL,
    scopes {T} NOT NULL,
    installed_at BIGINT,
    PRIMARY KEY (workspace_id, team_id)
);
CREATE TABLE teams (
    workspace_id {T} NOT NULL REFERENCES workspaces (workspace_id) ON DELETE CASCADE,
    team_id {T} NOT NULL,
    name {T} NOT NULL,
    domain {T},
    PRIMARY KEY (workspace_id, team_id)
);
CREATE TABLE users (
    workspace_id {T} NOT NULL REFERENCES workspaces (workspace_id) ON DELETE CASCADE,
    user_id {T} NOT NULL,
    team_id {T},
    name {T} NOT NULL,
    real_name {T},
    display_name {T},
    is_bot BOOLEAN NOT NULL,
    is_deleted BOOLEAN NOT NULL,
    is_admin BOOLEAN NOT NULL,
    tz {T},
    PRIMARY KEY (workspace_id, user_id)
);
CREATE TABLE channels (
    workspace_id {T} NOT NULL REFERENCES workspaces (workspace_id) ON DELETE CASCADE,
    channel_id {T} NOT NULL,
    name {T} NOT NULL,
    kind {T} NOT NULL,
    is_archived BOOLEAN NOT NULL,
    is_general BOOLEAN NOT NULL,
    topic {T},
    purpose {T},
    creator {T},
    created BIGINT,
    PRIMARY KEY (workspace_id, channel_id)
);
CREATE INDEX channels_by_name ON channels (workspace_id, name);
CREATE TABLE channel_members (
    workspace_id {T} NOT NULL REFERENCES workspaces (workspace_id) ON DELETE CASCADE,
    channel_id {T} NOT NULL,
    user_id {T} NOT NULL,
    PRIMARY KEY (workspace_id, channel_id, user_id)
);
CREATE INDEX channel_members_by_user ON channel_members (workspace_id, user_id, channel_id);
CREATE TABLE message_metadata (
    workspace_id {T} NOT NULL,
    channel_id {T} NOT NULL,
    ts {T} NOT NULL,
    ts_micros BIGINT NOT NULL,
    user_id {T},
    bot_id {T},
    thread_ts {T},
    thread_ts_micros BIGINT,
    is_reply BOOLEAN NOT NULL,
    reply_count BIGINT NOT NULL,
    reply_users_count BIGINT NOT NULL,
    latest_reply {T},
    subtype {T},
    edited {T},
    has_attachments BOOLEAN NOT NULL,
    has_files BOOLEAN NOT NULL,
    has_reactions BOOLEAN NOT NULL,
    reaction_count BIGINT NOT NULL,
    mention_count BIGINT NOT NULL,
    link_count BIGINT NOT NULL,
    content_id {T},
    content_hash {T},
    PRIMARY KEY (workspace_id, channel_id, ts)
);
CREATE INDEX message_metadata_by_time ON message_metadata (workspace_id, ts_micros, ts, channel_id);
CREATE INDEX message_metadata_by_channel_time ON message_metadata (workspace_id, channel_id, ts_micros);
CREATE INDEX message_metadata_by_user_time ON message_metadata (workspace_id, user_id, ts_micros);
CREATE INDEX message_metadata_by_thread ON message_metadata (workspace_id, channel_id, thread_ts) WHERE thread_ts IS NOT NULL;
CREATE INDEX message_metadata_by_reactions ON message_metadata (workspace_id, reaction_count, ts_micros) WHERE reaction_count > 0;
CREATE INDEX message_metadata_with_files ON message_metadata (workspace_id, ts_micros) WHERE has_files;
CREATE INDEX message_metadata_with_links ON message_metadata (workspace_id, ts_micros) WHERE link_count > 0;
CREATE TABLE message_tombstones (
    workspace_id {T} NOT NULL,
    channel_id {T} NOT NULL,
    ts {T} NOT NULL,
    deleted_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, channel_id, ts)
);
CREATE TABLE reactions (
    workspace_id {T} NOT NULL,
    channel_id {T} NOT NULL,
    ts {T} NOT NULL,
    name {T} NOT NULL,
    count BIGINT NOT NULL,
    users {T} NOT NULL,
    PRIMARY KEY (workspace_id, channel_id, ts, name)
);
CREATE TABLE links (
    workspace_id {T} NOT NULL,
    channel_id {T} NOT NULL,
    ts {T} NOT NULL,
    position BIGINT NOT NULL,
    ts_micros BIGINT NOT NULL,
    url {T} NOT NULL,
    domain {T} NOT NULL,
    source {T} NOT NULL,
    title {T},
    PRIMARY KEY (workspace_id, channel_id, ts, position)
);
CREATE INDEX links_by_time ON links (workspace_id, ts_micros);
CREATE INDEX links_by_domain ON links (workspace_id, domain, ts_micros);
CREATE TABLE files (
    workspace_id {T} NOT NULL,
    channel_id {T} NOT NULL,
    ts {T} NOT NULL,
    position BIGINT NOT NULL,
    file_id {T} NOT NULL,
    name {T},
    title {T},
    mimetype {T},
    filetype {T},
    size BIGINT,
    url_private {T},
    permalink {T},
    PRIMARY KEY (workspace_id, channel_id, ts, position)
);
CREATE INDEX files_by_id ON files (workspace_id, file_id);
CREATE TABLE thread_participants (
    workspace_id {T} NOT NULL,
    channel_id {T} NOT NULL,
    thread_ts {T} NOT NULL,
    user_id {T} NOT NULL,
    PRIMARY KEY (workspace_id, channel_id, thread_ts, user_id)
);
CREATE TABLE bookmarks (
    workspace_id {T} NOT NULL REFERENCES workspaces (workspace_id) ON DELETE CASCADE,
    bookmark_id {T} NOT NULL,
    channel_id {T} NOT NULL,
    title {T} NOT NULL,
    link {T},
    emoji {T},
    created BIGINT,
    PRIMARY KEY (workspace_id, bookmark_id)
);
CREATE INDEX bookmarks_by_channel ON bookmarks (workspace_id, channel_id, bookmark_id);
CREATE TABLE sync_status (
    workspace_id {T} NOT NULL REFERENCES workspaces (workspace_id) ON DELETE CASCADE,
    channel_id {T} NOT NULL,
    source {T} NOT NULL,
    cursor {T},
    oldest_ts {T},
    latest_ts {T},
    state {T} NOT NULL,
    updated_at BIGINT,
    error {T},
    PRIMARY KEY (workspace_id, channel_id, source)
);
CREATE TABLE processing_queue (
    workspace_id {T} NOT NULL REFERENCES workspaces (workspace_id) ON DELETE CASCADE,
    job_id {T} NOT NULL,
    kind {T} NOT NULL,
    payload {T} NOT NULL,
    status {T} NOT NULL,
    attempts BIGINT NOT NULL,
    run_after BIGINT,
    PRIMARY KEY (workspace_id, job_id)
);
CREATE INDEX processing_queue_by_status ON processing_queue (workspace_id, status, job_id);
CREATE TABLE bot_config (
    workspace_id {T} NOT NULL REFERENCES workspaces (workspace_id) ON DELETE CASCADE,
    config_key {T} NOT NULL,
    value {T} NOT NULL,
    PRIMARY KEY (workspace_id, config_key)
);
CREATE TABLE outbox (
    id {ID},
    workspace_id {T} NOT NULL,
    channel_id {T} NOT NULL,
    ts {T} NOT NULL,
    op {T} NOT NULL,
    payload {T} NOT NULL,
    attempts BIGINT NOT NULL,
    last_error {T},
    created_at BIGINT NOT NULL,
    available_at BIGINT NOT NULL,
    lease_until BIGINT,
    lease_owner {T},
    dead BOOLEAN NOT NULL
);
CREATE INDEX outbox_by_message ON outbox (workspace_id, channel_id, ts, id);
CREATE INDEX outbox_live ON outbox (id) WHERE NOT dead;
CREATE INDEX outbox_dead ON outbox (workspace_id, id) WHERE dead;
"#;

/// The DDL for `backend`: text compares bytewise on both (`COLLATE "C"` on PostgreSQL, SQLite's
/// default BINARY), so orderings match Rust's; outbox ids never repeat (an identity column on
/// PostgreSQL, `AUTOINCREMENT` on SQLite), because they are content versions.
fn ddl(backend: DatabaseBackend) -> String {
    let (t, blob, id) = match backend {
        DatabaseBackend::Postgres => (
            r#"TEXT COLLATE "C""#,
            "BYTEA",
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        ),
        _ => ("TEXT", "BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT"),
    };
    INITIAL
        .replace("{T}", t)
        .replace("{BLOB}", blob)
        .replace("{ID}", id)
}

async fn run_script(manager: &SchemaManager<'_>, script: &str) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    for stmt in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        conn.execute_unprepared(stmt).await?;
    }
    Ok(())
}

// The trait's signature elides SchemaManager's lifetime; an explicit one would not match it.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0001Initial {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, &ddl(manager.get_database_backend())).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let drops: Vec<String> = TABLES
            .iter()
            .rev()
            .map(|t| format!("DROP TABLE IF EXISTS {t}"))
            .collect();
        run_script(manager, &drops.join(";\n")).await
    }
}

/// Fewer indexes for `apply` to maintain, measured on the 10,000-message batch bench (where index
/// maintenance was a third of a SQLite batch: with every secondary index dropped it ran at
/// 52,000–53,000 messages/s against 32,000–34,000): `links` had one index by time and one by
/// domain then time, though every query of links is bounded by time and the domain filter reads
/// the domain from a time-first index as well; `outbox_live` indexed the ids of live entries,
/// which the primary key already orders (dead entries, the only ones it skipped, are few and
/// have their own index).
struct M0002LeanWriteIndexes;

impl MigrationName for M0002LeanWriteIndexes {
    fn name(&self) -> &str {
        "m0002_lean_write_indexes"
    }
}

#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0002LeanWriteIndexes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "CREATE INDEX links_by_time_domain ON links (workspace_id, ts_micros, domain);
             DROP INDEX links_by_time;
             DROP INDEX links_by_domain;
             DROP INDEX outbox_live",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "CREATE INDEX outbox_live ON outbox (id) WHERE NOT dead;
             CREATE INDEX links_by_domain ON links (workspace_id, domain, ts_micros);
             CREATE INDEX links_by_time ON links (workspace_id, ts_micros);
             DROP INDEX links_by_time_domain",
        )
        .await
    }
}

/// Users' email addresses (from `users.json`'s `profile.email` or `users.list`): what maps a
/// person signed in at an authenticating reverse proxy to their Slack user.
struct M0003UserEmail;

impl MigrationName for M0003UserEmail {
    fn name(&self) -> &str {
        "m0003_user_email"
    }
}

#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0003UserEmail {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, "ALTER TABLE users ADD COLUMN email TEXT").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, "ALTER TABLE users DROP COLUMN email").await
    }
}
