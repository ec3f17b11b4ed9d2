//! The [`MetadataStore`] conformance suite.
//!
//! A backend's test calls [`run_all`] with a factory that returns a fresh, empty store; each case
//! gets its own. Every case is also a public function, so a backend can run them one by one.
//! Cases panic with a message saying what broke.
//!
//! ```
//! use std::sync::Arc;
//! use chatvault_core::testing::{metadata_suite, MemoryMetadataStore};
//! use chatvault_core::MetadataStore;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! metadata_suite::apply_is_idempotent(Arc::new(MemoryMetadataStore::new())).await;
//! # }
//! ```

// Assertions compare with literal arrays (`[key.clone()]`): clearer than slice tricks.
#![allow(clippy::cloned_ref_to_slice_refs)]

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::fixtures::{at, content, create_workspace, key, meta, record, ts, unicode_texts, user};
use crate::{
    AggregateOptions, Bookmark, BotConfig, Channel, ChannelId, ChannelKind, ClaimRequest,
    ErrorKind, FailOutcome, FileRef, Installation, LatestOptions, LeaseOwner, Link, LinkQuery,
    LinkSource, MembershipChange, MessageDetails, MessageFilter, MessageKey, MessageRecord,
    MetadataStore, OutboxEntry, OutboxFailure, OutboxOp, OutboxStats, PageRequest,
    ProcessingQueueEntry, Reaction, ReactionChange, Result, RetryPolicy, SecretString, SyncState,
    SyncStatus, Team, TeamId, ThreadFilter, ThreadParticipant, TimeRange, User, WorkspaceId,
    WriteBatch,
};

type Store = Arc<dyn MetadataStore>;

/// The names of every case, in the order [`run_all`] runs them.
pub const CASES: &[&str] = &[
    "workspaces_round_trip",
    "installations_round_trip",
    "empty_batch_changes_nothing",
    "unknown_workspace_is_not_found",
    "foreign_key_rejects_whole_batch",
    "apply_is_idempotent",
    "batch_parts_round_trip",
    "messages_round_trip",
    "unicode_and_long_texts_round_trip",
    "user_email_is_kept",
    "outbox_enqueues_only_on_content_change",
    "renames_reindex_messages_with_content",
    "reindex_content_enqueues_for_messages_with_content",
    "edited_revision_rule",
    "delete_tombstone_beats_later_write",
    "delete_of_missing_key",
    "reaction_changes",
    "filter_every_field",
    "filter_orders_by_ts_and_pages",
    "workspaces_are_isolated",
    "aggregates",
    "activity_counts_only_real_messages",
    "channel_latest_per_channel",
    "list_links",
    "stats_content_index_and_forget",
    "outbox_claim_and_ack",
    "outbox_fail_retry_and_dead_letter",
    "outbox_lease_expiry",
    "outbox_dead_owner_leases_are_reclaimed",
    "outbox_live_owner_keeps_its_lease",
    "outbox_release",
    "outbox_per_message_order",
    "outbox_undelivered_keys",
    "outbox_concurrent_claims",
    "delete_workspace_cascades",
];

/// Runs every case, each on a fresh store from `new_store`.
pub async fn run_all<F, Fut>(new_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn MetadataStore>>,
{
    macro_rules! run {
        ($($case:ident),* $(,)?) => {{
            let names: &[&str] = &[$(stringify!($case)),*];
            assert_eq!(names, CASES, "CASES lists every case in run order");
            $(
                eprintln!("metadata_suite::{}", stringify!($case));
                $case(new_store().await).await;
            )*
        }};
    }
    run!(
        workspaces_round_trip,
        installations_round_trip,
        empty_batch_changes_nothing,
        unknown_workspace_is_not_found,
        foreign_key_rejects_whole_batch,
        apply_is_idempotent,
        batch_parts_round_trip,
        messages_round_trip,
        unicode_and_long_texts_round_trip,
        user_email_is_kept,
        outbox_enqueues_only_on_content_change,
        renames_reindex_messages_with_content,
        reindex_content_enqueues_for_messages_with_content,
        edited_revision_rule,
        delete_tombstone_beats_later_write,
        delete_of_missing_key,
        reaction_changes,
        filter_every_field,
        filter_orders_by_ts_and_pages,
        workspaces_are_isolated,
        aggregates,
        activity_counts_only_real_messages,
        channel_latest_per_channel,
        list_links,
        stats_content_index_and_forget,
        outbox_claim_and_ack,
        outbox_fail_retry_and_dead_letter,
        outbox_lease_expiry,
        outbox_dead_owner_leases_are_reclaimed,
        outbox_live_owner_keeps_its_lease,
        outbox_release,
        outbox_per_message_order,
        outbox_undelivered_keys,
        outbox_concurrent_claims,
        delete_workspace_cascades,
    );
}

// ----- helpers -----

fn ok<T>(r: Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

fn expect_err<T: std::fmt::Debug>(r: Result<T>, kind: ErrorKind, what: &str) {
    match r {
        Ok(v) => panic!("{what}: expected a {kind} error, got Ok({v:?})"),
        Err(e) => assert_eq!(e.kind(), kind, "{what}: wrong error kind: {e}"),
    }
}

fn chan(id: &str) -> ChannelId {
    ChannelId::new(id).unwrap_or_else(|e| panic!("fixture channel id {id:?}: {e}"))
}

async fn apply(store: &Store, batch: WriteBatch, what: &str) -> crate::ApplyReport {
    ok(store.apply(batch).await, what)
}

async fn all_keys(store: &Store, ws: &WorkspaceId, filter: &MessageFilter) -> Vec<MessageKey> {
    ok(
        store
            .filter_messages(ws, filter, &PageRequest::first(100_000))
            .await,
        "filter_messages",
    )
}

async fn claim(store: &Store, ws: &WorkspaceId, limit: usize, lease: Duration) -> Vec<OutboxEntry> {
    ok(
        store
            .claim_outbox(&ClaimRequest {
                workspace: Some(ws.clone()),
                limit,
                lease,
                owner: "suite".into(),
            })
            .await,
        "claim_outbox",
    )
}

async fn claim_as(
    store: &Store,
    ws: &WorkspaceId,
    owner: impl ToString,
    limit: usize,
    lease: Duration,
) -> Vec<OutboxEntry> {
    ok(
        store
            .claim_outbox(&ClaimRequest {
                workspace: Some(ws.clone()),
                limit,
                lease,
                owner: owner.to_string(),
            })
            .await,
        "claim_outbox",
    )
}

async fn get_one(store: &Store, k: &MessageKey) -> Option<MessageDetails> {
    ok(
        store
            .get_messages(&k.workspace, std::slice::from_ref(k))
            .await,
        "get_messages",
    )
    .pop()
}

async fn drain_outbox(store: &Store, ws: &WorkspaceId) -> Vec<OutboxEntry> {
    let mut all = Vec::new();
    loop {
        let got = claim(store, ws, 1000, Duration::from_secs(60)).await;
        if got.is_empty() {
            return all;
        }
        let ids: Vec<_> = got.iter().map(|e| e.id).collect();
        ok(store.ack_outbox(&ids).await, "ack_outbox");
        all.extend(got);
    }
}

fn text_message(k: &MessageKey, author: &str, text: &str) -> MessageRecord {
    record(meta(k, Some(author)), Some(text), ChannelKind::Public)
}

/// The dataset the filter, isolation and aggregate cases share. In (ts, channel) order:
/// m8 C1/9.5, m4 C2/9.5, m7 C2/10.0, m5 G1/50.0, m1 C1/100.000001, m2 C1/100.000002,
/// m3 C1/100.000003, m6 D1/200.0.
struct Dataset {
    m1: MessageKey,
    m2: MessageKey,
    m3: MessageKey,
    m4: MessageKey,
    m5: MessageKey,
    m6: MessageKey,
    m7: MessageKey,
    m8: MessageKey,
}

fn link(url: &str, source: LinkSource) -> Link {
    Link::parse(url, source).unwrap_or_else(|| panic!("fixture link {url:?} has a host"))
}

fn dataset_batch(ws: &WorkspaceId) -> (WriteBatch, Dataset) {
    let w = ws.as_str();
    let d = Dataset {
        m1: key(w, "C1", "100.000001"),
        m2: key(w, "C1", "100.000002"),
        m3: key(w, "C1", "100.000003"),
        m4: key(w, "C2", "9.5"),
        m5: key(w, "G1", "50.0"),
        m6: key(w, "D1", "200.0"),
        m7: key(w, "C2", "10.0"),
        m8: key(w, "C1", "9.5"),
    };
    let mut b = WriteBatch::new(ws.clone());
    b.users = vec![
        User::new(user("U1"), "ann"),
        User::new(user("U2"), "bob"),
        User::new(user("U3"), "cyd"),
    ];
    b.channels = vec![
        Channel::new(chan("C1"), "general", ChannelKind::Public),
        Channel::new(chan("C2"), "random", ChannelKind::Public),
        Channel::new(chan("G1"), "secret", ChannelKind::Private),
        Channel::new(chan("D1"), "dm-u2", ChannelKind::Im),
    ];
    let reaction = |name: &str, users: &[&str], count: u32| Reaction {
        name: name.into(),
        users: users.iter().map(|u| user(u)).collect(),
        count,
    };
    let kind_of = |k: &MessageKey| match k.channel.as_str() {
        "G1" => ChannelKind::Private,
        "D1" => ChannelKind::Im,
        _ => ChannelKind::Public,
    };
    let mut m1 = meta(&d.m1, Some("U1"));
    m1.thread_ts = Some(ts("100.000001"));
    m1.reply_count = 2;
    m1.reply_users_count = 2;
    m1.latest_reply = Some(ts("100.000003"));
    m1.has_reactions = true;
    m1.reaction_count = 3;
    m1.link_count = 1;
    let mut m2 = meta(&d.m2, Some("U2"));
    m2.thread_ts = Some(ts("100.000001"));
    m2.has_files = true;
    m2.subtype = Some("file_share".into());
    let mut m3 = meta(&d.m3, Some("U1"));
    m3.thread_ts = Some(ts("100.000001"));
    m3.link_count = 2;
    let mut m4 = meta(&d.m4, Some("U3"));
    m4.has_attachments = true;
    m4.has_reactions = true;
    m4.reaction_count = 1;
    let mut m5 = meta(&d.m5, Some("U2"));
    m5.has_reactions = true;
    m5.reaction_count = 5;
    let m6 = meta(&d.m6, Some("U1"));
    let mut m7 = meta(&d.m7, None);
    m7.bot_id = Some("B1".into());
    m7.subtype = Some("bot_message".into());
    let m8 = meta(&d.m8, Some("U2"));
    let texts = [
        (m1, "deploy of the API failed"),
        (m2, "here are the logs"),
        (m3, "fixed it, see the PR"),
        (m4, "lunch anyone?"),
        (m5, "salary review"),
        (m6, "hi there"),
        (m7, "build #42 passed"),
        (m8, "good morning"),
    ];
    for (m, text) in texts {
        let kind = kind_of(&m.key);
        let mut r = record(m, Some(text), kind);
        let k = r.meta.key.clone();
        if k == d.m1 {
            r.reactions = vec![
                reaction("tada", &["U2"], 1),
                reaction("thumbsup", &["U2", "U3"], 2),
            ];
            r.links = vec![link("https://github.com/acme/api/pull/1", LinkSource::Text)];
        } else if k == d.m2 {
            r.files = vec![FileRef {
                id: "F1".into(),
                name: Some("logs.txt".into()),
                title: Some("logs".into()),
                mimetype: Some("text/plain".into()),
                filetype: Some("text".into()),
                size: Some(1234),
                url_private: Some("https://files.slack.com/F1".into()),
                permalink: None,
            }];
        } else if k == d.m3 {
            r.links = vec![
                link("https://github.com/acme/api/pull/1", LinkSource::Text),
                link("https://docs.rs/tokio", LinkSource::Block),
            ];
        } else if k == d.m4 {
            r.reactions = vec![reaction("eyes", &["U1"], 1)];
        } else if k == d.m5 {
            r.reactions = vec![reaction("fire", &["U1", "U3"], 5)];
        }
        b.messages.push(r);
    }
    (b, d)
}

async fn seed_dataset(store: &Store, ws: &WorkspaceId) -> Dataset {
    let (b, d) = dataset_batch(ws);
    apply(store, b, "apply(dataset)").await;
    d
}

// ----- cases -----

/// Workspaces: create, read, update, list in id order; a missing one is `None`.
pub async fn workspaces_round_trip(store: Store) {
    let b = create_workspace(store.as_ref(), "TB").await;
    let a = create_workspace(store.as_ref(), "TA").await;
    let got = ok(store.get_workspace(&a).await, "get_workspace").expect("TA exists after upsert");
    assert_eq!(got.id, a);
    assert_eq!(got.name, "Workspace TA");
    let mut renamed = got.clone();
    renamed.name = "Renamed".into();
    renamed.domain = Some("acme".into());
    ok(store.upsert_workspace(&renamed).await, "upsert_workspace");
    ok(
        store.upsert_workspace(&renamed).await,
        "upsert_workspace again",
    );
    let got = ok(store.get_workspace(&a).await, "get_workspace").expect("TA still exists");
    assert_eq!(
        (got.name.as_str(), got.domain.as_deref()),
        ("Renamed", Some("acme"))
    );
    let ids: Vec<_> = ok(store.list_workspaces().await, "list_workspaces")
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, vec![a, b], "list_workspaces is ordered by id");
    assert!(ok(
        store.get_workspace(&super::fixtures::ws("TZ")).await,
        "get_workspace"
    )
    .is_none());
}

/// Installations: unknown workspace is `NotFound`; the token survives; `team: None` finds the
/// team-less one or the only one; a second put replaces.
pub async fn installations_round_trip(store: Store) {
    let inst = |ws: &WorkspaceId, team: Option<&str>, token: &str| Installation {
        workspace: ws.clone(),
        team: team.map(|t| TeamId::new(t).expect("fixture team id")),
        bot_user: Some(user("UBOT")),
        bot_token: SecretString::new(token),
        scopes: vec!["channels:history".into()],
        installed_at: None,
    };
    let missing = super::fixtures::ws("TMISSING");
    expect_err(
        store
            .put_installation(&inst(&missing, None, "xoxb-1"))
            .await,
        ErrorKind::NotFound,
        "put_installation for an unknown workspace",
    );
    let ws = create_workspace(store.as_ref(), "T1").await;
    assert!(ok(store.get_installation(&ws, None).await, "get_installation").is_none());
    ok(
        store
            .put_installation(&inst(&ws, Some("E1"), "xoxb-e1"))
            .await,
        "put_installation",
    );
    let only = ok(
        store.get_installation(&ws, None).await,
        "get_installation(None)",
    )
    .expect("team None finds the only installation");
    assert_eq!(only.bot_token.expose(), "xoxb-e1", "token round-trips");
    ok(
        store
            .put_installation(&inst(&ws, Some("E2"), "xoxb-e2"))
            .await,
        "put_installation",
    );
    assert!(
        ok(store.get_installation(&ws, None).await, "get_installation").is_none(),
        "two team installations and none without a team: team None finds nothing"
    );
    ok(
        store
            .put_installation(&inst(&ws, Some("E2"), "xoxb-e2-new"))
            .await,
        "replace",
    );
    let e2 = ok(
        store
            .get_installation(&ws, Some(TeamId::new("E2").expect("team id")))
            .await,
        "get_installation(E2)",
    )
    .expect("E2 installation");
    assert_eq!(
        e2.bot_token.expose(),
        "xoxb-e2-new",
        "a second put replaces"
    );
    assert_eq!(e2.scopes, vec!["channels:history".to_string()]);
    assert!(!format!("{e2:?}").contains("xoxb"), "Debug hides the token");
}

/// An empty batch writes and enqueues nothing; a batch without a workspace is `InvalidInput`.
pub async fn empty_batch_changes_nothing(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let r = apply(&store, WriteBatch::new(ws.clone()), "apply(empty batch)").await;
    assert_eq!(r, crate::ApplyReport::default(), "empty batch report");
    expect_err(
        store.apply(WriteBatch::default()).await,
        ErrorKind::InvalidInput,
        "apply(batch without workspace)",
    );
    assert_eq!(ok(store.stats(&ws).await, "stats"), Default::default());
    assert_eq!(
        ok(store.outbox_stats(None).await, "outbox_stats"),
        OutboxStats::default()
    );
}

/// A batch for an unknown workspace is `NotFound` and writes nothing.
pub async fn unknown_workspace_is_not_found(store: Store) {
    let ws = super::fixtures::ws("TGHOST");
    let (b, _) = dataset_batch(&ws);
    expect_err(
        store.apply(b).await,
        ErrorKind::NotFound,
        "apply to an unknown workspace",
    );
    assert!(ok(store.get_workspace(&ws).await, "get_workspace").is_none());
    assert_eq!(
        ok(store.outbox_stats(None).await, "outbox_stats"),
        OutboxStats::default()
    );
    // Creating it afterwards shows nothing of the failed batch.
    create_workspace(store.as_ref(), "TGHOST").await;
    assert_eq!(
        ok(
            store.count_messages(&ws, &MessageFilter::default()).await,
            "count"
        ),
        0
    );
    assert!(ok(store.list_channels(&ws).await, "list_channels").is_empty());
}

/// One key of another workspace anywhere in a batch: `InvalidInput`, and nothing of it is written.
pub async fn foreign_key_rejects_whole_batch(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    create_workspace(store.as_ref(), "T2").await;
    let foreign = key("T2", "C1", "5.0");
    for what in ["a message", "a delete", "a reaction change"] {
        let (mut b, _) = dataset_batch(&ws);
        match what {
            "a message" => b.messages.push(text_message(&foreign, "U1", "x")),
            "a delete" => b.message_deletes.push(foreign.clone()),
            _ => b.reaction_changes.push(ReactionChange {
                key: foreign.clone(),
                name: "eyes".into(),
                user: user("U1"),
                added: true,
            }),
        }
        expect_err(
            store.apply(b).await,
            ErrorKind::InvalidInput,
            &format!("batch with {what} of another workspace"),
        );
        assert_eq!(
            ok(
                store.count_messages(&ws, &MessageFilter::default()).await,
                "count"
            ),
            0,
            "batch with {what} of another workspace wrote messages"
        );
        assert!(
            ok(store.list_channels(&ws).await, "list_channels").is_empty(),
            "{what}: channels written"
        );
        assert!(
            ok(store.list_users(&ws).await, "list_users").is_empty(),
            "{what}: users written"
        );
        assert_eq!(
            ok(store.outbox_stats(None).await, "outbox_stats"),
            OutboxStats::default(),
            "{what}: outbox written"
        );
    }
    // Content whose key differs from its message's key is rejected too.
    let (mut b, d) = dataset_batch(&ws);
    let other = key("T1", "C1", "1.0");
    b.messages[0].content = Some(content(&meta(&other, Some("U1")), "x", ChannelKind::Public));
    expect_err(
        store.apply(b).await,
        ErrorKind::InvalidInput,
        "content key differs from message key",
    );
    assert!(
        get_one(&store, &d.m1).await.is_none(),
        "nothing written after a rejected batch"
    );
}

async fn snapshot(store: &Store, ws: &WorkspaceId, keys: &[MessageKey]) -> String {
    let c1 = chan("C1");
    let parent = key(ws.as_str(), "C1", "100.000001");
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        ok(store.get_messages(ws, keys).await, "get_messages"),
        ok(store.list_channels(ws).await, "list_channels"),
        ok(store.channel_members(ws, &c1).await, "channel_members"),
        ok(store.list_users(ws).await, "list_users"),
        ok(store.list_teams(ws).await, "list_teams"),
        ok(store.list_bookmarks(ws, None).await, "list_bookmarks"),
        ok(
            store.thread_participants(ws, &parent).await,
            "thread_participants"
        ),
        ok(store.list_sync_status(ws).await, "list_sync_status"),
        ok(
            store.list_processing_queue(ws, None).await,
            "list_processing_queue"
        ),
        ok(store.list_bot_config(ws).await, "list_bot_config"),
        ok(store.stats(ws).await, "stats"),
        ok(store.outbox_stats(Some(ws.clone())).await, "outbox_stats"),
        ok(
            store.content_index(ws, &PageRequest::first(1000)).await,
            "content_index"
        ),
    )
}

