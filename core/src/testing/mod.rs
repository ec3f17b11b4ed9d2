//! Test kit (feature `testing`): in-memory reference stores, conformance suites, fault-injection
//! decorators and mockall mocks of the three traits.
//!
//! - [`MemoryMetadataStore`] and [`MemoryContentStore`]: reference backends that implement every
//!   method exactly as the trait documents it. Use them in collector and query tests, doctests
//!   and examples.
//! - [`metadata_suite`], [`content_store_suite`], [`embedder_suite`]: the conformance suites every
//!   backend runs (`run_all`, or one named case at a time).
//! - [`FailingContentStore`] and [`FailingEmbedder`]: decorators that fail chosen calls with a
//!   retryable `Unavailable` error, for testing retries.
//! - [`MockMetadataStore`], [`MockContentStore`], [`MockEmbedder`]: mockall mocks.
//! - [`metadata_suite_tests!`](crate::metadata_suite_tests) and
//!   [`content_store_suite_tests!`](crate::content_store_suite_tests): one `#[tokio::test]` per
//!   suite case, so a backend's cases run (and fail) one by one.

pub mod content_store_suite;
pub mod embedder_suite;
mod failing;
pub mod fixtures;
mod memory_content;
mod memory_metadata;
pub mod metadata_suite;

pub use failing::{FailingContentStore, FailingEmbedder, FailurePlan};
pub use memory_content::MemoryContentStore;
pub use memory_metadata::MemoryMetadataStore;

pub use crate::content_store::MockContentStore;
pub use crate::embedder::MockEmbedder;
pub use crate::metadata_store::MockMetadataStore;

/// Generates one `#[tokio::test]` per [`metadata_suite`] case, each on a fresh store from the
/// factory, plus a test that no case is missing. Invoke it inside a module of its own; the calling
/// crate needs `tokio` (with `macros` and `rt-multi-thread`).
///
/// ```ignore
/// mod metadata_conformance {
///     use std::sync::Arc;
///     use chatvault_core::MetadataStore;
///     chatvault_core::metadata_suite_tests!(|| async {
///         Arc::new(my_backend::Store::open_temp().await) as Arc<dyn MetadataStore>
///     });
/// }
/// ```
#[macro_export]
macro_rules! metadata_suite_tests {
    ($new_store:expr) => {
        $crate::__suite_tests!(
            metadata_suite,
            $new_store;
            workspaces_round_trip,
            installations_round_trip,
            empty_batch_changes_nothing,
            unknown_workspace_is_not_found,
            foreign_key_rejects_whole_batch,
            apply_is_idempotent,
            batch_parts_round_trip,
            messages_round_trip,
            unicode_and_long_texts_round_trip,
            user_email_is_kept,
            outbox_enqueues_only_on_content_change,
            renames_reindex_messages_with_content,
            reindex_content_enqueues_for_messages_with_content,
            edited_revision_rule,
            delete_tombstone_beats_later_write,
            delete_of_missing_key,
            reaction_changes,
            filter_every_field,
            filter_orders_by_ts_and_pages,
            workspaces_are_isolated,
            aggregates,
            activity_counts_only_real_messages,
            channel_latest_per_channel,
            list_links,
            stats_content_index_and_forget,
            outbox_claim_and_ack,
            outbox_fail_retry_and_dead_letter,
            outbox_lease_expiry,
            outbox_dead_owner_leases_are_reclaimed,
            outbox_live_owner_keeps_its_lease,
            outbox_release,
            outbox_per_message_order,
            outbox_undelivered_keys,
            outbox_concurrent_claims,
            delete_workspace_cascades
        );
    };
}

/// Generates one `#[tokio::test]` per [`content_store_suite`] case, each on a fresh store from the
/// factory, plus a test that no case is missing. Invoke it inside a module of its own; the calling
/// crate needs `tokio` (with `macros` and `rt-multi-thread`).
#[macro_export]
macro_rules! content_store_suite_tests {
    ($new_store:expr) => {
        $crate::__suite_tests!(
            content_store_suite,
            $new_store;
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
            drop_collection
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __suite_tests {
    ($suite:ident, $new_store:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let new_store = $new_store;
                $crate::testing::$suite::$case(new_store().await).await;
            }
        )*

        #[test]
        fn every_suite_case_is_generated() {
            let names: &[&str] = &[$(stringify!($case)),*];
            assert_eq!(names, $crate::testing::$suite::CASES);
        }
    };
}
