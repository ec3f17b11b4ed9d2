//! End-to-end import: `cargo bench -p chatvault-benches --bench import`.
//!
//! One iteration imports a Slack export into a fresh embedded default — the collector writes the
//! metadata and the outbox to SQLite, the relay embeds (384-d hashing embedder) and writes the
//! vector store — and returns when the outbox is empty. Two exports: the bundled real one
//! (`testdata/slack-export-houstondatavis`, 1,382 messages; `CHATVAULT_BENCH_EXPORT` names
//! another) and a synthetic one of `CHATVAULT_BENCH_IMPORT_N` messages (default 10,000; the 1M run
//! is `CHATVAULT_BENCH_IMPORT_N=1000000`).

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chatvault_benches::{env_usize, sqlite_store, synthetic_export, testdata};
use chatvault_collector::{Collector, ImportOptions, Relay, RelayOptions};
use chatvault_core::{ContentStore, Embedder, HashingEmbedder, MetadataStore, WorkspaceId};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Imports `export` into fresh stores and drains the outbox; returns the messages imported.
async fn import(export: &Path, embedder: Arc<dyn Embedder>) -> u64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta: Arc<dyn MetadataStore> = Arc::new(sqlite_store(dir.path()).await.expect("sqlite"));
    let content: Arc<dyn ContentStore> = Arc::new(
        VectorStore::open(dir.path().join("vectors"), VectorStoreOptions::default())
            .expect("vector store"),
    );
    let ws = WorkspaceId::new("T1").expect("workspace id");
    let summary = Collector::new(meta.clone(), ws)
        .import_export(export, ImportOptions::default())
        .await
        .expect("import");
    Relay::new(meta, content, embedder, RelayOptions::default())
        .drain()
        .await
        .expect("relay");
    summary.totals.messages
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let embedder: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(384).expect("embedder"));
    let real: PathBuf = std::env::var("CHATVAULT_BENCH_EXPORT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| testdata("slack-export-houstondatavis"));
    let n = env_usize("CHATVAULT_BENCH_IMPORT_N", 10_000);
    let synthetic = tempfile::tempdir().expect("tempdir");
    synthetic_export(synthetic.path(), n).expect("synthetic export");

    let mut group = c.benchmark_group("import");
    group.sample_size(10);
    for (name, export) in [("export", real.as_path()), ("synthetic", synthetic.path())] {
        let messages = rt.block_on(import(export, embedder.clone()));
        group.throughput(Throughput::Elements(messages));
        group.bench_function(BenchmarkId::new(name, messages), |b| {
            b.iter(|| rt.block_on(import(export, embedder.clone())))
        });
    }
    group.finish();
}

criterion_group! {
    name = import_bench;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    targets = bench
}
criterion_main!(import_bench);
