//! Socket Mode against a local fake of Slack: `apps.connections.open` and the WebSocket.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{any, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use chatvault_core::{
    ContentStore, Embedder, HashingEmbedder, MessageFilter, MetadataStore, SecretString, Workspace,
    WorkspaceId,
};
use chatvault_server::{run_socket_mode, AppState, ServerConfig, SocketModeOptions};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};

const GOOD_TOKEN: &str = "xapp-1-good-token";

/// The fake's record of what the client did.
#[derive(Default)]
struct Fake {
    addr: Mutex<Option<SocketAddr>>,
    opens: AtomicUsize,
    connections: AtomicUsize,
    acks: Mutex<Vec<String>>,
    /// Answer every connection with `disconnect: link_disabled` (Socket Mode turned off).
    link_disabled: bool,
    /// End connection 1 by dropping the socket, without `disconnect` or a close frame.
    drop_first: bool,
}

fn message_payload(team: &str, event_id: &str, ts: &str, text: &str) -> Value {
    json!({
        "type": "event_callback", "team_id": team, "event_id": event_id,
        "event": {"type": "message", "channel": "C1", "channel_type": "channel",
                  "user": "U1", "ts": ts, "text": text}
    })
}

fn envelope(id: &str, payload: Value) -> String {
    json!({"envelope_id": id, "type": "events_api", "payload": payload,
           "accepts_response_payload": false, "retry_attempt": 0})
    .to_string()
}

async fn open(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Json<Value> {
    fake.opens.fetch_add(1, Ordering::SeqCst);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {GOOD_TOKEN}") {
        return Json(json!({"ok": false, "error": "invalid_auth"}));
    }
    let addr = fake
        .addr
        .lock()
        .unwrap()
        .expect("the fake knows its address");
    Json(json!({"ok": true, "url": format!("ws://{addr}/ws")}))
}

async fn ws(State(fake): State<Arc<Fake>>, upgrade: WebSocketUpgrade) -> impl IntoResponse {
    upgrade.on_upgrade(move |socket| connection(fake, socket))
}

