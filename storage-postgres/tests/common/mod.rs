//! Test databases: a SQLite file in a temp dir, or a fresh PostgreSQL database per test
//! (created from `CHATVAULT_TEST_DATABASE_URL`, dropped when the guard goes).

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};

use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore, TokenKey};
use sea_orm::{ConnectionTrait, Database, Statement};

pub const ENV: &str = "CHATVAULT_TEST_DATABASE_URL";

pub fn key() -> TokenKey {
    TokenKey::from_bytes([0x42; 32])
}

pub fn options() -> ConnectOptions {
    ConnectOptions {
        token_key: Some(key()),
        ..Default::default()
    }
}

/// Keeps a test database alive; dropping it removes the database.
pub enum Db {
    Sqlite {
        dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        admin: String,
        name: String,
        url: String,
    },
}

impl Db {
    pub fn url(&self) -> &str {
        match self {
            Db::Sqlite { url, .. } | Db::Postgres { url, .. } => url,
        }
    }

    pub async fn store(&self) -> SqlMetadataStore {
        self.store_with(options()).await
    }

    pub async fn store_with(&self, o: ConnectOptions) -> SqlMetadataStore {
        SqlMetadataStore::connect(self.url(), o)
            .await
            .expect("test database connects")
    }
}

pub fn sqlite() -> Db {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("chatvault.db").display()
    );
    Db::Sqlite { dir, url }
}

/// A fresh PostgreSQL database, or `None` (after saying so) when `CHATVAULT_TEST_DATABASE_URL` is
/// not set. Under CI a missing database is a failure.
pub async fn postgres() -> Option<Db> {
    let Ok(admin) = std::env::var(ENV) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{ENV} must be set under CI");
        }
        eprintln!("skipped: {ENV} not set");
        return None;
    };
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "chatvault_test_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        chrono::Utc::now().timestamp_micros() % 1_000_000_000
    );
    let conn = Database::connect(admin.as_str())
        .await
        .expect("admin connection");
    conn.execute_unprepared(&format!(
        "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"
    ))
    .await
    .expect("create test database");
    conn.close().await.ok();
    let url = replace_db(&admin, &name);
    Some(Db::Postgres { admin, name, url })
}

fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Postgres { admin, name, .. } = self {
            let (admin, name) = (admin.clone(), name.clone());
            // Async cleanup from a synchronous drop: a helper thread with its own runtime.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    if let Ok(conn) = Database::connect(admin.as_str()).await {
                        let _ = conn
                            .execute(Statement::from_string(
                                conn.get_database_backend(),
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                            ))
                            .await;
                        let _ = conn.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// Runs `$body` (an async fn taking `&Db`) on SQLite and on PostgreSQL, as two tests.
#[macro_export]
macro_rules! on_both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::common::sqlite();
                super::$body(&db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = $crate::common::postgres().await else {
                    return;
                };
                super::$body(&db).await;
            }
        }
    };
}
