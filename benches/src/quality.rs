//! The search-quality harness: labelled queries (JSONL) run against an archive in every search
//! mode, scored by nDCG@10, MRR@10 and recall@10.
//!
//! # The labelled-set format
//!
//! One JSON object per line (blank lines and lines starting with `#` or `//` are skipped):
//!
//! ```json
//! {"id": "q1", "query": "who updated the county choropleth code?",
//!  "relevant": [{"channel": "C061A0WJG", "ts": "1434772042.000005"}],
//!  "relevant_texts": ["choropleths by US county"],
//!  "exclude": [{"channel": "datajam", "ts": "1434772000.000001"}]}
//! ```
//!
//! - `query` (required): the search text, as a user types it.
//! - `relevant`: messages that answer it, by `channel` (an id like `C061A0WJG`, or a channel name,
//!   with or without `#`) and `ts`.
//! - `relevant_texts`: or by text: every message whose text contains this string (compared
//!   case-insensitively, whitespace collapsed) is relevant. A text that matches nothing is an
//!   error, so a typo never silently makes a query unanswerable.
//! - `exclude`: messages left out of the ranking before scoring (the query's own message, when a
//!   set takes its queries from the archive).
//! - `id`: a name for the query in reports (default: its line number).
//!
//! At least one relevant message is required per query. Relevance is binary; nDCG uses gain 1
//! per relevant hit and the ideal ranking of `min(relevant, 10)` hits.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use chatvault_core::{
    ChannelId, ContentStore, Error, MessageFilter, MessageKey, MetadataStore, PageRequest, Result,
    Ts, WorkspaceId,
};
use chatvault_query::{QueryEngine, Scope, SearchMode, SearchRequest};
use serde::Deserialize;

/// The cut-off every metric is computed at.
pub const CUTOFF: usize = 10;

/// A message named in a labelled set.
#[derive(Debug, Clone, Deserialize)]
pub struct KeyRef {
    /// A channel id or name (`#` optional).
    pub channel: String,
    /// The message's ts.
    pub ts: String,
}

/// One line of a labelled set, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelledLine {
    /// A name for reports.
    #[serde(default)]
    pub id: Option<String>,
    /// The search text.
    pub query: String,
    /// Relevant messages by key.
    #[serde(default)]
    pub relevant: Vec<KeyRef>,
    /// Relevant messages by text.
    #[serde(default)]
    pub relevant_texts: Vec<String>,
    /// Messages left out of the ranking.
    #[serde(default)]
    pub exclude: Vec<KeyRef>,
}

/// A labelled query resolved against an archive.
#[derive(Debug, Clone)]
pub struct LabelledQuery {
    /// Its name.
    pub id: String,
    /// The search text.
    pub query: String,
    /// The relevant messages.
    pub relevant: HashSet<MessageKey>,
    /// Messages left out of the ranking.
    pub exclude: HashSet<MessageKey>,
}

/// Parses a labelled set (see the module docs).
///
/// # Errors
/// `InvalidInput` naming the file and line of the first bad line.
pub fn parse_set(name: &str, text: &str) -> Result<Vec<LabelledLine>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with("//") {
            continue;
        }
        let mut l: LabelledLine = serde_json::from_str(t).map_err(|e| {
            Error::invalid_input(format!("{name} line {}: {e}", i + 1)).with_context("file", name)
        })?;
        if l.query.trim().is_empty() {
            return Err(Error::invalid_input(format!(
                "{name} line {}: query is empty",
                i + 1
            )));
        }
        if l.relevant.is_empty() && l.relevant_texts.is_empty() {
            return Err(Error::invalid_input(format!(
                "{name} line {}: no relevant messages (give `relevant` or `relevant_texts`)",
                i + 1
            )));
        }
        if l.id.is_none() {
            l.id = Some(format!("line {}", i + 1));
        }
        out.push(l);
    }
    if out.is_empty() {
        return Err(Error::invalid_input(format!("{name} holds no queries")));
    }
    Ok(out)
}

