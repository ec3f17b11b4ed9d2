//! Crash safety: a child process writing batches is killed with SIGKILL at random moments; after
//! each kill the collection reopens with every acknowledged batch present exactly once, and
//! answers searches.
//!
//! The child is this test binary re-executed with `CHATVAULT_CRASH_CHILD` set: it runs only the
//! `crash_child` test, which writes batches and prints `ack <batch>` after each upsert returns.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chatvault_core::{CollectionSpec, ContentDocument, ContentStore, PageRequest, SearchOptions};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};
use common::*;
use rand::{Rng, SeedableRng};

const DIM: usize = 32;
const BATCH: usize = 20;
/// New keys per batch; the rest rewrite keys of the previous batch.
const NEW: usize = 15;
const CHILD_ENV: &str = "CHATVAULT_CRASH_CHILD";

fn child_options() -> VectorStoreOptions {
    VectorStoreOptions {
        // the child indexes and dumps the graph itself every few batches (see `crash_child`), so
        // kills land inside tantivy commits, graph inserts and graph dumps alike, and the tail
        // a reopen must catch up on stays small
        background_indexing: false,
        writer_memory: 15_000_000,
        ..Default::default()
    }
}

/// The child flushes the graph (index the tail, dump) after every this many batches.
const FLUSH_EVERY: usize = 8;

/// Batch `b`: `NEW` new keys and `BATCH - NEW` rewrites of keys of batch `b - 1` at a higher
/// version.
fn batch(b: usize) -> Vec<ContentDocument> {
    let mut mix = Mixture::new(b as u64, DIM, 4, 0.5);
    let mut docs: Vec<_> = (0..NEW)
        .map(|i| {
            doc(
                key("T1", "C1", (b * 100 + i + 1) as i64),
                &format!("batch {b} item {i}"),
                mix.sample(),
                b as u64 + 1,
            )
        })
        .collect();
    if b > 0 {
        for i in 0..BATCH - NEW {
            docs.push(doc(
                key("T1", "C1", ((b - 1) * 100 + i + 1) as i64),
                &format!("batch {} item {i} rewritten in {b}", b - 1),
                mix.sample(),
                b as u64 + 1,
            ));
        }
    }
    docs
}

#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only meaningful as the child of `sigkill_never_loses_acknowledged_batches`
    };
    let start: usize = std::env::var("CHATVAULT_CRASH_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = VectorStore::open(&dir, child_options()).unwrap();
        let w = ws("T1");
        store
            .create_collection(
                &w,
                &CollectionSpec {
                    dimension: DIM,
                    model_id: "m".into(),
                },
            )
            .await
            .unwrap();
        println!("ready");
        for b in start.. {
            store.upsert(&w, &batch(b)).await.unwrap();
            println!("ack {b}");
            if b % FLUSH_EVERY == FLUSH_EVERY - 1 {
                store.flush_graph(&w).unwrap();
            }
            // a steady writer rather than a flood: keeps the collection (and the test) small
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_loses_acknowledged_batches() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2024);
    let mut acked: Option<usize> = None;
    let kills = 12;
    let started = Instant::now();
    for round in 0..kills {
        let start = acked.map_or(0, |a| a + 1);
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env("CHATVAULT_CRASH_START", start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // wait until the child is writing, then let it run a random while
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("child never got ready");
            if line.ends_with("ready") || Instant::now() > deadline {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(50..800)));
        child.kill().unwrap(); // SIGKILL on unix
        child.wait().unwrap();
        reader.join().unwrap();
        let before = acked;
        while let Ok(line) = rx.try_recv() {
            if let Some(b) = line.strip_prefix("ack ") {
                acked = Some(b.parse().unwrap());
            }
        }
        println!(
            "round {round}: acknowledged up to {acked:?} (was {before:?}) at {:?}",
            started.elapsed()
        );

        // reopen and check (without indexing: the loaded graph plus the exact tail must answer,
        // and only the child writes graph dumps)
        let store = VectorStore::open(dir.path(), child_options()).unwrap();
        let w = ws("T1");
        let Some(last) = acked else { continue };
        let versions = store
            .list_versions(&w, &PageRequest::first(1_000_000))
            .await
            .unwrap();
        let listed: std::collections::HashMap<_, _> = versions
            .iter()
            .map(|v| (v.key.clone(), v.version))
            .collect();
        assert_eq!(listed.len(), versions.len(), "a key is listed twice");
        let info = store.collection_info(&w).await.unwrap().unwrap();
        assert_eq!(info.documents as usize, versions.len());
        // every acknowledged write is there, at its version or a later one
        for b in 0..=last {
            for e in batch(b) {
                let v = listed.get(e.key()).copied();
                assert!(
                    v.is_some_and(|v| v >= e.version),
                    "round {round}: batch {b} lost {} (listed version {v:?})",
                    e.key()
                );
            }
        }
        // and reads back exactly as written (sampled batches, the last one always)
        for b in [last, last / 2, rng.random_range(0..=last)] {
            let expected = batch(b);
            let want: Vec<_> = expected.iter().map(|d| d.key().clone()).collect();
            let got = store.get(&w, &want).await.unwrap();
            assert_eq!(got.len(), want.len(), "batch {b} lost documents");
            for (g, e) in got.iter().zip(&expected) {
                assert!(
                    g.version >= e.version,
                    "batch {b}: {} went back in time",
                    e.key()
                );
                if g.version == e.version {
                    assert_eq!(g, e);
                }
            }
        }
        // the index answers searches, and finds an acknowledged document first
        // (an item never rewritten: a committed but unacknowledged batch may rewrite the first
        // ones of the last acknowledged batch)
        let probe = &batch(last)[NEW - 1];
        let hits = store
            .search_vector(&w, &probe.embedding, &SearchOptions::top(5))
            .await
            .unwrap();
        assert_eq!(
            hits.first().map(|h| &h.key),
            Some(probe.key()),
            "round {round}: hits {hits:?}, {} documents, {} pending",
            info.documents,
            store.pending_vectors(&w).unwrap()
        );
        let lexical = store
            .search_lexical(
                &w,
                &format!("batch {last} item {}", NEW - 1),
                &SearchOptions::top(5),
            )
            .await
            .unwrap();
        assert!(lexical.iter().any(|h| &h.key == probe.key()));
        let unique: std::collections::HashSet<_> = hits.iter().map(|h| &h.key).collect();
        assert_eq!(unique.len(), hits.len(), "a search returned a key twice");
        store.close();
    }
    assert!(
        acked.is_some_and(|a| a >= 10),
        "the child wrote too little: {acked:?}"
    );
}
