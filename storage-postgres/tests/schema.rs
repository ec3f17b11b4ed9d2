//! The live schema: no column that could hold message text (but the outbox payload), migrations
//! up/down/up, and a newer schema refused.

#[macro_use]
mod common;

use chatvault_core::{
    ChannelKind, ClaimRequest, ContentAttributes, ErrorKind, MessageContent, MessageKey,
    MessageMeta, MessageRecord, MetadataStore, Workspace, WorkspaceId, WriteBatch,
};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore, TABLES};
use common::Db;
use sea_orm::{ConnectionTrait, Database, DatabaseBackend, Statement};

/// Every text-like column the schema may have, and why none of them can hold message text.
/// A new text column fails the test until it is reviewed and listed here.
const TEXT_COLUMNS: &[(&str, &[&str])] = &[
    ("workspaces", &["workspace_id", "name", "domain"]),
    // token_* are AES-GCM ciphertext and nonce; scopes a JSON list of OAuth scope names
    (
        "installations",
        &[
            "workspace_id",
            "team_id",
            "bot_user",
            "token_nonce",
            "token_ciphertext",
            "scopes",
        ],
    ),
    ("teams", &["workspace_id", "team_id", "name", "domain"]),
    (
        "users",
        &[
            "workspace_id",
            "user_id",
            "team_id",
            "name",
            "real_name",
            "display_name",
            "tz",
            // an address, what maps a proxy-authenticated person to their member
            "email",
        ],
    ),
    // topic and purpose are channel descriptions set in channel settings, not messages
    (
        "channels",
        &[
            "workspace_id",
            "channel_id",
            "name",
            "kind",
            "topic",
            "purpose",
            "creator",
        ],
    ),
    (
        "channel_members",
        &["workspace_id", "channel_id", "user_id"],
    ),
    // content_id is `channel:ts`, content_hash a blake3 hex digest
    (
        "message_metadata",
        &[
            "workspace_id",
            "channel_id",
            "ts",
            "user_id",
            "bot_id",
            "thread_ts",
            "latest_reply",
            "subtype",
            "edited",
            "content_id",
            "content_hash",
        ],
    ),
    ("message_tombstones", &["workspace_id", "channel_id", "ts"]),
    // users: a JSON list of user ids
    (
        "reactions",
        &["workspace_id", "channel_id", "ts", "name", "users"],
    ),
    // title: an unfurl's page title or a link label
    (
        "links",
        &[
            "workspace_id",
            "channel_id",
            "ts",
            "url",
            "domain",
            "source",
            "title",
        ],
    ),
    (
        "files",
        &[
            "workspace_id",
            "channel_id",
            "ts",
            "file_id",
            "name",
            "title",
            "mimetype",
            "filetype",
            "url_private",
            "permalink",
        ],
    ),
    (
        "thread_participants",
        &["workspace_id", "channel_id", "thread_ts", "user_id"],
    ),
    (
        "bookmarks",
        &[
            "workspace_id",
            "bookmark_id",
            "channel_id",
            "title",
            "link",
            "emoji",
        ],
    ),
    (
        "sync_status",
        &[
            "workspace_id",
            "channel_id",
            "source",
            "cursor",
            "oldest_ts",
            "latest_ts",
            "state",
            "error",
        ],
    ),
    // payload: a job's parameters (channel ids, dates), written by bots
    (
        "processing_queue",
        &["workspace_id", "job_id", "kind", "payload", "status"],
    ),
    ("bot_config", &["workspace_id", "config_key", "value"]),
    // payload carries message text until the relay acks the row, which deletes it
    (
        "outbox",
        &[
            "workspace_id",
            "channel_id",
            "ts",
            "op",
            "payload",
            "last_error",
            "lease_owner",
        ],
    ),
    ("seaql_migrations", &["version"]),
];

