//! The versioned JSON API under `/api/v1/`. Bodies are chatvault-query's serde types; every
//! handler reads with the request's [`Viewer`], so nothing outside its scope comes back (a
//! channel it may not read is answered like one that does not exist: 404).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chatvault_core::{ChannelId, MessageKey, TimeRange, Ts, UserId, WorkspaceId};
use chatvault_query::{
    AskRequest, Context, Digest, DigestRequest, PrReviewReport, PrReviewRequest, Scope,
    SearchFilter, SearchMode, SearchRequest, SearchResponse, Thread, MAX_LIMIT,
};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::auth::Viewer;
use crate::error::ApiError;
use crate::openapi;
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/workspaces", get(workspaces))
        .route("/api/v1/workspaces/{ws}/search", get(search))
        .route("/api/v1/workspaces/{ws}/thread/{channel}/{ts}", get(thread))
        .route(
            "/api/v1/workspaces/{ws}/context/{channel}/{ts}",
            get(context),
        )
        .route("/api/v1/workspaces/{ws}/digest", get(digest))
        .route("/api/v1/workspaces/{ws}/prs", get(prs))
        .route("/api/v1/workspaces/{ws}/ask", post(ask))
        .route("/api/v1/workspaces/{ws}/stats", get(stats))
        .route("/api/v1/workspaces/{ws}/channels", get(channels))
        .route(
            "/api/v1/workspaces/{ws}/channels/{channel}/days/{day}",
            get(channel_day),
        )
}

type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// A request's query parameters: unknown ones are refused (a typo must not silently widen a
/// search), and each error names its parameter.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(pairs: Pairs, known: &[&str]) -> Result<Self, ApiError> {
        let Query(pairs) = pairs.map_err(|e| ApiError::bad_request(e.body_text()))?;
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{k}` (known: {})",
                known.join(", ")
            )));
        }
        Ok(Params(pairs))
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.all(name).as_slice() {
            [] => Ok(None),
            [v] => Ok(Some(v)),
            _ => Err(ApiError::bad_request(format!(
                "query parameter `{name}` is given more than once"
            ))),
        }
    }

    fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.one(name)?
            .map(|v| {
                parse_time(v).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "query parameter `{name}`: {v:?} is not a date (use YYYY-MM-DD or RFC 3339, \
                         e.g. 2024-01-31T09:00:00Z)"
                    ))
                })
            })
            .transpose()
    }

    fn number(&self, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        let Some(v) = self.one(name)? else {
            return Ok(default);
        };
        v.parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "query parameter `{name}`: {v:?} is not a number in 1..={max}"
                ))
            })
    }
}

/// `YYYY-MM-DD` (midnight UTC) or RFC 3339.
pub(crate) fn parse_time(given: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = NaiveDate::parse_from_str(given, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| Utc.from_utc_datetime(&t));
    }
    DateTime::parse_from_rfc3339(given)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The workspace named in the path, if it exists.
async fn workspace(state: &AppState, ws: &str) -> Result<WorkspaceId, ApiError> {
    let not_found = || ApiError::not_found(format!("no workspace {ws:?}"));
    let id = WorkspaceId::new(ws).map_err(|_| not_found())?;
    state
        .meta()
        .get_workspace(&id)
        .await?
        .ok_or_else(not_found)?;
    Ok(id)
}

/// A channel given as `#name`, `name` or id, among those the viewer may read (any other is
/// "not found", whether it exists or not).
async fn channel(
    state: &AppState,
    ws: &WorkspaceId,
    given: &str,
    viewer: &Viewer,
) -> Result<ChannelId, ApiError> {
    let name = given.trim_start_matches('#');
    state
        .engine()
        .channels(ws, &viewer.scope)
        .await?
        .into_iter()
        .find(|c| c.id.as_str() == name || c.name.eq_ignore_ascii_case(name))
        .map(|c| c.id)
        .ok_or_else(|| ApiError::not_found(format!("no channel {given:?} in workspace {ws}")))
}

