//! Test databases for the tests of this crate and of the crates above it (feature `testing`):
//! a fresh PostgreSQL database per test, created from `CHATVAULT_TEST_DATABASE_URL` and dropped
//! when the guard goes.

use std::sync::atomic::{AtomicU32, Ordering};

use sea_orm::{ConnectionTrait, Database, Statement};

/// The variable naming the PostgreSQL server tests may create databases on
/// (`postgres://postgres@127.0.0.1:5432/postgres`).
pub const TEST_DATABASE_ENV: &str = "CHATVAULT_TEST_DATABASE_URL";

/// A PostgreSQL database of one test; dropping it drops the database.
#[derive(Debug)]
pub struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// A fresh database, or `None` (after saying so on standard error) when
    /// [`TEST_DATABASE_ENV`] is not set.
    ///
    /// # Panics
    /// When the variable is not set under `CI=true` (a skipped backend must fail CI), or when the
    /// server refuses to create the database.
    pub async fn create() -> Option<Self> {
        let Ok(admin) = std::env::var(TEST_DATABASE_ENV) else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{TEST_DATABASE_ENV} must be set under CI");
            }
            eprintln!("skipped: {TEST_DATABASE_ENV} not set");
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
        Some(TestDatabase { admin, name, url })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `url` with its database name replaced by `db` (the query string kept).
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

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_is_replaced() {
        assert_eq!(
            super::replace_db("postgres://u@h:5432/postgres?sslmode=disable", "t1"),
            "postgres://u@h:5432/t1?sslmode=disable"
        );
        assert_eq!(
            super::replace_db("postgres://u@h", "t1"),
            "postgres://u@h/t1"
        );
    }
}
