//! Reconcile: compare the metadata store's view of a workspace's content with the content
//! store's, and repair drift.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use tracing::{info, info_span, warn, Instrument};

use chatvault_core::{
    CollectionSpec, ContentDelete, ContentStore, ErrorKind, MessageKey, MetadataStore, PageRequest,
    ProcessingQueueEntry, Result, WorkspaceId, WriteBatch,
};

/// The processing-queue job kind with which a repair records the messages whose content it
/// forgot: their text must come again from the source (an export import or a backfill). Reconcile
/// reads these jobs back to count [`ReconcileReport::awaiting_source`], and marks a job `done`
/// once every message in it has had its content enqueued again (or was deleted).
pub const RESEND_CONTENT_JOB: &str = "resend_content";

/// Keys per [`RESEND_CONTENT_JOB`] job, so that a payload stays far below the stores' JSON limit.
const KEYS_PER_JOB: usize = 1000;

/// How reconcile works.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Repair what it finds (default); `false` only reports.
    pub repair: bool,
    /// Keys read per page from each store (default 1000).
    pub page_size: usize,
    /// At most this many example keys per finding in the report (default 20).
    pub examples: usize,
    /// With `repair` on, a missing collection is re-created with this spec (the dimension and
    /// model id of the embedder the relay uses). Without one, reconcile cannot re-create it and
    /// says so in [`ReconcileReport::collection_not_created`]; the relay creates it on its next
    /// delivery.
    pub collection_spec: Option<CollectionSpec>,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions {
            repair: true,
            page_size: 1000,
            examples: 20,
            collection_spec: None,
        }
    }
}

/// What reconcile found, and what it repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
    /// Messages whose content is expected but neither stored, nor delivered, nor in the outbox:
    /// content a repair forgot (this run or an earlier one) and that only the next import or
    /// backfill can send again, plus content enqueued once whose outbox entry is gone. Search does
    /// not find these messages.
    pub awaiting_source: u64,
    /// In the content store with no message that should have content: deleted.
    pub orphans: u64,
    /// The content store had no collection for the workspace when reconcile ran.
    pub collection_missing: bool,
    /// The repair re-created the missing collection (with [`ReconcileOptions::collection_spec`]).
    pub collection_created: bool,
    /// Why the repair did not re-create the missing collection, when it did not.
    pub collection_not_created: Option<String>,
    /// Messages whose recorded content was forgotten so that their next write (re-import,
    /// backfill, event) enqueues their content again.
    pub requeued: u64,
    /// Orphans deleted from the content store.
    pub orphans_deleted: u64,
    /// Outbox entries pending for the workspace when reconcile ran (drift found while entries
    /// are pending may be in flight: run the relay's `drain` first).
    pub outbox_pending: u64,
    /// Example keys of missing, mismatched, orphaned and awaiting content; serialized as
    /// `{"finding": …, "key": …}` objects.
    #[serde(serialize_with = "examples_as_objects")]
    pub examples: Vec<(String, MessageKey)>,
}

impl ReconcileReport {
    /// Whether both stores agreed: nothing missing, mismatched, orphaned or awaiting its text
    /// from the source, and a collection exists if any message expects content.
    pub fn is_clean(&self) -> bool {
        self.missing == 0
            && self.mismatched == 0
            && self.orphans == 0
            && self.awaiting_source == 0
            && !self.collection_needed()
    }

    /// Whether the collection was missing while messages expect content.
    fn collection_needed(&self) -> bool {
        self.collection_missing && (self.expected > 0 || self.awaiting_source > 0)
    }