/// A user given as `@handle`, display or real name, or id.
async fn user(state: &AppState, ws: &WorkspaceId, given: &str) -> Result<UserId, ApiError> {
    Ok(chatvault_query::resolve_user(state.meta().as_ref(), ws, given).await?)
}

fn ts(given: &str) -> Result<Ts, ApiError> {
    Ts::new(given).map_err(|e| ApiError::bad_request(format!("path parameter `ts`: {e}")))
}

/// The workspaces.
#[utoipa::path(get, path = "/api/v1/workspaces", tag = "workspaces",
    responses((status = 200, description = "`{\"workspaces\": [chatvault_core::Workspace]}`", body = Value)))]
pub(crate) async fn workspaces(
    State(state): State<AppState>,
    _viewer: Viewer,
) -> Result<Json<Value>, ApiError> {
    let workspaces = state.meta().list_workspaces().await?;
    Ok(Json(json!({ "workspaces": workspaces })))
}

/// Permission-aware search (the CLI's `search`).
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/search", tag = "search",
    params(
        ("ws" = String, Path, description = "workspace id"),
        ("q" = String, Query, description = "the words to look for"),
        ("mode" = Option<String>, Query, description = "hybrid (default), semantic or lexical"),
        ("channel" = Option<Vec<String>>, Query, description = "only these channels (id or name; repeatable)"),
        ("user" = Option<Vec<String>>, Query, description = "only these authors (id or name; repeatable)"),
        ("since" = Option<String>, Query, description = "posted at or after (YYYY-MM-DD or RFC 3339)"),
        ("until" = Option<String>, Query, description = "posted before (YYYY-MM-DD or RFC 3339)"),
        ("limit" = Option<usize>, Query, description = "hits per page, 1..=1000 (default 10)"),
        ("cursor" = Option<String>, Query, description = "the previous page's next_cursor"),
    ),
    responses(
        (status = 200, description = "chatvault_query::SearchResponse", body = Value),
        (status = 400, description = "a bad parameter", body = Value),
        (status = 404, description = "unknown workspace, channel or user", body = Value),
    ))]
pub(crate) async fn search(
    State(state): State<AppState>,
    Path(ws): Path<String>,
    viewer: Viewer,
    query: Pairs,
) -> Result<Json<SearchResponse>, ApiError> {
    let p = Params::new(
        query,
        &[
            "q", "mode", "channel", "user", "since", "until", "limit", "cursor",
        ],
    )?;
    let q = p
        .one("q")?
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("query parameter `q` is required"))?
        .to_string();
    let mode = match p.one("mode")? {
        None | Some("hybrid") => SearchMode::Hybrid,
        Some("semantic") => SearchMode::Semantic,
        Some("lexical") => SearchMode::Lexical,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "query parameter `mode`: {other:?} is not hybrid, semantic or lexical"
            )))
        }
    };
    let limit = p.number("limit", 10, MAX_LIMIT)?;
    let time = TimeRange {
        start: p.time("since")?,
        end: p.time("until")?,
    };
    let cursor = p.one("cursor")?.map(str::to_string);
    let ws = workspace(&state, &ws).await?;
    let mut filter = SearchFilter {
        time,
        ..SearchFilter::default()
    };
    let channels = p.all("channel");
    if !channels.is_empty() {
        let mut ids = Vec::with_capacity(channels.len());
        for c in channels {
            ids.push(channel(&state, &ws, c, &viewer).await?);
        }
        filter.channels = Some(ids);
    }
    let users = p.all("user");
    if !users.is_empty() {
        let mut ids = Vec::with_capacity(users.len());
        for u in users {
            ids.push(user(&state, &ws, u).await?);
        }
        filter.users = Some(ids);
    }
    let request = SearchRequest::new(q)
        .mode(mode)
        .filter(filter)
        .limit(limit)
        .cursor(cursor)
        .scope(viewer.scope);
    Ok(Json(state.engine().search(&ws, request).await?))
}