/// Reads and parses a labelled set file.
///
/// # Errors
/// `InvalidInput` when it cannot be read or parsed.
pub fn read_set(path: &Path) -> Result<Vec<LabelledLine>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid_input(format!("cannot read {}: {e}", path.display()))
            .with_context("file", path.display())
    })?;
    parse_set(&path.display().to_string(), &text)
}

/// What labelled sets are resolved against: the archive's channels and message texts.
#[derive(Debug)]
pub struct Archive {
    workspace: WorkspaceId,
    channels: HashMap<String, ChannelId>,
    texts: Vec<(MessageKey, String)>,
}

fn normalise(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

impl Archive {
    /// Reads the workspace's channels and every message text (for `relevant_texts`).
    ///
    /// # Errors
    /// The stores' errors.
    pub async fn load(
        meta: &dyn MetadataStore,
        content: &dyn ContentStore,
        workspace: &WorkspaceId,
    ) -> Result<Self> {
        let mut channels = HashMap::new();
        for c in meta.list_channels(workspace).await? {
            channels.insert(c.name.clone(), c.id.clone());
            channels.insert(c.id.to_string(), c.id.clone());
        }
        let mut keys = Vec::new();
        let mut page = PageRequest::first(5000);
        loop {
            let got = meta
                .filter_messages(workspace, &MessageFilter::default(), &page)
                .await?;
            let n = got.len();
            page.after = got.last().cloned();
            keys.extend(got);
            if n < 5000 {
                break;
            }
        }
        let mut texts = Vec::new();
        for chunk in keys.chunks(500) {
            for d in content.get(workspace, chunk).await? {
                texts.push((d.content.key.clone(), normalise(&d.content.text)));
            }
        }
        Ok(Archive {
            workspace: workspace.clone(),
            channels,
            texts,
        })
    }

    fn key(&self, set: &str, id: &str, k: &KeyRef) -> Result<MessageKey> {
        let name = k.channel.trim_start_matches('#');
        let channel = self.channels.get(name).ok_or_else(|| {
            Error::invalid_input(format!(
                "{set} query {id}: no channel {:?} in the archive",
                k.channel
            ))
        })?;
        let ts = Ts::new(&k.ts).map_err(|e| {
            Error::invalid_input(format!("{set} query {id}: bad ts {:?}: {e}", k.ts))
        })?;
        Ok(MessageKey::new(self.workspace.clone(), channel.clone(), ts))
    }

    /// Resolves a set's lines to keys.
    ///
    /// # Errors
    /// `InvalidInput` naming the query: an unknown channel, a bad ts, a relevant text that
    /// matches no message.
    pub fn resolve(&self, set: &str, lines: &[LabelledLine]) -> Result<Vec<LabelledQuery>> {
        let mut out = Vec::new();
        for l in lines {
            let id = l.id.clone().unwrap_or_default();
            let mut relevant = HashSet::new();
            for k in &l.relevant {
                relevant.insert(self.key(set, &id, k)?);
            }
            for t in &l.relevant_texts {
                let needle = normalise(t);
                let before = relevant.len();
                for (k, text) in &self.texts {
                    if text.contains(&needle) {
                        relevant.insert(k.clone());
                    }
                }
                if relevant.len() == before && !self.texts.iter().any(|(_, x)| x.contains(&needle))
                {
                    return Err(Error::invalid_input(format!(
                        "{set} query {id}: relevant text {t:?} matches no message"
                    )));
                }
            }
            let mut exclude = HashSet::new();
            for k in &l.exclude {
                exclude.insert(self.key(set, &id, k)?);
            }
            out.push(LabelledQuery {
                id,
                query: l.query.clone(),
                relevant,
                exclude,
            });
        }
        Ok(out)
    }
}

/// The three metrics, averaged over queries.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    /// nDCG@10 (binary gains).
    pub ndcg: f64,
    /// MRR@10.
    pub mrr: f64,
    /// recall@10.
    pub recall: f64,
    /// Queries scored.
    pub queries: usize,
}

