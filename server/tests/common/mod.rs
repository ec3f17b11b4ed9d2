//! The test server: real HTTP on 127.0.0.1:0, a real SQLite (or, with
//! `CHATVAULT_TEST_DATABASE_URL`, PostgreSQL) metadata store and a real vector store, requests
//! signed as Slack documents it.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatvault_core::{
    ContentStore, HashingEmbedder, MetadataStore, SecretString, Workspace, WorkspaceId,
};
use chatvault_query::{SearchMode, SearchRequest};
use chatvault_server::{serve, AppState, ServerConfig};
use chatvault_storage_postgres::testing::TestDatabase;
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::oneshot;

pub const SECRET: &str = "test-signing-secret";
pub const TEAM: &str = "T0001";

pub struct Server {
    pub url: String,
    pub state: AppState,
    pub ws: WorkspaceId,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<chatvault_core::Result<()>>,
    _dir: tempfile::TempDir,
    _database: Option<TestDatabase>,
}

/// Which metadata store a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub async fn start_with(secret: Option<&str>) -> Server {
    start_on(Backend::Sqlite, secret)
        .await
        .expect("SQLite is always there")
}

/// A server on `backend`; `None` (after saying so) for PostgreSQL when
/// `CHATVAULT_TEST_DATABASE_URL` is not set (a failure under `CI=true`).
pub async fn start_on(backend: Backend, secret: Option<&str>) -> Option<Server> {
    let dir = tempfile::tempdir().unwrap();
    let (meta, database): (Arc<dyn MetadataStore>, _) = match backend {
        Backend::Sqlite => (
            Arc::new(
                SqlMetadataStore::open_sqlite(
                    dir.path().join("metadata.db"),
                    ConnectOptions::default(),
                )
                .await
                .unwrap(),
            ),
            None,
        ),
        Backend::Postgres => {
            let db = TestDatabase::create().await?;
            let store = SqlMetadataStore::connect(db.url(), ConnectOptions::default())
                .await
                .unwrap();
            (Arc::new(store), Some(db))
        }
    };
    let vector =
        VectorStore::open(dir.path().join("content"), VectorStoreOptions::default()).unwrap();
    let ws = WorkspaceId::new(TEAM).unwrap();
    vector.acquire_writer(&ws, Duration::ZERO).unwrap();
    meta.upsert_workspace(&Workspace::new(ws.clone(), "Acme"))
        .await
        .unwrap();
    let content: Arc<dyn ContentStore> = Arc::new(vector);
    let config = ServerConfig {
        signing_secret: secret.map(SecretString::new),
        workspaces: Some(vec![ws.clone()]),
        ..ServerConfig::default()
    };
    let state = AppState::new(
        meta,
        content,
        Arc::new(HashingEmbedder::new(384).unwrap()),
        config,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    let server = Server {
        url,
        state,
        ws,
        client: reqwest::Client::new(),
        stop: Some(stop),
        task,
        _dir: dir,
        _database: database,
    };
    if secret.is_some() {
        // Public search sees the channels the archive knows: announce #general as Slack does.
        let created = envelope(
            "EvChannel",
            json!({"type": "channel_created",
                   "channel": {"id": "C1", "name": "general", "created": 1_700_000_000,
                               "creator": "U1"}}),
        );
        let (status, body) = server.post(&created).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    Some(server)
}

pub async fn start() -> Server {
    start_with(Some(SECRET)).await
}

/// `v0=` + hex(HMAC-SHA256(secret, "v0:{timestamp}:{body}")), as Slack signs.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("v0={hex}")
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Server {
    /// Posts `body` signed at `timestamp` with `secret`, plus `extra` headers.
    pub async fn post_raw(
        &self,
        body: Vec<u8>,
        secret: &str,
        timestamp: i64,
        extra: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .post(format!("{}/slack/events", self.url))
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header("x-slack-signature", sign(secret, timestamp, &body));
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let resp = req.body(body).send().await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = resp.text().await.unwrap();
        assert!(
            ct.starts_with("application/json"),
            "{status}: not JSON ({ct}): {text}"
        );
        (status, serde_json::from_str(&text).unwrap())
    }

    pub async fn post(&self, payload: &Value) -> (StatusCode, Value) {
        self.post_raw(payload.to_string().into_bytes(), SECRET, now(), &[])
            .await
    }

    pub async fn stats(&self) -> chatvault_core::WorkspaceStats {
        self.state.meta().stats(&self.ws).await.unwrap()
    }

    /// The texts a hybrid search for `query` finds, once the relay has delivered every
    /// pending entry.
    pub async fn search(&self, query: &str) -> Vec<String> {
        self.search_as(SearchRequest::new(query)).await
    }

    /// As [`search`](Self::search), by words only (a vector search always finds neighbours,
    /// so "no longer found" is asked of the lexical index).
    pub async fn lexical(&self, query: &str) -> Vec<String> {
        let mut request = SearchRequest::new(query);
        request.mode = SearchMode::Lexical;
        self.search_as(request).await
    }

    pub async fn search_as(&self, request: SearchRequest) -> Vec<String> {
        self.delivered().await;
        let r = self.state.engine().search(&self.ws, request).await.unwrap();
        r.hits
            .into_iter()
            .map(|h| h.message.text.unwrap_or_default())
            .collect()
    }

    /// Waits until the outbox is empty (the relay runs in the background).
    pub async fn delivered(&self) {
        let started = Instant::now();
        loop {
            let s = self.state.meta().outbox_stats(None).await.unwrap();
            if s.pending == 0 && s.leased == 0 {
                assert_eq!(s.dead, 0, "dead-lettered deliveries");
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the relay did not deliver: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

pub fn envelope(id: &str, event: Value) -> Value {
    json!({"token": "x", "team_id": TEAM, "api_app_id": "A1", "type": "event_callback",
           "event_id": id, "event_time": 1_700_000_000, "event": event})
}

pub fn message(ts: &str, text: &str) -> Value {
    envelope(
        &format!("Ev{ts}"),
        json!({"type": "message", "channel": "C1", "channel_type": "channel", "user": "U1",
               "ts": ts, "text": text}),
    )
}

pub fn enqueued(body: &Value) -> u64 {
    body["report"]["outbox_enqueued"].as_u64().unwrap()
}

/// Runs `$body` (an async fn taking a started [`Server`]) on SQLite and on PostgreSQL, as two
/// tests (the PostgreSQL one says it is skipped without `CHATVAULT_TEST_DATABASE_URL`).
#[macro_export]
macro_rules! on_both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let s = $crate::common::start_on(
                    $crate::common::Backend::Sqlite,
                    Some($crate::common::SECRET),
                )
                .await
                .expect("SQLite");
                super::$body(s).await;
            }

            #[tokio::test]
            async fn postgres() {
                let Some(s) = $crate::common::start_on(
                    $crate::common::Backend::Postgres,
                    Some($crate::common::SECRET),
                )
                .await
                else {
                    return;
                };
                super::$body(s).await;
            }
        }
    };
}
