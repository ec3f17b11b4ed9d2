//! chatvault's criterion suite: `cargo bench -p chatvault-benches --bench suite`.
//!
//! | group | what one iteration is |
//! |---|---|
//! | `apply` | `MetadataStore::apply` of a 10,000-message batch (reactions, links, threads, text for the outbox) on SQLite, and on PostgreSQL when `CHATVAULT_BENCH_DATABASE_URL` or `CHATVAULT_TEST_DATABASE_URL` is set |
//! | `content_insert` | `ContentStore::upsert` of 1,000 embedded documents into the vector store (durable and searchable: tantivy commit; the graph catches up in the background) |
//! | `search` | over `CHATVAULT_BENCH_N` messages (default 20,000) in the embedded default (SQLite + tantivy/HNSW), graph built: vector top-10, lexical top-10, both filtered to 1% (one channel of 100), and hybrid through `QueryEngine` unfiltered and at 1% |
//!
//! Documents and queries are embedded with the 384-d hashing embedder (the real model's cost is
//! the embed crate's bench). At 1M messages: `CHATVAULT_BENCH_N=1000000 cargo bench -p
//! chatvault-benches --bench suite -- search` (building the graph takes about 25 minutes on two
//! cores).

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chatvault_benches::{
    channel, documents, env_usize, message_batch, postgres_url, sqlite_store, workspace,
    workspace_batch, Vocabulary, CHANNELS,
};
use chatvault_core::{
    CollectionSpec, ContentFilter, ContentStore, Embedder, HashingEmbedder, MetadataStore,
    SearchOptions, Workspace, WorkspaceId,
};
use chatvault_query::{QueryEngine, Scope, SearchFilter, SearchMode, SearchRequest};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::runtime::Runtime;

const APPLY_BATCH: usize = 10_000;
const INSERT_BATCH: usize = 1_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn embedder() -> Arc<dyn Embedder> {
    Arc::new(HashingEmbedder::new(384).expect("the hashing embedder"))
}

async fn new_workspace(meta: &dyn MetadataStore, ws: &WorkspaceId) {
    meta.upsert_workspace(&Workspace::new(ws.clone(), "bench"))
        .await
        .expect("workspace");
    meta.apply(workspace_batch(ws)).await.expect("channels");
}

fn apply(c: &mut Criterion) {
    let rt = runtime();
    let vocab = Vocabulary::new(1);
    let ws = workspace();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stores: Vec<(&str, Arc<dyn MetadataStore>)> = Vec::new();
    let sqlite: Arc<dyn MetadataStore> =
        Arc::new(rt.block_on(sqlite_store(dir.path())).expect("sqlite"));
    stores.push(("sqlite", sqlite));
    if let Some(url) = postgres_url() {
        let pg = rt.block_on(async {
            let store = SqlMetadataStore::connect(&url, ConnectOptions::default()).await?;
            // a fresh workspace each run: earlier runs' rows stay out of the way
            store.delete_workspace(&ws).await?;
            Ok::<_, chatvault_core::Error>(store)
        });
        match pg {
            Ok(store) => stores.push(("postgres", Arc::new(store))),
            Err(e) => eprintln!("apply/postgres skipped: {e}"),
        }
    }
    let mut group = c.benchmark_group("apply");
    group.sample_size(10);
    group.throughput(Throughput::Elements(APPLY_BATCH as u64));
    for (name, meta) in stores {
        rt.block_on(new_workspace(meta.as_ref(), &ws));
        // every iteration inserts new messages: the table grows as it would in production
        let next = AtomicUsize::new(0);
        group.bench_function(BenchmarkId::new("10k_messages", name), |b| {
            b.iter_batched(
                || {
                    message_batch(
                        &ws,
                        &vocab,
                        next.fetch_add(APPLY_BATCH, Ordering::Relaxed),
                        APPLY_BATCH,
                    )
                },
                |batch| rt.block_on(meta.apply(batch)).expect("apply"),
                criterion::BatchSize::PerIteration,
            );
        });
        if name == "postgres" {
            let _ = rt.block_on(meta.delete_workspace(&ws));
        }
    }
    group.finish();
}