/// Sends `envelope` and records the acknowledgement that follows (`None` if the socket ends).
async fn send_and_await_ack(fake: &Fake, socket: &mut WebSocket, envelope: String) -> Option<()> {
    socket.send(Message::Text(envelope.into())).await.ok()?;
    loop {
        match socket.recv().await? {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).ok()?;
                let id = v.get("envelope_id")?.as_str()?.to_string();
                fake.acks.lock().unwrap().push(id);
                return Some(());
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Connection 1: hello, one message, disconnect. Connection 2: hello, an event from a team that
/// is not stored, a second message, then it stays open until the client leaves.
async fn connection(fake: Arc<Fake>, mut socket: WebSocket) {
    let n = fake.connections.fetch_add(1, Ordering::SeqCst) + 1;
    let hello = json!({"type": "hello", "num_connections": 1,
                       "connection_info": {"app_id": "A1"}});
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    if fake.link_disabled {
        let off = json!({"type": "disconnect", "reason": "link_disabled"});
        let _ = socket.send(Message::Text(off.to_string().into())).await;
        return;
    }
    if n == 1 {
        let e = envelope(
            "env-1",
            message_payload("T0001", "Ev1", "1700000000.000100", "first over the socket"),
        );
        if send_and_await_ack(&fake, &mut socket, e).await.is_none() {
            return;
        }
        if fake.drop_first {
            return;
        }
        let bye = json!({"type": "disconnect", "reason": "refresh_requested"});
        let _ = socket.send(Message::Text(bye.to_string().into())).await;
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    let unknown = envelope(
        "env-unknown",
        message_payload("T9999", "Ev9", "1700000000.000900", "from elsewhere"),
    );
    if send_and_await_ack(&fake, &mut socket, unknown)
        .await
        .is_none()
    {
        return;
    }
    let e = envelope(
        "env-2",
        message_payload(
            "T0001",
            "Ev2",
            "1700000001.000200",
            "second after the reconnect",
        ),
    );
    if send_and_await_ack(&fake, &mut socket, e).await.is_none() {
        return;
    }
    while let Some(Ok(m)) = socket.recv().await {
        if matches!(m, Message::Close(_)) {
            break;
        }
    }
}

async fn fake_slack() -> (Arc<Fake>, String) {
    fake_slack_with(Fake::default()).await
}

async fn fake_slack_with(fake: Fake) -> (Arc<Fake>, String) {
    let fake = Arc::new(fake);
    let app = Router::new()
        .route("/apps.connections.open", post(open))
        .route("/ws", any(ws))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    *fake.addr.lock().unwrap() = Some(addr);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, format!("http://{addr}"))
}

async fn state(dir: &std::path::Path) -> (AppState, Arc<dyn MetadataStore>, WorkspaceId) {
    let meta: Arc<dyn MetadataStore> = Arc::new(
        SqlMetadataStore::open_sqlite(dir.join("metadata.db"), ConnectOptions::default())
            .await
            .unwrap(),
    );
    let content: Arc<dyn ContentStore> =
        Arc::new(VectorStore::open(dir.join("vectors"), VectorStoreOptions::default()).unwrap());
    let embedder: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(384).unwrap());
    let ws = WorkspaceId::new("T0001").unwrap();
    meta.upsert_workspace(&Workspace::new(ws.clone(), "Acme"))
        .await
        .unwrap();
    let config = ServerConfig {
        relay: None,
        ..ServerConfig::default()
    };
    (
        AppState::new(meta.clone(), content, embedder, config),
        meta,
        ws,
    )
}

fn options(api_url: String, token: &str) -> SocketModeOptions {
    let mut o = SocketModeOptions::new(SecretString::new(token));
    o.api_url = api_url;
    o.backoff_base = Duration::from_millis(50);
    o.backoff_max = Duration::from_millis(200);
    o
}

#[tokio::test]
async fn events_are_acked_and_stored_across_a_reconnect() {
    two_connections(Fake::default()).await;
}

#[tokio::test]
async fn a_dropped_socket_reconnects_after_a_backoff() {
    two_connections(Fake {
        drop_first: true,
        ..Fake::default()
    })
    .await;
}

/// Runs the client against two connections of the fake: both messages stored, every envelope
/// acked with its own id, a fresh `apps.connections.open` for the second connection.
async fn two_connections(fake: Fake) {
    let (fake, api_url) = fake_slack_with(fake).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, meta, ws) = state(dir.path()).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(run_socket_mode(
        state.clone(),
        options(api_url, GOOD_TOKEN),
        async move {
            let _ = stopped.await;
        },
    ));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n = meta
            .count_messages(&ws, &MessageFilter::default())
            .await
            .unwrap();
        if n >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {n} of 2 messages stored; acks so far: {:?}",
            fake.acks.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(
        *fake.acks.lock().unwrap(),
        ["env-1", "env-unknown", "env-2"],
        "every envelope is acked with its own id, the unknown team's too"
    );
    assert_eq!(
        fake.opens.load(Ordering::SeqCst),
        2,
        "the end of connection 1 made the client open a fresh one"
    );
    assert_eq!(fake.connections.load(Ordering::SeqCst), 2);
    assert_eq!(
        meta.count_messages(&ws, &MessageFilter::default())
            .await
            .unwrap(),
        2
    );
    let unknown = WorkspaceId::new("T9999").unwrap();
    assert!(meta.get_workspace(&unknown).await.unwrap().is_none());

    let metrics = state.metrics().render();
    assert!(
        metrics.contains(r#"chatvault_events_applied_total{kind="message"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"chatvault_events_rejected_total{kind="unknown_team"} 1"#),
        "{metrics}"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("run_socket_mode stops on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_refused_token_is_an_error_naming_slacks_code() {
    let (fake, api_url) = fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    let (state, _meta, _ws) = state(dir.path()).await;
    let secret = "xapp-1-wrong-token-do-not-print";
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        run_socket_mode(state, options(api_url, secret), std::future::pending()),
    )
    .await
    .expect("a refused token ends the loop instead of retrying forever");
    let err = result.expect_err("the token was refused");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("invalid_auth"), "{shown}");
    assert!(!shown.contains(secret), "the token leaked: {shown}");
    assert!(!err.is_retryable());
    assert_eq!(fake.opens.load(Ordering::SeqCst), 1);
    assert_eq!(fake.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_workspace_that_is_not_stored_is_refused_before_connecting() {
    let (fake, api_url) = fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    let (state, _meta, _ws) = state(dir.path()).await;
    let mut o = options(api_url, GOOD_TOKEN);
    o.workspace = Some(WorkspaceId::new("T4040").unwrap());
    let err = run_socket_mode(state, o, std::future::pending())
        .await
        .expect_err("no such workspace");
    assert_eq!(err.kind(), chatvault_core::ErrorKind::NotFound);
    assert_eq!(fake.opens.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn socket_mode_turned_off_ends_the_loop() {
    let (fake, api_url) = fake_slack_with(Fake {
        link_disabled: true,
        ..Fake::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (state, _meta, _ws) = state(dir.path()).await;
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        run_socket_mode(state, options(api_url, GOOD_TOKEN), std::future::pending()),
    )
    .await
    .expect("link_disabled is not retried")
    .expect_err("Socket Mode is off");
    assert!(err.to_string().contains("link_disabled"), "{err}");
    assert_eq!(fake.connections.load(Ordering::SeqCst), 1);
}
