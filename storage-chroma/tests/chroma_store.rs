//! The Chroma content store against a real ChromaDB server: the parts of the contract that are
//! Chroma-specific (batching, tombstones in their own collection, names, errors), and filters
//! checked against the reference semantics of `ContentFilter::matches`.

mod common;

use std::collections::BTreeSet;

use chatvault_core::{
    ChannelId, ChannelKind, CollectionSpec, ContentAttributes, ContentDelete, ContentDocument,
    ContentFilter, ContentStore, ErrorKind, HashingEmbedder, MessageContent, MessageKey,
    PageRequest, SearchOptions, TimeRange, Ts, UserId, WorkspaceId,
};
use chatvault_storage_chroma::{ChromaContentStore, ChromaOptions, RetrySettings};

const DIM: usize = 32;

fn spec() -> CollectionSpec {
    CollectionSpec {
        dimension: DIM,
        model_id: "chatvault-hashing-v1-32".into(),
    }
}

fn ws(s: &str) -> WorkspaceId {
    WorkspaceId::new(s).unwrap()
}

fn key(w: &str, c: &str, ts: &str) -> MessageKey {
    MessageKey::parse(w, c, ts).unwrap()
}

/// Message `i` of a small synthetic corpus with varied attributes.
fn doc(w: &str, i: usize, version: u64) -> ContentDocument {
    let e = HashingEmbedder::new(DIM).unwrap();
    let channel = ["C1", "C2", "C3"][i % 3];
    let ts = format!("{}.{:06}", 1_700_000_000 + i * 60, i);
    let topic = [
        "deploy failed on staging",
        "lunch plans",
        "release notes for v2",
        "flaky test",
    ][i % 4];
    let text = format!("{topic} #{i}");
    let thread_ts = (i % 5 != 0).then(|| {
        Ts::new(format!(
            "{}.{:06}",
            1_700_000_000 + (i / 5) * 5 * 60,
            (i / 5) * 5
        ))
        .unwrap()
    });
    let is_reply = thread_ts.is_some();
    ContentDocument {
        embedding: e.embed_one(&text),
        content: MessageContent {
            context: Default::default(),
            key: key(w, channel, &ts),
            text,
            attributes: ContentAttributes {
                user: (i % 7 != 0).then(|| UserId::new(format!("U{}", i % 4)).unwrap()),
                thread_ts,
                is_reply,
                has_files: i % 3 == 1,
                has_links: i % 4 == 2,
                reaction_count: (i % 6) as u32,
                visibility: [ChannelKind::Public, ChannelKind::Private, ChannelKind::Im][i % 3],
            },
        },
        version,
    }
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-6 * x.abs().max(1.0))
}

#[tokio::test]
async fn round_trip_counts_and_listing() {
    let Some(store) = common::store("round_trip_counts_and_listing").await else {
        return;
    };
    let w = ws("T1");
    store.create_collection(&w, &spec()).await.unwrap();
    store.create_collection(&w, &spec()).await.unwrap(); // idempotent
    let docs: Vec<_> = (0..20).map(|i| doc("T1", i, 1)).collect();
    let out = store.upsert(&w, &docs).await.unwrap();
    assert_eq!((out.applied, out.stale), (20, 0));
    let keys: Vec<_> = docs.iter().rev().map(|d| d.key().clone()).collect();
    let got = store.get(&w, &keys).await.unwrap();
    assert_eq!(got.len(), 20);
    for (g, d) in got.iter().zip(docs.iter().rev()) {
        assert_eq!(g.content, d.content, "content of {}", d.key());
        assert_eq!(g.version, 1);
        assert!(
            close(&g.embedding, &d.embedding),
            "embedding of {}",
            d.key()
        );
    }
    let info = store.collection_info(&w).await.unwrap().unwrap();
    assert_eq!((info.documents, info.spec.clone()), (20, spec()));
    let all = store.list_collections().await.unwrap();
    assert_eq!(all, vec![info]);
    assert!(store.collection_info(&ws("T9")).await.unwrap().is_none());
    store.delete_database().await.unwrap();
}

