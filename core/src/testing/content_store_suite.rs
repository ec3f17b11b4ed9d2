//! The [`ContentStore`] conformance suite.
//!
//! A backend's test calls [`run_all`] with a factory that returns a fresh, empty store; each case
//! gets its own. Every case is also a public function. Cases that need vector or lexical search
//! say so and are skipped when [`capabilities`](ContentStore::capabilities) lacks it.
//!
//! ```
//! use std::sync::Arc;
//! use chatvault_core::testing::{content_store_suite, MemoryContentStore};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! content_store_suite::versioning(Arc::new(MemoryContentStore::new())).await;
//! # }
//! ```

// Assertions compare with literal arrays (`[key.clone()]`): clearer than slice tricks.
#![allow(clippy::cloned_ref_to_slice_refs)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use super::fixtures::{at, key, ts, unicode_texts, user, ws};
use crate::{
    cosine, ChannelId, ChannelKind, CollectionSpec, ContentAttributes, ContentDelete,
    ContentDocument, ContentFilter, ContentStore, ErrorKind, IndexContext, MessageContent,
    MessageKey, PageRequest, Result, ScoredKey, SearchOptions, TimeRange, WorkspaceId,
};

type Store = Arc<dyn ContentStore>;

/// The embedding dimension the suite's collections use.
pub const DIM: usize = 8;
/// The model id the suite's collections use.
pub const MODEL: &str = "suite-model";

/// The names of every case, in the order [`run_all`] runs them.
pub const CASES: &[&str] = &[
    "create_collection_is_idempotent_and_conflicts",
    "missing_collection_is_not_found",
    "empty_batches",
    "upsert_get_round_trip",
    "unicode_and_long_texts_round_trip",
    "versioning",
    "delete_of_missing_key_leaves_tombstone",
    "same_key_twice_in_a_batch",
    "batch_is_atomic_on_bad_document",
    "workspaces_are_isolated",
    "vector_search_exact_top_k",
    "vector_search_rejects_bad_queries",
    "lexical_search_bm25_relevance",
    "lexical_search_unicode_and_case",
    "search_skips_deleted_and_sees_updates",
    "ties_are_ordered_by_key",
    "filter_every_field",
    "filter_selectivities",
    "list_versions_pages_by_key",
    "context_is_kept_and_searched",
    "index_version_is_recorded",
    "drop_collection",
];

/// Runs every case, each on a fresh store from `new_store`.
pub async fn run_all<F, Fut>(new_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ContentStore>>,
{
    macro_rules! run {
        ($($case:ident),* $(,)?) => {{
            let names: &[&str] = &[$(stringify!($case)),*];
            assert_eq!(names, CASES, "CASES lists every case in run order");
            $(
                eprintln!("content_store_suite::{}", stringify!($case));
                $case(new_store().await).await;
            )*
        }};
    }
    run!(
        create_collection_is_idempotent_and_conflicts,
        missing_collection_is_not_found,
        empty_batches,
        upsert_get_round_trip,
        unicode_and_long_texts_round_trip,
        versioning,
        delete_of_missing_key_leaves_tombstone,
        same_key_twice_in_a_batch,
        batch_is_atomic_on_bad_document,
        workspaces_are_isolated,
        vector_search_exact_top_k,
        vector_search_rejects_bad_queries,
        lexical_search_bm25_relevance,
        lexical_search_unicode_and_case,
        search_skips_deleted_and_sees_updates,
        ties_are_ordered_by_key,
        filter_every_field,
        filter_selectivities,
        list_versions_pages_by_key,
        context_is_kept_and_searched,
        index_version_is_recorded,
        drop_collection,
    );
}

// ----- helpers -----

fn ok<T>(r: Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

fn expect_err<T: std::fmt::Debug>(r: Result<T>, kind: ErrorKind, what: &str) -> crate::Error {
    match r {
        Ok(v) => panic!("{what}: expected a {kind} error, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: wrong error kind: {e}");
            e
        }
    }
}

fn spec() -> CollectionSpec {
    CollectionSpec {
        dimension: DIM,
        model_id: MODEL.into(),
    }
}

async fn collection(store: &Store, id: &str) -> WorkspaceId {
    let w = ws(id);
    ok(
        store.create_collection(&w, &spec()).await,
        "create_collection",
    );
    w
}

fn attrs(author: Option<&str>) -> ContentAttributes {
    ContentAttributes {
        user: author.map(user),
        thread_ts: None,
        is_reply: false,
        has_files: false,
        has_links: false,
        reaction_count: 0,
        visibility: ChannelKind::Public,
    }
}

fn doc(k: &MessageKey, text: &str, embedding: Vec<f32>, version: u64) -> ContentDocument {
    ContentDocument {
        content: MessageContent {
            context: Default::default(),
            key: k.clone(),
            text: text.into(),
            attributes: attrs(Some("U1")),
        },
        embedding,
        version,
    }
}

/// A deterministic pseudo-random unit vector.
fn pseudo_vec(seed: u64, dim: usize) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|a| *a /= n);
    v
}

fn unit(i: usize) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[i % DIM] = 1.0;
    v
}

fn keys_of(hits: &[ScoredKey]) -> Vec<MessageKey> {
    hits.iter().map(|h| h.key.clone()).collect()
}

fn check_sorted(hits: &[ScoredKey], what: &str) {
    for w in hits.windows(2) {
        assert!(
            w[0].score > w[1].score || (w[0].score == w[1].score && w[0].key < w[1].key),
            "{what}: hits not ordered by score desc, then key: {hits:?}"
        );
    }
}

/// A document's context is stored beside its text: `get` returns both as written (the text
/// without the context), lexical search finds the document by a word that only its context
/// holds, and the content hash (reconcile's) ignores the context. A later write without context
/// drops it.
pub async fn context_is_kept_and_searched(store: Store) {
    let w = collection(&store, "T1").await;
    let k1 = key("T1", "C1", "1.0");
    let k2 = key("T1", "C1", "2.0");
    let mut d1 = doc(&k1, "the deploy failed again", unit(0), 1);
    d1.content.context = IndexContext {
        author: Some("Zebulon Quartermaine".into()),
        channel: Some("ops-alerts".into()),
    };
    let d2 = doc(&k2, "deploy worked for me", unit(1), 1);
    ok(store.upsert(&w, &[d1.clone(), d2.clone()]).await, "upsert");
    let got = ok(store.get(&w, &[k1.clone(), k2.clone()]).await, "get");
    assert_eq!(got, [d1.clone(), d2.clone()], "text and context round-trip");
    assert_eq!(got[0].content.text, "the deploy failed again");
    if store.capabilities().lexical_search {
        let hits = ok(
            store
                .search_lexical(&w, "quartermaine", &SearchOptions::top(10))
                .await,
            "search_lexical(author)",
        );
        assert_eq!(
            keys_of(&hits),
            [k1.clone()],
            "the author's name is searchable"
        );
        let hits = ok(
            store
                .search_lexical(&w, "deploy", &SearchOptions::top(10))
                .await,
            "search_lexical(deploy)",
        );
        assert_eq!(hits.len(), 2, "the text stays searchable: {hits:?}");
    }
    let versions = ok(
        store.list_versions(&w, &PageRequest::default()).await,
        "list_versions",
    );
    assert_eq!(versions[0].content_hash, d1.content.content_hash());
    let mut plain = d1.clone();
    plain.content.context = IndexContext::default();
    assert_eq!(
        d1.content.content_hash(),
        plain.content.content_hash(),
        "the content hash does not cover the context"
    );
    plain.version = 2;
    ok(
        store.upsert(&w, &[plain.clone()]).await,
        "upsert without context",
    );
    let got = ok(store.get(&w, &[k1.clone()]).await, "get");
    assert_eq!(got, [plain], "a write without context drops it");
    if store.capabilities().lexical_search {
        let hits = ok(
            store
                .search_lexical(&w, "quartermaine", &SearchOptions::top(10))
                .await,
            "search_lexical(author) after",
        );
        assert!(
            hits.is_empty(),
            "the old context is not searchable: {hits:?}"
        );
    }
}