fn full_batch(ws: &WorkspaceId) -> (WriteBatch, Dataset) {
    let (mut b, d) = dataset_batch(ws);
    b.teams = vec![Team {
        id: TeamId::new("E1").expect("team id"),
        name: "Acme East".into(),
        domain: Some("acme-east".into()),
    }];
    b.memberships = vec![
        MembershipChange::Replace {
            channel: chan("C1"),
            users: vec![user("U2"), user("U1")],
        },
        MembershipChange::Replace {
            channel: chan("C2"),
            users: vec![user("U1")],
        },
        MembershipChange::Join {
            channel: chan("C1"),
            user: user("U3"),
        },
        MembershipChange::Leave {
            channel: chan("C1"),
            user: user("U2"),
        },
    ];
    b.reaction_changes = vec![ReactionChange {
        key: d.m6.clone(),
        name: "wave".into(),
        user: user("U2"),
        added: true,
    }];
    b.message_deletes = vec![d.m8.clone()];
    b.thread_participants = vec![
        ThreadParticipant {
            channel: chan("C1"),
            thread_ts: ts("100.000001"),
            user: user("U2"),
        },
        ThreadParticipant {
            channel: chan("C1"),
            thread_ts: ts("100.000001"),
            user: user("U1"),
        },
        ThreadParticipant {
            channel: chan("C2"),
            thread_ts: ts("9.5"),
            user: user("U3"),
        },
    ];
    b.bookmarks = vec![
        Bookmark {
            id: "Bk2".into(),
            channel: chan("C2"),
            title: "Runbook".into(),
            link: Some("https://example.com/rb".into()),
            emoji: None,
            created: None,
        },
        Bookmark {
            id: "Bk1".into(),
            channel: chan("C1"),
            title: "Wiki 📚".into(),
            link: None,
            emoji: Some(":books:".into()),
            created: Some(at("1700000000.0")),
        },
    ];
    b.sync_status = vec![
        SyncStatus {
            channel: chan("C2"),
            source: "web_api".into(),
            cursor: Some("abc".into()),
            oldest_ts: Some(ts("9.5")),
            latest_ts: Some(ts("10.0")),
            state: SyncState::InProgress,
            updated_at: Some(at("1700000100.0")),
            error: None,
        },
        SyncStatus {
            channel: chan("C1"),
            source: "web_api".into(),
            cursor: None,
            oldest_ts: None,
            latest_ts: Some(ts("100.000003")),
            state: SyncState::Complete,
            updated_at: Some(at("1700000200.5")),
            error: None,
        },
        SyncStatus {
            channel: chan("C1"),
            source: "export".into(),
            cursor: None,
            oldest_ts: None,
            latest_ts: None,
            state: SyncState::Failed,
            updated_at: Some(at("1700000300.000001")),
            error: Some("bad file".into()),
        },
    ];
    b.processing_queue = vec![
        ProcessingQueueEntry {
            id: "job2".into(),
            kind: "digest".into(),
            payload: serde_json::json!({"week": 3}),
            status: "pending".into(),
            attempts: 0,
            run_after: None,
        },
        ProcessingQueueEntry {
            id: "job1".into(),
            kind: "backfill_channel".into(),
            payload: serde_json::json!({"channel": "C1"}),
            status: "done".into(),
            attempts: 2,
            run_after: None,
        },
    ];
    b.bot_config = vec![
        BotConfig {
            key: "digest_weekday".into(),
            value: serde_json::json!("monday"),
        },
        BotConfig {
            key: "digest_channel".into(),
            value: serde_json::json!("C1"),
        },
    ];
    (b, d)
}

/// Applying the same batch twice: the second apply enqueues nothing and changes no read.
pub async fn apply_is_idempotent(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let (b, d) = full_batch(&ws);
    let keys = [&d.m1, &d.m2, &d.m3, &d.m4, &d.m5, &d.m6, &d.m7, &d.m8].map(Clone::clone);
    let first = apply(&store, b.clone(), "first apply").await;
    assert!(
        first.outbox_enqueued >= 7,
        "first apply enqueues content: {first:?}"
    );
    let before = snapshot(&store, &ws, &keys).await;
    let second = apply(&store, b, "second apply").await;
    assert_eq!(
        second.outbox_enqueued, 0,
        "re-applying a batch enqueues nothing: {second:?}"
    );
    let after = snapshot(&store, &ws, &keys).await;
    assert_eq!(
        before, after,
        "re-applying a batch changed what reads return"
    );
}

/// Every part of a batch reads back as written, in the documented order.
pub async fn batch_parts_round_trip(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let (b, d) = full_batch(&ws);
    let r = apply(&store, b.clone(), "apply(full batch)").await;
    assert_eq!(r.messages_written, 8, "{r:?}");
    assert_eq!(r.messages_deleted, 1, "{r:?}");
    let teams = ok(store.list_teams(&ws).await, "list_teams");
    assert_eq!(teams, b.teams);
    let names: Vec<_> = ok(store.list_channels(&ws).await, "list_channels")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(
        names,
        ["dm-u2", "general", "random", "secret"],
        "list_channels is ordered by name"
    );
    assert_eq!(
        ok(store.get_channel(&ws, &chan("G1")).await, "get_channel"),
        Some(b.channels[2].clone())
    );
    assert!(ok(store.get_channel(&ws, &chan("C9")).await, "get_channel").is_none());
    assert_eq!(
        ok(
            store.channel_members(&ws, &chan("C1")).await,
            "channel_members"
        ),
        [user("U1"), user("U3")]
    );
    assert_eq!(
        ok(store.user_channels(&ws, &user("U1")).await, "user_channels"),
        [chan("C1"), chan("C2")]
    );
    assert!(
        ok(store.user_channels(&ws, &user("U2")).await, "user_channels").is_empty(),
        "U2 left C1"
    );
    let got: Vec<_> = ok(
        store
            .get_users(&ws, &[user("U3"), user("U9"), user("U1")])
            .await,
        "get_users",
    )
    .into_iter()
    .map(|u| u.id)
    .collect();
    assert_eq!(
        got,
        [user("U3"), user("U1")],
        "get_users keeps the order of ids, skips unknown"
    );
    let all: Vec<_> = ok(store.list_users(&ws).await, "list_users")
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(all, [user("U1"), user("U2"), user("U3")]);
    let bm: Vec<_> = ok(store.list_bookmarks(&ws, None).await, "list_bookmarks");
    assert_eq!(
        bm,
        vec![b.bookmarks[1].clone(), b.bookmarks[0].clone()],
        "bookmarks ordered by id"
    );
    let bm2 = ok(
        store.list_bookmarks(&ws, Some(chan("C2"))).await,
        "list_bookmarks(C2)",
    );
    assert_eq!(bm2, vec![b.bookmarks[0].clone()]);
    assert_eq!(
        ok(
            store.thread_participants(&ws, &d.m1).await,
            "thread_participants"
        ),
        [user("U1"), user("U2")]
    );
    let sync = ok(store.list_sync_status(&ws).await, "list_sync_status");
    let order: Vec<_> = sync
        .iter()
        .map(|s| (s.channel.as_str(), s.source.as_str()))
        .collect();
    assert_eq!(
        order,
        [("C1", "export"), ("C1", "web_api"), ("C2", "web_api")],
        "sync ordered by (channel, source)"
    );
    assert_eq!(sync[2].cursor.as_deref(), Some("abc"));
    assert_eq!(sync[2].state, SyncState::InProgress);
    assert_eq!(sync[0].error.as_deref(), Some("bad file"));
    assert_eq!(
        sync[0].updated_at,
        Some(at("1700000300.000001")),
        "updated_at round-trips"
    );
    let q = ok(
        store.list_processing_queue(&ws, None).await,
        "list_processing_queue",
    );
    assert_eq!(
        q,
        vec![b.processing_queue[1].clone(), b.processing_queue[0].clone()],
        "queue ordered by id"
    );
    let pending = ok(
        store
            .list_processing_queue(&ws, Some("pending".into()))
            .await,
        "list_processing_queue(pending)",
    );
    assert_eq!(pending, vec![b.processing_queue[0].clone()]);
    let cfg = ok(store.list_bot_config(&ws).await, "list_bot_config");
    assert_eq!(
        cfg,
        vec![b.bot_config[1].clone(), b.bot_config[0].clone()],
        "bot config ordered by key"
    );
    // A later batch replaces by key.
    let mut b2 = WriteBatch::new(ws.clone());
    let mut job = b.processing_queue[0].clone();
    job.status = "running".into();
    b2.processing_queue.push(job.clone());
    b2.memberships.push(MembershipChange::Replace {
        channel: chan("C1"),
        users: vec![user("U2")],
    });
    apply(&store, b2, "apply(updates)").await;
    let q = ok(
        store
            .list_processing_queue(&ws, Some("running".into()))
            .await,
        "queue",
    );
    assert_eq!(q, vec![job]);
    assert_eq!(
        ok(store.channel_members(&ws, &chan("C1")).await, "members"),
        [user("U2")]
    );
    // The reaction change reached m6.
    let m6 = get_one(&store, &d.m6).await.expect("m6 exists");
    assert_eq!(m6.meta.reaction_count, 1);
    assert!(m6.meta.has_reactions);
    assert_eq!(
        m6.reactions,
        vec![Reaction {
            name: "wave".into(),
            users: vec![user("U2")],
            count: 1
        }]
    );
}

