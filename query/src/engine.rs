//! The query engine: permission-aware hybrid search, threads and context.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use chatvault_core::{
    Channel, ChannelId, ContentFilter, ContentStore, Embedder, Error, MessageFilter, MessageKey,
    MetadataStore, PageRequest, Result, ScoredKey, SearchOptions, ThreadFilter, TimeRange, Ts,
    Workspace, WorkspaceId,
};
use serde::{Deserialize, Serialize};

use crate::fusion::{boost_in_time, boost_named, fuse, single, FusionConfig};
use crate::mentions::{find_channel_mentions, find_mentions};
use crate::modifiers::{parse_query, ParsedQuery};
use crate::names::resolve_user;
use crate::scope::{Allowed, Scope};
use crate::search::{
    FilterPlan, ParentSummary, SearchFilter, SearchHit, SearchMode, SearchRequest, SearchResponse,
    SearchTimings, ThreadPart,
};
use crate::snippet::{query_terms, snippet};
use crate::time_hints::find_time_hint;
use crate::view::{load_views, MessageView};

/// The most hits one page may ask for.
pub const MAX_LIMIT: usize = 1000;
/// How many keys are read per metadata page.
const PAGE: usize = 5000;
/// The deepest a post-filtered search goes per ranking.
const POST_FILTER_MAX_K: usize = 20_000;

/// How a search meets conditions only the metadata store answers exactly (reactions).
///
/// The content store keeps a copy of each message's reaction count, current for every message
/// without an undelivered outbox entry. By default, when at most `candidate_list_max` messages
/// have undelivered changes, reaction conditions are pushed down to the content store like any
/// other condition, the messages with undelivered changes are searched separately by key under
/// the other conditions, and every hit is checked against the metadata store. Otherwise either
/// the keys passing the conditions become an allow-list for the content store, or the content
/// store searches deeper under the other conditions and every hit is checked against the
/// metadata store (a post-filter). All three are exact; they differ in cost: an allow-list costs
/// in proportion to the keys, a post-filter to how much deeper it must search, the push-down to
/// the undelivered changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannerConfig {
    /// Push reaction conditions down to the content store when few messages have undelivered
    /// changes (default `true`). `false` always takes one of the two other paths.
    pub push_down_reactions: bool,
    /// Up to this many messages with undelivered changes are searched by key beside a pushed-down
    /// reaction condition; and, on the exact paths, up to this many messages passing the
    /// metadata-only conditions always go as an allow-list.
    pub candidate_list_max: usize,
    /// Above this ratio of (messages the other conditions allow) / (messages passing the
    /// metadata-only conditions), an allow-list is used too: a post-filter would have to search
    /// too deep.
    pub post_filter_max_overfetch: f64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            push_down_reactions: true,
            candidate_list_max: 2000,
            post_filter_max_overfetch: 8.0,
        }
    }
}

/// Reads over one metadata store, one content store and one embedder.
///
/// Every call names one workspace and a [`Scope`]; nothing outside both ever comes back.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    pub(crate) meta: Arc<dyn MetadataStore>,
    pub(crate) content: Arc<dyn ContentStore>,
    pub(crate) embedder: Arc<dyn Embedder>,
    pub(crate) fusion: FusionConfig,
    pub(crate) planner: PlannerConfig,
    pub(crate) snippet_chars: usize,
}

/// A message's whole thread, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    /// The parent's key.
    pub parent: MessageKey,
    /// The parent (when stored) and its replies, oldest first.
    pub messages: Vec<MessageView>,
}

/// Messages around one message in its channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// The message asked about.
    pub target: MessageKey,
    /// Up to `n` top-level messages before it, the message, and up to `n` after it, oldest first.
    pub messages: Vec<MessageView>,
}