/// A new collection reports index version 0; `set_index_version` records a version that
/// `collection_info` and `list_collections` then report; a missing collection is `NotFound`.
pub async fn index_version_is_recorded(store: Store) {
    let w = collection(&store, "T1").await;
    let info = ok(store.collection_info(&w).await, "collection_info").expect("collection");
    assert_eq!(info.index_version, 0, "a new collection has version 0");
    ok(store.set_index_version(&w, 3).await, "set_index_version");
    let info = ok(store.collection_info(&w).await, "collection_info").expect("collection");
    assert_eq!(info.index_version, 3);
    let all = ok(store.list_collections().await, "list_collections");
    assert_eq!(all.iter().map(|c| c.index_version).collect::<Vec<_>>(), [3]);
    ok(
        store
            .upsert(&w, &[doc(&key("T1", "C1", "1.0"), "hello", unit(0), 1)])
            .await,
        "upsert",
    );
    let info = ok(store.collection_info(&w).await, "collection_info").expect("collection");
    assert_eq!(
        (info.index_version, info.documents),
        (3, 1),
        "writes keep the version"
    );
    expect_err(
        store.set_index_version(&ws("T9"), 1).await,
        ErrorKind::NotFound,
        "set_index_version on a missing collection",
    );
}

/// Brute-force reference: the top `k` by cosine among `docs` passing `filter`, ties by key.
fn exact_top_k(
    docs: &[ContentDocument],
    query: &[f32],
    filter: &ContentFilter,
    k: usize,
) -> Vec<MessageKey> {
    let mut scored: Vec<(f32, MessageKey)> = docs
        .iter()
        .filter(|d| filter.matches(d.key(), &d.content.attributes))
        .map(|d| (cosine(query, &d.embedding), d.key().clone()))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, k)| k).collect()
}

async fn get_keys(store: &Store, w: &WorkspaceId, keys: &[MessageKey]) -> Vec<MessageKey> {
    ok(store.get(w, keys).await, "get")
        .into_iter()
        .map(|d| d.content.key)
        .collect()
}

// ----- cases -----

/// `create_collection`: idempotent with the same spec, `Conflict` on another dimension or model,
/// `InvalidInput` for dimension 0; info and listing reflect it.
pub async fn create_collection_is_idempotent_and_conflicts(store: Store) {
    let b = collection(&store, "TB").await;
    let a = collection(&store, "TA").await;
    ok(
        store.create_collection(&a, &spec()).await,
        "create_collection again (same spec)",
    );
    let other_dim = CollectionSpec {
        dimension: DIM + 1,
        model_id: MODEL.into(),
    };
    expect_err(
        store.create_collection(&a, &other_dim).await,
        ErrorKind::Conflict,
        "create_collection with another dimension",
    );
    let other_model = CollectionSpec {
        dimension: DIM,
        model_id: "other-model".into(),
    };
    expect_err(
        store.create_collection(&a, &other_model).await,
        ErrorKind::Conflict,
        "create_collection with another model",
    );
    let zero = CollectionSpec {
        dimension: 0,
        model_id: MODEL.into(),
    };
    expect_err(
        store.create_collection(&ws("TZ"), &zero).await,
        ErrorKind::InvalidInput,
        "create_collection with dimension 0",
    );
    assert!(ok(store.collection_info(&ws("TZ")).await, "collection_info").is_none());
    let info = ok(store.collection_info(&a).await, "collection_info").expect("TA has a collection");
    assert_eq!(
        (info.workspace.clone(), info.spec.clone(), info.documents),
        (a.clone(), spec(), 0)
    );
    let list: Vec<_> = ok(store.list_collections().await, "list_collections")
        .into_iter()
        .map(|c| c.workspace)
        .collect();
    assert_eq!(list, [a, b], "list_collections is ordered by workspace");
}

/// Every data method on a workspace without a collection is `NotFound`.
pub async fn missing_collection_is_not_found(store: Store) {
    let w = ws("TNONE");
    let k = key("TNONE", "C1", "1.0");
    expect_err(
        store.upsert(&w, &[doc(&k, "x", unit(0), 1)]).await,
        ErrorKind::NotFound,
        "upsert",
    );
    expect_err(
        store
            .delete(
                &w,
                &[ContentDelete {
                    key: k.clone(),
                    version: 1,
                }],
            )
            .await,
        ErrorKind::NotFound,
        "delete",
    );
    expect_err(
        store.get(&w, std::slice::from_ref(&k)).await,
        ErrorKind::NotFound,
        "get",
    );
    expect_err(
        store.list_versions(&w, &PageRequest::default()).await,
        ErrorKind::NotFound,
        "list_versions",
    );
    let caps = store.capabilities();
    if caps.vector_search {
        expect_err(
            store
                .search_vector(&w, &unit(0), &SearchOptions::top(5))
                .await,
            ErrorKind::NotFound,
            "search_vector",
        );
    }
    if caps.lexical_search {
        expect_err(
            store.search_lexical(&w, "x", &SearchOptions::top(5)).await,
            ErrorKind::NotFound,
            "search_lexical",
        );
    }
    ok(
        store.drop_collection(&w).await,
        "drop_collection of a missing collection",
    );
}

