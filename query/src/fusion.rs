//! Fusion of the lexical and the semantic ranking: score-aware and adaptive by default,
//! reciprocal rank fusion as an option.

use std::collections::{HashMap, HashSet};

use chatvault_core::{MessageKey, ScoredKey};
use serde::{Deserialize, Serialize};

/// How the two rankings are combined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FusionMethod {
    /// Reciprocal rank fusion: `score(d) = Σ weightᵢ / (k + rankᵢ(d))`, ranks from 1. Scores are
    /// ignored, so a ranking that is sure of one document counts as much as one that is not.
    Rrf,
    /// Score-aware: each ranking's scores are min-max normalised over what it returned, and
    /// combined as `w·semantic + (1 − w)·lexical`, with `w` chosen per query from what the two
    /// rankings show (see [`FusionConfig::semantic_share`]).
    #[default]
    Adaptive,
}

/// How the two rankings are fused.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FusionConfig {
    /// Reciprocal rank fusion or the score-aware adaptive fusion.
    pub method: FusionMethod,
    /// The RRF constant `k` (60 in the original paper and by default).
    pub k: f64,
    /// The weight of the lexical (BM25) ranking in RRF.
    pub lexical_weight: f64,
    /// The weight of the semantic (vector) ranking in RRF.
    pub semantic_weight: f64,
    /// Adaptive: the semantic ranking's share `w` when neither ranking stands out.
    pub semantic_share: f64,
    /// Adaptive: how far `w` moves towards the ranking that is surer of its best document
    /// (0 keeps `w` fixed).
    pub confidence_gain: f64,
    /// How much a message by a person the query names (`what did Dana say …`) gains: on the
    /// adaptive fusion's 0..=1 scale, or, for RRF, in first places of a ranking (1.0 = one
    /// `weight / (k + 1)`). 0 turns the boost (and the searches it needs) off.
    pub named_boost: f64,
    /// How much a message inside a relative date the query names (`yesterday`, `last week`,
    /// `in May`) gains, on the same scale as `named_boost`: a soft time hint, never a filter.
    /// 0 turns it off.
    pub time_boost: f64,
    /// How deep each ranking is read, at least (more than the page when the page is small), so
    /// that a document ranked moderately by both can still win.
    pub min_depth: usize,
}

impl Default for FusionConfig {
    fn default() -> Self {
        FusionConfig {
            method: FusionMethod::Adaptive,
            k: 60.0,
            lexical_weight: 1.0,
            semantic_weight: 1.0,
            semantic_share: 0.6,
            confidence_gain: 1.0,
            named_boost: 0.25,
            time_boost: 0.1,
            min_depth: 50,
        }
    }
}

impl FusionConfig {
    /// Reciprocal rank fusion with equal weights and `k`, no boost for named people.
    pub fn rrf(k: f64) -> Self {
        FusionConfig {
            method: FusionMethod::Rrf,
            k,
            named_boost: 0.0,
            time_boost: 0.0,
            ..FusionConfig::default()
        }
    }

    /// The default for an embedder, by its model id.
    ///
    /// Real models get the adaptive score-aware fusion: semantic share 0.6, confidence gain 1.0,
    /// named-author boost 0.25, chosen on the two tuning sets of `testdata/quality/` (figures
    /// for every set and mode, and the command, in its README). The built-in
    /// hashing embedder (`chatvault-hashing-*`) knows no synonyms — its ranking is a noisier copy
    /// of BM25's — so fusing it at equal weight only moves worse documents up (measured on
    /// `testdata/qa.json`: MRR@10 0.731 against lexical's 0.815). For it the semantic ranking
    /// only breaks near-ties and extends the list past the lexical matches: RRF with `k = 5`,
    /// semantic weight 0.05.
    pub fn for_embedder(model_id: &str) -> Self {
        if model_id.starts_with("chatvault-hashing") {
            FusionConfig {
                method: FusionMethod::Rrf,
                k: 5.0,
                lexical_weight: 1.0,
                semantic_weight: 0.05,
                named_boost: 0.0,
                time_boost: 0.0,
                ..FusionConfig::default()
            }
        } else {
            FusionConfig::default()
        }
    }

    /// The RRF configuration measured best for an embedder before the adaptive fusion (kept to
    /// compare against): `k = 10` for all-MiniLM-L6-v2, the hashing embedder's own, `k = 60`
    /// otherwise.
    pub fn rrf_for_embedder(model_id: &str) -> Self {
        if model_id.starts_with("chatvault-hashing") {
            FusionConfig::for_embedder(model_id)
        } else if model_id == "sentence-transformers/all-MiniLM-L6-v2" {
            FusionConfig::rrf(10.0)
        } else {
            FusionConfig::rrf(60.0)
        }
    }

