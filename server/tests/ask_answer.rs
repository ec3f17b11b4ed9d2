//! `POST /api/v1/workspaces/{ws}/ask` with a language model configured (a fake OpenAI-compatible
//! server on 127.0.0.1): server-sent events when the client accepts them, a JSON
//! `GroundedAnswer` otherwise, 502 with the passages when the model fails, 400 for an overlong
//! question; without a model, passages and a prompt as before.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use chatvault_answer::{HttpAnswerer, HttpAnswererConfig};
use chatvault_collector::{Collector, ImportOptions, Relay, RelayOptions};
use chatvault_core::testing::{MemoryContentStore, MemoryMetadataStore};
use chatvault_core::{ContentStore, Embedder, HashingEmbedder, MetadataStore, WorkspaceId};
use chatvault_query::Answerer;
use chatvault_server::{router, AppState, ServerConfig};
use serde_json::{json, Value};

/// A fake model: streams `[1]`-citing pieces, or answers 500 when `fail` is set.
async fn fake_model(fail: bool) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |body: axum::Json<Value>| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                if fail {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "model crashed").into_response();
                }
                if body["stream"] == json!(true) {
                    let mut sse = String::new();
                    for p in ["Published ", "on GitHub [1]."] {
                        let chunk = json!({"choices": [{"delta": {"content": p}}]});
                        sse.push_str(&format!("data: {chunk}\n\n"));
                    }
                    sse.push_str("data: [DONE]\n\n");
                    ([(header::CONTENT_TYPE, "text/event-stream")], sse).into_response()
                } else {
                    axum::Json(
                        json!({"choices": [{"message": {"content": "Published on GitHub [1]."}}]}),
                    )
                    .into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), calls)
}

/// The houstondatavis export behind the API, with this answerer; returns the ask URL.
async fn server(answerer: Option<Arc<dyn Answerer>>) -> String {
    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let content: Arc<dyn ContentStore> = Arc::new(MemoryContentStore::new());
    let embedder: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(384).unwrap());
    let ws = WorkspaceId::new("houston").unwrap();
    let export =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/slack-export-houstondatavis");
    Collector::new(meta.clone(), ws.clone())
        .import_export(&export, ImportOptions::default())
        .await
        .unwrap();
    Relay::new(
        meta.clone(),
        content.clone(),
        embedder.clone(),
        RelayOptions::default(),
    )
    .drain()
    .await
    .unwrap();
    let config = ServerConfig {
        relay: None,
        answerer,
        ..ServerConfig::default()
    };
    let app = router(AppState::new(meta, content, embedder, config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/api/v1/workspaces/houston/ask")
}

fn answerer(url: &str) -> Arc<dyn Answerer> {
    let mut config = HttpAnswererConfig::new(url.parse().unwrap(), "fake");
    config.max_retries = 1;
    config.initial_backoff = Duration::from_millis(5);
    Arc::new(HttpAnswerer::new(config).unwrap())
}

const QUESTION: &str = "Where was the cleaned-up data from the data jam published?";

#[tokio::test]
async fn ask_streams_server_sent_events_then_the_checked_answer() {
    let (model, calls) = fake_model(false).await;
    let url = server(Some(answerer(&model))).await;
    let response = reqwest::Client::new()
        .post(&url)
        .header("accept", "text/event-stream")
        .json(&json!({"question": QUESTION}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = response.text().await.unwrap();
    let mut tokens = String::new();
    let mut answer = None;
    for event in body.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let name = event.lines().find_map(|l| l.strip_prefix("event: "));
        let data: String = event
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        match name {
            Some("token") => tokens.push_str(
                serde_json::from_str::<Value>(&data).unwrap()["text"]
                    .as_str()
                    .unwrap(),
            ),
            Some("answer") => answer = Some(serde_json::from_str::<Value>(&data).unwrap()),
            _ => {}
        }
    }
    assert_eq!(tokens, "Published on GitHub [1].");
    let answer = answer.expect("a final answer event");
    assert_eq!(answer["outcome"], "answered");
    assert_eq!(answer["sources"][0]["citation"], 1);
    assert!(answer["sources"][0]["key"].is_object() || answer["sources"][0]["key"].is_string());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn ask_answers_json_without_event_stream_and_passages_without_a_model() {
    let (model, _) = fake_model(false).await;
    let url = server(Some(answerer(&model))).await;
    let client = reqwest::Client::new();
    let r = client
        .post(&url)
        .json(&json!({"question": QUESTION}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["answer"], "Published on GitHub [1].");
    assert_eq!(body["checks"]["model_called"], true);

    let url = server(None).await;
    let r = client
        .post(&url)
        .json(&json!({"question": QUESTION}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["prompt"].as_str().unwrap().contains("<archive>"),
        "{body}"
    );
    assert!(body.get("outcome").is_none());
}

#[tokio::test]
async fn a_failing_model_is_a_502_naming_the_endpoint_with_the_passages() {
    let (model, calls) = fake_model(true).await;
    let url = server(Some(answerer(&model))).await;
    let client = reqwest::Client::new();
    let r = client
        .post(&url)
        .json(&json!({"question": QUESTION}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["outcome"], "model_failed");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("{model}/chat/completions")) && error.contains("HTTP 500"),
        "{error}"
    );
    assert!(!body["passages"].as_array().unwrap().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one retry");

    let r = client
        .post(&url)
        .header("accept", "text/event-stream")
        .json(&json!({"question": "x".repeat(4001)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("4000"),
        "{body}"
    );
}
