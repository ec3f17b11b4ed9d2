//! Feeding Events API payloads to the collector: a message, its edit, a reaction and a delete,
//! delivered to the content store by a relay running in the background.
//!
//! `cargo run -p chatvault-examples --example live_events`

use std::sync::Arc;
use std::time::Duration;

use chatvault_collector::{EventHandler, Relay, RelayOptions};
use chatvault_core::testing::{MemoryContentStore, MemoryMetadataStore};
use chatvault_core::{
    Channel, ChannelId, ChannelKind, ContentStore, HashingEmbedder, MetadataStore, Workspace,
    WorkspaceId, WriteBatch,
};
use chatvault_query::{QueryEngine, SearchRequest};
use serde_json::json;

#[tokio::main]
async fn main() -> chatvault_core::Result<()> {
    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let content: Arc<dyn ContentStore> = Arc::new(MemoryContentStore::new());
    let embedder = Arc::new(HashingEmbedder::new(64)?);
    let ws = WorkspaceId::new("T024BE7LD")?;
    meta.upsert_workspace(&Workspace::new(ws.clone(), "Acme"))
        .await?;
    let mut batch = WriteBatch::new(ws.clone());
    batch.channels.push(Channel::new(
        ChannelId::new("C1")?,
        "general",
        ChannelKind::Public,
    ));
    meta.apply(batch).await?;

    let relay = Relay::new(
        meta.clone(),
        content.clone(),
        embedder.clone(),
        RelayOptions {
            poll_interval: Duration::from_millis(20),
            ..Default::default()
        },
    )
    .spawn();
    let events = EventHandler::new(meta.clone(), ws.clone());
    let envelope = |id: &str, event: serde_json::Value| json!({"type": "event_callback", "team_id": "T024BE7LD", "event_id": id, "event": event});
    let payloads = [
        envelope(
            "Ev1",
            json!({"type": "message", "channel": "C1", "user": "U1", "ts": "1700000000.000100", "text": "the deploy is failing on staging"}),
        ),
        envelope(
            "Ev2",
            json!({"type": "message", "subtype": "message_changed", "channel": "C1", "ts": "1700000005.000000",
            "message": {"type": "message", "user": "U1", "ts": "1700000000.000100", "text": "the deploy is failing on staging (fixed by a rollback)",
                        "edited": {"user": "U1", "ts": "1700000005.000000"}}}),
        ),
        envelope(
            "Ev3",
            json!({"type": "reaction_added", "user": "U2", "reaction": "eyes", "item": {"type": "message", "channel": "C1", "ts": "1700000000.000100"}, "event_ts": "1700000006.000000"}),
        ),
        envelope(
            "Ev4",
            json!({"type": "message", "channel": "C1", "user": "U2", "ts": "1700000010.000100", "text": "lunch?"}),
        ),
        envelope(
            "Ev5",
            json!({"type": "message", "subtype": "message_deleted", "channel": "C1", "deleted_ts": "1700000010.000100", "ts": "1700000011.000000"}),
        ),
    ];
    for p in &payloads {
        let outcome = events.handle(p).await?;
        println!("{} -> {outcome:?}", p["event_id"]);
    }
    // Replaying an event changes nothing.
    events.handle(&payloads[1]).await?;

    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = relay.shutdown().await?;
    println!(
        "relay delivered {} changes ({} embedded)",
        report.acked, report.embedded
    );

    let engine = QueryEngine::new(meta, content, embedder);
    for q in ["rollback", "lunch"] {
        let hits = engine.search(&ws, SearchRequest::new(q)).await?.hits;
        println!(
            "{q:?}: {} hit(s){}",
            hits.len(),
            hits.first()
                .map(|h| format!(" — {}", h.snippet.text))
                .unwrap_or_default()
        );
    }
    Ok(())
}
