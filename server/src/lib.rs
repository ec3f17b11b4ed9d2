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
//! # async fn run() -> chatvault_core::Result<()> {
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
mod error;
mod events;
mod metrics;
mod ops;
mod socket_mode;
mod state;

use std::future::Future;

use axum::Router;
use chatvault_core::{Error, Result};
use tokio::net::TcpListener;

pub use error::ApiError;
pub use metrics::Metrics;
pub use socket_mode::{run_socket_mode, SocketModeOptions, APP_TOKEN_ENV};
pub use state::{AppState, ServerConfig};

/// Requests bodies larger than this are refused with 413 (Slack's events are a few KiB).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The server's routes: `POST /slack/events`, the JSON API under `/api/v1/`, `/healthz`,
/// `/readyz` and `/metrics`. Nest it under a prefix or merge it into a larger app.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(events::routes())
        .merge(api::routes())
        .merge(ops::routes())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves [`router`] on `listener` with the relay running in the background, until `shutdown`
/// completes; then stops accepting, lets in-flight requests finish and the relay finish its
/// batch, and returns. The stores stay open (the caller closes them).
///
/// # Errors
/// `Unavailable` when the listener fails.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let relay = state.spawn_relay();
    let app = router(state.clone());
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::unavailable(format!("the server failed: {e}")).with_source(e));
    if let Some(relay) = relay {
        match relay.shutdown().await {
            Ok(report) => tracing::info!(?report, "relay stopped"),
            Err(e) => tracing::warn!(error = %e, "relay stopped with an error"),
        }
    }
    served
}
