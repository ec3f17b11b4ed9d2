//! Recall@10 against exact brute force on 20,000 384-d vectors from a seeded mixture of
//! Gaussians, unfiltered and with filters keeping 50%, 5%, 0.5% and 0.05% of the collection.

mod common;

use chatvault_core::{
    ChannelId, CollectionSpec, ContentFilter, ContentStore, MessageKey, SearchOptions,
};
use chatvault_storage_vector::{SearchTuning, VectorStore, VectorStoreOptions};
use common::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;

const N: usize = 20_000;
const DIM: usize = 384;
const QUERIES: usize = 50;
const K: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_at_10_holds_at_every_selectivity() {
    let dir = tempfile::tempdir().unwrap();
    // the default options: what users get
    let store = VectorStore::open(dir.path(), VectorStoreOptions::default()).unwrap();
    let w = ws("T1");
    store
        .create_collection(
            &w,
            &CollectionSpec {
                dimension: DIM,
                model_id: "gmm".into(),
            },
        )
        .await
        .unwrap();
    // 200 centres; noise per dimension comparable to the centres' own spread
    let mut mix = Mixture::new(42, DIM, 200, 0.8);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    // attributes independent of the cluster: a permutation spreads reaction counts 0..2000
    let mut reactions: Vec<u32> = (0..N as u32).map(|i| i % 2000).collect();
    reactions.shuffle(&mut rng);
    let mut docs = Vec::with_capacity(N);
    for (i, &reaction_count) in reactions.iter().enumerate() {
        let mut d = doc(
            key("T1", &format!("C{}", i % 100), i as i64 + 1),
            "chat message",
            mix.sample(),
            1,
        );
        d.content.attributes.reaction_count = reaction_count;
        docs.push(d);
    }
    let t0 = std::time::Instant::now();
    for chunk in docs.chunks(2000) {
        store.upsert(&w, chunk).await.unwrap();
    }
    println!("ingested in {:?}", t0.elapsed());
    store.wait_for_graph(&w).unwrap();
    println!("graph built in {:?}", t0.elapsed());

    let unit: Vec<Vec<f32>> = docs.iter().map(|d| normalized(&d.embedding)).collect();
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| mix.sample()).collect();
    let mut allow: Vec<MessageKey> = docs.iter().map(|d| d.key().clone()).collect();
    allow.shuffle(&mut rng);
    allow.truncate(N / 2000); // 0.05%: 10 keys
    let filters: Vec<(&str, ContentFilter)> = vec![
        ("unfiltered", ContentFilter::default()),
        (
            "50% (channels)",
            ContentFilter {
                channels: Some(
                    (0..50)
                        .map(|c| ChannelId::new(format!("C{c}")).unwrap())
                        .collect(),
                ),
                ..Default::default()
            },
        ),
        (
            "5% (min_reactions)",
            ContentFilter {
                min_reactions: Some(1900),
                ..Default::default()
            },
        ),
        (
            "0.5% (min_reactions)",
            ContentFilter {
                min_reactions: Some(1990),
                ..Default::default()
            },
        ),
        (
            "0.05% (allow-list)",
            ContentFilter {
                keys: Some(allow),
                ..Default::default()
            },
        ),
    ];
    for (name, filter) in filters {
        let candidates: Vec<usize> = (0..N)
            .filter(|&i| filter.matches(docs[i].key(), &docs[i].content.attributes))
            .collect();
        // the default planner, and the filtered graph walk forced at every selectivity
        // (the forced walk is slow at low selectivity, which is why the planner scans instead:
        // it is checked on fewer queries there)
        let walk_queries = if candidates.len() >= N / 2 {
            QUERIES
        } else {
            8
        };
        for (plan, tuning, nq) in [
            ("planner", SearchTuning::default(), QUERIES),
            (
                "graph walk",
                SearchTuning {
                    exact_scan_threshold: Some(0),
                    ef_search: None,
                },
                walk_queries,
            ),
        ] {
            let mut found = 0usize;
            let mut expected = 0usize;
            for q in queries.iter().take(nq) {
                let qn = normalized(q);
                let mut exact: Vec<(f32, usize)> = candidates
                    .iter()
                    .map(|&i| (-dot(&qn, &unit[i]), i))
                    .collect();
                exact.sort_by(|a, b| a.0.total_cmp(&b.0));
                let truth: Vec<&MessageKey> =
                    exact.iter().take(K).map(|(_, i)| docs[*i].key()).collect();
                let opts = SearchOptions::top(K).with_filter(filter.clone());
                let hits = if plan == "planner" {
                    store.search_vector(&w, q, &opts).await.unwrap()
                } else {
                    store.search_vector_tuned(&w, q, &opts, &tuning).unwrap()
                };
                assert!(hits
                    .iter()
                    .all(|h| filter.matches(&h.key, &attrs_of(&docs, &h.key))));
                found += hits.iter().filter(|h| truth.contains(&&h.key)).count();
                expected += truth.len();
            }
            let recall = found as f64 / expected as f64;
            println!(
                "recall@{K} {name}, {plan}: {recall:.4} ({} candidates) at {:?}",
                candidates.len(),
                t0.elapsed()
            );
            assert!(recall >= 0.95, "recall@{K} {name} ({plan}) is {recall:.4}");
        }
    }
}

fn attrs_of(
    docs: &[chatvault_core::ContentDocument],
    key: &MessageKey,
) -> chatvault_core::ContentAttributes {
    let i = (key.ts.as_micros() - 1) as usize;
    assert_eq!(docs[i].key(), key);
    docs[i].content.attributes.clone()
}
