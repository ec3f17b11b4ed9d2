//! `POST /slack/events`: Slack's Events API over HTTP.
//!
//! Every request is checked against the app's signing secret before anything else is read
//! ([`crate::signature`]); then the payload is parsed, its `team_id` mapped to a workspace this
//! server writes ([`AppState::workspace_for_team`]), and the event written to the metadata store
//! by the collector's [`EventHandler`](chatvault_collector::EventHandler). Only metadata (and the
//! outbox entry carrying the text) is written before answering, which keeps the answer well
//! within Slack's 3 seconds; the relay embeds and indexes afterwards.
//!
//! Slack retries a delivery it got no 2xx for (`X-Slack-Retry-Num`); applying an event is
//! idempotent, so a retry changes nothing the first delivery already wrote.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chatvault_collector::EventOutcome;
use serde_json::{json, Value};
use tracing::debug;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::signature;
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/slack/events", post(slack_events))
}

async fn slack_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match handle(&state, &headers, body).await {
        Ok(r) => r,
        Err((reason, e)) => {
            Metrics::count(&state.metrics().events_rejected, reason);
            debug!(reason, status = %e.status(), "Slack event refused");
            e.into_response()
        }
    }
}

/// A refusal: the metric's reason label and the answer.
type Refusal = (&'static str, ApiError);

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    // A body without a Content-Length is cut off by the limit layer while it is read, here.
    let body = body.map_err(|r| {
        let (reason, kind) = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ("body_too_large", "payload_too_large")
        } else {
            ("unreadable_body", "invalid_input")
        };
        (reason, ApiError::new(r.status(), kind, r.body_text()))
    })?;
    let Some(secret) = &state.config().signing_secret else {
        return Err((
            "no_signing_secret",
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "no Slack signing secret is configured: Slack events over HTTP are off \
                 (set SLACK_SIGNING_SECRET or --signing-secret-file)",
            ),
        ));
    };
    signature::verify(
        secret.expose().as_bytes(),
        header(headers, "x-slack-request-timestamp"),
        header(headers, "x-slack-signature"),
        &body,
        chrono::Utc::now().timestamp(),
    )
    .map_err(|e| {
        let (reason, message) = e.reason();
        (reason, ApiError::unauthorized(message))
    })?;

    let payload: Value = serde_json::from_slice(&body).map_err(|e| {
        (
            "malformed",
            ApiError::bad_request(format!("the body is not JSON: {e}")),
        )
    })?;
    let metrics = state.metrics();
    if let Some(n) = header(headers, "x-slack-retry-num") {
        metrics.events_retried.inc();
        debug!(
            retry = n,
            reason = header(headers, "x-slack-retry-reason").unwrap_or("-"),
            "Slack retried a delivery"
        );
    }
    let kind = event_kind(&payload);
    Metrics::count(&metrics.events_received, &kind);

    if payload.get("type").and_then(Value::as_str) == Some("url_verification") {
        let Some(challenge) = payload.get("challenge").and_then(Value::as_str) else {
            return Err((
                "malformed",
                ApiError::bad_request("url_verification without a `challenge`"),
            ));
        };
        Metrics::count(&metrics.events_applied, "url_verification");
        return Ok(Json(json!({ "challenge": challenge })).into_response());
    }

    let Some(team) = payload
        .get("team_id")
        .or_else(|| payload.pointer("/event/team"))
        .and_then(Value::as_str)
    else {
        return Err((
            "malformed",
            ApiError::bad_request("the event has no `team_id`"),
        ));
    };
    let workspace = state
        .workspace_for_team(team)
        .await
        .map_err(|e| ("store_error", ApiError::from(e)))?
        .ok_or_else(|| {
            (
                "unknown_team",
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("this server does not archive Slack team {team}"),
                ),
            )
        })?;

    let handler = state.handler(&workspace).await;
    let outcome = handler.handle(&payload).await.map_err(|e| {
        let reason = if e.kind() == chatvault_core::ErrorKind::InvalidInput {
            "invalid_event"
        } else {
            "store_error"
        };
        (reason, ApiError::from(e))
    })?;
    Ok(match outcome {
        EventOutcome::Applied { kind, report } => {
            Metrics::count(&metrics.events_applied, &kind);
            debug!(%workspace, kind, ?report, "Slack event applied");
            Json(json!({"ok": true, "outcome": "applied", "kind": kind, "report": report}))
                .into_response()
        }
        EventOutcome::Ignored { kind, reason } => {
            Metrics::count(&metrics.events_ignored, &kind);
            debug!(%workspace, kind, reason, "Slack event ignored");
            Json(json!({"ok": true, "outcome": "ignored", "kind": kind})).into_response()
        }
        EventOutcome::UrlVerification { challenge } => {
            Json(json!({ "challenge": challenge })).into_response()
        }
    })
}

/// The metric label of a payload: the event's type (and a message's subtype), or the envelope's.
fn event_kind(payload: &Value) -> String {
    let event = payload.get("event").unwrap_or(payload);
    let ty = event
        .get("type")
        .and_then(Value::as_str)
        .or_else(|| payload.get("type").and_then(Value::as_str))
        .unwrap_or("unknown");
    match event.get("subtype").and_then(Value::as_str) {
        Some(sub @ ("message_changed" | "message_deleted" | "message_replied")) => sub.to_string(),
        _ => ty.to_string(),
    }
}
