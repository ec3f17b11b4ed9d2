//! The Web API backfill against a local fake Slack server: pagination, 429 + Retry-After, 5xx,
//! API errors, resumable cursors and incremental reruns.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use chatvault_collector::{Backfill, BackfillOptions, WEB_API_SOURCE};
use chatvault_core::testing::MemoryMetadataStore;
use chatvault_core::{ChannelId, ErrorKind, MetadataStore, SecretString, SyncState, WorkspaceId};
use common::*;

#[derive(Default)]
struct Fake {
    /// C1's history, newest first.
    history: Vec<Value>,
    replies: HashMap<String, Vec<Value>>,
    /// (method, params) of every request
    log: Vec<(String, HashMap<String, String>)>,
    rate_limit_next_history: bool,
    fail_next_replies_500: bool,
    fail_history_page_with_cursor: Option<String>,
    /// The body `users.list` answers instead of the users.
    users_list_answer: Option<Value>,
}

type Shared = Arc<Mutex<Fake>>;

fn page(items: &[Value], params: &HashMap<String, String>, key: &str) -> Value {
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    let off: usize = params
        .get("cursor")
        .and_then(|c| c.strip_prefix("off:"))
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let end = (off + limit).min(items.len());
    let next = if end < items.len() {
        format!("off:{end}")
    } else {
        String::new()
    };
    json!({"ok": true, key: items[off.min(items.len())..end], "has_more": end < items.len(),
        "response_metadata": {"next_cursor": next}})
}

async fn api(
    State(fake): State<Shared>,
    Path(method): Path<String>,
    headers: HeaderMap,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    if headers.get("authorization").and_then(|h| h.to_str().ok()) != Some("Bearer xoxb-test-secret")
    {
        return Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    let mut f = fake.lock().unwrap();
    f.log.push((method.clone(), params.clone()));
    match method.as_str() {
        "users.list" => {
            if let Some(answer) = f.users_list_answer.clone() {
                return Json(answer).into_response();
            }
            let users = vec![
                json!({"id":"U1","name":"ann","profile":{"display_name":"Ann"}}),
                json!({"id":"U2","name":"bob"}),
                json!({"id":"U3","name":"cat","deleted":true}),
            ];
            Json(page(&users, &params, "members")).into_response()
        }
        "conversations.list" => {
            let chans = vec![
                json!({"id":"C1","name":"general","is_channel":true,"is_private":false,"created":1600000000}),
                json!({"id":"C2","name":"secret","is_channel":true,"is_private":true}),
            ];
            Json(page(&chans, &params, "channels")).into_response()
        }
        "conversations.history" => {
            if params.get("channel").map(String::as_str) == Some("C2") {
                return Json(json!({"ok": false, "error": "not_in_channel"})).into_response();
            }
            if std::mem::take(&mut f.rate_limit_next_history) {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("Retry-After", "1")],
                    "slow down",
                )
                    .into_response();
            }
            if f.fail_history_page_with_cursor.is_some()
                && params.get("cursor") == f.fail_history_page_with_cursor.as_ref()
            {
                f.fail_history_page_with_cursor = None;
                return Json(json!({"ok": false, "error": "internal_error"})).into_response();
            }
            let oldest: Option<f64> = params.get("oldest").and_then(|o| o.parse().ok());
            let msgs: Vec<Value> = f
                .history
                .iter()
                .filter(|m| {
                    oldest.is_none_or(|o| m["ts"].as_str().unwrap().parse::<f64>().unwrap() > o)
                })
                .cloned()
                .collect();
            Json(page(&msgs, &params, "messages")).into_response()
        }
        "conversations.replies" => {
            if std::mem::take(&mut f.fail_next_replies_500) {
                return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
            }
            let ts = params.get("ts").cloned().unwrap_or_default();
            match f.replies.get(&ts) {
                Some(r) => Json(page(r, &params, "messages")).into_response(),
                None => Json(json!({"ok": false, "error": "thread_not_found"})).into_response(),
            }
        }
        _ => Json(json!({"ok": false, "error": "unknown_method"})).into_response(),
    }
}

async fn serve(fake: Shared) -> String {
    let app = Router::new()
        .route("/api/{method}", post(api))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/api")
}

fn m(ts: &str, text: &str) -> Value {
    json!({"type":"message","user":"U1","ts":ts,"text":text})
}

