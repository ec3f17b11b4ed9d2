//! The JSON API over real HTTP, on the embedded default's real stores (SQLite + tantivy/HNSW),
//! loaded from the bundled houstondatavis export plus one private channel (`archive`).
//!
//! One fixture serves every test: it is built once, on a runtime of its own (a background
//! thread), and each test talks to it over HTTP.

mod archive;

use std::sync::OnceLock;

use archive::*;
use chatvault_query::Scope;
use chatvault_server::{router, ApiToken, AppState, AuthConfig, ServerConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Fixture {
    /// The server without a trusted header.
    plain: String,
    /// The same stores, behind a server that trusts `X-Auth-Request-Email`.
    proxied: String,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the fixture");
            rt.block_on(async move {
                // Under target/tmp, so a run (even a killed one) leaves nothing outside target.
                let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
                let fixture = setup(dir.path()).await;
                tx.send(fixture).expect("the tests wait for the fixture");
                std::future::pending::<()>().await;
                drop(dir);
            });
        });
        rx.recv().expect("the fixture starts")
    })
}

async fn setup(dir: &std::path::Path) -> Fixture {
    let Stores {
        meta,
        content,
        embedder,
    } = import(dir, export_with_private_channel(dir)).await;

    // The tokens file as an operator writes it: `printf '%s' admin-token | sha256sum`, …
    let tokens_file = dir.join("tokens");
    std::fs::write(
        &tokens_file,
        format!(
            "# hash scope\n\
             10a4c7c9fc5206d6f36dc6944a81bb6f4a3cb0e25014ae3b12e6c3e52712292a admin\n\
             f8f99f64da225459ac0be9ef2072ce99d07388bc74a649391177e6419bf05740 {MEMBER}\n\n\
             b3bacb0b454f1285e551200f0abc18be6ed1c679d2d0ff9cc141cf7f759a3624 {OUTSIDER}\n"
        ),
    )
    .expect("tokens file");
    let tokens = AuthConfig::from_tokens_file(&tokens_file)
        .expect("tokens file parses")
        .tokens;
    assert_eq!(tokens.len(), 3);
    assert_eq!(
        tokens[0],
        ApiToken::from_secret("admin-token", Scope::Admin)
    );
    let serve = |auth: AuthConfig| {
        let state = AppState::new(
            meta.clone(),
            content.clone(),
            embedder.clone(),
            ServerConfig {
                relay: None,
                auth,
                ..ServerConfig::default()
            },
        );
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move { axum::serve(listener, router(state)).await });
            format!("http://{addr}")
        }
    };
    let plain = serve(AuthConfig {
        tokens: tokens.clone(),
        trusted_email_header: None,
    })
    .await;
    let proxied = serve(AuthConfig {
        tokens,
        trusted_email_header: Some("X-Auth-Request-Email".into()),
    })
    .await;
    Fixture { plain, proxied }
}

/// `GET base + path` with an optional bearer token and extra header.
async fn get_with(
    base: &str,
    path: &str,
    token: Option<&str>,
    header: Option<(&str, &str)>,
) -> (StatusCode, Value, String) {
    let mut req = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
    (status, body, text)
}

async fn get(path: &str, token: Option<&str>) -> (StatusCode, Value, String) {
    get_with(&fixture().plain, path, token, None).await
}

async fn ok(path: &str, token: Option<&str>) -> Value {
    let (status, body, text) = get(path, token).await;
    assert_eq!(status, StatusCode::OK, "{path}: {text}");
    body
}

fn ws(path: &str) -> String {
    format!("/api/v1/workspaces/{WS}{path}")
}

fn hits(body: &Value) -> &Vec<Value> {
    body["hits"].as_array().expect("hits")
}

#[tokio::test]
async fn workspaces_are_listed() {
    let body = ok("/api/v1/workspaces", None).await;
    let ids: Vec<&str> = body["workspaces"]
        .as_array()
        .expect("workspaces")
        .iter()
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert_eq!(ids, vec![WS]);
}

#[tokio::test]
async fn search_returns_hits_with_highlighted_snippets() {
    let body = ok(&ws("/search?q=d3&limit=5"), None).await;
    let hits = hits(&body);
    assert!(!hits.is_empty(), "{body}");
    assert!(hits.len() <= 5);
    assert!(
        hits.iter()
            .any(|h| h["snippet"]["marked"].as_str().unwrap_or("").contains("**")),
        "no highlighted snippet: {body}"
    );
    assert_eq!(body["mode"], "hybrid");
    for mode in ["semantic", "lexical"] {
        let body = ok(&ws(&format!("/search?q=d3&mode={mode}")), None).await;
        assert_eq!(body["mode"], mode);
    }
}

