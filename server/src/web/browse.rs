//! Browsing: the workspaces, a workspace's channels and people, a channel by day, a thread, a
//! message in its context.

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect};
use chatvault_core::{ChannelKind, LatestOptions, MessageKey, TimeRange, Ts, WorkspaceId};
use chatvault_query::MessageView;
use chrono::NaiveDate;
use maud::{html, Markup};
use serde::Deserialize;

use super::days::{day_start, first_day_from, last_day_before};
use super::layout::Page;
use super::render::{self, anchor, avatar, Ctx};
use super::timing::Timing;
use super::{
    channel_url, channels, find_channel, html_response, workspace, PageError, PageResult, Reader,
};
use crate::state::AppState;

/// Threads opened in place on a day page whose replies are not all on that day are loaded
/// whole, up to this many; beyond, their link opens the thread page.
const MAX_THREADS_LOADED: usize = chatvault_query::MAX_THREADS;
/// People listed on a workspace's page.
const MAX_PEOPLE: usize = 300;

/// `/`: the workspaces (straight to the only one when there is one).
pub(crate) async fn index(State(state): State<AppState>, reader: Reader) -> PageResult {
    let workspaces = state.meta().list_workspaces().await?;
    if let [only] = workspaces.as_slice() {
        return Ok(Redirect::to(&format!("/w/{}/", only.id)).into_response());
    }
    let page = Page::new("Workspaces", None, &reader.scope).named(reader.name.as_deref());
    let body = html! {
        h1 { "Workspaces" }
        @if workspaces.is_empty() {
            p.notice { "This archive holds no workspace yet. Import an export with "
                code { "chatvault ingest-export" } "." }
        }
        ul {
            @for w in &workspaces {
                li { a href=(format!("/w/{}/", w.id)) { (w.name) } " " span.muted { "(" (w.id) ")" } }
            }
        }
    };
    Ok(html_response(StatusCode::OK, page.render(body)))
}

