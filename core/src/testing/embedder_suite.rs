//! The [`Embedder`] conformance suite.
//!
//! ```
//! use chatvault_core::testing::embedder_suite;
//! use chatvault_core::HashingEmbedder;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> chatvault_core::Result<()> {
//! embedder_suite::run_all(&HashingEmbedder::new(64)?).await;
//! # Ok(()) }
//! ```

use super::fixtures;
use crate::{cosine, Embedder, Result};

/// The names of every case, in the order [`run_all`] runs them.
pub const CASES: &[&str] = &[
    "dimension_and_model_id",
    "one_vector_per_input_in_order",
    "unit_norm_and_finite",
    "deterministic",
    "empty_string_and_empty_batch",
    "batch_larger_than_max_batch",
    "unicode_texts",
    "different_texts_differ",
];

/// Runs every case against `embedder`.
pub async fn run_all(embedder: &dyn Embedder) {
    macro_rules! run {
        ($($case:ident),* $(,)?) => {{
            let names: &[&str] = &[$(stringify!($case)),*];
            assert_eq!(names, CASES, "CASES lists every case in run order");
            $(
                eprintln!("embedder_suite::{}", stringify!($case));
                $case(embedder).await;
            )*
        }};
    }
    run!(
        dimension_and_model_id,
        one_vector_per_input_in_order,
        unit_norm_and_finite,
        deterministic,
        empty_string_and_empty_batch,
        batch_larger_than_max_batch,
        unicode_texts,
        different_texts_differ,
    );
}

fn ok<T>(r: Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

async fn embed(e: &dyn Embedder, texts: &[&str]) -> Vec<Vec<f32>> {
    let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    let out = ok(e.embed(&texts).await, "embed");
    assert_eq!(out.len(), texts.len(), "embed returns one vector per input");
    out
}

fn check_vector(v: &[f32], dim: usize, what: &str) {
    assert_eq!(v.len(), dim, "{what}: vector length is the dimension");
    assert!(
        v.iter().all(|x| x.is_finite()),
        "{what}: vector has non-finite values"
    );
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(
        (norm - 1.0).abs() < 1e-3,
        "{what}: vector norm is {norm}, not 1"
    );
}

/// `dimension()` is positive and every vector has it; `model_id()` is not empty.
pub async fn dimension_and_model_id(e: &dyn Embedder) {
    assert!(e.dimension() > 0, "dimension is 0");
    assert!(!e.model_id().trim().is_empty(), "model_id is empty");
    assert!(e.max_batch() > 0, "max_batch is 0");
    let v = embed(e, &["hello world"]).await;
    assert_eq!(v[0].len(), e.dimension());
}

/// One vector per input, in input order: a batch equals the texts embedded one by one.
pub async fn one_vector_per_input_in_order(e: &dyn Embedder) {
    let texts = [
        "the deploy failed",
        "lunch at noon?",
        "quarterly report draft",
        "x",
    ];
    let batch = embed(e, &texts).await;
    for (i, t) in texts.iter().enumerate() {
        let single = embed(e, &[t]).await;
        let sim = cosine(&batch[i], &single[0]);
        assert!(
            sim > 0.999,
            "vector {i} of a batch differs from {t:?} embedded alone (cosine {sim})"
        );
    }
}

/// Every vector is finite and L2-normalised.
pub async fn unit_norm_and_finite(e: &dyn Embedder) {
    let texts = [
        "a",
        "A much longer sentence about databases, indexes and search.",
        "12345",
        "!!!",
    ];
    for (v, t) in embed(e, &texts).await.iter().zip(texts) {
        check_vector(v, e.dimension(), t);
    }
}

/// The same text gives the same vector.
pub async fn deterministic(e: &dyn Embedder) {
    let a = embed(e, &["determinism matters", "second"]).await;
    let b = embed(e, &["determinism matters", "second"]).await;
    for (x, y) in a.iter().zip(&b) {
        assert!(
            cosine(x, y) > 0.9999,
            "the same text gave different vectors"
        );
    }
}

/// An empty string is embedded like any text; an empty batch gives no vectors.
pub async fn empty_string_and_empty_batch(e: &dyn Embedder) {
    let v = embed(e, &[""]).await;
    check_vector(&v[0], e.dimension(), "empty string");
    let v = embed(e, &["", "not empty", ""]).await;
    assert_eq!(v.len(), 3);
    assert!(
        ok(e.embed(&[]).await, "embed(empty batch)").is_empty(),
        "an empty batch gives no vectors"
    );
}

/// A batch of `max_batch() + 1` texts still gives one vector per text.
pub async fn batch_larger_than_max_batch(e: &dyn Embedder) {
    let n = e.max_batch() + 1;
    let texts: Vec<String> = (0..n).map(|i| format!("text number {i}")).collect();
    let out = ok(e.embed(&texts).await, "embed(max_batch + 1 texts)");
    assert_eq!(out.len(), n, "one vector per text for max_batch + 1 texts");
    check_vector(&out[n - 1], e.dimension(), "last text of a large batch");
    let last = embed(e, &[texts[n - 1].as_str()]).await;
    assert!(
        cosine(&out[n - 1], &last[0]) > 0.999,
        "the last text of a large batch kept its place"
    );
}

/// Emoji, CJK, right-to-left and 40 KB texts embed to valid vectors.
pub async fn unicode_texts(e: &dyn Embedder) {
    let texts = fixtures::unicode_texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for (v, t) in embed(e, &refs).await.iter().zip(&texts) {
        check_vector(v, e.dimension(), &t.chars().take(30).collect::<String>());
    }
}

/// Unrelated texts do not get the same vector.
pub async fn different_texts_differ(e: &dyn Embedder) {
    let v = embed(
        e,
        &["the deploy failed on staging", "who wants pizza for lunch"],
    )
    .await;
    let sim = cosine(&v[0], &v[1]);
    assert!(
        sim < 0.99,
        "unrelated texts have nearly identical vectors (cosine {sim})"
    );
}