/// `get_messages`: order of keys, missing keys left out, everything hanging off a message, and
/// `InvalidInput` for a key of another workspace.
pub async fn messages_round_trip(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let (b, d) = dataset_batch(&ws);
    apply(&store, b.clone(), "apply(dataset)").await;
    let missing = key("T1", "C1", "1.0");
    let got = ok(
        store
            .get_messages(&ws, &[d.m3.clone(), missing, d.m1.clone(), d.m2.clone()])
            .await,
        "get_messages",
    );
    let keys: Vec<_> = got.iter().map(|m| m.meta.key.clone()).collect();
    assert_eq!(
        keys,
        [d.m3.clone(), d.m1.clone(), d.m2.clone()],
        "get_messages keeps key order, skips missing"
    );
    for g in &got {
        let rec = b
            .messages
            .iter()
            .find(|r| r.meta.key == g.meta.key)
            .expect("written record");
        let mut expected = rec.meta.clone();
        expected.content_hash = g.meta.content_hash.clone();
        expected.content_id = None;
        assert_eq!(g.meta, expected, "metadata of {} round-trips", g.meta.key);
        assert_eq!(
            g.meta.content_hash.as_deref(),
            rec.content.as_ref().map(|c| c.content_hash()).as_deref(),
            "content_hash of {} is the enqueued content's hash",
            g.meta.key
        );
        let mut reactions = rec.reactions.clone();
        reactions.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            g.reactions, reactions,
            "reactions of {} (by name)",
            g.meta.key
        );
        assert_eq!(g.links, rec.links, "links of {} in order", g.meta.key);
        assert_eq!(g.files, rec.files, "files of {} in order", g.meta.key);
    }
    expect_err(
        store
            .get_messages(&ws, &[key("T2", "C1", "100.000001")])
            .await,
        ErrorKind::InvalidInput,
        "get_messages with a key of another workspace",
    );
    assert!(ok(store.get_messages(&ws, &[]).await, "get_messages(empty)").is_empty());
}

/// A user's email round-trips; a later write of the user without one (a `user_change` read
/// without the email scope) keeps the stored address, a new address replaces it.
pub async fn user_email_is_kept(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let mut u = User::new(user("U1"), "ann");
    u.email = Some("ann@example.com".into());
    let mut b = WriteBatch::new(ws.clone());
    b.users.push(u.clone());
    apply(&store, b, "apply(user with email)").await;
    assert_eq!(
        ok(store.get_users(&ws, &[user("U1")]).await, "get_users"),
        vec![u.clone()]
    );
    let mut renamed = User::new(user("U1"), "ann2");
    renamed.email = None;
    let mut b = WriteBatch::new(ws.clone());
    b.users.push(renamed);
    apply(&store, b, "apply(user without email)").await;
    let got = ok(store.list_users(&ws).await, "list_users");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "ann2", "the rest of the user is replaced");
    assert_eq!(
        got[0].email.as_deref(),
        Some("ann@example.com"),
        "the email is kept"
    );
    let mut moved = User::new(user("U1"), "ann2");
    moved.email = Some("ann@new.example".into());
    let mut b = WriteBatch::new(ws.clone());
    b.users.push(moved);
    apply(&store, b, "apply(user with a new email)").await;
    let got = ok(store.get_users(&ws, &[user("U1")]).await, "get_users");
    assert_eq!(got[0].email.as_deref(), Some("ann@new.example"));
}

/// Emoji, CJK, right-to-left and 40 KB texts reach the outbox byte for byte; unicode names
/// round-trip.
pub async fn unicode_and_long_texts_round_trip(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let mut b = WriteBatch::new(ws.clone());
    let mut u = User::new(user("U1"), "ünïcødé");
    u.real_name = Some("José 山田 שָׁלוֹם 👩‍💻".into());
    b.users.push(u.clone());
    let mut c = Channel::new(chan("C1"), "プロジェクト-🚀", ChannelKind::Public);
    c.topic = Some("مرحبا — topic".into());
    b.channels.push(c.clone());
    let texts = unicode_texts();
    for (i, t) in texts.iter().enumerate() {
        let k = key("T1", "C1", &format!("{}.0", i + 1));
        b.messages.push(text_message(&k, "U1", t));
    }
    apply(&store, b, "apply(unicode)").await;
    assert_eq!(
        ok(store.get_users(&ws, &[user("U1")]).await, "get_users"),
        vec![u]
    );
    assert_eq!(
        ok(store.get_channel(&ws, &chan("C1")).await, "get_channel"),
        Some(c)
    );
    let entries = drain_outbox(&store, &ws).await;
    assert_eq!(entries.len(), texts.len());
    for (e, t) in entries.iter().zip(&texts) {
        match &e.op {
            OutboxOp::Upsert { content } => {
                assert_eq!(&content.text, t, "text of {} round-trips", e.key)
            }
            other => panic!("expected an upsert for {}, got {other:?}", e.key),
        }
    }
}

/// Claims and acks everything due, returning (key, op name) in claim order.
async fn drain_ops(store: &Store, ws: &WorkspaceId) -> Vec<(MessageKey, &'static str)> {
    let mut out = Vec::new();
    loop {
        let got = claim(store, ws, 100, Duration::from_secs(60)).await;
        if got.is_empty() {
            return out;
        }
        let ids: Vec<_> = got.iter().map(|e| e.id).collect();
        out.extend(got.iter().map(|e| (e.key.clone(), e.op.name())));
        ok(store.ack_outbox(&ids).await, "ack_outbox");
    }
}

/// A user written with another [`best_name`](crate::User::best_name), or a channel with another
/// name, enqueues one `Reindex` per stored message of theirs that has content — and nothing when
/// the name is unchanged, for messages without content, or for a new user with no messages.
pub async fn renames_reindex_messages_with_content(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let ann = |display: &str, real: &str| {
        let mut u = User::new(user("U1"), "ann");
        u.display_name = Some(display.into());
        u.real_name = Some(real.into());
        u
    };
    let k1 = key("T1", "C1", "1.0");
    let k2 = key("T1", "C1", "2.0");
    let k3 = key("T1", "C2", "3.0");
    let k4 = key("T1", "C2", "4.0");
    let mut b = WriteBatch::new(ws.clone());
    b.users = vec![ann("Ann", "Ann Example"), User::new(user("U2"), "bob")];
    b.channels = vec![
        Channel::new(chan("C1"), "general", ChannelKind::Public),
        Channel::new(chan("C2"), "random", ChannelKind::Public),
    ];
    b.messages = vec![
        record(meta(&k1, Some("U1")), Some("one"), ChannelKind::Public),
        record(meta(&k2, Some("U2")), Some("two"), ChannelKind::Public),
        record(meta(&k3, Some("U1")), None, ChannelKind::Public),
        record(meta(&k4, Some("U2")), Some("four"), ChannelKind::Public),
    ];
    let first = b.clone();
    apply(&store, b, "first write").await;
    assert_eq!(drain_ops(&store, &ws).await.len(), 3, "three upserts");

    let r = apply(&store, first.clone(), "same names again").await;
    assert_eq!(r.outbox_enqueued, 0, "unchanged names enqueue nothing");

    let mut b = WriteBatch::new(ws.clone());
    b.users = vec![ann("Annie", "Ann Example")];
    let r = apply(&store, b, "user renamed").await;
    assert_eq!(r.outbox_enqueued, 1, "only U1's message with content");
    assert_eq!(drain_ops(&store, &ws).await, [(k1.clone(), "reindex")]);
    let stored = get_one(&store, &k1).await.expect("k1");
    assert!(
        stored.meta.content_hash.is_some(),
        "a reindex keeps the content hash"
    );
    assert_eq!(
        stored.meta.content_id,
        Some(k1.content_id()),
        "acking a reindex keeps the content id"
    );

    let mut b = WriteBatch::new(ws.clone());
    b.users = vec![ann("Annie", "Ann Other")];
    let r = apply(&store, b, "real name changed, display name kept").await;
    assert_eq!(r.outbox_enqueued, 0, "the name people see did not change");

    let mut b = WriteBatch::new(ws.clone());
    b.channels = vec![Channel::new(chan("C2"), "random-talk", ChannelKind::Public)];
    let r = apply(&store, b, "channel renamed").await;
    assert_eq!(r.outbox_enqueued, 1, "only C2's message with content");
    assert_eq!(drain_ops(&store, &ws).await, [(k4.clone(), "reindex")]);

    let mut b = WriteBatch::new(ws.clone());
    b.users = vec![User::new(user("U3"), "cy")];
    let r = apply(&store, b, "new user without messages").await;
    assert_eq!(r.outbox_enqueued, 0);

    // A rename and a new text of the same message in one batch: the reindex comes first.
    let mut b = WriteBatch::new(ws.clone());
    b.users = vec![User::new(user("U2"), "robert")];
    b.messages = vec![record(
        meta(&k2, Some("U2")),
        Some("two, edited"),
        ChannelKind::Public,
    )];
    let r = apply(&store, b, "rename and edit").await;
    assert_eq!(r.outbox_enqueued, 3, "reindex k2 and k4, upsert k2");
    assert_eq!(
        drain_ops(&store, &ws).await,
        [
            (k2.clone(), "reindex"),
            (k4.clone(), "reindex"),
            (k2.clone(), "upsert"),
        ]
    );
}

/// `reindex_content` enqueues one `Reindex` per listed message that has content, skips the
/// others, and refuses a key of another workspace.
pub async fn reindex_content_enqueues_for_messages_with_content(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    create_workspace(store.as_ref(), "T2").await;
    let k1 = key("T1", "C1", "1.0");
    let k2 = key("T1", "C1", "2.0");
    let mut b = WriteBatch::new(ws.clone());
    b.messages = vec![
        record(meta(&k1, Some("U1")), Some("one"), ChannelKind::Public),
        record(meta(&k2, Some("U1")), None, ChannelKind::Public),
    ];
    apply(&store, b, "write").await;
    drain_ops(&store, &ws).await;
    let n = ok(
        store
            .reindex_content(&ws, &[k1.clone(), k2.clone(), key("T1", "C9", "9.0")])
            .await,
        "reindex_content",
    );
    assert_eq!(n, 1, "only the message with content");
    assert_eq!(drain_ops(&store, &ws).await, [(k1.clone(), "reindex")]);
    assert_eq!(ok(store.reindex_content(&ws, &[]).await, "empty"), 0);
    expect_err(
        store.reindex_content(&ws, &[key("T2", "C1", "1.0")]).await,
        ErrorKind::InvalidInput,
        "reindex_content with a key of another workspace",
    );
    let stats = ok(store.outbox_stats(Some(ws.clone())).await, "outbox_stats");
    assert_eq!(stats.pending + stats.leased, 0);
}

/// Content is enqueued only when its hash changes; content becoming `None` enqueues a delete.
pub async fn outbox_enqueues_only_on_content_change(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let k = key("T1", "C1", "1.0");
    let write = |rec: MessageRecord| {
        let mut b = WriteBatch::new(ws.clone());
        b.messages.push(rec);
        b
    };
    let base = meta(&k, Some("U1"));
    let steps: Vec<(&str, MessageRecord, u64)> = vec![
        (
            "first write",
            record(base.clone(), Some("hello"), ChannelKind::Public),
            1,
        ),
        (
            "same content again",
            record(base.clone(), Some("hello"), ChannelKind::Public),
            0,
        ),
        (
            "metadata-only change",
            {
                let mut m = base.clone();
                m.mention_count = 3;
                record(m, Some("hello"), ChannelKind::Public)
            },
            0,
        ),
        (
            "new text",
            record(base.clone(), Some("hello, edited"), ChannelKind::Public),
            1,
        ),
        (
            "attributes changed",
            {
                let mut m = base.clone();
                m.has_files = true;
                record(m, Some("hello, edited"), ChannelKind::Public)
            },
            1,
        ),
        (
            "content removed",
            record(base.clone(), None, ChannelKind::Public),
            1,
        ),
        (
            "still no content",
            record(base.clone(), None, ChannelKind::Public),
            0,
        ),
        (
            "content back",
            record(base.clone(), Some("back"), ChannelKind::Public),
            1,
        ),
    ];
    let mut expected_ops = Vec::new();
    for (what, rec, n) in steps {
        let c = rec.content.clone();
        let r = apply(&store, write(rec), what).await;
        assert_eq!(
            r.outbox_enqueued, n,
            "{what}: enqueued {} entries, expected {n}",
            r.outbox_enqueued
        );
        if n == 1 {
            expected_ops.push(match c {
                Some(content) => OutboxOp::Upsert { content },
                None => OutboxOp::Delete,
            });
        }
    }
    // Only the first entry is claimable (per-message order); deliver them one at a time.
    let mut ops = Vec::new();
    let mut last_id = 0;
    loop {
        let got = claim(&store, &ws, 10, Duration::from_secs(60)).await;
        if got.is_empty() {
            break;
        }
        assert_eq!(
            got.len(),
            1,
            "one key: one claimable entry at a time, got {got:?}"
        );
        assert!(got[0].id > last_id, "outbox ids grow");
        last_id = got[0].id;
        ok(store.ack_outbox(&[got[0].id]).await, "ack");
        ops.push(got[0].op.clone());
    }
    assert_eq!(ops, expected_ops, "the outbox carries each change in order");
}