    /// One or a few sentences for a person: what reconcile found, what it did, and what is left
    /// to do.
    pub fn summary(&self) -> String {
        if self.is_clean() {
            return format!(
                "clean: {} messages with content, {} stored",
                thousands(self.expected),
                thousands(self.stored)
            );
        }
        let mut s = String::new();
        if self.collection_needed() {
            s.push_str("the workspace's content collection was missing");
            if self.collection_created {
                s.push_str(": re-created it");
            } else if let Some(why) = &self.collection_not_created {
                let _ = write!(s, ": not re-created ({why})");
            } else {
                s.push_str(": run reconcile without --dry-run to re-create it");
            }
            s.push_str("; ");
        }
        let mut found = Vec::new();
        for (n, what) in [
            (self.missing, "messages missing from the content store"),
            (self.mismatched, "messages stored with outdated content"),
            (self.orphans, "documents stored for no message"),
        ] {
            if n > 0 {
                found.push(format!("{} {what}", thousands(n)));
            }
        }
        let mut done = Vec::new();
        if self.requeued > 0 {
            done.push(format!(
                "marked {} for re-delivery",
                thousands(self.requeued)
            ));
        }
        if self.orphans_deleted > 0 {
            done.push(format!(
                "deleted {} orphans",
                thousands(self.orphans_deleted)
            ));
        }
        if !found.is_empty() {
            let _ = write!(s, "found {}", found.join(", "));
            if done.is_empty() {
                s.push_str(" (run reconcile without --dry-run to repair)");
            } else {
                let _ = write!(s, ": {}", done.join(", "));
            }
            s.push_str("; ");
        }
        if self.awaiting_source > 0 {
            let _ = write!(
                s,
                "{} messages need their text again: run ingest-export or backfill for this workspace, then let the relay deliver",
                thousands(self.awaiting_source)
            );
        }
        s.trim_end_matches("; ").to_string()
    }
}

fn examples_as_objects<S: Serializer>(
    examples: &[(String, MessageKey)],
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Example<'a> {
        finding: &'a str,
        key: &'a MessageKey,
    }
    let mut seq = serializer.serialize_seq(Some(examples.len()))?;
    for (finding, key) in examples {
        seq.serialize_element(&Example { finding, key })?;
    }
    seq.end()
}

/// `1382` as `1,382`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
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
/// - A missing collection is re-created when [`ReconcileOptions::collection_spec`] is given.
/// - Content that should exist but does not (or whose hash differs), and content enqueued once
///   whose outbox entry is gone, has its recorded hash forgotten
///   ([`MetadataStore::forget_content`]), so that the next write of those messages re-enqueues
///   their content. The text itself lives only in the content store and the source, so reconcile
///   cannot re-send it alone: re-run the import or backfill afterwards. The forgotten keys are
///   recorded as [`RESEND_CONTENT_JOB`] jobs in the processing queue, so later runs keep
///   reporting them as [`awaiting_source`](ReconcileReport::awaiting_source) until their content
///   is enqueued again.
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
        report.collection_missing = content.collection_info(&workspace).await?.is_none();

        let stored = stored_versions(content.as_ref(), &workspace, page_size).await?;
        report.stored = stored.len() as u64;
        let found = compare(meta.as_ref(), &workspace, stored, &options, &mut report).await?;
        let jobs = resend_jobs(meta.as_ref(), &workspace, page_size).await?;
        // Forgotten by an earlier repair (no hash recorded) or stuck (hash recorded, no outbox
        // entry): disjoint sets.
        let mut awaiting: BTreeSet<MessageKey> = jobs
            .iter()
            .flat_map(|j| j.awaiting.iter().cloned())
            .collect();
        awaiting.extend(found.stuck.iter().cloned());
        for key in awaiting.iter().take(options.examples) {
            report
                .examples
                .push(("awaiting source".into(), key.clone()));
        }

        if options.repair {
            repair_collection(content.as_ref(), &workspace, &options, &mut report).await?;
            let forget: Vec<MessageKey> =
                found.forget.iter().chain(&found.stuck).cloned().collect();
            for chunk in forget.chunks(page_size) {
                report.requeued += meta.forget_content(&workspace, chunk).await?;
            }
            for chunk in found.orphans.chunks(page_size) {
                report.orphans_deleted += content.delete(&workspace, chunk).await?.applied;
            }
            // Every key forgotten now had a hash recorded, so none is in an earlier job.
            record_resend_jobs(meta.as_ref(), &workspace, &jobs, &forget).await?;
            awaiting.extend(forget);
        }
        report.awaiting_source = awaiting.len() as u64;
        info!(
            expected = report.expected,
            stored = report.stored,
            missing = report.missing,
            mismatched = report.mismatched,
            orphans = report.orphans,
            awaiting_source = report.awaiting_source,
            collection_missing = report.collection_missing,
            "reconciled"
        );
        Ok(report)
    }
    .instrument(span)
    .await
}

