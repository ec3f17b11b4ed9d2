//! The store's own tests, each on SQLite and (with `CHATVAULT_TEST_DATABASE_URL`) PostgreSQL.

#[macro_use]
mod common;

use std::collections::HashSet;
use std::time::Duration;

use chatvault_core::{
    AggregateOptions, Channel, ChannelId, ChannelKind, ClaimRequest, ContentAttributes, ErrorKind,
    FailOutcome, Installation, Link, LinkQuery, LinkSource, MessageContent, MessageFilter,
    MessageKey, MessageMeta, MessageRecord, MetadataStore, OutboxFailure, PageRequest, Reaction,
    ReactionChange, RetryPolicy, SecretString, TeamId, ThreadFilter, Ts, UserId, Workspace,
    WorkspaceId, WriteBatch,
};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore, TokenKey};
use common::Db;
use sea_orm::{ConnectionTrait, Statement};

fn ws() -> WorkspaceId {
    WorkspaceId::new("T1").unwrap()
}

fn key(ch: &str, ts: &str) -> MessageKey {
    MessageKey::parse("T1", ch, ts).unwrap()
}

fn uid(u: &str) -> UserId {
    UserId::new(u).unwrap()
}

fn record(ch: &str, ts: &str, user: &str, text: Option<&str>) -> MessageRecord {
    let mut meta = MessageMeta::new(key(ch, ts));
    meta.user = Some(uid(user));
    let mut r = MessageRecord::new(meta);
    r.content = text.map(|t| MessageContent {
        context: Default::default(),
        key: key(ch, ts),
        text: t.to_string(),
        attributes: ContentAttributes::from_meta(&r.meta, ChannelKind::Public),
    });
    r
}

async fn setup(db: &Db) -> SqlMetadataStore {
    let store = db.store().await;
    store
        .upsert_workspace(&Workspace::new(ws(), "Acme"))
        .await
        .unwrap();
    store
}