/// A message's whole thread, oldest first.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/thread/{channel}/{ts}", tag = "messages",
    params(
        ("ws" = String, Path, description = "workspace id"),
        ("channel" = String, Path, description = "channel id or name"),
        ("ts" = String, Path, description = "any message of the thread (Slack ts)"),
    ),
    responses(
        (status = 200, description = "chatvault_query::Thread", body = Value),
        (status = 404, description = "unknown workspace, channel or message", body = Value),
    ))]
pub(crate) async fn thread(
    State(state): State<AppState>,
    Path((ws, ch, t)): Path<(String, String, String)>,
    viewer: Viewer,
) -> Result<Json<Thread>, ApiError> {
    let ws = workspace(&state, &ws).await?;
    let ch = channel(&state, &ws, &ch, &viewer).await?;
    let key = MessageKey::new(ws, ch, ts(&t)?);
    Ok(Json(state.engine().thread(&key, &viewer.scope).await?))
}

/// The top-level messages around one message in its channel.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/context/{channel}/{ts}", tag = "messages",
    params(
        ("ws" = String, Path, description = "workspace id"),
        ("channel" = String, Path, description = "channel id or name"),
        ("ts" = String, Path, description = "the message (Slack ts)"),
        ("n" = Option<usize>, Query, description = "messages on each side, 1..=500 (default 5)"),
    ),
    responses(
        (status = 200, description = "chatvault_query::Context", body = Value),
        (status = 404, description = "unknown workspace, channel or message", body = Value),
    ))]
pub(crate) async fn context(
    State(state): State<AppState>,
    Path((ws, ch, t)): Path<(String, String, String)>,
    viewer: Viewer,
    query: Pairs,
) -> Result<Json<Context>, ApiError> {
    let p = Params::new(query, &["n"])?;
    let n = p.number("n", 5, 500)?;
    let ws = workspace(&state, &ws).await?;
    let ch = channel(&state, &ws, &ch, &viewer).await?;
    let key = MessageKey::new(ws, ch, ts(&t)?);
    Ok(Json(state.engine().context(&key, n, &viewer.scope).await?))
}

/// A newsletter of a time range (default: the 7 days before `until`, which defaults to now).
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/digest", tag = "reports",
    params(
        ("ws" = String, Path, description = "workspace id"),
        ("since" = Option<String>, Query, description = "YYYY-MM-DD or RFC 3339 (default: until - 7 days)"),
        ("until" = Option<String>, Query, description = "YYYY-MM-DD or RFC 3339 (default: now)"),
        ("limit" = Option<usize>, Query, description = "rows per section, 1..=100 (default 5)"),
    ),
    responses((status = 200, description = "chatvault_query::Digest", body = Value)))]
pub(crate) async fn digest(
    State(state): State<AppState>,
    Path(ws): Path<String>,
    viewer: Viewer,
    query: Pairs,
) -> Result<Json<Digest>, ApiError> {
    let p = Params::new(query, &["since", "until", "limit"])?;
    let until = p.time("until")?.unwrap_or_else(Utc::now);
    let since = p.time("since")?.unwrap_or(until - Duration::days(7));
    let limit = p.number("limit", 5, 100)?;
    let ws = workspace(&state, &ws).await?;
    let mut request = DigestRequest::new(TimeRange::between(since, until));
    request.limit = limit;
    request.scope = viewer.scope;
    Ok(Json(state.engine().digest(&ws, request).await?))
}

/// Review requests (GitHub/GitLab links) and unanswered questions.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/prs", tag = "reports",
    params(
        ("ws" = String, Path, description = "workspace id"),
        ("since" = Option<String>, Query, description = "YYYY-MM-DD or RFC 3339"),
        ("until" = Option<String>, Query, description = "YYYY-MM-DD or RFC 3339"),
        ("limit" = Option<usize>, Query, description = "at most this many of each, 1..=500 (default 20)"),
    ),
    responses((status = 200, description = "chatvault_query::PrReviewReport", body = Value)))]