/// The content store's side: key -> (version, hash). A missing collection holds nothing.
async fn stored_versions(
    content: &dyn ContentStore,
    workspace: &WorkspaceId,
    page_size: usize,
) -> Result<HashMap<MessageKey, (u64, String)>> {
    let mut stored = HashMap::new();
    let mut page = PageRequest::first(page_size);
    loop {
        let rows = match content.list_versions(workspace, &page).await {
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
    Ok(stored)
}

/// What the comparison decided to repair.
#[derive(Debug, Default)]
struct Found {
    /// Missing or mismatched: forget their content.
    forget: Vec<MessageKey>,
    /// Enqueued once, never delivered, and no outbox entry left: forget their content too.
    stuck: BTreeSet<MessageKey>,
    /// Stored for no message: delete.
    orphans: Vec<ContentDelete>,
}

/// Merges the content index with the stored versions, counting into `report`.
async fn compare(
    meta: &dyn MetadataStore,
    workspace: &WorkspaceId,
    mut stored: HashMap<MessageKey, (u64, String)>,
    options: &ReconcileOptions,
    report: &mut ReconcileReport,
) -> Result<Found> {
    let page_size = options.page_size.max(1);
    let mut found = Found::default();
    // Undelivered and not (currently) stored: in the outbox, or stuck.
    let mut undelivered: HashMap<MessageKey, String> = HashMap::new();
    let mut page = PageRequest::first(page_size);
    loop {
        let rows = meta.content_index(workspace, &page).await?;
        let n = rows.len();
        page.after = rows.last().map(|r| r.key.clone());
        for r in rows {
            report.expected += 1;
            match stored.remove(&r.key) {
                Some((_, hash)) if hash == r.content_hash => {}
                Some(_) | None if r.content_id.is_none() => {
                    undelivered.insert(r.key, r.content_hash);
                }
                Some(_) => {
                    report.mismatched += 1;
                    if report.examples.len() < options.examples * 3 {
                        report.examples.push(("mismatched".into(), r.key.clone()));
                    }
                    found.forget.push(r.key);
                }
                None => {
                    report.missing += 1;
                    if report.examples.len() < options.examples * 3 {
                        report.examples.push(("missing".into(), r.key.clone()));
                    }
                    found.forget.push(r.key);
                }
            }
        }
        if n < page_size {
            break;
        }
    }
    found.stuck = stuck(meta, workspace, &undelivered, page_size).await?;
    report.undelivered = (undelivered.len() - found.stuck.len()) as u64;
    // What is left in `stored` has no message that should have content.
    found.orphans = stored
        .into_iter()
        .map(|(key, (version, _))| ContentDelete {
            key,
            version: version + 1,
        })
        .collect();
    found.orphans.sort_by(|a, b| a.key.cmp(&b.key));
    report.orphans = found.orphans.len() as u64;
    for o in found.orphans.iter().take(options.examples) {
        report.examples.push(("orphan".into(), o.key.clone()));
    }
    Ok(found)
}

/// Of the undelivered messages (key -> hash seen in the content index), those with no outbox
/// entry: nothing will ever deliver their content. The outbox is read after the index, and the
/// candidates are read again, so that an entry enqueued or acknowledged meanwhile (a relay or an
/// import running alongside) does not make a healthy message look stuck.
async fn stuck(
    meta: &dyn MetadataStore,
    workspace: &WorkspaceId,
    undelivered: &HashMap<MessageKey, String>,
    page_size: usize,
) -> Result<BTreeSet<MessageKey>> {
    if undelivered.is_empty() {
        return Ok(BTreeSet::new());
    }
    let queued: BTreeSet<MessageKey> = meta
        .undelivered_keys(workspace, usize::MAX)
        .await?
        .into_iter()
        .collect();
    let candidates: Vec<MessageKey> = undelivered
        .keys()
        .filter(|k| !queued.contains(*k))
        .cloned()
        .collect();
    let mut stuck = BTreeSet::new();
    for chunk in candidates.chunks(page_size) {
        for m in meta.get_messages(workspace, chunk).await? {
            let seen = undelivered.get(&m.meta.key);
            if m.meta.content_id.is_none() && m.meta.content_hash.as_ref() == seen {
                stuck.insert(m.meta.key);
            }
        }
    }
    Ok(stuck)
}

/// With repair on, re-creates a missing collection that messages need.
async fn repair_collection(
    content: &dyn ContentStore,
    workspace: &WorkspaceId,
    options: &ReconcileOptions,
    report: &mut ReconcileReport,
) -> Result<()> {
    if !report.collection_needed() {
        return Ok(());
    }
    match &options.collection_spec {
        Some(spec) => {
            content.create_collection(workspace, spec).await?;
            // Its documents come back through the outbox with today's index text.
            content
                .set_index_version(workspace, chatvault_core::INDEX_TEXT_VERSION)
                .await?;
            report.collection_created = true;
            info!(dimension = spec.dimension, model_id = %spec.model_id, "re-created the collection");
        }
        None => {
            report.collection_not_created = Some(
                "no collection spec was given; the relay creates it on its next delivery".into(),
            );
        }
    }
    Ok(())
}

/// A pending [`RESEND_CONTENT_JOB`] job and its messages still waiting for their text.
#[derive(Debug)]
struct ResendJob {
    entry: ProcessingQueueEntry,
    keys: usize,
    awaiting: Vec<MessageKey>,
}

/// The payload of a [`RESEND_CONTENT_JOB`] job.
#[derive(Debug, Serialize, Deserialize)]
struct ResendPayload {
    keys: Vec<MessageKey>,
}

/// The workspace's pending resend jobs, each with the messages whose content is still forgotten
/// (no hash recorded). A message that was deleted, or whose content was enqueued again, no
/// longer waits.
async fn resend_jobs(
    meta: &dyn MetadataStore,
    workspace: &WorkspaceId,
    page_size: usize,
) -> Result<Vec<ResendJob>> {
    let mut jobs = Vec::new();
    for entry in meta
        .list_processing_queue(workspace, Some("pending".into()))
        .await?
    {
        if entry.kind != RESEND_CONTENT_JOB {
            continue;
        }
        let payload: ResendPayload = match serde_json::from_value(entry.payload.clone()) {
            Ok(p) => p,
            Err(e) => {
                warn!(job = %entry.id, error = %e, "ignoring a resend job with an unreadable payload");
                continue;
            }
        };
        let keys: Vec<MessageKey> = payload
            .keys
            .into_iter()
            .filter(|k| &k.workspace == workspace)
            .collect();
        let mut awaiting = Vec::new();
        for chunk in keys.chunks(page_size) {
            for m in meta.get_messages(workspace, chunk).await? {
                if m.meta.content_hash.is_none() {
                    awaiting.push(m.meta.key);
                }
            }
        }
        jobs.push(ResendJob {
            entry,
            keys: keys.len(),
            awaiting,
        });
    }
    Ok(jobs)
}

/// Records the keys whose content this repair forgot, and closes or shrinks the jobs whose
/// messages got their content back, in one write.
async fn record_resend_jobs(
    meta: &dyn MetadataStore,
    workspace: &WorkspaceId,
    jobs: &[ResendJob],
    fresh: &[MessageKey],
) -> Result<()> {
    let mut batch = WriteBatch::new(workspace.clone());
    for job in jobs {
        if job.awaiting.len() == job.keys {
            continue;
        }
        let mut entry = job.entry.clone();
        if job.awaiting.is_empty() {
            entry.status = "done".into();
        } else {
            entry.payload = payload(&job.awaiting)?;
        }
        batch.processing_queue.push(entry);
    }
    let stamp = chrono::Utc::now().timestamp_micros();
    for (i, chunk) in fresh.chunks(KEYS_PER_JOB).enumerate() {
        batch.processing_queue.push(ProcessingQueueEntry {
            id: format!("{RESEND_CONTENT_JOB}:{stamp}:{i}"),
            kind: RESEND_CONTENT_JOB.into(),
            payload: payload(chunk)?,
            status: "pending".into(),
            attempts: 0,
            run_after: None,
        });
    }
    if !batch.is_empty() {
        meta.apply(batch).await?;
    }
    Ok(())
}

fn payload(keys: &[MessageKey]) -> Result<serde_json::Value> {
    Ok(serde_json::to_value(ResendPayload {
        keys: keys.to_vec(),
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1382), "1,382");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn a_missing_collection_with_content_expected_is_not_clean() {
        let empty = ReconcileReport {
            collection_missing: true,
            ..Default::default()
        };
        assert!(empty.is_clean(), "nothing expects content yet");
        let lost = ReconcileReport {
            collection_missing: true,
            collection_created: true,
            expected: 3,
            missing: 3,
            requeued: 3,
            awaiting_source: 3,
            ..Default::default()
        };
        assert!(!lost.is_clean());
        let s = lost.summary();
        assert!(s.contains("collection was missing: re-created it"), "{s}");
        assert!(s.contains("3 messages need their text again"), "{s}");
        let waiting = ReconcileReport {
            awaiting_source: 1382,
            ..Default::default()
        };
        assert!(!waiting.is_clean());
        assert!(waiting
            .summary()
            .contains("1,382 messages need their text again"));
    }
}
