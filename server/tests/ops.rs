//! `/healthz`, `/readyz` and `/metrics`.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;

async fn get(s: &Server, path: &str) -> (StatusCode, Value) {
    let r = s
        .client
        .get(format!("{}{path}", s.url))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn health_and_readiness() {
    let s = start().await;
    let (status, body) = get(&s, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let (status, body) = get(&s, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["workspaces"], 1);
    s.stop().await;
}

#[tokio::test]
async fn a_closed_store_is_not_ready() {
    let s = start().await;
    s.state.meta().close().await.unwrap();
    let (status, body) = get(&s, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["kind"], "unavailable");
}

#[tokio::test]
async fn metrics_show_the_outbox() {
    let s = start().await;
    s.post(&message("1700000000.000100", "counted")).await;
    s.delivered().await;
    let m = s.metrics().await;
    assert!(m.contains("chatvault_outbox_pending 0"), "{m}");
    assert!(m.contains("chatvault_request_seconds_bucket"), "{m}");
    s.stop().await;
}