#[tokio::test]
async fn versions_and_tombstones() {
    let Some(store) = common::store("versions_and_tombstones").await else {
        return;
    };
    let w = ws("T1");
    store.create_collection(&w, &spec()).await.unwrap();
    let d = |v| doc("T1", 3, v);
    assert_eq!(store.upsert(&w, &[d(5)]).await.unwrap().applied, 1);
    assert_eq!(store.upsert(&w, &[d(5)]).await.unwrap().stale, 1);
    assert_eq!(store.upsert(&w, &[d(4)]).await.unwrap().stale, 1);
    let k = d(5).key().clone();
    let del = |v| ContentDelete {
        key: k.clone(),
        version: v,
    };
    assert_eq!(store.delete(&w, &[del(5)]).await.unwrap().stale, 1);
    assert_eq!(
        store.get(&w, std::slice::from_ref(&k)).await.unwrap().len(),
        1
    );
    assert_eq!(store.delete(&w, &[del(7)]).await.unwrap().applied, 1);
    assert!(store
        .get(&w, std::slice::from_ref(&k))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.collection_info(&w).await.unwrap().unwrap().documents,
        0
    );
    // a late upsert older than the tombstone cannot resurrect it
    assert_eq!(store.upsert(&w, &[d(6)]).await.unwrap().stale, 1);
    assert!(store
        .get(&w, std::slice::from_ref(&k))
        .await
        .unwrap()
        .is_empty());
    let q = d(6).embedding;
    assert!(store
        .search_vector(&w, &q, &SearchOptions::top(5))
        .await
        .unwrap()
        .is_empty());
    // a newer one can
    assert_eq!(store.upsert(&w, &[d(8)]).await.unwrap().applied, 1);
    assert_eq!(
        store.get(&w, std::slice::from_ref(&k)).await.unwrap()[0].version,
        8
    );
    // deleting a key never stored records a tombstone
    let never = key("T1", "C9", "1.000001");
    let out = store
        .delete(
            &w,
            &[ContentDelete {
                key: never.clone(),
                version: 3,
            }],
        )
        .await
        .unwrap();
    assert_eq!(out.applied, 1);
    let mut late = doc("T1", 0, 2);
    late.content.key = never.clone();
    assert_eq!(store.upsert(&w, &[late]).await.unwrap().stale, 1);
    // the same key twice in one batch: the higher version wins
    let out = store.upsert(&w, &[d(10), d(12), d(11)]).await.unwrap();
    assert_eq!((out.applied, out.stale), (1, 2));
    assert_eq!(
        store.get(&w, std::slice::from_ref(&k)).await.unwrap()[0].version,
        12
    );
    let vs = store
        .list_versions(&w, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(vs.len(), 1);
    assert_eq!(
        (vs[0].version, vs[0].content_hash.clone()),
        (12, d(12).content.content_hash())
    );
    // a dropped and re-created collection starts empty, without the old tombstones
    store.drop_collection(&w).await.unwrap();
    store.drop_collection(&w).await.unwrap();
    assert_eq!(
        store
            .get(&w, std::slice::from_ref(&k))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    store.create_collection(&w, &spec()).await.unwrap();
    let out = store
        .upsert(
            &w,
            &[{
                let mut x = doc("T1", 0, 1);
                x.content.key = never.clone();
                x
            }],
        )
        .await
        .unwrap();
    assert_eq!(out.applied, 1);
    store.delete_database().await.unwrap();
}

#[tokio::test]
async fn invalid_input_and_missing_collections() {
    let Some(store) = common::store("invalid_input_and_missing_collections").await else {
        return;
    };
    let w = ws("T1");
    let missing = store.upsert(&w, &[doc("T1", 0, 1)]).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert!(missing.to_string().contains("T1"), "{missing}");
    assert_eq!(
        store
            .search_vector(&w, &[0.0; DIM], &SearchOptions::top(3))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let zero = CollectionSpec {
        dimension: 0,
        model_id: "m".into(),
    };
    assert_eq!(
        store.create_collection(&w, &zero).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    store.create_collection(&w, &spec()).await.unwrap();
    let other = CollectionSpec {
        dimension: DIM,
        model_id: "another".into(),
    };
    assert_eq!(
        store
            .create_collection(&w, &other)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    let mut short = doc("T1", 1, 1);
    short.embedding.pop();
    let good = doc("T1", 2, 1);
    let e = store
        .upsert(&w, &[good.clone(), short.clone()])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains(&short.key().to_string()), "{e}");
    // nothing of the rejected batch was written
    assert!(store
        .get(&w, &[good.key().clone()])
        .await
        .unwrap()
        .is_empty());
    let mut nan = doc("T1", 1, 1);
    nan.embedding[3] = f32::NAN;
    assert_eq!(
        store.upsert(&w, &[nan]).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let foreign = doc("T2", 1, 1);
    assert_eq!(
        store
            .upsert(&w, std::slice::from_ref(&foreign))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        store
            .get(&w, &[foreign.key().clone()])
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    let mut huge = doc("T1", 1, 1);
    huge.version = u64::MAX;
    assert_eq!(
        store.upsert(&w, &[huge]).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        store
            .search_vector(&w, &[0.5; DIM + 1], &SearchOptions::top(3))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    // lexical search: declared unsupported, and says so
    assert!(!store.capabilities().lexical_search);
    assert!(store.capabilities().vector_search);
    let e = store
        .search_lexical(&w, "deploy", &SearchOptions::top(3))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("BM25"), "{e}");
    store.delete_database().await.unwrap();
}

#[tokio::test]
async fn workspaces_with_similar_ids_never_share_a_collection() {
    let Some(store) = common::store("workspaces_with_similar_ids_never_share_a_collection").await
    else {
        return;
    };
    // "T-1" is escaped to T_2d1: the workspace literally named "T_2d1" must stay apart.
    let names = ["T-1", "T_2d1", "t-1", "T.1", "T:1"];
    for (i, n) in names.iter().enumerate() {
        let w = ws(n);
        store.create_collection(&w, &spec()).await.unwrap();
        let docs: Vec<_> = (0..=i).map(|j| doc(n, j, 1)).collect();
        store.upsert(&w, &docs).await.unwrap();
    }
    let listed = store.list_collections().await.unwrap();
    let mut expected: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (ws(n), i as u64 + 1))
        .collect();
    expected.sort();
    assert_eq!(
        listed
            .iter()
            .map(|c| (c.workspace.clone(), c.documents))
            .collect::<Vec<_>>(),
        expected
    );
    let q = doc("T-1", 0, 1).embedding;
    let hits = store
        .search_vector(&ws("T_2d1"), &q, &SearchOptions::top(10))
        .await
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.key.workspace == ws("T_2d1")));
    store.delete_database().await.unwrap();
}

#[tokio::test]
async fn filters_match_the_reference_semantics() {
    let Some(store) = common::store("filters_match_the_reference_semantics").await else {
        return;
    };
    let w = ws("T1");
    store.create_collection(&w, &spec()).await.unwrap();
    let docs: Vec<_> = (0..60).map(|i| doc("T1", i, 1)).collect();
    store.upsert(&w, &docs).await.unwrap();
    let t = |i: usize| Ts::new(format!("{}.{:06}", 1_700_000_000 + i * 60, i)).unwrap();
    let filters = vec![
        ContentFilter::default(),
        ContentFilter {
            channels: Some(vec![ChannelId::new("C2").unwrap()]),
            ..Default::default()
        },
        ContentFilter {
            users: Some(vec![UserId::new("U1").unwrap(), UserId::new("U3").unwrap()]),
            ..Default::default()
        },
        ContentFilter {
            time: TimeRange::between(t(10).to_datetime(), t(20).to_datetime()),
            ..Default::default()
        },
        ContentFilter {
            time: TimeRange {
                start: None,
                end: Some(t(7).to_datetime()),
            },
            ..Default::default()
        },
        ContentFilter {
            thread_ts: Some(t(10)),
            ..Default::default()
        },
        ContentFilter {
            is_reply: Some(false),
            ..Default::default()
        },
        ContentFilter {
            has_files: Some(true),
            has_links: Some(false),
            ..Default::default()
        },
        ContentFilter {
            min_reactions: Some(4),
            ..Default::default()
        },
        ContentFilter {
            visibility: Some(vec![ChannelKind::Private, ChannelKind::Im]),
            ..Default::default()
        },
        ContentFilter {
            keys: Some(
                docs[..15]
                    .iter()
                    .map(|d| d.key().clone())
                    .chain([key("T2", "C1", "1.0")])
                    .collect(),
            ),
            channels: Some(vec![
                ChannelId::new("C1").unwrap(),
                ChannelId::new("C3").unwrap(),
            ]),
            is_reply: Some(true),
            ..Default::default()
        },
        ContentFilter {
            keys: Some(vec![]),
            ..Default::default()
        },
        ContentFilter {
            users: Some(vec![]),
            ..Default::default()
        },
    ];
    let q = HashingEmbedder::new(DIM)
        .unwrap()
        .embed_one("deploy failed");
    for f in filters {
        let expected: BTreeSet<_> = docs
            .iter()
            .filter(|d| f.matches(d.key(), &d.content.attributes))
            .map(|d| d.key().clone())
            .collect();
        let hits = store
            .search_vector(&w, &q, &SearchOptions::top(100).with_filter(f.clone()))
            .await
            .unwrap();
        let got: BTreeSet<_> = hits.iter().map(|h| h.key.clone()).collect();
        assert_eq!(got, expected, "filter {f:?}");
        assert!(
            hits.windows(2)
                .all(|p| p[0].score > p[1].score
                    || (p[0].score == p[1].score && p[0].key < p[1].key)),
            "order for {f:?}"
        );
    }
    // top-k: the best hits first, scored by cosine similarity
    let hits = store
        .search_vector(&w, &docs[5].embedding, &SearchOptions::top(3))
        .await
        .unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].key, *docs[5].key());
    assert!((hits[0].score - 1.0).abs() < 1e-4, "{}", hits[0].score);
    store.delete_database().await.unwrap();
}

#[tokio::test]
async fn batches_larger_than_the_server_limit_are_split() {
    let Some(url) = common::server_url("batches_larger_than_the_server_limit_are_split") else {
        return;
    };
    let mut opts = common::options(&url);
    opts.max_batch_size = Some(7);
    let store = ChromaContentStore::connect(opts).await.unwrap();
    assert_eq!(store.max_batch_size(), 7);
    let w = ws("T1");
    store.create_collection(&w, &spec()).await.unwrap();
    let docs: Vec<_> = (0..50).map(|i| doc("T1", i, 2)).collect();
    assert_eq!(store.upsert(&w, &docs).await.unwrap().applied, 50);
    assert_eq!(store.upsert(&w, &docs).await.unwrap().stale, 50);
    let keys: Vec<_> = docs.iter().map(|d| d.key().clone()).collect();
    assert_eq!(store.get(&w, &keys).await.unwrap().len(), 50);
    // pages of list_versions, in key order, across every batch
    let mut all = Vec::new();
    let mut page = PageRequest::first(9);
    loop {
        let p = store.list_versions(&w, &page).await.unwrap();
        if p.is_empty() {
            break;
        }
        page.after = p.last().map(|v| v.key.clone());
        all.extend(p);
    }
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        all.iter().map(|v| v.key.clone()).collect::<Vec<_>>(),
        sorted
    );
    let dels: Vec<_> = keys[..30]
        .iter()
        .map(|k| ContentDelete {
            key: k.clone(),
            version: 3,
        })
        .collect();
    assert_eq!(store.delete(&w, &dels).await.unwrap().applied, 30);
    assert_eq!(store.get(&w, &keys).await.unwrap().len(), 20);
    assert_eq!(
        store.collection_info(&w).await.unwrap().unwrap().documents,
        20
    );
    assert_eq!(store.upsert(&w, &docs).await.unwrap().stale, 50);
    store.delete_database().await.unwrap();
}