/// Empty upserts, deletes and gets succeed and change nothing.
pub async fn empty_batches(store: Store) {
    let w = collection(&store, "T1").await;
    let out = ok(store.upsert(&w, &[]).await, "upsert(empty)");
    assert_eq!((out.applied, out.stale), (0, 0));
    let out = ok(store.delete(&w, &[]).await, "delete(empty)");
    assert_eq!((out.applied, out.stale), (0, 0));
    assert!(ok(store.get(&w, &[]).await, "get(empty)").is_empty());
    assert!(ok(
        store.list_versions(&w, &PageRequest::default()).await,
        "list_versions"
    )
    .is_empty());
    assert_eq!(
        ok(store.collection_info(&w).await, "info").map(|i| i.documents),
        Some(0)
    );
    if store.capabilities().vector_search {
        assert!(ok(
            store
                .search_vector(&w, &unit(0), &SearchOptions::top(5))
                .await,
            "search_vector"
        )
        .is_empty());
    }
    if store.capabilities().lexical_search {
        assert!(ok(
            store
                .search_lexical(&w, "anything", &SearchOptions::top(5))
                .await,
            "search_lexical"
        )
        .is_empty());
    }
}

/// `get` returns live documents as written, in the order of the keys, skipping missing ones.
pub async fn upsert_get_round_trip(store: Store) {
    let w = collection(&store, "T1").await;
    let mut docs = Vec::new();
    for i in 0..5 {
        let k = key("T1", "C1", &format!("{}.0", i + 1));
        let mut d = doc(
            &k,
            &format!("message number {i}"),
            pseudo_vec(i, DIM),
            10 + i,
        );
        d.content.attributes = ContentAttributes {
            user: Some(user("U2")),
            thread_ts: Some(ts("1.0")),
            is_reply: i > 0,
            has_files: i % 2 == 0,
            has_links: i % 3 == 0,
            reaction_count: i as u32,
            visibility: if i == 4 {
                ChannelKind::Mpim
            } else {
                ChannelKind::Public
            },
        };
        docs.push(d);
    }
    let out = ok(store.upsert(&w, &docs).await, "upsert");
    assert_eq!((out.applied, out.stale), (5, 0));
    let want = [
        docs[3].key().clone(),
        key("T1", "C1", "99.0"),
        docs[0].key().clone(),
        docs[4].key().clone(),
    ];
    let got = ok(store.get(&w, &want).await, "get");
    assert_eq!(got.len(), 3, "missing keys are left out");
    for (g, d) in got.iter().zip([&docs[3], &docs[0], &docs[4]]) {
        assert_eq!(g.content, d.content, "content of {} round-trips", d.key());
        assert_eq!(g.version, d.version, "version of {}", d.key());
        assert_eq!(g.embedding.len(), DIM);
        for (x, y) in g.embedding.iter().zip(&d.embedding) {
            assert!((x - y).abs() < 1e-5, "embedding of {} round-trips", d.key());
        }
    }
    assert_eq!(
        ok(store.collection_info(&w).await, "info").map(|i| i.documents),
        Some(5)
    );
    expect_err(
        store.get(&w, &[key("T2", "C1", "1.0")]).await,
        ErrorKind::InvalidInput,
        "get with a key of another workspace",
    );
}

/// Emoji, CJK, right-to-left and 40 KB texts come back byte for byte.
pub async fn unicode_and_long_texts_round_trip(store: Store) {
    let w = collection(&store, "T1").await;
    let texts = unicode_texts();
    let docs: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            doc(
                &key("T1", "C1", &format!("{}.0", i + 1)),
                t,
                pseudo_vec(i as u64, DIM),
                1,
            )
        })
        .collect();
    ok(store.upsert(&w, &docs).await, "upsert");
    let keys: Vec<_> = docs.iter().map(|d| d.key().clone()).collect();
    let got = ok(store.get(&w, &keys).await, "get");
    assert_eq!(got.len(), texts.len());
    for (g, t) in got.iter().zip(&texts) {
        assert_eq!(&g.content.text, t, "text of {} round-trips", g.key());
    }
}

/// Versions: same or lower is stale, higher applies; a delete's tombstone blocks older upserts
/// and a newer upsert revives the key.
pub async fn versioning(store: Store) {
    let w = collection(&store, "T1").await;
    let k = key("T1", "C1", "1.0");
    let text_of = |store: Store, w: WorkspaceId, k: MessageKey| async move {
        ok(store.get(&w, &[k]).await, "get")
            .pop()
            .map(|d| (d.content.text, d.version))
    };
    let out = ok(
        store.upsert(&w, &[doc(&k, "v5", unit(0), 5)]).await,
        "upsert v5",
    );
    assert_eq!((out.applied, out.stale), (1, 0));
    let out = ok(
        store.upsert(&w, &[doc(&k, "v5 again", unit(1), 5)]).await,
        "upsert v5 again",
    );
    assert_eq!((out.applied, out.stale), (0, 1), "same version is stale");
    let out = ok(
        store.upsert(&w, &[doc(&k, "v3", unit(1), 3)]).await,
        "upsert v3",
    );
    assert_eq!((out.applied, out.stale), (0, 1), "lower version is stale");
    assert_eq!(
        text_of(store.clone(), w.clone(), k.clone()).await,
        Some(("v5".into(), 5))
    );
    let out = ok(
        store.upsert(&w, &[doc(&k, "v7", unit(2), 7)]).await,
        "upsert v7",
    );
    assert_eq!((out.applied, out.stale), (1, 0));
    assert_eq!(
        text_of(store.clone(), w.clone(), k.clone()).await,
        Some(("v7".into(), 7))
    );
    let out = ok(
        store
            .delete(
                &w,
                &[ContentDelete {
                    key: k.clone(),
                    version: 6,
                }],
            )
            .await,
        "delete v6",
    );
    assert_eq!((out.applied, out.stale), (0, 1), "an older delete is stale");
    assert!(text_of(store.clone(), w.clone(), k.clone()).await.is_some());
    let out = ok(
        store
            .delete(
                &w,
                &[ContentDelete {
                    key: k.clone(),
                    version: 9,
                }],
            )
            .await,
        "delete v9",
    );
    assert_eq!((out.applied, out.stale), (1, 0));
    assert!(
        text_of(store.clone(), w.clone(), k.clone()).await.is_none(),
        "deleted"
    );
    assert_eq!(
        ok(store.collection_info(&w).await, "info").map(|i| i.documents),
        Some(0),
        "tombstones are not documents"
    );
    let out = ok(
        store
            .delete(
                &w,
                &[ContentDelete {
                    key: k.clone(),
                    version: 9,
                }],
            )
            .await,
        "delete v9 again",
    );
    assert_eq!(
        (out.applied, out.stale),
        (0, 1),
        "a redelivered delete is stale"
    );
    let out = ok(
        store.upsert(&w, &[doc(&k, "v8 late", unit(3), 8)]).await,
        "late upsert v8",
    );
    assert_eq!(
        (out.applied, out.stale),
        (0, 1),
        "the tombstone blocks an older upsert"
    );
    assert!(
        text_of(store.clone(), w.clone(), k.clone()).await.is_none(),
        "not resurrected"
    );
    let out = ok(
        store.upsert(&w, &[doc(&k, "v10", unit(4), 10)]).await,
        "upsert v10",
    );
    assert_eq!(
        (out.applied, out.stale),
        (1, 0),
        "a newer upsert after a delete applies"
    );
    assert_eq!(
        text_of(store.clone(), w.clone(), k.clone()).await,
        Some(("v10".into(), 10))
    );
    assert!(ok(
        store.list_versions(&w, &PageRequest::default()).await,
        "list_versions"
    )
    .iter()
    .any(|v| v.key == k && v.version == 10));
}

