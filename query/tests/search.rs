//! Behaviour of search, thread, context, digest, PR-review finder and Q&A on a small workspace
//! whose contents are known, in the in-memory reference stores.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use chatvault_core::testing::MemoryContentStore;
use chatvault_core::{
    Channel, ChannelId, ChannelKind, CollectionInfo, CollectionSpec, ContentAttributes,
    ContentCapabilities, ContentDelete, ContentDocument, ContentStore, ContentVersion, Embedder,
    ErrorKind, HashingEmbedder, Link, LinkSource, MembershipChange, MessageContent, MessageKey,
    MessageMeta, MessageRecord, PageRequest, Reaction, Result, ScoredKey, SearchOptions, TimeRange,
    Ts, User, UserId, Workspace, WorkspaceId, WriteBatch, WriteOutcome,
};
use chatvault_query::{
    AskRequest, DigestRequest, ExtractiveAnswerer, PlannerConfig, PrReviewRequest, QueryEngine,
    Scope, SearchFilter, SearchMode, SearchRequest, ThreadPart,
};

const ALL_MODES: [SearchMode; 3] = [
    SearchMode::Hybrid,
    SearchMode::Lexical,
    SearchMode::Semantic,
];

fn uid(s: &str) -> UserId {
    UserId::new(s).expect("user id")
}
fn cid(s: &str) -> ChannelId {
    ChannelId::new(s).expect("channel id")
}

struct Msg {
    channel: &'static str,
    ts: &'static str,
    user: &'static str,
    text: &'static str,
    thread_ts: Option<&'static str>,
    reactions: u32,
    links: &'static [&'static str],
}

const fn m(channel: &'static str, ts: &'static str, user: &'static str, text: &'static str) -> Msg {
    Msg {
        channel,
        ts,
        user,
        text,
        thread_ts: None,
        reactions: 0,
        links: &[],
    }
}

/// Two workspaces. T1 (domain acme): #general (public), #secret (private, U1), an IM (U1, U2).
/// T2: one public channel with the same words.
async fn fixture() -> (QueryEngine, WorkspaceId, WorkspaceId) {
    let (meta, content) = common::memory_stores();
    fixture_on(meta, content).await
}

/// The same fixture on the embedded default's real stores (SQLite + tantivy/HNSW).
async fn real_fixture() -> (QueryEngine, WorkspaceId, WorkspaceId, tempfile::TempDir) {
    let (meta, content, dir) = common::real_stores().await;
    let (engine, t1, t2) = fixture_on(meta, content).await;
    (engine, t1, t2, dir)
}

