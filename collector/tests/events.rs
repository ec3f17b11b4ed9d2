//! Events API handling: idempotent, ordered per message, every event type.

mod common;

use std::sync::Arc;

use serde_json::json;

use chatvault_collector::{EventHandler, EventOutcome, Relay, RelayOptions};
use chatvault_core::testing::{MemoryContentStore, MemoryMetadataStore};
use chatvault_core::{
    ChannelId, ChannelKind, ContentStore, MessageKey, MetadataStore, UserId, Workspace, WorkspaceId,
};
use common::*;

async fn setup() -> (Arc<dyn MetadataStore>, EventHandler, WorkspaceId) {
    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let ws = WorkspaceId::new("T1").unwrap();
    meta.upsert_workspace(&Workspace::new(ws.clone(), "acme"))
        .await
        .unwrap();
    let h = EventHandler::new(meta.clone(), ws.clone());
    (meta, h, ws)
}

fn envelope(id: &str, event: serde_json::Value) -> serde_json::Value {
    json!({"type": "event_callback", "team_id": "T1", "event_id": id, "event": event})
}

fn enqueued(o: &EventOutcome) -> u64 {
    match o {
        EventOutcome::Applied { report, .. } => report.outbox_enqueued,
        other => panic!("not applied: {other:?}"),
    }
}

fn msg(ts: &str, text: &str) -> serde_json::Value {
    json!({"type":"message","channel":"C1","channel_type":"channel","user":"U1","ts":ts,"text":text})
}

fn changed(ts: &str, text: &str, edited: &str) -> serde_json::Value {
    json!({"type":"message","subtype":"message_changed","channel":"C1","channel_type":"channel","ts":"999.0",
        "message":{"type":"message","user":"U1","ts":ts,"text":text,"edited":{"user":"U1","ts":edited}}})
}

async fn text_of(meta: &Arc<dyn MetadataStore>, ws: &WorkspaceId, ts: &str) -> Option<String> {
    let content: Arc<dyn ContentStore> = Arc::new(MemoryContentStore::new());
    Relay::new(
        meta.clone(),
        content.clone(),
        CountingEmbedder::new(),
        RelayOptions::default(),
    )
    .drain()
    .await
    .unwrap();
    // the outbox was just drained into a fresh store: only the latest versions survive there
    let key = MessageKey::parse(ws.as_str(), "C1", ts).unwrap();
    content
        .get(ws, &[key])
        .await
        .ok()?
        .pop()
        .map(|d| d.content.text)
}

#[tokio::test]
async fn the_same_event_twice_changes_nothing() {
    let (meta, h, ws) = setup().await;
    let e = envelope("Ev1", msg("100.000001", "hello world"));
    assert_eq!(enqueued(&h.handle(&e).await.unwrap()), 1);
    let stats = meta.stats(&ws).await.unwrap();
    assert_eq!(enqueued(&h.handle(&e).await.unwrap()), 0);
    assert_eq!(meta.stats(&ws).await.unwrap(), stats);

    let r = envelope(
        "Ev2",
        json!({"type":"reaction_added","user":"U2","reaction":"tada",
        "item":{"type":"message","channel":"C1","ts":"100.000001"}}),
    );
    h.handle(&r).await.unwrap();
    h.handle(&r).await.unwrap();
    let key = MessageKey::parse("T1", "C1", "100.000001").unwrap();
    let d = meta
        .get_messages(&ws, std::slice::from_ref(&key))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(d.meta.reaction_count, 1);
    let r = envelope(
        "Ev3",
        json!({"type":"reaction_removed","user":"U2","reaction":"tada",
        "item":{"type":"message","channel":"C1","ts":"100.000001"}}),
    );
    h.handle(&r).await.unwrap();
    h.handle(&r).await.unwrap();
    let d = meta.get_messages(&ws, &[key]).await.unwrap().remove(0);
    assert_eq!(d.meta.reaction_count, 0);
}

#[tokio::test]
async fn an_edit_never_loses_to_the_message_it_edits() {
    let (meta, h, ws) = setup().await;
    // the edit arrives first, the original late
    h.handle(&envelope(
        "E2",
        changed("200.000001", "edited text", "201.0"),
    ))
    .await
    .unwrap();
    h.handle(&envelope("E1", msg("200.000001", "original text")))
        .await
        .unwrap();
    assert_eq!(
        text_of(&meta, &ws, "200.000001").await.as_deref(),
        Some("edited text")
    );
    // an older edit after a newer one is ignored too
    h.handle(&envelope("E3", changed("200.000001", "newest", "205.0")))
        .await
        .unwrap();
    h.handle(&envelope("E4", changed("200.000001", "older", "203.0")))
        .await
        .unwrap();
    assert_eq!(
        text_of(&meta, &ws, "200.000001").await.as_deref(),
        Some("newest")
    );
}

