//! chatvault-core's `MetadataStore` conformance suite on SQLite (always) and PostgreSQL (with
//! `CHATVAULT_TEST_DATABASE_URL`); every case gets a fresh database, removed afterwards.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};

use chatvault_core::testing::metadata_suite;
use chatvault_core::MetadataStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_suite_on_sqlite() {
    let dbs: Arc<Mutex<Vec<common::Db>>> = Arc::default();
    metadata_suite::run_all(|| {
        let dbs = dbs.clone();
        async move {
            let db = common::sqlite();
            let store = db.store().await;
            dbs.lock().unwrap_or_else(|p| p.into_inner()).push(db);
            Arc::new(store) as Arc<dyn MetadataStore>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_suite_on_postgres() {
    if common::postgres().await.is_none() {
        return;
    }
    let dbs: Arc<Mutex<Vec<common::Db>>> = Arc::default();
    metadata_suite::run_all(|| {
        let dbs = dbs.clone();
        async move {
            let db = common::postgres().await.expect("checked above");
            let store = db.store().await;
            dbs.lock().unwrap_or_else(|p| p.into_inner()).push(db);
            Arc::new(store) as Arc<dyn MetadataStore>
        }
    })
    .await;
}
