//! `HttpEmbedder` against a local fake OpenAI-compatible server (axum on 127.0.0.1): batching,
//! ordering, normalisation, retries on 429/5xx, timeouts, refusals, and the API key's secrecy.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chatvault_core::{Embedder, ErrorKind, HashingEmbedder, SecretString};
use chatvault_embed::{HttpEmbedder, HttpEmbedderConfig};
use url::Url;

const DIM: usize = 16;
const KEY: &str = "sk-test-0123456789abcdef";

/// What the fake server answers, one scripted reply per request (then: embeddings).
#[derive(Clone)]
enum Reply {
    Status(u16, &'static str, Option<&'static str>),
    Sleep(Duration),
    Raw(&'static str),
    WrongDimension,
    MissingOne,
}

#[derive(Clone, Default)]
struct Fake {
    script: Arc<Mutex<VecDeque<Reply>>>,
    requests: Arc<AtomicUsize>,
    batch_sizes: Arc<Mutex<Vec<usize>>>,
    bad_auth: Arc<AtomicUsize>,
}

async fn embeddings(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    fake.requests.fetch_add(1, Ordering::SeqCst);
    let expected = format!("Bearer {KEY}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        fake.bad_auth.fetch_add(1, Ordering::SeqCst);
        let msg = "Incorrect API key provided: sk-test-********cdef. You can find your API key at https://platform.example/account";
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": {"message": msg, "type": "invalid_request_error"}})),
        )
            .into_response();
    }
    let next = fake.script.lock().unwrap().pop_front();
    let inputs: Vec<String> = body["input"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    fake.batch_sizes.lock().unwrap().push(inputs.len());
    match next {
        Some(Reply::Status(code, message, retry_after)) => {
            let mut r = (
                StatusCode::from_u16(code).unwrap(),
                Json(serde_json::json!({"error": {"message": message}})),
            )
                .into_response();
            if let Some(s) = retry_after {
                r.headers_mut().insert("retry-after", s.parse().unwrap());
            }
            return r;
        }
        Some(Reply::Sleep(d)) => tokio::time::sleep(d).await,
        Some(Reply::Raw(body)) => return (StatusCode::OK, body.to_string()).into_response(),
        _ => {}
    }
    if inputs.iter().any(|t| t.is_empty()) {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": {"message": "'$.input' is invalid"}})),
        )
            .into_response();
    }
    let dim = if matches!(next, Some(Reply::WrongDimension)) {
        DIM * 2
    } else {
        DIM
    };
    let hashing = HashingEmbedder::new(dim).unwrap();
    // Out of order, with `index`, and not normalised (scaled by 3): the client must fix both.
    let mut data: Vec<serde_json::Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let v: Vec<f32> = hashing.embed_one(t).iter().map(|x| x * 3.0).collect();
            serde_json::json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    data.reverse();
    if matches!(next, Some(Reply::MissingOne)) {
        data.pop();
    }
    Json(serde_json::json!({"object": "list", "data": data, "model": body["model"]}))
        .into_response()
}

async fn serve(fake: Fake) -> Url {
    let app = Router::new()
        .route("/v1/embeddings", post(embeddings))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Url::parse(&format!("http://{addr}/v1")).unwrap()
}

fn config(url: Url) -> HttpEmbedderConfig {
    let mut c = HttpEmbedderConfig::new(url, "fake-embedding-model", Some(DIM));
    c.api_key = Some(SecretString::new(KEY));
    c.initial_backoff = Duration::from_millis(5);
    c.max_backoff = Duration::from_millis(50);
    c.max_retries = 3;
    c.request_timeout = Duration::from_secs(5);
    c
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("message number {i} about the deploy"))
        .collect()
}