/// Deleting a key never stored records a tombstone at that version.
pub async fn delete_of_missing_key_leaves_tombstone(store: Store) {
    let w = collection(&store, "T1").await;
    let k = key("T1", "C1", "1.0");
    let out = ok(
        store
            .delete(
                &w,
                &[ContentDelete {
                    key: k.clone(),
                    version: 10,
                }],
            )
            .await,
        "delete of a missing key",
    );
    assert_eq!(
        (out.applied, out.stale),
        (1, 0),
        "a delete of a key never stored counts as applied"
    );
    let out = ok(
        store.upsert(&w, &[doc(&k, "old", unit(0), 5)]).await,
        "older upsert",
    );
    assert_eq!((out.applied, out.stale), (0, 1));
    assert!(ok(store.get(&w, std::slice::from_ref(&k)).await, "get").is_empty());
    let out = ok(
        store.upsert(&w, &[doc(&k, "new", unit(0), 11)]).await,
        "newer upsert",
    );
    assert_eq!(out.applied, 1);
    assert_eq!(get_keys(&store, &w, std::slice::from_ref(&k)).await, [k]);
}

/// The same key twice in one batch: the higher version wins, whatever the order.
pub async fn same_key_twice_in_a_batch(store: Store) {
    let w = collection(&store, "T1").await;
    let k1 = key("T1", "C1", "1.0");
    let k2 = key("T1", "C1", "2.0");
    let out = ok(
        store
            .upsert(
                &w,
                &[
                    doc(&k1, "k1 v2", unit(0), 2),
                    doc(&k1, "k1 v1", unit(1), 1),
                    doc(&k2, "k2 v1", unit(0), 1),
                    doc(&k2, "k2 v3", unit(1), 3),
                ],
            )
            .await,
        "upsert",
    );
    assert_eq!(
        out.applied + out.stale,
        4,
        "every change is applied or stale: {out:?}"
    );
    let got = ok(store.get(&w, &[k1, k2]).await, "get");
    let got: Vec<_> = got
        .into_iter()
        .map(|d| (d.content.text, d.version))
        .collect();
    assert_eq!(
        got,
        [("k1 v2".to_string(), 2), ("k2 v3".to_string(), 3)],
        "the higher version wins"
    );
}

/// A bad document anywhere in a batch (wrong dimension, NaN, infinite, another workspace's key):
/// `InvalidInput` naming the key, and nothing of the batch is written.
pub async fn batch_is_atomic_on_bad_document(store: Store) {
    let w = collection(&store, "T1").await;
    let good = key("T1", "C1", "1.0");
    let bad = key("T1", "C7", "7.000007");
    let mut nan = unit(0);
    nan[3] = f32::NAN;
    let mut inf = unit(0);
    inf[0] = f32::INFINITY;
    let variants: Vec<(&str, ContentDocument)> = vec![
        ("wrong dimension", doc(&bad, "bad", vec![0.5; DIM + 3], 1)),
        ("NaN", doc(&bad, "bad", nan, 1)),
        ("infinite value", doc(&bad, "bad", inf, 1)),
        (
            "key of another workspace",
            doc(&key("T2", "C7", "7.000007"), "bad", unit(0), 1),
        ),
        (
            "oversized text",
            doc(&bad, &"x".repeat(crate::MAX_TEXT_BYTES + 1), unit(0), 1),
        ),
        ("empty text", doc(&bad, "", unit(0), 1)),
        ("whitespace-only text", doc(&bad, " \n\t ", unit(0), 1)),
    ];
    for (what, bad_doc) in variants {
        let batch = [
            doc(&good, "good", unit(0), 1),
            bad_doc,
            doc(&key("T1", "C1", "2.0"), "good", unit(1), 1),
        ];
        let e = expect_err(
            store.upsert(&w, &batch).await,
            ErrorKind::InvalidInput,
            &format!("upsert with a document with {what}"),
        );
        let shown = e.to_string();
        assert!(
            shown.contains("C7") && shown.contains("7.000007"),
            "the error for {what} names the key: {shown}"
        );
        assert!(
            get_keys(&store, &w, &[good.clone(), key("T1", "C1", "2.0")])
                .await
                .is_empty(),
            "{what}: part of a rejected batch was written"
        );
        assert_eq!(
            ok(store.collection_info(&w).await, "info").map(|i| i.documents),
            Some(0),
            "{what}"
        );
    }
    let e = expect_err(
        store
            .delete(
                &w,
                &[
                    ContentDelete {
                        key: good.clone(),
                        version: 5,
                    },
                    ContentDelete {
                        key: key("T2", "C1", "1.0"),
                        version: 5,
                    },
                ],
            )
            .await,
        ErrorKind::InvalidInput,
        "delete with a key of another workspace",
    );
    assert!(
        e.to_string().contains("T2"),
        "the error names the foreign key: {e}"
    );
    // The rejected delete left no tombstone: a version-1 upsert still applies.
    let out = ok(
        store.upsert(&w, &[doc(&good, "good", unit(0), 1)]).await,
        "upsert after rejected delete",
    );
    assert_eq!(out.applied, 1, "a rejected delete batch wrote a tombstone");
}