async fn fixture_on(
    meta: Arc<dyn chatvault_core::MetadataStore>,
    content: Arc<dyn ContentStore>,
) -> (QueryEngine, WorkspaceId, WorkspaceId) {
    let embedder: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(128).expect("embedder"));
    let t1 = WorkspaceId::new("T1").expect("ws");
    let t2 = WorkspaceId::new("T2").expect("ws");
    let mut general = Channel::new(cid("CGEN"), "general", ChannelKind::Public);
    general.created = Some(Ts::new("1700000000").expect("ts").to_datetime());
    general.purpose = Some("Company-wide chat".into());
    let channels = vec![
        general,
        Channel::new(cid("CSEC"), "secret", ChannelKind::Private),
        Channel::new(cid("DIM"), "U2", ChannelKind::Im),
    ];
    let msgs = [
        Msg {
            reactions: 5,
            ..m(
                "CGEN",
                "1700000100.000100",
                "U1",
                "The deploy failed on staging again",
            )
        },
        Msg {
            thread_ts: Some("1700000100.000100"),
            ..m(
                "CGEN",
                "1700000200.000100",
                "U2",
                "I rolled back the staging deploy, looking at logs",
            )
        },
        Msg {
            thread_ts: Some("1700000100.000100"),
            reactions: 1,
            ..m(
                "CGEN",
                "1700000300.000100",
                "U3",
                "Root cause: a missing database migration",
            )
        },
        Msg {
            links: &["https://github.com/acme/app/pull/42"],
            ..m(
                "CGEN",
                "1700000400.000100",
                "U2",
                "Please review https://github.com/acme/app/pull/42 fixing the deploy script",
            )
        },
        Msg {
            thread_ts: Some("1700000400.000100"),
            ..m("CGEN", "1700000500.000100", "U1", "Approved, nice fix")
        },
        Msg {
            links: &["https://gitlab.com/acme/infra/-/merge_requests/7"],
            ..m(
                "CGEN",
                "1700000600.000100",
                "U3",
                "MR for the terraform change https://gitlab.com/acme/infra/-/merge_requests/7",
            )
        },
        m(
            "CGEN",
            "1700000700.000100",
            "U3",
            "Does anyone know how to rotate the database password?",
        ),
        m("CGEN", "1700000800.000100", "U1", "Lunch at noon, anyone?"),
        m(
            "CGEN",
            "1700000900.000100",
            "U2",
            "Where are the quarterly planning slides?",
        ),
        Msg {
            thread_ts: Some("1700000900.000100"),
            ..m(
                "CGEN",
                "1700000950.000100",
                "U1",
                "In the shared drive under planning",
            )
        },
        m(
            "CSEC",
            "1700001000.000100",
            "U1",
            "Secret: the deploy key for staging is rotated monthly",
        ),
        m(
            "DIM",
            "1700001100.000100",
            "U2",
            "private note about the deploy on staging",
        ),
    ];
    for (ws, domain) in [(&t1, Some("acme")), (&t2, None)] {
        let mut w = Workspace::new(ws.clone(), format!("{ws} inc"));
        w.domain = domain.map(str::to_string);
        meta.upsert_workspace(&w).await.expect("workspace");
        content
            .create_collection(
                ws,
                &CollectionSpec {
                    dimension: embedder.dimension(),
                    model_id: embedder.model_id().to_string(),
                },
            )
            .await
            .expect("collection");
        let mut batch = WriteBatch::new(ws.clone());
        for (u, name) in [("U1", "ann"), ("U2", "bob"), ("U3", "cy")] {
            let mut user = User::new(uid(u), name);
            user.real_name = Some(format!("{name} example"));
            batch.users.push(user);
        }
        batch.channels = channels.clone();
        batch.memberships = vec![
            MembershipChange::Replace {
                channel: cid("CGEN"),
                users: vec![uid("U1"), uid("U2"), uid("U3")],
            },
            MembershipChange::Replace {
                channel: cid("CSEC"),
                users: vec![uid("U1")],
            },
            MembershipChange::Replace {
                channel: cid("DIM"),
                users: vec![uid("U1"), uid("U2")],
            },
        ];
        let mut docs = Vec::new();
        for msg in &msgs {
            let key = MessageKey::parse(ws.as_str(), msg.channel, msg.ts).expect("key");
            let mut meta_row = MessageMeta::new(key.clone());
            meta_row.user = Some(uid(msg.user));
            meta_row.thread_ts = msg.thread_ts.map(|t| Ts::new(t).expect("ts"));
            if msg.thread_ts.is_none() {
                let replies = msgs
                    .iter()
                    .filter(|r| r.thread_ts == Some(msg.ts) && r.channel == msg.channel)
                    .count() as u32;
                if replies > 0 {
                    meta_row.thread_ts = Some(key.ts.clone());
                    meta_row.reply_count = replies;
                }
            }
            meta_row.reaction_count = msg.reactions;
            meta_row.has_reactions = msg.reactions > 0;
            meta_row.link_count = msg.links.len() as u32;
            let kind = channels
                .iter()
                .find(|c| c.id.as_str() == msg.channel)
                .map(|c| c.kind)
                .expect("channel");
            let c = MessageContent {
                context: Default::default(),
                key: key.clone(),
                text: msg.text.to_string(),
                attributes: ContentAttributes::from_meta(&meta_row, kind),
            };
            docs.push(c.clone());
            batch.messages.push(MessageRecord {
                reactions: if msg.reactions > 0 {
                    vec![Reaction {
                        name: "eyes".into(),
                        users: vec![uid("U3")],
                        count: msg.reactions,
                    }]
                } else {
                    Vec::new()
                },
                links: msg
                    .links
                    .iter()
                    .filter_map(|u| Link::parse(u, LinkSource::Text))
                    .collect(),
                files: Vec::new(),
                content: Some(c),
                meta: meta_row,
            });
        }
        meta.apply(batch).await.expect("apply");
        common::write_content(content.as_ref(), embedder.as_ref(), ws, docs).await;
    }
    (QueryEngine::new(meta, content, embedder), t1, t2)
}

fn channels_of(resp: &chatvault_query::SearchResponse) -> Vec<String> {
    resp.hits
        .iter()
        .map(|h| h.message.key.channel.to_string())
        .collect()
}

