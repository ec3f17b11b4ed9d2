//! Reconcile when a workspace's content collection is gone (its `ws-<id>/` directory deleted),
//! with the real stores: SQLite metadata and the embedded vector store, both in a tempdir.

mod common;

use std::path::Path;
use std::sync::Arc;

use chatvault_collector::{
    reconcile_with, Collector, ImportOptions, ReconcileOptions, ReconcileReport, Relay,
    RelayOptions, RESEND_CONTENT_JOB,
};
use chatvault_core::{CollectionSpec, ContentStore, Embedder, MetadataStore, WorkspaceId};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};
use common::*;

const EXPORT: &str = "slack-export-houstondatavis";

struct Stores {
    meta: Arc<dyn MetadataStore>,
    content: Arc<dyn ContentStore>,
    ws: WorkspaceId,
    /// Messages with content in the export.
    with_content: u64,
    _dir: tempfile::TempDir,
}

fn spec() -> CollectionSpec {
    let e = CountingEmbedder::new();
    CollectionSpec {
        dimension: e.dimension(),
        model_id: e.model_id().to_string(),
    }
}

fn content_store(dir: &Path) -> Arc<dyn ContentStore> {
    Arc::new(VectorStore::open(dir.join("content"), VectorStoreOptions::default()).unwrap())
}

async fn import(meta: &Arc<dyn MetadataStore>, ws: &WorkspaceId) -> u64 {
    Collector::new(meta.clone(), ws.clone())
        .import_export(testdata(EXPORT), ImportOptions::default())
        .await
        .unwrap()
        .totals
        .with_content
}

async fn drain(s: &Stores) {
    let report = Relay::new(
        s.meta.clone(),
        s.content.clone(),
        CountingEmbedder::new(),
        RelayOptions::default(),
    )
    .drain()
    .await
    .unwrap();
    assert_eq!(report.dead_lettered, 0, "{report:?}");
}