pub(crate) async fn prs(
    State(state): State<AppState>,
    Path(ws): Path<String>,
    viewer: Viewer,
    query: Pairs,
) -> Result<Json<PrReviewReport>, ApiError> {
    let p = Params::new(query, &["since", "until", "limit"])?;
    let range = TimeRange {
        start: p.time("since")?,
        end: p.time("until")?,
    };
    let limit = p.number("limit", 20, 500)?;
    let ws = workspace(&state, &ws).await?;
    let mut request = PrReviewRequest::new(range);
    request.limit = limit;
    request.scope = viewer.scope;
    Ok(Json(state.engine().pr_reviews(&ws, request).await?))
}

/// A question for [`ask`].
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AskBody {
    /// The question.
    question: String,
    /// How many passages, 1..=50 (default 5).
    #[serde(default)]
    passages: Option<usize>,
    /// Messages of context on each side of a passage, 0..=20 (default 2).
    #[serde(default)]
    context: Option<usize>,
}

/// A question: with an answerer configured, a grounded answer (streamed as server-sent events
/// when the client accepts `text/event-stream`: `token` events `{"text": …}` as the model writes,
/// then one `answer` event, a `chatvault_answer::GroundedAnswer`); without one, retrieval:
/// passages with context and a prompt for a language model.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/ask", tag = "search",
    params(("ws" = String, Path, description = "workspace id")),
    request_body = AskBody,
    responses(
        (status = 200, description = "chatvault_answer::GroundedAnswer with an answerer (or an SSE stream of `token` events and a final `answer` event when `Accept: text/event-stream`), else chatvault_query::Retrieval", body = Value),
        (status = 400, description = "a bad body (a question over 4,000 characters, say)", body = Value),
        (status = 502, description = "the language model failed: a chatvault_answer::GroundedAnswer whose `error` names the endpoint and the cause, with the passages", body = Value),
    ))]
pub(crate) async fn ask(
    State(state): State<AppState>,
    Path(ws): Path<String>,
    viewer: Viewer,
    headers: HeaderMap,
    body: Result<Json<AskBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let ws = workspace(&state, &ws).await?;
    let mut request = AskRequest::new(body.question);
    if let Some(n) = body.passages {
        request.passages = n;
    }
    if let Some(n) = body.context {
        request.context = n;
    }
    request.scope = viewer.scope;
    // Retrieve first: a bad question is a 400, before any stream starts.
    let retrieval = state.engine().ask(&ws, request).await?;
    let Some(answerer) = state.config().answerer.clone() else {
        return Ok(Json(retrieval).into_response());
    };
    let gate = state.inner.relevance;
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !wants_stream {
        let noop = |_: &str| {};
        let answer = chatvault_answer::generate(retrieval, answerer.as_ref(), &gate, &noop).await;
        let status = if answer.outcome == chatvault_answer::Outcome::ModelFailed {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::OK
        };
        return Ok((status, Json(answer)).into_response());
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let generation = tokio::spawn(async move {
        let tokens = tx.clone();
        let on_token = move |t: &str| {
            let _ = tokens.send(
                Event::default()
                    .event("token")
                    .data(json!({ "text": t }).to_string()),
            );
        };
        let answer =
            chatvault_answer::generate(retrieval, answerer.as_ref(), &gate, &on_token).await;
        let data = serde_json::to_string(&answer).unwrap_or_else(|e| {
            json!({"error": format!("cannot encode the answer: {e}")}).to_string()
        });
        let _ = tx.send(Event::default().event("answer").data(data));
    });
    // The stream owns the generation: when the client goes away, axum drops the stream, the
    // guard aborts the task, and the request to the model is dropped (its connection closed).
    let guard = AbortOnDrop(generation);
    let events = futures::stream::poll_fn(move |cx| {
        let _owned = &guard;
        rx.poll_recv(cx)
    })
    .map(Ok::<_, Infallible>);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The archive's counts. Everyone sees how many channels and messages they may read; an admin
/// also sees the whole metadata store's counts and the outbox (private channels included).
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/stats", tag = "workspaces",
    params(("ws" = String, Path, description = "workspace id")),
    responses((status = 200, description = "`{workspace, visible: {channels, messages}}`, plus `metadata: chatvault_core::WorkspaceStats, outbox: chatvault_core::OutboxStats` for an admin", body = Value)))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    Path(ws): Path<String>,
    viewer: Viewer,
) -> Result<Json<Value>, ApiError> {
    let ws = workspace(&state, &ws).await?;
    let channels = state.engine().channels(&ws, &viewer.scope).await?;
    let messages: u64 = if channels.is_empty() {
        0
    } else {
        let options = chatvault_core::AggregateOptions {
            range: TimeRange::all(),
            channels: Some(channels.iter().map(|c| c.id.clone()).collect()),
            limit: channels.len(),
        };
        state
            .meta()
            .channel_activity(&ws, &options)
            .await?
            .iter()
            .map(|a| a.messages)
            .sum()
    };
    let mut body = json!({
        "workspace": ws,
        "visible": { "channels": channels.len(), "messages": messages },
    });
    if viewer.scope == Scope::Admin {
        body["metadata"] = json!(state.meta().stats(&ws).await?);
        body["outbox"] = json!(state.meta().outbox_stats(Some(ws.clone())).await?);
    }
    Ok(Json(body))
}

