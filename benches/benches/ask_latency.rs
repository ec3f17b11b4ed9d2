//! Time from a question to the first answer token, the model excluded:
//! `cargo bench -p chatvault-benches --bench ask_latency`.
//!
//! Loads `CHATVAULT_BENCH_N` synthetic messages (default 100,000; 100 channels, a quarter
//! private) through the real write path (SQLite metadata, the relay, the vector store with its
//! graph built; the shared [`preload`]). Queries are embedded by `CHATVAULT_BENCH_EMBEDDER`
//! (`hashing`, default, or `minilm`; see [`bench_embedders`]). The language model is a fake
//! OpenAI-compatible server on 127.0.0.1 that streams its first token as soon as it is asked.
//!
//! Then it asks `CHATVAULT_BENCH_REPS` questions (default 200, after 5 unrecorded warm-up
//! questions), one after another, anonymously (public channels only, as a reader without a
//! token): each is the first eight words of a public message of the archive. Five passages with
//! two messages of context each, as `chatvault ask` and `POST /ask` default to. It times:
//!
//! - `retrieval`: `QueryEngine::ask` — embed the question, hybrid search within the reader's
//!   channels, read each passage's thread or neighbours, build the prompt;
//! - `first token, library`: `answer_grounded` with `HttpAnswerer` — the above, the relevance
//!   gate, the request to the model, until the first token reaches the caller;
//! - `model round trip (fake)`: `HttpAnswerer::answer_streaming` alone on a ready retrieval —
//!   the fake model's share of the line above (request, first chunk over loopback), to subtract;
//! - `first event, HTTP`: `POST /api/v1/workspaces/{ws}/ask` with `Accept: text/event-stream` to
//!   the server, until the first server-sent event reaches the client (a `token` event; an
//!   `answer` event instead when the relevance gate answered "not found" without the model —
//!   counted and shown).
//!
//! Run it small with `CHATVAULT_BENCH_N=2000 CHATVAULT_BENCH_REPS=20`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatvault_answer::testing::{FakeModel, Reply};
use chatvault_answer::{answer_grounded, HttpAnswerer, HttpAnswererConfig, RelevanceGate};
use chatvault_benches::preload::{bench_embedders, preload, Preloaded};
use chatvault_benches::{channel_kind, env_usize, message_batch, Vocabulary, CHANNELS};
use chatvault_core::{ChannelKind, WorkspaceId};
use chatvault_query::{Answerer, AskRequest, QueryEngine};
use chatvault_server::{AppState, ServerConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const WARM_UP: usize = 5;
const QUESTION_WORDS: usize = 8;

/// `count` questions: the first words of public messages of the archive, drawn at random.
fn questions(ws: &WorkspaceId, vocab: &Vocabulary, n: usize, count: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(2024);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let i = rng.random_range(0..n.max(1));
        if channel_kind(i % CHANNELS) != ChannelKind::Public {
            continue;
        }
        let batch = message_batch(ws, vocab, i, 1);
        let Some(text) = batch.messages[0].content.as_ref().map(|c| c.text.clone()) else {
            continue;
        };
        let words: Vec<&str> = text.split_whitespace().take(QUESTION_WORDS).collect();
        out.push(words.join(" "));
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut times: Vec<Duration>, note: &str) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{:<30} {:>9.2} {:>9.2} {:>9.2}  {}",
        name,
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times.last().copied().unwrap_or_default()),
        note
    );
}

/// The first token's time, recorded by an `on_token` callback.
#[derive(Default)]
struct FirstToken(Mutex<Option<Instant>>);

impl FirstToken {
    fn mark(&self) {
        let mut t = self.0.lock().expect("not poisoned");
        t.get_or_insert_with(Instant::now);
    }

    fn take(&self) -> Option<Instant> {
        self.0.lock().expect("not poisoned").take()
    }
}

