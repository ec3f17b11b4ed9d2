//! `POST /slack/events` over real HTTP, a real SQLite metadata store (and PostgreSQL for the
//! flows that write, with `CHATVAULT_TEST_DATABASE_URL`) and a real vector store, with requests
//! signed as Slack documents it.

mod common;

use std::time::Instant;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn url_verification_echoes_the_challenge() {
    let s = start().await;
    let (status, body) = s
        .post(&json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    s.stop().await;
}

on_both!(
    a_message_becomes_searchable,
    a_message_becomes_searchable_on
);

async fn a_message_becomes_searchable_on(s: Server) {
    let posted = Instant::now();
    let (status, body) = s
        .post(&message(
            "1700000000.000100",
            "the quarterly kangaroo report",
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "applied");
    assert_eq!(enqueued(&body), 1);
    let hits = s.search("kangaroo").await;
    // Not an assertion: how long a posted message takes to become searchable here.
    eprintln!("searchable after {:?}", posted.elapsed());
    assert_eq!(hits, vec!["the quarterly kangaroo report".to_string()]);
    assert_eq!(s.stats().await.messages, 1);
    s.stop().await;
}

on_both!(
    an_edit_and_a_delete_reach_the_index,
    an_edit_and_a_delete_reach_the_index_on
);

async fn an_edit_and_a_delete_reach_the_index_on(s: Server) {
    let ts = "1700000000.000200";
    assert_eq!(
        s.post(&message(ts, "lunch at the wombat cafe")).await.0,
        StatusCode::OK
    );
    assert_eq!(s.lexical("wombat").await.len(), 1);

    let edit = envelope(
        "EvEdit",
        json!({"type": "message", "subtype": "message_changed", "channel": "C1",
               "channel_type": "channel", "ts": "1700000001.000000",
               "message": {"type": "message", "user": "U1", "ts": ts,
                           "text": "lunch at the platypus cafe",
                           "edited": {"user": "U1", "ts": "1700000001.000000"}}}),
    );
    let (status, body) = s.post(&edit).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["kind"], "message_changed");
    assert_eq!(
        s.lexical("platypus").await,
        vec!["lunch at the platypus cafe".to_string()]
    );
    assert!(s.lexical("wombat").await.is_empty());

    let delete = envelope(
        "EvDel",
        json!({"type": "message", "subtype": "message_deleted", "channel": "C1",
               "channel_type": "channel", "ts": "1700000002.000000", "deleted_ts": ts}),
    );
    let (status, body) = s.post(&delete).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["kind"], "message_deleted");
    assert!(s.lexical("platypus").await.is_empty());
    assert_eq!(s.stats().await.messages, 0);
    s.stop().await;
}

on_both!(a_reaction_is_stored, a_reaction_is_stored_on);

async fn a_reaction_is_stored_on(s: Server) {
    let ts = "1700000000.000300";
    s.post(&message(ts, "ship it")).await;
    let reaction = envelope(
        "EvReact",
        json!({"type": "reaction_added", "user": "U2", "reaction": "tada",
               "item": {"type": "message", "channel": "C1", "ts": ts},
               "event_ts": "1700000003.000000"}),
    );
    let (status, body) = s.post(&reaction).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["kind"], "reaction_added");
    assert_eq!(s.stats().await.reactions, 1);
    s.stop().await;
}

on_both!(
    a_retried_delivery_changes_nothing,
    a_retried_delivery_changes_nothing_on
);