/// A write carrying an older `edited` revision than the stored row is ignored and counted.
pub async fn edited_revision_rule(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let k = key("T1", "C1", "1.0");
    let rev = |edited: Option<&str>, text: &str| {
        let mut m = meta(&k, Some("U1"));
        m.edited = edited.map(ts);
        let mut b = WriteBatch::new(ws.clone());
        b.messages.push(record(m, Some(text), ChannelKind::Public));
        b
    };
    let r = apply(&store, rev(Some("2.0"), "second"), "write edited 2.0").await;
    assert_eq!((r.messages_written, r.outbox_enqueued), (1, 1));
    let r = apply(&store, rev(None, "original"), "write unedited").await;
    assert_eq!(
        (r.messages_written, r.messages_stale, r.outbox_enqueued),
        (0, 1, 0),
        "unedited after edited is stale: {r:?}"
    );
    let r = apply(&store, rev(Some("1.5"), "first"), "write edited 1.5").await;
    assert_eq!(
        (r.messages_written, r.messages_stale, r.outbox_enqueued),
        (0, 1, 0),
        "older edit is stale: {r:?}"
    );
    let r = apply(&store, rev(Some("2.0"), "second"), "same revision again").await;
    assert_eq!(
        (r.messages_stale, r.outbox_enqueued),
        (0, 0),
        "same revision is not stale: {r:?}"
    );
    let got = get_one(&store, &k).await.expect("message exists");
    assert_eq!(got.meta.edited, Some(ts("2.0")));
    // "10.0" is newer than "2.0" (numeric order, not text order).
    let r = apply(&store, rev(Some("10.0"), "third"), "write edited 10.0").await;
    assert_eq!(
        (r.messages_written, r.messages_stale, r.outbox_enqueued),
        (1, 0, 1),
        "{r:?}"
    );
    assert_eq!(
        get_one(&store, &k).await.expect("exists").meta.edited,
        Some(ts("10.0"))
    );
}

/// A delete removes the message, enqueues a `Delete`, and leaves a tombstone that a later write
/// (an older event arriving late) cannot get past.
pub async fn delete_tombstone_beats_later_write(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let k = key("T1", "C1", "1.0");
    let plain = key("T1", "C1", "2.0");
    let mut b = WriteBatch::new(ws.clone());
    b.messages.push(text_message(&k, "U1", "hello"));
    b.messages
        .push(record(meta(&plain, Some("U1")), None, ChannelKind::Public));
    apply(&store, b, "write").await;
    drain_outbox(&store, &ws).await;
    let mut del = WriteBatch::new(ws.clone());
    del.message_deletes = vec![k.clone(), plain.clone()];
    let r = apply(&store, del.clone(), "delete").await;
    assert_eq!(r.messages_deleted, 2, "{r:?}");
    assert_eq!(
        r.outbox_enqueued, 1,
        "only the message with content enqueues a Delete: {r:?}"
    );
    assert!(
        get_one(&store, &k).await.is_none(),
        "deleted message is gone"
    );
    let entries = drain_outbox(&store, &ws).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].key.clone(), entries[0].op.clone()),
        (k.clone(), OutboxOp::Delete)
    );
    let r = apply(&store, del, "delete again").await;
    assert_eq!(
        r.outbox_enqueued, 0,
        "deleting again enqueues nothing: {r:?}"
    );
    let mut late = WriteBatch::new(ws.clone());
    late.messages.push(text_message(&k, "U1", "hello"));
    let r = apply(&store, late, "late write").await;
    assert_eq!(
        (
            r.messages_written,
            r.messages_deleted_before,
            r.outbox_enqueued
        ),
        (0, 1, 0),
        "{r:?}"
    );
    assert!(
        get_one(&store, &k).await.is_none(),
        "a tombstoned message stays deleted"
    );
    assert_eq!(
        ok(
            store.count_messages(&ws, &MessageFilter::default()).await,
            "count"
        ),
        0
    );
}

/// Deleting a key never stored succeeds, deletes nothing and enqueues nothing.
pub async fn delete_of_missing_key(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let mut b = WriteBatch::new(ws.clone());
    b.message_deletes.push(key("T1", "C1", "1.0"));
    let r = apply(&store, b, "delete of a missing key").await;
    assert_eq!((r.messages_deleted, r.outbox_enqueued), (0, 0), "{r:?}");
    assert_eq!(
        ok(store.outbox_stats(None).await, "outbox_stats"),
        OutboxStats::default()
    );
}

/// Reaction changes update reactions and counts, enqueue `Attributes` (with the channel's kind)
/// for messages with content, are idempotent, and ignore unknown messages.
pub async fn reaction_changes(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let k = key("T1", "G1", "1.0");
    let nocontent = key("T1", "G1", "2.0");
    let mut b = WriteBatch::new(ws.clone());
    b.channels
        .push(Channel::new(chan("G1"), "secret", ChannelKind::Private));
    b.messages.push(record(
        meta(&k, Some("U1")),
        Some("ship it"),
        ChannelKind::Private,
    ));
    b.messages.push(record(
        meta(&nocontent, Some("U1")),
        None,
        ChannelKind::Private,
    ));
    apply(&store, b, "write").await;
    drain_outbox(&store, &ws).await;
    let change = |k: &MessageKey, name: &str, who: &str, added: bool| ReactionChange {
        key: k.clone(),
        name: name.into(),
        user: user(who),
        added,
    };
    let mut b = WriteBatch::new(ws.clone());
    b.reaction_changes = vec![
        change(&k, "thumbsup", "U2", true),
        change(&k, "thumbsup", "U3", true),
        change(&nocontent, "eyes", "U2", true),
        change(&key("T1", "G1", "9.0"), "eyes", "U2", true),
    ];
    let r = apply(&store, b.clone(), "reaction changes").await;
    assert_eq!(
        r.outbox_enqueued, 1,
        "one Attributes entry per message with content whose reactions changed: {r:?}"
    );
    let got = get_one(&store, &k).await.expect("message exists");
    assert_eq!(got.meta.reaction_count, 2);
    assert!(got.meta.has_reactions);
    assert_eq!(got.reactions.len(), 1);
    assert_eq!(got.reactions[0].count, 2);
    let mut users = got.reactions[0].users.clone();
    users.sort();
    assert_eq!(users, [user("U2"), user("U3")]);
    let nc = get_one(&store, &nocontent).await.expect("message exists");
    assert_eq!(nc.meta.reaction_count, 1);
    let entries = drain_outbox(&store, &ws).await;
    let last = entries.last().expect("entries");
    match &last.op {
        OutboxOp::Attributes { attributes } => {
            assert_eq!(attributes.reaction_count, 2);
            assert_eq!(
                attributes.visibility,
                ChannelKind::Private,
                "attributes carry the channel's kind"
            );
            assert_eq!(attributes.user, Some(user("U1")));
        }
        other => panic!("expected Attributes, got {other:?}"),
    }
    let r = apply(&store, b, "same reaction changes again").await;
    assert_eq!(
        r.outbox_enqueued, 0,
        "re-adding the same reactions changes nothing: {r:?}"
    );
    assert_eq!(
        get_one(&store, &k)
            .await
            .expect("exists")
            .meta
            .reaction_count,
        2
    );
    let mut b = WriteBatch::new(ws.clone());
    b.reaction_changes = vec![
        change(&k, "thumbsup", "U2", false),
        change(&k, "thumbsup", "U3", false),
    ];
    let r = apply(&store, b.clone(), "remove reactions").await;
    assert_eq!(r.outbox_enqueued, 1, "{r:?}");
    let got = get_one(&store, &k).await.expect("exists");
    assert_eq!(
        (got.meta.reaction_count, got.meta.has_reactions),
        (0, false)
    );
    assert!(
        got.reactions.is_empty(),
        "a reaction with no users left is removed"
    );
    let r = apply(&store, b, "remove again").await;
    assert_eq!(
        r.outbox_enqueued, 0,
        "removing absent reactions changes nothing: {r:?}"
    );
}

/// Every `MessageFilter` field, alone and combined, against hand-computed expectations.
pub async fn filter_every_field(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let d = seed_dataset(&store, &ws).await;
    let all = MessageFilter::default();
    let cases: Vec<(&str, MessageFilter, Vec<&MessageKey>)> = vec![
        (
            "no condition",
            all.clone(),
            vec![&d.m8, &d.m4, &d.m7, &d.m5, &d.m1, &d.m2, &d.m3, &d.m6],
        ),
        (
            "channels [C1]",
            MessageFilter {
                channels: Some(vec![chan("C1")]),
                ..all.clone()
            },
            vec![&d.m8, &d.m1, &d.m2, &d.m3],
        ),
        (
            "channels []",
            MessageFilter {
                channels: Some(vec![]),
                ..all.clone()
            },
            vec![],
        ),
        (
            "users [U1]",
            MessageFilter {
                users: Some(vec![user("U1")]),
                ..all.clone()
            },
            vec![&d.m1, &d.m3, &d.m6],
        ),
        (
            "channel_kinds [private, im]",
            MessageFilter {
                channel_kinds: Some(vec![ChannelKind::Private, ChannelKind::Im]),
                ..all.clone()
            },
            vec![&d.m5, &d.m6],
        ),
        (
            "time [10.0, 100.000002)",
            MessageFilter {
                time: TimeRange::between(at("10.0"), at("100.000002")),
                ..all.clone()
            },
            vec![&d.m7, &d.m5, &d.m1],
        ),
        (
            "time from 100.0",
            MessageFilter {
                time: TimeRange {
                    start: Some(at("100.0")),
                    end: None,
                },
                ..all.clone()
            },
            vec![&d.m1, &d.m2, &d.m3, &d.m6],
        ),
        (
            "thread top level",
            MessageFilter {
                thread: Some(ThreadFilter::TopLevel),
                ..all.clone()
            },
            vec![&d.m8, &d.m4, &d.m7, &d.m5, &d.m1, &d.m6],
        ),
        (
            "thread replies",
            MessageFilter {
                thread: Some(ThreadFilter::Replies),
                ..all.clone()
            },
            vec![&d.m2, &d.m3],
        ),
        (
            "one thread",
            MessageFilter {
                thread: Some(ThreadFilter::Thread(ts("100.000001"))),
                ..all.clone()
            },
            vec![&d.m1, &d.m2, &d.m3],
        ),
        (
            "has_reactions",
            MessageFilter {
                has_reactions: Some(true),
                ..all.clone()
            },
            vec![&d.m4, &d.m5, &d.m1],
        ),
        (
            "no reactions",
            MessageFilter {
                has_reactions: Some(false),
                ..all.clone()
            },
            vec![&d.m8, &d.m7, &d.m2, &d.m3, &d.m6],
        ),
        (
            "has_files",
            MessageFilter {
                has_files: Some(true),
                ..all.clone()
            },
            vec![&d.m2],
        ),
        (
            "has_links",
            MessageFilter {
                has_links: Some(true),
                ..all.clone()
            },
            vec![&d.m1, &d.m3],
        ),
        (
            "no links",
            MessageFilter {
                has_links: Some(false),
                ..all.clone()
            },
            vec![&d.m8, &d.m4, &d.m7, &d.m5, &d.m2, &d.m6],
        ),
        (
            "has_attachments",
            MessageFilter {
                has_attachments: Some(true),
                ..all.clone()
            },
            vec![&d.m4],
        ),
        (
            "min_reactions 3",
            MessageFilter {
                min_reactions: Some(3),
                ..all.clone()
            },
            vec![&d.m5, &d.m1],
        ),
        (
            "min_reactions 0",
            MessageFilter {
                min_reactions: Some(0),
                ..all.clone()
            },
            vec![&d.m8, &d.m4, &d.m7, &d.m5, &d.m1, &d.m2, &d.m3, &d.m6],
        ),
        (
            "channels [C1] + users [U1] + replies",
            MessageFilter {
                channels: Some(vec![chan("C1")]),
                users: Some(vec![user("U1")]),
                thread: Some(ThreadFilter::Replies),
                ..all.clone()
            },
            vec![&d.m3],
        ),
    ];
    for (what, filter, expected) in cases {
        let expected: Vec<MessageKey> = expected.into_iter().cloned().collect();
        assert_eq!(
            all_keys(&store, &ws, &filter).await,
            expected,
            "filter_messages({what})"
        );
        assert_eq!(
            ok(store.count_messages(&ws, &filter).await, "count_messages"),
            expected.len() as u64,
            "count_messages({what})"
        );
    }
}