/// Sends the question to the server's `/ask` as an event stream; the time to the first event
/// and whether it was a token.
async fn first_event(
    http: &reqwest::Client,
    url: &str,
    question: &str,
) -> Fallible<(Duration, bool)> {
    let started = Instant::now();
    let mut response = http
        .post(url)
        .header("accept", "text/event-stream")
        .json(&serde_json::json!({ "question": question }))
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(format!("{url}: {}", response.status()).into());
    }
    let mut seen = String::new();
    let mut first = None;
    while let Some(chunk) = response.chunk().await? {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if first.is_none() {
            if let Some(at) = seen.find("event: ") {
                let token = seen[at..].starts_with("event: token");
                first = Some((started.elapsed(), token));
            }
        }
    }
    first.ok_or_else(|| format!("{url}: the stream ended without an event").into())
}

fn main() -> Fallible<()> {
    let n = env_usize("CHATVAULT_BENCH_N", 100_000);
    let reps = env_usize("CHATVAULT_BENCH_REPS", 200).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let dir = tempfile::tempdir()?;
        let embedders = bench_embedders()?;
        eprintln!("ask_latency: questions are embedded by {}", embedders.name);
        let Preloaded {
            ws,
            meta,
            content,
            vocab,
        } = preload(dir.path(), "ask_latency", n, embedders.preload, Vec::new()).await?;
        let engine = QueryEngine::new(meta.clone(), content.clone(), embedders.query.clone());
        let questions = questions(&ws, &vocab, n, WARM_UP + reps);

        let model =
            FakeModel::always(Reply::answer(["The answer is in the archive [1]", "."])).await?;
        let answerer = Arc::new(HttpAnswerer::new(HttpAnswererConfig::new(
            model.url().parse()?,
            "fake",
        ))?);
        let state = AppState::new(
            meta,
            content,
            embedders.query,
            ServerConfig {
                relay: None,
                answerer: Some(answerer.clone() as Arc<dyn Answerer>),
                ..ServerConfig::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!(
            "http://{}/api/v1/workspaces/{ws}/ask",
            listener.local_addr()?
        );
        tokio::spawn(chatvault_server::serve(
            listener,
            state,
            std::future::pending::<()>(),
        ));
        let http = reqwest::Client::new();

        let (mut retrieval, mut library, mut model_only, mut over_http) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut not_found = 0;
        let first = Arc::new(FirstToken::default());
        let sink = first.clone();
        let on_token = move |_: &str| sink.mark();
        for (i, q) in questions.iter().enumerate() {
            let record = i >= WARM_UP;

            let t = Instant::now();
            let r = engine.ask(&ws, AskRequest::new(q.clone())).await?;
            let retrieved = t.elapsed();

            let t = Instant::now();
            answerer.answer_streaming(&r, &on_token).await?;
            let model_first = first.take().ok_or("the fake model sent no token")? - t;

            // The gate is open here: the library line always reaches the model.
            let t = Instant::now();
            answer_grounded(
                &engine,
                &ws,
                AskRequest::new(q.clone()),
                answerer.as_ref(),
                &RelevanceGate::OPEN,
                &on_token,
            )
            .await?;
            let library_first = first.take().ok_or("no token")? - t;

            let (http_first, token) = first_event(&http, &url, q).await?;
            if record {
                retrieval.push(retrieved);
                model_only.push(model_first);
                library.push(library_first);
                over_http.push(http_first);
                not_found += usize::from(!token);
            }
        }
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "ask_latency: {n} messages, {reps} questions, queries embedded by {}, load {}",
            embedders.name,
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!(
            "{:<30} {:>9} {:>9} {:>9}",
            "stage", "p50 ms", "p99 ms", "max ms"
        );
        report("retrieval (ask)", retrieval, "");
        report("first token, library", library, "");
        report("model round trip (fake)", model_only, "included above");
        report(
            "first event, HTTP /ask",
            over_http,
            &format!("{not_found} of {reps} answered \"not found\" by the gate"),
        );
        Ok(())
    })
}