fn content_insert(c: &mut Criterion) {
    let rt = runtime();
    let vocab = Vocabulary::new(2);
    let ws = workspace();
    let embedder = embedder();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = VectorStore::open(dir.path(), VectorStoreOptions::default()).expect("store");
    rt.block_on(store.create_collection(&ws, &spec(embedder.as_ref())))
        .expect("collection");
    let next = AtomicUsize::new(0);
    let mut group = c.benchmark_group("content_insert");
    group.sample_size(20);
    group.throughput(Throughput::Elements(INSERT_BATCH as u64));
    group.bench_function("1k_documents", |b| {
        b.iter_batched(
            || {
                let batch = message_batch(
                    &ws,
                    &vocab,
                    next.fetch_add(INSERT_BATCH, Ordering::Relaxed),
                    INSERT_BATCH,
                );
                rt.block_on(documents(&batch, embedder.as_ref()))
                    .expect("embed")
            },
            |docs| rt.block_on(store.upsert(&ws, &docs)).expect("upsert"),
            criterion::BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn spec(embedder: &dyn Embedder) -> CollectionSpec {
    CollectionSpec {
        dimension: embedder.dimension(),
        model_id: embedder.model_id().to_string(),
    }
}

/// The embedded default holding `n` messages, graph built.
struct Loaded {
    engine: QueryEngine,
    store: VectorStore,
    embedder: Arc<dyn Embedder>,
    _dir: tempfile::TempDir,
}

fn load(rt: &Runtime, n: usize, vocab: &Vocabulary) -> Loaded {
    let ws = workspace();
    let embedder = embedder();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = VectorStore::open(dir.path().join("vectors"), VectorStoreOptions::default())
        .expect("store");
    let meta: Arc<dyn MetadataStore> =
        Arc::new(rt.block_on(sqlite_store(dir.path())).expect("sqlite"));
    let started = std::time::Instant::now();
    rt.block_on(async {
        new_workspace(meta.as_ref(), &ws).await;
        store
            .create_collection(&ws, &spec(embedder.as_ref()))
            .await
            .expect("collection");
        let mut from = 0;
        while from < n {
            let count = APPLY_BATCH.min(n - from);
            let batch = message_batch(&ws, vocab, from, count);
            let docs = documents(&batch, embedder.as_ref()).await.expect("embed");
            meta.apply(batch).await.expect("apply");
            store.upsert(&ws, &docs).await.expect("upsert");
            from += count;
        }
    });
    store.wait_for_graph(&ws).expect("graph");
    eprintln!(
        "search: {n} messages loaded and indexed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let content: Arc<dyn ContentStore> = Arc::new(store.clone());
    let engine = QueryEngine::new(meta, content, embedder.clone());
    Loaded {
        engine,
        store,
        embedder,
        _dir: dir,
    }
}

fn search(c: &mut Criterion) {
    let rt = runtime();
    let n = env_usize("CHATVAULT_BENCH_N", 20_000);
    let vocab = Vocabulary::new(1);
    let loaded = load(&rt, n, &vocab);
    let ws = workspace();
    let mut rng = StdRng::seed_from_u64(99);
    let queries: Vec<String> = (0..256)
        .map(|_| {
            let words = rng.random_range(1..=3);
            vocab.phrase(&mut rng, words)
        })
        .collect();
    let vectors = rt
        .block_on(loaded.embedder.embed(&queries))
        .expect("embed queries");
    let one_channel = ContentFilter {
        channels: Some(vec![channel(CHANNELS - 1)]),
        ..ContentFilter::default()
    };
    let mut group = c.benchmark_group(format!("search_{n}"));
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) % queries.len();
        i
    };
    group.bench_function("vector_top10", |b| {
        b.iter(|| {
            let q = &vectors[next()];
            rt.block_on(loaded.store.search_vector(&ws, q, &SearchOptions::top(10)))
                .expect("search")
        })
    });
    group.bench_function("vector_top10_filtered_1pct", |b| {
        let options = SearchOptions {
            k: 10,
            filter: one_channel.clone(),
        };
        b.iter(|| {
            let q = &vectors[next()];
            rt.block_on(loaded.store.search_vector(&ws, q, &options))
                .expect("search")
        })
    });
    group.bench_function("lexical_top10", |b| {
        b.iter(|| {
            let q = &queries[next()];
            rt.block_on(loaded.store.search_lexical(&ws, q, &SearchOptions::top(10)))
                .expect("search")
        })
    });
    group.bench_function("lexical_top10_filtered_1pct", |b| {
        let options = SearchOptions {
            k: 10,
            filter: one_channel.clone(),
        };
        b.iter(|| {
            let q = &queries[next()];
            rt.block_on(loaded.store.search_lexical(&ws, q, &options))
                .expect("search")
        })
    });
    for (name, filter) in [
        ("hybrid_top10", SearchFilter::default()),
        (
            "hybrid_top10_filtered_1pct",
            SearchFilter {
                channels: Some(vec![channel(CHANNELS - 1)]),
                ..SearchFilter::default()
            },
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let q = queries[next()].clone();
                let request = SearchRequest::new(q)
                    .mode(SearchMode::Hybrid)
                    .scope(Scope::Admin)
                    .filter(filter.clone());
                rt.block_on(loaded.engine.search(&ws, request))
                    .expect("search")
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
}

criterion_group! {
    name = suite;
    config = config();
    targets = apply, content_insert, search
}
criterion_main!(suite);