async fn raw_count(store: &SqlMetadataStore, table: &str) -> i64 {
    let c = store.connection();
    let row = c
        .query_one(Statement::from_string(
            c.get_database_backend(),
            format!("SELECT COUNT(*) FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

// ----- apply -----

async fn apply_writes_and_reads_back(db: &Db) {
    let store = setup(db).await;
    let mut b = WriteBatch::new(ws());
    b.channels.push(Channel::new(
        ChannelId::new("C1").unwrap(),
        "general",
        ChannelKind::Public,
    ));
    let mut m = record("C1", "100.000001", "U1", Some("deploy failed"));
    m.reactions = vec![Reaction {
        name: "tada".into(),
        users: vec![uid("U2"), uid("U3")],
        count: 2,
    }];
    m.meta.reaction_count = 2;
    m.meta.has_reactions = true;
    m.links = vec![
        Link::parse("https://github.com/a/b/pull/1", LinkSource::Text).unwrap(),
        Link::parse("https://www.example.com/x", LinkSource::Attachment).unwrap(),
    ];
    m.meta.link_count = 2;
    b.messages.push(m);
    let mut reply = record("C1", "101.5", "U2", Some("on it"));
    reply.meta.thread_ts = Some(Ts::new("100.000001").unwrap());
    b.messages.push(reply);
    let r = store.apply(b.clone()).await.unwrap();
    assert_eq!(r.messages_written, 2);
    assert_eq!(r.outbox_enqueued, 2);

    let got = store
        .get_messages(
            &ws(),
            &[key("C1", "101.5"), key("C1", "100.000001"), key("C1", "9")],
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].meta.key, key("C1", "101.5"));
    assert!(got[0].meta.is_reply());
    assert_eq!(got[1].reactions[0].users, vec![uid("U2"), uid("U3")]);
    assert_eq!(got[1].links[1].domain, "example.com");
    assert!(got[1].meta.content_hash.is_some());

    // idempotent: the same batch again writes the same rows and enqueues nothing
    let again = store.apply(b).await.unwrap();
    assert_eq!(again.outbox_enqueued, 0);
    assert_eq!(raw_count(&store, "outbox").await, 2);
    assert_eq!(raw_count(&store, "reactions").await, 1);
    assert_eq!(raw_count(&store, "links").await, 2);

    let f = MessageFilter {
        thread: Some(ThreadFilter::Replies),
        ..Default::default()
    };
    assert_eq!(
        store
            .filter_messages(&ws(), &f, &PageRequest::default())
            .await
            .unwrap(),
        vec![key("C1", "101.5")]
    );
    let f = MessageFilter {
        has_links: Some(true),
        min_reactions: Some(2),
        ..Default::default()
    };
    assert_eq!(store.count_messages(&ws(), &f).await.unwrap(), 1);
    let f = MessageFilter {
        channel_kinds: Some(vec![ChannelKind::Private]),
        ..Default::default()
    };
    assert_eq!(store.count_messages(&ws(), &f).await.unwrap(), 0);

    let o = AggregateOptions::default();
    let top = store.most_reacted(&ws(), &o).await.unwrap();
    assert_eq!(top[0].reaction_count, 2);
    let threads = store.most_active_threads(&ws(), &o).await.unwrap();
    assert_eq!(threads[0].parent, key("C1", "100.000001"));
    assert_eq!(threads[0].latest_reply, Some(Ts::new("101.5").unwrap()));
    let domains = store.top_domains(&ws(), &o).await.unwrap();
    assert_eq!(domains.len(), 2);
    let links = store
        .list_links(
            &ws(),
            &LinkQuery {
                domains: Some(vec!["github.com".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(links.len(), 1);
    let users = store.user_activity(&ws(), &o).await.unwrap();
    assert_eq!(users[0].user, uid("U1"));
    assert_eq!(users[0].reactions_received, 2);
    let stats = store.stats(&ws()).await.unwrap();
    assert_eq!(
        (stats.messages, stats.replies, stats.reactions, stats.links),
        (2, 1, 2, 2)
    );
}
on_both!(apply_round_trip, apply_writes_and_reads_back);

async fn edits_deletes_and_reactions(db: &Db) {
    let store = setup(db).await;
    let mut b = WriteBatch::new(ws());
    let mut m = record("C1", "1.0", "U1", Some("v2"));
    m.meta.edited = Some(Ts::new("5.0").unwrap());
    b.messages.push(m);
    store.apply(b).await.unwrap();

    // an older revision loses
    let mut b = WriteBatch::new(ws());
    b.messages.push(record("C1", "1.0", "U1", Some("v1")));
    let r = store.apply(b).await.unwrap();
    assert_eq!((r.messages_stale, r.outbox_enqueued), (1, 0));

    // reaction changes on a message with content enqueue attributes; repeating one changes nothing
    let mut b = WriteBatch::new(ws());
    for _ in 0..2 {
        b.reaction_changes.push(ReactionChange {
            key: key("C1", "1.0"),
            name: "eyes".into(),
            user: uid("U9"),
            added: true,
        });
    }
    b.reaction_changes.push(ReactionChange {
        key: key("C1", "9.0"),
        name: "eyes".into(),
        user: uid("U9"),
        added: true,
    });
    let r = store.apply(b).await.unwrap();
    assert_eq!(r.outbox_enqueued, 1);
    let got = store
        .get_messages(&ws(), &[key("C1", "1.0")])
        .await
        .unwrap();
    assert_eq!(got[0].meta.reaction_count, 1);
    assert!(got[0].meta.has_reactions);

    // delete: Delete enqueued, tombstone kept, later writes ignored
    let mut b = WriteBatch::new(ws());
    b.message_deletes.push(key("C1", "1.0"));
    let r = store.apply(b).await.unwrap();
    assert_eq!((r.messages_deleted, r.outbox_enqueued), (1, 1));
    assert_eq!(raw_count(&store, "reactions").await, 0);
    let mut b = WriteBatch::new(ws());
    b.messages.push(record("C1", "1.0", "U1", Some("v3")));
    let r = store.apply(b).await.unwrap();
    assert_eq!((r.messages_deleted_before, r.messages_written), (1, 0));
    assert!(store
        .get_messages(&ws(), &[key("C1", "1.0")])
        .await
        .unwrap()
        .is_empty());

    // per-message order: the entries come out one at a time, in order
    let mut ops = Vec::new();
    loop {
        let got = store.claim_outbox(&ClaimRequest::default()).await.unwrap();
        if got.is_empty() {
            break;
        }
        assert_eq!(got.len(), 1, "one live entry per message at a time");
        ops.push(got[0].op.name());
        store.ack_outbox(&[got[0].id]).await.unwrap();
    }
    assert_eq!(ops, vec!["upsert", "attributes", "delete"]);
}
on_both!(edits_and_deletes, edits_deletes_and_reactions);

async fn bad_input_writes_nothing(db: &Db) {
    let store = setup(db).await;
    // unknown workspace
    let mut b = WriteBatch::new(WorkspaceId::new("T404").unwrap());
    b.messages.push(MessageRecord::new(MessageMeta::new(
        MessageKey::parse("T404", "C1", "1.0").unwrap(),
    )));
    assert_eq!(
        store.apply(b).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // a key of another workspace
    let mut b = WriteBatch::new(ws());
    b.messages.push(record("C1", "1.0", "U1", Some("fine")));
    b.messages.push(MessageRecord::new(MessageMeta::new(
        MessageKey::parse("T2", "C1", "2.0").unwrap(),
    )));
    assert_eq!(
        store.apply(b).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    // an over-long field, after valid rows in the same batch
    let mut b = WriteBatch::new(ws());
    b.messages.push(record("C1", "1.0", "U1", Some("fine")));
    let mut long = record("C1", "2.0", "U1", None);
    long.links.push(Link {
        url: format!("https://x.com/{}", "a".repeat(20_000)),
        domain: "x.com".into(),
        source: LinkSource::Text,
        title: None,
    });
    b.messages.push(long);
    let e = store.apply(b).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("link.url"), "{e}");
    assert_eq!(raw_count(&store, "message_metadata").await, 0);
    assert_eq!(raw_count(&store, "outbox").await, 0);
    // an invalid workspace id never gets that far
    assert_eq!(
        WorkspaceId::new("bad id").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}
on_both!(bad_input, bad_input_writes_nothing);

async fn large_batches_are_chunked(db: &Db) {
    let store = setup(db).await;
    let mut b = WriteBatch::new(ws());
    for i in 0..6_000 {
        let mut m = record(
            "C1",
            &format!("{}.000100", 1_700_000_000 + i),
            "U1",
            Some("hello"),
        );
        m.reactions = vec![Reaction {
            name: "+1".into(),
            users: vec![uid("U2")],
            count: 1,
        }];
        m.links = vec![Link::parse("https://example.com/a", LinkSource::Text).unwrap()];
        m.meta.link_count = 1;
        b.messages.push(m);
    }
    let r = store.apply(b.clone()).await.unwrap();
    assert_eq!((r.messages_written, r.outbox_enqueued), (6_000, 6_000));
    let r = store.apply(b).await.unwrap();
    assert_eq!(r.outbox_enqueued, 0);
    assert_eq!(raw_count(&store, "links").await, 6_000);
    let top = store
        .top_links(&ws(), &AggregateOptions::default())
        .await
        .unwrap();
    assert_eq!(top[0].count, 6_000);
}
on_both!(large_batches, large_batches_are_chunked);

/// `apply` finds stored messages by a range scan per channel, falling back to key lookups when a
/// range holds many stored rows that are not in the batch: both paths must see every stored key.
async fn stored_messages_are_found_among_many(db: &Db) {
    let store = setup(db).await;
    let mut b = WriteBatch::new(ws());
    for i in 1..=100 {
        let mut m = record("C1", &format!("{i}.0"), "U1", Some("v2"));
        m.meta.edited = Some(Ts::new("5.0").unwrap());
        b.messages.push(m);
    }
    for ts in ["10.0", "11.0", "12.0"] {
        b.messages.push(record("C2", ts, "U1", Some("same")));
    }
    b.message_deletes.push(key("C1", "2.0"));
    store.apply(b).await.unwrap();

    // C1: "1.0" … "50.5" spans far more stored rows than the batch has keys (the fallback).
    // C2: "10.0" … "12.5" spans one stored row not in the batch (the range scan).
    let mut b = WriteBatch::new(ws());
    b.messages.push(record("C1", "1.0", "U1", Some("v1")));
    b.messages.push(record("C1", "2.0", "U1", Some("back")));
    b.messages.push(record("C1", "50.5", "U1", Some("new")));
    b.messages.push(record("C2", "10.0", "U1", Some("same")));
    b.messages.push(record("C2", "12.5", "U1", Some("new")));
    let r = store.apply(b).await.unwrap();
    assert_eq!(r.messages_stale, 1, "the stored edit of C1/1.0 wins");
    assert_eq!(r.messages_deleted_before, 1, "C1/2.0 stays deleted");
    assert_eq!(r.messages_written, 3);
    assert_eq!(r.outbox_enqueued, 2, "unchanged C2/10.0 enqueues nothing");
    assert_eq!(raw_count(&store, "message_metadata").await, 99 + 3 + 2);
}
on_both!(
    stored_messages_among_many,
    stored_messages_are_found_among_many
);

/// Text with tabs, newlines, carriage returns and backslashes is stored and read back unchanged
/// (PostgreSQL writes new rows with `COPY`, whose text format escapes them).
async fn special_characters_round_trip(db: &Db) {
    let store = setup(db).await;
    let nasty = "a\tb\\N\tc\n \\N \\\\N";
    let text = format!("tab\there\nnew line\r\\ back{nasty}");
    let mut b = WriteBatch::new(ws());
    let mut m = record("C1", "1.0", "U1", Some(&text));
    m.reactions = vec![Reaction {
        name: "back\\slash".into(),
        users: vec![uid("U2")],
        count: 1,
    }];
    m.links = vec![Link {
        url: "https://example.com/a\\b".into(),
        domain: "example.com".into(),
        source: LinkSource::Text,
        title: Some(format!("title\twith\ttabs\nand lines {nasty}")),
    }];
    m.meta.subtype = Some("\\N".into());
    b.messages.push(m.clone());
    store.apply(b).await.unwrap();
    let got = store
        .get_messages(&ws(), &[key("C1", "1.0")])
        .await
        .unwrap();
    assert_eq!(got[0].reactions, m.reactions);
    assert_eq!(got[0].links, m.links);
    assert_eq!(got[0].meta.subtype.as_deref(), Some("\\N"));
    let claimed = store.claim_outbox(&ClaimRequest::default()).await.unwrap();
    match &claimed[0].op {
        chatvault_core::OutboxOp::Upsert { content } => assert_eq!(content.text, text),
        other => panic!("expected an upsert, got {other:?}"),
    }
}
on_both!(special_characters, special_characters_round_trip);

// ----- outbox -----

async fn outbox_fail_dead_letter_requeue(db: &Db) {
    let store = setup(db).await;
    let mut b = WriteBatch::new(ws());
    b.messages.push(record("C1", "1.0", "U1", Some("a")));
    b.messages.push(record("C1", "2.0", "U1", Some("b")));
    store.apply(b).await.unwrap();
    let req = ClaimRequest {
        lease: Duration::from_secs(60),
        ..Default::default()
    };
    let got = store.claim_outbox(&req).await.unwrap();
    assert_eq!(got.len(), 2);
    assert!(got[0].id < got[1].id);
    assert!(
        store.claim_outbox(&req).await.unwrap().is_empty(),
        "leased rows are not handed out twice"
    );
    assert_eq!(store.outbox_stats(None).await.unwrap().leased, 2);
    let policy = RetryPolicy {
        max_attempts: 2,
        ..Default::default()
    };
    let out = store
        .fail_outbox(
            &[
                OutboxFailure {
                    id: got[0].id,
                    error: "timeout".into(),
                    retryable: true,
                },
                OutboxFailure {
                    id: got[1].id,
                    error: "bad".into(),
                    retryable: false,
                },
                OutboxFailure {
                    id: 999_999,
                    error: "x".into(),
                    retryable: true,
                },
            ],
            &policy,
        )
        .await
        .unwrap();
    assert!(matches!(out[0], FailOutcome::Retry { .. }));
    assert_eq!(out[1], FailOutcome::DeadLettered { id: got[1].id });
    assert_eq!(out[2], FailOutcome::Missing { id: 999_999 });
    assert!(
        store.claim_outbox(&req).await.unwrap().is_empty(),
        "waiting for its retry time"
    );
    let dead = store.dead_letters(Some(ws()), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("bad"));
    assert_eq!(
        store.requeue_dead_letters(Some(ws()), None).await.unwrap(),
        1
    );
    let again = store.claim_outbox(&req).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 0);
    store.ack_outbox(&[again[0].id]).await.unwrap();
    let got = store
        .get_messages(&ws(), &[key("C1", "2.0")])
        .await
        .unwrap();
    assert_eq!(got[0].meta.content_id.as_deref(), Some("C1:2.0"));
    // an expired lease makes the row claimable again
    let mut b = WriteBatch::new(ws());
    b.messages.push(record("C1", "3.0", "U1", Some("c")));
    store.apply(b).await.unwrap();
    let short = ClaimRequest {
        lease: Duration::from_millis(1),
        workspace: Some(ws()),
        ..Default::default()
    };
    let first = store.claim_outbox(&short).await.unwrap();
    assert_eq!(first.len(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = store.claim_outbox(&short).await.unwrap();
    assert_eq!(
        second.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![first[0].id]
    );
}
on_both!(outbox_lifecycle, outbox_fail_dead_letter_requeue);

async fn concurrent_claimers_never_share(db: &Db) {
    let store = std::sync::Arc::new(setup(db).await);
    let mut b = WriteBatch::new(ws());
    for i in 0..400 {
        b.messages.push(record(
            &format!("C{}", i % 7),
            &format!("{}.0", 1000 + i),
            "U1",
            Some("x"),
        ));
    }
    store.apply(b).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let req = ClaimRequest {
                    limit: 16,
                    owner: format!("relay-{t}"),
                    ..Default::default()
                };
                let got = store.claim_outbox(&req).await.unwrap();
                if got.is_empty() {
                    break;
                }
                mine.extend(got.iter().map(|e| e.id));
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for t in tasks {
        for id in t.await.unwrap() {
            total += 1;
            assert!(
                seen.insert(id),
                "outbox row {id} was handed to two claimers"
            );
        }
    }
    assert_eq!(total, 400);
}
on_both!(concurrent_claims, concurrent_claimers_never_share);

// ----- installations -----

async fn installations_are_encrypted(db: &Db) {
    let store = setup(db).await;
    let inst = Installation {
        workspace: ws(),
        team: Some(TeamId::new("T1").unwrap()),
        bot_user: Some(uid("B1")),
        bot_token: SecretString::new("xoxb-very-secret-token"),
        scopes: vec!["channels:history".into()],
        installed_at: None,
    };
    store.put_installation(&inst).await.unwrap();
    let got = store.get_installation(&ws(), None).await.unwrap().unwrap();
    assert_eq!(got.bot_token.expose(), "xoxb-very-secret-token");
    assert_eq!(got.scopes, inst.scopes);
    assert!(!format!("{got:?}").contains("xoxb"));
    assert!(!format!("{store:?}").contains("42"));
    // not stored in the clear anywhere in the row
    let c = store.connection();
    let row = c
        .query_one(Statement::from_string(
            c.get_database_backend(),
            "SELECT token_ciphertext FROM installations",
        ))
        .await
        .unwrap()
        .unwrap();
    let ct: Vec<u8> = row.try_get_by_index(0).unwrap();
    assert!(!ct.windows(6).any(|w| w == b"secret"));
    // missing workspace
    let mut other = inst.clone();
    other.workspace = WorkspaceId::new("T404").unwrap();
    assert_eq!(
        store.put_installation(&other).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    drop(store);
    // wrong key: a clear error, no token
    let wrong = db
        .store_with(ConnectOptions {
            token_key: Some(TokenKey::from_bytes([1; 32])),
            ..Default::default()
        })
        .await;
    let e = wrong.get_installation(&ws(), None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend);
    assert!(!e.to_string().contains("xoxb"));
    // no key at all
    let none = db.store_with(ConnectOptions::default()).await;
    assert_eq!(
        none.put_installation(&inst).await.unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}
on_both!(installations, installations_are_encrypted);

async fn delete_workspace_removes_everything(db: &Db) {
    let store = setup(db).await;
    let other = WorkspaceId::new("T2").unwrap();
    store
        .upsert_workspace(&Workspace::new(other.clone(), "Other"))
        .await
        .unwrap();
    let mut b = WriteBatch::new(ws());
    let mut m = record("C1", "1.0", "U1", Some("a"));
    m.links = vec![Link::parse("https://example.com", LinkSource::Text).unwrap()];
    b.messages.push(m);
    store.apply(b).await.unwrap();
    let mut b = WriteBatch::new(other.clone());
    b.messages.push(MessageRecord::new(MessageMeta::new(
        MessageKey::parse("T2", "C1", "1.0").unwrap(),
    )));
    store.apply(b).await.unwrap();
    store.delete_workspace(&ws()).await.unwrap();
    store.delete_workspace(&ws()).await.unwrap();
    assert!(store.get_workspace(&ws()).await.unwrap().is_none());
    assert_eq!(raw_count(&store, "outbox").await, 0);
    assert_eq!(raw_count(&store, "links").await, 0);
    assert_eq!(raw_count(&store, "message_metadata").await, 1);
    assert_eq!(store.list_workspaces().await.unwrap().len(), 1);
}
on_both!(delete_workspace, delete_workspace_removes_everything);
