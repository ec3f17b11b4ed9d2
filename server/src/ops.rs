//! Operations: liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up.
async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// The stores answer; 503 (JSON) when the metadata store does not, whatever its error, so a
/// load balancer takes the instance out instead of reading a 500 as a bug.
async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let unready = |e: chatvault_core::Error| {
        tracing::warn!(error = %e, "not ready");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the metadata store does not answer: {e}"),
        )
    };
    let workspaces = state.inner.meta.list_workspaces().await.map_err(unready)?;
    let outbox = state.inner.meta.outbox_stats(None).await.map_err(unready)?;
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({
            "status": "ready",
            "workspaces": workspaces.len(),
            "outbox": outbox,
        })),
    ))
}

/// Prometheus metrics (the outbox gauges are read at scrape time).
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let m = &state.inner.metrics;
    match state.inner.meta.outbox_stats(None).await {
        Ok(s) => {
            m.outbox_pending.set(s.pending as i64);
            m.outbox_leased.set(s.leased as i64);
            m.outbox_dead.set(s.dead as i64);
            let age = s.oldest_live.map_or(0.0, |t| {
                (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0
            });
            m.outbox_oldest_age.set(age);
        }
        Err(e) => tracing::warn!(error = %e, "outbox stats for metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
}
