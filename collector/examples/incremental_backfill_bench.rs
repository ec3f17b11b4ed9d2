//! Bench binary: an incremental Web API backfill over 1,000 channels, 1 % of them with new
//! activity, against a local fake Slack server. Prints the requests made and the wall time of
//! the incremental run (the first, full run is not timed).
//!
//! `cargo run --release -p chatvault-collector --example incremental_backfill_bench [channels]`
//!
//! Pacing is scaled away (`rate_scale`) so that the figure is chatvault's own cost; the time
//! Slack's Tier 3 pacing alone would impose on the same requests is printed beside it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use chatvault_collector::{Backfill, BackfillOptions};
use chatvault_core::testing::MemoryMetadataStore;
use chatvault_core::{MetadataStore, SecretString, Ts, WorkspaceId};

#[derive(Default)]
struct Fake {
    channels: Vec<Value>,
    /// Newest first, by channel.
    history: HashMap<String, Vec<Value>>,
    requests: AtomicU64,
}

type Shared = Arc<Mutex<Fake>>;

async fn api(
    State(fake): State<Shared>,
    Path(method): Path<String>,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    let f = fake.lock().expect("fake lock");
    f.requests.fetch_add(1, Ordering::Relaxed);
    let ok = |key: &str, items: Vec<Value>| {
        Json(json!({"ok": true, key: items, "has_more": false,
            "response_metadata": {"next_cursor": ""}}))
        .into_response()
    };
    match method.as_str() {
        "users.list" => ok("members", vec![json!({"id":"U1","name":"ann"})]),
        "conversations.list" => ok("channels", f.channels.clone()),
        "conversations.history" => {
            let oldest: f64 = params
                .get("oldest")
                .and_then(|o| o.parse().ok())
                .unwrap_or(0.0);
            let msgs = f
                .history
                .get(params.get("channel").map(String::as_str).unwrap_or(""))
                .map(|h| {
                    h.iter()
                        .filter(|m| {
                            m["ts"]
                                .as_str()
                                .and_then(|t| t.parse::<f64>().ok())
                                .is_some_and(|t| t > oldest)
                        })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            ok("messages", msgs)
        }
        _ => Json(json!({"ok": false, "error": "unknown_method"})).into_response(),
    }
}

fn ago(minutes: i64) -> String {
    Ts::from_datetime(chrono::Utc::now() - chrono::Duration::minutes(minutes)).to_string()
}

#[tokio::main]
async fn main() -> chatvault_core::Result<()> {
    let channels: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let mut fake = Fake::default();
    for c in 0..channels {
        let id = format!("C{c:06}");
        fake.channels
            .push(json!({"id": id, "name": format!("chan-{c}"), "is_channel": true}));
        // five messages over the last five days: inside the re-read window
        let msgs = (0..5)
            .map(|i| {
                json!({"type":"message","user":"U1","ts":ago(60 * 24 * i + 5),
                    "text":format!("message {i} in channel {c}")})
            })
            .collect();
        fake.history.insert(id, msgs);
    }
    let fake: Shared = Arc::new(Mutex::new(fake));
    let app = Router::new()
        .route("/api/{method}", post(api))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| chatvault_core::Error::unavailable(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| chatvault_core::Error::unavailable(e.to_string()))?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let ws = WorkspaceId::new("T1")?;
    let backfill = || {
        Backfill::new(
            meta.clone(),
            ws.clone(),
            SecretString::new("xoxb-bench"),
            BackfillOptions {
                api_url: format!("http://{addr}/api"),
                rate_scale: 1e6,
                ..Default::default()
            },
        )
    };
    let full = backfill()?.run().await?;
    println!(
        "full run: {} channels, {} messages, {} requests",
        full.channels, full.messages, full.calls
    );

    // 1 % of the channels get a new message
    let active = (channels / 100).max(1);
    {
        let mut f = fake.lock().expect("fake lock");
        for c in 0..active {
            let id = format!("C{:06}", c * 100);
            if let Some(h) = f.history.get_mut(&id) {
                h.insert(
                    0,
                    json!({"type":"message","user":"U1","ts":ago(1),"text":"new activity"}),
                );
            }
        }
        f.requests.store(0, Ordering::Relaxed);
    }
    let start = Instant::now();
    let r = backfill()?.run().await?;
    let wall = start.elapsed();
    let requests = fake
        .lock()
        .expect("fake lock")
        .requests
        .load(Ordering::Relaxed);
    println!(
        "incremental run: {channels} channels, {active} with new activity: {requests} requests, {:.2} s wall, {} messages re-read, {} new",
        wall.as_secs_f64(),
        r.messages,
        r.late.new
    );
    println!(
        "Slack's Tier 3 pacing alone (50 history requests a minute after a burst of 8) would take about {:.0} minutes for these requests",
        (requests.saturating_sub(8) as f64) / 50.0
    );
    Ok(())
}