#[tokio::test]
async fn a_delete_wins_over_anything_older() {
    let (meta, h, ws) = setup().await;
    h.handle(&envelope("E1", msg("300.000001", "doomed")))
        .await
        .unwrap();
    let del = json!({"type":"message","subtype":"message_deleted","channel":"C1","ts":"301.0","deleted_ts":"300.000001"});
    h.handle(&envelope("E2", del.clone())).await.unwrap();
    h.handle(&envelope("E2", del)).await.unwrap();
    // late redelivery of the original and of an edit
    h.handle(&envelope("E1", msg("300.000001", "doomed")))
        .await
        .unwrap();
    h.handle(&envelope("E3", changed("300.000001", "zombie", "302.0")))
        .await
        .unwrap();
    let key = MessageKey::parse("T1", "C1", "300.000001").unwrap();
    assert!(meta.get_messages(&ws, &[key]).await.unwrap().is_empty());
    assert_eq!(text_of(&meta, &ws, "300.000001").await, None);
}

#[tokio::test]
async fn channel_member_and_user_events() {
    let (meta, h, ws) = setup().await;
    let c1 = ChannelId::new("C9").unwrap();
    h.handle(&envelope("E1", json!({"type":"channel_created","channel":{"id":"C9","name":"new-stuff","created":1600000000,"creator":"U1"}}))).await.unwrap();
    h.handle(&envelope("E2", json!({"type":"channel_rename","channel":{"id":"C9","name":"renamed","created":1600000000}}))).await.unwrap();
    h.handle(&envelope(
        "E3",
        json!({"type":"channel_archive","channel":"C9","user":"U1"}),
    ))
    .await
    .unwrap();
    let c = meta.get_channel(&ws, &c1).await.unwrap().unwrap();
    assert_eq!(
        (c.name.as_str(), c.is_archived, c.kind),
        ("renamed", true, ChannelKind::Public)
    );

    let join = envelope(
        "E4",
        json!({"type":"member_joined_channel","user":"U7","channel":"C9","channel_type":"C"}),
    );
    h.handle(&join).await.unwrap();
    h.handle(&join).await.unwrap();
    assert_eq!(
        meta.channel_members(&ws, &c1).await.unwrap(),
        vec![UserId::new("U7").unwrap()]
    );
    h.handle(&envelope(
        "E5",
        json!({"type":"member_left_channel","user":"U7","channel":"C9","channel_type":"C"}),
    ))
    .await
    .unwrap();
    assert!(meta.channel_members(&ws, &c1).await.unwrap().is_empty());

    h.handle(&envelope("E6", json!({"type":"user_change","user":{"id":"U7","name":"zed","real_name":"Zed Z","profile":{"display_name":"zz"}}}))).await.unwrap();
    let u = meta
        .get_users(&ws, &[UserId::new("U7").unwrap()])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(u.best_name(), "zz");

    let v = h
        .handle(&json!({"type":"url_verification","challenge":"abc"}))
        .await
        .unwrap();
    assert_eq!(
        v,
        EventOutcome::UrlVerification {
            challenge: "abc".into()
        }
    );
    let ignored = h
        .handle(&envelope("E7", json!({"type":"emoji_changed"})))
        .await
        .unwrap();
    assert!(matches!(ignored, EventOutcome::Ignored { .. }));
}

#[tokio::test]
async fn malformed_events_name_the_event_and_field() {
    let (_meta, h, _ws) = setup().await;
    let e = h
        .handle(&envelope(
            "EvBad",
            json!({"type":"message","channel":"C1","text":"no ts"}),
        ))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("EvBad") && e.to_string().contains("ts"),
        "{e}"
    );
    let e = h
        .handle(&envelope(
            "EvBad2",
            json!({"type":"reaction_added","item":{"type":"message","channel":"C1","ts":"1.0"}}),
        ))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("EvBad2") && e.to_string().contains("reaction"),
        "{e}"
    );
    assert!(h.handle_json(b"{not json").await.is_err());
}