    /// Checks the numbers.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !ok(self.k)
            || !ok(self.lexical_weight)
            || !ok(self.semantic_weight)
            || !ok(self.confidence_gain)
            || !ok(self.named_boost)
            || !ok(self.time_boost)
        {
            return Err("fusion k, weights, gain and boost must be finite and not negative".into());
        }
        if !(self.semantic_share.is_finite() && (0.0..=1.0).contains(&self.semantic_share)) {
            return Err("fusion semantic_share must be within 0..=1".into());
        }
        Ok(())
    }
}

/// A document's place in one ranking.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RankScore {
    /// Its rank, from 1.
    pub rank: usize,
    /// The backend's score: BM25 for lexical, cosine similarity for semantic.
    pub score: f32,
}

/// Why a hit matched: its place in each ranking and the fused score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MatchExplanation {
    /// Its place in the lexical ranking, if it was in it.
    pub lexical: Option<RankScore>,
    /// Its place in the semantic ranking, if it was in it.
    pub semantic: Option<RankScore>,
    /// The fused score the hits are ordered by (RRF, or the adaptive weighted sum of normalised
    /// scores, within 0..=1; plus the boost of a named author).
    pub fused_score: f64,
    /// Adaptive fusion: the semantic ranking's share `w` chosen for this query (the lexical one
    /// had `1 − w`). `None` for RRF and the single modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic_share: Option<f64>,
    /// Its author is named in the query (`what did Dana say …`): it was boosted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub named_author: bool,
    /// It falls inside a relative date the query names (`last week`): it was boosted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_time_hint: bool,
    /// Its channel is named in the query (`#tools`, `the tools channel`): it was boosted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub named_channel: bool,
}

/// Fuses the two rankings; the result is ordered by fused score, ties by key.
pub(crate) fn fuse(
    lexical: &[ScoredKey],
    semantic: &[ScoredKey],
    config: &FusionConfig,
) -> Vec<(MessageKey, MatchExplanation)> {
    match config.method {
        FusionMethod::Rrf => rrf(lexical, semantic, config),
        FusionMethod::Adaptive => adaptive(lexical, semantic, config),
    }
}

fn explain_both(
    lexical: &[ScoredKey],
    semantic: &[ScoredKey],
) -> HashMap<MessageKey, MatchExplanation> {
    let mut by_key: HashMap<MessageKey, MatchExplanation> = HashMap::new();
    let empty = MatchExplanation {
        lexical: None,
        semantic: None,
        fused_score: 0.0,
        semantic_share: None,
        named_author: false,
        in_time_hint: false,
        named_channel: false,
    };
    for (i, hit) in lexical.iter().enumerate() {
        let e = by_key.entry(hit.key.clone()).or_insert(empty);
        if e.lexical.is_none() {
            e.lexical = Some(RankScore {
                rank: i + 1,
                score: hit.score,
            });
        }
    }
    for (i, hit) in semantic.iter().enumerate() {
        let e = by_key.entry(hit.key.clone()).or_insert(empty);
        if e.semantic.is_none() {
            e.semantic = Some(RankScore {
                rank: i + 1,
                score: hit.score,
            });
        }
    }
    by_key
}

fn sorted(by_key: HashMap<MessageKey, MatchExplanation>) -> Vec<(MessageKey, MatchExplanation)> {
    let mut out: Vec<(MessageKey, MatchExplanation)> = by_key.into_iter().collect();
    out.sort_by(|a, b| {
        b.1.fused_score
            .total_cmp(&a.1.fused_score)
            .then_with(|| a.0.cmp(&b.0))
    });
    out
}

fn rrf(
    lexical: &[ScoredKey],
    semantic: &[ScoredKey],
    config: &FusionConfig,
) -> Vec<(MessageKey, MatchExplanation)> {
    let mut by_key = explain_both(lexical, semantic);
    for e in by_key.values_mut() {
        if let Some(r) = e.lexical {
            e.fused_score += config.lexical_weight / (config.k + r.rank as f64);
        }
        if let Some(r) = e.semantic {
            e.fused_score += config.semantic_weight / (config.k + r.rank as f64);
        }
    }
    sorted(by_key)
}

/// How many of each ranking's best hits the confidence and normalisation look at.
const HEAD: usize = 10;