/// The channels the viewer may read, by name, each with its message count (messages that count
/// as activity: joins and topic changes are not counted).
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/channels", tag = "browse",
    params(("ws" = String, Path, description = "workspace id")),
    responses((status = 200, description = "`{\"channels\": [chatvault_core::Channel + \"messages\"]}`", body = Value)))]
pub(crate) async fn channels(
    State(state): State<AppState>,
    Path(ws): Path<String>,
    viewer: Viewer,
) -> Result<Json<Value>, ApiError> {
    let ws = workspace(&state, &ws).await?;
    let channels = state.engine().channels(&ws, &viewer.scope).await?;
    let options = chatvault_core::AggregateOptions {
        range: TimeRange::all(),
        channels: Some(channels.iter().map(|c| c.id.clone()).collect()),
        limit: channels.len().max(1),
    };
    let counts: std::collections::HashMap<ChannelId, u64> = if channels.is_empty() {
        Default::default()
    } else {
        state
            .meta()
            .channel_activity(&ws, &options)
            .await?
            .into_iter()
            .map(|a| (a.channel, a.messages))
            .collect()
    };
    let mut out = Vec::with_capacity(channels.len());
    for c in channels {
        let messages = counts.get(&c.id).copied().unwrap_or(0);
        let mut v = serde_json::to_value(&c)
            .map_err(|e| ApiError::from(chatvault_core::Error::backend_error(e.to_string())))?;
        if let Value::Object(m) = &mut v {
            m.insert("messages".into(), json!(messages));
        }
        out.push(v);
    }
    Ok(Json(json!({ "channels": out })))
}

/// One day (UTC) of a channel: its messages, thread replies included, oldest first.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/channels/{channel}/days/{day}", tag = "browse",
    params(
        ("ws" = String, Path, description = "workspace id"),
        ("channel" = String, Path, description = "channel id or name"),
        ("day" = String, Path, description = "YYYY-MM-DD (UTC)"),
    ),
    responses(
        (status = 200, description = "`{channel, day, messages: [chatvault_query::MessageView]}`", body = Value),
        (status = 400, description = "a bad day", body = Value),
        (status = 404, description = "unknown workspace or channel", body = Value),
    ))]
pub(crate) async fn channel_day(
    State(state): State<AppState>,
    Path((ws, ch, day)): Path<(String, String, String)>,
    viewer: Viewer,
) -> Result<Json<Value>, ApiError> {
    let start = NaiveDate::parse_from_str(&day, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t))
        .ok_or_else(|| {
            ApiError::bad_request(format!("path parameter `day`: {day:?} is not YYYY-MM-DD"))
        })?;
    let ws = workspace(&state, &ws).await?;
    let ch = channel(&state, &ws, &ch, &viewer).await?;
    let range = TimeRange::between(start, start + Duration::days(1));
    let messages = state
        .engine()
        .channel_messages(&ws, &ch, &range, &viewer.scope)
        .await?;
    Ok(Json(
        json!({ "channel": ch, "day": day, "messages": messages }),
    ))
}