/// Two workspaces with the same keys: every read sees only its own documents.
pub async fn workspaces_are_isolated(store: Store) {
    let a = collection(&store, "TA").await;
    let b = collection(&store, "TB").await;
    let ka = key("TA", "C1", "1.0");
    let kb = key("TB", "C1", "1.0");
    ok(
        store
            .upsert(&a, &[doc(&ka, "apple pie recipe", unit(0), 1)])
            .await,
        "upsert A",
    );
    ok(
        store
            .upsert(
                &b,
                &[
                    doc(&kb, "banana bread recipe", unit(0), 1),
                    doc(&key("TB", "C1", "2.0"), "banana split", unit(1), 1),
                ],
            )
            .await,
        "upsert B",
    );
    let got = ok(store.get(&a, std::slice::from_ref(&ka)).await, "get A");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].content.text, "apple pie recipe");
    expect_err(
        store.get(&a, std::slice::from_ref(&kb)).await,
        ErrorKind::InvalidInput,
        "get(A, key of B)",
    );
    let va = ok(
        store.list_versions(&a, &PageRequest::default()).await,
        "list_versions A",
    );
    assert_eq!(
        va.iter().map(|v| v.key.clone()).collect::<Vec<_>>(),
        [ka.clone()]
    );
    assert_eq!(
        ok(store.collection_info(&a).await, "info").map(|i| i.documents),
        Some(1)
    );
    if store.capabilities().vector_search {
        let hits = ok(
            store
                .search_vector(&a, &unit(0), &SearchOptions::top(10))
                .await,
            "search_vector A",
        );
        assert_eq!(keys_of(&hits), [ka.clone()], "vector search sees only A");
        let f = ContentFilter {
            keys: Some(vec![kb.clone()]),
            ..Default::default()
        };
        let hits = ok(
            store
                .search_vector(&a, &unit(0), &SearchOptions::top(10).with_filter(f))
                .await,
            "search_vector A with B's key",
        );
        assert!(
            hits.is_empty(),
            "an allow-list of B's keys finds nothing in A: {hits:?}"
        );
    }
    if store.capabilities().lexical_search {
        let hits = ok(
            store
                .search_lexical(&a, "banana recipe", &SearchOptions::top(10))
                .await,
            "search_lexical A",
        );
        assert_eq!(keys_of(&hits), [ka.clone()], "lexical search sees only A");
        assert!(ok(
            store
                .search_lexical(&a, "banana", &SearchOptions::top(10))
                .await,
            "search_lexical"
        )
        .is_empty());
    }
    // A delete in A leaves B's document with the same channel and ts alone.
    ok(
        store
            .delete(
                &a,
                &[ContentDelete {
                    key: ka.clone(),
                    version: 2,
                }],
            )
            .await,
        "delete A",
    );
    assert_eq!(
        get_keys(&store, &b, std::slice::from_ref(&kb)).await,
        [kb.clone()]
    );
    ok(store.drop_collection(&a).await, "drop A");
    assert_eq!(
        ok(store.collection_info(&b).await, "info B").map(|i| i.documents),
        Some(2),
        "dropping A leaves B"
    );
}

fn vector_set(w: &str) -> Vec<ContentDocument> {
    (0..30u64)
        .map(|i| {
            doc(
                &key(
                    w,
                    if i % 2 == 0 { "C1" } else { "C2" },
                    &format!("{}.{:06}", 100 + i, i),
                ),
                &format!("doc {i}"),
                pseudo_vec(i + 7, DIM),
                1,
            )
        })
        .collect()
}

/// Vector search on a small set is exact: the brute-force top k, in order, with cosine scores.
pub async fn vector_search_exact_top_k(store: Store) {
    if !store.capabilities().vector_search {
        eprintln!("content_store_suite::vector_search_exact_top_k skipped: no vector search");
        return;
    }
    let w = collection(&store, "T1").await;
    let docs = vector_set("T1");
    ok(store.upsert(&w, &docs).await, "upsert");
    for seed in [1000u64, 1001, 1002] {
        let q = pseudo_vec(seed, DIM);
        for k in [1, 5, 30, 50] {
            let hits = ok(
                store.search_vector(&w, &q, &SearchOptions::top(k)).await,
                "search_vector",
            );
            check_sorted(&hits, "search_vector");
            assert_eq!(
                keys_of(&hits),
                exact_top_k(&docs, &q, &ContentFilter::default(), k),
                "top {k} for query {seed}"
            );
            for h in &hits {
                let d = docs
                    .iter()
                    .find(|d| d.key() == &h.key)
                    .expect("hit is a stored doc");
                let want = cosine(&q, &d.embedding);
                assert!(
                    (h.score - want).abs() < 1e-3,
                    "score of {} is cosine {want}, got {}",
                    h.key,
                    h.score
                );
            }
        }
    }
    assert!(ok(
        store
            .search_vector(&w, &unit(0), &SearchOptions::top(0))
            .await,
        "k = 0"
    )
    .is_empty());
}

/// A query of the wrong dimension or with non-finite values is `InvalidInput`.
pub async fn vector_search_rejects_bad_queries(store: Store) {
    if !store.capabilities().vector_search {
        eprintln!(
            "content_store_suite::vector_search_rejects_bad_queries skipped: no vector search"
        );
        return;
    }
    let w = collection(&store, "T1").await;
    ok(store.upsert(&w, &vector_set("T1")).await, "upsert");
    expect_err(
        store
            .search_vector(&w, &[1.0; DIM - 1], &SearchOptions::top(3))
            .await,
        ErrorKind::InvalidInput,
        "query of the wrong dimension",
    );
    let mut q = unit(0);
    q[1] = f32::NAN;
    expect_err(
        store.search_vector(&w, &q, &SearchOptions::top(3)).await,
        ErrorKind::InvalidInput,
        "query with NaN",
    );
}

/// BM25: a document with more hits of the query term ranks first; documents without any query
/// term are not returned; scores are positive and sorted; an empty query returns nothing.
pub async fn lexical_search_bm25_relevance(store: Store) {
    if !store.capabilities().lexical_search {
        eprintln!("content_store_suite::lexical_search_bm25_relevance skipped: no lexical search");
        return;
    }
    let w = collection(&store, "T1").await;
    let texts = [
        "deploy failed on staging",
        "deploy deploy deploy failed again today",
        "lunch at noon anyone",
        "the database migration is done",
        "staging is down again",
        "coffee machine broken",
    ];
    let docs: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            doc(
                &key("T1", "C1", &format!("{}.0", i + 1)),
                t,
                pseudo_vec(i as u64, DIM),
                1,
            )
        })
        .collect();
    ok(store.upsert(&w, &docs).await, "upsert");
    let k = |i: usize| docs[i].key().clone();
    let hits = ok(
        store
            .search_lexical(&w, "deploy", &SearchOptions::top(10))
            .await,
        "search_lexical(deploy)",
    );
    check_sorted(&hits, "search_lexical");
    assert_eq!(
        keys_of(&hits),
        [k(1), k(0)],
        "the doc with three 'deploy' ranks first; docs without it are not returned"
    );
    assert!(
        hits.iter().all(|h| h.score > 0.0 && h.score.is_finite()),
        "BM25 scores are positive: {hits:?}"
    );
    let hits = ok(
        store
            .search_lexical(&w, "staging migration", &SearchOptions::top(10))
            .await,
        "search_lexical(staging migration)",
    );
    let got: BTreeSet<_> = keys_of(&hits).into_iter().collect();
    assert_eq!(
        got,
        [k(0), k(3), k(4)].into_iter().collect(),
        "any query term matches"
    );
    let hits = ok(
        store
            .search_lexical(&w, "deploy failed staging", &SearchOptions::top(10))
            .await,
        "search_lexical(3 terms)",
    );
    assert_eq!(
        hits.first().map(|h| h.key.clone()),
        Some(k(0)),
        "the doc matching all three terms ranks first: {hits:?}"
    );
    let hits = ok(
        store
            .search_lexical(&w, "again", &SearchOptions::top(1))
            .await,
        "k = 1",
    );
    assert_eq!(hits.len(), 1);
    assert!(ok(
        store.search_lexical(&w, "", &SearchOptions::top(10)).await,
        "empty query"
    )
    .is_empty());
    assert!(ok(
        store
            .search_lexical(&w, "  ,;  ", &SearchOptions::top(10))
            .await,
        "query without words"
    )
    .is_empty());
    assert!(ok(
        store
            .search_lexical(&w, "kubernetes", &SearchOptions::top(10))
            .await,
        "unknown word"
    )
    .is_empty());
    // Inverse document frequency: one hit of a rare word outweighs many of a word in every doc.
    let w2 = collection(&store, "T2").await;
    let texts = [
        "team team team team",
        "rollback plan for the release notes",
        "team lunch",
        "team meeting",
        "team offsite",
        "team sync",
        "team rollback retro",
    ];
    let docs: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            doc(
                &key("T2", "C1", &format!("{}.0", i + 1)),
                t,
                pseudo_vec(i as u64, DIM),
                1,
            )
        })
        .collect();
    ok(store.upsert(&w2, &docs).await, "upsert");
    let hits = ok(
        store
            .search_lexical(&w2, "team rollback", &SearchOptions::top(3))
            .await,
        "search_lexical(team rollback)",
    );
    let top: BTreeSet<_> = keys_of(&hits[..2.min(hits.len())]).into_iter().collect();
    assert_eq!(
        top,
        [docs[1].key().clone(), docs[6].key().clone()]
            .into_iter()
            .collect(),
        "the docs with the rare word 'rollback' rank above 'team team team team' (idf): {hits:?}"
    );
}

