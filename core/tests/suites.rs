//! The conformance suites against the in-memory reference stores and the hashing embedder.

use std::sync::Arc;

use chatvault_core::testing::{
    content_store_suite, embedder_suite, metadata_suite, MemoryContentStore, MemoryMetadataStore,
};
use chatvault_core::{ContentStore, HashingEmbedder, MetadataStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_metadata_store_passes_the_suite() {
    metadata_suite::run_all(|| async {
        Arc::new(MemoryMetadataStore::new()) as Arc<dyn MetadataStore>
    })
    .await;
}

#[tokio::test]
async fn memory_content_store_passes_the_suite() {
    content_store_suite::run_all(|| async {
        Arc::new(MemoryContentStore::new()) as Arc<dyn ContentStore>
    })
    .await;
}

#[tokio::test]
async fn hashing_embedder_passes_the_suite() {
    for dim in [1usize << 4, 384] {
        let e = HashingEmbedder::new(dim).expect("dimension > 0");
        embedder_suite::run_all(&e).await;
    }
}

#[test]
fn suites_list_their_cases() {
    assert_eq!(metadata_suite::CASES.len(), 35);
    assert_eq!(content_store_suite::CASES.len(), 22);
    assert_eq!(embedder_suite::CASES.len(), 8);
}

mod metadata_cases {
    use std::sync::Arc;

    use chatvault_core::testing::MemoryMetadataStore;
    use chatvault_core::MetadataStore;

    chatvault_core::metadata_suite_tests!(|| async {
        Arc::new(MemoryMetadataStore::new()) as Arc<dyn MetadataStore>
    });
}

mod content_store_cases {
    use std::sync::Arc;

    use chatvault_core::testing::MemoryContentStore;
    use chatvault_core::ContentStore;

    chatvault_core::content_store_suite_tests!(|| async {
        Arc::new(MemoryContentStore::new()) as Arc<dyn ContentStore>
    });
}
