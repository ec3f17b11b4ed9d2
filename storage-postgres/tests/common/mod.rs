//! Test databases: a SQLite file in a temp dir, or a fresh PostgreSQL database per test
//! (created from `CHATVAULT_TEST_DATABASE_URL`, dropped when the guard goes).

#![allow(dead_code, unreachable_pub)]

use chatvault_storage_postgres::testing::{TestDatabase, TEST_DATABASE_ENV};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore, TokenKey};

pub const ENV: &str = TEST_DATABASE_ENV;

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
    Sqlite { dir: tempfile::TempDir, url: String },
    Postgres(TestDatabase),
}

impl Db {
    pub fn url(&self) -> &str {
        match self {
            Db::Sqlite { url, .. } => url,
            Db::Postgres(db) => db.url(),
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
    TestDatabase::create().await.map(Db::Postgres)
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
