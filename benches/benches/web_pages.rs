//! The web archive's pages under a large archive: `cargo bench -p chatvault-benches --bench web_pages`.
//!
//! Loads `CHATVAULT_BENCH_N` synthetic messages (default 100,000; 100 channels, a quarter
//! private) through the real write path (SQLite metadata, the relay, the vector store with its
//! graph built), plus one public channel holding exactly 500 messages on one day (threads and
//! reactions among them). Then serves `chatvault_server::router` on 127.0.0.1 and requests, one
//! after another, `CHATVAULT_BENCH_REPS` times each (default 100):
//!
//! - the 500-message day of that channel;
//! - the search page for two words of the vocabulary (20 hits, hybrid);
//! - the workspace's home page (100 channels with counts and last days, 200 people);
//! - a thread page (a parent and its reply).
//!
//! It prints p50/p99/max per page — measured at the client over loopback HTTP, so the figures
//! include the HTTP round trip (a fraction of a millisecond) besides rendering — each page's
//! weight (HTML, CSS and JS bytes), and where the server's time went: the handler's fetch and
//! render times from the page's `Server-Timing` header, p50 and the fastest of the run (which
//! depends least on what else the machine is doing). The load average is printed before and
//! after, since the figures mean little without it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatvault_benches::preload::{preload, Preloaded};
use chatvault_benches::{env_usize, user, workspace, Vocabulary, USERS};
use chatvault_core::{
    Channel, ChannelId, ChannelKind, ContentAttributes, Embedder, HashingEmbedder, MessageContent,
    MessageKey, MessageMeta, MessageRecord, Reaction, Ts, WorkspaceId, WriteBatch,
};
use chatvault_server::{AppState, ServerConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The day of the 500-message channel: 2024-03-01 (after every synthetic message).
const DAY: &str = "2024-03-01";
const DAY_START_SECS: i64 = 1_709_251_200;
const DAY_MESSAGES: usize = 500;

/// 500 messages in one public channel on one day: one in eight a reply to the message before
/// its thread started, one in four with reactions.
fn day_batch(ws: &WorkspaceId, vocab: &Vocabulary) -> WriteBatch {
    let mut batch = WriteBatch::new(ws.clone());
    let ch = ChannelId::new("CDAY500").expect("a valid channel id");
    batch
        .channels
        .push(Channel::new(ch.clone(), "day-500", ChannelKind::Public));
    let mut rng = StdRng::seed_from_u64(500);
    let mut parent: Option<Ts> = None;
    for i in 0..DAY_MESSAGES {
        let ts = Ts::from_micros((DAY_START_SECS + 150 * i as i64) * 1_000_000 + 100);
        let key = MessageKey::new(ws.clone(), ch.clone(), ts.clone());
        let mut meta = MessageMeta::new(key.clone());
        meta.user = Some(user(rng.random_range(0..USERS)));
        if i % 8 == 7 {
            meta.thread_ts = parent.clone();
        } else if i % 8 == 0 {
            parent = Some(ts.clone());
            meta.thread_ts = Some(ts.clone());
            meta.reply_count = 1;
        }
        let reactions = if i % 4 == 0 {
            rng.random_range(1..6)
        } else {
            0
        };
        meta.reaction_count = reactions;
        meta.has_reactions = reactions > 0;
        let words = rng.random_range(5..40);
        let text = format!(
            "{} *{}* `{}` :tada:",
            vocab.phrase(&mut rng, words),
            vocab.word(&mut rng),
            vocab.word(&mut rng)
        );
        batch.messages.push(MessageRecord {
            reactions: if reactions > 0 {
                vec![Reaction {
                    name: "+1".into(),
                    users: vec![user(i % USERS)],
                    count: reactions,
                }]
            } else {
                Vec::new()
            },
            links: Vec::new(),
            files: Vec::new(),
            content: Some(MessageContent {
                context: Default::default(),
                key,
                attributes: ContentAttributes::from_meta(&meta, ChannelKind::Public),
                text,
            }),
            meta,
        });
    }
    batch
}

async fn load(dir: &std::path::Path, n: usize) -> Fallible<(String, String)> {
    let embedder: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(384)?);
    let day = day_batch(&workspace(), &Vocabulary::new(1));
    let Preloaded {
        meta,
        content,
        vocab,
        ..
    } = preload(dir, "web_pages", n, embedder.clone(), vec![day]).await?;
    let mut rng = StdRng::seed_from_u64(7);
    let query = format!("{} {}", vocab.word(&mut rng), vocab.word(&mut rng));
    let state = AppState::new(
        meta,
        content,
        embedder,
        ServerConfig {
            relay: None,
            ..ServerConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(chatvault_server::serve(
        listener,
        state,
        std::future::pending::<()>(),
    ));
    Ok((url, query))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One page's run: client-side times (sorted), the body's size, and the server's fetch and
/// render times (each sorted).
struct Run {
    times: Vec<Duration>,
    bytes: usize,
    fetch: Vec<f64>,
    render: Vec<f64>,
}

/// `fetch;dur=1.2, render;dur=3.4` → (1.2, 3.4).
fn server_timing(resp: &reqwest::Response) -> Option<(f64, f64)> {
    let v = resp.headers().get("server-timing")?.to_str().ok()?;
    let dur = |name: &str| -> Option<f64> {
        v.split(',')
            .map(str::trim)
            .find(|p| p.starts_with(name))?
            .split_once("dur=")?
            .1
            .parse()
            .ok()
    };
    Some((dur("fetch;")?, dur("render;")?))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

async fn measure(http: &reqwest::Client, url: &str, reps: usize) -> Fallible<Run> {
    let mut times = Vec::with_capacity(reps);
    let mut bytes = 0;
    let (mut fetch, mut render) = (Vec::new(), Vec::new());
    // One warm-up request fills caches as a running server's would be.
    let warm = http.get(url).send().await?;
    if !warm.status().is_success() {
        return Err(format!("{url}: {}", warm.status()).into());
    }
    let _ = warm.bytes().await?;
    for _ in 0..reps {
        let t = Instant::now();
        let resp = http.get(url).send().await?;
        let split = server_timing(&resp);
        let body = resp.bytes().await?;
        times.push(t.elapsed());
        bytes = body.len();
        if let Some((f, r)) = split {
            fetch.push(f);
            render.push(r);
        }
    }
    times.sort();
    fetch.sort_by(f64::total_cmp);
    render.sort_by(f64::total_cmp);
    Ok(Run {
        times,
        bytes,
        fetch,
        render,
    })
}

/// p50 and min of server-side milliseconds, or dashes.
fn split(v: &[f64]) -> (String, String) {
    match v.first() {
        Some(min) => (format!("{:.2}", v[v.len() / 2]), format!("{min:.2}")),
        None => ("-".into(), "-".into()),
    }
}

fn main() -> Fallible<()> {
    let n = env_usize("CHATVAULT_BENCH_N", 100_000);
    let reps = env_usize("CHATVAULT_BENCH_REPS", 100).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let dir = tempfile::tempdir()?;
        let (base, query) = load(dir.path(), n).await?;
        let http = reqwest::Client::new();
        let ws = workspace();
        let page_html = http
            .get(format!("{base}/w/{ws}/"))
            .send()
            .await?
            .text()
            .await?;
        let asset = |kind: &str| -> Option<String> {
            let marker = if kind == "css" {
                "href=\"/static/app.css"
            } else {
                "src=\"/static/app.js"
            };
            let start = page_html.find(marker)? + marker.find('/')?;
            let rest = &page_html[start..];
            Some(rest[..rest.find('"')?].replace("&amp;", "&"))
        };
        let mut asset_bytes = 0;
        for kind in ["css", "js"] {
            let path = asset(kind).ok_or("the page links no stylesheet or script")?;
            let bytes = http
                .get(format!("{base}{path}"))
                .send()
                .await?
                .bytes()
                .await?
                .len();
            println!("asset {kind}: {bytes} bytes");
            asset_bytes += bytes;
        }
        let q = query.replace(' ', "+");
        let thread_ts = Ts::from_micros(DAY_START_SECS * 1_000_000 + 100);
        println!("load average before: {}", load_average());
        println!(
            "{:<30} {:>8} {:>8} {:>8} {:>9} {:>10} | {:>9} {:>9} {:>10} {:>10}",
            "page",
            "p50 ms",
            "p99 ms",
            "max ms",
            "HTML B",
            "+CSS+JS B",
            "fetch p50",
            "fetch min",
            "render p50",
            "render min"
        );
        for (name, path) in [
            (
                "channel day (500 messages)",
                format!("/w/{ws}/c/day-500/{DAY}"),
            ),
            ("search (20 hits, hybrid)", format!("/w/{ws}/search?q={q}")),
            ("home (100 ch., 200 people)", format!("/w/{ws}/")),
            (
                "thread (parent + reply)",
                format!("/w/{ws}/t/CDAY500/{}", thread_ts.as_str()),
            ),
        ] {
            let run = measure(&http, &format!("{base}{path}"), reps).await?;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let (fetch50, fetch_min) = split(&run.fetch);
            let (render50, render_min) = split(&run.render);
            println!(
                "{:<30} {:>8.2} {:>8.2} {:>8.2} {:>9} {:>10} | {:>9} {:>9} {:>10} {:>10}",
                name,
                ms(percentile(&run.times, 0.5)),
                ms(percentile(&run.times, 0.99)),
                ms(run.times.last().copied().unwrap_or_default()),
                run.bytes,
                run.bytes + asset_bytes,
                fetch50,
                fetch_min,
                render50,
                render_min
            );
        }
        println!("load average after: {}", load_average());
        println!(
            "({reps} requests per page, one at a time; p50/p99/max at the client over loopback; \
             fetch/render: the handler's Server-Timing, ms)"
        );
        Ok(())
    })
}
