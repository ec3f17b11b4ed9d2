//! `apply()` throughput: batches of 10,000 messages (each with content, two reactions and two
//! links) on SQLite and, when `CHATVAULT_TEST_DATABASE_URL` (or `CHATVAULT_BENCH_DATABASE_URL`)
//! is set, on PostgreSQL. `CHATVAULT_BENCH_MESSAGES` changes the batch size.
//!
//! Every iteration writes new messages (fresh timestamps), so the figure is insert throughput into
//! a growing table, not the cheaper idempotent re-apply.
//!
//! `apply/sqlite_engine_floor` is not `apply`: it writes the same rows into the same schema with
//! one `INSERT … SELECT` per table from rows generated beforehand into a temporary table (untimed;
//! no bound values, no reads, no outbox serialisation), in one transaction. It is the time SQLite itself needs for
//! a batch's rows and indexes on this machine: the bound under any `apply` on SQLite.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chatvault_core::{
    ChannelKind, ContentAttributes, Link, LinkSource, MessageContent, MessageKey, MessageMeta,
    MessageRecord, MetadataStore, Reaction, Ts, UserId, Workspace, WorkspaceId, WriteBatch,
};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
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
            context: Default::default(),
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

/// The `apply` group, its throughput in messages of a batch of `n`.
fn apply_group(c: &mut Criterion, n: usize) -> BenchmarkGroup<'_, WallTime> {
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.warm_up_time(Duration::from_secs(2));
    g
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
    let phases = std::env::var_os("CHATVAULT_BENCH_PHASES").is_some();
    let mut g = apply_group(c, n);
    g.bench_function(format!("{name}/{n}_messages"), |bch| {
        bch.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch = make_batch(&ws, n);
                let t = Instant::now();
                let r = rt.block_on(store.apply(batch)).unwrap();
                let took = t.elapsed();
                if phases {
                    eprintln!("iteration: {:.1}ms", took.as_secs_f64() * 1000.0);
                }
                total += took;
                assert_eq!(r.messages_written, n as u64);
            }
            total
        })
    });
    g.finish();
}

/// The rows `make_batch` builds for messages `0..n` whose timestamps start at `micros0` (same
/// channels, users, threads, reactions, links, outbox payload shape), generated into the
/// connection's temporary table `gg`; then one `INSERT … SELECT` per table from it.
fn floor_statements(n: usize, micros0: i64) -> (String, Vec<&'static str>) {
    let generate = format!(
        "CREATE TEMP TABLE gg AS \
         WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {last}), \
         g AS (SELECT i, {micros0} + 1000 * i AS m, printf('C%03d', i % 40) AS ch, \
               printf('U%04d', i % 50) AS u FROM s), \
         h AS (SELECT *, CASE WHEN i % 5 != 0 THEN m - (i % 5) * 1000 END AS tm FROM g) \
         SELECT i, m, ch, u, printf('%d.%06d', m / 1000000, m % 1000000) AS ts, tm, \
                CASE WHEN tm IS NOT NULL THEN printf('%d.%06d', tm / 1000000, tm % 1000000) END AS tts, \
                lower(hex(randomblob(32))) AS hash, \
                'https://github.com/acme/app/pull/' || (i % 500) AS url1, \
                'https://docs.example.com/page/' || (i % 97) AS url2, \
                '{{\"op\":\"upsert\",\"content\":{{\"key\":{{\"workspace\":\"TBENCH\",\"channel\":\"' \
                || ch || '\",\"ts\":\"' || printf('%d.%06d', m / 1000000, m % 1000000) \
                || '\"}},\"text\":\"message ' || i || ': the deploy of build ' || (i * 7) \
                || ' failed on stage ' || (i % 3) || ', see the PR\",\"attributes\":{{\"user\":\"' \
                || u || '\",\"thread_ts\":null,\"is_reply\":false,\"has_files\":false,\
                \"has_links\":true,\"reaction_count\":3,\"visibility\":\"public\"}}}}}}' AS payload \
         FROM h",
        last = n - 1
    );
    let inserts = vec![
        "INSERT INTO message_metadata SELECT 'TBENCH', ch, ts, m, u, NULL, tts, tm, tm IS NOT NULL, \
         0, 0, NULL, NULL, NULL, 0, 0, 1, 3, 0, 2, NULL, hash FROM gg",
        "INSERT INTO reactions SELECT 'TBENCH', ch, ts, '+1', 2, '[\"U0001\",\"U0002\"]' FROM gg",
        "INSERT INTO reactions SELECT 'TBENCH', ch, ts, 'eyes', 1, '[\"U0003\"]' FROM gg",
        "INSERT INTO links SELECT 'TBENCH', ch, ts, 0, m, url1, 'github.com', 'text', NULL FROM gg",
        "INSERT INTO links SELECT 'TBENCH', ch, ts, 1, m, url2, 'docs.example.com', 'attachment', \
         NULL FROM gg",
        "INSERT INTO outbox (workspace_id, channel_id, ts, op, payload, attempts, created_at, \
         available_at, dead) SELECT 'TBENCH', ch, ts, 'upsert', payload, 0, 1, 1, 0 FROM gg",
    ];
    (generate, inserts)
}

/// `apply/sqlite_engine_floor` (see the crate docs above) on the SQLite file at `url`, on one
/// connection with the store's settings; the WAL is checkpointed between iterations, untimed.
fn bench_sqlite_floor(c: &mut Criterion, rt: &tokio::runtime::Runtime, url: &str) {
    use sea_orm::TransactionTrait;
    let n = batch_size();
    let conn = rt
        .block_on(async {
            let mut opts = sea_orm::ConnectOptions::new(url.to_owned());
            opts.max_connections(1)
                .min_connections(1)
                .sqlx_logging(false);
            let conn = Database::connect(opts).await?;
            for p in [
                "PRAGMA synchronous = NORMAL",
                "PRAGMA cache_size = -65536",
                "PRAGMA temp_store = memory",
                "PRAGMA wal_autocheckpoint = 0",
            ] {
                conn.execute_unprepared(p).await?;
            }
            Ok::<_, sea_orm::DbErr>(conn)
        })
        .unwrap();
    let mut g = apply_group(c, n);
    g.bench_function(format!("sqlite_engine_floor/{n}_messages"), |bch| {
        bch.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let micros0 = NEXT_TS.fetch_add(1_000 * n as i64, Ordering::Relaxed);
                let (generate, inserts) = floor_statements(n, micros0);
                rt.block_on(async {
                    conn.execute_unprepared("DROP TABLE IF EXISTS temp.gg")
                        .await?;
                    conn.execute_unprepared(&generate).await
                })
                .unwrap();
                let t = Instant::now();
                rt.block_on(async {
                    let txn = conn.begin().await?;
                    for sql in &inserts {
                        let done = txn.execute_unprepared(sql).await?;
                        assert_eq!(done.rows_affected(), n as u64);
                    }
                    txn.commit().await
                })
                .unwrap();
                total += t.elapsed();
                rt.block_on(conn.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)"))
                    .unwrap();
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
    bench_sqlite_floor(c, &rt, &url);
    // Deleting the SQLite file (GBs by now) drops its dirty pages, which the kernel would
    // otherwise be writing back while PostgreSQL is measured.
    drop(dir);

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
