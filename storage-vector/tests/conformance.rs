//! chatvault's ContentStore conformance suite against the tantivy + HNSW store, each case on a
//! fresh store in its own directory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chatvault_core::testing::content_store_suite;
use chatvault_core::ContentStore;
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_store_conformance() {
    let base = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    content_store_suite::run_all(|| {
        let dir = base
            .path()
            .join(n.fetch_add(1, Ordering::SeqCst).to_string());
        async move {
            Arc::new(VectorStore::open(dir, VectorStoreOptions::default()).unwrap())
                as Arc<dyn ContentStore>
        }
    })
    .await;
}
