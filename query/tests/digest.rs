//! The digest over the bundled real export (houstondatavis), January 2016: a month in which most
//! stored messages are events — joins, a topic cleared, channels archived — that must not count
//! as anyone's activity.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use chatvault_core::{ContentStore, Embedder, HashingEmbedder, MetadataStore, TimeRange, Ts};
use chatvault_query::{Digest, DigestRequest, QueryEngine};

async fn january_2016(meta: Arc<dyn MetadataStore>, content: Arc<dyn ContentStore>) -> Digest {
    let embedder: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(32).expect("embedder"));
    let loaded =
        common::load_houstondatavis(meta.as_ref(), content.as_ref(), embedder.as_ref()).await;
    let engine = QueryEngine::new(meta, content, embedder);
    let at = |raw: &str| Ts::new(raw).expect("ts").to_datetime();
    // 2016-01-01T00:00:00Z to 2016-02-01T00:00:00Z
    let range = TimeRange::between(at("1451606400"), at("1454284800"));
    engine
        .digest(
            &loaded.workspace,
            DigestRequest {
                limit: 100,
                ..DigestRequest::new(range)
            },
        )
        .await
        .expect("digest")
}

/// (channel name, messages, people), as listed.
fn channels(d: &Digest) -> Vec<(String, u64, u64)> {
    d.busiest_channels
        .iter()
        .map(|c| (c.name.clone().unwrap_or_default(), c.messages, c.people))
        .collect()
}

/// (handle, messages), by handle: ties between people are in user id order, which says nothing.
async fn people(meta: &dyn MetadataStore, d: &Digest) -> Vec<(String, u64)> {
    let handles: HashMap<_, _> = meta
        .list_users(&d.workspace)
        .await
        .expect("users")
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect();
    let mut v: Vec<(String, u64)> = d
        .busiest_people
        .iter()
        .map(|p| (handles[&p.id].clone(), p.messages))
        .collect();
    v.sort();
    v
}

async fn assert_counts_only_what_people_said(
    label: &str,
    meta: Arc<dyn MetadataStore>,
    content: Arc<dyn ContentStore>,
) {
    let d = january_2016(meta.clone(), content).await;
    // From the export's JSON: #general has 25 entries that month, 3 joins and a topic change
    // among them; #meetup- has only joins and a topic change; #tools, #talks and five other
    // channels only their archive. The file comments in #general have no top-level author in
    // this export, so they count for the channel and for nobody.
    assert_eq!(
        channels(&d),
        [
            ("general".to_string(), 21, 8),
            ("readings".to_string(), 3, 1),
            ("datajam".to_string(), 2, 1),
        ],
        "{label}: busiest channels"
    );
    let expected: Vec<(String, u64)> = [
        ("amandashih", 4),
        ("davidjusti", 1),
        ("eloy", 1),
        ("javier", 1),
        ("jrosenberger", 3),
        ("micahstubbs", 4),
        ("neerajt", 8),
        ("timabram", 2),
    ]
    .into_iter()
    .map(|(n, c)| (n.to_string(), c))
    .collect();
    assert_eq!(
        people(meta.as_ref(), &d).await,
        expected,
        "{label}: busiest people (davidjusti's two joins, micahstubbs's archives and topic change \
         are not messages)"
    );
}

#[tokio::test]
async fn digest_activity_counts_only_real_messages_on_memory_stores() {
    let (meta, content) = common::memory_stores();
    assert_counts_only_what_people_said("memory", meta, content).await;
}

#[tokio::test]
async fn digest_activity_counts_only_real_messages_on_sqlite() {
    let (meta, content, _dir) = common::real_stores().await;
    assert_counts_only_what_people_said("sqlite", meta, content).await;
}

/// `since` and `until` swapped: the digest and the PR review report refuse the range, naming it,
/// rather than reporting an empty week.
#[tokio::test]
async fn an_inverted_range_is_refused() {
    let (meta, content) = common::memory_stores();
    let embedder: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(32).expect("embedder"));
    let engine = QueryEngine::new(meta, content, embedder);
    let at = |raw: &str| Ts::new(raw).expect("ts").to_datetime();
    let swapped = TimeRange::between(at("1454284800"), at("1451606400"));
    let ws = chatvault_core::WorkspaceId::new("T1").expect("id");
    let e = engine
        .digest(&ws, DigestRequest::new(swapped.clone()))
        .await
        .expect_err("inverted");
    assert_eq!(e.kind(), chatvault_core::ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("range"), "{e}");
    let e = engine
        .pr_reviews(&ws, chatvault_query::PrReviewRequest::new(swapped))
        .await
        .expect_err("inverted");
    assert_eq!(e.kind(), chatvault_core::ErrorKind::InvalidInput, "{e}");
}
