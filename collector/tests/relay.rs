//! The relay and reconcile with the in-memory reference stores and injected faults.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chatvault_collector::{reconcile, Collector, ImportOptions, Relay, RelayOptions};
use chatvault_core::testing::{MemoryContentStore, MemoryMetadataStore};
use chatvault_core::{
    ClaimRequest, ContentStore, MetadataStore, PageRequest, RetryPolicy, WorkspaceId,
};
use common::*;

const EXPORT: &str = "slack-export-viewer-testarchive";

fn opts(max_attempts: u32) -> RelayOptions {
    RelayOptions {
        batch_size: 16,
        retry: RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(10),
        },
        poll_interval: Duration::from_millis(5),
        lease: Duration::from_millis(300),
        ..Default::default()
    }
}

async fn imported() -> (
    Arc<dyn MetadataStore>,
    Arc<dyn ContentStore>,
    WorkspaceId,
    u64,
) {
    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let content: Arc<dyn ContentStore> = Arc::new(MemoryContentStore::new());
    let ws = WorkspaceId::new("T1").unwrap();
    let s = Collector::new(meta.clone(), ws.clone())
        .import_export(testdata(EXPORT), ImportOptions::default())
        .await
        .unwrap();
    assert!(s.totals.with_content > 50);
    (meta, content, ws, s.totals.with_content)
}

#[tokio::test]
async fn content_store_failing_k_times_then_both_stores_agree() {
    let (meta, content, ws, n) = imported().await;
    let flaky = FlakyContent::new(content.clone(), 4);
    let embedder = CountingEmbedder::new();
    let report = Relay::new(meta.clone(), flaky.clone(), embedder.clone(), opts(8))
        .drain()
        .await
        .unwrap();
    assert_eq!(flaky.failed.load(Ordering::SeqCst), 4);
    assert!(report.retried >= 4, "{report:?}");
    assert_eq!(report.dead_lettered, 0);
    assert_stores_agree(meta.as_ref(), content.as_ref(), &ws).await;
    assert_eq!(
        content
            .collection_info(&ws)
            .await
            .unwrap()
            .unwrap()
            .documents,
        n
    );
    // retried batches reuse nothing (nothing stored yet) but never embed a text twice after success
    assert!(embedder.texts() >= n);
}

#[tokio::test]
async fn embedder_failing_then_both_stores_agree() {
    let (meta, content, ws, n) = imported().await;
    let embedder = CountingEmbedder::new();
    embedder.fail_first.store(3, Ordering::SeqCst);
    let report = Relay::new(meta.clone(), content.clone(), embedder.clone(), opts(8))
        .drain()
        .await
        .unwrap();
    assert!(report.retried >= 3);
    assert_eq!(
        embedder.texts(),
        n,
        "each text embedded exactly once after the failures"
    );
    assert_stores_agree(meta.as_ref(), content.as_ref(), &ws).await;
}