/// Keys come in (ts, channel) order with ts compared numerically ("9.5" before "10.0"), and
/// paging with `after` walks them without gaps or repeats.
pub async fn filter_orders_by_ts_and_pages(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let mut b = WriteBatch::new(ws.clone());
    let tss = [
        "10.0",
        "9.5",
        "100.000001",
        "9.500001",
        "1000000000.000001",
        "99.99",
    ];
    for t in tss {
        for c in ["C2", "C1"] {
            b.messages.push(text_message(&key("T1", c, t), "U1", "x"));
        }
    }
    apply(&store, b, "write").await;
    let expected: Vec<MessageKey> = [
        "9.5",
        "9.500001",
        "10.0",
        "99.99",
        "100.000001",
        "1000000000.000001",
    ]
    .iter()
    .flat_map(|t| [key("T1", "C1", t), key("T1", "C2", t)])
    .collect();
    let all = all_keys(&store, &ws, &MessageFilter::default()).await;
    assert_eq!(
        all, expected,
        "filter_messages order is (ts numerically, channel)"
    );
    for limit in [1, 5, 12, 20] {
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = ok(
                store
                    .filter_messages(
                        &ws,
                        &MessageFilter::default(),
                        &PageRequest {
                            after: after.clone(),
                            limit,
                        },
                    )
                    .await,
                "filter_messages page",
            );
            assert!(page.len() <= limit, "page larger than limit {limit}");
            if page.is_empty() {
                break;
            }
            after = page.last().cloned();
            paged.extend(page);
        }
        assert_eq!(paged, expected, "paging with limit {limit}");
    }
    assert!(ok(
        store
            .filter_messages(&ws, &MessageFilter::default(), &PageRequest::first(0))
            .await,
        "limit 0"
    )
    .is_empty());
}

/// Two workspaces with the same channel ids and keys: every read of one sees nothing of the other.
pub async fn workspaces_are_isolated(store: Store) {
    let a = create_workspace(store.as_ref(), "TA").await;
    let bws = create_workspace(store.as_ref(), "TB").await;
    let (ba, d) = full_batch(&a);
    apply(&store, ba, "apply(A)").await;
    let (mut bb, db) = full_batch(&bws);
    // B has more of everything: a leak would show up in counts and aggregates.
    let extra = key("TB", "C1", "150.0");
    let mut m = meta(&extra, Some("U1"));
    m.reaction_count = 50;
    m.has_reactions = true;
    m.link_count = 1;
    m.thread_ts = Some(ts("100.000001"));
    let mut r = record(m, Some("B only"), ChannelKind::Public);
    r.reactions = vec![Reaction {
        name: "fire".into(),
        users: vec![user("U1")],
        count: 50,
    }];
    r.links = vec![link("https://b.example/only", LinkSource::Text)];
    bb.messages.push(r);
    bb.users.push(User::new(user("U4"), "dee"));
    bb.channels
        .push(Channel::new(chan("C3"), "b-only", ChannelKind::Public));
    apply(&store, bb, "apply(B)").await;

    let keys_a = all_keys(&store, &a, &MessageFilter::default()).await;
    assert_eq!(keys_a.len(), 7, "A has its 7 messages (m8 deleted)");
    assert!(
        keys_a.iter().all(|k| k.workspace == a),
        "filter_messages(A) returned another workspace's key"
    );
    assert_eq!(
        ok(
            store.count_messages(&a, &MessageFilter::default()).await,
            "count"
        ),
        7
    );
    assert_eq!(
        ok(
            store.count_messages(&bws, &MessageFilter::default()).await,
            "count"
        ),
        8
    );
    let got = ok(
        store.get_messages(&a, std::slice::from_ref(&d.m1)).await,
        "get_messages",
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].meta.key, d.m1);
    expect_err(
        store.get_messages(&a, std::slice::from_ref(&db.m1)).await,
        ErrorKind::InvalidInput,
        "get_messages(A, key of B)",
    );
    assert_eq!(ok(store.list_channels(&a).await, "list_channels").len(), 4);
    assert_eq!(ok(store.list_users(&a).await, "list_users").len(), 3);
    assert!(ok(store.get_users(&a, &[user("U4")]).await, "get_users").is_empty());
    assert!(ok(store.get_channel(&a, &chan("C3")).await, "get_channel").is_none());
    assert_eq!(ok(store.list_teams(&a).await, "list_teams").len(), 1);
    assert_eq!(
        ok(store.list_bookmarks(&a, None).await, "list_bookmarks").len(),
        2
    );
    assert_eq!(
        ok(store.list_sync_status(&a).await, "list_sync_status").len(),
        3
    );
    assert_eq!(
        ok(store.list_processing_queue(&a, None).await, "queue").len(),
        2
    );
    assert_eq!(ok(store.list_bot_config(&a).await, "bot config").len(), 2);
    assert_eq!(
        ok(store.channel_members(&a, &chan("C1")).await, "members"),
        [user("U1"), user("U3")]
    );
    assert_eq!(
        ok(store.thread_participants(&a, &d.m1).await, "participants"),
        [user("U1"), user("U2")]
    );
    let sa = ok(store.stats(&a).await, "stats(A)");
    let sb = ok(store.stats(&bws).await, "stats(B)");
    assert_eq!(
        (sa.messages, sa.channels, sa.users, sa.reactions),
        (7, 4, 3, 10),
        "stats(A): {sa:?}"
    );
    assert_eq!(
        (sb.messages, sb.channels, sb.users, sb.reactions),
        (8, 5, 4, 60),
        "stats(B): {sb:?}"
    );
    let opts = AggregateOptions::default();
    let mr = ok(store.most_reacted(&a, &opts).await, "most_reacted");
    assert!(
        mr.iter().all(|m| m.key.workspace == a) && mr[0].key == d.m5,
        "most_reacted(A): {mr:?}"
    );
    let th = ok(
        store.most_active_threads(&a, &opts).await,
        "most_active_threads",
    );
    assert_eq!(th.len(), 1);
    assert_eq!(
        (th[0].parent.clone(), th[0].reply_count),
        (d.m1.clone(), 2),
        "threads(A): {th:?}"
    );
    let tl = ok(store.top_links(&a, &opts).await, "top_links");
    assert!(
        tl.iter().all(|l| !l.url.contains("b.example")),
        "top_links(A) shows B's link: {tl:?}"
    );
    let td = ok(store.top_domains(&a, &opts).await, "top_domains");
    assert!(
        td.iter().all(|l| l.domain != "b.example"),
        "top_domains(A): {td:?}"
    );
    let ca = ok(store.channel_activity(&a, &opts).await, "channel_activity");
    assert_eq!(
        ca.iter().map(|c| c.messages).sum::<u64>(),
        7,
        "channel_activity(A): {ca:?}"
    );
    let ua = ok(store.user_activity(&a, &opts).await, "user_activity");
    assert_eq!(
        ua.iter().map(|u| u.reactions_received).sum::<u64>(),
        10,
        "user_activity(A): {ua:?}"
    );
    let ll = ok(
        store.list_links(&a, &LinkQuery::default()).await,
        "list_links",
    );
    assert!(
        ll.len() == 3 && ll.iter().all(|l| l.key.workspace == a),
        "list_links(A): {ll:?}"
    );
    let ci = ok(
        store.content_index(&a, &PageRequest::first(1000)).await,
        "content_index",
    );
    assert!(
        ci.len() == 7 && ci.iter().all(|c| c.key.workspace == a),
        "content_index(A): {ci:?}"
    );
    // Outbox reads scoped to a workspace.
    let sa = ok(store.outbox_stats(Some(a.clone())).await, "outbox_stats(A)");
    let sb = ok(
        store.outbox_stats(Some(bws.clone())).await,
        "outbox_stats(B)",
    );
    let total = ok(store.outbox_stats(None).await, "outbox_stats(None)");
    assert_eq!(
        sa.pending + sb.pending,
        total.pending,
        "per-workspace outbox stats add up"
    );
    assert!(
        sb.pending > sa.pending,
        "B enqueued more than A: {sa:?} {sb:?}"
    );
    let claimed = claim(&store, &a, 1000, Duration::from_secs(60)).await;
    assert!(
        !claimed.is_empty() && claimed.iter().all(|e| e.key.workspace == a),
        "claim(A) returned another workspace's entry"
    );
    let fails: Vec<_> = claimed
        .iter()
        .map(|e| OutboxFailure {
            id: e.id,
            error: "boom".into(),
            retryable: false,
        })
        .collect();
    ok(
        store.fail_outbox(&fails, &RetryPolicy::default()).await,
        "fail_outbox",
    );
    assert!(ok(
        store.dead_letters(Some(bws.clone()), 100).await,
        "dead_letters(B)"
    )
    .is_empty());
    assert_eq!(
        ok(
            store.dead_letters(Some(a.clone()), 100).await,
            "dead_letters(A)"
        )
        .len(),
        claimed.len()
    );
    assert_eq!(
        ok(
            store.requeue_dead_letters(Some(bws.clone()), None).await,
            "requeue(B)"
        ),
        0
    );
    let b_claim = claim(&store, &bws, 1000, Duration::from_secs(60)).await;
    assert!(b_claim.iter().all(|e| e.key.workspace == bws));
    assert_eq!(
        b_claim.len(),
        9,
        "B's oldest entry of each of its 9 messages is claimable"
    );
}

/// Aggregates against hand-computed expectations: ranges, channel scopes, limits and tie order.
pub async fn aggregates(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let d = seed_dataset(&store, &ws).await;
    // A second thread in C2: parent 20.0 (U3), replies 21.0 and 22.0 by U1; ties with C1's thread.
    let p = key("T1", "C2", "20.0");
    let mut b = WriteBatch::new(ws.clone());
    let mut pm = meta(&p, Some("U3"));
    pm.thread_ts = Some(ts("20.0"));
    pm.reply_count = 2;
    b.messages
        .push(record(pm, Some("thread two"), ChannelKind::Public));
    for t in ["21.0", "22.0"] {
        let mut m = meta(&key("T1", "C2", t), Some("U1"));
        m.thread_ts = Some(ts("20.0"));
        b.messages
            .push(record(m, Some("reply"), ChannelKind::Public));
    }
    apply(&store, b, "write thread two").await;
    let all = AggregateOptions {
        limit: 100,
        ..Default::default()
    };
    let with =
        |range: TimeRange, channels: Option<Vec<ChannelId>>, limit: usize| AggregateOptions {
            range,
            channels,
            limit,
        };

    let mr = ok(store.most_reacted(&ws, &all).await, "most_reacted");
    let mr: Vec<_> = mr.into_iter().map(|m| (m.key, m.reaction_count)).collect();
    assert_eq!(
        mr,
        [(d.m5.clone(), 5), (d.m1.clone(), 3), (d.m4.clone(), 1)],
        "most_reacted (messages without reactions are not listed)"
    );
    let mr2 = ok(
        store
            .most_reacted(
                &ws,
                &with(TimeRange::all(), Some(vec![chan("C1"), chan("C2")]), 1),
            )
            .await,
        "most_reacted scoped",
    );
    assert_eq!(
        mr2.into_iter().map(|m| m.key).collect::<Vec<_>>(),
        [d.m1.clone()]
    );

    let th = ok(
        store.most_active_threads(&ws, &all).await,
        "most_active_threads",
    );
    let th: Vec<_> = th
        .into_iter()
        .map(|t| (t.parent, t.reply_count, t.participant_count, t.latest_reply))
        .collect();
    assert_eq!(
        th,
        [
            (p.clone(), 2, 1, Some(ts("22.0"))),
            (d.m1.clone(), 2, 2, Some(ts("100.000003")))
        ],
        "most_active_threads (tie: older parent first)"
    );
    let th = ok(
        store
            .most_active_threads(
                &ws,
                &with(TimeRange::between(at("0.0"), at("21.5")), None, 10),
            )
            .await,
        "threads in range",
    );
    let th: Vec<_> = th
        .into_iter()
        .map(|t| (t.parent, t.reply_count, t.latest_reply))
        .collect();
    assert_eq!(
        th,
        [(p.clone(), 1, Some(ts("21.0")))],
        "only replies posted in the range count"
    );

    let tl = ok(store.top_links(&ws, &all).await, "top_links");
    let tl: Vec<_> = tl.into_iter().map(|l| (l.url, l.domain, l.count)).collect();
    assert_eq!(
        tl,
        [
            (
                "https://github.com/acme/api/pull/1".to_string(),
                "github.com".to_string(),
                2
            ),
            (
                "https://docs.rs/tokio".to_string(),
                "docs.rs".to_string(),
                1
            ),
        ],
        "top_links"
    );
    let td = ok(store.top_domains(&ws, &all).await, "top_domains");
    let td: Vec<_> = td.into_iter().map(|t| (t.domain, t.count)).collect();
    assert_eq!(
        td,
        [("github.com".to_string(), 2), ("docs.rs".to_string(), 1)],
        "top_domains"
    );
    let td = ok(
        store
            .top_domains(&ws, &with(TimeRange::all(), None, 1))
            .await,
        "top_domains limit 1",
    );
    assert_eq!(td.len(), 1);

    let ca = ok(store.channel_activity(&ws, &all).await, "channel_activity");
    let ca: Vec<_> = ca
        .into_iter()
        .map(|c| (c.channel, c.messages, c.users))
        .collect();
    assert_eq!(
        ca,
        [
            (chan("C2"), 5, 2),
            (chan("C1"), 4, 2),
            (chan("D1"), 1, 1),
            (chan("G1"), 1, 1)
        ],
        "channel_activity (ties: channel id order; bot messages count, without a user)"
    );
    let ca = ok(
        store
            .channel_activity(
                &ws,
                &with(
                    TimeRange {
                        start: Some(at("50.0")),
                        end: None,
                    },
                    None,
                    2,
                ),
            )
            .await,
        "channel_activity range",
    );
    let ca: Vec<_> = ca.into_iter().map(|c| (c.channel, c.messages)).collect();
    assert_eq!(ca, [(chan("C1"), 3), (chan("D1"), 1)]);

    let ua = ok(store.user_activity(&ws, &all).await, "user_activity");
    let ua: Vec<_> = ua
        .into_iter()
        .map(|u| (u.user, u.messages, u.reactions_received))
        .collect();
    assert_eq!(
        ua,
        [(user("U1"), 5, 3), (user("U2"), 3, 5), (user("U3"), 2, 1)],
        "user_activity"
    );
    let ua = ok(
        store
            .user_activity(&ws, &with(TimeRange::all(), Some(vec![chan("G1")]), 10))
            .await,
        "user_activity(G1)",
    );
    assert_eq!(
        ua.into_iter()
            .map(|u| (u.user, u.messages))
            .collect::<Vec<_>>(),
        [(user("U2"), 1)]
    );

    assert!(ok(
        store
            .most_reacted(&ws, &with(TimeRange::all(), None, 0))
            .await,
        "limit 0"
    )
    .is_empty());
    let empty = with(TimeRange::between(at("1000.0"), at("2000.0")), None, 10);
    assert!(ok(store.channel_activity(&ws, &empty).await, "empty range").is_empty());
    assert!(ok(store.top_links(&ws, &empty).await, "empty range").is_empty());
}

