//! Hybrid-search latency (p50, p99) with and without filters on a seeded synthetic workspace.
//!
//! Stores: the embedded default, as a user gets it — the SQL metadata store on a SQLite file and
//! the content store (`chatvault-storage-vector`: tantivy + HNSW), both in a temporary directory
//! (`CHATVAULT_BENCH_METADATA=memory` swaps in the in-memory reference metadata store,
//! `CHATVAULT_BENCH_DATABASE_URL=postgres://…` a PostgreSQL database). Documents and queries are
//! embedded with the 384-d hashing embedder, so the search figures are the engine's and the
//! stores' time; the real model's query-embedding time (all-MiniLM-L6-v2, from
//! `CHATVAULT_MODEL_DIR`, over the labelled questions of `testdata/qa.json`) is measured and
//! reported separately, to be added on top.
//!
//! `CHATVAULT_BENCH_MESSAGES` (default 20000; the figure is 100000) and
//! `CHATVAULT_BENCH_QUERIES` (default 200 per configuration) scale it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatvault_core::testing::MemoryMetadataStore;
use chatvault_core::{
    Channel, ChannelId, ChannelKind, CollectionSpec, ContentAttributes, ContentDocument,
    ContentStore, Embedder, HashingEmbedder, Link, LinkSource, MembershipChange, MessageContent,
    MessageKey, MessageMeta, MessageRecord, MetadataStore, Reaction, TimeRange, Ts, User, UserId,
    Workspace, WorkspaceId, WriteBatch,
};
use chatvault_query::{QueryEngine, Scope, SearchFilter, SearchMode, SearchRequest};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CHANNELS: usize = 20;
const PRIVATE: usize = 5;
const USERS: usize = 200;
const VOCAB: usize = 3000;
const START: i64 = 1_672_531_200; // 2023-01-01

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vocabulary(rng: &mut StdRng) -> Vec<String> {
    const SYL: &[&str] = &[
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "de", "pa", "zu", "fe", "gri", "tor",
        "len", "bar", "qui", "mon", "sel", "dra",
    ];
    (0..VOCAB)
        .map(|_| {
            let n = rng.random_range(2..=4);
            (0..n)
                .map(|_| SYL[rng.random_range(0..SYL.len())])
                .collect()
        })
        .collect()
}