#[tokio::test]
async fn hybrid_search_returns_enriched_explained_hits() {
    let (engine, t1, _) = fixture().await;
    let resp = engine
        .search(&t1, SearchRequest::new("deploy failed staging"))
        .await
        .expect("search");
    assert_eq!(resp.mode, SearchMode::Hybrid);
    assert_eq!(resp.degraded, None);
    assert_eq!(
        resp.candidates, None,
        "no metadata-only condition: no candidate step"
    );
    let top = &resp.hits[0];
    assert_eq!(top.message.key.ts.as_str(), "1700000100.000100");
    assert_eq!(top.message.channel_name.as_deref(), Some("general"));
    assert_eq!(top.message.user_name.as_deref(), Some("ann example"));
    assert_eq!(top.message.reaction_count, 5);
    assert_eq!(top.message.reply_count, 2);
    assert_eq!(
        top.message.permalink.as_deref(),
        Some("https://acme.slack.com/archives/CGEN/p1700000100000100")
    );
    assert_eq!(
        top.snippet.marked,
        "The **deploy** **failed** on **staging** again"
    );
    assert_eq!(top.why.lexical.map(|r| r.rank), Some(1));
    assert!(top.why.semantic.is_some());
    // a reply carries its parent
    let reply = resp
        .hits
        .iter()
        .find(|h| h.message.key.ts.as_str() == "1700000200.000100")
        .expect("the rollback reply matches 'staging deploy'");
    let parent = reply.parent.as_ref().expect("parent summary");
    assert_eq!(parent.key.ts.as_str(), "1700000100.000100");
    assert_eq!(
        parent.excerpt.as_deref(),
        Some("The deploy failed on staging again")
    );
    assert!(reply
        .message
        .permalink
        .as_deref()
        .is_some_and(|p| p.ends_with("?thread_ts=1700000100.000100&cid=CGEN")));
    // serialisable for --json
    let json = serde_json::to_string(&resp).expect("json");
    assert!(json.contains("\"fused_score\""));
}

#[tokio::test]
async fn scopes_decide_which_channels_come_back() {
    let (engine, t1, _) = fixture().await;
    let q = |scope: Scope| SearchRequest::new("deploy staging").limit(50).scope(scope);
    let public = engine.search(&t1, q(Scope::Public)).await.expect("search");
    assert!(
        channels_of(&public).iter().all(|c| c == "CGEN"),
        "{:?}",
        channels_of(&public)
    );
    let ann = engine
        .search(&t1, q(Scope::User(uid("U1"))))
        .await
        .expect("search");
    let ann_channels = channels_of(&ann);
    assert!(ann_channels.contains(&"CSEC".to_string()));
    assert!(ann_channels.contains(&"DIM".to_string()));
    let cy = engine
        .search(&t1, q(Scope::User(uid("U3"))))
        .await
        .expect("search");
    assert!(channels_of(&cy).iter().all(|c| c == "CGEN"));
    let bob = engine
        .search(&t1, q(Scope::User(uid("U2"))))
        .await
        .expect("search");
    assert!(channels_of(&bob).contains(&"DIM".to_string()));
    assert!(!channels_of(&bob).contains(&"CSEC".to_string()));
    let admin = engine.search(&t1, q(Scope::Admin)).await.expect("search");
    assert_eq!(admin.hits.len(), ann.hits.len());
    // a private channel named explicitly in the filter still needs membership
    let sneaky = engine
        .search(
            &t1,
            q(Scope::User(uid("U3"))).filter(SearchFilter {
                channels: Some(vec![cid("CSEC")]),
                ..SearchFilter::default()
            }),
        )
        .await
        .expect("search");
    assert!(sneaky.hits.is_empty());
}

#[tokio::test]
async fn nothing_from_another_workspace_comes_back() {
    let (engine, t1, t2) = fixture().await;
    for mode in ALL_MODES {
        let resp = engine
            .search(
                &t2,
                SearchRequest::new("deploy")
                    .mode(mode)
                    .scope(Scope::Admin)
                    .limit(100),
            )
            .await
            .expect("search");
        assert!(!resp.hits.is_empty());
        assert!(resp.hits.iter().all(|h| h.message.key.workspace == t2));
        // T2 has no domain: no invented permalink
        assert!(resp.hits.iter().all(|h| h.message.permalink.is_none()));
        assert!(resp.hits[0]
            .message
            .app_link
            .starts_with("slack://channel?team=T2"));
    }
    let key = MessageKey::parse("T2", "CGEN", "1700000100.000100").expect("key");
    assert!(engine.thread(&key, &Scope::Admin).await.is_ok());
    let missing = WorkspaceId::new("T9").expect("ws");
    let err = engine
        .search(&missing, SearchRequest::new("deploy"))
        .await
        .expect_err("unknown workspace");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let _ = t1;
}