/// `/w/{ws}/`: the channels the viewer may read (messages, last day) and the people.
pub(crate) async fn home(
    State(state): State<AppState>,
    Path(ws): Path<String>,
    reader: Reader,
) -> PageResult {
    let mut timing = Timing::start();
    let w = workspace(&state, &ws).await?;
    let meta = state.meta().as_ref();
    let visible = channels(&state, &w.id, &reader.scope).await?;
    // Each readable channel's message count and last day, in one query.
    let latest: HashMap<_, _> = meta
        .channel_latest(
            &w.id,
            &LatestOptions {
                range: TimeRange::all(),
                channels: Some(visible.iter().map(|c| c.id.clone()).collect()),
                with_counts: true,
            },
        )
        .await?
        .into_iter()
        .map(|l| {
            let day = l.latest.to_datetime().date_naive();
            (l.channel, (l.messages.unwrap_or(0), day))
        })
        .collect();
    // People by name, people before bots. (Not by message count: counting each person's
    // messages in the channels a viewer may read is a scan of the whole archive.)
    let mut users = meta.list_users(&w.id).await?;
    users.retain(|u| !u.is_deleted);
    users.sort_by_cached_key(|u| (u.is_bot, u.best_name().to_lowercase()));
    let more_people = users.len().saturating_sub(MAX_PEOPLE);
    users.truncate(MAX_PEOPLE);

    timing.fetched();
    let page = Page::new(w.name.clone(), Some(&w), &reader.scope).named(reader.name.as_deref());
    let body = html! {
        h1 { (w.name) }
        @if let Some(d) = &w.domain {
            p.muted { (d) ".slack.com" }
        }
        h2 #channels { "Channels" }
        @if visible.is_empty() {
            p.notice { "No channel to show. Private channels appear once you "
                a href="/login" { "log in" } " as one of their members." }
        } @else {
            table.channels {
                thead { tr { th scope="col" { "Channel" } th.num scope="col" { "Messages" } th scope="col" { "About" } th scope="col" { "Last message" } } }
                tbody {
                    @for c in &visible {
                        tr {
                            td {
                                a href=(channel_url(&w.id, c)) { "#" (c.name) }
                                @if !c.kind.is_public() { " " span.badge title="Private channel" { "private" } }
                                @if c.is_archived { " " span.badge { "archived" } }
                            }
                            td.num { (latest.get(&c.id).map_or(0, |l| l.0)) }
                            td.muted { (c.purpose.as_deref().or(c.topic.as_deref()).unwrap_or("")) }
                            td {
                                @match latest.get(&c.id).map(|l| l.1) {
                                    Some(d) => a href=(format!("{}/{d}", channel_url(&w.id, c))) { (d) },
                                    None => span.muted { "—" },
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 #people { "People" }
        ul.people {
            @for u in &users {
                li {
                    (avatar(u.best_name(), u.id.as_str()))
                    span {
                        a href=(format!("/w/{}/search?user={}", w.id, u.id)) title="Their messages" { (u.best_name()) }
                        br;
                        span.muted { "@" (u.name) }
                    }
                }
            }
        }
        @if more_people > 0 { p.muted { "and " (more_people) " more" } }
    };
    Ok(timing.finish(html_response(StatusCode::OK, page.render(body))))
}

/// `?day=` from the "go to day" form.
#[derive(Debug, Deserialize)]
pub(crate) struct DayQuery {
    day: Option<String>,
}

/// `/w/{ws}/c/{channel}`: the channel's last day (or the day the form asks for).
pub(crate) async fn channel_latest(
    State(state): State<AppState>,
    Path((ws, ch)): Path<(String, String)>,
    Query(q): Query<DayQuery>,
    reader: Reader,
) -> PageResult {
    let w = workspace(&state, &ws).await?;
    let visible = channels(&state, &w.id, &reader.scope).await?;
    let c = find_channel(&visible, &ch)?;
    let day = match q.day.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => Some(parse_day(d).map_err(|e| e.with_viewer(reader.scope.clone()))?),
        None => last_day_before(state.meta().as_ref(), &w.id, &c.id, None).await?,
    };
    match day {
        Some(d) => Ok(Redirect::to(&format!("{}/{d}", channel_url(&w.id, c))).into_response()),
        None => {
            let page = Page::new(format!("#{}", c.name), Some(&w), &reader.scope)
                .named(reader.name.as_deref());
            let body = html! {
                h1 { "#" (c.name) }
                p.notice { "No messages are archived in this channel yet." }
            };
            Ok(html_response(StatusCode::OK, page.render(body)))
        }
    }
}

fn parse_day(d: &str) -> Result<NaiveDate, PageError> {
    NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "Bad request",
            format!("{d:?} is not a day (YYYY-MM-DD)."),
        )
    })
}

/// `/w/{ws}/c/{channel}/{day}`: one day of a channel, threads collapsed under their parents.
pub(crate) async fn channel_day(
    State(state): State<AppState>,
    Path((ws, ch, day)): Path<(String, String, String)>,
    reader: Reader,
) -> PageResult {
    let mut timing = Timing::start();
    let w = workspace(&state, &ws).await?;
    let visible = channels(&state, &w.id, &reader.scope).await?;
    let c = find_channel(&visible, &ch)?;
    let d = parse_day(&day).map_err(|e| e.with_viewer(reader.scope.clone()))?;
    let start = day_start(d);
    let end = start + chrono::Duration::days(1);
    let engine = state.engine();
    let meta = state.meta().as_ref();
    let list = engine
        .channel_messages(&w.id, &c.id, &TimeRange::between(start, end), &reader.scope)
        .await?;
    let prev = last_day_before(meta, &w.id, &c.id, Some(start)).await?;
    let next = first_day_from(meta, &w.id, &c.id, Some(end)).await?;

    // Replies of the day go under their parent when the parent is on this day too.
    let parents: HashSet<Ts> = list
        .iter()
        .filter(|m| m.thread_parent.is_none())
        .map(|m| m.key.ts.clone())
        .collect();
    let mut replies: HashMap<Ts, Vec<MessageView>> = HashMap::new();
    let mut top = Vec::new();
    for m in list {
        let parent = m.thread_parent.as_ref().map(|p| &p.ts);
        match parent.filter(|p| parents.contains(*p)).cloned() {
            Some(p) => replies.entry(p).or_default().push(m),
            None => top.push(m),
        }
    }
    // Threads that go on past this day are loaded whole, all in one call (up to a limit;
    // beyond it, their link opens the thread page).
    let unfinished: Vec<Ts> = top
        .iter()
        .filter(|m| m.reply_count as usize > replies.get(&m.key.ts).map_or(0, Vec::len))
        .take(MAX_THREADS_LOADED)
        .map(|m| m.key.ts.clone())
        .collect();
    if !unfinished.is_empty() {
        let whole = engine
            .thread_replies(&w.id, &c.id, &unfinished, &reader.scope)
            .await?;
        replies.extend(whole);
    }

    timing.fetched();
    let ctx = Ctx::new(&w.id, &visible);
    let base = channel_url(&w.id, c);
    let page = Page::new(format!("#{} · {d}", c.name), Some(&w), &reader.scope)
        .named(reader.name.as_deref());
    let body = html! {
        (channel_header(c))
        nav.daynav aria-label="Days" {
            @match prev {
                Some(p) => a rel="prev" href=(format!("{base}/{p}")) { "← " (p) },
                None => span.muted { "← first day" },
            }
            strong { (d.format("%A %-d %B %Y")) }
            @match next {
                Some(n) => a rel="next" href=(format!("{base}/{n}")) { (n) " →" },
                None => span.muted { "last day →" },
            }
            form method="get" action=(base) {
                label for="day" { "Go to day" }
                input #day type="date" name="day" value=(d);
                button type="submit" { "Go" }
            }
        }
        @if top.is_empty() {
            p.notice { "No messages on this day." }
        }
        ol.messages {
            @for m in &top {
                @let thread = replies.get(&m.key.ts);
                (render::message(m, &ctx, false, html! {
                    @if let Some(p) = &m.thread_parent {
                        p.reply-note { "replied to a thread: " a href=(ctx.thread_url(p)) { "open the thread" } }
                    }
                    @if m.reply_count > 0 || thread.is_some_and(|t| !t.is_empty()) {
                        (collapsed_thread(m, thread.map_or(&[][..], Vec::as_slice), &ctx))
                    }
                }))
            }
        }
    };
    Ok(timing.finish(html_response(StatusCode::OK, page.render(body))))
}

fn channel_header(c: &chatvault_core::Channel) -> Markup {
    html! {
        h1 {
            "#" (c.name)
            @if c.kind != ChannelKind::Public { " " span.badge { "private" } }
        }
        @if let Some(p) = c.purpose.as_deref().or(c.topic.as_deref()).filter(|p| !p.is_empty()) {
            p.muted { (p) }
        }
    }
}

/// A thread under its parent: a `<details>` that opens in place, and a link to its page.
fn collapsed_thread(parent: &MessageView, replies: &[MessageView], ctx: &Ctx) -> Markup {
    let n = (parent.reply_count as usize).max(replies.len());
    html! {
        details.thread {
            summary { (n) @if n == 1 { " reply" } @else { " replies" } }
            (render::messages(replies, ctx, None))
            @if replies.len() < n {
                p.muted { (n - replies.len()) " more on the thread page." }
            }
            p { a href=(ctx.thread_url(&parent.key)) { "Open the thread page" } }
        }
    }
}

fn message_key(
    ws: &WorkspaceId,
    ch: &chatvault_core::Channel,
    ts: &str,
) -> Result<MessageKey, PageError> {
    let ts =
        Ts::new(ts).map_err(|_| PageError::not_found(format!("There is no message {ts:?}.")))?;
    Ok(MessageKey::new(ws.clone(), ch.id.clone(), ts))
}

/// `/w/{ws}/t/{channel}/{ts}`: a whole thread.
pub(crate) async fn thread(
    State(state): State<AppState>,
    Path((ws, ch, ts)): Path<(String, String, String)>,
    reader: Reader,
) -> PageResult {
    let mut timing = Timing::start();
    let w = workspace(&state, &ws).await?;
    let visible = channels(&state, &w.id, &reader.scope).await?;
    let c = find_channel(&visible, &ch)?;
    let key = message_key(&w.id, c, &ts)?;
    let thread = state.engine().thread(&key, &reader.scope).await?;
    timing.fetched();
    let ctx = Ctx::new(&w.id, &visible);
    let target = (key != thread.parent).then_some(&key);
    let page = Page::new(format!("Thread in #{}", c.name), Some(&w), &reader.scope)
        .named(reader.name.as_deref());
    let body = html! {
        p.muted { a href=(channel_url(&w.id, c)) { "#" (c.name) } " › thread" }
        h1 { "Thread" }
        p { a href=(ctx.day_url(&thread.parent)) { "See it in the channel" } }
        (render::messages(&thread.messages, &ctx, target))
    };
    Ok(timing.finish(html_response(StatusCode::OK, page.render(body))))
}

/// `/w/{ws}/m/{channel}/{ts}`: a message in its context (its thread, or its neighbours).
pub(crate) async fn message(
    State(state): State<AppState>,
    Path((ws, ch, ts)): Path<(String, String, String)>,
    reader: Reader,
) -> PageResult {
    let w = workspace(&state, &ws).await?;
    let visible = channels(&state, &w.id, &reader.scope).await?;
    let c = find_channel(&visible, &ch)?;
    let key = message_key(&w.id, c, &ts)?;
    let engine = state.engine();
    let thread = engine.thread(&key, &reader.scope).await?;
    let ctx = Ctx::new(&w.id, &visible);
    let (list, in_thread) = if thread.messages.len() > 1 {
        (thread.messages, true)
    } else {
        (
            engine.context(&key, 10, &reader.scope).await?.messages,
            false,
        )
    };
    let me = list.iter().find(|m| m.key == key);
    let page = Page::new(format!("Message in #{}", c.name), Some(&w), &reader.scope)
        .named(reader.name.as_deref());
    let body = html! {
        p.muted { a href=(channel_url(&w.id, c)) { "#" (c.name) } " › message" }
        h1 { "Message" }
        p.daynav {
            a href=(ctx.day_url(&key)) { "See the day in the channel" }
            @if in_thread { a href=(ctx.thread_url(&key)) { "Thread page" } }
            @if let Some(link) = me.and_then(|m| m.permalink.as_deref()) {
                a href=(link) rel="noopener noreferrer" { "Open in Slack" }
            }
            a href=(format!("#{}", anchor(&key))) { "Jump to the message" }
        }
        (render::messages(&list, &ctx, Some(&key)))
    };
    Ok(html_response(StatusCode::OK, page.render(body)))
}

/// `/m/{channel}/{ts}`: the same, for whichever workspace holds a channel the viewer may read.
pub(crate) async fn find_message(
    State(state): State<AppState>,
    Path((ch, ts)): Path<(String, String)>,
    reader: Reader,
) -> PageResult {
    for w in state.meta().list_workspaces().await? {
        let visible = channels(&state, &w.id, &reader.scope).await?;
        if let Ok(c) = find_channel(&visible, &ch) {
            let to = format!("/w/{}/m/{}/{}", w.id, c.id, super::url_segment(&ts));
            let mut r = Redirect::to(&to).into_response();
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            return Ok(r);
        }
    }
    Err(PageError::not_found("There is no such message here.").with_viewer(reader.scope))
}
