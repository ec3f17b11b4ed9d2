//! Read-only stores next to a writer, and passwords kept out of connection errors.

#[macro_use]
mod common;

use std::time::Duration;

use chatvault_core::testing::fixtures::{meta, record};
use chatvault_core::{
    BotConfig, ClaimRequest, ErrorKind, Installation, MessageFilter, MessageKey, MetadataStore,
    OutboxFailure, Result, RetryPolicy, SecretString, SyncState, SyncStatus, Workspace,
    WorkspaceId, WriteBatch,
};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use common::Db;
use sea_orm::{ConnectionTrait, Statement};

fn ws() -> WorkspaceId {
    WorkspaceId::new("T1").unwrap()
}

fn key(ts: &str) -> MessageKey {
    MessageKey::parse("T1", "C1", ts).unwrap()
}

fn batch(tss: &[&str]) -> WriteBatch {
    let mut b = WriteBatch::new(ws());
    for ts in tss {
        let k = key(ts);
        b.messages.push(record(
            meta(&k, Some("U1")),
            Some("text"),
            chatvault_core::ChannelKind::Public,
        ));
    }
    b
}

fn read_only() -> ConnectOptions {
    ConnectOptions {
        read_only: true,
        ..common::options()
    }
}

async fn count(store: &SqlMetadataStore) -> u64 {
    store
        .count_messages(&ws(), &MessageFilter::default())
        .await
        .expect("count_messages")
}

async fn reader_for(db: &Db) -> SqlMetadataStore {
    SqlMetadataStore::connect(db.url(), read_only())
        .await
        .expect("read-only store opens next to the writer")
}

fn expect_unsupported<T: std::fmt::Debug>(r: Result<T>, what: &str) {
    match r {
        Ok(v) => panic!("{what} on a read-only store succeeded: {v:?}"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{what}: {e}");
            assert!(e.message().contains("read-only"), "{what}: {e}");
        }
    }
}

/// A reader opened next to a writer sees its later commits without reopening.
async fn reader_sees_writer_commits(db: &Db) {
    let writer = db.store().await;
    writer
        .upsert_workspace(&Workspace::new(ws(), "Acme"))
        .await
        .unwrap();
    writer.apply(batch(&["1.0"])).await.unwrap();
    let reader = reader_for(db).await;
    assert!(reader.is_read_only() && !writer.is_read_only());
    assert_eq!(count(&reader).await, 1);
    writer.apply(batch(&["2.0", "3.0"])).await.unwrap();
    assert_eq!(
        count(&reader).await,
        3,
        "the reader sees the writer's commit"
    );
    let other = reader_for(db).await;
    writer.apply(batch(&["4.0"])).await.unwrap();
    assert_eq!(count(&reader).await, 4);
    assert_eq!(count(&other).await, 4, "any number of readers");
    assert_eq!(
        reader.outbox_stats(None).await.unwrap().pending,
        4,
        "outbox reads work"
    );
}
on_both!(reader_and_writer, reader_sees_writer_commits);

