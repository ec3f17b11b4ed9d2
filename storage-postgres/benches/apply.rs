//! `apply()` throughput: batches of 10,000 messages (each with content, two reactions and two
//! links) on SQLite and, when `CHATVAULT_TEST_DATABASE_URL` (or `CHATVAULT_BENCH_DATABASE_URL`)
//! is set, on PostgreSQL. `CHATVAULT_BENCH_MESSAGES` changes the batch size.
//!
//! Every iteration writes new messages (fresh timestamps), so the figure is insert throughput into
//! a growing table, not the cheaper idempotent re-apply.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chatvault_core::{
    ChannelKind, ContentAttributes, Link, LinkSource, MessageContent, MessageKey, MessageMeta,
    MessageRecord, MetadataStore, Reaction, Ts, UserId, Workspace, WorkspaceId, WriteBatch,
};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sea_orm::{ConnectionTrait, Database};

fn batch_size() -> usize {
    std::env::var("CHATVAULT_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

static NEXT_TS: AtomicI64 = AtomicI64::new(1_600_000_000_000_000);

fn make_batch(ws: &WorkspaceId, n: usize) -> WriteBatch {
    let mut b = WriteBatch::new(ws.clone());
    let users: Vec<UserId> = (0..50)
        .map(|i| UserId::new(format!("U{i:04}")).unwrap())
        .collect();
    for i in 0..n {
        let micros = NEXT_TS.fetch_add(1_000, Ordering::Relaxed);
        let key = MessageKey::new(
            ws.clone(),
            chatvault_core::ChannelId::new(format!("C{:03}", i % 40)).unwrap(),
            Ts::from_micros(micros),
        );
        let mut meta = MessageMeta::new(key.clone());
        meta.user = Some(users[i % users.len()].clone());
        meta.reaction_count = 3;
        meta.has_reactions = true;
        meta.link_count = 2;
        if i % 5 != 0 {
            meta.thread_ts = Some(Ts::from_micros(micros - (i as i64 % 5) * 1_000));
        }
        let mut r = MessageRecord::new(meta);
        r.reactions = vec![
            Reaction {
                name: "+1".into(),
                users: vec![users[(i + 1) % 50].clone(), users[(i + 2) % 50].clone()],
                count: 2,
            },
            Reaction {
                name: "eyes".into(),
                users: vec![users[(i + 3) % 50].clone()],
                count: 1,
            },
        ];
        r.links = vec![
            Link::parse(
                &format!("https://github.com/acme/app/pull/{}", i % 500),
                LinkSource::Text,
            )
            .unwrap(),
            Link::parse(
                &format!("https://docs.example.com/page/{}", i % 97),
                LinkSource::Attachment,
            )
            .unwrap(),
        ];
        r.content = Some(MessageContent {
            key,
            text: format!(
                "message {i}: the deploy of build {} failed on stage {}, see the PR",
                i * 7,
                i % 3
            ),
            attributes: ContentAttributes::from_meta(&r.meta, ChannelKind::Public),
        });
        b.messages.push(r);
    }
    b
}

fn bench_store(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: SqlMetadataStore,
) {
    let ws = WorkspaceId::new("TBENCH").unwrap();
    rt.block_on(store.upsert_workspace(&Workspace::new(ws.clone(), "bench")))
        .unwrap();
    let n = batch_size();
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.warm_up_time(Duration::from_secs(2));
    g.bench_function(format!("{name}/{n}_messages"), |bch| {
        bch.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch = make_batch(&ws, n);
                let t = Instant::now();
                let r = rt.block_on(store.apply(batch)).unwrap();
                total += t.elapsed();
                assert_eq!(r.messages_written, n as u64);
            }
            total
        })
    });
    g.finish();
}

/// With `CHATVAULT_BENCH_PHASES` set, prints each `apply`'s per-phase timings (the store's debug
/// event) to stderr: a minimal subscriber, so the bench needs no logging crate.
struct PhaseLog;

impl tracing::Subscriber for PhaseLog {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        m.target().starts_with("chatvault_storage_postgres")
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        struct Line(String);
        impl tracing::field::Visit for Line {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={v:?}", f.name()));
            }
        }
        let mut line = Line(String::new());
        e.record(&mut line);
        eprintln!("{}:{}", e.metadata().target(), line.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn apply_benches(c: &mut Criterion) {
    if std::env::var_os("CHATVAULT_BENCH_PHASES").is_some() {
        tracing::subscriber::set_global_default(PhaseLog).unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let sqlite = rt
        .block_on(SqlMetadataStore::connect(&url, ConnectOptions::default()))
        .unwrap();
    bench_store(c, &rt, "sqlite", sqlite);

    let admin = std::env::var("CHATVAULT_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("CHATVAULT_TEST_DATABASE_URL"));
    match admin {
        Ok(admin) => {
            let name = format!("chatvault_bench_{}", std::process::id());
            rt.block_on(async {
                let conn = Database::connect(admin.as_str()).await.unwrap();
                conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
                    .await
                    .unwrap();
                conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
            });
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
            let url = format!("{base}/{name}");
            let pg = rt
                .block_on(SqlMetadataStore::connect(&url, ConnectOptions::default()))
                .unwrap();
            bench_store(c, &rt, "postgres", pg);
            rt.block_on(async {
                let conn = Database::connect(admin.as_str()).await.unwrap();
                conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .unwrap();
            });
        }
        Err(_) => eprintln!("postgres: skipped (CHATVAULT_TEST_DATABASE_URL not set)"),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = apply_benches
}
criterion_main!(benches);
