//! Bench binary: many readers beside one writer. Search QPS from 1, 2 and 8 reader threads, each
//! with its own read-only store (as separate processes would have), with and without a writer
//! upserting at full speed; and the writer's throughput with those readers beside it.
//!
//! `cargo bench -p chatvault-storage-vector --bench readers` runs 20,000 vectors;
//! `CHATVAULT_BENCH_N=100000` scales it up. `CHATVAULT_BENCH_SECS` sets each measurement's
//! length (default 5 s). A query is one vector search (top 10) and one lexical search (top 10).
//!
//! Each row with readers beside the writer runs twice: readers at normal CPU priority, and at
//! nice 10 as the `chatvault` CLI's read-only commands run with `--read-nice 10`. The writer's
//! rate is compared with the writer alone measured just before (the collection grows as the
//! bench writes, so a baseline from the start would overstate the slowdown).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatvault_core::{CollectionSpec, ContentDocument, ContentStore, SearchOptions};
use chatvault_storage_vector::{SearchTuning, VectorStore, VectorStoreOptions};
use common::*;

const DIM: usize = 384;
const WORDS: [&str; 12] = [
    "deploy", "failed", "meetup", "python", "maps", "review", "release", "budget", "design",
    "tutorial", "dataset", "server",
];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn make_docs(mix: &mut Mixture, from: usize, n: usize) -> Vec<ContentDocument> {
    (from..from + n)
        .map(|i| {
            doc(
                key("T1", &format!("C{}", i % 50), i as i64 + 1),
                &format!(
                    "{} {} {} message {i}",
                    WORDS[i % 12],
                    WORDS[(i / 12) % 12],
                    WORDS[(i / 144) % 12]
                ),
                mix.sample(),
                1,
            )
        })
        .collect()
}

struct Run {
    qps: f64,
    p99_ms: f64,
    written_per_s: f64,
}

/// Runs `readers` reader threads (each with its own read-only store; closed loop, or `pace`
/// queries per second each) and, with `writer`, a writer upserting batches of 256 new documents,
/// for `secs`.
fn measure(
    root: &std::path::Path,
    writer: Option<(&VectorStore, &mut usize, &mut Mixture)>,
    readers: usize,
    pace: Option<f64>,
    nice: i32,
    secs: f64,
) -> Run {
    let w = ws("T1");
    let stop = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicU64::new(0));
    // readers open (loading the graph dump) and answer a first query before the clock starts
    let ready = Arc::new(std::sync::Barrier::new(readers + 1));
    let mut handles = Vec::new();
    for r in 0..readers {
        let (stop, queries, root, w, ready) = (
            Arc::clone(&stop),
            Arc::clone(&queries),
            root.to_path_buf(),
            w.clone(),
            Arc::clone(&ready),
        );
        handles.push(std::thread::spawn(move || {
            if nice > 0 {
                // Linux: a thread's own priority, as a reader process's would be
                rustix::process::setpriority_process(None, nice).expect("lower priority");
            }
            let store = VectorStore::open_read_only(&root, VectorStoreOptions::default())
                .expect("reader opens");
            let mut mix = Mixture::new(1000 + r as u64, DIM, 200, 0.8);
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            store
                .search_vector_tuned(
                    &w,
                    &mix.sample(),
                    &SearchOptions::top(10),
                    &SearchTuning::default(),
                )
                .expect("first search");
            ready.wait();
            let mut lat = Vec::new();
            let mut i = r;
            let begin = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if let Some(rate) = pace {
                    // open loop: query i is due at i / rate
                    let due = Duration::from_secs_f64((i - r) as f64 / readers as f64 / rate);
                    if let Some(wait) = due.checked_sub(begin.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                let q = mix.sample();
                let t = Instant::now();
                store
                    .search_vector_tuned(&w, &q, &SearchOptions::top(10), &SearchTuning::default())
                    .expect("vector search");
                rt.block_on(store.search_lexical(
                    &w,
                    &format!("{} {}", WORDS[i % 12], WORDS[(i * 7) % 12]),
                    &SearchOptions::top(10),
                ))
                .expect("lexical search");
                lat.push(t.elapsed().as_secs_f64());
                queries.fetch_add(1, Ordering::Relaxed);
                i += readers;
            }
            lat
        }));
    }
    ready.wait();
    let start = Instant::now();
    let mut written = 0usize;
    match writer {
        Some((store, next, mix)) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            while start.elapsed().as_secs_f64() < secs {
                let batch = make_docs(mix, *next, 256);
                *next += 256;
                rt.block_on(store.upsert(&w, &batch)).expect("upsert");
                written += batch.len();
            }
        }
        None => std::thread::sleep(Duration::from_secs_f64(secs)),
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("reader thread"))
        .collect();
    lat.sort_by(f64::total_cmp);
    let p99 = lat
        .get(((lat.len() as f64 * 0.99) as usize).min(lat.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    Run {
        qps: queries.load(Ordering::Relaxed) as f64 / elapsed,
        p99_ms: p99 * 1000.0,
        written_per_s: written as f64 / elapsed,
    }
}

fn main() {
    let n = env_usize("CHATVAULT_BENCH_N", 20_000);
    let secs = env_usize("CHATVAULT_BENCH_SECS", 5) as f64;
    let dir = tempfile::tempdir().expect("tempdir");
    let w = ws("T1");
    let writer = VectorStore::open(dir.path(), VectorStoreOptions::default()).expect("open");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(writer.create_collection(
        &w,
        &CollectionSpec {
            dimension: DIM,
            model_id: "bench".into(),
        },
    ))
    .expect("create");
    let mut mix = Mixture::new(42, DIM, (n / 100).clamp(200, 2000), 0.8);
    let t = Instant::now();
    let mut next = 0;
    while next < n {
        let batch = make_docs(&mut mix, next, 5000.min(n - next));
        next += batch.len();
        rt.block_on(writer.upsert(&w, &batch)).expect("load");
    }
    writer.flush_graph(&w).expect("graph");
    println!(
        "readers beside a writer: {n} × {DIM}-d documents loaded and indexed in {:.0} s; {secs} s per row; load {}",
        t.elapsed().as_secs_f64(),
        load()
    );
    println!("| readers | writer | reader nice | queries/s (all readers) | p99 ms | writer docs/s (vs alone just before) |");
    println!("|---|---|---|---|---|---|");
    let rows: [(usize, Option<f64>); 4] = [(1, None), (2, None), (8, None), (8, Some(5.0))];
    for (readers, pace) in rows {
        let label = match pace {
            Some(rate) => format!("{readers} × {rate} q/s"),
            None => readers.to_string(),
        };
        if pace.is_none() {
            let quiet = measure(dir.path(), None, readers, None, 0, secs);
            println!(
                "| {label} | idle | 0 | {:.0} | {:.1} | – |",
                quiet.qps, quiet.p99_ms
            );
        }
        for nice in [0, 10] {
            let alone = measure(
                dir.path(),
                Some((&writer, &mut next, &mut mix)),
                0,
                None,
                0,
                secs,
            );
            let busy = measure(
                dir.path(),
                Some((&writer, &mut next, &mut mix)),
                readers,
                pace,
                nice,
                secs,
            );
            println!(
                "| {label} | upserting | {nice} | {:.0} | {:.1} | {:.0} vs {:.0} ({:+.0} %) |",
                busy.qps,
                busy.p99_ms,
                busy.written_per_s,
                alone.written_per_s,
                (busy.written_per_s / alone.written_per_s - 1.0) * 100.0
            );
        }
    }
    println!("load after: {}", load());
}
