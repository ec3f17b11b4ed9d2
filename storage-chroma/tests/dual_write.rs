//! The collector's write path with this store in place of the in-process one: the real export
//! `testdata/slack-export-viewer-testarchive` imported into the memory metadata store, relayed
//! to ChromaDB and, separately, to the reference `MemoryContentStore` — same counts, same
//! documents, same search results.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chatvault_collector::{Collector, ImportOptions, Relay, RelayOptions};
use chatvault_core::testing::{MemoryContentStore, MemoryMetadataStore};
use chatvault_core::{
    ChannelKind, ContentFilter, ContentStore, Embedder, HashingEmbedder, MetadataStore,
    PageRequest, RetryPolicy, SearchOptions, WorkspaceId,
};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("testdata")
        .join(name)
}

/// Imports the export and relays it into `content`; returns the metadata store.
async fn import_and_relay(
    content: Arc<dyn ContentStore>,
    embedder: Arc<HashingEmbedder>,
    ws: &WorkspaceId,
) -> (Arc<dyn MetadataStore>, u64) {
    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let summary = Collector::new(meta.clone(), ws.clone())
        .import_export(
            testdata("slack-export-viewer-testarchive"),
            ImportOptions::default(),
        )
        .await
        .expect("import the test archive");
    let options = RelayOptions {
        batch_size: 64,
        retry: RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
        },
        poll_interval: Duration::from_millis(5),
        ..Default::default()
    };
    let report = Relay::new(meta.clone(), content, embedder, options)
        .drain()
        .await
        .expect("relay drains");
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    (meta, summary.totals.with_content)
}

async fn all_versions(
    store: &dyn ContentStore,
    ws: &WorkspaceId,
) -> Vec<chatvault_core::ContentVersion> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(100);
    loop {
        let p = store.list_versions(ws, &page).await.expect("list_versions");
        if p.is_empty() {
            return out;
        }
        page.after = p.last().map(|v| v.key.clone());
        out.extend(p);
    }
}

#[tokio::test]
async fn collector_writes_the_same_into_chroma_as_into_memory() {
    let Some(chroma) =
        common::dyn_store("collector_writes_the_same_into_chroma_as_into_memory").await
    else {
        return;
    };
    let ws = WorkspaceId::new("T1").unwrap();
    let embedder = Arc::new(HashingEmbedder::new(64).unwrap());
    let memory: Arc<dyn ContentStore> = Arc::new(MemoryContentStore::new());
    let (_, n_chroma) = import_and_relay(chroma.clone(), embedder.clone(), &ws).await;
    let (_, n_memory) = import_and_relay(memory.clone(), embedder.clone(), &ws).await;
    assert_eq!(n_chroma, n_memory);
    assert!(n_chroma > 50, "the archive has content: {n_chroma}");

    // same counts
    let ci = chroma
        .collection_info(&ws)
        .await
        .unwrap()
        .expect("chroma collection");
    let mi = memory
        .collection_info(&ws)
        .await
        .unwrap()
        .expect("memory collection");
    assert_eq!(ci.documents, mi.documents);
    assert_eq!(ci.documents, n_chroma);
    assert_eq!(ci.spec, mi.spec);

    // same keys, content hashes and versions
    let cv = all_versions(chroma.as_ref(), &ws).await;
    let mv = all_versions(memory.as_ref(), &ws).await;
    assert_eq!(cv, mv);

    // same documents
    let keys: Vec<_> = mv.iter().map(|v| v.key.clone()).collect();
    let cd = chroma.get(&ws, &keys).await.unwrap();
    let md = memory.get(&ws, &keys).await.unwrap();
    assert_eq!(cd.len(), md.len());
    for (c, m) in cd.iter().zip(&md) {
        assert_eq!(c.content, m.content);
        assert_eq!(c.version, m.version);
    }

    // same search results: the collection is small, so Chroma's HNSW is exact here
    let queries = [
        "deploy",
        "hello world",
        "slack export viewer",
        "thanks",
        "bug",
    ];
    let filters = [
        ContentFilter::default(),
        ContentFilter {
            is_reply: Some(false),
            ..Default::default()
        },
        ContentFilter {
            visibility: Some(vec![ChannelKind::Public]),
            has_links: Some(true),
            ..Default::default()
        },
        ContentFilter {
            keys: Some(keys.iter().step_by(3).cloned().collect()),
            ..Default::default()
        },
    ];
    for q in queries {
        let v = embedder.embed(&[q.to_string()]).await.unwrap().remove(0);
        for f in &filters {
            let opts = SearchOptions::top(10).with_filter(f.clone());
            let c = chroma.search_vector(&ws, &v, &opts).await.unwrap();
            let m = memory.search_vector(&ws, &v, &opts).await.unwrap();
            let ck: Vec<_> = c.iter().map(|h| &h.key).collect();
            let mk: Vec<_> = m.iter().map(|h| &h.key).collect();
            assert_eq!(ck, mk, "query {q:?}, filter {f:?}");
            for (a, b) in c.iter().zip(&m) {
                assert!((a.score - b.score).abs() < 1e-4, "{a:?} vs {b:?}");
            }
        }
    }
    // and Chroma says what it cannot do, instead of answering something else
    assert!(!chroma.capabilities().lexical_search);
}
