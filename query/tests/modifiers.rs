//! Slack search modifiers in the query text, end to end on the houstondatavis export (memory
//! stores, hashing embedder): each narrows the hits exactly as its filter would.

mod common;

use std::sync::Arc;

use chatvault_core::{Embedder, ErrorKind, HashingEmbedder, WorkspaceId};
use chatvault_query::{QueryEngine, Scope, SearchHit, SearchMode, SearchRequest};

struct Fixture {
    engine: QueryEngine,
    ws: WorkspaceId,
}

async fn fixture() -> Fixture {
    let (meta, content) = common::memory_stores();
    let embedder: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(64).expect("embedder"));
    let loaded = common::load_export(
        &common::testdata("slack-export-houstondatavis"),
        "T061A2UFL",
        Some("houstondatavis"),
        meta.as_ref(),
        content.as_ref(),
        embedder.as_ref(),
        &["sci"],
    )
    .await;
    Fixture {
        engine: QueryEngine::new(meta, content, embedder),
        ws: loaded.workspace,
    }
}

async fn search(f: &Fixture, q: &str, scope: Scope) -> chatvault_core::Result<Vec<SearchHit>> {
    f.engine
        .search(
            &f.ws,
            SearchRequest::new(q)
                .mode(SearchMode::Hybrid)
                .limit(50)
                .scope(scope),
        )
        .await
        .map(|r| r.hits)
}

async fn hits(f: &Fixture, q: &str) -> Vec<SearchHit> {
    let h = search(f, q, Scope::Admin).await.expect("search");
    assert!(!h.is_empty(), "{q:?} found nothing");
    h
}

#[tokio::test]
async fn from_keeps_one_author() {
    let f = fixture().await;
    let all = hits(&f, "data jam").await;
    assert!(all
        .iter()
        .any(|h| h.message.user_name.as_deref() != Some("neerajt")));
    for h in hits(&f, "from:@neerajt data jam").await {
        assert_eq!(
            h.message.user.as_ref().map(|u| u.as_str()),
            Some("U061A5N1G")
        );
    }
}

#[tokio::test]
async fn in_keeps_one_channel() {
    let f = fixture().await;
    for h in hits(&f, "in:#datajam data").await {
        assert_eq!(h.message.channel_name.as_deref(), Some("datajam"));
    }
}

#[tokio::test]
async fn dates_bound_the_time() {
    let f = fixture().await;
    let start = chrono::DateTime::parse_from_rfc3339("2016-01-01T00:00:00Z").expect("date");
    for h in hits(&f, "meetup after:2015-12-31").await {
        assert!(h.message.time >= start, "{}", h.message.time);
    }
    for h in hits(&f, "meetup before:2016-01-01").await {
        assert!(h.message.time < start, "{}", h.message.time);
    }
    let may = hits(&f, "meetup during:2016-05").await;
    for h in &may {
        assert_eq!(h.message.time.format("%Y-%m").to_string(), "2016-05");
    }
}

#[tokio::test]
async fn has_link_and_has_reaction() {
    let f = fixture().await;
    for h in hits(&f, "visualization has:link").await {
        assert!(!h.message.links.is_empty(), "{:?}", h.message.key);
    }
    for h in hits(&f, "data has:reaction").await {
        assert!(h.message.reaction_count > 0, "{:?}", h.message.key);
    }
}

#[tokio::test]
async fn phrases_must_appear_and_minus_words_must_not() {
    let f = fixture().await;
    for h in hits(&f, "\"data jam\"").await {
        let text = h.message.text.unwrap_or_default().to_lowercase();
        assert!(text.contains("data jam"), "{text}");
    }
    let with = hits(&f, "meetup").await;
    assert!(with.iter().any(|h| h
        .message
        .text
        .as_deref()
        .unwrap_or_default()
        .to_lowercase()
        .contains("event")));
    for h in hits(&f, "meetup -event -events").await {
        let text = h.message.text.unwrap_or_default().to_lowercase();
        assert!(
            !text
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| w == "event" || w == "events"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_private_channel_is_not_confirmed_to_a_stranger() {
    let f = fixture().await;
    let public = search(&f, "in:#sci paper", Scope::Public)
        .await
        .expect_err("private channel");
    let missing = search(&f, "in:#nosuch paper", Scope::Public)
        .await
        .expect_err("missing channel");
    assert_eq!(public.kind(), ErrorKind::NotFound);
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert_eq!(
        public.to_string().replace("sci", "X"),
        missing.to_string().replace("nosuch", "X")
    );
    assert!(!hits(&f, "in:#sci paper").await.is_empty());
}

#[tokio::test]
async fn bad_modifiers_are_clear_errors() {
    let f = fixture().await;
    let e = search(&f, "from:@nobody-here data", Scope::Admin)
        .await
        .expect_err("unknown user");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = search(&f, "before:someday data", Scope::Admin)
        .await
        .expect_err("bad date");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("before:someday"), "{e}");
    let e = search(&f, "in:#datajam", Scope::Admin)
        .await
        .expect_err("modifiers only");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}
