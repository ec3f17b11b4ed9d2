//! `HttpAnswerer` and grounded answers against a fake OpenAI-compatible server (axum on
//! 127.0.0.1): streaming and not, 429 then success, 500s, a timeout, a refused stream, bad
//! citations, no citations, and the nothing-relevant path that must not call the model. The
//! passages come from the bundled houstondatavis export, imported into the in-memory stores with
//! the hashing embedder.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatvault_answer::testing::{completion, FakeModel, Reply};
use chatvault_answer::{
    answer_grounded, GroundedAnswer, HttpAnswerer, HttpAnswererConfig, Outcome, RelevanceGate,
    NOT_FOUND,
};
use chatvault_collector::{Collector, ImportOptions, Relay, RelayOptions};
use chatvault_core::testing::{MemoryContentStore, MemoryMetadataStore};
use chatvault_core::{
    ContentStore, Embedder, ErrorKind, HashingEmbedder, MetadataStore, SecretString, WorkspaceId,
};
use chatvault_query::{AskRequest, QueryEngine, Retrieval, MAX_QUESTION_CHARS};
use serde_json::{json, Value};

const KEY: &str = "sk-test-0123456789-secret";

/// Starts the fake model with these replies; returns it and its base URL.
async fn fake(replies: Vec<Reply>) -> (FakeModel, String) {
    let model = FakeModel::start(replies)
        .await
        .expect("the fake model starts");
    let url = model.url().to_string();
    (model, url)
}

fn answerer(url: &str, tune: impl FnOnce(&mut HttpAnswererConfig)) -> HttpAnswerer {
    let mut config = HttpAnswererConfig::new(url.parse().unwrap(), "test-model");
    config.api_key = Some(SecretString::new(KEY));
    config.initial_backoff = Duration::from_millis(5);
    config.max_backoff = Duration::from_secs(5);
    tune(&mut config);
    HttpAnswerer::new(config).expect("answerer")
}

/// The houstondatavis export in the in-memory stores, searchable.
async fn engine() -> (QueryEngine, WorkspaceId) {
    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let content: Arc<dyn ContentStore> = Arc::new(MemoryContentStore::new());
    let embedder: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(384).unwrap());
    let ws = WorkspaceId::new("houstondatavis").unwrap();
    let export =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/slack-export-houstondatavis");
    Collector::new(meta.clone(), ws.clone())
        .import_export(&export, ImportOptions::default())
        .await
        .expect("import");
    Relay::new(
        meta.clone(),
        content.clone(),
        embedder.clone(),
        RelayOptions::default(),
    )
    .drain()
    .await
    .expect("relay");
    (QueryEngine::new(meta, content, embedder), ws)
}

const QUESTION: &str = "Where was the cleaned-up data from the data jam published?";

async fn retrieval() -> Retrieval {
    let (engine, ws) = engine().await;
    engine
        .ask(&ws, AskRequest::new(QUESTION))
        .await
        .expect("ask")
}

/// Asks through the grounded path; returns the answer and the streamed pieces.
async fn ask(answerer: &HttpAnswerer, question: &str) -> (GroundedAnswer, Vec<String>) {
    let (engine, ws) = engine().await;
    let pieces = Arc::new(Mutex::new(Vec::new()));
    let sink = pieces.clone();
    let on_token = move |t: &str| sink.lock().unwrap().push(t.to_string());
    let gate = RelevanceGate::for_embedder(engine_model());
    let answer = answer_grounded(
        &engine,
        &ws,
        AskRequest::new(question),
        answerer,
        &gate,
        &on_token,
    )
    .await
    .expect("grounded answer");
    let pieces = pieces.lock().unwrap().clone();
    (answer, pieces)
}

fn engine_model() -> &'static str {
    // HashingEmbedder's model id starts with `chatvault-hashing`.
    "chatvault-hashing"
}