/// Every write method of a read-only store fails with `Unsupported` and changes nothing; the
/// database itself refuses writes from the reader's connections too.
async fn writes_on_a_reader_fail(db: &Db) {
    let writer = db.store().await;
    writer
        .upsert_workspace(&Workspace::new(ws(), "Acme"))
        .await
        .unwrap();
    writer.apply(batch(&["1.0", "2.0"])).await.unwrap();
    let reader = reader_for(db).await;
    let ids: Vec<i64> = {
        let claimed = writer
            .claim_outbox(&ClaimRequest {
                limit: 1,
                ..ClaimRequest::default()
            })
            .await
            .unwrap();
        claimed.iter().map(|e| e.id).collect()
    };
    assert_eq!(ids.len(), 1);

    let mut b = batch(&["3.0"]);
    b.bot_config.push(BotConfig {
        key: "k".into(),
        value: serde_json::json!(1),
    });
    b.sync_status.push(SyncStatus {
        channel: chatvault_core::ChannelId::new("C1").unwrap(),
        source: "history".into(),
        cursor: None,
        oldest_ts: None,
        latest_ts: None,
        state: SyncState::Complete,
        updated_at: None,
        error: None,
    });
    expect_unsupported(reader.apply(b).await, "apply");
    expect_unsupported(reader.apply(WriteBatch::new(ws())).await, "empty apply");
    expect_unsupported(
        reader
            .upsert_workspace(&Workspace::new(ws(), "Renamed"))
            .await,
        "upsert_workspace",
    );
    expect_unsupported(reader.delete_workspace(&ws()).await, "delete_workspace");
    expect_unsupported(
        reader
            .put_installation(&Installation {
                workspace: ws(),
                team: None,
                bot_user: None,
                bot_token: SecretString::new("xoxb-test"),
                scopes: vec![],
                installed_at: None,
            })
            .await,
        "put_installation",
    );
    expect_unsupported(
        reader.forget_content(&ws(), &[key("1.0")]).await,
        "forget_content",
    );
    expect_unsupported(
        reader.claim_outbox(&ClaimRequest::default()).await,
        "claim_outbox",
    );
    expect_unsupported(
        reader
            .claim_outbox(&ClaimRequest {
                limit: 0,
                ..ClaimRequest::default()
            })
            .await,
        "claim_outbox(limit 0)",
    );
    expect_unsupported(reader.ack_outbox(&ids).await, "ack_outbox");
    expect_unsupported(reader.ack_outbox(&[]).await, "ack_outbox(nothing)");
    expect_unsupported(reader.release_outbox(&ids).await, "release_outbox");
    expect_unsupported(
        reader
            .fail_outbox(
                &[OutboxFailure {
                    id: ids[0],
                    error: "x".into(),
                    retryable: true,
                }],
                &RetryPolicy::default(),
            )
            .await,
        "fail_outbox",
    );
    expect_unsupported(
        reader.requeue_dead_letters(None, None).await,
        "requeue_dead_letters",
    );
    expect_unsupported(
        reader.requeue_dead_letters(None, Some(vec![])).await,
        "requeue_dead_letters(nothing)",
    );
    expect_unsupported(reader.migrate_up().await, "migrate_up");
    expect_unsupported(reader.migrate_down().await, "migrate_down");

    // Nothing changed.
    assert_eq!(count(&writer).await, 2);
    let w = writer
        .get_workspace(&ws())
        .await
        .unwrap()
        .expect("workspace");
    assert_eq!(w.name, "Acme");
    assert!(writer.list_bot_config(&ws()).await.unwrap().is_empty());
    assert!(writer.list_sync_status(&ws()).await.unwrap().is_empty());
    let st = writer.outbox_stats(None).await.unwrap();
    assert_eq!((st.pending, st.leased, st.dead), (1, 1, 0), "{st:?}");
    let got = writer.get_messages(&ws(), &[key("1.0")]).await.unwrap();
    assert!(got[0].meta.content_hash.is_some(), "content not forgotten");

    // Below the store: the reader's connections cannot write either.
    let c = reader.connection();
    let raw = c
        .execute(Statement::from_string(
            c.get_database_backend(),
            "UPDATE workspaces SET name = 'Raw'".to_string(),
        ))
        .await;
    assert!(raw.is_err(), "a raw write on a read-only connection fails");
    let w = writer
        .get_workspace(&ws())
        .await
        .unwrap()
        .expect("workspace");
    assert_eq!(w.name, "Acme");
}
on_both!(reader_writes, writes_on_a_reader_fail);

/// A read-only open of a database no writer has brought up to date is a `Conflict`.
async fn unmigrated_database_is_a_conflict(db: &Db) {
    if let Db::Sqlite { dir, .. } = db {
        // An empty file is an empty SQLite database.
        std::fs::write(dir.path().join("chatvault.db"), b"").unwrap();
    }
    let e = SqlMetadataStore::connect(db.url(), read_only())
        .await
        .expect_err("an empty database cannot be read");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.message().contains("writer must open it first"), "{e}");
}
on_both!(reader_of_unmigrated, unmigrated_database_is_a_conflict);

#[tokio::test]
async fn sqlite_read_only_open_of_a_missing_file_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let e = SqlMetadataStore::open_sqlite_read_only(&path, read_only())
        .await
        .expect_err("a missing file cannot be opened read-only");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("missing.db"), "names the file: {e}");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let e = SqlMetadataStore::connect(&url, read_only())
        .await
        .expect_err("a missing file cannot be opened read-only by URL");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing was created: {left:?}");
}

