//! MCP over streamable HTTP at `/mcp` in the real server (`chatvault_server::serve` on
//! 127.0.0.1, SQLite + tantivy/HNSW on disk, the bundled houstondatavis export plus one private
//! channel), driven by rmcp's own streamable-HTTP client: initialize, the tools, search; the
//! viewer comes from the server's authentication (anonymous: public channels only; a member's
//! token: the private channel too); malformed requests get JSON-RPC errors and the server keeps
//! answering.

mod archive;

use std::path::Path;
use std::sync::OnceLock;

use archive::{MEMBER, OUTSIDER, SECRET_ID, SECRET_NAME, WS};
use chatvault_core::{UserId, WorkspaceId};
use chatvault_query::Scope;
use chatvault_server::{serve, ApiToken, AppState, AuthConfig, ServerConfig};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt as _;
use serde_json::{json, Value};

const MEMBER_TOKEN: &str = "member-token";
const OUTSIDER_TOKEN: &str = "outsider-token";

static SERVER: OnceLock<String> = OnceLock::new();

/// The server's base URL (started once, on a runtime of its own, for every test).
fn server() -> &'static str {
    SERVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the server");
            rt.block_on(async move {
                let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
                let url = start(dir.path()).await;
                tx.send(url).expect("the tests wait for the server");
                std::future::pending::<()>().await;
                drop(dir);
            });
        });
        rx.recv().expect("the server starts")
    })
}

async fn start(dir: &Path) -> String {
    let stores = archive::import(dir, archive::export_with_private_channel(dir)).await;
    let ws = WorkspaceId::new(WS).expect("id");
    let user = |id: &str| Scope::User(UserId::new(id).expect("user id"));
    let config = ServerConfig {
        relay: None,
        workspaces: Some(vec![ws]),
        auth: AuthConfig {
            tokens: vec![
                ApiToken::from_secret(MEMBER_TOKEN, user(MEMBER)),
                ApiToken::from_secret(OUTSIDER_TOKEN, user(OUTSIDER)),
            ],
            trusted_email_header: None,
        },
        ..ServerConfig::default()
    };
    let state = AppState::new(stores.meta, stores.content, stores.embedder, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(serve(listener, state, std::future::pending()));
    url
}

/// An rmcp client of `path`, with a bearer token or anonymous.
async fn connect(path: &str, token: Option<&str>) -> RunningService<RoleClient, ()> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("{}{path}", server()));
    if let Some(t) = token {
        config = config.auth_header(t);
    }
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("MCP initialize over HTTP")
}

