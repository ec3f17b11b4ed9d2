//! Turning text into vectors: the [`Embedder`] trait and the built-in [`HashingEmbedder`].

use async_trait::async_trait;

use crate::error::{Error, Result};

/// Turns texts into embeddings.
///
/// Contract: `embed` returns one vector per input, in input order, each of length
/// [`dimension`](Self::dimension), finite and L2-normalised (so cosine similarity is a dot
/// product). The same text always gives the same vector for a given `model_id`. An empty text is
/// embedded like any other (backends must not fail on it).
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait Embedder: Send + Sync + std::fmt::Debug + 'static {
    /// Identifies the model and its settings: collections record it, and refuse vectors of another.
    fn model_id(&self) -> &str;

    /// The length of every vector.
    fn dimension(&self) -> usize;

    /// How many texts one call should carry at most; callers split larger batches.
    fn max_batch(&self) -> usize {
        64
    }

    /// Embeds `texts`.
    ///
    /// # Errors
    /// `InvalidInput` for input the model cannot take; `Unavailable` (retryable) when a remote
    /// service is down or rate-limited; `Backend` otherwise.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;

    /// Embeds one search query. Search calls this rather than [`embed`](Self::embed): latency
    /// matters more than throughput here, and a backend that runs bulk work (an import's
    /// batches) should answer a query without queueing behind that work. The default calls
    /// `embed` with the one text.
    ///
    /// # Errors
    /// As [`embed`](Self::embed); `Backend` if the backend returns other than one vector.
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        one_vector(self.embed(&[query.to_owned()]).await?)
    }
}

/// The single vector of a one-text embedding, or a `Backend` error saying what came back.
pub(crate) fn one_vector(vectors: Vec<Vec<f32>>) -> Result<Vec<f32>> {
    let n = vectors.len();
    match <[Vec<f32>; 1]>::try_from(vectors) {
        Ok([v]) => Ok(v),
        Err(_) => Err(Error::backend_error(format!(
            "the embedder returned {n} vectors for one query"
        ))),
    }
}

/// A deterministic embedder with no model: feature hashing of lowercased words and character
/// trigrams into `dimension` buckets (signed), L2-normalised.
///
/// Texts that share words land near each other, so it is good enough for tests, examples and a
/// first run without model files — but it knows no synonyms. Use a real model for quality.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dimension: usize,
    model_id: String,
}

impl HashingEmbedder {
    /// A hashing embedder with `dimension` buckets.
    ///
    /// # Errors
    /// `InvalidInput` if `dimension` is 0.
    pub fn new(dimension: usize) -> Result<Self> {
        if dimension == 0 {
            return Err(Error::invalid_input(
                "embedding dimension must be at least 1",
            ));
        }
        Ok(HashingEmbedder {
            dimension,
            model_id: format!("chatvault-hashing-v1-{dimension}"),
        })
    }

    /// Embeds one text synchronously.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dimension];
        let lower = text.to_lowercase();
        let mut add = |feature: &[u8], weight: f32| {
            let h = blake3::hash(feature);
            let b = h.as_bytes();
            let idx =
                u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")) as usize % self.dimension;
            let sign = if b[8] & 1 == 0 { 1.0 } else { -1.0 };
            v[idx] += sign * weight;
        };
        for word in lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            add(word.as_bytes(), 1.0);
            let chars: Vec<char> = format!("#{word}#").chars().collect();
            for tri in chars.windows(3) {
                let s: String = tri.iter().collect();
                add(s.as_bytes(), 0.3);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        } else {
            // An empty text still gets a valid unit vector.
            v[0] = 1.0;
        }
        v
    }
}

#[async_trait]
impl Embedder for HashingEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn max_batch(&self) -> usize {
        1024
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_is_deterministic_normalised_and_topical() {
        let e = HashingEmbedder::new(256).unwrap();
        let a = e.embed_one("The deploy failed on staging");
        assert_eq!(a, e.embed_one("The deploy failed on staging"));
        let n: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5);
        let b = e.embed_one("staging deploy failed again");
        let c = e.embed_one("lunch at noon, anyone?");
        assert!(cosine(&a, &b) > cosine(&a, &c));
        assert_eq!(e.embed_one("").len(), 256);
        assert!(HashingEmbedder::new(0).is_err());
    }
}