/// The activity aggregates count only messages in which someone said something: plain messages
/// and content subtypes (`bot_message`, `me_message`, `thread_broadcast`, `file_share`,
/// `file_comment`…), never joins, topic or purpose changes, archives, pins, or a subtype the
/// store does not know — and reactions to an event are not "reactions received".
pub async fn activity_counts_only_real_messages(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let w = ws.as_str();
    let mut b = WriteBatch::new(ws.clone());
    b.users = ["U1", "U2", "U3", "U4"]
        .into_iter()
        .map(|u| User::new(user(u), u.to_lowercase()))
        .collect();
    b.channels = vec![
        Channel::new(chan("C1"), "general", ChannelKind::Public),
        Channel::new(chan("C2"), "random", ChannelKind::Public),
        Channel::new(chan("C3"), "old", ChannelKind::Public),
    ];
    // (channel, ts, author, subtype, thread_ts, reactions); events have no content, as the
    // collector stores them.
    type Row = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        u32,
    );
    let rows: &[Row] = &[
        ("C1", "10.0", Some("U1"), None, None, 2),
        ("C1", "11.0", Some("U2"), Some("channel_join"), None, 3),
        ("C1", "12.0", Some("U4"), Some("channel_join"), None, 0),
        ("C1", "13.0", Some("U2"), None, Some("13.0"), 0),
        ("C1", "14.0", Some("U1"), None, Some("13.0"), 0),
        (
            "C1",
            "15.0",
            Some("U3"),
            Some("thread_broadcast"),
            Some("13.0"),
            0,
        ),
        (
            "C1",
            "16.0",
            Some("U4"),
            Some("pinned_item"),
            Some("13.0"),
            0,
        ),
        ("C1", "17.0", Some("U2"), None, None, 0),
        ("C2", "20.0", Some("U1"), Some("channel_topic"), None, 4),
        ("C2", "21.0", Some("U1"), Some("channel_purpose"), None, 0),
        ("C2", "22.0", None, Some("bot_message"), None, 0),
        ("C2", "23.0", Some("U3"), Some("me_message"), None, 0),
        ("C2", "24.0", Some("U2"), Some("file_share"), None, 1),
        ("C2", "25.0", Some("U4"), Some("channel_join"), None, 0),
        (
            "C2",
            "26.0",
            Some("U1"),
            Some("channel_canvas_updated"),
            None,
            0,
        ),
        ("C2", "27.0", Some("U1"), Some("file_comment"), None, 0),
        ("C3", "30.0", Some("U1"), Some("channel_archive"), None, 0),
    ];
    for &(c, t, author, subtype, thread, reactions) in rows {
        let mut m = meta(&key(w, c, t), author);
        m.subtype = subtype.map(str::to_string);
        m.thread_ts = thread.map(ts);
        if author.is_none() {
            m.bot_id = Some("B1".into());
        }
        if reactions > 0 {
            m.has_reactions = true;
            m.reaction_count = reactions;
        }
        let said = subtype.is_none_or(|s| !s.starts_with("channel_") && s != "pinned_item");
        let mut r = record(m, said.then_some("something said"), ChannelKind::Public);
        if reactions > 0 {
            r.reactions = vec![Reaction {
                name: "wave".into(),
                users: vec![user("U3")],
                count: reactions,
            }];
        }
        b.messages.push(r);
    }
    apply(&store, b, "write messages and events").await;
    let all = AggregateOptions {
        limit: 100,
        ..Default::default()
    };

    let ca = ok(store.channel_activity(&ws, &all).await, "channel_activity");
    let ca: Vec<_> = ca
        .into_iter()
        .map(|c| (c.channel, c.messages, c.users))
        .collect();
    assert_eq!(
        ca,
        [(chan("C1"), 5, 3), (chan("C2"), 4, 3)],
        "channel_activity counts plain messages and content subtypes (bots' too), not joins, \
         topic/purpose changes, pins, unknown subtypes; C3 (only an archive) is not listed"
    );
    let ca = ok(
        store
            .channel_activity(
                &ws,
                &AggregateOptions {
                    range: TimeRange::between(at("20.0"), at("40.0")),
                    channels: Some(vec![chan("C2"), chan("C3")]),
                    limit: 10,
                },
            )
            .await,
        "channel_activity(C2, C3) in range",
    );
    assert_eq!(
        ca.into_iter()
            .map(|c| (c.channel, c.messages))
            .collect::<Vec<_>>(),
        [(chan("C2"), 4)],
        "the rule holds together with range and channels"
    );

    let ua = ok(store.user_activity(&ws, &all).await, "user_activity");
    let ua: Vec<_> = ua
        .into_iter()
        .map(|u| (u.user, u.messages, u.reactions_received))
        .collect();
    assert_eq!(
        ua,
        [(user("U1"), 3, 2), (user("U2"), 3, 1), (user("U3"), 2, 0)],
        "user_activity counts only what people said (and the reactions it got); U4, who only \
         joined and pinned, is not listed"
    );
    let ua = ok(
        store
            .user_activity(
                &ws,
                &AggregateOptions {
                    channels: Some(vec![chan("C3")]),
                    ..all.clone()
                },
            )
            .await,
        "user_activity(C3)",
    );
    assert!(ua.is_empty(), "an archive is nobody's activity: {ua:?}");

    let th = ok(
        store.most_active_threads(&ws, &all).await,
        "most_active_threads",
    );
    let th: Vec<_> = th
        .into_iter()
        .map(|t| (t.parent, t.reply_count, t.participant_count, t.latest_reply))
        .collect();
    assert_eq!(
        th,
        [(key(w, "C1", "13.0"), 2, 2, Some(ts("15.0")))],
        "a pin in the thread is not a reply; the broadcast reply is"
    );
}

/// `channel_latest`: each listed channel's newest stored message (by time, not by the ts
/// string), with counts when asked, within a range; channels not listed, deleted messages and
/// other workspaces never show.
pub async fn channel_latest_per_channel(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let other = create_workspace(store.as_ref(), "T2").await;
    let mut b = WriteBatch::new(ws.clone());
    b.channels = vec![
        Channel::new(chan("C1"), "general", ChannelKind::Public),
        Channel::new(chan("C2"), "secret", ChannelKind::Private),
        Channel::new(chan("C3"), "empty", ChannelKind::Public),
    ];
    // (channel, ts, subtype, thread_ts)
    let rows: &[(&str, &str, Option<&str>, Option<&str>)] = &[
        ("C1", "10.0", None, Some("10.0")),
        ("C1", "12.5", None, Some("10.0")),
        ("C1", "20.0", Some("channel_join"), None),
        ("C1", "30.0", None, None),
        // "9.9" sorts after "10.0" as a string: the newest is found by time.
        ("C2", "9.9", None, None),
        ("C2", "10.0", None, None),
    ];
    for &(c, t, subtype, thread) in rows {
        let mut m = meta(&key(ws.as_str(), c, t), Some("U1"));
        m.subtype = subtype.map(str::to_string);
        m.thread_ts = thread.map(ts);
        b.messages
            .push(record(m, Some("said"), ChannelKind::Public));
    }
    apply(&store, b, "write messages").await;
    let mut del = WriteBatch::new(ws.clone());
    del.message_deletes.push(key(ws.as_str(), "C1", "30.0"));
    apply(&store, del, "delete C1's newest message").await;
    let mut b = WriteBatch::new(other.clone());
    b.channels = vec![Channel::new(chan("C1"), "general", ChannelKind::Public)];
    b.messages.push(record(
        meta(&key(other.as_str(), "C1", "500.0"), Some("U1")),
        Some("elsewhere"),
        ChannelKind::Public,
    ));
    apply(&store, b, "write another workspace").await;

    let latest = |options: LatestOptions, what: &'static str| {
        let store = store.clone();
        let ws = ws.clone();
        async move {
            ok(store.channel_latest(&ws, &options).await, what)
                .into_iter()
                .map(|l| (l.channel, l.latest, l.messages))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        latest(LatestOptions::default(), "channel_latest(all)").await,
        [
            (chan("C1"), ts("20.0"), None),
            (chan("C2"), ts("10.0"), None)
        ],
        "every channel with a message, by id: any subtype counts, the deleted message does \
         not, the newest is found by time, C3 (empty) and the other workspace are not listed"
    );
    assert_eq!(
        latest(
            LatestOptions {
                channels: Some(vec![chan("C1"), chan("C3"), chan("C9"), chan("C1")]),
                with_counts: true,
                ..LatestOptions::default()
            },
            "channel_latest(C1, C3, C9, C1)"
        )
        .await,
        [(chan("C1"), ts("20.0"), Some(3))],
        "only the channels asked for (C2 is never named), each once; replies count"
    );
    assert_eq!(
        latest(
            LatestOptions {
                range: TimeRange {
                    start: None,
                    end: Some(at("20.0")),
                },
                channels: Some(vec![chan("C1"), chan("C2")]),
                with_counts: true,
            },
            "channel_latest before 20.0"
        )
        .await,
        [
            (chan("C1"), ts("12.5"), Some(2)),
            (chan("C2"), ts("10.0"), Some(2))
        ],
        "the range's end is exclusive"
    );
    assert_eq!(
        latest(
            LatestOptions {
                range: TimeRange {
                    start: Some(at("10.5")),
                    end: None,
                },
                with_counts: true,
                ..LatestOptions::default()
            },
            "channel_latest from 10.5"
        )
        .await,
        [(chan("C1"), ts("20.0"), Some(2))],
        "a channel with nothing in the range is not listed"
    );
    assert!(
        latest(
            LatestOptions {
                channels: Some(Vec::new()),
                ..LatestOptions::default()
            },
            "channel_latest(no channel)"
        )
        .await
        .is_empty(),
        "an empty channel list lists nothing"
    );
    let there = ok(
        store
            .channel_latest(&other, &LatestOptions::default())
            .await,
        "channel_latest(T2)",
    );
    assert_eq!(
        there
            .into_iter()
            .map(|l| (l.channel, l.latest))
            .collect::<Vec<_>>(),
        [(chan("C1"), ts("500.0"))],
        "each workspace sees its own messages only"
    );
}

/// `list_links`: (ts, channel, position) order, range, channel and domain filters, limit.
pub async fn list_links(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let d = seed_dataset(&store, &ws).await;
    let extra = key("T1", "C2", "22.0");
    let mut m = meta(&extra, Some("U1"));
    m.link_count = 1;
    let mut r = record(m, Some("see"), ChannelKind::Public);
    r.links = vec![link("https://github.com/acme/web", LinkSource::Attachment)];
    let mut b = WriteBatch::new(ws.clone());
    b.messages.push(r);
    apply(&store, b, "write").await;
    let row = |k: &MessageKey, url: &str| (k.clone(), url.to_string());
    let q = |query: LinkQuery| {
        let store = store.clone();
        let ws = ws.clone();
        async move {
            ok(store.list_links(&ws, &query).await, "list_links")
                .into_iter()
                .map(|s| (s.key, s.link.url))
                .collect::<Vec<_>>()
        }
    };
    let gh = "https://github.com/acme/api/pull/1";
    assert_eq!(
        q(LinkQuery::default()).await,
        [
            row(&extra, "https://github.com/acme/web"),
            row(&d.m1, gh),
            row(&d.m3, gh),
            row(&d.m3, "https://docs.rs/tokio")
        ],
        "list_links order"
    );
    assert_eq!(
        q(LinkQuery {
            domains: Some(vec!["docs.rs".into()]),
            ..Default::default()
        })
        .await,
        [row(&d.m3, "https://docs.rs/tokio")]
    );
    assert_eq!(
        q(LinkQuery {
            channels: Some(vec![chan("C2")]),
            ..Default::default()
        })
        .await,
        [row(&extra, "https://github.com/acme/web")]
    );
    assert_eq!(
        q(LinkQuery {
            limit: 2,
            ..Default::default()
        })
        .await,
        [row(&extra, "https://github.com/acme/web"), row(&d.m1, gh)]
    );
    assert_eq!(
        q(LinkQuery {
            range: TimeRange::between(at("100.000002"), at("300.0")),
            ..Default::default()
        })
        .await,
        [row(&d.m3, gh), row(&d.m3, "https://docs.rs/tokio")]
    );
    let full = ok(
        store.list_links(&ws, &LinkQuery::default()).await,
        "list_links",
    );
    assert_eq!(full[0].link.source, LinkSource::Attachment);
    assert_eq!(full[0].link.domain, "github.com");
}

