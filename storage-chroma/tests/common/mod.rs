//! Shared by the integration tests: a store on the real server named by
//! `CHATVAULT_TEST_CHROMA_URL`, each in a fresh Chroma database.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chatvault_core::ContentStore;
use chatvault_storage_chroma::{ChromaContentStore, ChromaOptions};

pub const URL_VAR: &str = "CHATVAULT_TEST_CHROMA_URL";

/// The server's URL, or `None` (with a message) when the tests must be skipped. Under `CI=true`
/// a missing server is a failure.
pub fn server_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(u) if !u.trim().is_empty() => Some(u.trim().to_string()),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{URL_VAR} is not set, and CI=true requires the ChromaDB tests to run");
            }
            eprintln!(
                "skipped {test}: set {URL_VAR} to a ChromaDB server \
                 (scripts/chroma-server.sh start) to run it"
            );
            None
        }
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh database name, unique across tests and processes sharing one server.
pub fn fresh_database() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "cvtest_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// Options for a fresh database on the test server.
pub fn options(url: &str) -> ChromaOptions {
    ChromaOptions::from_url(url)
        .and_then(|o| o.with_database(fresh_database()))
        .expect("CHATVAULT_TEST_CHROMA_URL is a valid ChromaDB URL")
}

/// A store on a fresh database, or `None` when skipped.
pub async fn store(test: &str) -> Option<ChromaContentStore> {
    let url = server_url(test)?;
    Some(
        ChromaContentStore::connect(options(&url))
            .await
            .expect("connect to the test ChromaDB server"),
    )
}

/// The same as a trait object.
pub async fn dyn_store(test: &str) -> Option<Arc<dyn ContentStore>> {
    store(test)
        .await
        .map(|s| Arc::new(s) as Arc<dyn ContentStore>)
}
