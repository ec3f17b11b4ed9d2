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
    /// What `conversations.list` answers instead of C1 and C2.
    channels: Option<Vec<Value>>,
    /// Histories of conversations other than C1, newest first.
    histories: HashMap<String, Vec<Value>>,
    /// `conversations.members` by conversation.
    members: HashMap<String, Vec<String>>,
    /// Answer history and replies as Slack does for apps under the reduced limits: at most 15
    /// messages a page whatever the `limit`.
    reduced: bool,
    /// When each request arrived, by method.
    arrived: Vec<(String, std::time::Instant)>,
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
    f.arrived.push((method.clone(), std::time::Instant::now()));
    let mut params = params;
    if f.reduced && method.starts_with("conversations.") && method != "conversations.list" {
        let asked: usize = params
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(100);
        params.insert("limit".into(), asked.min(15).to_string());
    }
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
            let chans = f.channels.clone().unwrap_or_else(|| {
                vec![
                    json!({"id":"C1","name":"general","is_channel":true,"is_private":false,"created":1600000000}),
                    json!({"id":"C2","name":"secret","is_channel":true,"is_private":true}),
                ]
            });
            Json(page(&chans, &params, "channels")).into_response()
        }
        "conversations.members" => {
            let channel = params.get("channel").cloned().unwrap_or_default();
            match f.members.get(&channel) {
                Some(m) => {
                    let m: Vec<Value> = m.iter().map(|u| json!(u)).collect();
                    Json(page(&m, &params, "members")).into_response()
                }
                None => Json(json!({"ok": false, "error": "channel_not_found"})).into_response(),
            }
        }
        "conversations.history" => {
            let channel = params.get("channel").cloned().unwrap_or_default();
            if let Some(h) = f.histories.get(&channel) {
                return Json(page(h, &params, "messages")).into_response();
            }
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
            let bound = |name: &str| params.get(name).and_then(|o| o.parse::<f64>().ok());
            let (oldest, latest) = (bound("oldest"), bound("latest"));
            let inclusive = params.get("inclusive").map(String::as_str) == Some("true");
            let msgs: Vec<Value> = f
                .history
                .iter()
                .filter(|m| {
                    let t: f64 = m["ts"].as_str().unwrap().parse().unwrap();
                    oldest.is_none_or(|o| t > o || (inclusive && t == o))
                        && latest.is_none_or(|l| t < l || (inclusive && t == l))
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

/// The token the fake server accepts.
const TOKEN: &str = "xoxb-test-secret";

/// A fake Slack server answering from its `Fake`, and a fresh memory store for workspace T1:
/// what every test starts from.
struct Slack {
    fake: Shared,
    url: String,
    meta: Arc<dyn MetadataStore>,
    ws: WorkspaceId,
}

impl Slack {
    /// Serves `fake` on 127.0.0.1.
    async fn start(fake: Fake) -> Slack {
        let fake: Shared = Arc::new(Mutex::new(fake));
        let url = serve(fake.clone()).await;
        Slack::at(fake, url)
    }

    /// `fake`, already served (or not) at `url`.
    fn at(fake: Shared, url: String) -> Slack {
        Slack {
            fake,
            url,
            meta: Arc::new(MemoryMetadataStore::new()),
            ws: WorkspaceId::new("T1").unwrap(),
        }
    }

    /// Options for this server, Slack's pacing scaled away.
    fn options(&self) -> BackfillOptions {
        BackfillOptions {
            api_url: self.url.clone(),
            rate_scale: 1000.0,
            ..Default::default()
        }
    }

    /// A backfill of T1 into the store with `options`, authenticated as the server expects.
    fn backfill(&self, options: BackfillOptions) -> Backfill {
        Backfill::new(
            self.meta.clone(),
            self.ws.clone(),
            SecretString::new(TOKEN),
            options,
        )
        .unwrap()
    }

    /// How many requests the server has answered.
    fn logged(&self) -> usize {
        self.fake.lock().unwrap().log.len()
    }
}

fn m(ts: &str, text: &str) -> Value {
    json!({"type":"message","user":"U1","ts":ts,"text":text})
}

#[tokio::test]
async fn backfill_paginates_retries_resumes_and_continues_incrementally() {
    let parent = json!({"type":"message","user":"U1","ts":"1600000500.000100","text":"thread start <https://example.com/a>",
        "thread_ts":"1600000500.000100","reply_count":2,"reply_users":["U2"],"latest_reply":"1600000520.000100",
        "reactions":[{"name":"+1","users":["U2"],"count":1}]});
    let slack = Slack::start(Fake {
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
    })
    .await;
    let (fake, meta, ws) = (slack.fake.clone(), slack.meta.clone(), slack.ws.clone());
    let options = BackfillOptions {
        page_size: 2,
        ..slack.options()
    };
    let backfill = || slack.backfill(options.clone());
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
    let before = slack.logged();
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
    let before = slack.logged();
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
    let slack = Slack::start(Fake::default()).await;
    let meta = slack.meta.clone();
    let b = Backfill::new(
        meta.clone(),
        slack.ws.clone(),
        SecretString::new("xoxb-wrong-token"),
        slack.options(),
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

/// Runs a backfill of `slack` with `options`, expecting it to fail, and checks the token
/// appears nowhere in the error.
async fn failing_backfill(
    slack: &Slack,
    options: BackfillOptions,
) -> (chatvault_core::Error, Arc<dyn MetadataStore>) {
    let e = slack.backfill(options).run().await.unwrap_err();
    assert!(!e.to_string().contains("test-secret"), "{e}");
    assert!(!format!("{e:?}").contains("test-secret"), "{e:?}");
    (e, slack.meta.clone())
}

/// Runs a backfill whose `users.list` answers `answer`, expecting it to fail.
async fn first_call_fails_with(answer: Value) -> (chatvault_core::Error, Arc<dyn MetadataStore>) {
    let slack = Slack::start(Fake {
        users_list_answer: Some(answer),
        ..Default::default()
    })
    .await;
    let options = BackfillOptions {
        max_rate_limit_waits: 0,
        ..slack.options()
    };
    failing_backfill(&slack, options).await
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
    let slack = Slack::at(
        Arc::new(Mutex::new(Fake::default())),
        format!("http://127.0.0.1:{port}/api"),
    );
    let options = BackfillOptions {
        max_retries: 0,
        ..slack.options()
    };
    let (e, meta) = failing_backfill(&slack, options).await;
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    // the cause, not just reqwest's "error sending request"
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
    assert!(meta.list_workspaces().await.unwrap().is_empty());
}

fn said(user: &str, ts: &str, text: &str) -> Value {
    json!({"type":"message","user":user,"ts":ts,"text":text})
}

/// The channels a viewer's search for "pineapple" finds messages in, sorted.
async fn pineapple_channels(
    engine: &chatvault_query::QueryEngine,
    ws: &WorkspaceId,
    viewer: &str,
) -> Vec<String> {
    use chatvault_query::{Scope, SearchMode, SearchRequest};
    let r = engine
        .search(
            ws,
            SearchRequest::new("pineapple")
                .mode(SearchMode::Lexical)
                .scope(Scope::User(chatvault_core::UserId::new(viewer).unwrap()))
                .limit(50),
        )
        .await
        .unwrap();
    let mut out: Vec<String> = r
        .hits
        .iter()
        .map(|h| h.message.key.channel.to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[tokio::test]
async fn members_of_private_conversations_come_from_conversations_members_every_run() {
    let slack = Slack::start(Fake {
        channels: Some(vec![
            json!({"id":"C1","name":"general","is_channel":true}),
            json!({"id":"G1","name":"secret-plans","is_channel":true,"is_private":true}),
            json!({"id":"D1","is_im":true,"user":"U3"}),
            json!({"id":"G2","name":"mpdm-ann--bob--cat-1","is_mpim":true}),
        ]),
        history: vec![said("U2", "1600000100.000100", "public pineapple")],
        histories: HashMap::from([
            (
                "G1".to_string(),
                vec![said("U1", "1600000200.000100", "secret pineapple plans")],
            ),
            (
                "D1".to_string(),
                vec![said("U3", "1600000300.000100", "direct pineapple")],
            ),
            (
                "G2".to_string(),
                vec![said("U2", "1600000400.000100", "group pineapple")],
            ),
        ]),
        members: HashMap::from([
            ("G1".to_string(), vec!["U1".to_string(), "U2".to_string()]),
            ("D1".to_string(), vec!["U2".to_string(), "U3".to_string()]),
            (
                "G2".to_string(),
                vec!["U1".to_string(), "U2".to_string(), "U3".to_string()],
            ),
        ]),
        ..Default::default()
    })
    .await;
    let (fake, meta, ws) = (slack.fake.clone(), slack.meta.clone(), slack.ws.clone());
    let content: Arc<dyn chatvault_core::ContentStore> =
        Arc::new(chatvault_core::testing::MemoryContentStore::new());
    let embedder = CountingEmbedder::new();
    // one member per page: the members are paged through
    let backfill = || {
        slack.backfill(BackfillOptions {
            page_size: 1,
            ..slack.options()
        })
    };
    let relay = chatvault_collector::Relay::new(
        meta.clone(),
        content.clone(),
        embedder.clone(),
        chatvault_collector::RelayOptions::default(),
    );
    let r = backfill().run().await.unwrap();
    assert_eq!(r.memberships_refreshed, 3, "{:?}", r.skipped);
    assert!(r.channels_failed.is_empty(), "{:?}", r.channels_failed);
    relay.drain().await.unwrap();
    let members_calls = fake
        .lock()
        .unwrap()
        .log
        .iter()
        .filter(|(m, p)| m == "conversations.members" && p["channel"] == "G2")
        .count();
    assert_eq!(members_calls, 3, "three members, one per page");
    // public conversations are not asked for: every viewer sees them
    assert!(!fake
        .lock()
        .unwrap()
        .log
        .iter()
        .any(|(m, p)| m == "conversations.members" && p["channel"] == "C1"));

    let engine = chatvault_query::QueryEngine::new(meta.clone(), content.clone(), embedder.clone());
    assert_eq!(
        pineapple_channels(&engine, &ws, "U1").await,
        ["C1", "G1", "G2"]
    );
    assert_eq!(
        pineapple_channels(&engine, &ws, "U2").await,
        ["C1", "D1", "G1", "G2"]
    );
    assert_eq!(
        pineapple_channels(&engine, &ws, "U3").await,
        ["C1", "D1", "G2"]
    );
    // not a member of anything private
    assert_eq!(pineapple_channels(&engine, &ws, "U9").await, ["C1"]);

    // U1 leaves G1 in Slack: the next run sees it
    fake.lock()
        .unwrap()
        .members
        .insert("G1".to_string(), vec!["U2".to_string()]);
    let r = backfill().run().await.unwrap();
    assert_eq!(r.memberships_refreshed, 3);
    assert_eq!(pineapple_channels(&engine, &ws, "U1").await, ["C1", "G2"]);
    assert_eq!(
        pineapple_channels(&engine, &ws, "U2").await,
        ["C1", "D1", "G1", "G2"]
    );
}

#[tokio::test]
async fn a_token_without_the_members_scope_says_so_once_and_the_rest_is_fetched() {
    let fake: Shared = Arc::new(Mutex::new(Fake {
        channels: Some(vec![
            json!({"id":"C1","name":"general","is_channel":true}),
            json!({"id":"G1","name":"a","is_private":true}),
            json!({"id":"G2","name":"b","is_private":true}),
        ]),
        history: vec![said("U2", "1600000100.000100", "hello")],
        histories: HashMap::from([
            (
                "G1".to_string(),
                vec![said("U1", "1600000200.000100", "one")],
            ),
            (
                "G2".to_string(),
                vec![said("U1", "1600000300.000100", "two")],
            ),
        ]),
        ..Default::default()
    }));
    // conversations.members answers missing_scope for everything
    let url = serve_with_members_refused(fake.clone()).await;
    let slack = Slack::at(fake.clone(), url);
    let r = slack.backfill(slack.options()).run().await.unwrap();
    assert_eq!(r.memberships_refreshed, 0);
    assert_eq!(r.messages, 3);
    assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
    assert!(
        r.skipped[0].starts_with("memberships of private conversations not refreshed")
            && r.skipped[0].contains("lacks the scope groups:read"),
        "{:?}",
        r.skipped
    );
    let asked = fake
        .lock()
        .unwrap()
        .log
        .iter()
        .filter(|(m, _)| m == "conversations.members")
        .count();
    assert_eq!(asked, 1, "asked once, not once per conversation");
}

async fn serve_with_members_refused(fake: Shared) -> String {
    async fn refused(
        state: State<Shared>,
        method: Path<String>,
        headers: HeaderMap,
        form: Form<HashMap<String, String>>,
    ) -> Response {
        if method.0 == "conversations.members" {
            state
                .0
                .lock()
                .unwrap()
                .log
                .push((method.0.clone(), form.0.clone()));
            return Json(json!({"ok": false, "error": "missing_scope", "needed": "groups:read"}))
                .into_response();
        }
        api(state, method, headers, form).await
    }
    let app = Router::new()
        .route("/api/{method}", post(refused))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/api")
}

fn ago(d: chrono::Duration) -> String {
    chatvault_core::Ts::from_datetime(chrono::Utc::now() - d).to_string()
}

#[tokio::test]
async fn an_incremental_run_picks_up_late_replies_edits_deletes_and_reactions() {
    use chrono::Duration as D;
    let old = ago(D::days(30));
    let edited = ago(D::days(5));
    let parent = ago(D::days(3));
    let reply1 = ago(D::days(3) - D::minutes(1));
    let reacted = ago(D::days(2));
    let doomed = ago(D::days(1));
    let thread = |replies: &[&str]| {
        json!({"type":"message","user":"U1","ts":parent,"text":"thread about pineapples",
            "thread_ts":parent,"reply_count":replies.len(),"reply_users":["U2"],
            "latest_reply":replies.last().unwrap()})
    };
    let reply = |ts: &str, text: &str| json!({"type":"message","user":"U2","ts":ts,"thread_ts":parent,"text":text});
    let with_reaction = |name: &str| {
        json!({"type":"message","user":"U2","ts":reacted,"text":"react to me",
            "reactions":[{"name":name,"users":["U1"],"count":1}]})
    };
    let slack = Slack::start(Fake {
        channels: Some(vec![json!({"id":"C1","name":"general","is_channel":true})]),
        history: vec![
            m(&doomed, "to be deleted"),
            with_reaction("+1"),
            thread(&[&reply1]),
            m(&edited, "first version"),
            m(&old, "a month old"),
        ],
        replies: HashMap::from([(
            parent.clone(),
            vec![thread(&[&reply1]), reply(&reply1, "reply one")],
        )]),
        ..Default::default()
    })
    .await;
    let (fake, meta, ws) = (slack.fake.clone(), slack.meta.clone(), slack.ws.clone());
    let content: Arc<dyn chatvault_core::ContentStore> =
        Arc::new(chatvault_core::testing::MemoryContentStore::new());
    let relay = chatvault_collector::Relay::new(
        meta.clone(),
        content.clone(),
        CountingEmbedder::new(),
        chatvault_collector::RelayOptions::default(),
    );
    let c1 = ChannelId::new("C1").unwrap();
    let backfill = || {
        slack.backfill(BackfillOptions {
            page_size: 2,
            ..slack.options()
        })
    };
    let r1 = backfill().run().await.unwrap();
    assert_eq!((r1.messages, r1.replies), (6, 1));
    assert_eq!(r1.late, chatvault_collector::LateActivity::default());
    relay.drain().await.unwrap();

    // Late activity, none of it newer than the newest stored message: a reply in the 3-day-old
    // thread, an edit, a reaction swapped, a message deleted, and the month-old message gone
    // from what Slack returns (outside the window: left alone).
    let reply2 = ago(D::hours(1));
    {
        let mut f = fake.lock().unwrap();
        let mut edit = m(&edited, "second version");
        edit["edited"] = json!({"user":"U1","ts":ago(D::minutes(10))});
        f.history = vec![with_reaction("tada"), thread(&[&reply1, &reply2]), edit];
        f.replies.insert(
            parent.clone(),
            vec![
                thread(&[&reply1, &reply2]),
                reply(&reply1, "reply one"),
                reply(&reply2, "a late reply"),
            ],
        );
    }
    let before = slack.logged();
    let r2 = backfill().run().await.unwrap();
    assert_eq!(
        r2.late,
        chatvault_collector::LateActivity {
            new: 1,
            edited: 1,
            reactions_changed: 1,
            threads_reread: 1,
            deleted: 1,
        }
    );
    {
        let f = fake.lock().unwrap();
        let oldest: f64 = f.log[before..]
            .iter()
            .find(|(m, _)| m == "conversations.history")
            .map(|(_, p)| p["oldest"].parse().unwrap())
            .unwrap();
        let week_ago = (chrono::Utc::now() - D::days(7)).timestamp() as f64;
        assert!((oldest - week_ago).abs() < 120.0, "{oldest} vs {week_ago}");
    }
    relay.drain().await.unwrap();
    let stored = channel_messages(meta.as_ref(), &ws, &c1).await;
    let by_ts = |ts: &str| stored.iter().find(|d| d.meta.key.ts.as_str() == ts);
    assert!(by_ts(&doomed).is_none(), "deleted in Slack, deleted here");
    assert!(by_ts(&old).is_some(), "outside the window: kept");
    assert_eq!(by_ts(&parent).unwrap().meta.reply_count, 2);
    assert!(by_ts(&reply2).is_some());
    assert_eq!(by_ts(&reacted).unwrap().reactions[0].name, "tada");
    let text = |ts: &str| {
        let key = chatvault_core::MessageKey::parse("T1", "C1", ts).unwrap();
        let content = content.clone();
        let ws = ws.clone();
        async move {
            content
                .get(&ws, &[key])
                .await
                .unwrap()
                .into_iter()
                .map(|d| d.content.text)
                .next()
        }
    };
    assert_eq!(text(&edited).await.as_deref(), Some("second version"));
    assert_eq!(text(&reply2).await.as_deref(), Some("a late reply"));
    assert_eq!(text(&doomed).await, None);

    // nothing changed since: the window is read, no thread is, nothing is counted
    let before = slack.logged();
    let r3 = backfill().run().await.unwrap();
    assert_eq!(r3.late, chatvault_collector::LateActivity::default());
    assert!(!fake.lock().unwrap().log[before..]
        .iter()
        .any(|(m, _)| m == "conversations.replies"));
}

#[tokio::test]
async fn threads_older_than_the_window_are_checked_and_reread_when_their_latest_reply_moved() {
    use chrono::Duration as D;
    let parent = ago(D::days(20));
    let reply1 = ago(D::days(10));
    let broadcast = ago(D::days(2));
    // quiet for longer than the thread horizon (30 days): not checked
    let quiet = ago(D::days(60));
    let quiet_reply = ago(D::days(50));
    let thread = |ts: &str, replies: &[&str]| {
        json!({"type":"message","user":"U1","ts":ts,"text":"a thread about mangos",
            "thread_ts":ts,"reply_count":replies.len(),"reply_users":["U2"],
            "latest_reply":replies.last().unwrap()})
    };
    let reply = |thread_ts: &str, ts: &str, text: &str| json!({"type":"message","user":"U2","ts":ts,"thread_ts":thread_ts,"text":text});
    // a reply also sent to the channel: in the history and in the thread
    let mut sent_too = reply(&parent, &broadcast, "also sent to the channel");
    sent_too["subtype"] = json!("thread_broadcast");
    let slack = Slack::start(Fake {
        channels: Some(vec![json!({"id":"C1","name":"general","is_channel":true})]),
        history: vec![
            sent_too.clone(),
            thread(&parent, &[&reply1, &broadcast]),
            thread(&quiet, &[&quiet_reply]),
        ],
        replies: HashMap::from([
            (
                parent.clone(),
                vec![
                    thread(&parent, &[&reply1, &broadcast]),
                    reply(&parent, &reply1, "first reply"),
                    sent_too.clone(),
                ],
            ),
            (
                quiet.clone(),
                vec![
                    thread(&quiet, &[&quiet_reply]),
                    reply(&quiet, &quiet_reply, "old news"),
                ],
            ),
        ]),
        ..Default::default()
    })
    .await;
    let (fake, meta, ws) = (slack.fake.clone(), slack.meta.clone(), slack.ws.clone());
    let c1 = ChannelId::new("C1").unwrap();
    slack.backfill(slack.options()).run().await.unwrap();
    let stored = |ts: String| {
        let (meta, ws, c1) = (meta.clone(), ws.clone(), c1.clone());
        async move {
            channel_messages(meta.as_ref(), &ws, &c1)
                .await
                .into_iter()
                .any(|d| d.meta.key.ts.as_str() == ts)
        }
    };
    assert!(stored(broadcast.clone()).await);

    // Twenty days after it started, the thread gets a reply, and the broadcast reply is deleted.
    let reply2 = ago(D::hours(1));
    {
        let mut f = fake.lock().unwrap();
        f.history = vec![
            thread(&parent, &[&reply1, &reply2]),
            thread(&quiet, &[&quiet_reply]),
        ];
        f.replies.insert(
            parent.clone(),
            vec![
                thread(&parent, &[&reply1, &reply2]),
                reply(&parent, &reply1, "first reply"),
                reply(&parent, &reply2, "a reply three weeks on"),
            ],
        );
    }
    let before = slack.logged();
    let r2 = slack.backfill(slack.options()).run().await.unwrap();
    assert_eq!(r2.late.threads_reread, 1, "{:?}", r2.late);
    assert_eq!(r2.late.new, 1, "{:?}", r2.late);
    assert!(r2.late.deleted >= 1, "{:?}", r2.late);
    assert!(stored(reply2.clone()).await, "the late reply is stored");
    assert!(
        !stored(broadcast.clone()).await,
        "the deleted broadcast is a tombstone"
    );
    let asked_for = |from: usize, method: &str, param: &str| -> Vec<String> {
        fake.lock().unwrap().log[from..]
            .iter()
            .filter(|(m, _)| m == method)
            .filter_map(|(_, p)| p.get(param).cloned())
            .collect()
    };
    // the parent was read on its own; the quiet thread was not looked at
    assert_eq!(
        asked_for(before, "conversations.history", "latest"),
        [parent.as_str()]
    );
    assert_eq!(
        asked_for(before, "conversations.replies", "ts"),
        [parent.as_str()]
    );

    // Nothing moved since: the parent is checked, its thread is not read again.
    let before = slack.logged();
    let r3 = slack.backfill(slack.options()).run().await.unwrap();
    assert_eq!(r3.late, chatvault_collector::LateActivity::default());
    assert_eq!(
        asked_for(before, "conversations.history", "latest"),
        [parent.as_str()]
    );
    assert!(asked_for(before, "conversations.replies", "ts").is_empty());
}

/// When each `method` request arrived, in order.
fn arrivals(fake: &Shared, method: &str) -> Vec<std::time::Instant> {
    fake.lock()
        .unwrap()
        .arrived
        .iter()
        .filter(|(m, _)| m == method)
        .map(|(_, t)| *t)
        .collect()
}

fn numbered(n: usize) -> Vec<Value> {
    (0..n)
        .rev()
        .map(|i| m(&format!("16000{:05}.000100", i), &format!("message {i}")))
        .collect()
}

#[tokio::test]
async fn calls_are_paced_by_their_tier_not_failed() {
    let slack = Slack::start(Fake {
        channels: Some(vec![json!({"id":"C1","name":"general","is_channel":true})]),
        history: numbered(30),
        ..Default::default()
    })
    .await;
    let fake = slack.fake.clone();
    let r = slack
        .backfill(BackfillOptions {
            page_size: 2,
            // Tier 3 (50 a minute, a burst of 8) sixty times faster: one call per 20 ms
            rate_scale: 60.0,
            ..slack.options()
        })
        .run()
        .await
        .unwrap();
    assert_eq!(r.messages, 30);
    assert_eq!(r.rate_limited, 0);
    let history = arrivals(&fake, "conversations.history");
    assert_eq!(history.len(), 15);
    // 8 at once, then the other 7 one per 20 ms
    let spread = history[14] - history[0];
    assert!(
        spread >= std::time::Duration::from_millis(120),
        "{spread:?}"
    );
}

#[tokio::test]
async fn the_reduced_limits_are_detected_paced_to_and_explained() {
    let slack = Slack::start(Fake {
        channels: Some(vec![json!({"id":"C1","name":"general","is_channel":true})]),
        history: numbered(40),
        reduced: true,
        ..Default::default()
    })
    .await;
    let fake = slack.fake.clone();
    let r = slack
        .backfill(BackfillOptions {
            page_size: 200,
            // 1 a minute, 120 times faster: one call per 500 ms
            rate_scale: 120.0,
            ..slack.options()
        })
        .run()
        .await
        .unwrap();
    assert_eq!(r.messages, 40);
    assert_eq!(r.notices.len(), 1, "{:?}", r.notices);
    assert!(
        r.notices[0].starts_with("Slack applies its reduced rate limits to this app")
            && r.notices[0].contains("internal app")
            && r.notices[0].contains("ingest-export"),
        "{}",
        r.notices[0]
    );
    let f = fake.lock().unwrap();
    let limits: Vec<&str> = f
        .log
        .iter()
        .filter(|(m, _)| m == "conversations.history")
        .map(|(_, p)| p["limit"].as_str())
        .collect();
    // the fake rewrote the first request's limit; what chatvault asked is in the log before
    assert_eq!(limits, ["200", "15", "15"]);
    drop(f);
    let history = arrivals(&fake, "conversations.history");
    for pair in history.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= std::time::Duration::from_millis(400), "{gap:?}");
    }
}

#[tokio::test]
async fn channel_filters_choose_what_is_fetched_and_name_what_is_missing() {
    let slack = Slack::start(Fake {
        channels: Some(vec![
            json!({"id":"C1","name":"general","is_channel":true}),
            json!({"id":"C3","name":"random","is_channel":true}),
            json!({"id":"C4","name":"noise","is_channel":true}),
        ]),
        history: vec![said("U1", "1600000100.000100", "in general")],
        histories: HashMap::from([
            (
                "C3".to_string(),
                vec![said("U1", "1600000200.000100", "in random")],
            ),
            (
                "C4".to_string(),
                vec![said("U1", "1600000300.000100", "in noise")],
            ),
        ]),
        ..Default::default()
    })
    .await;
    let fake = slack.fake.clone();
    // each run into a fresh store
    let run = |only: Option<Vec<String>>, exclude: Vec<String>, types: &str| {
        let fresh = Slack::at(slack.fake.clone(), slack.url.clone());
        let options = BackfillOptions {
            only_channels: only,
            exclude_channels: exclude,
            channel_types: types.to_string(),
            ..fresh.options()
        };
        async move { fresh.backfill(options).run().await.unwrap() }
    };
    let fetched = |from: usize| -> Vec<String> {
        let f = fake.lock().unwrap();
        let mut v: Vec<String> = f.log[from..]
            .iter()
            .filter(|(m, _)| m == "conversations.history")
            .map(|(_, p)| p["channel"].clone())
            .collect();
        v.sort();
        v
    };

    // by name (with or without #) and by id; one that does not exist is missing
    let from = slack.logged();
    let r = run(
        Some(vec!["#general".into(), "C3".into(), "nope".into()]),
        vec![],
        "public_channel",
    )
    .await;
    assert_eq!(fetched(from), ["C1", "C3"]);
    assert_eq!(
        r.missing,
        ["conversation nope was asked for but the token cannot see it (not listed by conversations.list)"]
    );

    // excluded by name
    let from = slack.logged();
    let r = run(None, vec!["noise".into()], "public_channel").await;
    assert_eq!(fetched(from), ["C1", "C3"]);
    assert!(r.missing.is_empty());

    // the types asked for reach conversations.list
    let f = fake.lock().unwrap();
    let (_, p) = f
        .log
        .iter()
        .rev()
        .find(|(m, _)| m == "conversations.list")
        .unwrap();
    assert_eq!(p["types"], "public_channel");
}

#[tokio::test]
async fn since_bounds_a_first_run() {
    let slack = Slack::start(Fake {
        channels: Some(vec![json!({"id":"C1","name":"general","is_channel":true})]),
        history: vec![
            said("U1", "1600000300.000100", "new enough"),
            said("U1", "1600000100.000100", "too old"),
        ],
        ..Default::default()
    })
    .await;
    let fake = slack.fake.clone();
    let r = slack
        .backfill(BackfillOptions {
            since: Some(chatvault_core::Ts::new("1600000200.000000").unwrap()),
            ..slack.options()
        })
        .run()
        .await
        .unwrap();
    assert_eq!(r.messages, 1);
    let f = fake.lock().unwrap();
    let (_, p) = f
        .log
        .iter()
        .find(|(m, _)| m == "conversations.history")
        .unwrap();
    assert_eq!(p["oldest"], "1600000200.000000");
}
