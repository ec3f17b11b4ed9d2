//! Behaviour of the tantivy + HNSW store on real on-disk indexes.

mod common;

use std::sync::Arc;

use chatvault_core::{
    ChannelId, ChannelKind, CollectionSpec, ContentDelete, ContentFilter, ContentStore, ErrorKind,
    PageRequest, SearchOptions, Ts, UserId,
};
use chatvault_storage_vector::{directory_size, VectorStore, VectorStoreOptions};
use common::*;

fn spec(dim: usize) -> CollectionSpec {
    CollectionSpec {
        dimension: dim,
        model_id: "test-model".into(),
    }
}

fn unit(dim: usize, i: usize) -> Vec<f32> {
    let mut v = vec![0.01; dim];
    v[i % dim] = 1.0;
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_replaces_versions_win_and_tombstones_hold() {
    let dir = tempfile::tempdir().unwrap();
    let store = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
    let w = ws("T1");
    store.create_collection(&w, &spec(4)).await.unwrap();
    // idempotent create, conflicting create
    store.create_collection(&w, &spec(4)).await.unwrap();
    let e = store.create_collection(&w, &spec(5)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);

    let k = key("T1", "C1", 1_000_000);
    let out = store
        .upsert(&w, &[doc(k.clone(), "first text", unit(4, 0), 2)])
        .await
        .unwrap();
    assert_eq!((out.applied, out.stale), (1, 0));
    // same version again: stale; older: stale; newer: replaces
    let out = store
        .upsert(&w, &[doc(k.clone(), "first text", unit(4, 0), 2)])
        .await
        .unwrap();
    assert_eq!((out.applied, out.stale), (0, 1));
    let out = store
        .upsert(&w, &[doc(k.clone(), "older text", unit(4, 1), 1)])
        .await
        .unwrap();
    assert_eq!((out.applied, out.stale), (0, 1));
    let out = store
        .upsert(&w, &[doc(k.clone(), "second text", unit(4, 2), 3)])
        .await
        .unwrap();
    assert_eq!((out.applied, out.stale), (1, 0));
    let got = store.get(&w, std::slice::from_ref(&k)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].content.text, "second text");
    assert_eq!(got[0].version, 3);
    assert_eq!(got[0].embedding, unit(4, 2));
    // exactly one document, found once by both searches
    assert_eq!(
        store.collection_info(&w).await.unwrap().unwrap().documents,
        1
    );
    let hits = store
        .search_vector(&w, &unit(4, 2), &SearchOptions::top(10))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert!((hits[0].score - 1.0).abs() < 1e-3, "{}", hits[0].score);
    assert!(store
        .search_lexical(&w, "first", &SearchOptions::top(10))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .search_lexical(&w, "SECOND", &SearchOptions::top(10))
            .await
            .unwrap()
            .len(),
        1
    );

    // the same key twice in one batch: the higher version wins
    let k2 = key("T1", "C1", 2_000_000);
    let out = store
        .upsert(
            &w,
            &[
                doc(k2.clone(), "v5", unit(4, 1), 5),
                doc(k2.clone(), "v4", unit(4, 1), 4),
            ],
        )
        .await
        .unwrap();
    assert_eq!((out.applied, out.stale), (1, 1));
    assert_eq!(
        store.get(&w, std::slice::from_ref(&k2)).await.unwrap()[0]
            .content
            .text,
        "v5"
    );

    // delete at an older version is stale; at a newer one leaves a tombstone that blocks
    // older upserts
    let out = store
        .delete(
            &w,
            &[ContentDelete {
                key: k.clone(),
                version: 2,
            }],
        )
        .await
        .unwrap();
    assert_eq!((out.applied, out.stale), (0, 1));
    let out = store
        .delete(
            &w,
            &[ContentDelete {
                key: k.clone(),
                version: 10,
            }],
        )
        .await
        .unwrap();
    assert_eq!((out.applied, out.stale), (1, 0));
    assert!(store
        .get(&w, std::slice::from_ref(&k))
        .await
        .unwrap()
        .is_empty());
    let out = store
        .upsert(&w, &[doc(k.clone(), "resurrected", unit(4, 0), 9)])
        .await
        .unwrap();
    assert_eq!((out.applied, out.stale), (0, 1));
    assert!(store
        .get(&w, std::slice::from_ref(&k))
        .await
        .unwrap()
        .is_empty());
    let hits = store
        .search_vector(&w, &unit(4, 2), &SearchOptions::top(10))
        .await
        .unwrap();
    assert_eq!(hits.iter().map(|h| &h.key).collect::<Vec<_>>(), vec![&k2]);
    // deleting a key never stored records the tombstone
    let k3 = key("T1", "C9", 3_000_000);
    let out = store
        .delete(
            &w,
            &[ContentDelete {
                key: k3.clone(),
                version: 7,
            }],
        )
        .await
        .unwrap();
    assert_eq!(out.applied, 1);
    let out = store
        .upsert(&w, &[doc(k3.clone(), "late", unit(4, 0), 6)])
        .await
        .unwrap();
    assert_eq!(out.stale, 1);
    let versions = store
        .list_versions(&w, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].key, k2);
    assert_eq!(versions[0].version, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_naming_the_key_and_harms_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
    let w = ws("T1");
    store.create_collection(&w, &spec(4)).await.unwrap();
    let good = doc(key("T1", "C1", 1), "kept", unit(4, 0), 1);
    store.upsert(&w, std::slice::from_ref(&good)).await.unwrap();

    let bad_key = key("T1", "C1", 2);
    let cases = vec![
        doc(bad_key.clone(), "wrong dim", vec![1.0; 3], 1),
        doc(bad_key.clone(), "nan", vec![1.0, f32::NAN, 0.0, 0.0], 1),
        doc(bad_key.clone(), "   ", unit(4, 0), 1),
    ];
    for bad in cases {
        // a valid document in the same batch is not written either
        let batch = [doc(key("T1", "C1", 3), "fine", unit(4, 1), 1), bad];
        let e = store.upsert(&w, &batch).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains(&bad_key.to_string()), "{e}");
    }
    let other_ws = doc(key("T2", "C1", 4), "other", unit(4, 0), 1);
    let e = store.upsert(&w, &[other_ws]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("T2"), "{e}");
    let e = store
        .upsert(
            &ws("NOPE"),
            &[doc(key("NOPE", "C1", 1), "x", unit(4, 0), 1)],
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("NOPE"), "{e}");
    let e = store
        .search_vector(&w, &[1.0, 2.0], &SearchOptions::top(3))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = store
        .search_vector(&w, &[1.0, f32::INFINITY, 0.0, 0.0], &SearchOptions::top(3))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);

    assert_eq!(
        store.collection_info(&w).await.unwrap().unwrap().documents,
        1
    );
    assert_eq!(
        store.get(&w, &[good.key().clone()]).await.unwrap(),
        vec![good]
    );
    assert!(store
        .search_lexical(&w, "", &SearchOptions::top(3))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_match_the_reference_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let store = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
    let w = ws("T1");
    let dim = 8;
    store.create_collection(&w, &spec(dim)).await.unwrap();
    let mut docs = Vec::new();
    for i in 0..60usize {
        let mut d = doc(
            key(
                "T1",
                ["C1", "C2", "C3"][i % 3],
                1_000_000 + i as i64 * 1_000_000,
            ),
            &format!("message number {i} about deploys"),
            (0..dim)
                .map(|j| ((i * 7 + j * 3) % 11) as f32 + 0.5)
                .collect(),
            1,
        );
        let a = &mut d.content.attributes;
        a.user = (i % 5 != 0).then(|| UserId::new(format!("U{}", i % 4)).unwrap());
        a.is_reply = i % 4 == 1;
        a.thread_ts =
            (i % 4 <= 1).then(|| Ts::from_micros(1_000_000 + (i / 4 * 4) as i64 * 1_000_000));
        a.has_files = i % 3 == 0;
        a.has_links = i % 7 == 0;
        a.reaction_count = (i % 6) as u32;
        a.visibility = [ChannelKind::Public, ChannelKind::Private, ChannelKind::Im][i % 3];
        docs.push(d);
    }
    store.upsert(&w, &docs).await.unwrap();
    let t = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap();
    let filters = vec![
        ContentFilter {
            channels: Some(vec![ChannelId::new("C2").unwrap()]),
            ..Default::default()
        },
        ContentFilter {
            users: Some(vec![UserId::new("U1").unwrap(), UserId::new("U3").unwrap()]),
            ..Default::default()
        },
        ContentFilter {
            time: chatvault_core::TimeRange::between(t(10), t(30)),
            ..Default::default()
        },
        ContentFilter {
            thread_ts: Some(Ts::from_micros(9_000_000)),
            ..Default::default()
        },
        ContentFilter {
            is_reply: Some(true),
            has_files: Some(false),
            ..Default::default()
        },
        ContentFilter {
            has_links: Some(true),
            ..Default::default()
        },
        ContentFilter {
            min_reactions: Some(4),
            visibility: Some(vec![ChannelKind::Public, ChannelKind::Im]),
            ..Default::default()
        },
        ContentFilter {
            keys: Some(vec![docs[3].key().clone(), docs[40].key().clone()]),
            ..Default::default()
        },
        ContentFilter {
            keys: Some(vec![]),
            ..Default::default()
        },
    ];
    for f in filters {
        let mut expected: Vec<_> = docs
            .iter()
            .filter(|d| f.matches(d.key(), &d.content.attributes))
            .map(|d| d.key().clone())
            .collect();
        expected.sort();
        let opts = SearchOptions::top(100).with_filter(f.clone());
        let mut got: Vec<_> = store
            .search_vector(&w, &vec![1.0; dim], &opts)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.key)
            .collect();
        got.sort();
        assert_eq!(got, expected, "vector search with {f:?}");
        let mut got: Vec<_> = store
            .search_lexical(&w, "deploys", &opts)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.key)
            .collect();
        got.sort();
        assert_eq!(got, expected, "lexical search with {f:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_markup_is_searchable_as_words() {
    let dir = tempfile::tempdir().unwrap();
    let store = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
    let w = ws("T1");
    store.create_collection(&w, &spec(2)).await.unwrap();
    let texts = [
        "ping <@U123|ann> about it",
        "moved to <#C1|general>",
        "read <https://example.com/runbook|the Runbook>",
        "shipped :white_check_mark:",
    ];
    let docs: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| doc(key("T1", "C1", i as i64 + 1), t, vec![1.0, i as f32], 1))
        .collect();
    store.upsert(&w, &docs).await.unwrap();
    for (q, i) in [
        ("Ann", 0),
        ("general", 1),
        ("runbook", 2),
        ("example.com", 2),
        ("check mark", 3),
    ] {
        let hits = store
            .search_lexical(&w, q, &SearchOptions::top(5))
            .await
            .unwrap();
        assert_eq!(
            hits.first().map(|h| &h.key),
            Some(docs[i].key()),
            "query {q:?}"
        );
    }
    // the stored text is as written
    assert_eq!(
        store.get(&w, &[docs[0].key().clone()]).await.unwrap()[0]
            .content
            .text,
        texts[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persists_across_reopen_and_locks_out_a_second_writer() {
    let dir = tempfile::tempdir().unwrap();
    let w = ws("T1");
    let dim = 16;
    let mut mix = Mixture::new(7, dim, 10, 0.3);
    let docs: Vec<_> = (0..2000)
        .map(|i| {
            doc(
                key("T1", "C1", i + 1),
                &format!("text {i}"),
                mix.sample(),
                1,
            )
        })
        .collect();
    let before;
    {
        let store = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
        store.create_collection(&w, &spec(dim)).await.unwrap();
        for chunk in docs.chunks(500) {
            store.upsert(&w, chunk).await.unwrap();
        }
        store.flush_graph(&w).unwrap();
        assert_eq!(store.pending_vectors(&w).unwrap(), 0);
        before = store
            .search_vector(&w, &docs[17].embedding, &SearchOptions::top(5))
            .await
            .unwrap();
        assert_eq!(before[0].key, *docs[17].key());

        // a second store (as another process would) cannot open the collection for writing
        let other = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
        let e = other.open_collection(&w).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        assert!(e.to_string().contains("T1"), "{e}");
        store.close();
        // once closed, it can
        other.open_collection(&w).unwrap();
        other.close();
    }
    let store = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
    let info = store.collection_info(&w).await.unwrap().unwrap();
    assert_eq!(info.documents, 2000);
    assert_eq!(info.spec, spec(dim));
    // the persisted graph was loaded: nothing to re-index
    assert_eq!(store.pending_vectors(&w).unwrap(), 0);
    let after = store
        .search_vector(&w, &docs[17].embedding, &SearchOptions::top(5))
        .await
        .unwrap();
    assert_eq!(after, before);
    let listed = store.list_collections().await.unwrap();
    assert_eq!(listed.len(), 1);
    store.drop_collection(&w).await.unwrap();
    assert!(store.collection_info(&w).await.unwrap().is_none());
    assert!(store.list_collections().await.unwrap().is_empty());
    assert!(directory_size(dir.path()) < 4096, "dropping frees the disk");
    store.drop_collection(&w).await.unwrap();
}

/// On a file system that ignores case (macOS, Windows), workspaces `T1` and `t1` map to one
/// directory. Simulated here by a directory whose collection belongs to another workspace: the
/// store refuses to use it for this one — no reads, no writes, no drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_holding_another_workspaces_collection_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (t1, lower) = (ws("T1"), ws("t1"));
    {
        let store = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
        store.create_collection(&t1, &spec(4)).await.unwrap();
        store
            .upsert(
                &t1,
                &[doc(key("T1", "C1", 1), "deploy failed", unit(4, 0), 1)],
            )
            .await
            .unwrap();
        store.close();
    }
    // what `ws-t1` resolves to where case is folded
    std::fs::rename(dir.path().join("ws-T1"), dir.path().join("ws-t1")).unwrap();
    let store = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
    let e = store
        .search_lexical(&lower, "deploy", &SearchOptions::top(5))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("\"T1\""), "{e}");
    for e in [
        store.create_collection(&lower, &spec(4)).await.unwrap_err(),
        store
            .upsert(&lower, &[doc(key("t1", "C1", 2), "x", unit(4, 1), 1)])
            .await
            .unwrap_err(),
        store.drop_collection(&lower).await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    }
    // T1's collection is intact
    std::fs::rename(dir.path().join("ws-t1"), dir.path().join("ws-T1")).unwrap();
    let hits = store
        .search_lexical(&t1, "deploy", &SearchOptions::top(5))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_reclaims_disk_after_deleting_half() {
    let dir = tempfile::tempdir().unwrap();
    let w = ws("T1");
    let dim = 64;
    let store = VectorStore::open(
        dir.path(),
        VectorStoreOptions {
            compaction_threshold: 0.9, // only the explicit compaction below
            ..Default::default()
        },
    )
    .unwrap();
    store.create_collection(&w, &spec(dim)).await.unwrap();
    let mut mix = Mixture::new(3, dim, 20, 0.5);
    let docs: Vec<_> = (0..6000)
        .map(|i| {
            doc(
                key("T1", "C1", i + 1),
                &format!("message {i} with some words"),
                mix.sample(),
                1,
            )
        })
        .collect();
    for chunk in docs.chunks(1000) {
        store.upsert(&w, chunk).await.unwrap();
    }
    store.flush_graph(&w).unwrap();
    let full = store.disk_usage(&w).unwrap();
    let deletes: Vec<_> = docs
        .iter()
        .step_by(2)
        .map(|d| ContentDelete {
            key: d.key().clone(),
            version: 2,
        })
        .collect();
    store.delete(&w, &deletes).await.unwrap();
    store.flush_graph(&w).unwrap();
    store.compact(&w).unwrap();
    let compacted = store.disk_usage(&w).unwrap();
    assert!(
        (compacted as f64) < 0.7 * full as f64,
        "disk use {full} → {compacted} after deleting half and compacting"
    );
    assert_eq!(
        store.collection_info(&w).await.unwrap().unwrap().documents,
        3000
    );
    // deleted documents stay gone, kept ones are found
    let hits = store
        .search_vector(&w, &docs[1].embedding, &SearchOptions::top(3))
        .await
        .unwrap();
    assert_eq!(hits[0].key, *docs[1].key());
    let hits = store
        .search_vector(&w, &docs[0].embedding, &SearchOptions::top(50))
        .await
        .unwrap();
    assert!(
        hits.iter().all(|h| h.key.ts.as_micros() % 2 == 0),
        "only odd indexes (even ts) live"
    );
    drop(store);
    // and after reopening
    let store = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
    assert_eq!(
        store.collection_info(&w).await.unwrap().unwrap().documents,
        3000
    );
    assert_eq!(store.pending_vectors(&w).unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn searches_never_see_half_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let w = ws("T1");
    let dim = 8;
    let store = Arc::new(VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap());
    store.create_collection(&w, &spec(dim)).await.unwrap();
    let batch = 50usize;
    let writer = {
        let store = Arc::clone(&store);
        let w = w.clone();
        tokio::spawn(async move {
            for b in 0..30usize {
                let docs: Vec<_> = (0..batch)
                    .map(|i| {
                        doc(
                            key("T1", "C1", (b * batch + i + 1) as i64),
                            "same words in every message",
                            unit(dim, i),
                            1,
                        )
                    })
                    .collect();
                store.upsert(&w, &docs).await.unwrap();
            }
        })
    };
    let mut readers = Vec::new();
    for r in 0..3 {
        let store = Arc::clone(&store);
        let w = w.clone();
        readers.push(tokio::spawn(async move {
            let mut seen = 0;
            while seen < 30 * batch {
                let n = if r == 0 {
                    store
                        .search_lexical(&w, "words", &SearchOptions::top(10_000))
                        .await
                        .unwrap()
                        .len()
                } else {
                    store
                        .search_vector(&w, &unit(dim, r), &SearchOptions::top(10_000))
                        .await
                        .unwrap()
                        .len()
                };
                assert_eq!(n % batch, 0, "a search saw {n} documents: half a batch");
                seen = n;
            }
        }));
    }
    writer.await.unwrap();
    for r in readers {
        r.await.unwrap();
    }
}

/// The persisted graph dump of the collection `T1` under `root`.
fn graph_dump_dir(root: &std::path::Path) -> std::path::PathBuf {
    let gdir = root.join("ws-T1").join("graph");
    std::fs::read_dir(&gdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("dump-"))
        })
        .expect("a graph dump")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_old_graph_dumps_are_rebuilt_from_tantivy() {
    let dir = tempfile::tempdir().unwrap();
    let w = ws("T1");
    let dim = 16;
    let mut mix = Mixture::new(5, dim, 10, 0.3);
    let docs: Vec<_> = (0..1500)
        .map(|i| {
            doc(
                key("T1", "C1", i + 1),
                &format!("text {i}"),
                mix.sample(),
                1,
            )
        })
        .collect();
    {
        let store = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
        store.create_collection(&w, &spec(dim)).await.unwrap();
        store.upsert(&w, &docs).await.unwrap();
        store.flush_graph(&w).unwrap();
        store.close();
    }
    type Damage = Box<dyn Fn(&std::path::Path)>;
    let damages: Vec<(&str, Damage)> = vec![
        (
            "truncated",
            Box::new(|dump| {
                let file = dump.join("graph.cvhnsw");
                let bytes = std::fs::read(&file).unwrap();
                std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
            }),
        ),
        (
            "a flipped byte",
            Box::new(|dump| {
                let file = dump.join("graph.cvhnsw");
                let mut bytes = std::fs::read(&file).unwrap();
                let at = bytes.len() / 3;
                bytes[at] ^= 0x40;
                std::fs::write(&file, &bytes).unwrap();
            }),
        ),
        (
            "an hnsw_rs dump of an older version",
            Box::new(|dump| {
                std::fs::remove_file(dump.join("graph.cvhnsw")).unwrap();
                std::fs::write(dump.join("graph.hnsw.graph"), b"hnsw_rs graph").unwrap();
                std::fs::write(dump.join("graph.hnsw.data"), b"hnsw_rs data").unwrap();
            }),
        ),
    ];
    for (what, damage) in damages {
        damage(&graph_dump_dir(dir.path()));
        let options = VectorStoreOptions {
            background_indexing: false,
            ..Default::default()
        };
        let store = VectorStore::open(dir.path(), options).unwrap();
        store.open_collection(&w).unwrap();
        assert_eq!(
            store.pending_vectors(&w).unwrap(),
            1500,
            "{what}: not loaded"
        );
        // searchable at once (exactly, from the tail), and the graph is rebuilt
        let hits = store
            .search_vector(&w, &docs[17].embedding, &SearchOptions::top(3))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(hits[0].key, *docs[17].key(), "{what}");
        store.wait_for_graph(&w).unwrap();
        assert_eq!(store.pending_vectors(&w).unwrap(), 0, "{what}");
        let hits = store
            .search_vector(&w, &docs[1234].embedding, &SearchOptions::top(3))
            .await
            .unwrap();
        assert_eq!(hits[0].key, *docs[1234].key(), "{what}");
        store.flush_graph(&w).unwrap();
        store.close();
    }
    let store = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
    store.open_collection(&w).unwrap();
    assert_eq!(
        store.pending_vectors(&w).unwrap(),
        0,
        "the rebuilt graph was persisted"
    );
}
