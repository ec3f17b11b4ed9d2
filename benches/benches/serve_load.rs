//! The service under load: `cargo bench -p chatvault-benches --bench serve_load`.
//!
//! Starts `chatvault_server::serve` in-process on 127.0.0.1:0 over the embedded default (SQLite +
//! vector store) preloaded with `CHATVAULT_BENCH_N` synthetic messages (default 5,000; the
//! service-sized run is `CHATVAULT_BENCH_N=100000`), relay running. The server embeds with
//! `CHATVAULT_BENCH_EMBEDDER`: `hashing` (default, the built-in 384-d hashing embedder) or
//! `minilm` (all-MiniLM-L6-v2 from `CHATVAULT_MODEL_DIR`: every event and every query is embedded
//! by the model). Then, for 1, 8 and 32 concurrent search clients in turn, for
//! `CHATVAULT_BENCH_SECS` seconds each (default 10):
//!
//! - streams Slack message events, signed as Slack signs them (`v0=` HMAC-SHA256 over
//!   `v0:{timestamp}:{body}`), to `POST /slack/events` at `CHATVAULT_BENCH_RATE` events/s
//!   (default 50);
//! - each client runs hybrid searches back to back over HTTP
//!   (`GET /api/v1/workspaces/{ws}/search?q=…`, anonymous: public channels), timing each request
//!   from send to the parsed JSON body;
//! - a probe takes the latest accepted event every 250 ms and times how long until the relay has
//!   delivered it to the content store (relay lag).
//!
//! With `minilm`, the preloaded messages' vectors are made by the hashing embedder under the
//! model's name (embedding 100,000 texts with the model would take 10 minutes on 2 cores before
//! the bench starts): searches then pay the model's query embedding and walk a graph of the same
//! size, but over vectors that are not the model's, so result quality means nothing here. The
//! load generator runs in the same process (and on the same 2 cores) as the server.
//!
//! It prints events/s sustained (accepted by the server), relay lag p50/max, and search
//! throughput with p50/p99 latency per concurrency. When the server does not serve
//! `POST /slack/events` (404), the events columns say so instead of showing numbers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatvault_benches::preload::{self, bench_embedders, Preloaded};
use chatvault_benches::{channel, env_usize, user, Vocabulary, CHANNELS, PRIVATE_CHANNELS, USERS};
use chatvault_collector::RelayOptions;
use chatvault_core::{ContentStore, MessageKey, SecretString, Ts, WorkspaceId};
use chatvault_server::{serve, AppState, ServerConfig};
use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::Sha256;

const SIGNING_SECRET: &str = "serve-load-bench-signing-secret";
/// Every search client asks for this many hits.
const SEARCH_LIMIT: usize = 10;
const MAX_IN_FLIGHT: usize = 64;
/// Event timestamps start here, after every preloaded message (2027-01-15).
const EVENT_START_SECS: i64 = 1_800_000_000;

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Slack's request signature: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`.
fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body.as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

struct Bench {
    ws: WorkspaceId,
    content: Arc<dyn ContentStore>,
    url: String,
    search_url: String,
    http: reqwest::Client,
    vocab: Vocabulary,
    /// Events generated so far (their index makes each ts unique).
    next_event: AtomicU64,
    /// Set when the server answers 404: it has no events endpoint.
    events_missing: AtomicBool,
}

/// One phase's counts.
#[derive(Default)]
struct EventStats {
    accepted: AtomicU64,
    failed: AtomicU64,
    /// The latest accepted event: its key and when it was sent.
    latest: Mutex<Option<(MessageKey, Instant)>>,
}

