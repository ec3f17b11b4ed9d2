//! Bench binary: insert throughput, search QPS at recall@10 >= 0.95, filtered QPS, the exact-scan
//! switch point, and resident memory, on 384-d vectors from a seeded mixture of Gaussians.
//!
//! `cargo bench -p chatvault-storage-vector --bench vector_store` runs 20,000 vectors (about two
//! minutes); `CHATVAULT_BENCH_N=100000` or `1000000` scales it up. Searches run on one thread.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use chatvault_core::{ChannelId, CollectionSpec, ContentFilter, ContentStore, SearchOptions};
use chatvault_storage_vector::{SearchTuning, VectorStore, VectorStoreOptions};
use common::*;

const DIM: usize = 384;
const K: usize = 10;

fn rss() -> (u64, u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("RssAnon:"), field("RssFile:"))
}

/// CPU time of the calling thread in seconds (the machine may be shared: QPS per CPU-second
/// does not depend on what else runs, wall-clock QPS does).
fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
}

/// CPU time of the whole process in seconds (all threads; 10 ms resolution).
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // the fields after the command name, which is in parentheses
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

fn mb(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// In a fresh process: the memory a reopened collection takes (graph loaded, tantivy opened).
fn reopen_child(dir: &str, n: usize) {
    let before = rss();
    let store = VectorStore::open(dir, VectorStoreOptions::default()).expect("open");
    let w = ws("T1");
    store.open_collection(&w).expect("open collection");
    store.wait_for_graph(&w).expect("graph");
    let mut mix = Mixture::new(42, DIM, (n / 100).clamp(200, 2000), 0.8);
    for _ in 0..200 {
        let q = mix.sample();
        store
            .search_vector_tuned(&w, &q, &SearchOptions::top(K), &SearchTuning::default())
            .expect("search");
    }
    let after = rss();
    let raw = (n * DIM * 4) as u64;
    println!(
        "memory of the reopened store (fresh process, after 200 searches): RSS +{:.1} MB \
         (anon +{:.1} MB, file +{:.1} MB) for {:.1} MB of raw vectors: {:.2}x raw (anon {:.2}x)",
        mb(after.0.saturating_sub(before.0)),
        mb(after.1.saturating_sub(before.1)),
        mb(after.2.saturating_sub(before.2)),
        mb(raw),
        after.0.saturating_sub(before.0) as f64 / raw as f64,
        after.1.saturating_sub(before.1) as f64 / raw as f64,
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches` probe bench binaries
    }
    let n: usize = std::env::var("CHATVAULT_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let queries_n: usize = std::env::var("CHATVAULT_BENCH_QUERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    if let Ok(dir) = std::env::var("CHATVAULT_BENCH_REOPEN") {
        reopen_child(&dir, n);
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let w = ws("T1");
    let mut mix = Mixture::new(42, DIM, (n / 100).clamp(200, 2000), 0.8);
    println!(
        "# chatvault-storage-vector bench: {n} x {DIM}-d vectors, k = {K}, {queries_n} queries; \
         load average {}",
        load()
    );

    let rss0 = rss();
    let store = VectorStore::open(dir.path(), VectorStoreOptions::default()).expect("open");
    rt.block_on(store.create_collection(
        &w,
        &CollectionSpec {
            dimension: DIM,
            model_id: "gmm".into(),
        },
    ))
    .expect("create");

    // ingest: durable + searchable once tantivy commits; the graph follows in the background
    let batch = 1000;
    let mut unit: Vec<Vec<f32>> = Vec::with_capacity(n);
    let t0 = Instant::now();
    let cpu0 = process_cpu();
    let mut gen_time = 0.0;
    for b in 0..n.div_ceil(batch) {
        let g = Instant::now();
        let docs: Vec<_> = (b * batch..((b + 1) * batch).min(n))
            .map(|i| {
                let mut d = doc(
                    key("T1", &format!("C{}", i % 100), i as i64 + 1),
                    &format!("message {i} about deploys and reviews"),
                    mix.sample(),
                    1,
                );
                d.content.attributes.reaction_count = (i % 100) as u32;
                d
            })
            .collect();
        unit.extend(docs.iter().map(|d| normalized(&d.embedding)));
        gen_time += g.elapsed().as_secs_f64();
        rt.block_on(store.upsert(&w, &docs)).expect("upsert");
    }
    let ingest = t0.elapsed().as_secs_f64() - gen_time;
    store.wait_for_graph(&w).expect("graph");
    let graph_done = t0.elapsed().as_secs_f64() - gen_time;
    let cpu = process_cpu() - cpu0 - gen_time;
    println!(
        "insert: {:.0} vectors/s durable+searchable (tantivy), {:.0} vectors/s into the graph \
         (all cores, M=16, ef_construction=100); ingest + graph took {cpu:.0} CPU-s = {:.0} \
         vectors per CPU-second (load average now {})",
        n as f64 / ingest,
        n as f64 / graph_done,
        n as f64 / cpu.max(1e-9),
        load()
    );
    let rss1 = rss();
    let raw = (n * DIM * 4) as u64;
    // the bench keeps its own normalised copy of the vectors for ground truth: subtract it
    let own = raw;
    println!(
        "memory: raw vectors {:.1} MB; process RSS {:.1} MB (anon {:.1} MB, file {:.1} MB); \
         store anon ≈ {:.1} MB = {:.2}x raw",
        mb(raw),
        mb(rss1.0),
        mb(rss1.1),
        mb(rss1.2),
        mb(rss1.1.saturating_sub(rss0.1 + own)),
        rss1.1.saturating_sub(rss0.1 + own) as f64 / raw as f64
    );

    let queries: Vec<Vec<f32>> = (0..queries_n).map(|_| mix.sample()).collect();
    let truth_for = |filter: &dyn Fn(usize) -> bool| -> Vec<Vec<usize>> {
        queries
            .iter()
            .map(|q| {
                let qn = normalized(q);
                let mut d: Vec<(f32, usize)> = (0..n)
                    .filter(|&i| filter(i))
                    .map(|i| (-dot(&qn, &unit[i]), i))
                    .collect();
                d.sort_by(|a, b| a.0.total_cmp(&b.0));
                d.into_iter().take(K).map(|(_, i)| i).collect()
            })
            .collect()
    };
    // (QPS, QPS per CPU-second of the searching thread, recall)
    let run = |opts: &SearchOptions, tuning: SearchTuning, truth: &[Vec<usize>]| {
        let t = Instant::now();
        let c = thread_cpu();
        let mut found = 0;
        let mut expected = 0;
        for (q, tr) in queries.iter().zip(truth) {
            let hits = store
                .search_vector_tuned(&w, q, opts, &tuning)
                .expect("search");
            let ids: Vec<usize> = hits
                .iter()
                .map(|h| (h.key.ts.as_micros() - 1) as usize)
                .collect();
            found += tr.iter().filter(|i| ids.contains(i)).count();
            expected += tr.len();
        }
        let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
        let cpu_qps = queries.len() as f64 / (thread_cpu() - c).max(1e-9);
        (qps, cpu_qps, found as f64 / expected.max(1) as f64)
    };

    let truth = truth_for(&|_| true);
    println!(
        "\nunfiltered search, one thread (QPS: wall clock; per CPU-s: per second of the \
         thread's CPU time; load average {}):",
        load()
    );
    println!("  ef    recall@10   QPS     per CPU-s");
    for ef in [16, 32, 48, 64, 96, 128, 200] {
        let (qps, cpu_qps, recall) = run(
            &SearchOptions::top(K),
            SearchTuning {
                ef_search: Some(ef),
                exact_scan_threshold: None,
            },
            &truth,
        );
        println!("  {ef:<5} {recall:<11.4} {qps:<7.0} {cpu_qps:.0}");
    }

    println!(
        "\nfiltered search (min_reactions), one thread: exact scan vs graph walk, QPS wall / \
         per CPU-s (recall); load average {}:",
        load()
    );
    println!("  selectivity  candidates  exact scan                  graph walk");
    for (min, sel) in [
        (99u32, "1%"),
        (98, "2%"),
        (95, "5%"),
        (90, "10%"),
        (85, "15%"),
        (80, "20%"),
        (70, "30%"),
        (50, "50%"),
    ] {
        let filter = ContentFilter {
            min_reactions: Some(min),
            ..Default::default()
        };
        let truth = truth_for(&|i| (i % 100) as u32 >= min);
        let opts = SearchOptions::top(K).with_filter(filter);
        let (eq, ec, er) = run(
            &opts,
            SearchTuning {
                ef_search: None,
                exact_scan_threshold: Some(usize::MAX),
            },
            &truth,
        );
        let (gq, gc, gr) = run(
            &opts,
            SearchTuning {
                ef_search: None,
                exact_scan_threshold: Some(0),
            },
            &truth,
        );
        println!(
            "  {sel:<12} {:<11} {:<27} {gq:.0} / {gc:.0} ({gr:.3})",
            n * (100 - min as usize) / 100,
            format!("{eq:.0} / {ec:.0} ({er:.3})"),
        );
    }
    let filter = ContentFilter {
        channels: Some(vec![ChannelId::new("C7").expect("channel")]),
        ..Default::default()
    };
    let truth = truth_for(&|i| i % 100 == 7);
    let (qps, cpu_qps, recall) = run(
        &SearchOptions::top(K).with_filter(filter),
        SearchTuning::default(),
        &truth,
    );
    println!(
        "\nfiltered search at 1% (one channel), default planner: {qps:.0} QPS ({cpu_qps:.0} per \
         CPU-s), recall@10 {recall:.4}"
    );

    let t = Instant::now();
    let mut hits = 0;
    for i in 0..queries_n {
        let q = ["deploys", "reviews message", "message 17", "about"][i % 4];
        hits += rt
            .block_on(store.search_lexical(&w, q, &SearchOptions::top(K)))
            .expect("lexical")
            .len();
    }
    println!(
        "lexical search (BM25, through the async API): {:.0} QPS ({hits} hits)",
        queries_n as f64 / t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    store.flush_graph(&w).expect("flush");
    println!("graph dump: {:.2} s", t.elapsed().as_secs_f64());
    store.close();
    let t = Instant::now();
    let store = VectorStore::open(dir.path(), VectorStoreOptions::default()).expect("reopen");
    store.open_collection(&w).expect("reopen collection");
    println!(
        "reopen (load the graph, catch up): {:.2} s, pending vectors {}",
        t.elapsed().as_secs_f64(),
        store.pending_vectors(&w).expect("pending")
    );
    println!("disk: {:.1} MB", mb(store.disk_usage(&w).expect("disk")));
    store.close();
    drop(store);
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .env("CHATVAULT_BENCH_REOPEN", dir.path())
        .env("CHATVAULT_BENCH_N", n.to_string())
        .output()
        .expect("memory child");
    print!("{}", String::from_utf8_lossy(&out.stdout));
}