const CHILD_ENV: &str = "CHATVAULT_TEST_READ_ONLY_DIR";

/// A database in a directory nobody may write to (so its `-shm` file cannot be created) still
/// opens read-only. Root ignores directory permissions, so under root the check runs in a copy of
/// this test binary as `nobody` (with `setpriv`), or is skipped.
#[tokio::test]
async fn sqlite_read_only_directory() {
    use std::os::unix::fs::PermissionsExt;

    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let path = std::path::Path::new(&dir).join("chatvault.db");
        let reader = SqlMetadataStore::open_sqlite_read_only(&path, read_only())
            .await
            .expect("opens in a read-only directory");
        assert_eq!(count(&reader).await, 2);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chatvault.db");
    {
        let writer = SqlMetadataStore::open_sqlite(&path, common::options())
            .await
            .unwrap();
        writer
            .upsert_workspace(&Workspace::new(ws(), "Acme"))
            .await
            .unwrap();
        writer.apply(batch(&["1.0", "2.0"])).await.unwrap();
        writer.connection().clone().close().await.unwrap();
    }
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let f = f.unwrap().path();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let restore = || {
        let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
    };
    let is_root = std::fs::write(dir.path().join("probe"), b"").is_ok();
    if !is_root {
        let reader = SqlMetadataStore::open_sqlite_read_only(&path, read_only()).await;
        restore();
        let reader = reader.expect("opens in a read-only directory");
        assert_eq!(count(&reader).await, 2);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["sqlite_read_only_directory", "--exact", "--nocapture"])
        .env(CHILD_ENV, dir.path())
        .output();
    restore();
    match out {
        Ok(out) if out.status.success() => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains("1 passed"),
                "the child ran the check: {stdout}"
            );
        }
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("setpriv:") => {
            eprintln!(
                "skipped: running as root and setpriv cannot drop privileges: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out) => panic!(
            "read-only open as nobody failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("skipped: running as root and setpriv is not available: {e}"),
    }
}

fn assert_hidden(e: &chatvault_core::Error, secret: &str) {
    let mut texts = vec![e.to_string(), format!("{e:?}")];
    let mut next = std::error::Error::source(e);
    while let Some(s) = next {
        texts.push(s.to_string());
        texts.push(format!("{s:?}"));
        next = s.source();
    }
    for t in texts {
        assert!(!t.contains(secret), "the password leaked: {t}");
    }
}

#[tokio::test]
async fn connection_errors_hide_the_password() {
    let cases = [
        // Malformed: a bad port, an unescaped `@` and `/` in the password, a bad option.
        (
            "postgres://app:Hunter2Secret@db:notaport/chat",
            "Hunter2Secret",
        ),
        (
            "postgres://app:Hunter2@Secret@db:5432:9/chat",
            "Hunter2@Secret",
        ),
        ("postgres://app:Hun/ter2Secret@db:x/chat", "Hun/ter2Secret"),
        (
            "postgres://app@db:bad/chat?password=Hunter2Secret",
            "Hunter2Secret",
        ),
        (
            "postgresql://app:Hunter2%21Secret@db:x/chat",
            "Hunter2!Secret",
        ),
        // Well formed, but nothing listens there.
        (
            "postgres://app:Hunter2Secret@127.0.0.1:1/chat",
            "Hunter2Secret",
        ),
        ("nosuch://app:Hunter2Secret@db/chat", "Hunter2Secret"),
    ];
    for (url, secret) in cases {
        let options = ConnectOptions {
            max_connections: Some(1),
            ..ConnectOptions::default()
        };
        let e = tokio::time::timeout(
            Duration::from_secs(60),
            SqlMetadataStore::connect(url, options),
        )
        .await
        .expect("fails fast")
        .expect_err("cannot connect");
        assert_hidden(&e, secret);
        assert_hidden(&e, "Hunter2");
    }
    assert_eq!(
        chatvault_storage_postgres::redact_url("postgres://app:Hunter2Secret@db/chat"),
        "postgres://app:***@db/chat"
    );
}
