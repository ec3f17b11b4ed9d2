//! Readers beside the writer: read-only stores on the same directory take no lock, see the
//! writer's commits as they land, keep the writer's recall while its graph lags, never write,
//! and work on a read-only directory.

mod common;

use std::time::Duration;

use chatvault_core::{CollectionSpec, ContentDelete, ContentStore, ErrorKind, SearchOptions};
use chatvault_storage_vector::{SearchTuning, VectorStore, VectorStoreOptions};
use common::*;

fn spec(dim: usize) -> CollectionSpec {
    CollectionSpec {
        dimension: dim,
        model_id: "test-model".into(),
    }
}

fn docs(n: usize, dim: usize, from: i64) -> Vec<chatvault_core::ContentDocument> {
    let mut mix = Mixture::new(from as u64, dim, 12, 0.3);
    (0..n)
        .map(|i| {
            let ts = from + i as i64;
            doc(
                key("T1", "C1", ts),
                &format!("message number {ts} word{}", ts % 7),
                mix.sample(),
                1,
            )
        })
        .collect()
}

/// The exact top-k of `query` over `docs` (keys), by cosine.
fn exact_top(
    docs: &[chatvault_core::ContentDocument],
    query: &[f32],
    k: usize,
) -> Vec<chatvault_core::MessageKey> {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut scored: Vec<(f32, chatvault_core::MessageKey)> = docs
        .iter()
        .map(|d| {
            let dot: f32 = d.embedding.iter().zip(query).map(|(a, b)| a * b).sum();
            (dot / (norm(&d.embedding) * norm(query)), d.key().clone())
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(k).map(|(_, k)| k).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_follow_the_writer_without_a_lock_and_never_write() {
    let dir = tempfile::tempdir().unwrap();
    let w = ws("T1");
    let dim = 16;
    let writer = VectorStore::open(
        dir.path(),
        VectorStoreOptions {
            // the graph never catches up by itself: readers must scan what it lacks
            background_indexing: false,
            ..Default::default()
        },
    )
    .unwrap();
    writer.create_collection(&w, &spec(dim)).await.unwrap();
    let first = docs(600, dim, 1);
    writer.upsert(&w, &first).await.unwrap();

    // any number of readers open while the writer holds the lock
    // reader 0 loads every newer graph dump; the others only once their tail is 20,000 long
    let readers: Vec<VectorStore> = (0..3)
        .map(|i| {
            let options = VectorStoreOptions {
                reader_tail_limit: if i == 0 { 0 } else { 20_000 },
                reader_refresh_interval: Duration::ZERO,
                ..Default::default()
            };
            VectorStore::open_read_only(dir.path(), options).unwrap()
        })
        .collect();
    for r in &readers {
        assert!(r.is_read_only());
        let info = r.collection_info(&w).await.unwrap().unwrap();
        assert_eq!(info.documents, 600);
        assert_eq!(info.spec, spec(dim));
    }
    let reader = &readers[0];

    // the graph holds nothing yet: the reader scans every vector exactly
    let q = first[42].embedding.clone();
    let top = reader
        .search_vector(&w, &q, &SearchOptions::top(10))
        .await
        .unwrap();
    let keys: Vec<_> = top.iter().map(|h| h.key.clone()).collect();
    assert_eq!(keys, exact_top(&first, &q, 10));

    // new commits are seen without reopening
    let second = docs(400, dim, 10_000);
    writer.upsert(&w, &second).await.unwrap();
    assert_eq!(
        reader.collection_info(&w).await.unwrap().unwrap().documents,
        1000
    );
    let hits = reader
        .search_lexical(&w, "10005", &SearchOptions::top(5))
        .await
        .unwrap();
    assert_eq!(hits[0].key, *second[5].key());
    let got = reader.get(&w, &[second[7].key().clone()]).await.unwrap();
    assert_eq!(got[0].content.text, second[7].content.text);

    // the writer builds and persists its graph: the reader loads it, results stay exact-equal
    // where the writer's are (small collection: the graph walk is exact here)
    writer.flush_graph(&w).unwrap();
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    let q = second[3].embedding.clone();
    let exact = SearchTuning {
        exact_scan_threshold: Some(usize::MAX),
        ..Default::default()
    };
    let from_writer = writer
        .search_vector_tuned(&w, &q, &SearchOptions::top(10), &exact)
        .unwrap();
    let from_reader = reader
        .search_vector_tuned(&w, &q, &SearchOptions::top(10), &exact)
        .unwrap();
    assert_eq!(from_reader, from_writer);
    assert_eq!(
        from_reader
            .iter()
            .map(|h| h.key.clone())
            .collect::<Vec<_>>(),
        exact_top(&all, &q, 10)
    );
    assert_eq!(
        reader.pending_vectors(&w).unwrap(),
        0,
        "the dump was loaded"
    );
    // a reader that kept its older graph scans what it lacks: the same results
    assert_eq!(readers[1].pending_vectors(&w).unwrap(), 1000);
    assert_eq!(
        readers[1]
            .search_vector_tuned(&w, &q, &SearchOptions::top(10), &exact)
            .unwrap(),
        from_writer
    );
    let default_search = readers[1]
        .search_vector(&w, &q, &SearchOptions::top(10))
        .await
        .unwrap();
    assert_eq!(
        default_search
            .iter()
            .map(|h| h.key.clone())
            .collect::<Vec<_>>(),
        exact_top(&all, &q, 10)
    );

    // more writes after the dump: covered by the graph or scanned, never lost
    let third = docs(300, dim, 20_000);
    writer.upsert(&w, &third).await.unwrap();
    writer
        .delete(
            &w,
            &[ContentDelete {
                key: first[0].key().clone(),
                version: 5,
            }],
        )
        .await
        .unwrap();
    assert_eq!(reader.pending_vectors(&w).unwrap(), 300);
    let q = third[9].embedding.clone();
    let hits = reader
        .search_vector(&w, &q, &SearchOptions::top(1))
        .await
        .unwrap();
    assert_eq!(hits[0].key, *third[9].key());
    assert!(reader
        .get(&w, &[first[0].key().clone()])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        readers[2]
            .collection_info(&w)
            .await
            .unwrap()
            .unwrap()
            .documents,
        1299
    );

    // readers never write
    for e in [
        reader.upsert(&w, &third[..1]).await.unwrap_err(),
        reader
            .delete(
                &w,
                &[ContentDelete {
                    key: third[0].key().clone(),
                    version: 9,
                }],
            )
            .await
            .unwrap_err(),
        reader.drop_collection(&w).await.unwrap_err(),
        reader
            .create_collection(&ws("T2"), &spec(dim))
            .await
            .unwrap_err(),
        reader.flush_graph(&w).unwrap_err(),
        reader.compact(&w).unwrap_err(),
        reader.acquire_writer(&w, Duration::ZERO).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(e.to_string().contains("read-only"), "{e}");
    }
    // creating an existing collection with its own spec is a no-op, allowed
    reader.create_collection(&w, &spec(dim)).await.unwrap();
    assert!(
        writer
            .get(&w, &[third[0].key().clone()])
            .await
            .unwrap()
            .len()
            == 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_is_told_who_writes_and_can_wait() {
    let dir = tempfile::tempdir().unwrap();
    let w = ws("T1");
    let first = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
    // the lock is taken before the collection exists (an import locks before it writes)
    first.acquire_writer(&w, Duration::ZERO).unwrap();
    first.acquire_writer(&w, Duration::ZERO).unwrap();

    let second = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
    let holder = second.writer_holder(&w).expect("the lock is held");
    assert_eq!(holder.pid, std::process::id());
    assert!(!holder.since.is_empty());
    let e = second.acquire_writer(&w, Duration::ZERO).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("process {}", std::process::id())) && msg.contains("T1"),
        "{msg}"
    );
    let e = second.create_collection(&w, &spec(4)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");

    // waiting: the first writer lets go after a while, the second then gets it
    let started = std::time::Instant::now();
    let releaser = {
        let first = first.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            first.close();
        })
    };
    second.acquire_writer(&w, Duration::from_secs(10)).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    releaser.join().unwrap();
    assert!(second.writer_holder(&w).is_none(), "we hold it ourselves");
    second.create_collection(&w, &spec(4)).await.unwrap();
    // the first store now waits in vain
    let e = first
        .acquire_writer(&w, Duration::from_millis(200))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_a_missing_root_or_collection_finds_nothing_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("not-yet");
    let reader = VectorStore::open_read_only(
        &root,
        VectorStoreOptions {
            reader_refresh_interval: Duration::ZERO,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(reader.list_collections().await.unwrap().is_empty());
    assert!(reader.collection_info(&ws("T1")).await.unwrap().is_none());
    assert!(!root.exists());
    // the collection appears later: the same reader finds it
    let writer = VectorStore::open(&root, VectorStoreOptions::default()).unwrap();
    writer.create_collection(&ws("T1"), &spec(8)).await.unwrap();
    writer.upsert(&ws("T1"), &docs(5, 8, 1)).await.unwrap();
    assert_eq!(
        reader
            .collection_info(&ws("T1"))
            .await
            .unwrap()
            .unwrap()
            .documents,
        5
    );
}