#[tokio::test]
async fn batches_in_order_normalised_and_equal_to_the_servers_vectors() {
    let fake = Fake::default();
    let mut c = config(serve(fake.clone()).await);
    c.batch_size = 64;
    let embedder = HttpEmbedder::new(c).unwrap();
    assert_eq!(embedder.dimension(), DIM);
    assert_eq!(embedder.model_id(), "fake-embedding-model");

    let mut input = texts(150);
    input[7] = String::new(); // the fake server, like OpenAI, rejects "": the client must not send it
    let vectors = embedder.embed(&input).await.unwrap();
    assert_eq!(vectors.len(), 150);
    assert_eq!(*fake.batch_sizes.lock().unwrap(), vec![64, 64, 22]);
    let reference = HashingEmbedder::new(DIM).unwrap();
    for (t, v) in input.iter().zip(&vectors) {
        let expected = reference.embed_one(if t.is_empty() { " " } else { t });
        let d = v
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-5, "{t:?}");
    }
    assert!(embedder.embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_with_backoff() {
    let fake = Fake::default();
    fake.script.lock().unwrap().extend([
        Reply::Status(429, "Rate limit reached", Some("0")),
        Reply::Status(503, "overloaded", None),
        Reply::Status(429, "Rate limit reached", None),
    ]);
    let embedder = HttpEmbedder::new(config(serve(fake.clone()).await)).unwrap();
    let v = embedder.embed(&texts(3)).await.unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(fake.requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn persistent_failures_end_as_retryable_unavailable() {
    let fake = Fake::default();
    fake.script
        .lock()
        .unwrap()
        .extend((0..10).map(|_| Reply::Status(500, "internal error", None)));
    let embedder = HttpEmbedder::new(config(serve(fake.clone()).await)).unwrap();
    let err = embedder.embed(&texts(2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_retryable());
    assert!(err.to_string().contains("500"), "{err}");
    assert!(err.to_string().contains("4 attempts"), "{err}");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 4); // 1 + max_retries

    let fake = Fake::default();
    fake.script
        .lock()
        .unwrap()
        .extend((0..10).map(|_| Reply::Status(429, "slow down", Some("0"))));
    let embedder = HttpEmbedder::new(config(serve(fake.clone()).await)).unwrap();
    let err = embedder.embed(&texts(2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("rate limited"), "{err}");
}

#[tokio::test]
async fn client_errors_are_not_retried_and_carry_the_servers_message() {
    let fake = Fake::default();
    fake.script.lock().unwrap().push_back(Reply::Status(
        400,
        "This model's maximum context length is 8192 tokens",
        None,
    ));
    let embedder = HttpEmbedder::new(config(serve(fake.clone()).await)).unwrap();
    let err = embedder.embed(&texts(1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("maximum context length"), "{err}");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn timeouts_and_unreachable_servers_are_unavailable() {
    let fake = Fake::default();
    fake.script
        .lock()
        .unwrap()
        .extend((0..3).map(|_| Reply::Sleep(Duration::from_secs(3))));
    let mut c = config(serve(fake.clone()).await);
    c.request_timeout = Duration::from_millis(200);
    c.max_retries = 1;
    let err = HttpEmbedder::new(c)
        .unwrap()
        .embed(&texts(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 2);

    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut c = config(Url::parse(&format!("http://{addr}/v1")).unwrap());
    c.max_retries = 1;
    let err = HttpEmbedder::new(c)
        .unwrap()
        .embed(&texts(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[tokio::test]
async fn malformed_answers_are_backend_errors_and_dimension_mismatches_conflicts() {
    let fake = Fake::default();
    fake.script.lock().unwrap().extend([
        Reply::Raw("{\"data\": \"nope\"}"),
        Reply::MissingOne,
        Reply::WrongDimension,
    ]);
    let embedder = HttpEmbedder::new(config(serve(fake.clone()).await)).unwrap();
    let err = embedder.embed(&texts(2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    let err = embedder.embed(&texts(2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(
        err.to_string().contains("1 embeddings for 2 texts"),
        "{err}"
    );
    let err = embedder.embed(&texts(2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("32-dimensional"), "{err}");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_api_key_is_sent_but_never_shown() {
    let fake = Fake::default();
    let url = serve(fake.clone()).await;
    let mut c = config(url.clone());
    c.api_key = Some(SecretString::new("sk-test-wrongwrongwrongcdef"));
    let embedder = HttpEmbedder::new(c.clone()).unwrap();
    let err = embedder.embed(&texts(1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend);
    assert!(err.to_string().contains("authentication failed"), "{err}");
    for shown in [
        err.to_string(),
        format!("{err:?}"),
        format!("{embedder:?}"),
        format!("{c:?}"),
    ] {
        assert!(!shown.contains("wrongwrong"), "{shown}");
        assert!(!shown.contains("sk-test"), "{shown}");
    }
    assert_eq!(
        fake.bad_auth.load(Ordering::SeqCst),
        1,
        "401 is not retried"
    );

    // And the right key works.
    let embedder = HttpEmbedder::new(config(url)).unwrap();
    assert_eq!(embedder.embed(&texts(1)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn connect_asks_the_server_for_the_dimension() {
    let fake = Fake::default();
    let mut c = config(serve(fake.clone()).await);
    c.dimension = None;
    assert_eq!(
        HttpEmbedder::new(c.clone()).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let embedder = HttpEmbedder::connect(c).await.unwrap();
    assert_eq!(embedder.dimension(), DIM);
    assert_eq!(fake.requests.load(Ordering::SeqCst), 1);

    let mut bad = config(Url::parse("ftp://example.invalid/v1").unwrap());
    bad.batch_size = 1;
    assert_eq!(
        HttpEmbedder::new(bad).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}