async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &'static str,
    args: Value,
) -> (Value, bool) {
    let result: CallToolResult = client
        .call_tool(
            CallToolRequestParams::new(tool)
                .with_arguments(args.as_object().expect("arguments object").clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let text: String = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (value, result.is_error == Some(true))
}

async fn channel_names(client: &RunningService<RoleClient, ()>) -> Vec<String> {
    let (channels, is_error) = call(client, "list_channels", json!({})).await;
    assert!(!is_error, "{channels}");
    channels["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect()
}

#[tokio::test]
async fn mcp_over_http_initializes_lists_tools_and_searches() {
    let client = connect("/mcp", None).await;
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("chatvault")
    );
    let mut tools: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    tools.sort();
    assert_eq!(
        tools,
        [
            "ask",
            "digest",
            "get_context",
            "get_thread",
            "list_channels",
            "search_messages"
        ]
    );
    let (found, is_error) = call(
        &client,
        "search_messages",
        json!({"query": "cleaned up data from the data jam published", "limit": 5}),
    )
    .await;
    assert!(!is_error, "{found}");
    let hits = found["hits"].as_array().expect("hits");
    assert!(!hits.is_empty(), "{found}");
    assert!(
        hits.iter().any(|h| h["text"]
            .as_str()
            .is_some_and(|t| t.to_lowercase().contains("github"))),
        "the data jam's publication is found: {found}"
    );
    client.cancel().await.expect("close");

    // The workspace named in the path serves the same.
    let named = connect(&format!("/mcp/{WS}"), None).await;
    assert!(channel_names(&named)
        .await
        .contains(&"#datajam".to_string()));
    named.cancel().await.expect("close");
}

#[tokio::test]
async fn a_private_channel_is_visible_only_with_a_members_token() {
    for (token, sees) in [
        (None, false),
        (Some(OUTSIDER_TOKEN), false),
        (Some(MEMBER_TOKEN), true),
    ] {
        let client = connect("/mcp", token).await;
        let who = token.unwrap_or("anonymous");
        let names = channel_names(&client).await;
        assert!(names.contains(&"#datajam".to_string()), "{who}: {names:?}");
        assert_eq!(
            names.contains(&format!("#{SECRET_NAME}")),
            sees,
            "{who}: {names:?}"
        );

        let (found, is_error) = call(
            &client,
            "search_messages",
            json!({"query": "zanzibar zeppelin budget gala", "limit": 50}),
        )
        .await;
        assert!(!is_error, "{who}: {found}");
        let text = found.to_string();
        assert_eq!(text.contains("zanzibar"), sees, "{who}: {text}");
        if !sees {
            assert!(
                !text.contains(SECRET_ID) && !text.contains(SECRET_NAME),
                "{who}: {text}"
            );
        }

        let (read, is_error) = call(
            &client,
            "get_thread",
            json!({"channel": SECRET_ID, "ts": "1433900000.000100"}),
        )
        .await;
        assert_eq!(!is_error, sees, "{who}: {read}");
        assert_eq!(read.to_string().contains("zanzibar"), sees, "{who}: {read}");
        client.cancel().await.expect("close");
    }
}

/// A raw POST to `/mcp` as an MCP client sends it.
async fn post(body: &str, extra: &[(&str, &str)]) -> (reqwest::StatusCode, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/mcp", server()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let response = request
        .body(body.to_string())
        .send()
        .await
        .expect("POST /mcp");
    let status = response.status();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn malformed_requests_get_json_rpc_errors_and_the_server_keeps_answering() {
    let (status, body) = post("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\"", &[]).await;
    assert_eq!(status, 400, "{body}");
    let e: Value = serde_json::from_str(&body).expect("JSON-RPC");
    assert_eq!(e["jsonrpc"], "2.0");
    assert_eq!(e["error"]["code"], -32700, "{e}");

    let (status, body) = post(r#"{"jsonrpc": "2.0", "id": 2, "method": 42}"#, &[]).await;
    assert_eq!(status, 400, "{body}");
    let e: Value = serde_json::from_str(&body).expect("JSON-RPC");
    assert_eq!(
        (e["id"].clone(), e["error"]["code"].clone()),
        (json!(2), json!(-32600)),
        "{e}"
    );

    // A well-formed request for a method that does not exist: rmcp's JSON-RPC error.
    let (status, body) = post(
        r#"{"jsonrpc": "2.0", "id": 3, "method": "tools/explode", "params": {}}"#,
        &[],
    )
    .await;
    let e: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: {body}"));
    assert_eq!(e["id"], 3, "{e}");
    assert_eq!(e["error"]["code"], -32601, "{e}");

    // A browser's request (it carries Origin) is refused: a web page cannot drive the archive.
    let (status, body) = post(
        r#"{"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {}}"#,
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // An unknown token is 401, never downgraded to anonymous.
    let (status, body) = post(
        r#"{"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {}}"#,
        &[("authorization", "Bearer not-a-token")],
    )
    .await;
    assert_eq!(status, 401, "{body}");

    // The server still answers.
    let (status, body) = post(
        r#"{"jsonrpc": "2.0", "id": 6, "method": "tools/list", "params": {}}"#,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).expect("a JSON response");
    assert_eq!(listed["id"], 6, "{listed}");
    assert_eq!(
        listed["result"]["tools"].as_array().map(Vec::len),
        Some(6),
        "{listed}"
    );
}