/// How far a ranking's best score stands out from the rest of its head, in standard deviations
/// of the head's scores (0 for fewer than 3 hits or equal scores).
fn confidence(hits: &[ScoredKey]) -> f64 {
    let head: Vec<f64> = hits.iter().take(HEAD).map(|h| f64::from(h.score)).collect();
    if head.len() < 3 {
        return 0.0;
    }
    let n = head.len() as f64;
    let mean = head.iter().sum::<f64>() / n;
    let var = head.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
    if var <= f64::EPSILON {
        return 0.0;
    }
    (head[0] - mean) / var.sqrt()
}

/// The semantic ranking's share for this query: the configured share, moved towards the ranking
/// whose best hit stands out more (a lexical match on a rare name stands far above the rest; a
/// paraphrase only the embedding recognises stands out in the semantic ranking), all the way
/// when one ranking is empty.
pub(crate) fn semantic_share(
    lexical: &[ScoredKey],
    semantic: &[ScoredKey],
    config: &FusionConfig,
) -> f64 {
    match (lexical.is_empty(), semantic.is_empty()) {
        (true, _) => return 1.0,
        (false, true) => return 0.0,
        _ => {}
    }
    let diff = confidence(semantic) - confidence(lexical);
    (config.semantic_share + config.confidence_gain * diff.tanh() / 2.0).clamp(0.0, 1.0)
}

/// Min-max normalisation over a ranking's scores: its best is 1, its worst 0 (all 1 when equal).
fn normalised(hits: &[ScoredKey]) -> impl Fn(f32) -> f64 {
    let hi = hits.first().map_or(0.0, |h| f64::from(h.score));
    let lo = hits.last().map_or(0.0, |h| f64::from(h.score));
    move |s: f32| {
        if hi > lo {
            ((f64::from(s) - lo) / (hi - lo)).clamp(0.0, 1.0)
        } else {
            1.0
        }
    }
}

fn adaptive(
    lexical: &[ScoredKey],
    semantic: &[ScoredKey],
    config: &FusionConfig,
) -> Vec<(MessageKey, MatchExplanation)> {
    let w = semantic_share(lexical, semantic, config);
    let (nl, ns) = (normalised(lexical), normalised(semantic));
    let mut by_key = explain_both(lexical, semantic);
    for e in by_key.values_mut() {
        let l = e.lexical.map_or(0.0, |r| nl(r.score));
        let s = e.semantic.map_or(0.0, |r| ns(r.score));
        e.fused_score = w * s + (1.0 - w) * l;
        e.semantic_share = Some(w);
    }
    sorted(by_key)
}

/// Boosts the messages of people the query names (`named`; with `channels`, the messages in
/// channels it names) by [`FusionConfig::named_boost`], then orders again.
pub(crate) fn boost_named(
    ranked: &mut [(MessageKey, MatchExplanation)],
    named: &HashSet<MessageKey>,
    config: &FusionConfig,
    channels: bool,
) {
    let boost = match config.method {
        FusionMethod::Adaptive => config.named_boost,
        FusionMethod::Rrf => {
            config.named_boost * config.lexical_weight.max(config.semantic_weight)
                / (config.k + 1.0)
        }
    };
    for (k, e) in ranked.iter_mut() {
        if named.contains(k) {
            e.fused_score += boost;
            if channels {
                e.named_channel = true;
            } else {
                e.named_author = true;
            }
        }
    }
    ranked.sort_by(|a, b| {
        b.1.fused_score
            .total_cmp(&a.1.fused_score)
            .then_with(|| a.0.cmp(&b.0))
    });
}

/// Boosts the messages posted inside `range` (a relative date the query names) by
/// [`FusionConfig::time_boost`], then orders again.
pub(crate) fn boost_in_time(
    ranked: &mut [(MessageKey, MatchExplanation)],
    range: &chatvault_core::TimeRange,
    config: &FusionConfig,
) {
    let boost = match config.method {
        FusionMethod::Adaptive => config.time_boost,
        FusionMethod::Rrf => {
            config.time_boost * config.lexical_weight.max(config.semantic_weight) / (config.k + 1.0)
        }
    };
    let mut any = false;
    for (k, e) in ranked.iter_mut() {
        if range.contains(&k.ts) {
            e.fused_score += boost;
            e.in_time_hint = true;
            any = true;
        }
    }
    if any {
        ranked.sort_by(|a, b| {
            b.1.fused_score
                .total_cmp(&a.1.fused_score)
                .then_with(|| a.0.cmp(&b.0))
        });
    }
}