#[tokio::test]
async fn a_relay_dying_after_its_claim_is_replaced_after_the_lease() {
    let (meta, content, ws, _) = imported().await;
    // a relay claims a batch and dies before writing anything
    let claimed = meta
        .claim_outbox(&ClaimRequest {
            workspace: Some(ws.clone()),
            limit: 10,
            lease: Duration::from_millis(200),
            owner: "dead".into(),
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 10);
    let embedder = CountingEmbedder::new();
    Relay::new(meta.clone(), content.clone(), embedder, opts(8))
        .drain()
        .await
        .unwrap();
    assert_stores_agree(meta.as_ref(), content.as_ref(), &ws).await;
}

#[tokio::test]
async fn dead_letters_are_listed_and_requeued() {
    let (meta, content, ws, _) = imported().await;
    let flaky = FlakyContent::new(content.clone(), 1_000);
    let relay = Relay::new(
        meta.clone(),
        flaky.clone(),
        CountingEmbedder::new(),
        opts(2),
    );
    let report = relay.drain().await.unwrap();
    assert!(report.dead_lettered > 0);
    let dead = relay.dead_letters(10_000).await.unwrap();
    assert_eq!(dead.len() as u64, report.dead_lettered);
    assert!(dead[0]
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("injected"));
    flaky.fail_writes.store(0, Ordering::SeqCst);
    assert_eq!(
        relay.requeue_dead_letters(None).await.unwrap(),
        dead.len() as u64
    );
    relay.drain().await.unwrap();
    assert_stores_agree(meta.as_ref(), content.as_ref(), &ws).await;
}

#[tokio::test]
async fn spawned_relay_delivers_and_stops() {
    let (meta, content, ws, n) = imported().await;
    let handle = Relay::new(
        meta.clone(),
        content.clone(),
        CountingEmbedder::new(),
        opts(8),
    )
    .spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ob = meta.outbox_stats(Some(ws.clone())).await.unwrap();
        if ob.pending + ob.leased == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "relay did not deliver"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = handle.shutdown().await.unwrap();
    assert_eq!(report.acked, n);
    assert_stores_agree(meta.as_ref(), content.as_ref(), &ws).await;
}

#[tokio::test]
async fn reconcile_finds_and_repairs_missing_content_and_orphans() {
    let (meta, content, ws, n) = imported().await;
    let embedder = CountingEmbedder::new();
    let relay = Relay::new(meta.clone(), content.clone(), embedder.clone(), opts(8));
    relay.drain().await.unwrap();
    let clean = reconcile(meta.clone(), content.clone(), ws.clone())
        .await
        .unwrap();
    assert!(clean.is_clean(), "{clean:?}");
    assert_eq!((clean.expected, clean.stored), (n, n));

    // an orphan: content for a message the metadata store does not know
    let mut doc = content
        .get(
            &ws,
            &[meta
                .content_index(&ws, &PageRequest::first(1))
                .await
                .unwrap()[0]
                .key
                .clone()],
        )
        .await
        .unwrap()
        .remove(0);
    doc.content.key.channel = chatvault_core::ChannelId::new("CORPHAN").unwrap();
    doc.content.key.ts = chatvault_core::Ts::new("1.000001").unwrap();
    content.upsert(&ws, &[doc]).await.unwrap();
    // lost content: the whole collection is gone
    let r = reconcile(meta.clone(), content.clone(), ws.clone())
        .await
        .unwrap();
    assert_eq!((r.orphans, r.orphans_deleted), (1, 1));
    content.drop_collection(&ws).await.unwrap();
    let r = reconcile(meta.clone(), content.clone(), ws.clone())
        .await
        .unwrap();
    assert_eq!((r.missing, r.requeued, r.stored), (n, n, 0));
    // the next import re-enqueues exactly what was lost; a new relay delivers it
    let s = Collector::new(meta.clone(), ws.clone())
        .import_export(testdata(EXPORT), ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(s.outbox_enqueued, n);
    // the same relay recreates the dropped collection
    relay.drain().await.unwrap();
    assert_stores_agree(meta.as_ref(), content.as_ref(), &ws).await;
    assert!(reconcile(meta, content, ws).await.unwrap().is_clean());
}

/// Another process (here: another store on the same directory) holds the workspace's writer lock:
/// the relay hands its batch back untouched — no attempt counted, nothing dead-lettered — and
/// reports the conflict; once the lock is free, everything is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_lock_held_elsewhere_is_a_conflict_not_a_delivery_failure() {
    use chatvault_core::ErrorKind;
    use chatvault_storage_vector::{VectorStore, VectorStoreOptions};

    let (meta, _, ws, n) = imported().await;
    let dir = tempfile::tempdir().unwrap();
    let holder = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
    holder.acquire_writer(&ws, Duration::ZERO).unwrap();
    let content: Arc<dyn ContentStore> =
        Arc::new(VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap());
    let relay = Relay::new(
        meta.clone(),
        content.clone(),
        CountingEmbedder::new(),
        opts(1),
    );
    let e = relay.drain().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("being written by"), "{e}");
    let stats = meta.outbox_stats(Some(ws.clone())).await.unwrap();
    assert_eq!(
        (stats.pending, stats.leased, stats.dead),
        (n, 0, 0),
        "{stats:?}"
    );
    let entries = meta
        .claim_outbox(&ClaimRequest {
            workspace: Some(ws.clone()),
            limit: usize::MAX >> 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(entries
        .iter()
        .all(|e| e.attempts == 0 && e.last_error.is_none()));
    meta.release_outbox(&entries.iter().map(|e| e.id).collect::<Vec<_>>())
        .await
        .unwrap();

    holder.close();
    let report = relay.drain().await.unwrap();
    assert_eq!((report.acked, report.dead_lettered), (n, 0));
    assert_stores_agree(meta.as_ref(), content.as_ref(), &ws).await;
}
