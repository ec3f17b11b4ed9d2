//! # chatvault-server
//!
//! chatvault as a service: Slack's Events API in (over HTTP, or Socket Mode), a versioned JSON
//! API out, and the outbox relay running in between, in one process. The server is the writer
//! of its workspaces; any number of `chatvault` commands read beside it.
//!
//! A Rust service nests [`router`] in its own axum app; `chatvault serve` runs [`serve`]
//! standalone. Every store is behind chatvault-core's traits: the binary that starts the server
//! chooses them.
//!
//! ```no_run
//! use std::sync::Arc;
//! use chatvault_core::testing::{MemoryContentStore, MemoryMetadataStore};
//! use chatvault_core::HashingEmbedder;
//! use chatvault_server::{router, AppState, ServerConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let state = AppState::new(
//!     Arc::new(MemoryMetadataStore::new()),
//!     Arc::new(MemoryContentStore::new()),
//!     Arc::new(HashingEmbedder::new(384)?),
//!     ServerConfig::default(),
//! );
//! let app = axum::Router::new().nest("/chatvault", router(state));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

mod api;
mod auth;
mod catchup;
mod error;
mod events;
pub mod mcp;
mod mcp_http;
mod metrics;
mod openapi;
mod ops;
mod signature;
mod socket_mode;
mod state;
mod web;

use std::future::Future;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chatvault_core::{Error, Result};
use tokio::net::TcpListener;

pub use auth::{ApiToken, AuthConfig, Viewer};
pub use catchup::BackfillSchedule;
pub use error::ApiError;
pub use metrics::Metrics;
pub use socket_mode::{run_socket_mode, SocketModeOptions, APP_TOKEN_ENV};
pub use state::{AppState, ServerConfig};

/// Requests bodies larger than this are refused with 413 (Slack's events are a few KiB).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The server's routes: `POST /slack/events`, the JSON API under `/api/v1/`, `/healthz`,
/// `/readyz`, `/metrics`, the web archive's pages (`/`, `/w/{workspace}/…`, `/login`), and MCP
/// over streamable HTTP (`/mcp`, `/mcp/{workspace}`).
/// Nest it under a prefix or merge it into a larger app.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(events::routes())
        .merge(api::routes())
        .merge(ops::routes())
        .merge(web::routes(&state))
        .merge(mcp_http::routes())
        .fallback(no_route)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe_requests,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Unknown routes: the 404 page for a browser's page request, JSON for everything else.
async fn no_route(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    if web::wants_html(&parts) {
        let reader =
            <web::Reader as axum::extract::OptionalFromRequestParts<AppState>>::from_request_parts(
                &mut parts, &state,
            )
            .await
            .ok()
            .flatten();
        return web::not_found_page(reader).await;
    }
    ApiError::not_found("no such route").into_response()
}

/// Every error body is JSON: errors answered by layers and axum itself (413 from the body
/// limit, 405, extractor rejections) get the same `{"error": …}` body as [`ApiError`]s.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json || is_html {
        return response;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the request body is larger than {MAX_BODY_BYTES} bytes")
        }
        StatusCode::METHOD_NOT_ALLOWED => "this route does not take that method".to_string(),
        other => other.canonical_reason().unwrap_or("error").to_string(),
    };
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "internal",
        _ => "invalid_input",
    };
    // Keep the other headers (`Allow` on a 405, `WWW-Authenticate` on a 401).
    let (parts, _) = response.into_parts();
    let mut json = ApiError::new(status, kind, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().append(name, value.clone());
        }
    }
    json
}

/// Serves [`router`] on `listener` with the relay (and the periodic backfill, if configured)
/// running in the background, until `shutdown` completes; then stops accepting, lets in-flight
/// requests finish and the relay finish its batch, and returns. The stores stay open (the
/// caller closes them).
///
/// # Errors
/// `Unavailable` when the listener fails.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let stop = tokio_util::sync::CancellationToken::new();
    let relay = state.spawn_relay();
    let backfill =
        state.config().backfill.clone().map(|schedule| {
            tokio::spawn(catchup::run(state.clone(), schedule, stop.child_token()))
        });
    let app = router(state.clone());
    let stopping = stop.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.cancel();
        })
        .await
        .map_err(|e| Error::unavailable(format!("the server failed: {e}")).with_source(e));
    stop.cancel();
    if let Some(backfill) = backfill {
        let _ = backfill.await;
    }
    if let Some(relay) = relay {
        match relay.shutdown().await {
            Ok(report) => tracing::info!(?report, "relay stopped"),
            Err(e) => tracing::warn!(error = %e, "relay stopped with an error"),
        }
    }
    served
}