#[tokio::test]
async fn backfill_paginates_retries_resumes_and_continues_incrementally() {
    let parent = json!({"type":"message","user":"U1","ts":"1600000500.000100","text":"thread start <https://example.com/a>",
        "thread_ts":"1600000500.000100","reply_count":2,"reply_users":["U2"],"latest_reply":"1600000520.000100",
        "reactions":[{"name":"+1","users":["U2"],"count":1}]});
    let fake: Shared = Arc::new(Mutex::new(Fake {
        history: vec![
            parent.clone(),
            m("1600000400.000100", "four"),
            m("1600000300.000100", "three"),
            json!({"type":"message","subtype":"channel_join","user":"U2","ts":"1600000200.000100","text":"<@U2> has joined"}),
            m("1600000100.000100", "one"),
        ],
        replies: HashMap::from([(
            "1600000500.000100".to_string(),
            vec![
                parent,
                json!({"type":"message","user":"U2","ts":"1600000510.000100","thread_ts":"1600000500.000100","text":"reply one"}),
                json!({"type":"message","user":"U2","ts":"1600000520.000100","thread_ts":"1600000500.000100","text":"reply two"}),
            ],
        )]),
        rate_limit_next_history: true,
        fail_next_replies_500: true,
        fail_history_page_with_cursor: Some("off:2".into()),
        ..Default::default()
    }));
    let url = serve(fake.clone()).await;
    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let ws = WorkspaceId::new("T1").unwrap();
    let options = BackfillOptions {
        api_url: url.clone(),
        page_size: 2,
        ..Default::default()
    };
    let backfill = || {
        Backfill::new(
            meta.clone(),
            ws.clone(),
            SecretString::new("xoxb-test-secret"),
            options.clone(),
        )
        .unwrap()
    };
    let c1 = ChannelId::new("C1").unwrap();
    assert!(meta.list_workspaces().await.unwrap().is_empty());

    // run 1: 429 waited out, 500 retried, page 2 of C1 fails, C2 is not accessible
    let r1 = backfill().run().await.unwrap();
    assert!(meta.get_workspace(&ws).await.unwrap().is_some());
    assert_eq!((r1.users, r1.channels), (3, 2));
    assert_eq!(r1.rate_limited, 1);
    assert!(r1.retries >= 1);
    assert_eq!(r1.channels_failed.len(), 2, "{:?}", r1.channels_failed);
    assert!(r1.channels_failed.iter().all(|(_, e)| !e.contains("xoxb")));
    assert!(r1
        .channels_failed
        .iter()
        .any(|(c, e)| c.as_str() == "C2" && e.contains("not_in_channel")));
    // page 1 (parent + "four") and the two replies were committed with the cursor
    assert_eq!(r1.messages, 4);
    let status = |meta: Arc<dyn MetadataStore>| {
        let ws = ws.clone();
        let c1 = c1.clone();
        async move {
            meta.list_sync_status(&ws)
                .await
                .unwrap()
                .into_iter()
                .find(|s| s.channel == c1 && s.source == WEB_API_SOURCE)
                .unwrap()
        }
    };
    let s = status(meta.clone()).await;
    assert_eq!(s.state, SyncState::Failed);
    assert!(s.cursor.as_deref().unwrap().ends_with("off:2"));

    // run 2 resumes C1 from its cursor: page 1 is not fetched again
    let before = fake.lock().unwrap().log.len();
    let r2 = backfill().run().await.unwrap();
    {
        let f = fake.lock().unwrap();
        let hist: Vec<_> = f.log[before..]
            .iter()
            .filter(|(m, p)| {
                m == "conversations.history" && p.get("channel").map(String::as_str) == Some("C1")
            })
            .collect();
        assert_eq!(hist[0].1.get("cursor").map(String::as_str), Some("off:2"));
        assert_eq!(hist.len(), 2);
    }
    assert_eq!(r2.messages, 3);
    let s = status(meta.clone()).await;
    assert_eq!(s.state, SyncState::Complete);
    assert_eq!(s.latest_ts.as_ref().unwrap().as_str(), "1600000500.000100");
    let msgs = channel_messages(meta.as_ref(), &ws, &c1).await;
    assert_eq!(msgs.len(), 7);
    assert_eq!(msgs.iter().filter(|d| d.meta.is_reply()).count(), 2);
    assert_eq!(msgs.iter().map(|d| d.meta.reaction_count).sum::<u32>(), 1);
    assert_eq!(msgs.iter().map(|d| d.links.len()).sum::<usize>(), 1);

    // run 3: a finished channel fetches only what is new
    fake.lock()
        .unwrap()
        .history
        .insert(0, m("1600000600.000100", "brand new"));
    let before = fake.lock().unwrap().log.len();
    let r3 = backfill().run().await.unwrap();
    assert_eq!(r3.messages, 1);
    assert_eq!(r3.outbox_enqueued, 1);
    {
        let f = fake.lock().unwrap();
        let hist: Vec<_> = f.log[before..]
            .iter()
            .filter(|(m, p)| {
                m == "conversations.history" && p.get("channel").map(String::as_str) == Some("C1")
            })
            .collect();
        assert_eq!(hist.len(), 1);
        assert_eq!(
            hist[0].1.get("oldest").map(String::as_str),
            Some("1600000500.000100")
        );
    }
    assert_eq!(channel_messages(meta.as_ref(), &ws, &c1).await.len(), 8);
}