impl QueryEngine {
    /// An engine with the fusion [`FusionConfig::for_embedder`] picks for this embedder (the
    /// adaptive score-aware fusion for a real model).
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        content: Arc<dyn ContentStore>,
        embedder: Arc<dyn Embedder>,
    ) -> Self {
        QueryEngine {
            fusion: FusionConfig::for_embedder(embedder.model_id()),
            meta,
            content,
            embedder,
            planner: PlannerConfig::default(),
            snippet_chars: 200,
        }
    }

    /// The same engine with another [`PlannerConfig`].
    pub fn with_planner(mut self, planner: PlannerConfig) -> Self {
        self.planner = planner;
        self
    }

    /// The same engine with another fusion configuration.
    ///
    /// # Errors
    /// `InvalidInput` for a negative or non-finite `k`, weight or gain, or a semantic share
    /// outside 0..=1.
    pub fn with_fusion(mut self, fusion: FusionConfig) -> Result<Self> {
        fusion.validate().map_err(Error::invalid_input)?;
        self.fusion = fusion;
        Ok(self)
    }

    /// The fusion configuration in use.
    pub fn fusion(&self) -> &FusionConfig {
        &self.fusion
    }

    /// The metadata store.
    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.meta
    }

    /// The content store.
    pub fn content(&self) -> &Arc<dyn ContentStore> {
        &self.content
    }

    pub(crate) async fn workspace(&self, id: &WorkspaceId) -> Result<Workspace> {
        self.meta.get_workspace(id).await?.ok_or_else(|| {
            Error::not_found(format!("workspace {id} does not exist")).with_context("workspace", id)
        })
    }

    /// Searches one workspace. See the crate docs for the plan.
    ///
    /// # Errors
    /// `NotFound` (no such workspace or collection), `InvalidInput` (empty query, limit out of
    /// range, bad cursor, a time range that ends before it starts, a key of another workspace),
    /// `Unsupported` (a single mode the content backend cannot run), and whatever the stores and
    /// the embedder report.
    pub async fn search(
        &self,
        workspace: &WorkspaceId,
        request: SearchRequest,
    ) -> Result<SearchResponse> {
        let started = Instant::now();
        let mut timings = SearchTimings::default();
        if request.query.trim().is_empty() {
            return Err(
                Error::invalid_input("search query is empty").with_context("field", "query")
            );
        }
        if request.limit == 0 || request.limit > MAX_LIMIT {
            return Err(Error::invalid_input(format!(
                "search limit {} is out of range 1..={MAX_LIMIT}",
                request.limit
            ))
            .with_context("field", "limit"));
        }
        check_time_range(&request.filter.time, "filter.time")?;
        let offset = parse_cursor(request.cursor.as_deref())?;
        let ws = self.workspace(workspace).await?;
        let allowed = Allowed::compute(self.meta.as_ref(), workspace, &request.scope).await?;
        let parsed = parse_query(&request.query, chrono::Utc::now().date_naive())?;
        let mut request = request;
        let text_conditions = if parsed.has_modifiers() {
            self.apply_modifiers(workspace, &allowed, &mut request, &parsed)
                .await?;
            (!parsed.phrases.is_empty() || !parsed.excluded.is_empty()).then_some(parsed)
        } else {
            None
        };

        // What the content store can run.
        let caps = self.content.capabilities();
        let backend = self.content.backend();
        let (run_lexical, run_semantic, mode, degraded) = match request.mode {
            SearchMode::Hybrid => match (caps.lexical_search, caps.vector_search) {
                (true, true) => (true, true, SearchMode::Hybrid, None),
                (false, true) => (
                    false,
                    true,
                    SearchMode::Semantic,
                    Some(format!("lexical search unsupported by backend {backend}")),
                ),
                (true, false) => (
                    true,
                    false,
                    SearchMode::Lexical,
                    Some(format!("vector search unsupported by backend {backend}")),
                ),
                (false, false) => {
                    return Err(Error::unsupported(format!(
                        "content backend {backend} supports neither lexical nor vector search"
                    ))
                    .with_backend(backend))
                }
            },
            SearchMode::Lexical if !caps.lexical_search => {
                return Err(Error::unsupported(format!(
                    "lexical search unsupported by backend {backend}"
                ))
                .with_backend(backend))
            }
            SearchMode::Semantic if !caps.vector_search => {
                return Err(Error::unsupported(format!(
                    "vector search unsupported by backend {backend}"
                ))
                .with_backend(backend))
            }
            SearchMode::Lexical => (true, false, SearchMode::Lexical, None),
            SearchMode::Semantic => (false, true, SearchMode::Semantic, None),
        };

        let channels = allowed.list(request.filter.channels.as_deref());
        let empty = |timings: SearchTimings| SearchResponse {
            hits: Vec::new(),
            next_cursor: None,
            mode,
            degraded: degraded.clone(),
            candidates: None,
            plan: FilterPlan::default(),
            timings,
        };
        if channels.is_empty() {
            timings.total_us = micros(started);
            return Ok(empty(timings));
        }

        // Reaction conditions as one minimum count, with the messages whose content-store copy
        // may lag (undelivered outbox entries), when few enough lag to search them separately.
        let push_down: Option<(u32, Vec<MessageKey>)> = match request.filter.reactions_as_minimum()
        {
            Some(n)
                if caps.full_filters
                    && self.planner.push_down_reactions
                    && request.filter.has_metadata_only_condition() =>
            {
                let max = self.planner.candidate_list_max;
                let lagging = self
                    .meta
                    .undelivered_keys(workspace, max.saturating_add(1))
                    .await?;
                (lagging.len() <= max).then_some((n, lagging))
            }
            _ => None,
        };
        // Conditions only the metadata store answers exactly (reactions: the content store's copy
        // may lag behind) are met one of three ways: pushed down when few copies lag (see above);
        // else, when few messages pass them, or they keep a small share of what the other
        // conditions allow, their keys become an allow-list for the content store (exact).
        // Otherwise the content store searches deeper under the other conditions and each hit is
        // checked against the metadata store (post-filter): cheaper than shipping tens of
        // thousands of keys, and just as exact.
        let push_all_to_metadata = !caps.full_filters;
        let mut candidates: Option<Vec<MessageKey>> = None;
        let mut post_filter: Option<f64> = None;
        let pushed_reactions = push_down.as_ref().map(|(n, _)| *n);
        if push_all_to_metadata {
            let filter = message_filter(&request.filter, channels.clone());
            candidates = Some(self.all_keys(workspace, &filter).await?);
        } else if push_down.is_some() {
            // The content store's reaction counts are current but for the lagging messages:
            // filter there, search those separately, check every hit.
            post_filter = Some(1.0);
        } else if request.filter.has_metadata_only_condition() {
            let filter = message_filter(&request.filter, channels.clone());
            let matching = self.meta.count_messages(workspace, &filter).await?;
            let mut rest = filter.clone();
            rest.has_reactions = None;
            rest.min_reactions = None;
            let allowed_by_rest = if matching == 0 {
                0
            } else {
                self.meta.count_messages(workspace, &rest).await?
            };
            let overfetch = allowed_by_rest as f64 / matching.max(1) as f64;
            if matching == 0 {
                candidates = Some(Vec::new());
            } else if matching as usize <= self.planner.candidate_list_max
                || overfetch > self.planner.post_filter_max_overfetch
            {
                candidates = Some(self.all_keys(workspace, &filter).await?);
            } else {
                post_filter = Some(overfetch);
            }
        }
        let mut content_filter = match &candidates {
            Some(keys) if push_all_to_metadata => ContentFilter {
                keys: Some(keys.clone()),
                ..ContentFilter::default()
            },
            Some(keys) => ContentFilter {
                keys: Some(keys.clone()),
                ..content_filter(&request.filter, channels.clone())
            },
            None => ContentFilter {
                min_reactions: pushed_reactions,
                ..content_filter(&request.filter, channels.clone())
            },
        };
        // Every channel allowed and none picked: the channel list filters nothing, and leaving it
        // out keeps the backend on its unfiltered path. (Results are still checked below.)
        if allowed.allows_all() && request.filter.channels.is_none() {
            content_filter.channels = None;
        }
        // The lagging messages are searched by key under the other conditions; their reaction
        // counts are checked against the metadata store with every other hit.
        let lagging_filter: Option<ContentFilter> = push_down.and_then(|(_, lagging)| {
            let keys: Vec<MessageKey> = lagging
                .into_iter()
                .filter(|k| allowed.allows(&k.channel))
                .collect();
            (!keys.is_empty()).then(|| ContentFilter {
                keys: Some(keys),
                min_reactions: None,
                ..content_filter.clone()
            })
        });
        timings.metadata_us = micros(started);
        let plan = if candidates.is_some() {
            FilterPlan::AllowList
        } else if post_filter.is_some() && pushed_reactions.is_none() {
            FilterPlan::PostFilter
        } else {
            FilterPlan::ContentStore
        };
        let candidate_count = candidates.as_ref().map(Vec::len);
        if candidate_count == Some(0) {
            let mut r = empty(timings);
            r.candidates = Some(0);
            r.plan = plan;
            r.timings.total_us = micros(started);
            return Ok(r);
        }

        let needed = offset + request.limit + 1;
        let depth = if mode == SearchMode::Hybrid {
            needed.max(self.fusion.min_depth)
        } else {
            needed
        };

        let query_vector = if run_semantic {
            let t = Instant::now();
            let vector = self.embedder.embed_query(&request.query).await?;
            timings.embed_us = micros(t);
            Some(vector)
        } else {
            None
        };

        // Defence in depth: whatever a backend returns, only allowed keys of this workspace (and,
        // with candidates, only candidates) survive.
        let candidate_set: Option<HashSet<&MessageKey>> =
            candidates.as_ref().map(|c| c.iter().collect());
        let keep = |h: &ScoredKey| {
            &h.key.workspace == workspace
                && allowed.allows(&h.key.channel)
                && candidate_set.as_ref().is_none_or(|s| s.contains(&h.key))
        };
        let mut k = match post_filter {
            Some(overfetch) => ((depth as f64) * overfetch * 1.5).ceil() as usize + 16,
            None => depth,
        };
        let (lexical, semantic) = loop {
            let options = SearchOptions {
                k,
                filter: content_filter.clone(),
            };
            let lagging_options = lagging_filter.as_ref().map(|filter| SearchOptions {
                k,
                filter: filter.clone(),
            });
            let semantic_fut = async {
                let Some(vector) = &query_vector else {
                    return Ok::<_, Error>((Vec::new(), 0));
                };
                let t = Instant::now();
                let mut hits = self
                    .content
                    .search_vector(workspace, vector, &options)
                    .await?;
                if let Some(lagging) = &lagging_options {
                    let more = self
                        .content
                        .search_vector(workspace, vector, lagging)
                        .await?;
                    hits = merge_rankings(hits, more, k);
                }
                Ok((hits, micros(t)))
            };
            let lexical_fut = async {
                if !run_lexical {
                    return Ok::<_, Error>((Vec::new(), 0));
                }
                let t = Instant::now();
                let mut hits = self
                    .content
                    .search_lexical(workspace, &request.query, &options)
                    .await?;
                if let Some(lagging) = &lagging_options {
                    let more = self
                        .content
                        .search_lexical(workspace, &request.query, lagging)
                        .await?;
                    hits = merge_rankings(hits, more, k);
                }
                Ok((hits, micros(t)))
            };
            let (sem, lex) = futures_join(semantic_fut, lexical_fut).await;
            let (semantic, semantic_us) = sem?;
            let (lexical, lexical_us) = lex?;
            timings.semantic_us += semantic_us;
            timings.lexical_us += lexical_us;
            let (lex_full, sem_full) = (lexical.len() >= k, semantic.len() >= k);
            let mut lexical: Vec<ScoredKey> = lexical.into_iter().filter(|h| keep(h)).collect();
            let mut semantic: Vec<ScoredKey> = semantic.into_iter().filter(|h| keep(h)).collect();
            if post_filter.is_none() {
                break (lexical, semantic);
            }
            let t = Instant::now();
            let mut keys: Vec<MessageKey> = lexical
                .iter()
                .chain(semantic.iter())
                .map(|h| h.key.clone())
                .collect();
            keys.sort();
            keys.dedup();
            let passing: HashSet<MessageKey> = self
                .meta
                .get_messages(workspace, &keys)
                .await?
                .into_iter()
                .filter(|d| request.filter.metadata_only_matches(&d.meta))
                .map(|d| d.meta.key)
                .collect();
            timings.metadata_us += micros(t);
            lexical.retain(|h| passing.contains(&h.key));
            semantic.retain(|h| passing.contains(&h.key));
            // Deep enough when each ranking either kept `depth` hits or was exhausted.
            let enough =
                (!lex_full || lexical.len() >= depth) && (!sem_full || semantic.len() >= depth);
            if enough || k >= POST_FILTER_MAX_K {
                break (lexical, semantic);
            }
            k = (k * 4).min(POST_FILTER_MAX_K);
        };

        // People and channels named plainly in a hybrid question: their best messages join both
        // rankings and are boosted (two more searches for each, only when one is named).
        let simple_path = post_filter.is_none() && candidates.is_none() && lagging_filter.is_none();
        let mut named = HashSet::new();
        let mut named_in = HashSet::new();
        let (mut lexical, mut semantic) = (lexical, semantic);
        if mode == SearchMode::Hybrid && simple_path && self.fusion.named_boost > 0.0 {
            let t = Instant::now();
            // (filter, words to match, whether it names channels rather than people)
            let mut searches: Vec<(ContentFilter, String, bool)> = Vec::new();
            if request.filter.users.is_none() {
                let users = self.meta.list_users(workspace).await?;
                let mentions = find_mentions(&request.query, &users);
                if !mentions.users.is_empty() {
                    searches.push((
                        ContentFilter {
                            users: Some(mentions.users),
                            ..content_filter.clone()
                        },
                        mentions.rest,
                        false,
                    ));
                }
            }
            if request.filter.channels.is_none() {
                // Only channels the caller may read can be named.
                let visible: Vec<&Channel> = allowed
                    .channels
                    .values()
                    .filter(|c| allowed.allows(&c.id))
                    .collect();
                let named_channels = find_channel_mentions(&request.query, &visible);
                if !named_channels.channels.is_empty() {
                    searches.push((
                        ContentFilter {
                            channels: Some(named_channels.channels),
                            ..content_filter.clone()
                        },
                        named_channels.rest,
                        true,
                    ));
                }
            }
            timings.metadata_us += micros(t);
            for (filter, rest, channels) in searches {
                let options = SearchOptions { k: depth, filter };
                let t = Instant::now();
                let lex_more = if rest.trim().is_empty() {
                    Vec::new()
                } else {
                    self.content
                        .search_lexical(workspace, &rest, &options)
                        .await?
                };
                timings.lexical_us += micros(t);
                let t = Instant::now();
                let sem_more = match &query_vector {
                    Some(v) => self.content.search_vector(workspace, v, &options).await?,
                    None => Vec::new(),
                };
                timings.semantic_us += micros(t);
                let lex_more: Vec<ScoredKey> = lex_more.into_iter().filter(|h| keep(h)).collect();
                let sem_more: Vec<ScoredKey> = sem_more.into_iter().filter(|h| keep(h)).collect();
                let set = if channels { &mut named_in } else { &mut named };
                set.extend(lex_more.iter().chain(&sem_more).map(|h| h.key.clone()));
                let (nl, ns) = (
                    lexical.len() + lex_more.len(),
                    semantic.len() + sem_more.len(),
                );
                lexical = merge_rankings(lexical, lex_more, nl);
                semantic = merge_rankings(semantic, sem_more, ns);
            }
        }
        let mut ranked = match mode {
            SearchMode::Hybrid => fuse(&lexical, &semantic, &self.fusion),
            SearchMode::Lexical => single(&lexical, true, &self.fusion),
            SearchMode::Semantic => single(&semantic, false, &self.fusion),
        };
        if !named.is_empty() {
            boost_named(&mut ranked, &named, &self.fusion, false);
        }
        if !named_in.is_empty() {
            boost_named(&mut ranked, &named_in, &self.fusion, true);
        }
        // A relative date written plainly (`last week`) lifts what was said then; `during:` and
        // the request's own time filter are hard filters and take precedence.
        if mode == SearchMode::Hybrid
            && self.fusion.time_boost > 0.0
            && request.filter.time == TimeRange::default()
        {
            if let Some(range) = find_time_hint(&request.query, chrono::Utc::now().date_naive()) {
                boost_in_time(&mut ranked, &range, &self.fusion);
            }
        }
        if let Some(parsed) = &text_conditions {
            // Phrases and excluded words are checked on the ranked texts: work in proportion to
            // the ranking's depth, never to the collection.
            let t = Instant::now();
            let keys: Vec<MessageKey> = ranked.iter().map(|(k, _)| k.clone()).collect();
            let passing: HashSet<MessageKey> = self
                .content
                .get(workspace, &keys)
                .await?
                .into_iter()
                .filter(|d| parsed.text_matches(&d.content.text))
                .map(|d| d.content.key)
                .collect();
            ranked.retain(|(k, _)| passing.contains(k));
            timings.lexical_us += micros(t);
        }
        let has_more = ranked.len() > offset + request.limit;
        let page: Vec<_> = ranked
            .into_iter()
            .skip(offset)
            .take(request.limit)
            .collect();

        let t = Instant::now();
        let keys: Vec<MessageKey> = page.iter().map(|(k, _)| k.clone()).collect();
        let views = load_views(
            self.meta.as_ref(),
            self.content.as_ref(),
            &ws,
            &allowed,
            &keys,
        )
        .await?;
        let parents = self.parent_summaries(&ws, &allowed, &views).await?;
        let terms = query_terms(&request.query);
        let mut hits = Vec::with_capacity(views.len());
        for view in views {
            let Some((_, why)) = page.iter().find(|(k, _)| k == &view.key) else {
                continue;
            };
            let parent = view
                .thread_parent
                .as_ref()
                .and_then(|p| parents.iter().find(|s| &s.key == p))
                .cloned();
            let snippet = snippet(
                view.text.as_deref().unwrap_or_default(),
                &terms,
                self.snippet_chars,
            );
            hits.push(SearchHit {
                message: view,
                parent,
                snippet,
                why: *why,
            });
        }
        timings.enrich_us = micros(t);
        timings.total_us = micros(started);
        Ok(SearchResponse {
            hits,
            next_cursor: has_more.then(|| format!("offset:{}", offset + request.limit)),
            mode,
            degraded,
            candidates: candidate_count,
            plan,
            timings,
        })
    }

    /// Turns the query's modifiers into conditions of the request's filter (each narrows what
    /// the request already asks) and leaves only the words to rank by in its query.
    ///
    /// # Errors
    /// `InvalidInput` when only modifiers are left (nothing to rank by); `NotFound` for a person
    /// or a channel the scope cannot see (a private channel's name is never confirmed to a
    /// non-member).
    async fn apply_modifiers(
        &self,
        workspace: &WorkspaceId,
        allowed: &Allowed,
        request: &mut SearchRequest,
        parsed: &ParsedQuery,
    ) -> Result<()> {
        if parsed.text.trim().is_empty() {
            return Err(Error::invalid_input(
                "the search query holds only modifiers: add words to search for",
            )
            .with_context("field", "query"));
        }
        let f = &mut request.filter;
        if !parsed.from.is_empty() {
            let mut users = Vec::new();
            for name in &parsed.from {
                users.push(resolve_user(self.meta.as_ref(), workspace, name).await?);
            }
            f.users = Some(match f.users.take() {
                Some(given) => given.into_iter().filter(|u| users.contains(u)).collect(),
                None => users,
            });
        }
        if !parsed.channels.is_empty() {
            let mut ids = Vec::new();
            for name in &parsed.channels {
                let found = allowed
                    .channels
                    .values()
                    .filter(|c| allowed.allows(&c.id))
                    .find(|c| c.name.eq_ignore_ascii_case(name) || c.id.as_str() == name)
                    .ok_or_else(|| {
                        Error::not_found(format!("no channel #{name} in workspace {workspace}"))
                            .with_context("field", "query")
                    })?;
                ids.push(found.id.clone());
            }
            f.channels = Some(match f.channels.take() {
                Some(given) => given.into_iter().filter(|c| ids.contains(c)).collect(),
                None => ids,
            });
        }
        if let Some(s) = parsed.time.start {
            f.time.start = Some(f.time.start.map_or(s, |t| t.max(s)));
        }
        if let Some(e) = parsed.time.end {
            f.time.end = Some(f.time.end.map_or(e, |t| t.min(e)));
        }
        check_time_range(&f.time, "query")?;
        if parsed.has_link {
            f.has_links = Some(true);
        }
        if parsed.has_reaction {
            f.has_reactions = Some(true);
        }
        if parsed.has_file {
            f.has_files = Some(true);
        }
        if parsed.is_thread && f.thread.is_none() {
            f.thread = Some(ThreadPart::InThread);
        }
        request.query = parsed.text.clone();
        Ok(())
    }

    async fn parent_summaries(
        &self,
        ws: &Workspace,
        allowed: &Allowed,
        views: &[MessageView],
    ) -> Result<Vec<ParentSummary>> {
        let mut keys: Vec<MessageKey> = views
            .iter()
            .filter_map(|v| v.thread_parent.clone())
            .collect();
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let parents = load_views(
            self.meta.as_ref(),
            self.content.as_ref(),
            ws,
            allowed,
            &keys,
        )
        .await?;
        Ok(parents
            .into_iter()
            .map(|p| ParentSummary {
                excerpt: p.text.as_deref().map(|t| excerpt(t, 160)),
                user_name: p.user_name,
                permalink: p.permalink,
                key: p.key,
            })
            .collect())
    }

    /// Every key matching a metadata filter, paging through the store.
    pub(crate) async fn all_keys(
        &self,
        workspace: &WorkspaceId,
        filter: &MessageFilter,
    ) -> Result<Vec<MessageKey>> {
        let mut out = Vec::new();
        let mut page = PageRequest::first(PAGE);
        loop {
            let keys = self.meta.filter_messages(workspace, filter, &page).await?;
            let n = keys.len();
            page.after = keys.last().cloned();
            out.extend(keys);
            if n < PAGE {
                return Ok(out);
            }
        }
    }

    /// Checks a key names this workspace and a channel the scope may read; `NotFound` otherwise
    /// (a viewer learns nothing about channels they cannot see).
    async fn check_key(&self, key: &MessageKey, scope: &Scope) -> Result<(Workspace, Allowed)> {
        let ws = self.workspace(&key.workspace).await?;
        let allowed = Allowed::compute(self.meta.as_ref(), &key.workspace, scope).await?;
        if !allowed.allows(&key.channel) {
            return Err(
                Error::not_found(format!("message {key} not found")).with_context("key", key)
            );
        }
        Ok((ws, allowed))
    }

    /// A message's whole thread (its parent and every reply), oldest first. For a message that is
    /// not in a thread, the thread is the message alone.
    ///
    /// # Errors
    /// `NotFound` when the message does not exist or the scope may not read its channel.
    pub async fn thread(&self, key: &MessageKey, scope: &Scope) -> Result<Thread> {
        let (ws, allowed) = self.check_key(key, scope).await?;
        let details = self
            .meta
            .get_messages(&ws.id, std::slice::from_ref(key))
            .await?;
        let Some(d) = details.into_iter().next() else {
            return Err(
                Error::not_found(format!("message {key} not found")).with_context("key", key)
            );
        };
        let parent_ts = d.meta.thread_ts.clone().unwrap_or_else(|| key.ts.clone());
        let parent = MessageKey::new(ws.id.clone(), key.channel.clone(), parent_ts.clone());
        let filter = MessageFilter {
            channels: Some(vec![key.channel.clone()]),
            thread: Some(ThreadFilter::Thread(parent_ts)),
            ..MessageFilter::default()
        };
        let mut keys = self.all_keys(&ws.id, &filter).await?;
        if !keys.contains(key) {
            keys.push(key.clone());
        }
        keys.sort_by(|a, b| a.ts.cmp(&b.ts));
        let messages = load_views(
            self.meta.as_ref(),
            self.content.as_ref(),
            &ws,
            &allowed,
            &keys,
        )
        .await?;
        Ok(Thread { parent, messages })
    }

    /// The `n` top-level messages before and after a message in its channel, and the message.
    ///
    /// # Errors
    /// `NotFound` when the message does not exist or the scope may not read its channel;
    /// `InvalidInput` when `n` is over 500.
    pub async fn context(&self, key: &MessageKey, n: usize, scope: &Scope) -> Result<Context> {
        if n > 500 {
            return Err(
                Error::invalid_input(format!("context size {n} is over 500"))
                    .with_context("field", "n"),
            );
        }
        let (ws, allowed) = self.check_key(key, scope).await?;
        if self
            .meta
            .get_messages(&ws.id, std::slice::from_ref(key))
            .await?
            .is_empty()
        {
            return Err(
                Error::not_found(format!("message {key} not found")).with_context("key", key)
            );
        }
        let mut keys = self.before(&ws.id, &key.channel, &key.ts, n).await?;
        keys.push(key.clone());
        if n > 0 {
            let filter = MessageFilter {
                channels: Some(vec![key.channel.clone()]),
                thread: Some(ThreadFilter::TopLevel),
                ..MessageFilter::default()
            };
            let page = PageRequest {
                after: Some(key.clone()),
                limit: n,
            };
            keys.extend(self.meta.filter_messages(&ws.id, &filter, &page).await?);
        }
        let messages = load_views(
            self.meta.as_ref(),
            self.content.as_ref(),
            &ws,
            &allowed,
            &keys,
        )
        .await?;
        Ok(Context {
            target: key.clone(),
            messages,
        })
    }

    /// The `n` top-level messages of a channel just before `ts`, oldest first. Pages only go
    /// forward, so this widens a time window backwards until it holds `n` (or everything).
    async fn before(
        &self,
        workspace: &WorkspaceId,
        channel: &ChannelId,
        ts: &Ts,
        n: usize,
    ) -> Result<Vec<MessageKey>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let end = ts.as_micros();
        let mut window: i64 = 3_600_000_000; // one hour
        loop {
            let start = end.saturating_sub(window).max(0);
            let filter = MessageFilter {
                channels: Some(vec![channel.clone()]),
                thread: Some(ThreadFilter::TopLevel),
                time: TimeRange {
                    start: (start > 0).then(|| Ts::from_micros(start).to_datetime()),
                    end: Some(ts.to_datetime()),
                },
                ..MessageFilter::default()
            };
            let count = self.meta.count_messages(workspace, &filter).await?;
            if count as usize >= n || start == 0 {
                let mut keys = self.all_keys(workspace, &filter).await?;
                keys.retain(|k| &k.ts < ts);
                let skip = keys.len().saturating_sub(n);
                return Ok(keys.split_off(skip));
            }
            window = window.saturating_mul(4);
        }
    }
}

