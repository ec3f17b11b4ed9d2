//! Reconcile: compare the metadata store's view of a workspace's content with the content
//! store's, and repair drift.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::{info, info_span, Instrument};

use chatvault_core::{
    ContentDelete, ContentStore, ErrorKind, MessageKey, MetadataStore, PageRequest, Result,
    WorkspaceId,
};

/// How reconcile works.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Repair what it finds (default); `false` only reports.
    pub repair: bool,
    /// Keys read per page from each store (default 1000).
    pub page_size: usize,
    /// At most this many example keys per finding in the report (default 20).
    pub examples: usize,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions {
            repair: true,
            page_size: 1000,
            examples: 20,
        }
    }
}

/// What reconcile found, and what it repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Messages the metadata store says have content.
    pub expected: u64,
    /// Live documents in the content store.
    pub stored: u64,
    /// Delivered (`content_id` set) but absent from the content store.
    pub missing: u64,
    /// Stored with a content hash other than the one last enqueued (an update was lost).
    pub mismatched: u64,
    /// Enqueued but not delivered yet (an outbox entry is pending or dead-lettered).
    pub undelivered: u64,
    /// In the content store with no message that should have content: deleted.
    pub orphans: u64,
    /// Messages whose recorded content was forgotten so that their next write (re-import,
    /// backfill, event) enqueues their content again.
    pub requeued: u64,
    /// Orphans deleted from the content store.
    pub orphans_deleted: u64,
    /// Outbox entries pending for the workspace when reconcile ran (drift found while entries
    /// are pending may be in flight: run the relay's `drain` first).
    pub outbox_pending: u64,
    /// Example keys of missing, mismatched and orphaned content.
    pub examples: Vec<(String, MessageKey)>,
}

impl ReconcileReport {
    /// Whether both stores agreed.
    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.mismatched == 0 && self.orphans == 0
    }
}

/// Compares and repairs one workspace with the default options.
///
/// # Errors
/// A store's error.
pub async fn reconcile(
    meta: Arc<dyn MetadataStore>,
    content: Arc<dyn ContentStore>,
    workspace: WorkspaceId,
) -> Result<ReconcileReport> {
    reconcile_with(meta, content, workspace, ReconcileOptions::default()).await
}

/// Compares and repairs one workspace.
///
/// - Content that should exist but does not (or whose hash differs) has its recorded hash
///   forgotten ([`MetadataStore::forget_content`]), so that the next write of those messages
///   re-enqueues their content. The text itself lives only in the content store and the source,
///   so reconcile cannot re-send it alone: re-run the import or backfill afterwards.
/// - Content stored for no message is deleted at a version one above the stored one.
///
/// # Errors
/// A store's error.
pub async fn reconcile_with(
    meta: Arc<dyn MetadataStore>,
    content: Arc<dyn ContentStore>,
    workspace: WorkspaceId,
    options: ReconcileOptions,
) -> Result<ReconcileReport> {
    let span = info_span!("reconcile", workspace = %workspace);
    async move {
        let mut report = ReconcileReport::default();
        let page_size = options.page_size.max(1);
        let stats = meta.outbox_stats(Some(workspace.clone())).await?;
        report.outbox_pending = stats.pending + stats.leased;

        // The content store's side: key -> (version, hash).
        let mut stored: HashMap<MessageKey, (u64, String)> = HashMap::new();
        let mut page = PageRequest::first(page_size);
        loop {
            let rows = match content.list_versions(&workspace, &page).await {
                Ok(rows) => rows,
                Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            };
            let n = rows.len();
            page.after = rows.last().map(|r| r.key.clone());
            for r in rows {
                stored.insert(r.key, (r.version, r.content_hash));
            }
            if n < page_size {
                break;
            }
        }
        report.stored = stored.len() as u64;

        let mut forget = Vec::new();
        let mut page = PageRequest::first(page_size);
        loop {
            let rows = meta.content_index(&workspace, &page).await?;
            let n = rows.len();
            page.after = rows.last().map(|r| r.key.clone());
            for r in rows {
                report.expected += 1;
                match stored.remove(&r.key) {
                    Some((_, hash)) if hash == r.content_hash => {}
                    Some(_) if r.content_id.is_none() => report.undelivered += 1,
                    Some(_) => {
                        report.mismatched += 1;
                        if report.examples.len() < options.examples * 3 {
                            report.examples.push(("mismatched".into(), r.key.clone()));
                        }
                        forget.push(r.key);
                    }
                    None if r.content_id.is_none() => report.undelivered += 1,
                    None => {
                        report.missing += 1;
                        if report.examples.len() < options.examples * 3 {
                            report.examples.push(("missing".into(), r.key.clone()));
                        }
                        forget.push(r.key);
                    }
                }
            }
            if n < page_size {
                break;
            }
        }
        // What is left in `stored` has no message that should have content.
        let mut orphans: Vec<ContentDelete> = stored
            .into_iter()
            .map(|(key, (version, _))| ContentDelete {
                key,
                version: version + 1,
            })
            .collect();
        orphans.sort_by(|a, b| a.key.cmp(&b.key));
        report.orphans = orphans.len() as u64;
        for o in orphans.iter().take(options.examples) {
            report.examples.push(("orphan".into(), o.key.clone()));
        }
        if options.repair {
            for chunk in forget.chunks(page_size) {
                report.requeued += meta.forget_content(&workspace, chunk).await?;
            }
            for chunk in orphans.chunks(page_size) {
                report.orphans_deleted += content.delete(&workspace, chunk).await?.applied;
            }
        }
        info!(
            expected = report.expected,
            stored = report.stored,
            missing = report.missing,
            mismatched = report.mismatched,
            orphans = report.orphans,
            "reconciled"
        );
        Ok(report)
    }
    .instrument(span)
    .await
}