/// Lexical matching ignores case and handles CJK, Cyrillic and right-to-left words.
pub async fn lexical_search_unicode_and_case(store: Store) {
    if !store.capabilities().lexical_search {
        eprintln!(
            "content_store_suite::lexical_search_unicode_and_case skipped: no lexical search"
        );
        return;
    }
    let w = collection(&store, "T1").await;
    let texts = [
        "Deploy FAILED 🚀",
        "会議 東京 明日",
        "שלום עולם",
        "Привет мир",
        "naïve café",
    ];
    let docs: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            doc(
                &key("T1", "C1", &format!("{}.0", i + 1)),
                t,
                pseudo_vec(i as u64, DIM),
                1,
            )
        })
        .collect();
    ok(store.upsert(&w, &docs).await, "upsert");
    for (q, i) in [
        ("deploy", 0),
        ("failed", 0),
        ("DePlOy", 0),
        ("東京", 1),
        ("שלום", 2),
        ("ПРИВЕТ", 3),
        ("мир", 3),
        ("café", 4),
    ] {
        let hits = ok(
            store.search_lexical(&w, q, &SearchOptions::top(10)).await,
            "search_lexical",
        );
        assert_eq!(keys_of(&hits), [docs[i].key().clone()], "query {q:?}");
    }
}

/// Searches never return deleted documents and see an update's new text and attributes.
pub async fn search_skips_deleted_and_sees_updates(store: Store) {
    let w = collection(&store, "T1").await;
    let k1 = key("T1", "C1", "1.0");
    let k2 = key("T1", "C1", "2.0");
    ok(
        store
            .upsert(
                &w,
                &[
                    doc(&k1, "alpha release notes", unit(0), 1),
                    doc(&k2, "alpha testing", unit(0), 1),
                ],
            )
            .await,
        "upsert",
    );
    ok(
        store
            .delete(
                &w,
                &[ContentDelete {
                    key: k1.clone(),
                    version: 2,
                }],
            )
            .await,
        "delete",
    );
    let caps = store.capabilities();
    if caps.vector_search {
        let hits = ok(
            store
                .search_vector(&w, &unit(0), &SearchOptions::top(10))
                .await,
            "search_vector",
        );
        assert_eq!(
            keys_of(&hits),
            [k2.clone()],
            "deleted document returned by vector search"
        );
    }
    if caps.lexical_search {
        let hits = ok(
            store
                .search_lexical(&w, "alpha", &SearchOptions::top(10))
                .await,
            "search_lexical",
        );
        assert_eq!(
            keys_of(&hits),
            [k2.clone()],
            "deleted document returned by lexical search"
        );
    }
    let mut updated = doc(&k2, "beta testing", unit(1), 2);
    updated.content.attributes.reaction_count = 4;
    ok(store.upsert(&w, &[updated]).await, "update");
    let f = ContentFilter {
        min_reactions: Some(4),
        ..Default::default()
    };
    if caps.lexical_search {
        assert!(
            ok(
                store
                    .search_lexical(&w, "alpha", &SearchOptions::top(10))
                    .await,
                "old text"
            )
            .is_empty(),
            "old text still indexed"
        );
        let hits = ok(
            store
                .search_lexical(&w, "beta", &SearchOptions::top(10).with_filter(f.clone()))
                .await,
            "new text",
        );
        assert_eq!(
            keys_of(&hits),
            [k2.clone()],
            "new text and attributes searchable"
        );
    }
    if caps.vector_search {
        let hits = ok(
            store
                .search_vector(&w, &unit(1), &SearchOptions::top(1).with_filter(f))
                .await,
            "new embedding",
        );
        assert_eq!(keys_of(&hits), [k2.clone()]);
        assert!(
            (hits[0].score - 1.0).abs() < 1e-3,
            "new embedding used: {hits:?}"
        );
    }
}

/// Equal scores are ordered by key, so results are deterministic.
pub async fn ties_are_ordered_by_key(store: Store) {
    let w = collection(&store, "T1").await;
    // Keys in (channel, ts) order: C1/9.5 < C1/10.0 < C2/1.0.
    let keys = [
        key("T1", "C2", "1.0"),
        key("T1", "C1", "10.0"),
        key("T1", "C1", "9.5"),
    ];
    let docs: Vec<_> = keys
        .iter()
        .map(|k| doc(k, "same words here", unit(2), 1))
        .collect();
    ok(store.upsert(&w, &docs).await, "upsert");
    let expected = [keys[2].clone(), keys[1].clone(), keys[0].clone()];
    if store.capabilities().vector_search {
        let hits = ok(
            store
                .search_vector(&w, &unit(2), &SearchOptions::top(10))
                .await,
            "search_vector",
        );
        assert_eq!(keys_of(&hits), expected, "vector ties ordered by key");
        let hits = ok(
            store
                .search_vector(&w, &unit(2), &SearchOptions::top(2))
                .await,
            "search_vector k=2",
        );
        assert_eq!(
            keys_of(&hits),
            expected[..2].to_vec(),
            "the top 2 of a tie are the first keys"
        );
    }
    if store.capabilities().lexical_search {
        let hits = ok(
            store
                .search_lexical(&w, "words", &SearchOptions::top(10))
                .await,
            "search_lexical",
        );
        assert_eq!(keys_of(&hits), expected, "lexical ties ordered by key");
    }
}

struct FilterSet {
    docs: Vec<ContentDocument>,
}

