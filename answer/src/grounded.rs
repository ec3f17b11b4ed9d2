//! Grounded answers: retrieval, a relevance gate before any model call, generation, and the
//! citation checks after it, in one serializable result.

use chatvault_core::{MessageKey, Result, WorkspaceId};
use chatvault_query::{Answer, Answerer, AskRequest, Passage, QueryEngine, Retrieval};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::citations::check_citations;

/// The answer given, without calling the model, when no passage is relevant enough.
pub const NOT_FOUND: &str = "Not found in the archive.";

/// When retrieval found nothing relevant enough to hand to a model: the best passage's cosine
/// similarity to the question (the semantic ranking's score) must reach `min_semantic_score`.
///
/// RRF scores say nothing about relevance (they depend on ranks only), so the gate reads the
/// embedder's cosine similarity, which is comparable across questions for one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RelevanceGate {
    /// The least best-passage cosine similarity that calls the model; `None` calls it whenever a
    /// passage is found.
    pub min_semantic_score: Option<f32>,
}

impl RelevanceGate {
    /// No threshold: only "no passage at all" is "not found".
    pub const OPEN: RelevanceGate = RelevanceGate {
        min_semantic_score: None,
    };

    /// The threshold measured for an embedder, by its model id (see the crate's README for how
    /// each was measured); unknown models get none.
    pub fn for_embedder(model_id: &str) -> Self {
        let min = if model_id == "sentence-transformers/all-MiniLM-L6-v2" {
            Some(MINILM_MIN_SCORE)
        } else if model_id.starts_with("chatvault-hashing") {
            Some(HASHING_MIN_SCORE)
        } else {
            None
        };
        RelevanceGate {
            min_semantic_score: min,
        }
    }

    /// Whether `retrieval` holds something relevant enough to generate from. A retrieval whose
    /// passages carry no semantic score (a lexical-only backend) passes when it has passages.
    pub fn passes(&self, retrieval: &Retrieval) -> bool {
        if retrieval.passages.is_empty() {
            return false;
        }
        match (self.min_semantic_score, retrieval.best_semantic_score()) {
            (Some(min), Some(best)) => best >= min,
            _ => true,
        }
    }
}

/// all-MiniLM-L6-v2's threshold. Measured by `tests/relevance_gate.rs` on the houstondatavis
/// export (each message indexed with its author's name): the 56 answerable questions of
/// `query/testdata/qa.json` score 0.467 to 0.920, 30 off-topic questions 0.000 to 0.453 (all but
/// one under 0.40). 0.40 lets every answerable
/// question through with a margin for weaker paraphrases and stops 29 of the 30: a question the
/// gate lets through still meets a model told to say when the passages do not answer.
const MINILM_MIN_SCORE: f32 = 0.40;
/// The hashing test embedder's threshold. Its cosine is shared words and trigrams, not meaning:
/// measured as above (with the author's name indexed with each message), answerable questions
/// score 0.249 to 0.720 and off-topic ones 0.000 to 0.542, so it can only stop questions that
/// share almost nothing with the archive.
const HASHING_MIN_SCORE: f32 = 0.22;

/// How a question was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The model answered, citing at least one passage.
    Answered,
    /// The model answered without citing any passage that exists: not grounded in the archive.
    Unsupported,
    /// No passage was relevant enough; the model was not called.
    NotFound,
    /// The model failed (see `error`); the passages are still given.
    ModelFailed,
}

/// A passage the answer cites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Its number in the answer (`[n]`).
    pub citation: usize,
    /// The message.
    pub key: MessageKey,
    /// Its Slack permalink, when the workspace's domain is known.
    pub permalink: Option<String>,
    /// The best link to it (the permalink, else a `slack://` link).
    pub link: String,
    /// `#channel`.
    pub channel: String,
    /// Its author.
    pub author: String,
    /// When it was posted.
    pub time: DateTime<Utc>,
}

impl Source {
    fn of(passage: &Passage) -> Self {
        let m = &passage.hit.message;
        Source {
            citation: passage.citation,
            key: m.key.clone(),
            permalink: m.permalink.clone(),
            link: m.link().to_string(),
            channel: m.channel_label(),
            author: m.author_label(),
            time: m.time,
        }
    }
}

/// What the checks found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checks {
    /// Whether the model was called.
    pub model_called: bool,
    /// Citations of passages that do not exist, removed from the answer.
    pub removed_citations: Vec<usize>,
    /// Whether the answer cites no existing passage.
    pub unsupported: bool,
    /// The best passage's cosine similarity to the question.
    pub best_score: Option<f32>,
    /// The gate's threshold.
    pub min_score: Option<f32>,
}

