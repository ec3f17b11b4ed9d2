//! Property test: for random workspaces, channels, memberships, messages and queries, every result
//! of every read belongs to the workspace asked about and to a channel the scope may read.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chatvault_core::{
    Channel, ChannelId, ChannelKind, CollectionSpec, ContentAttributes, Embedder, HashingEmbedder,
    MembershipChange, MessageContent, MessageKey, MessageMeta, MessageRecord, TimeRange, Ts, User,
    UserId, Workspace, WorkspaceId, WriteBatch,
};
use chatvault_query::{
    AskRequest, DigestRequest, PrReviewRequest, QueryEngine, Scope, SearchFilter, SearchMode,
    SearchRequest,
};
use proptest::prelude::*;

const WORDS: &[&str] = &[
    "deploy", "alpha", "beta", "gamma", "secret", "lunch", "review", "db",
];

#[derive(Debug, Clone)]
struct ChannelSpec {
    kind: ChannelKind,
    members: Vec<usize>,
}

#[derive(Debug, Clone)]
struct WsSpec {
    channels: Vec<ChannelSpec>,
    /// (channel index, user index, word indexes, reactions)
    messages: Vec<(usize, usize, Vec<usize>, u32)>,
}

const USERS: usize = 4;

fn kind() -> impl Strategy<Value = ChannelKind> {
    prop_oneof![
        Just(ChannelKind::Public),
        Just(ChannelKind::Private),
        Just(ChannelKind::Im),
        Just(ChannelKind::Mpim)
    ]
}

fn ws_spec() -> impl Strategy<Value = WsSpec> {
    prop::collection::vec(
        (kind(), prop::collection::vec(0..USERS, 0..=USERS))
            .prop_map(|(kind, members)| ChannelSpec { kind, members }),
        1..5,
    )
    .prop_flat_map(|channels| {
        let n = channels.len();
        (
            Just(channels),
            prop::collection::vec(
                (
                    0..n,
                    0..USERS,
                    prop::collection::vec(0..WORDS.len(), 1..4),
                    0u32..3,
                ),
                1..25,
            ),
        )
    })
    .prop_map(|(channels, messages)| WsSpec { channels, messages })
}

#[derive(Debug, Clone)]
enum Who {
    User(usize),
    Public,
    Admin,
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        (0..USERS + 1).prop_map(Who::User), // USERS is a user in no channel at all
        Just(Who::Public),
        Just(Who::Admin)
    ]
}

fn uid(i: usize) -> UserId {
    UserId::new(format!("U{i}")).expect("user id")
}

async fn build(specs: &[WsSpec]) -> QueryEngine {
    let (meta, content) = common::memory_stores();
    let embedder: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(32).expect("embedder"));
    for (w, spec) in specs.iter().enumerate() {
        let ws = WorkspaceId::new(format!("T{w}")).expect("ws");
        let mut workspace = Workspace::new(ws.clone(), format!("ws {w}"));
        workspace.domain = Some(format!("ws{w}"));
        meta.upsert_workspace(&workspace).await.expect("workspace");
        content
            .create_collection(
                &ws,
                &CollectionSpec {
                    dimension: embedder.dimension(),
                    model_id: embedder.model_id().to_string(),
                },
            )
            .await
            .expect("collection");
        let mut batch = WriteBatch::new(ws.clone());
        batch.users = (0..=USERS)
            .map(|u| User::new(uid(u), format!("user{u}")))
            .collect();
        for (c, ch) in spec.channels.iter().enumerate() {
            // The same channel ids in every workspace: isolation must come from the workspace.
            let id = ChannelId::new(format!("C{c}")).expect("channel id");
            batch
                .channels
                .push(Channel::new(id.clone(), format!("ch{c}"), ch.kind));
            batch.memberships.push(MembershipChange::Replace {
                channel: id,
                users: ch.members.iter().map(|u| uid(*u)).collect(),
            });
        }
        let mut docs = Vec::new();
        for (i, (c, u, words, reactions)) in spec.messages.iter().enumerate() {
            let key = MessageKey::new(
                ws.clone(),
                ChannelId::new(format!("C{c}")).expect("channel id"),
                Ts::from_micros(1_700_000_000_000_000 + i as i64 * 1_000_000),
            );
            let mut m = MessageMeta::new(key.clone());
            m.user = Some(uid(*u));
            m.reaction_count = *reactions;
            m.has_reactions = *reactions > 0;
            let text: Vec<&str> = words.iter().map(|w| WORDS[*w]).collect();
            let content_row = MessageContent {
                context: Default::default(),
                key: key.clone(),
                text: text.join(" "),
                attributes: ContentAttributes::from_meta(&m, spec.channels[*c].kind),
            };
            docs.push(content_row.clone());
            let mut record = MessageRecord::new(m);
            record.content = Some(content_row);
            batch.messages.push(record);
        }
        meta.apply(batch).await.expect("apply");
        common::write_content(content.as_ref(), embedder.as_ref(), &ws, docs).await;
    }
    QueryEngine::new(meta, content, embedder)
}

/// The channels of workspace `w` that `who` may read, by the rules (not by the engine's code).
fn allowed(spec: &WsSpec, who: &Who) -> HashSet<String> {
    spec.channels
        .iter()
        .enumerate()
        .filter(|(_, c)| match who {
            Who::Admin => true,
            Who::Public => c.kind == ChannelKind::Public,
            Who::User(u) => c.kind == ChannelKind::Public || c.members.contains(u),
        })
        .map(|(i, _)| format!("C{i}"))
        .collect()
}

