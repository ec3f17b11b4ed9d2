//! Search requests and responses.

use chatvault_core::{ChannelId, MessageKey, ThreadFilter, TimeRange, Ts, UserId};
use serde::{Deserialize, Serialize};

use crate::fusion::MatchExplanation;
use crate::scope::Scope;
use crate::snippet::Snippet;
use crate::view::MessageView;

/// Which rankings a search uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    /// Lexical and semantic, fused (see [`FusionConfig`](crate::FusionConfig)).
    #[default]
    Hybrid,
    /// Vector similarity only.
    Semantic,
    /// BM25 only.
    Lexical,
}

/// Which part of threads a search keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "ts", rename_all = "snake_case")]
pub enum ThreadPart {
    /// Messages that are not replies.
    TopLevel,
    /// Replies inside threads only.
    InThread,
    /// One thread: its parent (this ts) and its replies.
    Thread(Ts),
}

impl ThreadPart {
    pub(crate) fn to_core(&self) -> ThreadFilter {
        match self {
            ThreadPart::TopLevel => ThreadFilter::TopLevel,
            ThreadPart::InThread => ThreadFilter::Replies,
            ThreadPart::Thread(t) => ThreadFilter::Thread(t.clone()),
        }
    }
}

/// What a search may return: every condition set must hold (`None` means "any").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchFilter {
    /// Only these channels (still narrowed to what the scope may see).
    pub channels: Option<Vec<ChannelId>>,
    /// Only these authors.
    pub users: Option<Vec<UserId>>,
    /// Only in this time range.
    pub time: TimeRange,
    /// Only this part of threads.
    pub thread: Option<ThreadPart>,
    /// Only with (or without) files.
    pub has_files: Option<bool>,
    /// Only with (or without) links.
    pub has_links: Option<bool>,
    /// Only with (or without) reactions.
    pub has_reactions: Option<bool>,
    /// Only with at least this many reactions.
    pub min_reactions: Option<u32>,
}

impl SearchFilter {
    /// Whether a condition only the metadata store answers exactly is set (reactions: the
    /// content store's copy may lag behind).
    pub(crate) fn has_metadata_only_condition(&self) -> bool {
        self.has_reactions.is_some() || self.min_reactions.is_some()
    }

    /// Whether a message passes the metadata-only conditions (as [`MessageFilter::matches`]
    /// judges them).
    ///
    /// [`MessageFilter::matches`]: chatvault_core::MessageFilter::matches
    pub(crate) fn metadata_only_matches(&self, meta: &chatvault_core::MessageMeta) -> bool {
        self.has_reactions.is_none_or(|b| meta.has_reactions == b)
            && self.min_reactions.is_none_or(|n| meta.reaction_count >= n)
    }

    /// The reaction conditions as one minimum count the content store can filter on (`None`
    /// when they cannot be put that way: "without reactions").
    pub(crate) fn reactions_as_minimum(&self) -> Option<u32> {
        match self.has_reactions {
            Some(false) => None,
            Some(true) => Some(self.min_reactions.unwrap_or(0).max(1)),
            None => Some(self.min_reactions.unwrap_or(0)),
        }
    }
}

/// A search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// The words to look for.
    pub query: String,
    /// Which rankings to use.
    #[serde(default)]
    pub mode: SearchMode,
    /// Conditions on the results.
    #[serde(default)]
    pub filter: SearchFilter,
    /// Hits per page (1..=1000).
    pub limit: usize,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
    /// For whom.
    #[serde(default)]
    pub scope: Scope,
}

impl SearchRequest {
    /// A hybrid search for `query`, 10 hits, public scope.
    pub fn new(query: impl Into<String>) -> Self {
        SearchRequest {
            query: query.into(),
            mode: SearchMode::Hybrid,
            filter: SearchFilter::default(),
            limit: 10,
            cursor: None,
            scope: Scope::Public,
        }
    }

    /// The same with another mode.
    pub fn mode(mut self, mode: SearchMode) -> Self {
        self.mode = mode;
        self
    }

    /// The same with another scope.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// The same with another filter.
    pub fn filter(mut self, filter: SearchFilter) -> Self {
        self.filter = filter;
        self
    }

    /// The same with another page size.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The same continuing after a previous page.
    pub fn cursor(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }
}

/// A thread's parent, summarised next to a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParentSummary {
    /// The parent's key.
    pub key: MessageKey,
    /// Its author's name.
    pub user_name: Option<String>,
    /// The start of its text.
    pub excerpt: Option<String>,
    /// Its permalink (`None` without a workspace domain).
    pub permalink: Option<String>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The message, enriched.
    pub message: MessageView,
    /// Its thread's parent, when it is a reply.
    pub parent: Option<ParentSummary>,
    /// An excerpt with the query's words marked.
    pub snippet: Snippet,
    /// Why it matched.
    pub why: MatchExplanation,
}

/// How a search met its filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FilterPlan {
    /// Every condition was answered by the content store during its search. Reaction conditions
    /// go this way when few messages have undelivered changes (the content store's reaction
    /// counts are current for all others; those few are searched separately by key), and the
    /// hits are still checked against the metadata store.
    #[default]
    ContentStore,
    /// The metadata store listed the keys passing the filter; the content store searched only
    /// those.
    AllowList,
    /// The content store searched deeper under the conditions it answers and every hit was
    /// checked against the metadata store.
    PostFilter,
}

/// Where a search spent its time, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchTimings {
    /// Permission scope and metadata candidates.
    pub metadata_us: u64,
    /// Embedding the query.
    pub embed_us: u64,
    /// Vector search.
    pub semantic_us: u64,
    /// Lexical search.
    pub lexical_us: u64,
    /// Enrichment.
    pub enrich_us: u64,
    /// Everything.
    pub total_us: u64,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// The hits, best first.
    pub hits: Vec<SearchHit>,
    /// Pass it as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
    /// The mode that actually ran (Hybrid can degrade to one ranking, see `degraded`).
    pub mode: SearchMode,
    /// Why the search ran with less than asked, e.g. `lexical search unsupported by backend
    /// chroma`. `None` when it ran fully.
    pub degraded: Option<String>,
    /// How many candidates the metadata filter produced (`None`: the filter was pushed down to
    /// the content store instead).
    pub candidates: Option<usize>,
    /// How the filter was met.
    pub plan: FilterPlan,
    /// Where the time went.
    pub timings: SearchTimings,
}