/// A generated answer with its sources and the outcome of its checks (the body of
/// `POST /api/v1/workspaces/{ws}/ask` when an answerer is configured).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundedAnswer {
    /// The question.
    pub question: String,
    /// How it went.
    pub outcome: Outcome,
    /// The answer after the checks ([`NOT_FOUND`] when not found; empty when the model failed).
    pub answer: String,
    /// The passages the answer cites, in order of first citation.
    pub sources: Vec<Source>,
    /// What the checks found.
    pub checks: Checks,
    /// Why the model failed (names the endpoint and the cause, never a key).
    pub error: Option<String>,
    /// Which answerer generated it.
    pub answerer: Option<String>,
    /// Every passage retrieved, cited or not.
    pub passages: Vec<Passage>,
    /// Set when the search ran with less than asked.
    pub degraded: Option<String>,
}

impl GroundedAnswer {
    fn base(retrieval: Retrieval, gate: &RelevanceGate, outcome: Outcome) -> Self {
        let best_score = retrieval.best_semantic_score();
        GroundedAnswer {
            question: retrieval.question,
            outcome,
            answer: String::new(),
            sources: Vec::new(),
            checks: Checks {
                model_called: false,
                removed_citations: Vec::new(),
                unsupported: false,
                best_score,
                min_score: gate.min_semantic_score,
            },
            error: None,
            answerer: None,
            passages: retrieval.passages,
            degraded: retrieval.degraded,
        }
    }

    /// The "not found" answer: no model call.
    pub fn not_found(retrieval: Retrieval, gate: &RelevanceGate) -> Self {
        let mut a = Self::base(retrieval, gate, Outcome::NotFound);
        a.answer = NOT_FOUND.to_string();
        a
    }

    /// The model failed: the passages, and the error.
    pub fn model_failed(retrieval: Retrieval, gate: &RelevanceGate, error: String) -> Self {
        let mut a = Self::base(retrieval, gate, Outcome::ModelFailed);
        a.checks.model_called = true;
        a.error = Some(error);
        a
    }

    /// Checks a generated answer's citations against the retrieval.
    pub fn checked(retrieval: Retrieval, gate: &RelevanceGate, answer: Answer) -> Self {
        let check = check_citations(&answer.text, retrieval.passages.len());
        let sources: Vec<Source> = check
            .valid
            .iter()
            .filter_map(|n| retrieval.passages.iter().find(|p| p.citation == *n))
            .map(Source::of)
            .collect();
        let unsupported = sources.is_empty();
        let outcome = if unsupported {
            Outcome::Unsupported
        } else {
            Outcome::Answered
        };
        let mut a = Self::base(retrieval, gate, outcome);
        a.answer = check.text;
        a.sources = sources;
        a.answerer = Some(answer.answerer);
        a.checks.model_called = true;
        a.checks.removed_citations = check.removed;
        a.checks.unsupported = unsupported;
        a
    }
}

/// Answers a question from the archive: retrieves passages; when none is relevant enough
/// (`gate`), answers [`NOT_FOUND`] without calling `answerer`; else generates (handing each
/// piece of text to `on_token` as it comes) and checks the citations. A failing model is an
/// answer with outcome [`Outcome::ModelFailed`] and the passages, not an error.
///
/// # Errors
/// Retrieval's: `InvalidInput` for a bad request (an empty question, one over
/// [`MAX_QUESTION_CHARS`](chatvault_query::MAX_QUESTION_CHARS) characters), the stores' errors.
pub async fn answer_grounded(
    engine: &QueryEngine,
    workspace: &WorkspaceId,
    request: AskRequest,
    answerer: &dyn Answerer,
    gate: &RelevanceGate,
    on_token: &(dyn for<'t> Fn(&'t str) + Send + Sync),
) -> Result<GroundedAnswer> {
    let retrieval = engine.ask(workspace, request).await?;
    Ok(generate(retrieval, answerer, gate, on_token).await)
}

/// The part of [`answer_grounded`] after retrieval.
pub async fn generate(
    retrieval: Retrieval,
    answerer: &dyn Answerer,
    gate: &RelevanceGate,
    on_token: &(dyn for<'t> Fn(&'t str) + Send + Sync),
) -> GroundedAnswer {
    if !gate.passes(&retrieval) {
        return GroundedAnswer::not_found(retrieval, gate);
    }
    match answerer.answer_streaming(&retrieval, on_token).await {
        Ok(answer) => GroundedAnswer::checked(retrieval, gate, answer),
        Err(e) => GroundedAnswer::model_failed(retrieval, gate, e.to_string()),
    }
}
