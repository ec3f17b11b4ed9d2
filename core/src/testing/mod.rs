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