/// `stats`, `content_index` (order, paging, `content_id` after ack) and `forget_content`.
pub async fn stats_content_index_and_forget(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let d = seed_dataset(&store, &ws).await;
    let s = ok(store.stats(&ws).await, "stats");
    assert_eq!(
        s,
        crate::WorkspaceStats {
            messages: 8,
            replies: 2,
            channels: 4,
            users: 3,
            reactions: 9,
            links: 3,
            files: 1,
            with_content: 0
        },
        "stats before delivery"
    );
    // content_index: (channel, ts) order, the order of ContentStore::list_versions.
    let expected: Vec<MessageKey> = [&d.m8, &d.m1, &d.m2, &d.m3, &d.m4, &d.m7, &d.m6, &d.m5]
        .into_iter()
        .cloned()
        .collect();
    let mut ordered = expected.clone();
    ordered.sort_by(|a, b| (&a.channel, &a.ts).cmp(&(&b.channel, &b.ts)));
    assert_eq!(expected, ordered);
    let ci = ok(
        store.content_index(&ws, &PageRequest::first(100)).await,
        "content_index",
    );
    assert_eq!(
        ci.iter().map(|c| c.key.clone()).collect::<Vec<_>>(),
        expected,
        "content_index order"
    );
    assert!(
        ci.iter().all(|c| c.content_id.is_none()),
        "not delivered yet"
    );
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = ok(
            store
                .content_index(
                    &ws,
                    &PageRequest {
                        after: after.clone(),
                        limit: 3,
                    },
                )
                .await,
            "content_index page",
        );
        if page.is_empty() {
            break;
        }
        after = page.last().map(|c| c.key.clone());
        paged.extend(page.into_iter().map(|c| c.key));
    }
    assert_eq!(paged, expected, "content_index paging");
    drain_outbox(&store, &ws).await;
    let s = ok(store.stats(&ws).await, "stats");
    assert_eq!(s.with_content, 8, "every delivered message counts: {s:?}");
    let ci = ok(
        store.content_index(&ws, &PageRequest::first(100)).await,
        "content_index",
    );
    assert!(
        ci.iter()
            .all(|c| c.content_id.as_deref() == Some(c.key.content_id().as_str())),
        "content_id after ack: {ci:?}"
    );
    let n = ok(
        store
            .forget_content(&ws, &[d.m1.clone(), key("T1", "C1", "1.0")])
            .await,
        "forget_content",
    );
    assert_eq!(n, 1, "forget_content counts the stored messages it reset");
    let m1 = get_one(&store, &d.m1).await.expect("m1 exists");
    assert_eq!(
        (m1.meta.content_hash.clone(), m1.meta.content_id.clone()),
        (None, None)
    );
    let ci = ok(
        store.content_index(&ws, &PageRequest::first(100)).await,
        "content_index",
    );
    assert!(
        ci.iter().all(|c| c.key != d.m1),
        "forgotten content leaves content_index"
    );
    expect_err(
        store.forget_content(&ws, &[key("T2", "C1", "1.0")]).await,
        ErrorKind::InvalidInput,
        "forget_content(key of another workspace)",
    );
    let (b, _) = dataset_batch(&ws);
    let r = apply(&store, b, "re-apply dataset").await;
    assert_eq!(
        r.outbox_enqueued, 1,
        "only the forgotten message is enqueued again: {r:?}"
    );
}

/// Claim returns due entries oldest first under a lease; ack deletes them and records `content_id`.
pub async fn outbox_claim_and_ack(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let keys: Vec<MessageKey> = (1..=5)
        .map(|i| key("T1", "C1", &format!("{i}.0")))
        .collect();
    let mut b = WriteBatch::new(ws.clone());
    for k in &keys {
        b.messages.push(text_message(k, "U1", "text"));
    }
    apply(&store, b, "write").await;
    let stats = ok(store.outbox_stats(None).await, "outbox_stats");
    assert_eq!(
        OutboxStats {
            oldest_live: None,
            ..stats
        },
        OutboxStats {
            pending: 5,
            leased: 0,
            dead: 0,
            next_lease_expiry: None,
            oldest_live: None,
        }
    );
    assert!(
        stats
            .oldest_live
            .is_some_and(|t| t <= Utc::now() && t > Utc::now() - chrono::Duration::minutes(5)),
        "the oldest live entry's age: {:?}",
        stats.oldest_live
    );
    let before = Utc::now();
    let first = claim(&store, &ws, 2, Duration::from_secs(60)).await;
    let after = Utc::now();
    assert_eq!(first.len(), 2, "claim honours the limit");
    assert!(first[0].id < first[1].id, "oldest first");
    assert_eq!(
        first.iter().map(|e| e.key.clone()).collect::<Vec<_>>(),
        keys[..2].to_vec()
    );
    assert!(first
        .iter()
        .all(|e| e.attempts == 0 && !e.dead && e.last_error.is_none()));
    assert!(first[0].version() > 0);
    let st = ok(store.outbox_stats(Some(ws.clone())).await, "outbox_stats");
    assert_eq!((st.pending, st.leased, st.dead), (3, 2, 0), "{st:?}");
    let minute = chrono::Duration::seconds(60);
    let expiry = st
        .next_lease_expiry
        .expect("leased entries have a lease expiry");
    assert!(
        expiry >= before + minute - chrono::Duration::milliseconds(5)
            && expiry <= after + minute + chrono::Duration::milliseconds(5),
        "next_lease_expiry is the lease's end: {expiry} not in {before}..{after} + 60 s"
    );
    let rest = claim(&store, &ws, 10, Duration::from_secs(60)).await;
    assert_eq!(
        rest.iter().map(|e| e.key.clone()).collect::<Vec<_>>(),
        keys[2..].to_vec(),
        "leased entries are not claimed again"
    );
    assert!(claim(&store, &ws, 10, Duration::from_secs(60))
        .await
        .is_empty());
    assert!(
        claim(&store, &ws, 0, Duration::from_secs(60))
            .await
            .is_empty(),
        "limit 0 claims nothing"
    );
    ok(
        store
            .ack_outbox(&[first[0].id, first[1].id, 987_654_321])
            .await,
        "ack (with an unknown id)",
    );
    ok(store.ack_outbox(&[first[0].id]).await, "ack again");
    ok(store.ack_outbox(&[]).await, "ack nothing");
    let m = get_one(&store, &keys[0]).await.expect("message exists");
    assert_eq!(
        m.meta.content_id,
        Some(keys[0].content_id()),
        "ack of an upsert records content_id"
    );
    let m = get_one(&store, &keys[2]).await.expect("message exists");
    assert_eq!(m.meta.content_id, None, "not acked yet");
    let st = ok(store.outbox_stats(None).await, "outbox_stats");
    assert_eq!((st.pending, st.leased, st.dead), (0, 3, 0), "{st:?}");
    assert!(
        st.next_lease_expiry.is_some_and(|t| t >= expiry),
        "the earliest remaining lease ends no sooner than the acked ones did: {st:?}"
    );
    assert_eq!(ok(store.stats(&ws).await, "stats").with_content, 2);
}

/// Failures: retry after the policy's delay, dead-letter after `max_attempts` or at once when not
/// retryable; dead letters are listed and re-queued; a failure for an unknown id is `Missing`.
pub async fn outbox_fail_retry_and_dead_letter(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let k1 = key("T1", "C1", "1.0");
    let k2 = key("T1", "C1", "2.0");
    let mut b = WriteBatch::new(ws.clone());
    b.messages.push(text_message(&k1, "U1", "one"));
    b.messages.push(text_message(&k2, "U1", "two"));
    apply(&store, b, "write").await;
    let got = claim(&store, &ws, 10, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 2);
    let (e1, e2) = (got[0].clone(), got[1].clone());
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(300),
        max_delay: Duration::from_secs(5),
    };
    let fail = |id, retryable| OutboxFailure {
        id,
        error: format!("embedder down ({id})"),
        retryable,
    };
    let before = Utc::now();
    let out = ok(
        store
            .fail_outbox(&[fail(e1.id, true), fail(987_654_321, true)], &policy)
            .await,
        "fail_outbox",
    );
    assert_eq!(out.len(), 2);
    let retry_at = match out[0] {
        FailOutcome::Retry { id, at } => {
            assert_eq!(id, e1.id);
            at
        }
        other => panic!("first failure of a retryable error should retry, got {other:?}"),
    };
    assert_eq!(out[1], FailOutcome::Missing { id: 987_654_321 });
    let delay = (retry_at - before).num_milliseconds();
    assert!(
        (200..=2_000).contains(&delay),
        "retry after ~300 ms, got {delay} ms"
    );
    assert!(
        claim(&store, &ws, 10, Duration::from_secs(60))
            .await
            .is_empty(),
        "an entry waiting for its retry time is not claimable"
    );
    let st = ok(store.outbox_stats(Some(ws.clone())).await, "outbox_stats");
    assert_eq!(
        (st.pending, st.leased, st.dead),
        (1, 1, 0),
        "waiting counts as pending: {st:?}"
    );
    let wait = (retry_at - Utc::now()).num_milliseconds().max(0) as u64 + 150;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let again = claim(&store, &ws, 10, Duration::from_secs(60)).await;
    assert_eq!(again.len(), 1, "claimable after the retry time");
    assert_eq!((again[0].id, again[0].attempts), (e1.id, 1));
    assert_eq!(
        again[0].last_error.as_deref(),
        Some(format!("embedder down ({})", e1.id).as_str())
    );
    let out = ok(
        store.fail_outbox(&[fail(e1.id, true)], &policy).await,
        "second failure",
    );
    assert!(
        matches!(out[0], FailOutcome::Retry { .. }),
        "second failure retries: {out:?}"
    );
    let out = ok(
        store.fail_outbox(&[fail(e1.id, true)], &policy).await,
        "third failure",
    );
    assert_eq!(
        out[0],
        FailOutcome::DeadLettered { id: e1.id },
        "max_attempts reached"
    );
    let out = ok(
        store.fail_outbox(&[fail(e2.id, false)], &policy).await,
        "non-retryable failure",
    );
    assert_eq!(
        out[0],
        FailOutcome::DeadLettered { id: e2.id },
        "a non-retryable failure dead-letters at once"
    );
    let dead = ok(
        store.dead_letters(Some(ws.clone()), 10).await,
        "dead_letters",
    );
    assert_eq!(
        dead.iter()
            .map(|e| (e.id, e.attempts, e.dead))
            .collect::<Vec<_>>(),
        [(e1.id, 3, true), (e2.id, 1, true)]
    );
    assert_eq!(
        ok(store.dead_letters(None, 1).await, "dead_letters(limit 1)").len(),
        1
    );
    assert_eq!(
        ok(store.outbox_stats(None).await, "stats"),
        OutboxStats {
            pending: 0,
            leased: 0,
            dead: 2,
            next_lease_expiry: None,
            oldest_live: None,
        },
        "dead letters are not live"
    );
    assert!(
        claim(&store, &ws, 10, Duration::from_secs(60))
            .await
            .is_empty(),
        "dead letters are not claimable"
    );
    assert_eq!(
        ok(
            store.requeue_dead_letters(None, Some(vec![e2.id])).await,
            "requeue one"
        ),
        1
    );
    let got = claim(&store, &ws, 10, Duration::from_secs(60)).await;
    assert_eq!(
        got.iter().map(|e| (e.id, e.attempts)).collect::<Vec<_>>(),
        [(e2.id, 0)],
        "re-queued with zero attempts"
    );
    assert_eq!(
        ok(
            store.requeue_dead_letters(Some(ws.clone()), None).await,
            "requeue all"
        ),
        1
    );
    let got = claim(&store, &ws, 10, Duration::from_secs(60)).await;
    assert_eq!(
        got.iter()
            .map(|e| (e.id, e.attempts, e.dead))
            .collect::<Vec<_>>(),
        [(e1.id, 0, false)]
    );
    assert_eq!(
        ok(
            store.requeue_dead_letters(None, None).await,
            "requeue nothing"
        ),
        0
    );
}

/// An entry leased but neither acked nor failed becomes claimable again once its lease expires.
pub async fn outbox_lease_expiry(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let mut b = WriteBatch::new(ws.clone());
    b.messages
        .push(text_message(&key("T1", "C1", "1.0"), "U1", "x"));
    apply(&store, b, "write").await;
    let lease = Duration::from_millis(200);
    let first = claim(&store, &ws, 10, lease).await;
    assert_eq!(first.len(), 1);
    assert!(
        claim(&store, &ws, 10, lease).await.is_empty(),
        "not claimable while leased"
    );
    assert_eq!(ok(store.outbox_stats(None).await, "stats").leased, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stats = ok(store.outbox_stats(None).await, "stats");
    assert_eq!(
        OutboxStats {
            oldest_live: None,
            ..stats
        },
        OutboxStats {
            pending: 1,
            leased: 0,
            dead: 0,
            next_lease_expiry: None,
            oldest_live: None,
        },
        "expired lease counts as pending"
    );
    assert!(stats.oldest_live.is_some(), "a pending entry is live");
    let second = claim(&store, &ws, 10, Duration::from_secs(60)).await;
    assert_eq!(
        second.iter().map(|e| e.id).collect::<Vec<_>>(),
        [first[0].id],
        "claimable again after the lease expired"
    );
    ok(
        store.ack_outbox(&[first[0].id]).await,
        "late ack from the first claimer",
    );
    assert_eq!(
        ok(store.outbox_stats(None).await, "stats"),
        OutboxStats::default()
    );
}

/// Entries leased by an owner on this host that is known to be dead (its pid does not exist, or
/// was reused by a process with another start time) are claimable at once; owners on other hosts
/// and owner strings that are not a `LeaseOwner` keep their leases.
pub async fn outbox_dead_owner_leases_are_reclaimed(store: Store) {
    let me = LeaseOwner::current();
    if me.start_time() == 0 {
        eprintln!("skipped: process start times are unknown on this platform");
        return;
    }
    // Above Linux's largest pid_max (2^22), so no process has it.
    let no_such_pid = LeaseOwner::new(me.host(), 4_194_305, me.start_time()).with_label("relay");
    let reused_pid = LeaseOwner::new(me.host(), me.pid(), me.start_time() + 1);
    let other_host = LeaseOwner::new(format!("{}-elsewhere", me.host()), 4_194_305, 1);
    let owners = [
        no_such_pid.to_string(),
        reused_pid.to_string(),
        other_host.to_string(),
        "legacy-relay".to_string(),
    ];
    // One workspace per owner: a claim in one workspace cannot take another's entries, so each
    // owner keeps what it claimed until the final claim across all of them.
    let hour = Duration::from_secs(3600);
    let mut held = Vec::new();
    for (i, owner) in owners.iter().enumerate() {
        let ws = create_workspace(store.as_ref(), &format!("T{i}")).await;
        let mut b = WriteBatch::new(ws.clone());
        b.messages
            .push(text_message(&key(ws.as_str(), "C1", "1.0"), "U1", "text"));
        apply(&store, b, "write").await;
        let got = claim_as(&store, &ws, owner, 10, hour).await;
        assert_eq!(got.len(), 1, "claimed as {owner}");
        held.push(got[0].id);
    }
    let st = ok(store.outbox_stats(None).await, "outbox_stats");
    assert_eq!((st.pending, st.leased), (0, 4), "{st:?}");
    let got = ok(
        store
            .claim_outbox(&ClaimRequest {
                workspace: None,
                limit: 10,
                lease: Duration::from_secs(60),
                owner: "suite".into(),
            })
            .await,
        "claim_outbox",
    );
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        held[..2].to_vec(),
        "a dead owner's leases are claimable at once; another host's and a legacy owner's are not"
    );
    assert!(
        got.iter()
            .all(|e| e.attempts == 0 && e.last_error.is_none()),
        "reclaiming a lease is not a failure: {got:?}"
    );
    let again = ok(
        store
            .claim_outbox(&ClaimRequest {
                workspace: None,
                ..ClaimRequest::default()
            })
            .await,
        "claim_outbox",
    );
    assert!(again.is_empty(), "the new owner's leases hold: {again:?}");
}