#[tokio::test]
async fn bad_token_stops_the_run_without_leaking_it_or_storing_anything() {
    let url = serve(Arc::new(Mutex::new(Fake::default()))).await;
    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let b = Backfill::new(
        meta.clone(),
        WorkspaceId::new("T1").unwrap(),
        SecretString::new("xoxb-wrong-token"),
        BackfillOptions {
            api_url: url,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!format!("{b:?}").contains("xoxb-wrong"));
    let e = b.run().await.unwrap_err();
    // no empty workspace left behind to make every later command ask for --workspace
    assert!(meta.list_workspaces().await.unwrap().is_empty());
    // a bad token is bad input (CLI exit 3), not a conflict with what is stored
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("invalid_auth"), "{e}");
    assert!(e.to_string().contains("rejected the token"), "{e}");
    assert!(!e.to_string().contains("wrong-token") && !format!("{e:?}").contains("wrong-token"));
}

/// Runs a backfill of workspace T1 into a fresh memory store with `options`, expecting it to
/// fail, and checks the token appears nowhere in the error.
async fn failing_backfill(
    options: BackfillOptions,
) -> (chatvault_core::Error, Arc<dyn MetadataStore>) {
    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let e = Backfill::new(
        meta.clone(),
        WorkspaceId::new("T1").unwrap(),
        SecretString::new("xoxb-test-secret"),
        options,
    )
    .unwrap()
    .run()
    .await
    .unwrap_err();
    assert!(!e.to_string().contains("test-secret"), "{e}");
    assert!(!format!("{e:?}").contains("test-secret"), "{e:?}");
    (e, meta)
}

/// Runs a backfill whose `users.list` answers `answer`, expecting it to fail.
async fn first_call_fails_with(answer: Value) -> (chatvault_core::Error, Arc<dyn MetadataStore>) {
    let url = serve(Arc::new(Mutex::new(Fake {
        users_list_answer: Some(answer),
        ..Default::default()
    })))
    .await;
    failing_backfill(BackfillOptions {
        api_url: url,
        max_rate_limit_waits: 0,
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn slack_error_codes_map_to_kinds_a_caller_can_act_on() {
    let (e, meta) = first_call_fails_with(
        json!({"ok": false, "error": "missing_scope", "needed": "users:read", "provided": "chat:write"}),
    )
    .await;
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("lacks the scope users:read"), "{e}");
    assert!(meta.list_workspaces().await.unwrap().is_empty());

    let (e, _) = first_call_fails_with(json!({"ok": false, "error": "token_revoked"})).await;
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("rejected the token"), "{e}");

    let (e, _) =
        first_call_fails_with(json!({"ok": false, "error": "not_allowed_token_type"})).await;
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");

    // rate limited past the waits allowed: retrying later may work
    let (e, _) = first_call_fails_with(json!({"ok": false, "error": "ratelimited"})).await;
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());

    let (e, _) = first_call_fails_with(json!({"ok": false, "error": "channel_not_found"})).await;
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    let (e, _) = first_call_fails_with(json!({"ok": false, "error": "something_new"})).await;
    assert_eq!(e.kind(), ErrorKind::Backend, "{e}");
    assert!(e.to_string().contains("something_new"), "{e}");
}

#[tokio::test]
async fn an_unreachable_api_says_why_and_stores_nothing() {
    // a port nothing listens on: bound, then released
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // `failing_backfill` checks the token is in neither the message nor the Debug form
    let (e, meta) = failing_backfill(BackfillOptions {
        api_url: format!("http://127.0.0.1:{port}/api"),
        max_retries: 0,
        ..Default::default()
    })
    .await;
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    // the cause, not just reqwest's "error sending request"
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
    assert!(meta.list_workspaces().await.unwrap().is_empty());
}
