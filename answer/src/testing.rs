//! A fake OpenAI-compatible chat-completions server on 127.0.0.1 (feature `testing`), for the
//! tests and benches of everything that talks to a language model: it answers
//! `POST /v1/chat/completions` from a script, records every request, and notices when a client
//! goes away in the middle of a streamed answer.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use chatvault_answer::testing::{FakeModel, Reply};
//! use chatvault_answer::{HttpAnswerer, HttpAnswererConfig};
//!
//! let model = FakeModel::always(Reply::answer(["It was published ", "on GitHub [1]."])).await?;
//! let config = HttpAnswererConfig::new(model.url().parse().expect("a URL"), "fake");
//! let answerer = HttpAnswerer::new(config).expect("an answerer");
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::Notify;

/// What the fake model answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// An answer of these pieces: server-sent chunks when the request asks for a stream, one
    /// completion otherwise.
    Answer(Vec<String>),
    /// This status and JSON body, with a `Retry-After` header when given.
    Status {
        /// The HTTP status.
        status: u16,
        /// The JSON body.
        body: Value,
        /// The `Retry-After` header's value.
        retry_after: Option<String>,
    },
    /// Waits this long, then answers one completion ("late [1]").
    Slow(Duration),
    /// Streams these pieces one every `every` (whatever the request asked), and counts the
    /// stream as abandoned ([`FakeModel::abandoned_streams`]) if the client closes it before
    /// the end.
    Trickle {
        /// The pieces.
        pieces: Vec<String>,
        /// The pause before each piece.
        every: Duration,
    },
}

impl Reply {
    /// [`Reply::Answer`] of these pieces.
    pub fn answer<S: Into<String>>(pieces: impl IntoIterator<Item = S>) -> Self {
        Reply::Answer(pieces.into_iter().map(Into::into).collect())
    }

    /// [`Reply::Status`] without `Retry-After`.
    pub fn status(status: u16, body: Value) -> Self {
        Reply::Status {
            status,
            body,
            retry_after: None,
        }
    }
}

/// One request the fake model received.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// The JSON body.
    pub body: Value,
    /// The `Authorization` header.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Inner {
    script: Mutex<VecDeque<Reply>>,
    /// Answers every request once the script is used up; `None`: 500 "no reply scripted".
    otherwise: Option<Reply>,
    seen: Mutex<Vec<SeenRequest>>,
    abandoned: AtomicUsize,
    abandoned_changed: Notify,
}

/// A fake OpenAI-compatible model server, listening on 127.0.0.1 until dropped.
pub struct FakeModel {
    inner: Arc<Inner>,
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeModel")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A chat completion of `text`, as OpenAI's API answers without streaming.
pub fn completion(text: &str) -> Value {
    json!({"id": "fake", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
}

fn chunk(piece: &str) -> String {
    let c = json!({"choices": [{"index": 0, "delta": {"content": piece}}]});
    format!("data: {c}\n\n")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeModel {
    /// A server answering its requests with `script`, in order; requests past its end get 500.
    ///
    /// # Errors
    /// When it cannot listen on 127.0.0.1.
    pub async fn start(script: Vec<Reply>) -> std::io::Result<Self> {
        Self::launch(script, None).await
    }

    /// A server answering every request with `reply`.
    ///
    /// # Errors
    /// When it cannot listen on 127.0.0.1.
    pub async fn always(reply: Reply) -> std::io::Result<Self> {
        Self::launch(Vec::new(), Some(reply)).await
    }

    async fn launch(script: Vec<Reply>, otherwise: Option<Reply>) -> std::io::Result<Self> {
        let inner = Arc::new(Inner {
            script: Mutex::new(script.into()),
            otherwise,
            ..Inner::default()
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeModel { inner, url, server })
    }

    /// The base URL an answerer is configured with (`http://127.0.0.1:<port>/v1`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        lock(&self.inner.seen).clone()
    }

    /// How many requests were received.
    pub fn request_count(&self) -> usize {
        lock(&self.inner.seen).len()
    }

    /// How many [`Reply::Trickle`] streams the client closed before their end.
    pub fn abandoned_streams(&self) -> usize {
        self.inner.abandoned.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` streams were abandoned, for at most `timeout`; whether they were.
    pub async fn wait_abandoned(&self, n: usize, timeout: Duration) -> bool {
        let inner = &self.inner;
        tokio::time::timeout(timeout, async {
            loop {
                let changed = inner.abandoned_changed.notified();
                if inner.abandoned.load(Ordering::SeqCst) >= n {
                    return;
                }
                changed.await;
            }
        })
        .await
        .is_ok()
    }
}

async fn chat(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Json<Value>) -> Response {
    let Json(body) = body;
    let stream = body["stream"] == json!(true);
    lock(&inner.seen).push(SeenRequest {
        body,
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    });
    let reply = lock(&inner.script)
        .pop_front()
        .or_else(|| inner.otherwise.clone());
    match reply {
        None => (StatusCode::INTERNAL_SERVER_ERROR, "no reply scripted").into_response(),
        Some(Reply::Status {
            status,
            body,
            retry_after,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = (status, Json(body)).into_response();
            if let Some(v) = retry_after.and_then(|s| s.parse().ok()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Some(Reply::Answer(pieces)) if stream => {
            let mut sse: String = pieces.iter().map(|p| chunk(p)).collect();
            sse.push_str("data: [DONE]\n\n");
            ([(header::CONTENT_TYPE, "text/event-stream")], sse).into_response()
        }
        Some(Reply::Answer(pieces)) => Json(completion(&pieces.concat())).into_response(),
        Some(Reply::Slow(d)) => {
            tokio::time::sleep(d).await;
            Json(completion("late [1]")).into_response()
        }
        Some(Reply::Trickle { pieces, every }) => trickle(inner, pieces, every),
    }
}

/// Counts the stream as abandoned when it is dropped before its end.
struct EndWatch {
    inner: Arc<Inner>,
    finished: bool,
}

impl Drop for EndWatch {
    fn drop(&mut self) {
        if !self.finished {
            self.inner.abandoned.fetch_add(1, Ordering::SeqCst);
            self.inner.abandoned_changed.notify_waiters();
        }
    }
}

fn trickle(inner: Arc<Inner>, pieces: Vec<String>, every: Duration) -> Response {
    let watch = EndWatch {
        inner,
        finished: false,
    };
    let state = (pieces.into_iter(), watch, false);
    let body = futures::stream::unfold(state, move |(mut pieces, mut watch, done)| async move {
        if done {
            return None;
        }
        tokio::time::sleep(every).await;
        let (text, done) = match pieces.next() {
            Some(p) => (chunk(&p), false),
            None => {
                watch.finished = true;
                ("data: [DONE]\n\n".to_string(), true)
            }
        };
        Some((
            Ok::<_, std::convert::Infallible>(text),
            (pieces, watch, done),
        ))
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}