/// Entries leased by this very process are not claimable before their lease expires.
pub async fn outbox_live_owner_keeps_its_lease(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let mut b = WriteBatch::new(ws.clone());
    for i in 1..=2 {
        b.messages
            .push(text_message(&key("T1", "C1", &format!("{i}.0")), "U1", "x"));
    }
    apply(&store, b, "write").await;
    let hour = Duration::from_secs(3600);
    let first = ok(
        store
            .claim_outbox(&ClaimRequest {
                workspace: Some(ws.clone()),
                limit: 1,
                lease: hour,
                ..ClaimRequest::default()
            })
            .await,
        "claim_outbox as the default owner",
    );
    assert_eq!(first.len(), 1);
    let labelled = LeaseOwner::current().with_label("relay");
    assert_eq!(claim_as(&store, &ws, &labelled, 1, hour).await.len(), 1);
    assert!(
        claim_as(&store, &ws, "someone-else", 10, hour)
            .await
            .is_empty(),
        "a live owner's leases hold until they expire"
    );
    assert_eq!(ok(store.outbox_stats(None).await, "outbox_stats").leased, 2);
}

/// Releasing ends a lease without counting an attempt: the entry is claimable again at once with
/// its attempts, error and retry time unchanged; unknown, unleased and dead ids are ignored.
pub async fn outbox_release(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let keys: Vec<MessageKey> = (1..=3)
        .map(|i| key("T1", "C1", &format!("{i}.0")))
        .collect();
    let mut b = WriteBatch::new(ws.clone());
    for k in &keys {
        b.messages.push(text_message(k, "U1", "text"));
    }
    apply(&store, b, "write").await;
    let hour = Duration::from_secs(3600);
    let got = claim(&store, &ws, 10, hour).await;
    assert_eq!(got.len(), 3);
    let (e1, e2, e3) = (got[0].id, got[1].id, got[2].id);
    assert_eq!(ok(store.release_outbox(&[]).await, "release nothing"), 0);
    assert_eq!(
        ok(store.release_outbox(&[e1, 987_654_321]).await, "release"),
        1,
        "an unknown id is ignored"
    );
    assert_eq!(
        ok(store.release_outbox(&[e1]).await, "release again"),
        0,
        "an entry no longer leased is not released twice"
    );
    let st = ok(store.outbox_stats(Some(ws.clone())).await, "outbox_stats");
    assert_eq!((st.pending, st.leased, st.dead), (1, 2, 0), "{st:?}");
    let again = claim(&store, &ws, 10, hour).await;
    assert_eq!(
        again
            .iter()
            .map(|e| (e.id, e.attempts, e.last_error.clone()))
            .collect::<Vec<_>>(),
        [(e1, 0, None)],
        "a released entry is claimable at once, with no attempt counted"
    );
    // A failed entry waiting for its retry keeps its retry time; a dead letter stays dead.
    let policy = RetryPolicy {
        max_attempts: 5,
        base_delay: hour,
        max_delay: hour,
    };
    let failures = [
        OutboxFailure {
            id: e2,
            error: "embedder down".into(),
            retryable: true,
        },
        OutboxFailure {
            id: e3,
            error: "invalid".into(),
            retryable: false,
        },
    ];
    ok(store.fail_outbox(&failures, &policy).await, "fail_outbox");
    assert_eq!(
        ok(store.release_outbox(&[e2, e3]).await, "release failed"),
        0,
        "failed and dead-lettered entries hold no lease"
    );
    assert!(
        claim(&store, &ws, 10, hour).await.is_empty(),
        "release does not move a retry time"
    );
    let dead = ok(
        store.dead_letters(Some(ws.clone()), 10).await,
        "dead_letters",
    );
    assert_eq!(
        dead.iter().map(|e| (e.id, e.attempts)).collect::<Vec<_>>(),
        [(e3, 1)]
    );
    assert_eq!(
        ok(
            store.release_outbox(&[e1]).await,
            "release the re-claimed entry"
        ),
        1
    );
    let st = ok(store.outbox_stats(Some(ws.clone())).await, "outbox_stats");
    assert_eq!(
        (st.pending, st.leased, st.dead, st.next_lease_expiry),
        (2, 0, 1, None),
        "{st:?}"
    );
}

/// A later change for a message is not claimable while an earlier live one exists; a
/// dead-lettered one does not block.
pub async fn outbox_per_message_order(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let a = key("T1", "C1", "1.0");
    let bkey = key("T1", "C1", "2.0");
    let write = |k: &MessageKey, text: &str| {
        let mut b = WriteBatch::new(ws.clone());
        b.messages.push(text_message(k, "U1", text));
        b
    };
    apply(&store, write(&a, "a1"), "a1").await;
    apply(&store, write(&a, "a2"), "a2").await;
    apply(&store, write(&bkey, "b1"), "b1").await;
    let mut del = WriteBatch::new(ws.clone());
    del.message_deletes.push(a.clone());
    apply(&store, del, "delete a").await;
    let first = claim(&store, &ws, 10, Duration::from_secs(60)).await;
    let got: Vec<_> = first.iter().map(|e| (e.key.clone(), e.op.name())).collect();
    assert_eq!(
        got,
        [(a.clone(), "upsert"), (bkey.clone(), "upsert")],
        "only the oldest entry per message"
    );
    assert!(
        claim(&store, &ws, 10, Duration::from_secs(60))
            .await
            .is_empty(),
        "a2 waits while a1 is leased"
    );
    ok(store.ack_outbox(&[first[0].id]).await, "ack a1");
    let second = claim(&store, &ws, 10, Duration::from_secs(60)).await;
    assert_eq!(second.len(), 1);
    assert!(
        matches!(&second[0].op, OutboxOp::Upsert { content } if content.text == "a2"),
        "a2 after a1: {second:?}"
    );
    assert!(second[0].id > first[0].id);
    // a2 fails for good: the delete behind it is not blocked by a dead letter.
    let out = ok(
        store
            .fail_outbox(
                &[OutboxFailure {
                    id: second[0].id,
                    error: "bad".into(),
                    retryable: false,
                }],
                &RetryPolicy::default(),
            )
            .await,
        "fail a2",
    );
    assert_eq!(out[0], FailOutcome::DeadLettered { id: second[0].id });
    let third = claim(&store, &ws, 10, Duration::from_secs(60)).await;
    assert_eq!(
        third
            .iter()
            .map(|e| (e.key.clone(), e.op.clone()))
            .collect::<Vec<_>>(),
        [(a.clone(), OutboxOp::Delete)]
    );
}

/// `undelivered_keys`: the distinct keys with a waiting, leased or dead entry, of one workspace,
/// ordered by (channel, ts), honouring the limit; acked entries leave the list.
pub async fn outbox_undelivered_keys(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let other = create_workspace(store.as_ref(), "T2").await;
    let (a, b, c) = (
        key("T1", "C1", "1.0"),
        key("T1", "C1", "2.0"),
        key("T1", "C2", "3.0"),
    );
    let mut batch = WriteBatch::new(ws.clone());
    for k in [&c, &a, &b] {
        batch.messages.push(text_message(k, "U1", "first"));
    }
    apply(&store, batch, "write").await;
    let mut batch = WriteBatch::new(ws.clone());
    let mut edit = text_message(&b, "U1", "second");
    edit.meta.edited = Some(ts("1.5"));
    batch.messages.push(edit);
    apply(&store, batch, "edit").await;
    let mut batch = WriteBatch::new(other.clone());
    batch
        .messages
        .push(text_message(&key("T2", "C1", "1.0"), "U1", "elsewhere"));
    apply(&store, batch, "other workspace").await;

    let all = ok(store.undelivered_keys(&ws, 10).await, "undelivered_keys");
    assert_eq!(
        all,
        vec![a.clone(), b.clone(), c.clone()],
        "distinct, by (channel, ts)"
    );
    let two = ok(store.undelivered_keys(&ws, 2).await, "undelivered_keys");
    assert_eq!(two, vec![a.clone(), b.clone()], "limit");

    // leased entries are undelivered too; acked ones are not
    let claimed = claim(&store, &ws, 10, Duration::from_secs(60)).await;
    let acked: Vec<_> = claimed
        .iter()
        .filter(|e| e.key == a || e.key == c)
        .map(|e| e.id)
        .collect();
    assert_eq!(acked.len(), 2, "one entry each for a and c");
    ok(store.ack_outbox(&acked).await, "ack");
    assert_eq!(
        ok(store.undelivered_keys(&ws, 10).await, "undelivered_keys"),
        vec![b.clone()]
    );
    let other_keys = ok(store.undelivered_keys(&other, 10).await, "undelivered_keys");
    assert_eq!(
        other_keys,
        vec![key("T2", "C1", "1.0")],
        "workspaces stay apart"
    );
}

/// Eight tasks claiming concurrently never receive the same entry, and together get them all.
pub async fn outbox_concurrent_claims(store: Store) {
    let ws = create_workspace(store.as_ref(), "T1").await;
    let n = 120;
    let mut b = WriteBatch::new(ws.clone());
    for i in 0..n {
        b.messages.push(text_message(
            &key("T1", "C1", &format!("{}.0", i + 1)),
            "U1",
            "x",
        ));
    }
    apply(&store, b, "write").await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        let ws = ws.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim_outbox(&ClaimRequest {
                        workspace: Some(ws.clone()),
                        limit: 7,
                        lease: Duration::from_secs(60),
                        owner: format!("relay-{t}"),
                    })
                    .await
                    .unwrap_or_else(|e| panic!("claim_outbox in task {t}: {e}"));
                if got.is_empty() {
                    return mine;
                }
                let ids: Vec<_> = got.iter().map(|e| e.id).collect();
                store
                    .ack_outbox(&ids)
                    .await
                    .unwrap_or_else(|e| panic!("ack_outbox in task {t}: {e}"));
                mine.extend(ids);
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(
            t.await
                .unwrap_or_else(|e| panic!("claim task panicked: {e}")),
        );
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "an entry was handed to two claimers"
    );
    assert_eq!(all.len(), n, "every entry delivered exactly once");
    assert_eq!(
        ok(store.outbox_stats(None).await, "stats"),
        OutboxStats::default()
    );
    assert_eq!(ok(store.stats(&ws).await, "stats").with_content, n as u64);
}

/// Deleting a workspace removes everything of it (outbox and installation included) and nothing
/// of another; deleting a missing one succeeds.
pub async fn delete_workspace_cascades(store: Store) {
    let a = create_workspace(store.as_ref(), "TA").await;
    let bws = create_workspace(store.as_ref(), "TB").await;
    apply(&store, full_batch(&a).0, "apply(A)").await;
    apply(&store, full_batch(&bws).0, "apply(B)").await;
    ok(
        store
            .put_installation(&Installation {
                workspace: a.clone(),
                team: None,
                bot_user: None,
                bot_token: SecretString::new("xoxb-a"),
                scopes: vec![],
                installed_at: None,
            })
            .await,
        "put_installation",
    );
    let b_before = ok(
        store.outbox_stats(Some(bws.clone())).await,
        "outbox_stats(B)",
    );
    ok(store.delete_workspace(&a).await, "delete_workspace");
    ok(store.delete_workspace(&a).await, "delete_workspace again");
    assert!(ok(store.get_workspace(&a).await, "get_workspace").is_none());
    assert_eq!(
        ok(store.outbox_stats(Some(a.clone())).await, "outbox_stats(A)"),
        OutboxStats::default()
    );
    assert_eq!(
        ok(
            store.outbox_stats(Some(bws.clone())).await,
            "outbox_stats(B)"
        ),
        b_before
    );
    assert_eq!(
        ok(
            store.count_messages(&bws, &MessageFilter::default()).await,
            "count(B)"
        ),
        7
    );
    create_workspace(store.as_ref(), "TA").await;
    assert_eq!(
        ok(
            store.count_messages(&a, &MessageFilter::default()).await,
            "count(A)"
        ),
        0
    );
    assert!(ok(store.list_channels(&a).await, "channels(A)").is_empty());
    assert!(ok(store.list_users(&a).await, "users(A)").is_empty());
    assert!(ok(store.list_sync_status(&a).await, "sync(A)").is_empty());
    assert!(ok(store.list_bot_config(&a).await, "bot config(A)").is_empty());
    assert!(ok(store.get_installation(&a, None).await, "installation(A)").is_none());
    // The old tombstones went with it: the deleted message can be written again.
    let (b, d) = full_batch(&a);
    let r = apply(&store, b, "re-apply(A)").await;
    assert_eq!(r.messages_deleted_before, 0, "{r:?}");
    assert!(get_one(&store, &d.m1).await.is_some());
}
