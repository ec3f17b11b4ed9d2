//! Quick checks of the in-memory reference stores (the conformance suites cover them fully).

use chatvault_core::testing::{MemoryContentStore, MemoryMetadataStore};
use chatvault_core::*;

fn key(ts: &str) -> MessageKey {
    MessageKey::parse("T1", "C1", ts).unwrap()
}

#[tokio::test]
async fn metadata_apply_enqueues_once_and_ack_sets_content_id() {
    let store = MemoryMetadataStore::new();
    let ws = WorkspaceId::new("T1").unwrap();
    let mut batch = WriteBatch::new(ws.clone());
    let meta = MessageMeta::new(key("1.0"));
    let content = MessageContent {
        context: Default::default(),
        key: key("1.0"),
        text: "hello".into(),
        attributes: ContentAttributes::from_meta(&meta, ChannelKind::Public),
    };
    batch.messages.push(MessageRecord {
        content: Some(content),
        ..MessageRecord::new(meta)
    });
    let e = store.apply(batch.clone()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    store
        .upsert_workspace(&Workspace::new(ws.clone(), "Acme"))
        .await
        .unwrap();
    assert_eq!(store.apply(batch.clone()).await.unwrap().outbox_enqueued, 1);
    assert_eq!(store.apply(batch).await.unwrap().outbox_enqueued, 0);
    let claimed = store.claim_outbox(&ClaimRequest::default()).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store.ack_outbox(&[claimed[0].id]).await.unwrap();
    let got = store.get_messages(&ws, &[key("1.0")]).await.unwrap();
    assert_eq!(got[0].meta.content_id.as_deref(), Some("C1:1.0"));
}

#[tokio::test]
async fn content_versions_and_search() {
    let store = MemoryContentStore::new();
    let ws = WorkspaceId::new("T1").unwrap();
    let spec = CollectionSpec {
        dimension: 2,
        model_id: "m".into(),
    };
    store.create_collection(&ws, &spec).await.unwrap();
    let doc = |ts: &str, text: &str, v: u64, e: [f32; 2]| ContentDocument {
        content: MessageContent {
            context: Default::default(),
            key: key(ts),
            text: text.into(),
            attributes: ContentAttributes::from_meta(
                &MessageMeta::new(key(ts)),
                ChannelKind::Public,
            ),
        },
        embedding: e.to_vec(),
        version: v,
    };
    let out = store
        .upsert(
            &ws,
            &[
                doc("1.0", "deploy deploy", 1, [1.0, 0.0]),
                doc("2.0", "deploy lunch", 1, [0.0, 1.0]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out.applied, 2);
    assert_eq!(
        store
            .upsert(&ws, &[doc("1.0", "x", 1, [1.0, 0.0])])
            .await
            .unwrap()
            .stale,
        1
    );
    let hits = store
        .search_vector(&ws, &[0.9, 0.1], &SearchOptions::top(1))
        .await
        .unwrap();
    assert_eq!(hits[0].key, key("1.0"));
    let hits = store
        .search_lexical(&ws, "DEPLOY", &SearchOptions::top(5))
        .await
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].key, key("1.0"));
    store
        .delete(
            &ws,
            &[ContentDelete {
                key: key("1.0"),
                version: 2,
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .upsert(&ws, &[doc("1.0", "x", 1, [1.0, 0.0])])
            .await
            .unwrap()
            .stale,
        1
    );
    assert!(store.get(&ws, &[key("1.0")]).await.unwrap().is_empty());
}