async fn text_columns(store: &SqlMetadataStore) -> Vec<(String, String)> {
    let c = store.connection();
    let sql = match c.get_database_backend() {
        DatabaseBackend::Postgres => {
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND data_type IN \
             ('text', 'character varying', 'character', 'json', 'jsonb', 'bytea', 'xml') \
             ORDER BY 1, 2"
        }
        _ => {
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND (upper(p.type) LIKE '%TEXT%' \
             OR upper(p.type) LIKE '%CHAR%' OR upper(p.type) LIKE '%CLOB%' OR upper(p.type) LIKE '%BLOB%' \
             OR p.type = '') ORDER BY 1, 2"
        }
    };
    c.query_all(Statement::from_string(c.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
            )
        })
        .collect()
}

async fn no_column_holds_message_text(db: &Db) {
    let store = db.store().await;
    let cols = text_columns(&store).await;
    assert!(cols.len() > 50, "the schema was read: {cols:?}");
    for (table, col) in &cols {
        let allowed = TEXT_COLUMNS
            .iter()
            .find(|(t, _)| t == table)
            .is_some_and(|(_, cs)| cs.contains(&col.as_str()));
        assert!(
            allowed,
            "{table}.{col} is a text column nobody reviewed: could it hold message text?"
        );
    }
    for t in TABLES {
        assert!(
            cols.iter()
                .any(|(table, c)| table == t && c == "workspace_id"),
            "{t} has workspace_id"
        );
    }

    // And the data: after delivery, the text is nowhere in the database.
    let ws = WorkspaceId::new("T1").unwrap();
    store
        .upsert_workspace(&Workspace::new(ws.clone(), "Acme"))
        .await
        .unwrap();
    let key = MessageKey::parse("T1", "C1", "1.0").unwrap();
    let meta = MessageMeta::new(key.clone());
    let mut rec = MessageRecord::new(meta.clone());
    let marker = "zebra-marker-7f3a the secret plan";
    rec.content = Some(MessageContent {
        context: Default::default(),
        key: key.clone(),
        text: marker.into(),
        attributes: ContentAttributes::from_meta(&meta, ChannelKind::Public),
    });
    let mut b = WriteBatch::new(ws.clone());
    b.messages.push(rec);
    store.apply(b).await.unwrap();
    assert!(
        count_marker(&store, &cols).await > 0,
        "the outbox carries the text until acked"
    );
    let got = store.claim_outbox(&ClaimRequest::default()).await.unwrap();
    store
        .ack_outbox(&got.iter().map(|e| e.id).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(
        count_marker(&store, &cols).await,
        0,
        "message text left in the database after ack"
    );
}
on_both!(no_message_text_columns, no_column_holds_message_text);

async fn count_marker(store: &SqlMetadataStore, cols: &[(String, String)]) -> i64 {
    let c = store.connection();
    let mut n = 0;
    for (table, col) in cols {
        let sql =
            format!("SELECT COUNT(*) FROM {table} WHERE CAST({col} AS TEXT) LIKE '%zebra-marker%'");
        let row = c
            .query_one(Statement::from_string(c.get_database_backend(), sql))
            .await
            .unwrap()
            .unwrap();
        n += row.try_get_by_index::<i64>(0).unwrap();
    }
    n
}

/// Every migration this build knows is recorded as applied, in order.
async fn assert_fully_migrated(store: &SqlMetadataStore) {
    assert_eq!(
        store.applied_migrations().await.unwrap(),
        [
            "m0001_initial",
            "m0002_lean_write_indexes",
            "m0003_user_email"
        ]
    );
}

async fn migrations_up_down_up(db: &Db) {
    let store = db.store().await;
    assert_fully_migrated(&store).await;
    let ws = WorkspaceId::new("T1").unwrap();
    store
        .upsert_workspace(&Workspace::new(ws.clone(), "Acme"))
        .await
        .unwrap();
    store.migrate_down().await.unwrap();
    assert!(store.applied_migrations().await.unwrap().is_empty());
    assert!(store.get_workspace(&ws).await.is_err(), "tables are gone");
    store.migrate_up().await.unwrap();
    assert!(store.get_workspace(&ws).await.unwrap().is_none());
    store
        .upsert_workspace(&Workspace::new(ws.clone(), "Acme"))
        .await
        .unwrap();
    assert_eq!(store.list_workspaces().await.unwrap().len(), 1);
    drop(store);
    // a second connect finds the schema current and migrates nothing
    let again = db
        .store_with(ConnectOptions {
            run_migrations: false,
            ..common::options()
        })
        .await;
    assert_eq!(again.list_workspaces().await.unwrap().len(), 1);
}
on_both!(migrations, migrations_up_down_up);

async fn failed_migration_leaves_nothing(db: &Db) {
    // An object squatting on the name of the migration's last index makes it fail at the end.
    let raw = Database::connect(db.url()).await.unwrap();
    let backend = raw.get_database_backend();
    for sql in [
        "CREATE TABLE squatter (x BIGINT)",
        "CREATE INDEX outbox_dead ON squatter (x)",
    ] {
        raw.execute(Statement::from_string(backend, sql.to_string()))
            .await
            .unwrap();
    }
    let err = SqlMetadataStore::connect(db.url(), common::options())
        .await
        .expect_err("the migration fails");
    assert!(err.to_string().contains("outbox_dead"), "{err}");
    // All or nothing: no table of the failed migration is left to wedge the next attempt.
    let tables = match backend {
        DatabaseBackend::Postgres => {
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        }
        _ => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    };
    let left: Vec<String> = raw
        .query_all(Statement::from_string(backend, tables.to_string()))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .filter(|t| t != "squatter" && t != "seaql_migrations")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    raw.execute(Statement::from_string(
        backend,
        "DROP TABLE squatter".to_string(),
    ))
    .await
    .unwrap();
    let store = db.store().await;
    assert_fully_migrated(&store).await;
}
on_both!(failed_migration, failed_migration_leaves_nothing);

async fn newer_schema_is_refused(db: &Db) {
    let store = db.store().await;
    let c = store.connection();
    c.execute(Statement::from_string(
        c.get_database_backend(),
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m9999_from_the_future', 0)",
    ))
    .await
    .unwrap();
    drop(store);
    let e = SqlMetadataStore::connect(db.url(), common::options())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(e.to_string().contains("m9999_from_the_future"), "{e}");
}
on_both!(newer_schema, newer_schema_is_refused);

#[tokio::test]
async fn out_of_date_schema_without_migrations_is_refused() {
    let db = common::sqlite();
    let e = SqlMetadataStore::connect(
        db.url(),
        ConnectOptions {
            run_migrations: false,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
}

#[tokio::test]
async fn bad_urls_are_rejected_clearly() {
    let e = SqlMetadataStore::connect("mysql://x", ConnectOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("mysql"));
}

/// `open_sqlite` takes the path as written: in a URL `%20` would be read as a space and `?` as
/// the start of options, so a data directory named like that would put the database elsewhere.
#[tokio::test]
async fn open_sqlite_takes_the_path_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("data%20dir?mode=ro#1");
    std::fs::create_dir_all(&odd).unwrap();
    let path = odd.join("metadata.db");
    let ws = WorkspaceId::new("T1").unwrap();
    {
        let store = SqlMetadataStore::open_sqlite(&path, ConnectOptions::default())
            .await
            .unwrap();
        store
            .upsert_workspace(&Workspace::new(ws.clone(), "acme"))
            .await
            .unwrap();
        assert_fully_migrated(&store).await;
    }
    assert!(path.exists(), "the file is where it was asked for");
    assert!(!dir.path().join("data dir").exists());
    let again = SqlMetadataStore::open_sqlite(&path, ConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(
        again.get_workspace(&ws).await.unwrap().unwrap().name,
        "acme"
    );
    // a directory that cannot hold the file is named in the error
    let e =
        SqlMetadataStore::open_sqlite(dir.path().join("missing/x.db"), ConnectOptions::default())
            .await
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("missing/x.db"), "{e}");
}
