//! The content-store conformance suite (`chatvault_core::testing::content_store_suite`) against a
//! real ChromaDB server, one test per case, each on a fresh Chroma database. Lexical cases are
//! skipped by the suite itself: this store declares `lexical_search: false`.

mod common;

use chatvault_core::testing::content_store_suite as suite;

/// Every case of the suite is run below; this fails when the suite gains one we do not run.
#[test]
fn every_case_is_run() {
    let ours: &[&str] = &[
        "create_collection_is_idempotent_and_conflicts",
        "missing_collection_is_not_found",
        "empty_batches",
        "upsert_get_round_trip",
        "unicode_and_long_texts_round_trip",
        "versioning",
        "delete_of_missing_key_leaves_tombstone",
        "same_key_twice_in_a_batch",
        "batch_is_atomic_on_bad_document",
        "workspaces_are_isolated",
        "vector_search_exact_top_k",
        "vector_search_rejects_bad_queries",
        "lexical_search_bm25_relevance",
        "lexical_search_unicode_and_case",
        "search_skips_deleted_and_sees_updates",
        "ties_are_ordered_by_key",
        "filter_every_field",
        "filter_selectivities",
        "list_versions_pages_by_key",
        "context_is_kept_and_searched",
        "index_version_is_recorded",
        "drop_collection",
    ];
    assert_eq!(suite::CASES, ours);
}

macro_rules! case {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            if let Some(store) = common::dyn_store(stringify!($name)).await {
                suite::$name(store).await;
            }
        }
    )*};
}

case!(
    create_collection_is_idempotent_and_conflicts,
    missing_collection_is_not_found,
    empty_batches,
    upsert_get_round_trip,
    unicode_and_long_texts_round_trip,
    versioning,
    delete_of_missing_key_leaves_tombstone,
    same_key_twice_in_a_batch,
    batch_is_atomic_on_bad_document,
    workspaces_are_isolated,
    vector_search_exact_top_k,
    vector_search_rejects_bad_queries,
    lexical_search_bm25_relevance,
    lexical_search_unicode_and_case,
    search_skips_deleted_and_sees_updates,
    ties_are_ordered_by_key,
    filter_every_field,
    filter_selectivities,
    list_versions_pages_by_key,
    context_is_kept_and_searched,
    index_version_is_recorded,
    drop_collection,
);
