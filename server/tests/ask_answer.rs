//! `POST /api/v1/workspaces/{ws}/ask` with a language model configured (a fake OpenAI-compatible
//! server on 127.0.0.1): server-sent events when the client accepts them, a JSON
//! `GroundedAnswer` otherwise, 502 with the passages when the model fails, 400 for an overlong
//! question; without a model, passages and a prompt as before.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chatvault_answer::testing::{FakeModel, Reply};
use chatvault_answer::{HttpAnswerer, HttpAnswererConfig};
use chatvault_collector::{Collector, ImportOptions, Relay, RelayOptions};
use chatvault_core::testing::{MemoryContentStore, MemoryMetadataStore};
use chatvault_core::{ContentStore, Embedder, HashingEmbedder, MetadataStore, WorkspaceId};
use chatvault_query::Answerer;
use chatvault_server::{router, AppState, ServerConfig};
use serde_json::{json, Value};

/// A fake model: streams `[1]`-citing pieces, or answers 500 when `fail` is set.
async fn fake_model(fail: bool) -> FakeModel {
    let reply = if fail {
        Reply::status(500, json!({"error": {"message": "model crashed"}}))
    } else {
        Reply::answer(["Published ", "on GitHub [1]."])
    };
    FakeModel::always(reply)
        .await
        .expect("the fake model starts")
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
    let model = fake_model(false).await;
    let url = server(Some(answerer(model.url()))).await;
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
    assert_eq!(model.request_count(), 1);
}

#[tokio::test]
async fn ask_answers_json_without_event_stream_and_passages_without_a_model() {
    let model = fake_model(false).await;
    let url = server(Some(answerer(model.url()))).await;
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
    let model = fake_model(true).await;
    let url = server(Some(answerer(model.url()))).await;
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
        error.contains(&format!("{}/chat/completions", model.url())) && error.contains("HTTP 500"),
        "{error}"
    );
    assert!(!body["passages"].as_array().unwrap().is_empty());
    assert_eq!(model.request_count(), 2, "one retry");

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

#[tokio::test]
async fn a_client_that_goes_away_stops_the_generation() {
    // A model writing one piece every 100 ms for 6 s.
    let pieces: Vec<String> = (0..60).map(|i| format!("piece {i} [1] ")).collect();
    let model = FakeModel::always(Reply::Trickle {
        pieces,
        every: Duration::from_millis(100),
    })
    .await
    .expect("the fake model starts");
    let url = server(Some(answerer(model.url()))).await;
    let mut response = reqwest::Client::new()
        .post(&url)
        .header("accept", "text/event-stream")
        .json(&json!({"question": QUESTION}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Read until the first token arrives: the model is streaming.
    let mut seen = String::new();
    while !seen.contains("event: token") {
        let chunk = response.chunk().await.unwrap().expect("the stream goes on");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(model.abandoned_streams(), 0);
    // The client goes away (its connection closes with the unread response).
    drop(response);
    assert!(
        model.wait_abandoned(1, Duration::from_secs(3)).await,
        "the model's stream was closed long before its 6 s end"
    );
    assert_eq!(model.request_count(), 1, "and not asked again");
}

/// The web archive's Q&A page, as a browser asks for it.
async fn ask_page(ask_url: &str) -> (reqwest::StatusCode, String) {
    let base = ask_url
        .split("/api/")
        .next()
        .expect("the ask URL has a base");
    let response = reqwest::Client::new()
        .get(format!("{base}/w/houston/ask"))
        .query(&[("q", QUESTION)])
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn the_web_qa_page_shows_the_grounded_answer_with_linked_citations() {
    let model = fake_model(false).await;
    let (status, page) = ask_page(&server(Some(answerer(model.url()))).await).await;
    assert_eq!(status, 200);
    assert!(
        page.contains(r##"Published on GitHub <a class="cite" href="#passage-1">[1]</a>."##),
        "{page}"
    );
    assert!(page.contains("<h2>Sources</h2>"), "{page}");
    assert!(page.contains(r#"id="passage-1""#), "{page}");
    assert!(!page.contains("No language model is configured"), "{page}");
    assert_eq!(model.request_count(), 1);

    let failing = fake_model(true).await;
    let (status, page) = ask_page(&server(Some(answerer(failing.url()))).await).await;
    assert_eq!(status, 200);
    assert!(page.contains("The language model failed"), "{page}");
    assert!(page.contains("HTTP 500"), "{page}");
    assert!(
        page.contains(r#"id="passage-1""#),
        "the passages are still shown: {page}"
    );

    let (_, page) = ask_page(&server(None).await).await;
    assert!(page.contains("No language model is configured"), "{page}");
    assert!(page.contains("The prompt"), "{page}");
}