#[tokio::test]
async fn another_process_dropping_the_collection_is_noticed() {
    let Some(url) = common::server_url("another_process_dropping_the_collection_is_noticed") else {
        return;
    };
    let opts = common::options(&url);
    let a = ChromaContentStore::connect(opts.clone()).await.unwrap();
    let b = ChromaContentStore::connect(opts).await.unwrap();
    let w = ws("T1");
    a.create_collection(&w, &spec()).await.unwrap();
    a.upsert(&w, &[doc("T1", 1, 1)]).await.unwrap();
    assert_eq!(
        b.get(&w, &[doc("T1", 1, 1).key().clone()])
            .await
            .unwrap()
            .len(),
        1
    );
    // b caches the collection ids; a drops and re-creates it
    a.drop_collection(&w).await.unwrap();
    assert_eq!(
        b.get(&w, &[doc("T1", 1, 1).key().clone()])
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    a.create_collection(&w, &spec()).await.unwrap();
    assert_eq!(b.upsert(&w, &[doc("T1", 2, 1)]).await.unwrap().applied, 1);
    assert_eq!(a.collection_info(&w).await.unwrap().unwrap().documents, 1);
    a.delete_database().await.unwrap();
}

#[tokio::test]
async fn unreachable_server_is_unavailable_after_retries() {
    // A port nothing listens on: connection refused, retried, then a retryable error.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut opts = ChromaOptions::from_url(&format!("http://127.0.0.1:{port}")).unwrap();
    opts.retry = RetrySettings {
        max_retries: 2,
        base_delay: std::time::Duration::from_millis(10),
        max_delay: std::time::Duration::from_millis(20),
    };
    let e = ChromaContentStore::connect(opts).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    assert_eq!(e.context("attempts"), Some("3"), "{e}");
}

/// A fake server answering every request with one fixed status: fault injection for the
/// client's retry and error mapping (the real server never fails on demand).
fn fake_server(
    status: &'static str,
    body: &'static str,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes());
        }
    });
    (port, hits)
}

#[tokio::test]
async fn transient_statuses_are_retried_and_refused_credentials_are_not() {
    let (port, hits) = fake_server(
        "503 Service Unavailable",
        r#"{"error":"x","message":"busy"}"#,
    );
    let mut opts = ChromaOptions::from_url(&format!("http://127.0.0.1:{port}")).unwrap();
    opts.retry = RetrySettings {
        max_retries: 3,
        base_delay: std::time::Duration::from_millis(5),
        max_delay: std::time::Duration::from_millis(10),
    };
    let e = ChromaContentStore::connect(opts).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("busy"), "{e}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 4);

    let (port, hits) = fake_server(
        "401 Unauthorized",
        r#"{"error":"AuthError","message":"no"}"#,
    );
    let mut opts = ChromaOptions::from_url(&format!("http://127.0.0.1:{port}")).unwrap();
    opts.token = Some(chatvault_core::SecretString::new("s3cr3t-token"));
    let dbg = format!("{opts:?}");
    assert!(!dbg.contains("s3cr3t"), "{dbg}");
    let e = ChromaContentStore::connect(opts).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend, "{e}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("credentials"), "{e}");
    assert!(!format!("{e} {e:?}").contains("s3cr3t"));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}