async fn a_retried_delivery_changes_nothing_on(s: Server) {
    let payload = message("1700000000.000400", "retry me once");
    let body = payload.to_string().into_bytes();
    let (status, first) = s.post_raw(body.clone(), SECRET, now(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(enqueued(&first), 1);
    s.delivered().await;
    let stats = s.stats().await;

    let retry = [
        ("x-slack-retry-num", "1"),
        ("x-slack-retry-reason", "http_timeout"),
    ];
    let (status, second) = s.post_raw(body, SECRET, now(), &retry).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["outcome"], "applied");
    assert_eq!(enqueued(&second), 0, "a retry enqueued content again");
    assert_eq!(s.stats().await, stats);
    let outbox = s.state.meta().outbox_stats(None).await.unwrap();
    assert_eq!((outbox.pending, outbox.leased), (0, 0));
    assert_eq!(s.search("retry").await.len(), 1);
    assert!(s
        .metrics()
        .await
        .contains("chatvault_events_retried_total 1"));
    s.stop().await;
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    let s = start().await;
    let body = message("1700000000.000500", "forged")
        .to_string()
        .into_bytes();
    let (status, err) = s.post_raw(body, "not-the-secret", now(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["error"]["kind"], "unauthorized");

    let resp = s
        .client
        .post(format!("{}/slack/events", s.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.stats().await.messages, 0);
    s.stop().await;
}

#[tokio::test]
async fn a_stale_timestamp_is_refused() {
    let s = start().await;
    let body = message("1700000000.000600", "replayed")
        .to_string()
        .into_bytes();
    let (status, err) = s.post_raw(body, SECRET, now() - 6 * 60, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("5 minutes"));
    assert_eq!(s.stats().await.messages, 0);
    s.stop().await;
}

on_both!(
    malformed_json_is_refused_and_nothing_stored,
    malformed_json_is_refused_and_nothing_stored_on
);

async fn malformed_json_is_refused_and_nothing_stored_on(s: Server) {
    let (status, err) = s
        .post_raw(
            b"{\"type\": \"event_callback\", ".to_vec(),
            SECRET,
            now(),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["kind"], "invalid_input");
    // JSON, but a message without a channel
    let (status, _) = s
        .post(&envelope(
            "EvBad",
            json!({"type": "message", "user": "U1", "ts": "1.0", "text": "x"}),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(s.stats().await.messages, 0);
    let outbox = s.state.meta().outbox_stats(None).await.unwrap();
    assert_eq!(outbox.pending + outbox.leased + outbox.dead, 0);
    s.stop().await;
}

#[tokio::test]
async fn a_body_over_one_mib_is_refused_with_json() {
    let s = start().await;
    let big = message(
        "1700000000.000700",
        &"x".repeat(chatvault_server::MAX_BODY_BYTES),
    );
    let (status, err) = s
        .post_raw(big.to_string().into_bytes(), SECRET, now(), &[])
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(err["error"]["kind"], "payload_too_large");
    assert_eq!(s.stats().await.messages, 0);
    s.stop().await;
}

#[tokio::test]
async fn an_unknown_event_type_is_acknowledged_and_ignored() {
    let s = start().await;
    let (status, body) = s
        .post(&envelope(
            "EvPin",
            json!({"type": "pin_added", "user": "U1", "channel_id": "C1"}),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "ignored");
    assert!(s
        .metrics()
        .await
        .contains(r#"chatvault_events_ignored_total{kind="pin_added"} 1"#));
    s.stop().await;
}

#[tokio::test]
async fn an_unknown_team_is_refused() {
    let s = start().await;
    let mut payload = message("1700000000.000800", "from elsewhere");
    payload["team_id"] = json!("T9999");
    let (status, err) = s.post(&payload).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["error"]["kind"], "forbidden");
    assert!(err["error"]["message"].as_str().unwrap().contains("T9999"));
    assert_eq!(s.stats().await.messages, 0);
    s.stop().await;
}

#[tokio::test]
async fn without_a_signing_secret_events_are_unavailable() {
    let s = start_with(None).await;
    let (status, err) = s.post(&message("1700000000.000900", "hello")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("signing secret"));
    s.stop().await;
}

#[tokio::test]
async fn metrics_count_events_by_kind() {
    let s = start().await;
    s.post(&message("1700000000.001000", "one")).await;
    s.post(&message("1700000000.001100", "two")).await;
    s.post_raw(b"{}".to_vec(), "wrong", now(), &[]).await;
    s.post_raw(b"nope".to_vec(), SECRET, now(), &[]).await;
    let m = s.metrics().await;
    for line in [
        r#"chatvault_events_received_total{kind="message"} 2"#,
        r#"chatvault_events_applied_total{kind="message"} 2"#,
        r#"chatvault_events_rejected_total{kind="bad_signature"} 1"#,
        r#"chatvault_events_rejected_total{kind="malformed"} 1"#,
    ] {
        assert!(m.contains(line), "no `{line}` in\n{m}");
    }
    s.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let s = start().await;
    let r = s
        .client
        .get(format!("{}/slack/events", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "POST");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "method_not_allowed");
    let r = s
        .client
        .get(format!("{}/nowhere", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "not_found");
    s.stop().await;
}

#[tokio::test]
async fn a_team_of_the_workspace_maps_to_it() {
    use chatvault_core::{Team, TeamId, WriteBatch};
    let s = start().await;
    // An Enterprise Grid organization archived as workspace T0001, with team T0002 inside it.
    let mut batch = WriteBatch::new(s.ws.clone());
    batch.teams.push(Team {
        id: TeamId::new("T0002").unwrap(),
        name: "Acme Labs".into(),
        domain: None,
    });
    s.state.meta().apply(batch).await.unwrap();
    let mut payload = message("1700000000.002000", "from the labs");
    payload["team_id"] = json!("T0002");
    let (status, body) = s.post(&payload).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(s.stats().await.messages, 1);
    s.stop().await;
}

#[tokio::test]
async fn a_chunked_body_over_one_mib_is_refused_with_json() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start().await;
    let addr = s.url.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    // No Content-Length: the limit can only cut the body off while it is read.
    let writer = tokio::spawn(async move {
        let head = format!(
            "POST /slack/events HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        let chunk = vec![b' '; 64 * 1024];
        let mut out = head.into_bytes();
        for _ in 0..(2 * chatvault_server::MAX_BODY_BYTES / chunk.len()) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(&chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        let _ = wr.write_all(&out).await; // the server may stop reading early
    });
    let mut response = Vec::new();
    let _ = rd.read_to_end(&mut response).await;
    writer.abort();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains("application/json") && response.contains("payload_too_large"),
        "{response}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_message_in_a_channel_never_seen_is_found_by_its_readers() {
    // No `channel_created` for C9 or G9: the app was added to them after the import.
    let s = start().await;
    let public = envelope(
        "EvNew1",
        json!({"type": "message", "channel": "C9", "channel_type": "channel", "user": "U1",
               "ts": "1700000100.000100", "text": "the capybara census"}),
    );
    assert_eq!(s.post(&public).await.0, StatusCode::OK);
    let private = envelope(
        "EvNew2",
        json!({"type": "message", "channel": "G9", "channel_type": "group", "user": "U1",
               "ts": "1700000100.000200", "text": "the secret capybara plan"}),
    );
    assert_eq!(s.post(&private).await.0, StatusCode::OK);
    // Public search (no viewer) finds the public one only.
    assert_eq!(
        s.lexical("capybara").await,
        vec!["the capybara census".to_string()]
    );
    let channels = s.state.meta().list_channels(&s.ws).await.unwrap();
    let c9 = channels
        .iter()
        .find(|c| c.id.as_str() == "C9")
        .expect("C9 stored");
    assert_eq!(c9.kind, chatvault_core::ChannelKind::Public);
    let g9 = channels
        .iter()
        .find(|c| c.id.as_str() == "G9")
        .expect("G9 stored");
    assert_eq!(g9.kind, chatvault_core::ChannelKind::Private);
    s.stop().await;
}