fn filter_set() -> FilterSet {
    let mk = |ch: &str,
              t: &str,
              author: Option<&str>,
              thread: Option<&str>,
              files: bool,
              links: bool,
              reactions: u32,
              vis: ChannelKind,
              i: usize| {
        let k = key("T1", ch, t);
        let attributes = ContentAttributes {
            user: author.map(user),
            thread_ts: thread.map(ts),
            is_reply: thread.is_some_and(|p| ts(p) != k.ts),
            has_files: files,
            has_links: links,
            reaction_count: reactions,
            visibility: vis,
        };
        ContentDocument {
            content: MessageContent {
                context: Default::default(),
                key: k,
                text: format!("alpha document {i}"),
                attributes,
            },
            embedding: pseudo_vec(i as u64 + 50, DIM),
            version: 1,
        }
    };
    use ChannelKind::*;
    FilterSet {
        docs: vec![
            mk(
                "C1",
                "1.0",
                Some("U1"),
                Some("1.0"),
                false,
                true,
                0,
                Public,
                1,
            ),
            mk(
                "C1",
                "2.0",
                Some("U2"),
                Some("1.0"),
                true,
                false,
                2,
                Public,
                2,
            ),
            mk("C2", "3.0", Some("U1"), None, false, false, 5, Public, 3),
            mk("G1", "4.0", Some("U3"), None, true, false, 1, Private, 4),
            mk("D1", "5.0", Some("U2"), None, false, false, 0, Im, 5),
            mk("C2", "6.0", None, None, false, true, 0, Public, 6),
        ],
    }
}

async fn filtered_keys(
    store: &Store,
    w: &WorkspaceId,
    filter: &ContentFilter,
    what: &str,
) -> Vec<BTreeSet<MessageKey>> {
    let caps = store.capabilities();
    let mut out = Vec::new();
    let opts = SearchOptions::top(100).with_filter(filter.clone());
    if caps.vector_search {
        let hits = ok(store.search_vector(w, &unit(0), &opts).await, what);
        check_sorted(&hits, what);
        out.push(keys_of(&hits).into_iter().collect());
    }
    if caps.lexical_search {
        let hits = ok(store.search_lexical(w, "alpha", &opts).await, what);
        check_sorted(&hits, what);
        out.push(keys_of(&hits).into_iter().collect());
    }
    out
}

/// Every `ContentFilter` field, alone and combined, in vector and lexical search, against
/// hand-computed expectations.
pub async fn filter_every_field(store: Store) {
    let caps = store.capabilities();
    if !caps.full_filters {
        eprintln!("content_store_suite::filter_every_field skipped: the backend does not support every filter");
        return;
    }
    let w = collection(&store, "T1").await;
    let set = filter_set();
    ok(store.upsert(&w, &set.docs).await, "upsert");
    let d = |i: usize| set.docs[i - 1].key().clone();
    let c = |id: &str| ChannelId::new(id).expect("fixture channel id");
    let all = ContentFilter::default();
    let cases: Vec<(&str, ContentFilter, Vec<MessageKey>)> = vec![
        ("no condition", all.clone(), (1..=6).map(d).collect()),
        (
            "keys [d2, d5]",
            ContentFilter {
                keys: Some(vec![d(2), d(5), key("T1", "C9", "9.0")]),
                ..all.clone()
            },
            vec![d(2), d(5)],
        ),
        (
            "keys []",
            ContentFilter {
                keys: Some(vec![]),
                ..all.clone()
            },
            vec![],
        ),
        (
            "channels [C1]",
            ContentFilter {
                channels: Some(vec![c("C1")]),
                ..all.clone()
            },
            vec![d(1), d(2)],
        ),
        (
            "channels []",
            ContentFilter {
                channels: Some(vec![]),
                ..all.clone()
            },
            vec![],
        ),
        (
            "users [U1]",
            ContentFilter {
                users: Some(vec![user("U1")]),
                ..all.clone()
            },
            vec![d(1), d(3)],
        ),
        (
            "time [2.0, 5.0)",
            ContentFilter {
                time: TimeRange::between(at("2.0"), at("5.0")),
                ..all.clone()
            },
            vec![d(2), d(3), d(4)],
        ),
        (
            "time until 2.0",
            ContentFilter {
                time: TimeRange {
                    start: None,
                    end: Some(at("2.0")),
                },
                ..all.clone()
            },
            vec![d(1)],
        ),
        (
            "thread 1.0",
            ContentFilter {
                thread_ts: Some(ts("1.0")),
                ..all.clone()
            },
            vec![d(1), d(2)],
        ),
        (
            "replies",
            ContentFilter {
                is_reply: Some(true),
                ..all.clone()
            },
            vec![d(2)],
        ),
        (
            "not replies",
            ContentFilter {
                is_reply: Some(false),
                ..all.clone()
            },
            vec![d(1), d(3), d(4), d(5), d(6)],
        ),
        (
            "has_files",
            ContentFilter {
                has_files: Some(true),
                ..all.clone()
            },
            vec![d(2), d(4)],
        ),
        (
            "no files",
            ContentFilter {
                has_files: Some(false),
                ..all.clone()
            },
            vec![d(1), d(3), d(5), d(6)],
        ),
        (
            "has_links",
            ContentFilter {
                has_links: Some(true),
                ..all.clone()
            },
            vec![d(1), d(6)],
        ),
        (
            "min_reactions 2",
            ContentFilter {
                min_reactions: Some(2),
                ..all.clone()
            },
            vec![d(2), d(3)],
        ),
        (
            "visibility [private, im]",
            ContentFilter {
                visibility: Some(vec![ChannelKind::Private, ChannelKind::Im]),
                ..all.clone()
            },
            vec![d(4), d(5)],
        ),
        (
            "visibility [public]",
            ContentFilter {
                visibility: Some(vec![ChannelKind::Public]),
                ..all.clone()
            },
            vec![d(1), d(2), d(3), d(6)],
        ),
        (
            "channels [C1, C2] + has_links + keys",
            ContentFilter {
                channels: Some(vec![c("C1"), c("C2")]),
                has_links: Some(true),
                keys: Some(vec![d(6), d(2)]),
                ..all.clone()
            },
            vec![d(6)],
        ),
    ];
    for (what, filter, expected) in cases {
        for (i, got) in filtered_keys(&store, &w, &filter, what)
            .await
            .into_iter()
            .enumerate()
        {
            let expected: BTreeSet<_> = expected.iter().cloned().collect();
            let search = if i == 0 && caps.vector_search {
                "vector"
            } else {
                "lexical"
            };
            assert_eq!(got, expected, "{search} search with filter {what}");
        }
    }
}