fn scope(who: &Who) -> Scope {
    match who {
        Who::User(u) => Scope::User(uid(*u)),
        Who::Public => Scope::Public,
        Who::Admin => Scope::Admin,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_result_is_in_the_workspace_and_the_scope(
        specs in prop::collection::vec(ws_spec(), 1..3),
        target in 0usize..2,
        who in who(),
        query in prop::collection::vec(0..WORDS.len(), 1..3),
        mode in prop_oneof![Just(SearchMode::Hybrid), Just(SearchMode::Lexical), Just(SearchMode::Semantic)],
        filter_channels in prop::option::of(prop::collection::vec(0usize..5, 0..3)),
        min_reactions in prop::option::of(0u32..3),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            let target = target % specs.len();
            let engine = build(&specs).await;
            let ws = WorkspaceId::new(format!("T{target}")).expect("ws");
            let ok = allowed(&specs[target], &who);
            let in_scope = |k: &MessageKey| k.workspace == ws && ok.contains(k.channel.as_str());
            let q: Vec<&str> = query.iter().map(|w| WORDS[*w]).collect();
            let unfiltered = filter_channels.is_none() && min_reactions.is_none();
            let filter = SearchFilter {
                channels: filter_channels.map(|cs| {
                    cs.iter().map(|c| ChannelId::new(format!("C{c}")).expect("id")).collect()
                }),
                min_reactions,
                ..SearchFilter::default()
            };
            let resp = engine
                .search(
                    &ws,
                    SearchRequest::new(q.join(" "))
                        .mode(mode)
                        .limit(100)
                        .scope(scope(&who))
                        .filter(filter),
                )
                .await
                .expect("search");
            for h in &resp.hits {
                prop_assert!(in_scope(&h.message.key), "search returned {}", h.message.key);
                if let Some(p) = &h.parent {
                    prop_assert!(in_scope(&p.key));
                }
            }
            // Scoping does not over-filter either: without a filter, lexical search finds every
            // message of the allowed channels that contains a query word.
            if mode == SearchMode::Lexical && unfiltered {
                let spec = &specs[target];
                let expected = spec.messages.iter().filter(|(c, _, words, _)| {
                    ok.contains(&format!("C{c}")) && words.iter().any(|w| query.contains(w))
                }).count();
                prop_assert_eq!(resp.hits.len(), expected);
            }

            let digest = engine
                .digest(&ws, DigestRequest { scope: scope(&who), ..DigestRequest::new(TimeRange::all()) })
                .await
                .expect("digest");
            for m in &digest.most_reacted {
                prop_assert!(in_scope(&m.message.key));
            }
            for c in &digest.busiest_channels {
                prop_assert!(ok.contains(c.id.as_str()));
            }
            let reviews = engine
                .pr_reviews(&ws, PrReviewRequest { scope: scope(&who), ..PrReviewRequest::new(TimeRange::all()) })
                .await
                .expect("pr reviews");
            for q in &reviews.open_questions {
                prop_assert!(in_scope(&q.message.key));
            }
            let retrieval = engine
                .ask(&ws, AskRequest { scope: scope(&who), ..AskRequest::new(q.join(" ")) })
                .await
                .expect("ask");
            for p in &retrieval.passages {
                prop_assert!(in_scope(&p.hit.message.key));
                for c in &p.context {
                    prop_assert!(in_scope(&c.key));
                }
            }
            // Threads and context of messages outside the scope are not found.
            let mut channels_seen: HashMap<String, MessageKey> = HashMap::new();
            for (i, (c, ..)) in specs[target].messages.iter().enumerate() {
                channels_seen.entry(format!("C{c}")).or_insert_with(|| MessageKey::new(
                    ws.clone(),
                    ChannelId::new(format!("C{c}")).expect("id"),
                    Ts::from_micros(1_700_000_000_000_000 + i as i64 * 1_000_000),
                ));
            }
            for key in channels_seen.values() {
                let t = engine.thread(key, &scope(&who)).await;
                prop_assert_eq!(t.is_ok(), in_scope(key));
                if let Ok(t) = t {
                    for m in &t.messages {
                        prop_assert!(in_scope(&m.key));
                    }
                }
                let c = engine.context(key, 3, &scope(&who)).await;
                prop_assert_eq!(c.is_ok(), in_scope(key));
                if let Ok(c) = c {
                    for m in &c.messages {
                        prop_assert!(in_scope(&m.key));
                    }
                }
            }
            // Browsing: exactly the allowed channels are listed; a channel's messages come back
            // when (and only when) the scope may read it, all of them, oldest first.
            let listed: HashSet<String> = engine
                .channels(&ws, &scope(&who))
                .await
                .expect("channels")
                .into_iter()
                .map(|c| c.id.to_string())
                .collect();
            prop_assert_eq!(&listed, &ok);
            for c in 0..5usize {
                let id = ChannelId::new(format!("C{c}")).expect("id");
                let got = engine
                    .channel_messages(&ws, &id, &TimeRange::all(), &scope(&who))
                    .await;
                prop_assert_eq!(got.is_ok(), ok.contains(id.as_str()));
                if let Ok(views) = got {
                    let expected = specs[target].messages.iter().filter(|(mc, ..)| *mc == c).count();
                    prop_assert_eq!(views.len(), expected);
                    prop_assert!(views.windows(2).all(|w| w[0].key.ts < w[1].key.ts));
                    for m in &views {
                        prop_assert!(in_scope(&m.key));
                    }
                }
            }
            Ok(())
        })?;
    }
}