#[tokio::test]
async fn filters_narrow_results() {
    let (engine, t1, _) = fixture().await;
    check_filters(engine, t1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_narrow_results_on_the_real_stores() {
    let (engine, t1, _, _dir) = real_fixture().await;
    check_filters(engine, t1).await;
}

async fn check_filters(engine: QueryEngine, t1: WorkspaceId) {
    let search = |filter: SearchFilter| {
        let engine = engine.clone();
        let t1 = t1.clone();
        async move {
            engine
                .search(
                    &t1,
                    SearchRequest::new("deploy staging database")
                        .limit(50)
                        .filter(filter),
                )
                .await
                .expect("search")
        }
    };
    let by_user = search(SearchFilter {
        users: Some(vec![uid("U2")]),
        ..SearchFilter::default()
    })
    .await;
    assert!(!by_user.hits.is_empty());
    assert!(by_user
        .hits
        .iter()
        .all(|h| h.message.user == Some(uid("U2"))));

    let replies = search(SearchFilter {
        thread: Some(ThreadPart::InThread),
        ..SearchFilter::default()
    })
    .await;
    assert!(!replies.hits.is_empty());
    assert!(replies
        .hits
        .iter()
        .all(|h| h.message.thread_parent.is_some()));
    let top = search(SearchFilter {
        thread: Some(ThreadPart::TopLevel),
        ..SearchFilter::default()
    })
    .await;
    assert!(top.hits.iter().all(|h| h.message.thread_parent.is_none()));

    let reacted = search(SearchFilter {
        min_reactions: Some(1),
        ..SearchFilter::default()
    })
    .await;
    // every message has an undelivered outbox entry (the fixture wrote the content itself):
    // reactions are pushed down and each of them searched by key
    assert_eq!(reacted.plan, chatvault_query::FilterPlan::ContentStore);
    let mut ts: Vec<&str> = reacted
        .hits
        .iter()
        .map(|h| h.message.key.ts.as_str())
        .collect();
    ts.sort();
    assert_eq!(ts, ["1700000100.000100", "1700000300.000100"]);

    let links = search(SearchFilter {
        has_links: Some(true),
        ..SearchFilter::default()
    })
    .await;
    // semantic search ranks every candidate, so both messages with links come back, the one
    // matching the words first
    assert_eq!(links.hits.len(), 2);
    assert!(links.hits.iter().all(|h| !h.message.links.is_empty()));
    assert_eq!(links.hits[0].message.links[0].domain, "github.com");

    let early = search(SearchFilter {
        time: TimeRange::between(
            Ts::new("1700000000").expect("ts").to_datetime(),
            Ts::new("1700000250").expect("ts").to_datetime(),
        ),
        ..SearchFilter::default()
    })
    .await;
    assert_eq!(early.hits.len(), 2);

    let none = search(SearchFilter {
        min_reactions: Some(100),
        ..SearchFilter::default()
    })
    .await;
    assert!(none.hits.is_empty());
}

/// The post-filter path (search deeper, check each hit against the metadata store) returns
/// exactly what the allow-list path returns.
#[tokio::test]
async fn post_filtered_reaction_conditions_match_the_allow_list() {
    let (engine, t1, _) = fixture().await;
    check_post_filter(engine, t1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_filtered_reaction_conditions_match_the_allow_list_on_the_real_stores() {
    let (engine, t1, _, _dir) = real_fixture().await;
    check_post_filter(engine, t1).await;
}

async fn check_post_filter(engine: QueryEngine, t1: WorkspaceId) {
    let post = engine.clone().with_planner(PlannerConfig {
        push_down_reactions: false,
        candidate_list_max: 0,
        post_filter_max_overfetch: f64::INFINITY,
    });
    for (filter, expected) in [
        (
            SearchFilter {
                min_reactions: Some(1),
                ..SearchFilter::default()
            },
            2,
        ),
        (
            SearchFilter {
                has_reactions: Some(false),
                ..SearchFilter::default()
            },
            usize::MAX,
        ),
        (
            SearchFilter {
                min_reactions: Some(100),
                ..SearchFilter::default()
            },
            0,
        ),
    ] {
        for mode in ALL_MODES {
            let request = SearchRequest::new("deploy staging database")
                .mode(mode)
                .limit(50)
                .filter(filter.clone());
            let listed = engine.search(&t1, request.clone()).await.expect("search");
            let filtered = post.search(&t1, request).await.expect("search");
            let keys = |r: &chatvault_query::SearchResponse| -> Vec<MessageKey> {
                r.hits.iter().map(|h| h.message.key.clone()).collect()
            };
            assert_eq!(keys(&listed), keys(&filtered), "{mode:?} {filter:?}");
            if expected != usize::MAX {
                assert_eq!(filtered.hits.len(), expected, "{mode:?} {filter:?}");
            }
            if expected != 0 {
                // the post-filter path hands no allow-list to the content store
                assert_eq!(filtered.candidates, None, "{mode:?} {filter:?}");
            }
            assert!(filtered.hits.iter().all(|h| {
                filter
                    .min_reactions
                    .is_none_or(|n| h.message.reaction_count >= n)
                    && filter
                        .has_reactions
                        .is_none_or(|b| (h.message.reaction_count > 0) == b)
            }));
        }
    }
}

/// Reaction conditions pushed down to the content store give the same pages as the exact
/// metadata paths, also while a reaction change is undelivered (that message is searched by key).
#[tokio::test]
async fn reaction_conditions_are_pushed_down_only_while_the_content_store_is_current() {
    let (engine, t1, _) = fixture().await;
    check_push_down(engine, t1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaction_conditions_are_pushed_down_only_while_the_content_store_is_current_on_the_real_stores(
) {
    let (engine, t1, _, _dir) = real_fixture().await;
    check_push_down(engine, t1).await;
}

async fn check_push_down(engine: QueryEngine, t1: WorkspaceId) {
    use chatvault_core::{ClaimRequest, ReactionChange};
    use chatvault_query::FilterPlan;
    let meta = engine.metadata().clone();
    // The fixture wrote the content itself: deliver (acknowledge) what it enqueued.
    let drain = || async {
        loop {
            let claim = ClaimRequest {
                workspace: Some(t1.clone()),
                limit: 1000,
                ..ClaimRequest::default()
            };
            let entries = meta.claim_outbox(&claim).await.expect("claim");
            if entries.is_empty() {
                break;
            }
            let ids: Vec<_> = entries.iter().map(|e| e.id).collect();
            meta.ack_outbox(&ids).await.expect("ack");
        }
    };
    drain().await;
    let exact = engine.clone().with_planner(PlannerConfig {
        push_down_reactions: false,
        ..PlannerConfig::default()
    });
    let request = |filter: SearchFilter, mode| {
        SearchRequest::new("deploy staging database")
            .mode(mode)
            .limit(50)
            .filter(filter)
    };
    let keys = |r: &chatvault_query::SearchResponse| -> Vec<MessageKey> {
        r.hits.iter().map(|h| h.message.key.clone()).collect()
    };
    for filter in [
        SearchFilter {
            min_reactions: Some(1),
            ..SearchFilter::default()
        },
        SearchFilter {
            has_reactions: Some(true),
            min_reactions: Some(3),
            ..SearchFilter::default()
        },
        SearchFilter {
            min_reactions: Some(100),
            ..SearchFilter::default()
        },
    ] {
        for mode in ALL_MODES {
            let pushed = engine
                .search(&t1, request(filter.clone(), mode))
                .await
                .expect("search");
            let listed = exact
                .search(&t1, request(filter.clone(), mode))
                .await
                .expect("search");
            assert_eq!(pushed.plan, FilterPlan::ContentStore, "{mode:?} {filter:?}");
            assert_ne!(listed.plan, FilterPlan::ContentStore, "{mode:?} {filter:?}");
            assert_eq!(keys(&pushed), keys(&listed), "{mode:?} {filter:?}");
        }
    }
    // "without reactions" cannot be put as a minimum: never pushed down
    let without = engine
        .search(
            &t1,
            request(
                SearchFilter {
                    has_reactions: Some(false),
                    ..SearchFilter::default()
                },
                SearchMode::Hybrid,
            ),
        )
        .await
        .expect("search");
    assert_ne!(without.plan, FilterPlan::ContentStore);
    assert!(!without.hits.is_empty());

    // A reaction the content store has not been told about yet: that message is searched by
    // key, and found by its new count, the same as by the exact paths.
    let target = without.hits[0].message.key.clone();
    let mut batch = WriteBatch::new(t1.clone());
    batch.reaction_changes.push(ReactionChange {
        key: target.clone(),
        user: uid("U2"),
        name: "tada".into(),
        added: true,
    });
    meta.apply(batch).await.expect("reaction change");
    assert_eq!(
        meta.undelivered_keys(&t1, 10).await.expect("undelivered"),
        vec![target.clone()]
    );
    for mode in ALL_MODES {
        let filter = SearchFilter {
            min_reactions: Some(1),
            ..SearchFilter::default()
        };
        let after = engine
            .search(&t1, request(filter.clone(), mode))
            .await
            .expect("search");
        let listed = exact
            .search(&t1, request(filter, mode))
            .await
            .expect("search");
        assert_eq!(after.plan, FilterPlan::ContentStore, "{mode:?}");
        assert!(
            keys(&after).contains(&target),
            "{mode:?}: {target} not found by its new reaction"
        );
        assert_eq!(keys(&after), keys(&listed), "{mode:?}");
    }
    // more lagging messages than the planner searches by key: the exact paths take over
    let strict = engine.clone().with_planner(PlannerConfig {
        candidate_list_max: 0,
        ..PlannerConfig::default()
    });
    let fallback = strict
        .search(
            &t1,
            request(
                SearchFilter {
                    min_reactions: Some(1),
                    ..SearchFilter::default()
                },
                SearchMode::Hybrid,
            ),
        )
        .await
        .expect("search");
    assert_ne!(fallback.plan, FilterPlan::ContentStore);
    assert!(keys(&fallback).contains(&target));
}

#[tokio::test]
async fn pages_continue_with_the_cursor_without_overlap() {
    let (engine, t1, _) = fixture().await;
    let mut cursor = None;
    let mut seen = Vec::new();
    for _ in 0..20 {
        let resp = engine
            .search(
                &t1,
                SearchRequest::new("the deploy staging database review")
                    .limit(2)
                    .cursor(cursor.clone()),
            )
            .await
            .expect("search");
        assert!(resp.hits.len() <= 2);
        for h in &resp.hits {
            assert!(
                !seen.contains(&h.message.key),
                "{} seen twice",
                h.message.key
            );
            seen.push(h.message.key.clone());
        }
        cursor = resp.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert!(cursor.is_none(), "paging ends");
    let all = engine
        .search(
            &t1,
            SearchRequest::new("the deploy staging database review").limit(100),
        )
        .await
        .expect("search");
    let all_keys: Vec<MessageKey> = all.hits.iter().map(|h| h.message.key.clone()).collect();
    assert_eq!(seen, all_keys, "pages concatenate to the full ranking");

    for bad in ["nonsense", "offset:x", "offset:-1"] {
        let err = engine
            .search(&t1, SearchRequest::new("deploy").cursor(Some(bad.into())))
            .await
            .expect_err("bad cursor");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("cursor"), "{err}");
    }
    for bad in [
        SearchRequest::new("   "),
        SearchRequest::new("deploy").limit(0),
        SearchRequest::new("deploy").limit(5000),
    ] {
        let err = engine.search(&t1, bad).await.expect_err("bad request");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
    // `since` and `until` swapped: refused, not answered with nothing
    let mut swapped = SearchRequest::new("deploy");
    let at = |secs| chrono::DateTime::from_timestamp(secs, 0).expect("in range");
    swapped.filter.time = chatvault_core::TimeRange::between(at(1_454_284_800), at(1_451_606_400));
    let err = engine
        .search(&t1, swapped.clone())
        .await
        .expect_err("inverted range");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("2016-02-01"), "{err}");
    swapped.filter.time = chatvault_core::TimeRange::between(at(1_451_606_400), at(1_451_606_400));
    engine
        .search(&t1, swapped)
        .await
        .expect("an empty range is not an error");
}

/// A content store without lexical search (like a vector-only server), delegating the rest.
#[derive(Debug)]
struct NoLexical(MemoryContentStore);

#[async_trait]
impl ContentStore for NoLexical {
    fn backend(&self) -> &'static str {
        "chroma"
    }
    fn capabilities(&self) -> ContentCapabilities {
        ContentCapabilities {
            lexical_search: false,
            ..ContentCapabilities::default()
        }
    }
    async fn create_collection(&self, w: &WorkspaceId, s: &CollectionSpec) -> Result<()> {
        self.0.create_collection(w, s).await
    }
    async fn collection_info(&self, w: &WorkspaceId) -> Result<Option<CollectionInfo>> {
        self.0.collection_info(w).await
    }
    async fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        self.0.list_collections().await
    }
    async fn drop_collection(&self, w: &WorkspaceId) -> Result<()> {
        self.0.drop_collection(w).await
    }
    async fn set_index_version(&self, w: &WorkspaceId, v: u32) -> Result<()> {
        self.0.set_index_version(w, v).await
    }
    async fn upsert(&self, w: &WorkspaceId, d: &[ContentDocument]) -> Result<WriteOutcome> {
        self.0.upsert(w, d).await
    }
    async fn delete(&self, w: &WorkspaceId, d: &[ContentDelete]) -> Result<WriteOutcome> {
        self.0.delete(w, d).await
    }
    async fn get(&self, w: &WorkspaceId, k: &[MessageKey]) -> Result<Vec<ContentDocument>> {
        self.0.get(w, k).await
    }
    async fn search_vector(
        &self,
        w: &WorkspaceId,
        q: &[f32],
        o: &SearchOptions,
    ) -> Result<Vec<ScoredKey>> {
        self.0.search_vector(w, q, o).await
    }
    async fn search_lexical(
        &self,
        _: &WorkspaceId,
        _: &str,
        _: &SearchOptions,
    ) -> Result<Vec<ScoredKey>> {
        Err(chatvault_core::Error::unsupported("no lexical search"))
    }
    async fn list_versions(&self, w: &WorkspaceId, p: &PageRequest) -> Result<Vec<ContentVersion>> {
        self.0.list_versions(w, p).await
    }
}

#[tokio::test]
async fn hybrid_says_so_when_the_backend_cannot_search_lexically() {
    let (meta, _) = common::memory_stores();
    let content: Arc<dyn ContentStore> = Arc::new(NoLexical(MemoryContentStore::new()));
    let embedder: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(64).expect("embedder"));
    let dir = common::testdata("slack-export-viewer-testarchive");
    let loaded = common::load_export(
        &dir,
        "T0BMQB6JD",
        None,
        meta.as_ref(),
        content.as_ref(),
        embedder.as_ref(),
        &[],
    )
    .await;
    let engine = QueryEngine::new(meta, content, embedder);
    let resp = engine
        .search(&loaded.workspace, SearchRequest::new("hello"))
        .await
        .expect("hybrid degrades");
    assert_eq!(resp.mode, SearchMode::Semantic);
    assert_eq!(
        resp.degraded.as_deref(),
        Some("lexical search unsupported by backend chroma")
    );
    assert!(!resp.hits.is_empty());
    assert!(resp.hits.iter().all(|h| h.why.lexical.is_none()));
    let err = engine
        .search(
            &loaded.workspace,
            SearchRequest::new("hello").mode(SearchMode::Lexical),
        )
        .await
        .expect_err("lexical mode cannot run");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[tokio::test]
async fn thread_and_context_return_messages_in_order_within_scope() {
    let (engine, t1, _) = fixture().await;
    let reply = MessageKey::parse("T1", "CGEN", "1700000300.000100").expect("key");
    let thread = engine.thread(&reply, &Scope::Public).await.expect("thread");
    assert_eq!(thread.parent.ts.as_str(), "1700000100.000100");
    let ts: Vec<&str> = thread.messages.iter().map(|m| m.key.ts.as_str()).collect();
    assert_eq!(
        ts,
        [
            "1700000100.000100",
            "1700000200.000100",
            "1700000300.000100"
        ]
    );
    assert_eq!(
        thread.messages[2].text.as_deref(),
        Some("Root cause: a missing database migration")
    );

    let secret = MessageKey::parse("T1", "CSEC", "1700001000.000100").expect("key");
    let err = engine
        .thread(&secret, &Scope::User(uid("U3")))
        .await
        .expect_err("not a member");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(engine
        .thread(&secret, &Scope::User(uid("U1")))
        .await
        .is_ok());

    let mid = MessageKey::parse("T1", "CGEN", "1700000700.000100").expect("key");
    let ctx = engine
        .context(&mid, 2, &Scope::Public)
        .await
        .expect("context");
    let ts: Vec<&str> = ctx.messages.iter().map(|m| m.key.ts.as_str()).collect();
    assert_eq!(
        ts,
        [
            "1700000400.000100",
            "1700000600.000100",
            "1700000700.000100",
            "1700000800.000100",
            "1700000900.000100"
        ]
    );
    let first = MessageKey::parse("T1", "CGEN", "1700000100.000100").expect("key");
    let ctx = engine
        .context(&first, 1, &Scope::Public)
        .await
        .expect("context");
    assert_eq!(ctx.messages.len(), 2);
    let missing = MessageKey::parse("T1", "CGEN", "1600000000.000000").expect("key");
    assert_eq!(
        engine
            .context(&missing, 1, &Scope::Public)
            .await
            .expect_err("missing")
            .kind(),
        ErrorKind::NotFound
    );
    let _ = t1;
}

#[tokio::test]
async fn digest_lists_what_the_scope_may_see_and_renders_markdown() {
    let (engine, t1, _) = fixture().await;
    let digest = engine
        .digest(&t1, DigestRequest::new(TimeRange::all()))
        .await
        .expect("digest");
    assert_eq!(
        digest.most_reacted[0].message.key.ts.as_str(),
        "1700000100.000100"
    );
    assert_eq!(digest.most_reacted[0].reactions, 5);
    assert_eq!(
        digest.active_threads[0].parent_key.ts.as_str(),
        "1700000100.000100"
    );
    assert_eq!(digest.active_threads[0].replies, 2);
    assert!(digest.top_domains.iter().any(|d| d.domain == "github.com"));
    assert!(digest
        .busiest_channels
        .iter()
        .all(|c| c.id.as_str() == "CGEN"));
    assert_eq!(digest.busiest_channels[0].messages, 10);
    assert_eq!(digest.new_channels.len(), 1);
    assert_eq!(digest.new_channels[0].name, "general");
    let md = digest.to_markdown();
    for section in [
        "# T1 inc digest — all time",
        "## Most reacted messages",
        "## Most active threads",
        "## Most shared links",
        "## Busiest channels",
        "## Busiest people",
        "## New channels",
        "https://acme.slack.com/archives/CGEN/p1700000100000100",
        "<https://github.com/acme/app/pull/42>",
    ] {
        assert!(md.contains(section), "markdown lacks {section:?}:\n{md}");
    }
    assert!(!md.contains("Secret"), "{md}");
    let admin = engine
        .digest(
            &t1,
            DigestRequest {
                scope: Scope::Admin,
                ..DigestRequest::new(TimeRange::all())
            },
        )
        .await
        .expect("digest");
    assert_eq!(admin.busiest_channels.len(), 3);
    let empty = engine
        .digest(
            &t1,
            DigestRequest::new(TimeRange::between(
                Ts::new("1800000000").expect("ts").to_datetime(),
                Ts::new("1800000001").expect("ts").to_datetime(),
            )),
        )
        .await
        .expect("digest");
    assert!(empty.to_markdown().contains("_Nothing in this period._"));
}

#[tokio::test]
async fn pr_finder_ranks_review_requests_by_attention_and_finds_open_questions() {
    let (engine, t1, _) = fixture().await;
    let report = engine
        .pr_reviews(&t1, PrReviewRequest::new(TimeRange::all()))
        .await
        .expect("pr reviews");
    let urls: Vec<&str> = report.reviews.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://github.com/acme/app/pull/42",
            "https://gitlab.com/acme/infra/-/merge_requests/7"
        ]
    );
    assert_eq!(report.reviews[0].reply_count, 1);
    assert_eq!(
        report.reviews[0].shares[0].replies[0].text.as_deref(),
        Some("Approved, nice fix")
    );
    assert_eq!(report.reviews[1].reply_count, 0);
    let open: Vec<&str> = report
        .open_questions
        .iter()
        .map(|q| q.message.key.ts.as_str())
        .collect();
    // the password question and lunch have no replies; the slides question was answered in a thread
    assert_eq!(open, ["1700000700.000100", "1700000800.000100"]);

    // with a channel window, a later message by someone else counts as a reply
    let report = engine
        .pr_reviews(
            &t1,
            PrReviewRequest {
                channel_reply_window_secs: Some(150),
                ..PrReviewRequest::new(TimeRange::all())
            },
        )
        .await
        .expect("pr reviews");
    let open: Vec<&str> = report
        .open_questions
        .iter()
        .map(|q| q.message.key.ts.as_str())
        .collect();
    // 700 (cy) is followed by ann at 800, 800 (ann) by bob at 900: both count as answered
    assert!(open.is_empty(), "{open:?}");
}

#[tokio::test]
async fn ask_returns_cited_passages_with_context_and_a_prompt() {
    let (engine, t1, _) = fixture().await;
    let request = AskRequest::new("what was the root cause of the staging deploy failure?");
    let (retrieval, answer) = engine
        .answer(&t1, request, &ExtractiveAnswerer)
        .await
        .expect("answer");
    assert!(!retrieval.passages.is_empty());
    let root = retrieval
        .passages
        .iter()
        .find(|p| p.hit.message.key.ts.as_str() == "1700000300.000100")
        .expect("the root-cause reply is retrieved");
    let ctx: Vec<&str> = root.context.iter().map(|m| m.key.ts.as_str()).collect();
    assert!(
        ctx.contains(&"1700000100.000100"),
        "thread parent in context: {ctx:?}"
    );
    assert!(retrieval.prompt.contains(&format!("[{}]", root.citation)));
    assert!(retrieval
        .prompt
        .contains("https://acme.slack.com/archives/CGEN/p1700000300000100?thread_ts=1700000100.000100&cid=CGEN"));
    assert!(retrieval.prompt.ends_with("Answer:"));
    assert_eq!(answer.citations.len(), retrieval.passages.len());
    assert!(answer.text.contains("[1]"));
    // a public viewer never gets private passages
    assert!(retrieval
        .passages
        .iter()
        .flat_map(|p| p.context.iter())
        .all(|m| m.key.channel.as_str() == "CGEN"));
}