#[tokio::test]
async fn search_passes_channel_user_and_time_filters() {
    let body = ok(
        &ws("/search?q=data&channel=%23tools&channel=datasets&limit=50"),
        None,
    )
    .await;
    assert!(!hits(&body).is_empty());
    for h in hits(&body) {
        let name = h["message"]["channel_name"].as_str().expect("channel name");
        assert!(name == "tools" || name == "datasets", "{name}");
    }
    let body = ok(&ws("/search?q=data&user=micahstubbs&limit=50"), None).await;
    assert!(!hits(&body).is_empty());
    for h in hits(&body) {
        assert_eq!(h["message"]["user"], MEMBER);
    }
    let body = ok(
        &ws("/search?q=data&since=2015-07-01&until=2015-08-01T00:00:00Z&limit=50"),
        None,
    )
    .await;
    assert!(!hits(&body).is_empty());
    for h in hits(&body) {
        let t = h["message"]["time"].as_str().expect("time");
        assert!(("2015-07-01".."2015-08-01").contains(&t), "{t}");
    }
}

#[tokio::test]
async fn search_cursor_pages() {
    let first = ok(&ws("/search?q=data&limit=3"), None).await;
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = ok(
        &ws(&format!("/search?q=data&limit=3&cursor={cursor}")),
        None,
    )
    .await;
    let keys = |b: &Value| -> Vec<String> {
        hits(b)
            .iter()
            .map(|h| h["message"]["key"].to_string())
            .collect()
    };
    assert_eq!(keys(&second).len(), 3);
    assert!(keys(&second).iter().all(|k| !keys(&first).contains(k)));
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    for (path, param) in [
        ("/search?q=d3&mode=fuzzy", "mode"),
        ("/search?q=d3&since=yesterday", "since"),
        ("/search?q=d3&until=2015-02-30", "until"),
        ("/search?q=d3&limit=0", "limit"),
        ("/search?q=d3&limit=many", "limit"),
        ("/search?q=d3&limit=1001", "limit"),
        ("/search?q=d3&cursor=page-2", "cursor"),
        ("/search?q=d3&chanel=general", "chanel"),
        ("/search?mode=lexical", "q"),
        ("/digest?since=soon", "since"),
        ("/prs?limit=-1", "limit"),
        ("/channels/general/days/2015-6-5x", "day"),
        ("/context/general/1433558696.000004?n=0", "n"),
    ] {
        let (status, body, text) = get(&ws(path), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {text}");
        assert_eq!(body["error"]["kind"], "invalid_input", "{path}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(param), "{path}: {message}");
    }
}

#[tokio::test]
async fn unknown_workspace_and_channel_are_404() {
    for path in [
        "/api/v1/workspaces/nope/search?q=d3",
        "/api/v1/workspaces/nope/stats",
        "/api/v1/workspaces/nope/channels",
    ] {
        let (status, body, text) = get(path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {text}");
        assert_eq!(body["error"]["kind"], "not_found");
    }
    for path in [
        "/search?q=d3&channel=no-such-channel",
        "/channels/no-such-channel/days/2015-06-05",
        "/thread/general/1.000001",
    ] {
        let (status, _, text) = get(&ws(path), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {text}");
    }
}

#[tokio::test]
async fn thread_and_context() {
    let body = ok(&ws("/thread/general/1433558696.000004"), None).await;
    let messages = body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "not in a thread: the message alone");
    assert_eq!(messages[0]["text"], "Hello!");

    let body = ok(&ws("/context/general/1433558696.000004?n=2"), None).await;
    assert_eq!(body["target"]["ts"], "1433558696.000004");
    let messages = body["messages"].as_array().expect("messages");
    assert!(messages.iter().any(|m| m["text"] == "Hello!"));
    assert!(messages.len() <= 5);
}

#[tokio::test]
async fn digest_and_prs() {
    let body = ok(
        &ws("/digest?since=2015-06-01&until=2016-12-31&limit=3"),
        None,
    )
    .await;
    assert_eq!(body["workspace"], WS);
    let busiest = body["busiest_channels"].as_array().expect("channels");
    assert!(!busiest.is_empty() && busiest.len() <= 3);

    let body = ok(
        &ws("/prs?since=2015-01-01&until=2017-01-01"),
        Some("admin-token"),
    )
    .await;
    let urls: Vec<&str> = body["reviews"]
        .as_array()
        .expect("reviews")
        .iter()
        .filter_map(|r| r["url"].as_str())
        .collect();
    assert!(
        urls.iter().any(|u| u.contains("acme/widgets/pull/42")),
        "{body}"
    );
}

#[tokio::test]
async fn ask_returns_the_retrieval() {
    let resp = reqwest::Client::new()
        .post(format!("{}{}", fixture().plain, ws("/ask")))
        .json(&json!({"question": "where are good d3 tutorials?", "passages": 3}))
        .send()
        .await
        .expect("ask");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("json");
    let passages = body["passages"].as_array().expect("passages");
    assert!(!passages.is_empty() && passages.len() <= 3, "{body}");
    assert_eq!(passages[0]["citation"], 1);
    assert!(body["prompt"].as_str().expect("prompt").contains("d3"));

    let resp = reqwest::Client::new()
        .post(format!("{}{}", fixture().plain, ws("/ask")))
        .json(&json!({"questoin": "typo"}))
        .send()
        .await
        .expect("ask");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["kind"], "invalid_input");
}

#[tokio::test]
async fn stats_count_the_archive() {
    let body = ok(&ws("/stats"), Some("admin-token")).await;
    assert!(body["metadata"]["messages"].as_u64().expect("messages") > 1000);
    assert_eq!(body["outbox"]["pending"], 0);
    let everything = body["visible"]["messages"].as_u64().expect("visible");
    // Everyone else sees only what they may read: no workspace-wide counts that would give the
    // private channel away.
    let body = ok(&ws("/stats"), None).await;
    assert!(
        body.get("metadata").is_none() && body.get("outbox").is_none(),
        "{body}"
    );
    let public = body["visible"]["messages"].as_u64().expect("visible");
    assert_eq!(everything, public + 2, "the private channel's two messages");
    assert_eq!(
        body["visible"]["channels"].as_u64().expect("channels") + 1,
        ok(&ws("/stats"), Some("admin-token")).await["visible"]["channels"]
            .as_u64()
            .expect("channels")
    );
}

#[tokio::test]
async fn channels_list_with_message_counts() {
    let body = ok(&ws("/channels"), None).await;
    let channels = body["channels"].as_array().expect("channels");
    let general = channels
        .iter()
        .find(|c| c["name"] == "general")
        .expect("general");
    assert!(general["messages"].as_u64().expect("count") > 100);
    let names: Vec<&str> = channels.iter().filter_map(|c| c["name"].as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "by name");
}

#[tokio::test]
async fn a_channel_day_in_order() {
    // Export files are named by the workspace's local day; the API's days are UTC.
    let body = ok(&ws("/channels/general/days/2015-06-06"), None).await;
    let messages = body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 4);
    let ts: Vec<&str> = messages
        .iter()
        .map(|m| m["key"]["ts"].as_str().expect("ts"))
        .collect();
    let mut sorted = ts.clone();
    sorted.sort();
    assert_eq!(ts, sorted);
    assert_eq!(messages[3]["text"], "Hello!");
    // by id as well as by name
    let by_id = ok(
        &ws(&format!(
            "/channels/{}/days/2015-06-06",
            messages[0]["key"]["channel"].as_str().expect("id")
        )),
        None,
    )
    .await;
    assert_eq!(by_id["messages"], body["messages"]);
}

#[tokio::test]
async fn anonymous_never_sees_the_private_channel() {
    for token in [None, Some("outsider-token")] {
        let (_, _, text) = get(&ws(&format!("/search?q={SECRET_WORD}&limit=50")), token).await;
        assert_no_secret("search", &text);
        let (_, _, text) = get(&ws("/channels"), token).await;
        assert_no_secret("channels", &text);
        let (_, _, text) = get(
            &ws("/digest?since=2015-06-01&until=2016-12-31&limit=100"),
            token,
        )
        .await;
        assert_no_secret("digest", &text);
        let (_, _, text) = get(&ws("/prs?since=2015-01-01&until=2017-01-01"), token).await;
        assert_no_secret("prs", &text);
        for path in [
            format!("/search?q=plan&channel={SECRET_NAME}"),
            format!("/search?q=plan&channel={SECRET_ID}"),
            format!("/channels/{SECRET_NAME}/days/2015-06-10"),
            format!("/channels/{SECRET_ID}/days/2015-06-10"),
            format!("/thread/{SECRET_ID}/1433900000.000100"),
            format!("/context/{SECRET_ID}/1433900000.000100"),
        ] {
            let (status, _, text) = get(&ws(&path), token).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {text}");
        }
    }
}

#[tokio::test]
async fn a_member_and_an_admin_see_the_private_channel() {
    for token in ["member-token", "admin-token"] {
        let body = ok(&ws(&format!("/search?q={SECRET_WORD}")), Some(token)).await;
        assert!(
            hits(&body)
                .iter()
                .any(|h| h["message"]["key"]["channel"] == SECRET_ID),
            "{token}: {body}"
        );
        let body = ok(&ws("/channels"), Some(token)).await;
        assert!(body["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .any(|c| c["name"] == SECRET_NAME && c["messages"] == 2));
        let body = ok(
            &ws(&format!("/channels/{SECRET_NAME}/days/2015-06-10")),
            Some(token),
        )
        .await;
        assert_eq!(body["messages"].as_array().expect("messages").len(), 2);
        let body = ok(
            &ws(&format!("/thread/{SECRET_ID}/1433900100.000200")),
            Some(token),
        )
        .await;
        assert_eq!(body["messages"].as_array().expect("messages").len(), 2);
    }
}

#[tokio::test]
async fn a_bad_token_is_401() {
    for auth in ["Bearer not-a-token", "Basic YWRtaW46YWRtaW4=", "Bearer "] {
        let resp = reqwest::Client::new()
            .get(format!("{}{}", fixture().plain, ws("/channels")))
            .header("Authorization", auth)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{auth}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["kind"], "unauthorized");
    }
}

#[tokio::test]
async fn the_proxy_header_counts_only_when_enabled() {
    let member = Some(("X-Auth-Request-Email", "micah@example.com"));
    let outsider = Some(("X-Auth-Request-Email", "javier@example.com"));
    // Not enabled: ignored, the request is anonymous.
    let (status, _, text) = get_with(&fixture().plain, &ws("/channels"), None, member).await;
    assert_eq!(status, StatusCode::OK);
    assert_no_secret("channels with an untrusted header", &text);
    // Enabled: the address names the member (compared case-insensitively), who sees the
    // private channel; another member's address does not.
    let (status, _, text) = get_with(&fixture().proxied, &ws("/channels"), None, member).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains(SECRET_NAME), "{text}");
    let (status, body, _) = get_with(
        &fixture().proxied,
        &ws(&format!("/search?q={SECRET_WORD}")),
        None,
        member,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(hits(&body)
        .iter()
        .any(|h| h["message"]["key"]["channel"] == SECRET_ID));
    for path in [
        "/channels".to_string(),
        format!("/search?q={SECRET_WORD}&limit=50"),
    ] {
        let (status, _, text) = get_with(&fixture().proxied, &ws(&path), None, outsider).await;
        assert_eq!(status, StatusCode::OK);
        assert_no_secret("the outsider's view", &text);
    }
    // An address no member has: refused, never a silent anonymous (or wrong) identity.
    let (status, body, text) = get_with(
        &fixture().proxied,
        &ws("/channels"),
        None,
        Some(("X-Auth-Request-Email", "mallory@example.com")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("email"));
    let (status, _, _) = get_with(
        &fixture().proxied,
        &ws("/channels"),
        None,
        Some(("X-Auth-Request-Email", "not an address")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Enabled, no header: anonymous; a token still works.
    let (status, _, text) = get_with(&fixture().proxied, &ws("/channels"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_no_secret("channels without the header", &text);
    let (status, _, text) = get_with(
        &fixture().proxied,
        &ws("/channels"),
        Some("member-token"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains(SECRET_NAME));
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let body = ok("/api/v1/openapi.json", None).await;
    let paths = body["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/api/v1/workspaces", "get"),
        ("/api/v1/workspaces/{ws}/search", "get"),
        ("/api/v1/workspaces/{ws}/thread/{channel}/{ts}", "get"),
        ("/api/v1/workspaces/{ws}/context/{channel}/{ts}", "get"),
        ("/api/v1/workspaces/{ws}/digest", "get"),
        ("/api/v1/workspaces/{ws}/prs", "get"),
        ("/api/v1/workspaces/{ws}/ask", "post"),
        ("/api/v1/workspaces/{ws}/stats", "get"),
        ("/api/v1/workspaces/{ws}/channels", "get"),
        (
            "/api/v1/workspaces/{ws}/channels/{channel}/days/{day}",
            "get",
        ),
        ("/api/v1/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path}"
        );
    }
    assert!(body["components"]["securitySchemes"]["bearer"].is_object());
}
