//! The one write path every source shares: `MetadataStore::apply` (metadata and outbox rows in
//! one transaction), with transient failures retried.

use std::time::Duration;

use tracing::warn;

use chatvault_core::{ApplyReport, Backoff, MetadataStore, Result, WriteBatch};

/// Applies `batch`, retrying retryable failures up to `retries` times with doubling delays
/// (100 ms, 200 ms, … at most 5 s). `apply` is atomic and idempotent, so a retry after an
/// ambiguous failure is safe.
///
/// # Errors
/// The store's error when it is not retryable or retries ran out.
pub async fn apply_with_retry(
    meta: &dyn MetadataStore,
    batch: WriteBatch,
    retries: u32,
) -> Result<ApplyReport> {
    let mut attempt = 0u32;
    loop {
        match meta.apply(batch.clone()).await {
            Ok(r) => return Ok(r),
            Err(e) if e.is_retryable() && attempt < retries => {
                attempt += 1;
                let delay =
                    Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5))
                        .delay(attempt - 1);
                warn!(error = %e, attempt, ?delay, "metadata write failed; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}