/// Filters keeping 1, 10, 50 and 100 % of 200 documents: every hit matches; small candidate sets
/// give the exact top k; large ones a high recall.
pub async fn filter_selectivities(store: Store) {
    let caps = store.capabilities();
    let w = collection(&store, "T1").await;
    let words = ["red", "green", "blue", "amber"];
    let docs: Vec<ContentDocument> = (0..200u64)
        .map(|i| {
            let k = key(
                "T1",
                &format!("C{}", i % 10),
                &format!("{}.{:06}", 1000 + i, i),
            );
            let mut d = doc(
                &k,
                &format!("status {} item {i}", words[(i % 4) as usize]),
                pseudo_vec(i * 3 + 1, DIM),
                1,
            );
            d.content.attributes.reaction_count = (i % 7) as u32;
            d
        })
        .collect();
    ok(store.upsert(&w, &docs).await, "upsert");
    let c = |i: u64| ChannelId::new(format!("C{i}")).expect("fixture channel id");
    let cases: Vec<(&str, ContentFilter)> = vec![
        (
            "2 keys",
            ContentFilter {
                keys: Some(vec![docs[17].key().clone(), docs[123].key().clone()]),
                ..Default::default()
            },
        ),
        (
            "one channel (10 %)",
            ContentFilter {
                channels: Some(vec![c(3)]),
                ..Default::default()
            },
        ),
        (
            "five channels (50 %)",
            ContentFilter {
                channels: Some((0..5).map(c).collect()),
                ..Default::default()
            },
        ),
        (
            "min_reactions 6 (~14 %)",
            ContentFilter {
                min_reactions: Some(6),
                ..Default::default()
            },
        ),
        ("everything", ContentFilter::default()),
    ];
    for (what, filter) in cases {
        let matching: Vec<&ContentDocument> = docs
            .iter()
            .filter(|d| filter.matches(d.key(), &d.content.attributes))
            .collect();
        if caps.vector_search {
            for seed in [7u64, 8] {
                let q = pseudo_vec(seed * 1000, DIM);
                let hits = ok(
                    store
                        .search_vector(&w, &q, &SearchOptions::top(10).with_filter(filter.clone()))
                        .await,
                    "search_vector",
                );
                check_sorted(&hits, what);
                assert!(
                    hits.iter()
                        .all(|h| matching.iter().any(|d| d.key() == &h.key)),
                    "{what}: a vector hit does not match the filter"
                );
                assert_eq!(
                    hits.len(),
                    matching.len().min(10),
                    "{what}: vector search returns min(k, matching) hits"
                );
                let exact = exact_top_k(&docs, &q, &filter, 10);
                if matching.len() <= 20 {
                    assert_eq!(
                        keys_of(&hits),
                        exact,
                        "{what}: few candidates give the exact top k"
                    );
                } else {
                    let found = hits.iter().filter(|h| exact.contains(&h.key)).count();
                    assert!(found >= 8, "{what}: recall@10 is {found}/10");
                }
            }
        }
        if caps.lexical_search {
            let hits = ok(
                store
                    .search_lexical(
                        &w,
                        "blue",
                        &SearchOptions::top(500).with_filter(filter.clone()),
                    )
                    .await,
                "search_lexical",
            );
            check_sorted(&hits, what);
            let expected: BTreeSet<MessageKey> = matching
                .iter()
                .filter(|d| d.content.text.contains("blue"))
                .map(|d| d.key().clone())
                .collect();
            assert_eq!(
                keys_of(&hits).into_iter().collect::<BTreeSet<_>>(),
                expected,
                "{what}: lexical hits are exactly the matching docs with the word"
            );
        }
    }
}

/// `list_versions`: live keys in (channel, ts) order with ts numeric, their versions and content
/// hashes, paged with `after`.
pub async fn list_versions_pages_by_key(store: Store) {
    let w = collection(&store, "T1").await;
    let specs = [
        ("C2", "1.0", 3),
        ("C1", "10.0", 1),
        ("C1", "9.5", 2),
        ("C1", "100.0", 7),
        ("C3", "5.0", 1),
    ];
    let docs: Vec<_> = specs
        .iter()
        .map(|(c, t, v)| doc(&key("T1", c, t), &format!("{c} {t}"), unit(0), *v))
        .collect();
    ok(store.upsert(&w, &docs).await, "upsert");
    ok(
        store
            .delete(
                &w,
                &[ContentDelete {
                    key: key("T1", "C3", "5.0"),
                    version: 2,
                }],
            )
            .await,
        "delete",
    );
    let expected = [
        ("C1", "9.5", 2),
        ("C1", "10.0", 1),
        ("C1", "100.0", 7),
        ("C2", "1.0", 3),
    ];
    let all = ok(
        store.list_versions(&w, &PageRequest::first(100)).await,
        "list_versions",
    );
    let got: Vec<_> = all
        .iter()
        .map(|v| (v.key.channel.to_string(), v.key.ts.to_string(), v.version))
        .collect();
    let want: Vec<_> = expected
        .iter()
        .map(|(c, t, v)| (c.to_string(), t.to_string(), *v as u64))
        .collect();
    assert_eq!(
        got, want,
        "list_versions: live keys by (channel, ts numerically), tombstones left out"
    );
    for v in &all {
        let d = docs
            .iter()
            .find(|d| d.key() == &v.key)
            .expect("listed key was written");
        assert_eq!(
            v.content_hash,
            d.content.content_hash(),
            "content_hash of {}",
            v.key
        );
    }
    for limit in [1, 2, 3] {
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = ok(
                store
                    .list_versions(
                        &w,
                        &PageRequest {
                            after: after.clone(),
                            limit,
                        },
                    )
                    .await,
                "list_versions page",
            );
            assert!(page.len() <= limit);
            if page.is_empty() {
                break;
            }
            after = page.last().map(|v| v.key.clone());
            paged.extend(page);
        }
        assert_eq!(paged, all, "paging with limit {limit}");
    }
}

/// Dropping a collection removes its documents and tombstones; dropping a missing one succeeds.
pub async fn drop_collection(store: Store) {
    let w = collection(&store, "T1").await;
    let k = key("T1", "C1", "1.0");
    ok(
        store.upsert(&w, &[doc(&k, "hello", unit(0), 1)]).await,
        "upsert",
    );
    ok(
        store
            .delete(
                &w,
                &[ContentDelete {
                    key: key("T1", "C1", "2.0"),
                    version: 50,
                }],
            )
            .await,
        "delete",
    );
    ok(store.drop_collection(&w).await, "drop_collection");
    assert!(ok(store.collection_info(&w).await, "collection_info").is_none());
    assert!(ok(store.list_collections().await, "list_collections").is_empty());
    expect_err(
        store.get(&w, std::slice::from_ref(&k)).await,
        ErrorKind::NotFound,
        "get after drop",
    );
    ok(store.drop_collection(&w).await, "drop again");
    let other = CollectionSpec {
        dimension: DIM * 2,
        model_id: "another-model".into(),
    };
    ok(
        store.create_collection(&w, &other).await,
        "re-create with another spec",
    );
    assert!(
        ok(store.get(&w, std::slice::from_ref(&k)).await, "get").is_empty(),
        "old documents are gone"
    );
    let mut d2 = doc(&key("T1", "C1", "2.0"), "back", vec![0.0; DIM * 2], 1);
    d2.embedding[0] = 1.0;
    let out = ok(store.upsert(&w, &[d2]).await, "upsert after re-create");
    assert_eq!(out.applied, 1, "old tombstones are gone");
}