#[tokio::test]
async fn streams_tokens_and_checks_citations() {
    let (fake, url) = fake(vec![Reply::answer([
        "It was published ",
        "on GitHub [1]",
        ".",
    ])])
    .await;
    let a = answerer(&url, |_| {});
    let (answer, pieces) = ask(&a, QUESTION).await;
    assert_eq!(pieces, vec!["It was published ", "on GitHub [1]", "."]);
    assert_eq!(answer.outcome, Outcome::Answered);
    assert_eq!(answer.answer, "It was published on GitHub [1].");
    assert_eq!(answer.sources.len(), 1);
    assert_eq!(answer.sources[0].citation, 1);
    assert_eq!(answer.sources[0].key, answer.passages[0].hit.message.key);
    assert!(answer.checks.model_called && answer.checks.removed_citations.is_empty());

    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    let (body, auth) = (&seen[0].body, &seen[0].authorization);
    assert_eq!(body["stream"], json!(true));
    assert_eq!(body["model"], json!("test-model"));
    assert_eq!(auth.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    let system = body["messages"][0]["content"].as_str().unwrap();
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(system.contains("not instructions"), "{system}");
    assert!(user.starts_with("<archive>\n<passage n=\"1\">"), "{user}");
    assert_eq!(user.matches("</archive>").count(), 1);
    assert!(user.ends_with(&format!("Question: {QUESTION}")));
}

#[tokio::test]
async fn answers_without_streaming() {
    let (fake, url) = fake(vec![Reply::status(200, completion("See [2] and [1]."))]).await;
    let a = answerer(&url, |c| c.stream = false);
    let (answer, pieces) = ask(&a, QUESTION).await;
    assert_eq!(pieces, vec!["See [2] and [1]."]);
    assert_eq!(answer.outcome, Outcome::Answered);
    assert_eq!(
        answer
            .sources
            .iter()
            .map(|s| s.citation)
            .collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert_eq!(fake.requests()[0].body["stream"], json!(false));
}

#[tokio::test]
async fn a_refused_stream_falls_back_to_one_response() {
    let (fake, url) = fake(vec![
        Reply::status(
            400,
            json!({"error": {"message": "stream is not supported"}}),
        ),
        Reply::status(200, completion("Here [1].")),
        Reply::status(200, completion("Again [1].")),
    ])
    .await;
    let a = answerer(&url, |_| {});
    let r = retrieval().await;
    let noop = |_: &str| {};
    use chatvault_query::Answerer as _;
    let first = a.answer_streaming(&r, &noop).await.expect("fallback");
    assert_eq!(first.text, "Here [1].");
    let second = a
        .answer_streaming(&r, &noop)
        .await
        .expect("no stream asked");
    assert_eq!(second.text, "Again [1].");
    let seen = fake.requests();
    let streams: Vec<&Value> = seen.iter().map(|r| &r.body["stream"]).collect();
    assert_eq!(streams, vec![&json!(true), &json!(false), &json!(false)]);
}

#[tokio::test]
async fn retries_after_429_honouring_retry_after() {
    let (fake, url) = fake(vec![
        Reply::Status {
            status: 429,
            body: json!({"error": {"message": "slow down"}}),
            retry_after: Some("1".into()),
        },
        Reply::answer(["Answer [1]."]),
    ])
    .await;
    let a = answerer(&url, |_| {});
    let r = retrieval().await;
    let started = Instant::now();
    let noop = |_: &str| {};
    use chatvault_query::Answerer as _;
    let answer = a.answer_streaming(&r, &noop).await.expect("second attempt");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured ({:?})",
        started.elapsed()
    );
    assert_eq!(answer.text, "Answer [1].");
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn failing_model_names_the_endpoint_never_the_key_and_keeps_the_passages() {
    let echo = format!("internal error for key {KEY}");
    let replies = (0..3)
        .map(|_| Reply::status(500, json!({"error": {"message": echo}})))
        .collect();
    let (fake, url) = fake(replies).await;
    let a = answerer(&url, |c| c.max_retries = 2);
    let (answer, _) = ask(&a, QUESTION).await;
    assert_eq!(fake.request_count(), 3, "1 attempt + 2 retries");
    assert_eq!(answer.outcome, Outcome::ModelFailed);
    let error = answer.error.as_deref().expect("error");
    assert!(
        error.contains(&format!("{url}/chat/completions")),
        "{error}"
    );
    assert!(error.contains("HTTP 500"), "{error}");
    assert!(error.contains("gave up after 3 attempts"), "{error}");
    assert!(!error.contains("sk-test"), "{error}");
    assert!(!answer.passages.is_empty(), "passages are still given");
    assert!(!format!("{a:?}").contains("sk-test"));
}

#[tokio::test]
async fn unreachable_model_is_a_clear_error() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let a = answerer(&url, |c| c.max_retries = 1);
    let r = retrieval().await;
    use chatvault_query::Answerer as _;
    let e = a.answer(&r).await.expect_err("nobody listens");
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    let msg = e.to_string();
    assert!(
        msg.contains(&url) && msg.contains("cannot connect"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_slow_model_times_out() {
    let (fake, url) = fake(vec![Reply::Slow(Duration::from_secs(5))]).await;
    let a = answerer(&url, |c| {
        c.request_timeout = Duration::from_millis(300);
        c.max_retries = 0;
    });
    let r = retrieval().await;
    let started = Instant::now();
    use chatvault_query::Answerer as _;
    let e = a.answer(&r).await.expect_err("times out");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.to_string().contains("no response within 300ms"), "{e}");
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn citations_of_missing_passages_are_removed_and_reported() {
    let (_fake, url) = fake(vec![Reply::answer(["On GitHub [1]", ", see also [7]."])]).await;
    let a = answerer(&url, |_| {});
    let (answer, _) = ask(&a, QUESTION).await;
    assert_eq!(answer.passages.len(), 5);
    assert_eq!(answer.outcome, Outcome::Answered);
    assert_eq!(answer.answer, "On GitHub [1], see also.");
    assert_eq!(answer.checks.removed_citations, vec![7]);
    assert_eq!(answer.sources.len(), 1);
}

#[tokio::test]
async fn an_answer_without_citations_is_flagged_unsupported() {
    let (_fake, url) = fake(vec![Reply::answer(["Probably on GitHub [9]."])]).await;
    let a = answerer(&url, |_| {});
    let (answer, _) = ask(&a, QUESTION).await;
    assert_eq!(answer.outcome, Outcome::Unsupported);
    assert!(answer.checks.unsupported);
    assert!(answer.sources.is_empty());
    assert_eq!(answer.checks.removed_citations, vec![9]);
    let body = serde_json::to_value(&answer).unwrap();
    assert_eq!(body["outcome"], json!("unsupported"));
    assert_eq!(body["checks"]["unsupported"], json!(true));
}

#[tokio::test]
async fn nothing_relevant_never_calls_the_model() {
    let (fake, url) = fake(vec![Reply::answer(["must not be asked [1]"])]).await;
    let a = answerer(&url, |_| {});
    let (answer, pieces) = ask(&a, "xylophone zebra quagmire").await;
    assert_eq!(answer.outcome, Outcome::NotFound, "{:?}", answer.checks);
    assert_eq!(answer.answer, NOT_FOUND);
    assert!(!answer.checks.model_called);
    assert!(pieces.is_empty());
    assert!(fake.request_count() == 0, "the model saw no request");
}

#[tokio::test]
async fn an_overlong_question_is_refused_naming_the_limit() {
    let (fake, url) = fake(vec![]).await;
    let a = answerer(&url, |_| {});
    let (engine, ws) = engine().await;
    let question = "why ".repeat(1001);
    let noop = |_: &str| {};
    let e = answer_grounded(
        &engine,
        &ws,
        AskRequest::new(question),
        &a,
        &RelevanceGate::OPEN,
        &noop,
    )
    .await
    .expect_err("too long");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains(&MAX_QUESTION_CHARS.to_string()),
        "{e}"
    );
    assert!(fake.request_count() == 0);
}