async fn run(s: &Stores, repair: bool, spec: Option<CollectionSpec>) -> ReconcileReport {
    reconcile_with(
        s.meta.clone(),
        s.content.clone(),
        s.ws.clone(),
        ReconcileOptions {
            repair,
            collection_spec: spec,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// The export imported and delivered, then the collection's directory deleted while no store
/// had it open, and the content store opened again.
async fn collection_deleted() -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("meta.db").display());
    let meta: Arc<dyn MetadataStore> = Arc::new(
        SqlMetadataStore::connect(&url, ConnectOptions::default())
            .await
            .unwrap(),
    );
    let ws = WorkspaceId::new("T1").unwrap();
    let with_content = import(&meta, &ws).await;
    assert!(with_content > 100, "{with_content}");
    let mut s = Stores {
        meta,
        content: content_store(dir.path()),
        ws,
        with_content,
        _dir: dir,
    };
    drain(&s).await;
    let before = run(&s, false, None).await;
    assert!(before.is_clean(), "{before:?}");
    assert_eq!(before.stored, with_content);

    // Drop the only handle to the vector store (closing the collection and releasing its
    // lock), delete the directory, open the store again.
    s.content = Arc::new(chatvault_core::testing::MemoryContentStore::new());
    let collection = s._dir.path().join("content").join(format!("ws-{}", s.ws));
    assert!(collection.is_dir(), "{}", collection.display());
    std::fs::remove_dir_all(&collection).unwrap();
    s.content = content_store(s._dir.path());
    assert!(s.content.collection_info(&s.ws).await.unwrap().is_none());
    s
}

#[tokio::test]
async fn dry_run_reports_the_missing_collection_and_is_not_clean() {
    let s = collection_deleted().await;
    let r = run(&s, false, Some(spec())).await;
    assert!(r.collection_missing, "{r:?}");
    assert!(!r.collection_created, "a dry run creates nothing: {r:?}");
    assert!(!r.is_clean(), "{r:?}");
    assert_eq!(
        (r.expected, r.stored, r.missing),
        (s.with_content, 0, s.with_content)
    );
    assert_eq!((r.requeued, r.awaiting_source), (0, 0));
    assert!(s.content.collection_info(&s.ws).await.unwrap().is_none());
    let summary = r.summary();
    assert!(summary.contains("collection was missing"), "{summary}");
    assert!(summary.contains("without --dry-run"), "{summary}");
}

#[tokio::test]
async fn repair_recreates_the_collection_and_reports_the_messages_awaiting_their_text() {
    let s = collection_deleted().await;
    let r = run(&s, true, Some(spec())).await;
    assert!(r.collection_missing && r.collection_created, "{r:?}");
    assert_eq!(r.collection_not_created, None);
    assert_eq!(r.requeued, s.with_content);
    assert_eq!(r.awaiting_source, s.with_content);
    assert!(!r.is_clean(), "{r:?}");
    let summary = r.summary();
    assert!(summary.contains("re-created it"), "{summary}");
    assert!(
        summary.contains("need their text again: run ingest-export or backfill"),
        "{summary}"
    );
    let info = s.content.collection_info(&s.ws).await.unwrap();
    assert_eq!(info.map(|i| (i.spec, i.documents)), Some((spec(), 0)));
    let jobs = s
        .meta
        .list_processing_queue(&s.ws, Some("pending".into()))
        .await
        .unwrap();
    assert!(
        jobs.iter().all(|j| j.kind == RESEND_CONTENT_JOB),
        "{jobs:?}"
    );
    assert!(!jobs.is_empty());

    // A later dry run still sees the drift: the text has not come back.
    let again = run(&s, false, Some(spec())).await;
    assert!(!again.collection_missing, "{again:?}");
    assert_eq!(again.awaiting_source, s.with_content, "{again:?}");
    assert_eq!((again.expected, again.missing), (0, 0), "{again:?}");
    assert!(!again.is_clean(), "{again:?}");
    let summary = again.summary();
    assert!(
        summary.contains("messages need their text again"),
        "{summary}"
    );
}

#[tokio::test]
async fn reimport_and_drain_after_the_repair_bring_reconcile_back_to_clean() {
    let s = collection_deleted().await;
    run(&s, true, Some(spec())).await;
    assert_eq!(import(&s.meta, &s.ws).await, s.with_content);

    // Re-enqueued but not delivered yet: undelivered, no longer awaiting the source.
    let queued = run(&s, false, None).await;
    assert_eq!(
        (queued.undelivered, queued.awaiting_source),
        (s.with_content, 0),
        "{queued:?}"
    );

    drain(&s).await;
    let r = run(&s, false, None).await;
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.awaiting_source, 0);
    assert_eq!((r.expected, r.stored), (s.with_content, s.with_content));
    assert_stores_agree(s.meta.as_ref(), s.content.as_ref(), &s.ws).await;

    // A repair closes the resend jobs that are done.
    let r = run(&s, true, None).await;
    assert!(r.is_clean(), "{r:?}");
    let pending = s
        .meta
        .list_processing_queue(&s.ws, Some("pending".into()))
        .await
        .unwrap();
    assert!(pending.is_empty(), "{pending:?}");
}

#[tokio::test]
async fn repair_without_a_spec_says_it_could_not_recreate_the_collection() {
    let s = collection_deleted().await;
    let r = run(&s, true, None).await;
    assert!(r.collection_missing && !r.collection_created, "{r:?}");
    let why = r.collection_not_created.clone().unwrap_or_default();
    assert!(why.contains("no collection spec"), "{r:?}");
    assert!(r.summary().contains("not re-created"), "{}", r.summary());
    assert!(s.content.collection_info(&s.ws).await.unwrap().is_none());
    // The content was still marked for re-delivery.
    assert_eq!(
        (r.requeued, r.awaiting_source),
        (s.with_content, s.with_content)
    );
}