/// One query's metrics from its ranked keys (best first; only the first [`CUTOFF`] count).
pub fn score_ranking(ranked: &[MessageKey], relevant: &HashSet<MessageKey>) -> Scores {
    let mut dcg = 0.0;
    let mut first = None;
    let mut found = 0usize;
    for (i, k) in ranked.iter().take(CUTOFF).enumerate() {
        if relevant.contains(k) {
            dcg += 1.0 / ((i + 2) as f64).log2();
            found += 1;
            first.get_or_insert(i + 1);
        }
    }
    let ideal: f64 = (0..relevant.len().min(CUTOFF))
        .map(|i| 1.0 / ((i + 2) as f64).log2())
        .sum();
    Scores {
        ndcg: if ideal > 0.0 { dcg / ideal } else { 0.0 },
        mrr: first.map_or(0.0, |r| 1.0 / r as f64),
        recall: if relevant.is_empty() {
            0.0
        } else {
            found as f64 / relevant.len() as f64
        },
        queries: 1,
    }
}

/// The mean of per-query scores.
pub fn mean(all: &[Scores]) -> Scores {
    let n = all.len().max(1) as f64;
    Scores {
        ndcg: all.iter().map(|s| s.ndcg).sum::<f64>() / n,
        mrr: all.iter().map(|s| s.mrr).sum::<f64>() / n,
        recall: all.iter().map(|s| s.recall).sum::<f64>() / n,
        queries: all.len(),
    }
}

/// Runs every query in `mode` (admin scope: every channel) and scores it.
///
/// # Errors
/// The engine's error for a query, naming it.
pub async fn evaluate(
    engine: &QueryEngine,
    workspace: &WorkspaceId,
    queries: &[LabelledQuery],
    mode: SearchMode,
) -> Result<(Scores, Vec<Scores>)> {
    let mut per = Vec::with_capacity(queries.len());
    for q in queries {
        let resp = engine
            .search(
                workspace,
                SearchRequest::new(q.query.clone())
                    .mode(mode)
                    .limit(CUTOFF + q.exclude.len())
                    .scope(Scope::Admin),
            )
            .await
            .map_err(|e| e.with_context("query", &q.id))?;
        let ranked: Vec<MessageKey> = resp
            .hits
            .into_iter()
            .map(|h| h.message.key)
            .filter(|k| !q.exclude.contains(k))
            .take(CUTOFF)
            .collect();
        per.push(score_ranking(&ranked, &q.relevant));
    }
    Ok((mean(&per), per))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(ts: &str) -> MessageKey {
        MessageKey::parse("W", "C", ts).expect("key")
    }

    #[test]
    fn a_relevant_hit_first_scores_one() {
        let rel: HashSet<_> = [k("1")].into_iter().collect();
        let s = score_ranking(&[k("1"), k("2")], &rel);
        assert_eq!((s.ndcg, s.mrr, s.recall), (1.0, 1.0, 1.0));
    }

    #[test]
    fn metrics_follow_the_rank() {
        let rel: HashSet<_> = [k("1"), k("3")].into_iter().collect();
        let s = score_ranking(&[k("2"), k("1"), k("4")], &rel);
        assert_eq!(s.mrr, 0.5);
        assert_eq!(s.recall, 0.5);
        let ideal = 1.0 + 1.0 / 3f64.log2();
        assert!((s.ndcg - (1.0 / 3f64.log2()) / ideal).abs() < 1e-12);
        // past the cut-off nothing counts
        let mut far: Vec<MessageKey> = (10..20).map(|i| k(&i.to_string())).collect();
        far.push(k("1"));
        let s = score_ranking(&far, &rel);
        assert_eq!((s.ndcg, s.mrr, s.recall), (0.0, 0.0, 0.0));
    }

    #[test]
    fn bad_lines_are_named() {
        let e = parse_set("s.jsonl", "{\"query\": \"x\"}").expect_err("no relevant");
        assert!(e.to_string().contains("s.jsonl line 1"), "{e}");
        let e = parse_set(
            "s.jsonl",
            "\n{\"query\": \"x\", \"relevant\": [], \"nope\": 1}",
        )
        .expect_err("unknown field");
        assert!(e.to_string().contains("line 2"), "{e}");
        let ok = parse_set(
            "s.jsonl",
            "# comment\n{\"query\": \"x\", \"relevant_texts\": [\"y\"]}\n",
        )
        .expect("parses");
        assert_eq!(ok[0].id.as_deref(), Some("line 2"));
    }
}
