//! The web archive's pages over real HTTP, on real stores loaded from the bundled export (see
//! `web_fixture`): what each page shows, what it escapes, what it hides from whom.

mod web_fixture;

use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::{redirect, StatusCode};
use web_fixture::*;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .expect("client")
}

/// `GET path` as a browser asks for a page, logged in with `token`'s cookie when given.
async fn page_as(path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = client()
        .get(format!("{}{path}", fixture().url))
        .header(ACCEPT, "text/html,application/xhtml+xml");
    if let Some(t) = token {
        req = req.header(COOKIE, format!("chatvault_token={t}"));
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let ct = resp
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().expect("ascii").to_string())
        .unwrap_or_default();
    let body = resp.text().await.expect("body");
    if !status.is_redirection() {
        assert!(ct.starts_with("text/html"), "{path}: {status} {ct}: {body}");
        assert!(!body.contains("panicked"), "{path}: {body}");
    }
    (status, body)
}

async fn page(path: &str) -> String {
    let (status, body) = page_as(path, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

async fn redirect_of(path: &str) -> String {
    let resp = client()
        .get(format!("{}{path}", fixture().url))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .expect("request");
    assert!(resp.status().is_redirection(), "{path}: {}", resp.status());
    resp.headers()[LOCATION]
        .to_str()
        .expect("ascii")
        .to_string()
}

#[tokio::test]
async fn the_root_opens_the_only_workspace() {
    assert_eq!(redirect_of("/").await, "/w/hdv/");
}

#[tokio::test]
async fn home_lists_channels_with_counts_and_last_activity_and_people() {
    let body = page("/w/hdv/").await;
    assert!(
        body.contains(r#"<a href="/w/hdv/c/general">#general</a>"#),
        "{body}"
    );
    // #general's last day is the one the fixture added.
    assert!(
        body.contains(r#"<a href="/w/hdv/c/general/2016-07-29">2016-07-29</a>"#),
        "{body}"
    );
    assert!(
        body.contains("houstondatavis.slack.com"),
        "the export's domain: {body}"
    );
    assert!(body.contains("People"));
    assert!(body.contains("@micahstubbs"), "{body}");
    assert!(body.contains(r#"class="avatar a"#), "initials, not images");
    assert!(!body.contains("<img"), "nothing fetched");
    assert_no_secret("home", &body);
}

#[tokio::test]
async fn a_channel_opens_on_its_last_day() {
    assert_eq!(
        redirect_of("/w/hdv/c/general").await,
        "/w/hdv/c/general/2016-07-29"
    );
    assert_eq!(
        redirect_of("/w/hdv/c/C061A2UGJ?day=2016-07-28").await,
        "/w/hdv/c/general/2016-07-28"
    );
}

#[tokio::test]
async fn a_day_renders_slack_markup_and_escapes_everything() {
    let body = page(&format!("/w/hdv/c/general/{FORMATTED_DAY}")).await;
    assert!(
        body.contains("look &lt;script&gt;alert('xss')&lt;/script&gt;"),
        "{body}"
    );
    assert!(!body.contains("<script>alert"), "{body}");
    for html in [
        "<strong>bold move</strong>",
        "<em>quietly</em>",
        "<del>never</del>",
        "<code>inline code</code>",
        r#"title=":tada:">🎉</span>"#,
        r#"<a href="https://example.com/docs" rel="nofollow noopener noreferrer">https://example.com/docs</a>"#,
        r#"<a class="mention" href="/w/hdv/c/general">#general</a>"#,
        "<blockquote>a quoted line</blockquote>",
        r#"<pre class="code"><code>let x = 1 &lt; 2;</code></pre>"#,
        "👍 2",
    ] {
        assert!(body.contains(html), "missing {html}: {body}");
    }
    // The thread is collapsed under its parent, with both replies (one from the next day).
    assert!(
        body.contains("<details class=\"thread\"><summary>2 replies</summary>"),
        "{body}"
    );
    assert!(body.contains("first reply about the zebrafish"));
    assert!(body.contains("second reply, a day later"));
    assert!(body.contains(&format!("/w/hdv/t/C061A2UGJ/{FORMATTED_TS}")));
    // Day navigation.
    assert!(
        body.contains(r#"rel="prev" href="/w/hdv/c/general/2016-07-27""#),
        "{body}"
    );
    assert!(
        body.contains(r#"rel="next" href="/w/hdv/c/general/2016-07-29""#),
        "{body}"
    );
    assert!(body.contains(r#"<label for="day">Go to day</label>"#));
}

#[tokio::test]
async fn a_day_shows_files_and_an_empty_day_says_so() {
    // 2015-06-09 in #talks has the screenshots whose permalinks gave the domain.
    let body = page("/w/hdv/c/talks/2015-06-09").await;
    assert!(body.contains(r#"aria-label="Files""#), "{body}");
    assert!(body.contains("(png)"), "{body}");
    let body = page("/w/hdv/c/general/2001-01-01").await;
    assert!(body.contains("No messages on this day."));
    assert!(body.contains("first day"), "nothing before: {body}");
}

#[tokio::test]
async fn a_thread_page_shows_the_whole_thread() {
    let body = page(&format!("/w/hdv/t/general/{FORMATTED_TS}")).await;
    assert!(body.contains("<h1>Thread</h1>"));
    assert_eq!(body.matches(r#"<li class="msg"#).count(), 3, "{body}");
    assert!(body.contains("second reply, a day later"));
}

#[tokio::test]
async fn a_permalink_opens_the_message_in_context_with_its_slack_link() {
    let reply = "1469700100.000200";
    let body = page(&format!("/w/hdv/m/C061A2UGJ/{reply}")).await;
    assert!(
        body.contains(r#"<li class="msg target" id="m1469700100-000200">"#),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "https://houstondatavis.slack.com/archives/C061A2UGJ/p1469700100000200?thread_ts={FORMATTED_TS}&amp;cid=C061A2UGJ"
        )),
        "{body}"
    );
    // A top-level message: its neighbours in the channel.
    let body = page("/w/hdv/m/general/1469790000.000300").await;
    assert!(body.contains("msg target"));
    // The workspace-less form finds the workspace.
    assert_eq!(
        redirect_of(&format!("/m/C061A2UGJ/{reply}")).await,
        format!("/w/hdv/m/C061A2UGJ/{reply}")
    );
}

#[tokio::test]
async fn search_highlights_matches_says_which_ranking_and_links_the_message() {
    let body = page(&format!("/w/hdv/search?q={REPLY_WORD}")).await;
    assert!(body.contains("<mark>zebrafish</mark>"), "{body}");
    assert!(body.contains("matched words"), "{body}");
    assert!(
        body.contains(r#"href="/w/hdv/m/C061A2UGJ/1469700100.000200""#),
        "{body}"
    );
    assert!(body.contains("Results 1–2"), "{body}");
    // The filters are labelled controls, and keep their values.
    let body = page(
        "/w/hdv/search?q=data&mode=lexical&channel=C061A2UGJ&since=2015-01-01&until=2016-12-31",
    )
    .await;
    for label in [
        r#"<label for="mode">"#,
        r#"<label for="channel">"#,
        r#"<label for="user">"#,
        r#"<label for="since">"#,
        r#"<label for="until">"#,
    ] {
        assert!(body.contains(label), "{label}");
    }
    assert!(
        body.contains(r#"<option value="lexical" selected>"#),
        "{body}"
    );
    assert!(body.contains(r#"<option value="C061A2UGJ" selected>#general</option>"#));
    assert!(body.contains(r#"value="2015-01-01""#));
}

#[tokio::test]
async fn search_pages_through_results() {
    let first = page("/w/hdv/search?q=data").await;
    assert!(first.contains("Results 1–20"), "{first}");
    let next = first
        .split(r#"rel="next" href=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a next page")
        .replace("&amp;", "&");
    assert!(next.contains("start=21"), "{next}");
    let second = page(&next).await;
    assert!(second.contains("Results 21–"), "{second}");
    assert!(second.contains("« First page"));
    let hrefs = |b: &str| -> Vec<String> {
        b.split(r#"class="hit-link" href=""#)
            .skip(1)
            .filter_map(|s| s.split('"').next().map(str::to_string))
            .collect()
    };
    assert!(!hrefs(&second).is_empty());
    assert!(hrefs(&second).iter().all(|h| !hrefs(&first).contains(h)));
}

#[tokio::test]
async fn search_shows_bad_input_and_empty_results_helpfully() {
    let (status, body) = page_as("/w/hdv/search?q=data&since=yesterday", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("Cannot search"), "{body}");
    assert!(
        body.contains("&quot;yesterday&quot; is not a day"),
        "{body}"
    );
    let (status, body) = page_as("/w/hdv/search?q=data&user=nobody-at-all", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("Person:"), "{body}");
    let (status, body) = page_as(
        "/w/hdv/search?q=data&since=2016-01-01&until=2015-01-01",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let body = page("/w/hdv/search").await;
    assert!(body.contains("Type some words"), "{body}");
    let body = page("/w/hdv/search?q=qwxzv&mode=lexical&channel=general").await;
    assert!(body.contains("No messages match"), "{body}");
    assert!(body.contains("Search every channel"), "{body}");
}

#[tokio::test]
async fn a_private_channel_is_invisible_to_non_members_on_every_page() {
    let not_found = page_as("/w/hdv/c/no-such-channel", None).await;
    assert_eq!(not_found.0, StatusCode::NOT_FOUND);
    for token in [None, Some(OUTSIDER_TOKEN)] {
        for path in [
            "/w/hdv/",
            "/w/hdv/search?q=launch+plan+keep+quiet",
            "/w/hdv/search?q=launch+plan&mode=semantic",
            "/w/hdv/digest?week=2015-06-08",
            "/w/hdv/prs",
            "/w/hdv/ask?q=what+is+the+launch+plan",
        ] {
            let (status, body) = page_as(path, token).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            assert_no_secret(path, &body);
        }
        for path in [
            format!("/w/hdv/c/{SECRET_NAME}"),
            format!("/w/hdv/c/{SECRET_ID}/2015-06-10"),
            format!("/w/hdv/t/{SECRET_ID}/1433900000.000100"),
            format!("/w/hdv/m/{SECRET_ID}/1433900000.000100"),
            format!("/m/{SECRET_ID}/1433900000.000100"),
        ] {
            let (status, body) = page_as(&path, token).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            assert!(body.contains("Not found"));
            let body = body.replace(&path, "");
            assert_no_secret(&path, &body.replace(SECRET_NAME, "").replace(SECRET_ID, ""));
        }
        // A filter naming it is refused like an unknown channel.
        let (status, body) = page_as(
            &format!("/w/hdv/search?q=plan&channel={SECRET_NAME}"),
            token,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(!body.contains(SECRET_WORD));
    }
    for token in [MEMBER_TOKEN, ADMIN_TOKEN] {
        let body = page_as("/w/hdv/", Some(token)).await.1;
        assert!(body.contains(&format!("#{SECRET_NAME}")), "{token}: {body}");
        let (status, body) =
            page_as(&format!("/w/hdv/c/{SECRET_NAME}/2015-06-10"), Some(token)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("zanzibar launch plan"));
        let body = page_as("/w/hdv/search?q=zanzibar", Some(token)).await.1;
        assert!(body.contains("<mark>zanzibar</mark>"), "{body}");
        assert!(body.contains(&format!(r#"<option value="{SECRET_ID}""#)));
    }
}

async fn post_form(path: &str, form: &[(&str, &str)], origin: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .post(format!("{}{path}", fixture().url))
        .header(ACCEPT, "text/html")
        .form(form);
    if let Some(o) = origin {
        req = req.header(ORIGIN, o);
    }
    req.send().await.expect("request")
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_logout_clears_it() {
    let own = fixture().url.clone();
    let form = page("/login").await;
    assert!(form.contains(r#"<label for="token">API token</label>"#));
    assert!(form.contains(r#"type="password""#));

    let ok = post_form(
        "/login",
        &[("token", MEMBER_TOKEN), ("next", "/w/hdv/")],
        Some(&own),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(ok.headers()[LOCATION], "/w/hdv/");
    let cookie = ok.headers()[SET_COOKIE]
        .to_str()
        .expect("ascii")
        .to_string();
    for part in [
        "chatvault_token=member-token",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");

    let bad = post_form("/login", &[("token", "guess")], Some(&own)).await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert!(bad.headers().get(SET_COOKIE).is_none());
    assert!(bad
        .text()
        .await
        .expect("body")
        .contains("not one this server accepts"));

    // Cross-site forms are refused (login CSRF), as are forms that say nothing of their origin.
    let forged = post_form(
        "/login",
        &[("token", MEMBER_TOKEN)],
        Some("http://evil.example"),
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.headers().get(SET_COOKIE).is_none());
    let anonymous = post_form("/login", &[("token", MEMBER_TOKEN)], None).await;
    assert_eq!(anonymous.status(), StatusCode::FORBIDDEN);
    let offsite = post_form(
        "/login",
        &[("token", MEMBER_TOKEN), ("next", "//evil.example/")],
        Some(&own),
    )
    .await;
    assert_eq!(offsite.headers()[LOCATION], "/");

    let out = post_form("/logout", &[], Some(&own)).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(out.headers()[SET_COOKIE]
        .to_str()
        .expect("ascii")
        .contains("Max-Age=0"));
    let forged = post_form("/logout", &[], Some("http://evil.example")).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // A cookie whose token is not accepted is cleared, never read as anonymous.
    let (status, body) = page_as("/w/hdv/", Some("revoked")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("Not signed in"));
}

#[tokio::test]
async fn the_api_reads_the_login_cookie_too() {
    let resp = client()
        .get(format!(
            "{}/api/v1/workspaces/hdv/search?q=zanzibar",
            fixture().url
        ))
        .header(COOKIE, format!("chatvault_token={MEMBER_TOKEN}"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert!(!body["hits"].as_array().expect("hits").is_empty(), "{body}");
}

#[tokio::test]
async fn unknown_pages_are_a_404_page_and_the_api_stays_json() {
    for path in [
        "/no/such/page",
        "/w/nope/",
        "/w/hdv/c/nochannel/2016-07-28",
        "/w/hdv/m/C061A2UGJ/1.000001",
        "/w/hdv/m/C061A2UGJ/not-a-ts",
        "/w/hdv/t/C061A2UGJ/1.000001",
        "/static/nothing.css",
    ] {
        let (status, body) = page_as(path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(body.contains("<h1>Not found</h1>"), "{path}: {body}");
    }
    let (status, body) = page_as("/w/hdv/c/general/2016-13-45", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("is not a day"));
    for path in ["/api/v1/nope", "/no/such/page"] {
        let resp = client()
            .get(format!("{}{path}", fixture().url))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert!(resp.headers()[CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("application/json"));
    }
}

#[tokio::test]
async fn error_pages_show_who_is_signed_in() {
    for path in [
        "/no/such/page",
        "/w/hdv/c/nochannel/2016-07-28",
        "/w/hdv/t/C061A2UGJ/1.000001",
        "/w/hdv/c/general/2016-13-45",
        "/static/nothing.css",
    ] {
        let (status, body) = page_as(path, Some(MEMBER_TOKEN)).await;
        assert!(status.is_client_error(), "{path}: {status}");
        assert!(body.contains("Signed in: "), "{path}: {body}");
        assert!(body.contains(r#"action="/logout""#), "{path}: {body}");
        assert!(!body.contains(r#"href="/login""#), "{path}: {body}");
        let (_, body) = page_as(path, None).await;
        assert!(
            body.contains(r#"href="/login""#),
            "{path}, anonymous: {body}"
        );
    }
    // A page under a workspace names the member.
    let (_, body) = page_as("/w/hdv/c/nochannel", Some(MEMBER_TOKEN)).await;
    assert!(body.contains("Signed in: Micah Stubbs"), "{body}");
}

#[tokio::test]
async fn pages_say_where_their_time_went() {
    let resp = client()
        .get(format!("{}/w/hdv/c/general/{FORMATTED_DAY}", fixture().url))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .expect("request");
    let timing = resp.headers()["server-timing"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        timing.starts_with("fetch;dur=") && timing.contains(", render;dur="),
        "{timing}"
    );
}

#[tokio::test]
async fn digest_reviews_and_ask_pages_render() {
    let body = page("/w/hdv/digest?week=2016-07-27").await;
    assert!(body.contains("Digest: week of 25 July 2016"), "{body}");
    assert!(body.contains("Busiest channels"), "{body}");
    assert!(body.contains("#general"));
    assert!(body.contains(r#"href="/w/hdv/digest?week=2016-07-18""#));
    let body = page("/w/hdv/digest").await;
    assert!(
        body.contains("Digest: week of 25 July 2016"),
        "the latest week: {body}"
    );
    let body = page("/w/hdv/prs").await;
    assert!(body.contains("<h1>Review requests</h1>"));
    assert!(body.contains("Open questions"));
    let body = page("/w/hdv/ask?q=where+is+the+zebrafish").await;
    assert!(body.contains("[1]"), "{body}");
    assert!(body.contains("zebrafish"));
    assert!(body.contains("The prompt"));
    let (status, body) = page_as("/w/hdv/digest?week=someday", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("is not a day"));
}

#[tokio::test]
async fn pages_are_self_contained_and_locked_down() {
    let resp = client()
        .get(format!("{}/w/hdv/", fixture().url))
        .send()
        .await
        .expect("request");
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let body = resp.text().await.expect("body");
    let css = body
        .split(r#"<link rel="stylesheet" href=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a stylesheet")
        .replace("&amp;", "&");
    assert!(css.starts_with("/static/app.css?v="), "{css}");
    for (path, kind) in [
        (css.as_str(), "text/css"),
        ("/static/app.js", "text/javascript"),
    ] {
        let resp = client()
            .get(format!("{}{path}", fixture().url))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()[CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with(kind));
        let text = resp.text().await.expect("body");
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path} fetches nothing"
        );
    }
    assert!(body.contains("prefers-color-scheme") || body.contains(r#"content="light dark""#));
    assert!(body.contains(r#"name="viewport""#));
}
