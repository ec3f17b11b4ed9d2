//! Object safety of the three traits, the fault-injection decorators and the mockall mocks.

use std::collections::BTreeSet;
use std::sync::Arc;

use chatvault_core::testing::{
    FailingContentStore, FailingEmbedder, FailurePlan, MemoryContentStore, MemoryMetadataStore,
    MockContentStore, MockEmbedder, MockMetadataStore,
};
use chatvault_core::*;

#[tokio::test]
async fn traits_are_object_safe_and_shareable() {
    let m: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let c: Arc<dyn ContentStore> = Arc::new(MemoryContentStore::new());
    let e: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(8).unwrap());
    let handle = tokio::spawn({
        let (m, c, e) = (m.clone(), c.clone(), e.clone());
        async move {
            assert!(m.list_workspaces().await.unwrap().is_empty());
            assert!(c.list_collections().await.unwrap().is_empty());
            e.embed(&["x".to_string()]).await.unwrap()
        }
    });
    assert_eq!(handle.await.unwrap()[0].len(), 8);
    assert_eq!((m.backend(), c.backend()), ("memory", "memory"));
    assert!(format!("{m:?}{c:?}{e:?}").contains("MemoryMetadataStore"));
    // Decorators over trait objects are trait objects too.
    let f: Arc<dyn ContentStore> = Arc::new(FailingContentStore::new(c, FailurePlan::Never));
    assert!(f.list_collections().await.unwrap().is_empty());
    let fe: Arc<dyn Embedder> = Arc::new(FailingEmbedder::new(e, FailurePlan::Never));
    assert_eq!(fe.dimension(), 8);
}

#[test]
fn failure_plans() {
    let calls = |p: FailurePlan| (1..=6).filter(|n| p.fails(*n)).collect::<Vec<_>>();
    assert_eq!(calls(FailurePlan::Never), Vec::<u64>::new());
    assert_eq!(calls(FailurePlan::Always), [1, 2, 3, 4, 5, 6]);
    assert_eq!(calls(FailurePlan::FirstN(2)), [1, 2]);
    assert_eq!(calls(FailurePlan::EveryNth(3)), [3, 6]);
    assert_eq!(calls(FailurePlan::EveryNth(0)), Vec::<u64>::new());
    assert_eq!(calls(FailurePlan::Calls(BTreeSet::from([2, 5]))), [2, 5]);
}

#[tokio::test]
async fn failing_content_store_fails_watched_calls_without_side_effects() {
    let inner = Arc::new(MemoryContentStore::new());
    let store = FailingContentStore::new(inner.clone(), FailurePlan::FirstN(2)).only(&["upsert"]);
    let ws = WorkspaceId::new("T1").unwrap();
    let spec = CollectionSpec {
        dimension: 2,
        model_id: "m".into(),
    };
    store.create_collection(&ws, &spec).await.unwrap(); // not watched
    let key = MessageKey::parse("T1", "C1", "1.0").unwrap();
    let doc = ContentDocument {
        content: MessageContent {
            context: Default::default(),
            key: key.clone(),
            text: "hi".into(),
            attributes: ContentAttributes::from_meta(
                &MessageMeta::new(key.clone()),
                ChannelKind::Public,
            ),
        },
        embedding: vec![1.0, 0.0],
        version: 1,
    };
    for attempt in 1..=2 {
        let e = store
            .upsert(&ws, std::slice::from_ref(&doc))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "attempt {attempt}");
        assert!(e.is_retryable());
        assert!(
            inner
                .get(&ws, std::slice::from_ref(&key))
                .await
                .unwrap()
                .is_empty(),
            "a failed call reached the store"
        );
    }
    assert_eq!(store.upsert(&ws, &[doc]).await.unwrap().applied, 1);
    assert_eq!((store.calls(), store.failures()), (3, 2));
    store.set_plan(FailurePlan::Always);
    assert!(
        store.get(&ws, std::slice::from_ref(&key)).await.is_ok(),
        "get is not watched"
    );
    assert!(store.upsert(&ws, &[]).await.is_err());
    assert_eq!(store.inner().get(&ws, &[key]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn failing_embedder_counts_and_fails_every_nth() {
    let e = FailingEmbedder::new(
        Arc::new(HashingEmbedder::new(4).unwrap()),
        FailurePlan::EveryNth(3),
    );
    let texts = vec!["a".to_string(), "b".to_string()];
    let results: Vec<bool> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(e.embed(&texts).await.is_ok());
        }
        v
    };
    assert_eq!(results, [true, true, false, true, true, false]);
    assert_eq!((e.calls(), e.failures()), (6, 2));
    assert_eq!((e.dimension(), e.model_id()), (4, e.inner().model_id()));
}

#[tokio::test]
async fn mock_metadata_store_works() {
    let mut m = MockMetadataStore::new();
    m.expect_backend().return_const("mock");
    m.expect_apply()
        .withf(|b: &WriteBatch| b.messages.is_empty())
        .times(1)
        .returning(|_| {
            Ok(ApplyReport {
                outbox_enqueued: 3,
                ..Default::default()
            })
        });
    m.expect_claim_outbox()
        .returning(|_| Err(Error::unavailable("database down")));
    let m: Arc<dyn MetadataStore> = Arc::new(m);
    let ws = WorkspaceId::new("T1").unwrap();
    assert_eq!(m.backend(), "mock");
    assert_eq!(
        m.apply(WriteBatch::new(ws)).await.unwrap().outbox_enqueued,
        3
    );
    assert!(m
        .claim_outbox(&ClaimRequest::default())
        .await
        .unwrap_err()
        .is_retryable());
}

#[tokio::test]
async fn mock_content_store_works() {
    let mut c = MockContentStore::new();
    c.expect_capabilities().returning(|| ContentCapabilities {
        lexical_search: false,
        ..Default::default()
    });
    c.expect_search_lexical()
        .returning(|_, _, _| Err(Error::unsupported("no lexical search")));
    let c: Arc<dyn ContentStore> = Arc::new(c);
    let ws = WorkspaceId::new("T1").unwrap();
    assert!(!c.capabilities().lexical_search);
    let e = c
        .search_lexical(&ws, "q", &SearchOptions::top(3))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
}

#[tokio::test]
async fn mock_embedder_works() {
    let mut e = MockEmbedder::new();
    e.expect_dimension().return_const(3usize);
    e.expect_embed()
        .times(2)
        .returning(|texts| Ok(texts.iter().map(|_| vec![1.0, 0.0, 0.0]).collect()));
    let e: Arc<dyn Embedder> = Arc::new(e);
    assert_eq!(e.dimension(), 3);
    assert_eq!(e.embed(&["a".into(), "b".into()]).await.unwrap().len(), 2);
    assert!(e.embed(&[]).await.unwrap().is_empty());
}