async fn preload(
    n: usize,
) -> Fallible<(tempfile::TempDir, Bench, tokio::sync::oneshot::Sender<()>)> {
    let dir = tempfile::tempdir()?;
    let embedders = bench_embedders()?;
    eprintln!("serve_load: the server embeds with {}", embedders.name);
    let Preloaded {
        ws,
        meta,
        content,
        vocab,
    } = preload::preload(dir.path(), "serve_load", n, embedders.preload, Vec::new()).await?;

    let config = ServerConfig {
        signing_secret: Some(SecretString::new(SIGNING_SECRET)),
        relay: Some(RelayOptions::default()),
        ..ServerConfig::default()
    };
    let state = AppState::new(meta, content.clone(), embedders.query, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let url = format!("{base}/slack/events");
    let search_url = format!("{base}/api/v1/workspaces/{ws}/search");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Ok((
        dir,
        Bench {
            ws,
            content,
            url,
            search_url,
            http: reqwest::Client::new(),
            vocab,
            next_event: AtomicU64::new(0),
            events_missing: AtomicBool::new(false),
        },
        stop,
    ))
}

impl Bench {
    /// A message event in a public channel, as Slack sends it.
    fn event(&self, i: u64) -> (MessageKey, String) {
        let mut rng = StdRng::seed_from_u64(1_000_000_000 + i);
        let c = PRIVATE_CHANNELS + (i as usize % (CHANNELS - PRIVATE_CHANNELS));
        let ts = format!("{}.{:06}", EVENT_START_SECS + (i / 1000) as i64, i % 1000);
        let words = rng.random_range(5..30);
        let body = serde_json::json!({
            "type": "event_callback",
            "team_id": self.ws.as_str(),
            "event_id": format!("EvLoad{i}"),
            "event_time": EVENT_START_SECS,
            "event": {
                "type": "message", "channel": channel(c).as_str(), "channel_type": "channel",
                "user": user(rng.random_range(0..USERS)).as_str(), "ts": ts,
                "text": self.vocab.phrase(&mut rng, words),
            }
        })
        .to_string();
        let key = MessageKey::new(
            self.ws.clone(),
            channel(c),
            Ts::new(&ts).expect("the bench's timestamps are valid"),
        );
        (key, body)
    }

    async fn send_event(&self, stats: &EventStats) {
        let i = self.next_event.fetch_add(1, Ordering::Relaxed);
        let (key, body) = self.event(i);
        let timestamp = chrono::Utc::now().timestamp();
        let sent = Instant::now();
        let answer = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header("x-slack-signature", sign(SIGNING_SECRET, timestamp, &body))
            .body(body)
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                let mut latest = stats.latest.lock().expect("not poisoned");
                if latest.as_ref().is_none_or(|(_, at)| *at < sent) {
                    *latest = Some((key, sent));
                }
            }
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                self.events_missing.store(true, Ordering::Relaxed);
            }
            _ => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends events at `rate` per second until `until`.
    async fn stream_events(self: &Arc<Self>, rate: usize, until: Instant, stats: Arc<EventStats>) {
        let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
        let mut tick = tokio::time::interval(period);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        while Instant::now() < until && !self.events_missing.load(Ordering::Relaxed) {
            tick.tick().await;
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let (me, stats) = (Arc::clone(self), Arc::clone(&stats));
            tasks.spawn(async move {
                me.send_event(&stats).await;
                drop(slot);
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Every 250 ms, times how long the latest accepted event takes to reach the content store.
    async fn probe_lag(&self, until: Instant, stats: &EventStats) -> Vec<Duration> {
        let mut lags = Vec::new();
        let mut last: Option<MessageKey> = None;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let latest = stats.latest.lock().expect("not poisoned").clone();
            let Some((key, sent)) = latest else { continue };
            if last.as_ref() == Some(&key) {
                continue;
            }
            let give_up = Instant::now() + Duration::from_secs(60);
            while Instant::now() < give_up {
                match self.content.get(&self.ws, std::slice::from_ref(&key)).await {
                    Ok(docs) if !docs.is_empty() => {
                        lags.push(sent.elapsed());
                        break;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            last = Some(key);
        }
        lags
    }

    /// Searches back to back over HTTP until `until`; returns each search's latency (request
    /// sent to JSON body parsed).
    async fn search_loop(
        &self,
        client: usize,
        until: Instant,
    ) -> Fallible<(Vec<Duration>, Timings)> {
        let mut rng = StdRng::seed_from_u64(7_000u64.wrapping_add(client as u64));
        let http = reqwest::Client::new();
        let mut latencies = Vec::new();
        let mut timings = Timings::default();
        while Instant::now() < until {
            let query = self.vocab.phrase(&mut rng, 2);
            let started = Instant::now();
            let response = http
                .get(&self.search_url)
                .query(&[("q", query.as_str()), ("limit", &SEARCH_LIMIT.to_string())])
                .send()
                .await?;
            let status = response.status();
            let body: serde_json::Value = response.json().await?;
            if !status.is_success() {
                return Err(format!("search answered {status}: {body}").into());
            }
            latencies.push(started.elapsed());
            timings.add(&body["timings"]);
        }
        Ok((latencies, timings))
    }
}

/// Sums of the engine's own timings (`SearchResponse::timings`), to tell the search's work from
/// HTTP, JSON and waiting for a core.
#[derive(Default)]
struct Timings {
    n: u64,
    sums: [u64; 6],
}

const TIMING_FIELDS: [&str; 6] = [
    "metadata_us",
    "embed_us",
    "semantic_us",
    "lexical_us",
    "enrich_us",
    "total_us",
];

impl Timings {
    fn add(&mut self, t: &serde_json::Value) {
        self.n += 1;
        for (sum, field) in self.sums.iter_mut().zip(TIMING_FIELDS) {
            *sum += t[field].as_u64().unwrap_or(0);
        }
    }

    fn merge(&mut self, other: &Timings) {
        self.n += other.n;
        for (a, b) in self.sums.iter_mut().zip(other.sums) {
            *a += b;
        }
    }

    /// `metadata 0.4 / embed 3.1 / … ms` (means).
    fn summary(&self) -> String {
        let n = self.n.max(1) as f64;
        TIMING_FIELDS
            .iter()
            .zip(self.sums)
            .map(|(f, s)| format!("{} {:.2}", f.trim_end_matches("_us"), s as f64 / n / 1e3))
            .collect::<Vec<_>>()
            .join(" / ")
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn phase(bench: &Arc<Bench>, clients: usize, rate: usize, secs: u64) -> Fallible<()> {
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let stats = Arc::new(EventStats::default());
    let events = {
        let (bench, stats) = (Arc::clone(bench), Arc::clone(&stats));
        tokio::spawn(async move { bench.stream_events(rate, until, stats).await })
    };
    let lag = {
        let (bench, stats) = (Arc::clone(bench), Arc::clone(&stats));
        tokio::spawn(async move { bench.probe_lag(until, &stats).await })
    };
    let mut searchers = tokio::task::JoinSet::new();
    for client in 0..clients {
        let bench = Arc::clone(bench);
        searchers.spawn(async move { bench.search_loop(client, until).await });
    }
    let mut latencies = Vec::new();
    let mut timings = Timings::default();
    while let Some(done) = searchers.join_next().await {
        let (l, t) = done??;
        latencies.extend(l);
        timings.merge(&t);
    }
    events.await?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut lags = lag.await?;
    latencies.sort();
    lags.sort();

    let events_column = if bench.events_missing.load(Ordering::Relaxed) {
        "n/a: POST /slack/events answered 404 (no events endpoint in this build)".to_string()
    } else {
        let accepted = stats.accepted.load(Ordering::Relaxed);
        let failed = stats.failed.load(Ordering::Relaxed);
        let lag_column = if lags.is_empty() {
            "no lag sample".to_string()
        } else {
            format!(
                "relay lag p50 {:.0} ms, max {:.0} ms ({} samples)",
                ms(percentile(&lags, 0.5)),
                ms(lags[lags.len() - 1]),
                lags.len()
            )
        };
        format!(
            "{:.1} events/s sustained (target {rate}, {failed} failed), {lag_column}",
            accepted as f64 / elapsed
        )
    };
    println!(
        "serve_load clients={clients:>2}: search {:.1} q/s p50 {:.2} ms p99 {:.2} ms ({} searches); events {events_column}",
        latencies.len() as f64 / elapsed,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        latencies.len(),
    );
    println!("  in the engine, mean ms: {}", timings.summary());
    Ok(())
}

fn main() -> Fallible<()> {
    // `cargo bench` passes `--bench`; filters are not supported by this harness-less bench.
    let n = env_usize("CHATVAULT_BENCH_N", 5_000);
    let rate = env_usize("CHATVAULT_BENCH_RATE", 50);
    let secs = env_usize("CHATVAULT_BENCH_SECS", 10) as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (_dir, bench, stop) = preload(n).await?;
        let bench = Arc::new(bench);
        // The API's first search loads the scope and warms the caches: not part of any row.
        bench
            .search_loop(usize::MAX, Instant::now() + Duration::from_secs(1))
            .await?;
        println!("serve_load: {n} messages preloaded; {rate} events/s target, {secs} s per row");
        for clients in [1, 8, 32] {
            phase(&bench, clients, rate, secs).await?;
        }
        let _ = stop.send(());
        Ok(())
    })
}
