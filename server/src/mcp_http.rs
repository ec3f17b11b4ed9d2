//! The MCP server over HTTP: rmcp's streamable HTTP transport at `/mcp` (the archive's only
//! workspace) and `/mcp/{workspace}`, with the same read-only tools as `chatvault mcp` on stdio
//! ([`ArchiveMcp`]).
//!
//! Who reads is decided per HTTP request by the JSON API's own [`Viewer`] extractor (a bearer
//! token, the web archive's login cookie, the trusted proxy header; nobody: public channels
//! only), never by a tool argument. So the transport runs stateless: no MCP session outlives
//! its request, and a session id can never carry one client's rights into another's request.
//!
//! Before rmcp sees a POST, its body is checked to be one JSON-RPC message: a body that is not
//! JSON gets a JSON-RPC parse error (-32700), JSON that is not a JSON-RPC message an invalid
//! request error (-32600), both with HTTP 400. Unknown methods and bad tool arguments are
//! answered by rmcp with JSON-RPC errors in the response.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use chatvault_core::WorkspaceId;
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{json, Value};

use crate::auth::Viewer;
use crate::error::ApiError;
use crate::mcp::ArchiveMcp;
use crate::state::AppState;
use crate::MAX_BODY_BYTES;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/mcp", any(default_workspace))
        .route("/mcp/{ws}", any(named_workspace))
}

/// `/mcp`: the workspace this server serves, when there is exactly one.
async fn default_workspace(
    State(state): State<AppState>,
    viewer: Viewer,
    request: Request,
) -> Result<Response, ApiError> {
    let ws = match state.config().workspaces.as_deref() {
        Some([one]) => one.clone(),
        _ => {
            let mut all: Vec<WorkspaceId> = state
                .meta()
                .list_workspaces()
                .await?
                .into_iter()
                .map(|w| w.id)
                .filter(|w| state.serves(w))
                .collect();
            if all.len() != 1 {
                let names: Vec<&str> = all.iter().map(WorkspaceId::as_str).collect();
                return Err(ApiError::not_found(format!(
                    "this archive holds {} workspaces ({}): use /mcp/{{workspace}}",
                    all.len(),
                    names.join(", ")
                )));
            }
            all.remove(0)
        }
    };
    Ok(serve(state, ws, viewer, request).await)
}

/// `/mcp/{ws}`: one named workspace.
async fn named_workspace(
    State(state): State<AppState>,
    Path(ws): Path<String>,
    viewer: Viewer,
    request: Request,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found(format!("no workspace {ws:?}"));
    let id = WorkspaceId::new(&ws).map_err(|_| not_found())?;
    state
        .meta()
        .get_workspace(&id)
        .await?
        .ok_or_else(not_found)?;
    Ok(serve(state, id, viewer, request).await)
}

/// Hands one HTTP request to rmcp, with an MCP server reading as `viewer`.
async fn serve(state: AppState, ws: WorkspaceId, viewer: Viewer, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = if parts.method == Method::POST {
        // The router's body limit stops larger bodies before this.
        let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(e) => {
                return ApiError::bad_request(format!("cannot read the request body: {e}"))
                    .into_response()
            }
        };
        if let Err(refused) = check_message(&bytes) {
            return refused;
        }
        Body::from(bytes)
    } else {
        body
    };
    let mcp = ArchiveMcp::new(state.engine().clone(), ws, viewer.scope);
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_sse_retry(None)
        // Deployments answer on their own host names behind proxies: who may read what is
        // decided by authentication, not by the Host header.
        .disable_allowed_hosts()
        // Browsers send `Origin`; MCP clients do not. Refusing every request with one keeps a
        // web page (DNS rebinding included) from driving the archive with a reader's cookie.
        .enforce_origin_validation()
        .with_max_request_body_bytes(MAX_BODY_BYTES);
    let service = StreamableHttpService::new(
        move || Ok(mcp.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    service
        .handle(axum::http::Request::from_parts(parts, body))
        .await
        .map(Body::new)
}

/// Whether `body` is one JSON-RPC message rmcp can read; else the JSON-RPC error to answer.
#[allow(clippy::result_large_err)] // the refusal is the response itself
fn check_message(body: &[u8]) -> Result<(), Response> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| json_rpc_error(Value::Null, -32700, format!("parse error: {e}")))?;
    // Answer with the request's id when it has a usable one.
    let id = value
        .get("id")
        .filter(|id| id.is_string() || id.is_number())
        .cloned()
        .unwrap_or(Value::Null);
    if value.is_array() {
        return Err(json_rpc_error(
            id,
            -32600,
            "invalid request: batches are not supported; send one message per request".into(),
        ));
    }
    serde_json::from_value::<ClientJsonRpcMessage>(value)
        .map(|_| ())
        .map_err(|e| json_rpc_error(id, -32600, format!("invalid request: {e}")))
}

fn json_rpc_error(id: Value, code: i64, message: String) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> Value {
        let response = check_message(body.as_bytes()).expect_err("refused");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let bytes =
            futures::executor::block_on(axum::body::to_bytes(response.into_body(), 1 << 16))
                .expect("a body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[test]
    fn only_json_rpc_messages_reach_rmcp() {
        assert_eq!(refused("{not json")["error"]["code"], -32700);
        let e = refused(r#"{"id": 7, "method": 3}"#);
        assert_eq!(e["error"]["code"], -32600);
        assert_eq!(e["id"], 7);
        assert_eq!(refused("[]")["error"]["code"], -32600);
        assert!(
            check_message(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#).is_ok()
        );
    }
}