/// One ranking alone, explained the same way (for the single modes).
pub(crate) fn single(
    hits: &[ScoredKey],
    lexical: bool,
    config: &FusionConfig,
) -> Vec<(MessageKey, MatchExplanation)> {
    hits.iter()
        .enumerate()
        .map(|(i, h)| {
            let rs = Some(RankScore {
                rank: i + 1,
                score: h.score,
            });
            let fused_score = 1.0 / (config.k + (i + 1) as f64);
            let e = if lexical {
                MatchExplanation {
                    lexical: rs,
                    semantic: None,
                    fused_score,
                    semantic_share: None,
                    named_author: false,
                    in_time_hint: false,
                    named_channel: false,
                }
            } else {
                MatchExplanation {
                    lexical: None,
                    semantic: rs,
                    fused_score,
                    semantic_share: None,
                    named_author: false,
                    in_time_hint: false,
                    named_channel: false,
                }
            };
            (h.key.clone(), e)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sk(ts: &str, score: f32) -> ScoredKey {
        ScoredKey {
            key: MessageKey::parse("W", "C", ts).expect("valid key"),
            score,
        }
    }

    #[test]
    fn a_document_in_both_rankings_beats_one_in_a_single_ranking() {
        let lex = vec![sk("1", 9.0), sk("2", 5.0)];
        let sem = vec![sk("3", 0.9), sk("2", 0.8)];
        let fused = fuse(&lex, &sem, &FusionConfig::rrf(60.0));
        assert_eq!(fused[0].0.ts.as_str(), "2");
        let e = fused[0].1;
        assert_eq!(e.lexical.map(|r| r.rank), Some(2));
        assert_eq!(e.semantic.map(|r| r.rank), Some(2));
        assert!((e.fused_score - 2.0 / 62.0).abs() < 1e-12);
        // 1 and 3 tie on 1/61: broken by key
        assert_eq!(fused[1].0.ts.as_str(), "1");
        assert_eq!(fused[2].0.ts.as_str(), "3");
    }

    #[test]
    fn weights_shift_the_order() {
        let lex = vec![sk("1", 9.0)];
        let sem = vec![sk("3", 0.9)];
        let cfg = FusionConfig {
            semantic_weight: 2.0,
            ..FusionConfig::rrf(60.0)
        };
        let fused = fuse(&lex, &sem, &cfg);
        assert_eq!(fused[0].0.ts.as_str(), "3");
    }

    #[test]
    fn adaptive_ranks_a_document_both_rankings_like_first() {
        let lex = vec![sk("1", 9.0), sk("2", 8.0), sk("4", 1.0)];
        let sem = vec![sk("3", 0.9), sk("2", 0.85), sk("5", 0.2)];
        let fused = fuse(&lex, &sem, &FusionConfig::default());
        assert_eq!(fused[0].0.ts.as_str(), "2");
        let e = fused[0].1;
        let w = e.semantic_share.expect("adaptive explains its share");
        assert!((0.0..=1.0).contains(&w));
        assert!((0.0..=1.0).contains(&e.fused_score));
    }

    #[test]
    fn adaptive_follows_the_only_ranking_there_is() {
        let sem = vec![sk("3", 0.9), sk("2", 0.5)];
        let fused = fuse(&[], &sem, &FusionConfig::default());
        let order: Vec<&str> = fused.iter().map(|(k, _)| k.ts.as_str()).collect();
        assert_eq!(order, ["3", "2"]);
        assert_eq!(fused[0].1.semantic_share, Some(1.0));
        let fused = fuse(&sem, &[], &FusionConfig::default());
        assert_eq!(fused[0].1.semantic_share, Some(0.0));
    }

    #[test]
    fn a_ranking_sure_of_its_best_gets_more_weight() {
        // lexical: one rare-word match far above the rest; semantic: flat
        let lex: Vec<ScoredKey> = std::iter::once(sk("1", 20.0))
            .chain((2..12).map(|i| sk(&i.to_string(), 2.0 - i as f32 * 0.01)))
            .collect();
        let sem: Vec<ScoredKey> = (20..32)
            .map(|i| sk(&i.to_string(), 0.5 - i as f32 * 0.001))
            .collect();
        let cfg = FusionConfig::default();
        let w = semantic_share(&lex, &sem, &cfg);
        assert!(w < cfg.semantic_share, "{w}");
        assert_eq!(fuse(&lex, &sem, &cfg)[0].0.ts.as_str(), "1");
        let w = semantic_share(&sem, &lex, &cfg);
        assert!(w > cfg.semantic_share, "{w}");
    }

    #[test]
    fn bad_numbers_are_refused() {
        let bad = FusionConfig {
            semantic_share: 1.5,
            ..FusionConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = FusionConfig {
            k: f64::NAN,
            ..FusionConfig::default()
        };
        assert!(bad.validate().is_err());
        assert!(FusionConfig::default().validate().is_ok());
    }
}
