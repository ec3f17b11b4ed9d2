//! The conformance suites against the in-memory reference stores and the hashing embedder.

use std::sync::Arc;

use chatvault_core::testing::{metadata_suite, MemoryMetadataStore};
use chatvault_core::MetadataStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_metadata_store_passes_the_suite() {
    metadata_suite::run_all(|| async {
        Arc::new(MemoryMetadataStore::new()) as Arc<dyn MetadataStore>
    })
    .await;
}