/// A word index with a Zipf-like skew: common words are common.
fn word(rng: &mut StdRng) -> usize {
    let u: f64 = rng.random_range(0.0..1.0);
    ((VOCAB as f64).powf(u) as usize)
        .saturating_sub(1)
        .min(VOCAB - 1)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> chatvault_core::Result<()> {
    let n = env_usize("CHATVAULT_BENCH_MESSAGES", 20_000);
    let queries = env_usize("CHATVAULT_BENCH_QUERIES", 200);
    let mut rng = StdRng::seed_from_u64(42);
    let vocab = vocabulary(&mut rng);
    let dir = tempfile::tempdir().map_err(|e| chatvault_core::Error::unavailable(e.to_string()))?;
    let store = VectorStore::open(dir.path().join("vectors"), VectorStoreOptions::default())?;
    let meta: Arc<dyn MetadataStore> = match (
        std::env::var("CHATVAULT_BENCH_METADATA").as_deref(),
        std::env::var("CHATVAULT_BENCH_DATABASE_URL"),
    ) {
        (Ok("memory"), _) => Arc::new(MemoryMetadataStore::new()),
        (_, Ok(url)) => Arc::new(SqlMetadataStore::connect(&url, ConnectOptions::default()).await?),
        _ => {
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("chatvault.sqlite").display()
            );
            Arc::new(SqlMetadataStore::connect(&url, ConnectOptions::default()).await?)
        }
    };
    println!("metadata store: {meta:?}");
    let content: Arc<dyn ContentStore> = Arc::new(store.clone());
    let embedder = Arc::new(HashingEmbedder::new(384)?);
    let ws = WorkspaceId::new("TBENCH")?;
    let mut w = Workspace::new(ws.clone(), "bench");
    w.domain = Some("bench".into());
    meta.upsert_workspace(&w).await?;
    content
        .create_collection(
            &ws,
            &CollectionSpec {
                dimension: 384,
                model_id: embedder.model_id().to_string(),
            },
        )
        .await?;

    let uid = |u: usize| UserId::new(format!("U{u:04}")).expect("valid user id");
    let cid = |c: usize| ChannelId::new(format!("C{c:03}")).expect("valid channel id");
    let mut batch = WriteBatch::new(ws.clone());
    batch.users = (0..USERS)
        .map(|u| User::new(uid(u), format!("user{u}")))
        .collect();
    for c in 0..CHANNELS {
        let kind = if c < PRIVATE {
            ChannelKind::Private
        } else {
            ChannelKind::Public
        };
        batch
            .channels
            .push(Channel::new(cid(c), format!("channel-{c}"), kind));
        let members: Vec<UserId> = (0..USERS).filter(|u| (u + c) % 3 == 0).map(uid).collect();
        batch.memberships.push(MembershipChange::Replace {
            channel: cid(c),
            users: members,
        });
    }
    meta.apply(batch).await?;

    // ---- ingest ----
    let t = Instant::now();
    let span = 365 * 86_400i64;
    let mut parents: Vec<(usize, Ts)> = Vec::new();
    let mut first_key: Option<MessageKey> = None;
    let chunk = 5000;
    let mut i = 0;
    while i < n {
        let mut batch = WriteBatch::new(ws.clone());
        let mut contents = Vec::new();
        for j in i..(i + chunk).min(n) {
            let c = rng.random_range(0..CHANNELS);
            let secs = START + (j as i64 * span / n as i64);
            let ts = Ts::from_micros(secs * 1_000_000 + (j % 1_000_000) as i64);
            let key = MessageKey::new(ws.clone(), cid(c), ts.clone());
            first_key.get_or_insert_with(|| key.clone());
            let mut m = MessageMeta::new(key.clone());
            m.user = Some(uid(rng.random_range(0..USERS)));
            if !parents.is_empty() && rng.random_bool(0.1) {
                let (pc, pts) = parents
                    [rng.random_range(parents.len().saturating_sub(50)..parents.len())]
                .clone();
                if pc == c {
                    m.thread_ts = Some(pts);
                }
            } else if rng.random_bool(0.05) {
                parents.push((c, ts.clone()));
            }
            let reactions = if rng.random_bool(0.2) {
                rng.random_range(1..8)
            } else {
                0
            };
            m.reaction_count = reactions;
            m.has_reactions = reactions > 0;
            let words: Vec<&str> = (0..rng.random_range(5..30))
                .map(|_| vocab[word(&mut rng)].as_str())
                .collect();
            let mut text = words.join(" ");
            let mut links = Vec::new();
            if rng.random_bool(0.05) {
                let url = format!(
                    "https://github.com/acme/app/pull/{}",
                    rng.random_range(1..500)
                );
                text.push(' ');
                text.push_str(&url);
                links.extend(Link::parse(&url, LinkSource::Text));
            }
            m.link_count = links.len() as u32;
            let kind = if c < PRIVATE {
                ChannelKind::Private
            } else {
                ChannelKind::Public
            };
            let mc = MessageContent {
                context: Default::default(),
                key: key.clone(),
                text,
                attributes: ContentAttributes::from_meta(&m, kind),
            };
            contents.push(mc.clone());
            batch.messages.push(MessageRecord {
                reactions: if reactions > 0 {
                    vec![Reaction {
                        name: "tada".into(),
                        users: Vec::new(),
                        count: reactions,
                    }]
                } else {
                    Vec::new()
                },
                links,
                files: Vec::new(),
                content: Some(mc),
                meta: m,
            });
        }
        meta.apply(batch).await?;
        // Indexed as the relay indexes it: the author's name with the text.
        for c in &mut contents {
            c.context.author = c.attributes.user.as_ref().map(|u| {
                let n: usize = u.as_str()[1..].parse().expect("a bench user id");
                format!("user{n}")
            });
        }
        let texts: Vec<String> = contents
            .iter()
            .map(|c| c.index_text().into_owned())
            .collect();
        let vectors = embedder.embed(&texts).await?;
        let docs: Vec<ContentDocument> = contents
            .into_iter()
            .zip(vectors)
            .map(|(content, embedding)| ContentDocument {
                content,
                embedding,
                version: 1,
            })
            .collect();
        content.upsert(&ws, &docs).await?;
        i += chunk;
    }
    // The content above is what the outbox carries: acknowledge it as a relay that delivered it
    // would, so the workspace's outbox is empty (the steady state of a caught-up relay).
    loop {
        let claimed = meta
            .claim_outbox(&chatvault_core::ClaimRequest {
                workspace: Some(ws.clone()),
                limit: 10_000,
                ..chatvault_core::ClaimRequest::default()
            })
            .await?;
        if claimed.is_empty() {
            break;
        }
        let ids: Vec<_> = claimed.iter().map(|e| e.id).collect();
        meta.ack_outbox(&ids).await?;
    }
    let first_key = first_key.ok_or_else(|| chatvault_core::Error::invalid_input("no messages"))?;
    let ingest = t.elapsed();
    let t = Instant::now();
    {
        let store = store.clone();
        let ws = ws.clone();
        tokio::task::spawn_blocking(move || store.wait_for_graph(&ws))
            .await
            .map_err(|e| chatvault_core::Error::backend_error(e.to_string()))??;
    }
    println!(
        "ingested {n} messages in {:.1} s (metadata + hashing embeddings + content), graph built in {:.1} s more",
        ingest.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );

    let engine = QueryEngine::new(meta.clone(), content.clone(), embedder.clone())
        .with_fusion(chatvault_query::FusionConfig::default())?;
    let query_texts: Vec<String> = (0..queries)
        .map(|_| {
            (0..rng.random_range(1..=3))
                .map(|_| vocab[word(&mut rng)].clone())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let mid = chrono::DateTime::from_timestamp(START + span / 4, 0).unwrap_or_default();
    let end = chrono::DateTime::from_timestamp(START + span * 3 / 4, 0).unwrap_or_default();
    let configs: Vec<(&str, SearchMode, Scope, SearchFilter)> = vec![
        (
            "hybrid, no filter, admin scope",
            SearchMode::Hybrid,
            Scope::Admin,
            SearchFilter::default(),
        ),
        (
            "hybrid, no filter, user scope",
            SearchMode::Hybrid,
            Scope::User(uid(3)),
            SearchFilter::default(),
        ),
        (
            "hybrid, channels + time + top-level filter (pushed down)",
            SearchMode::Hybrid,
            Scope::User(uid(3)),
            SearchFilter {
                channels: Some((5..12).map(cid).collect()),
                time: TimeRange::between(mid, end),
                thread: Some(chatvault_query::ThreadPart::TopLevel),
                ..SearchFilter::default()
            },
        ),
        (
            "hybrid, min_reactions >= 5 (all delivered: pushed down)",
            SearchMode::Hybrid,
            Scope::User(uid(3)),
            SearchFilter {
                min_reactions: Some(5),
                ..SearchFilter::default()
            },
        ),
        (
            "lexical only, no filter",
            SearchMode::Lexical,
            Scope::Admin,
            SearchFilter::default(),
        ),
        (
            "semantic only, no filter",
            SearchMode::Semantic,
            Scope::Admin,
            SearchFilter::default(),
        ),
        (
            PENDING_LABEL,
            SearchMode::Hybrid,
            Scope::User(uid(3)),
            SearchFilter {
                min_reactions: Some(5),
                ..SearchFilter::default()
            },
        ),
    ];
    println!("{queries} queries per configuration, limit 10, {n} messages");
    for (label, mode, scope, filter) in configs {
        if label == PENDING_LABEL {
            // one reaction change the content store has not been told about yet
            let mut batch = WriteBatch::new(ws.clone());
            batch.reaction_changes.push(chatvault_core::ReactionChange {
                key: first_key.clone(),
                name: "eyes".into(),
                user: uid(1),
                added: true,
            });
            meta.apply(batch).await?;
        }
        // warm-up
        for q in query_texts.iter().take(10) {
            engine
                .search(
                    &ws,
                    SearchRequest::new(q.clone())
                        .mode(mode)
                        .scope(scope.clone())
                        .filter(filter.clone()),
                )
                .await?;
        }
        let mut lat = Vec::with_capacity(queries);
        let mut embed = Vec::with_capacity(queries);
        let mut cands = 0usize;
        let mut parts = [0u64; 4];
        for q in &query_texts {
            let t = Instant::now();
            let r = engine
                .search(
                    &ws,
                    SearchRequest::new(q.clone())
                        .mode(mode)
                        .scope(scope.clone())
                        .filter(filter.clone()),
                )
                .await?;
            lat.push(t.elapsed());
            embed.push(Duration::from_micros(r.timings.embed_us));
            cands = r.candidates.unwrap_or(0);
            parts[0] += r.timings.metadata_us;
            parts[1] += r.timings.lexical_us;
            parts[2] += r.timings.semantic_us;
            parts[3] += r.timings.enrich_us;
        }
        lat.sort();
        embed.sort();
        println!(
            "{label:<58} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  (query embedding p50 {:.3} ms; candidates {})",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(*lat.last().unwrap_or(&Duration::ZERO)),
            ms(percentile(&embed, 0.5)),
            cands
        );
        let q = queries.max(1) as f64 * 1000.0;
        println!(
            "{:<58} mean: scope+metadata {:.2} ms, lexical {:.2} ms, semantic {:.2} ms, enrich {:.2} ms",
            "",
            parts[0] as f64 / q,
            parts[1] as f64 / q,
            parts[2] as f64 / q,
            parts[3] as f64 / q
        );
    }
    real_query_embedding();
    Ok(())
}

const PENDING_LABEL: &str = "hybrid, min_reactions >= 5 (1 change undelivered: pushed down)";

/// The real model's query-embedding latency over the labelled questions, one at a time (as a
/// search embeds its query), on the calling thread.
fn real_query_embedding() {
    let embedder = match chatvault_embed::MiniLmEmbedder::from_env() {
        Ok(e) => e,
        Err(e) => {
            println!("\nreal query embedding: skipped ({e})");
            return;
        }
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/qa.json");
    let qa: serde_json::Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let questions: Vec<String> = qa["questions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|q| q["question"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if questions.is_empty() {
        println!(
            "\nreal query embedding: skipped (no questions in {})",
            path.display()
        );
        return;
    }
    for q in &questions {
        let _ = embedder.embed_blocking(std::slice::from_ref(q));
    }
    let mut lat = Vec::new();
    for _ in 0..5 {
        for q in &questions {
            let t = Instant::now();
            if embedder.embed_blocking(std::slice::from_ref(q)).is_err() {
                println!("\nreal query embedding: the model failed on {q:?}");
                return;
            }
            lat.push(t.elapsed());
        }
    }
    lat.sort();
    println!(
        "\nreal query embedding (all-MiniLM-L6-v2, {} questions x 5, one at a time): p50 {:.2} ms  p99 {:.2} ms  — add to the latencies above",
        questions.len(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
    );
}