/// The top `k` of two rankings of the same content store (scores on one scale), each key once.
fn merge_rankings(a: Vec<ScoredKey>, b: Vec<ScoredKey>, k: usize) -> Vec<ScoredKey> {
    let mut all: Vec<ScoredKey> = a.into_iter().chain(b).collect();
    all.sort_by(|x, y| y.score.total_cmp(&x.score).then_with(|| x.key.cmp(&y.key)));
    let mut seen = HashSet::new();
    all.retain(|h| seen.insert(h.key.clone()));
    all.truncate(k);
    all
}

/// Builds the metadata filter for a search.
pub(crate) fn message_filter(f: &SearchFilter, channels: Vec<ChannelId>) -> MessageFilter {
    MessageFilter {
        channels: Some(channels),
        users: f.users.clone(),
        channel_kinds: None,
        time: f.time.clone(),
        thread: f.thread.as_ref().map(ThreadPart::to_core),
        has_reactions: f.has_reactions,
        has_files: f.has_files,
        has_links: f.has_links,
        has_attachments: None,
        min_reactions: f.min_reactions,
    }
}

/// Builds the content filter for the conditions the content store answers exactly.
fn content_filter(f: &SearchFilter, channels: Vec<ChannelId>) -> ContentFilter {
    let (thread_ts, is_reply) = match &f.thread {
        None => (None, None),
        Some(ThreadPart::TopLevel) => (None, Some(false)),
        Some(ThreadPart::InThread) => (None, Some(true)),
        Some(ThreadPart::Thread(t)) => (Some(t.clone()), None),
    };
    ContentFilter {
        keys: None,
        channels: Some(channels),
        users: f.users.clone(),
        time: f.time.clone(),
        thread_ts,
        is_reply,
        has_files: f.has_files,
        has_links: f.has_links,
        min_reactions: None,
        visibility: None,
    }
}

fn parse_cursor(cursor: Option<&str>) -> Result<usize> {
    let Some(c) = cursor else { return Ok(0) };
    c.strip_prefix("offset:")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n <= 100_000)
        .ok_or_else(|| {
            Error::invalid_input(format!("search cursor {c:?} is not one this engine issued"))
                .with_context("field", "cursor")
        })
}

/// The first `max` characters of a text, on one line, with `…` when cut.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// An inverted range matches nothing; it is almost always `since` and `until` swapped, so it
/// is refused rather than answered with silence.
pub(crate) fn check_time_range(range: &TimeRange, field: &str) -> Result<()> {
    match (range.start, range.end) {
        (Some(start), Some(end)) if start > end => Err(Error::invalid_input(format!(
            "time range starts ({}) after it ends ({})",
            start.to_rfc3339(),
            end.to_rfc3339()
        ))
        .with_context("field", field)),
        _ => Ok(()),
    }
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Runs two futures concurrently (both make progress while either waits on I/O).
async fn futures_join<A, B>(a: A, b: B) -> (A::Output, B::Output)
where
    A: std::future::Future,
    B: std::future::Future,
{
    futures::join!(a, b)
}
