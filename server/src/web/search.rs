//! The search page: one box, the mode, channel/person/date filters as controls, highlighted
//! snippets that say which ranking found them, and paging.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chatvault_core::{Channel, TimeRange, UserId, WorkspaceId};
use chatvault_query::{
    SearchFilter, SearchHit, SearchMode, SearchRequest, SearchResponse, Snippet,
};
use chrono::{DateTime, NaiveDate, Utc};
use maud::{html, Markup};

use super::days::day_start;
use super::layout::{Page, Section};
use super::render::{avatar, Ctx};
use super::timing::Timing;
use super::{channels, find_channel, html_response, workspace, PageResult, Reader};
use crate::state::AppState;

/// Hits per page.
pub(crate) const PER_PAGE: usize = 20;

/// The form's fields, as given (empty fields are "any").
#[derive(Debug, Default, Clone)]
pub(crate) struct Form {
    q: String,
    mode: String,
    channel: String,
    user: String,
    since: String,
    until: String,
    cursor: Option<String>,
    /// The number of the first hit on this page (1 on the first page).
    start: usize,
}

impl Form {
    fn parse(pairs: Vec<(String, String)>) -> Self {
        let mut f = Form {
            start: 1,
            ..Form::default()
        };
        for (k, v) in pairs {
            let v = v.trim().to_string();
            match k.as_str() {
                "q" => f.q = v,
                "mode" => f.mode = v,
                "channel" => f.channel = v,
                "user" => f.user = v,
                "since" => f.since = v,
                "until" => f.until = v,
                "cursor" if !v.is_empty() => f.cursor = Some(v),
                "start" => f.start = v.parse().unwrap_or(1).max(1),
                _ => {}
            }
        }
        f
    }

    /// This search's URL with other values for some fields.
    fn url(&self, ws: &WorkspaceId, changes: &[(&str, &str)]) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", self.q.as_str()),
            ("mode", self.mode.as_str()),
            ("channel", self.channel.as_str()),
            ("user", self.user.as_str()),
            ("since", self.since.as_str()),
            ("until", self.until.as_str()),
        ] {
            let v = changes
                .iter()
                .find(|(ck, _)| *ck == k)
                .map_or(v, |(_, cv)| *cv);
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        for (k, v) in changes {
            if matches!(*k, "cursor" | "start") {
                s.append_pair(k, v);
            }
        }
        format!("/w/{ws}/search?{}", s.finish())
    }
}

fn day(field: &str, given: &str) -> Result<Option<DateTime<Utc>>, String> {
    if given.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(given, "%Y-%m-%d")
        .map(|d| Some(day_start(d)))
        .map_err(|_| format!("{field}: {given:?} is not a day (YYYY-MM-DD)."))
}

/// Runs the form's search: `Ok(None)` when there is nothing to search for yet.
async fn run(
    state: &AppState,
    ws: &WorkspaceId,
    visible: &[Channel],
    f: &Form,
    reader: &Reader,
) -> Result<Option<SearchResponse>, String> {
    let mode = match f.mode.as_str() {
        "" | "hybrid" => SearchMode::Hybrid,
        "semantic" => SearchMode::Semantic,
        "lexical" => SearchMode::Lexical,
        other => {
            return Err(format!(
                "mode: {other:?} is not hybrid, semantic or lexical."
            ))
        }
    };
    let since = day("From", &f.since)?;
    // "Until" is inclusive on the form: the whole of that day.
    let until = day("Until", &f.until)?.map(|d| d + chrono::Duration::days(1));
    let mut filter = SearchFilter {
        time: TimeRange {
            start: since,
            end: until,
        },
        ..SearchFilter::default()
    };
    if !f.channel.is_empty() {
        let c = find_channel(visible, &f.channel)
            .map_err(|_| format!("Channel: there is no channel {:?} here.", f.channel))?;
        filter.channels = Some(vec![c.id.clone()]);
    }
    if !f.user.is_empty() {
        let u: UserId = chatvault_query::resolve_user(state.meta().as_ref(), ws, &f.user)
            .await
            .map_err(|e| format!("Person: {}", e.message()))?;
        filter.users = Some(vec![u]);
    }
    if f.q.is_empty() {
        return Ok(None);
    }
    let request = SearchRequest::new(f.q.clone())
        .mode(mode)
        .filter(filter)
        .limit(PER_PAGE)
        .cursor(f.cursor.clone())
        .scope(reader.scope.clone());
    match state.engine().search(ws, request).await {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.kind() == chatvault_core::ErrorKind::InvalidInput => {
            Err(e.message().to_string())
        }
        Err(e) if e.kind() == chatvault_core::ErrorKind::Unsupported => {
            Err(e.message().to_string())
        }
        Err(e) => {
            tracing::warn!(error = %e, "search failed");
            Err("The search failed; the server's log says why.".to_string())
        }
    }
}

/// `/w/{ws}/search`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Path(ws): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
    reader: Reader,
) -> PageResult {
    let mut timing = Timing::start();
    let w = workspace(&state, &ws).await?;
    let visible = channels(&state, &w.id, &reader.scope).await?;
    let f = Form::parse(pairs);
    let result = run(&state, &w.id, &visible, &f, &reader).await;
    let people = state.meta().list_users(&w.id).await?;
    timing.fetched();
    let ctx = Ctx::new(&w.id, &visible);
    let status = if result.is_err() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let title = if f.q.is_empty() {
        "Search".to_string()
    } else {
        format!("{} — search", f.q)
    };
    let mut page = Page::new(title, Some(&w), &reader.scope)
        .named(reader.name.as_deref())
        .section(Section::Search);
    page.query = f.q.clone();
    let body = html! {
        h1 { "Search" }
        form.search-form role="search" method="get" action=(format!("/w/{}/search", w.id)) {
            div.wide {
                label.visually-hidden for="q" { "Search words" }
                input #q type="search" name="q" value=(f.q) placeholder="What are you looking for?" autofocus;
                button type="submit" { "Search" }
            }
            label for="mode" { "Mode"
                select #mode name="mode" {
                    (option("hybrid", "Words and meaning", matches!(f.mode.as_str(), "" | "hybrid")))
                    (option("lexical", "Exact words", f.mode == "lexical"))
                    (option("semantic", "Meaning", f.mode == "semantic"))
                }
            }
            label for="channel" { "Channel"
                select #channel name="channel" {
                    (option("", "Any channel", f.channel.is_empty()))
                    @for c in &visible {
                        (option(c.id.as_str(), &format!("#{}", c.name),
                            f.channel == c.id.as_str() || f.channel.trim_start_matches('#').eq_ignore_ascii_case(&c.name)))
                    }
                }
            }
            label for="user" { "Person"
                input #user type="text" name="user" list="people" value=(f.user) placeholder="Anyone";
            }
            datalist #people {
                @for u in people.iter().filter(|u| !u.is_deleted) { option value=(u.name) { (u.best_name()) } }
            }
            label for="since" { "From" input #since type="date" name="since" value=(f.since); }
            label for="until" { "Until" input #until type="date" name="until" value=(f.until); }
        }
        @match &result {
            Err(message) => div.error role="alert" { strong { "Cannot search: " } (message) },
            Ok(None) => (empty_state(&w.id, &f)),
            Ok(Some(r)) => (results(r, &f, &ctx)),
        }
    };
    Ok(timing.finish(html_response(status, page.render(body))))
}

fn option(value: &str, label: &str, selected: bool) -> Markup {
    html! { option value=(value) selected[selected] { (label) } }
}

fn empty_state(ws: &WorkspaceId, f: &Form) -> Markup {
    html! {
        div.notice {
            p { "Type some words and press Enter. " strong { "Words and meaning" }
                " finds messages that use your words and ones that say the same thing differently; "
                strong { "Exact words" } " only the first; " strong { "Meaning" } " only the second." }
            p { "Narrow it with a channel, a person or dates. Results link to the message in its channel." }
            @if !f.user.is_empty() {
                p { "Searching messages by " strong { (f.user) } "." }
            }
            p { "Examples: "
                a href=(format!("/w/{ws}/search?q=meetup")) { "meetup" } ", "
                a href=(format!("/w/{ws}/search?q=how+do+I+make+a+map")) { "how do I make a map" } }
        }
    }
}

fn results(r: &SearchResponse, f: &Form, ctx: &Ctx) -> Markup {
    let ws = &ctx.ws;
    let from = f.start;
    let to = from + r.hits.len().saturating_sub(1);
    html! {
        @if let Some(why) = &r.degraded { p.notice { "Searched with less than asked: " (why) } }
        @if r.hits.is_empty() {
            div.notice role="status" {
                p { strong { "No messages match " (format!("“{}”", f.q)) @if from > 1 { " past result " (from - 1) } "." } }
                ul {
                    li { "Try fewer or other words." }
                    @if f.mode != "semantic" { li { a href=(f.url(ws, &[("mode", "semantic")])) { "Search by meaning" } " finds other wordings." } }
                    @if !f.channel.is_empty() { li { a href=(f.url(ws, &[("channel", "")])) { "Search every channel" } } }
                    @if !f.user.is_empty() { li { a href=(f.url(ws, &[("user", "")])) { "Search everyone's messages" } } }
                    @if !f.since.is_empty() || !f.until.is_empty() { li { a href=(f.url(ws, &[("since", ""), ("until", "")])) { "Search all dates" } } }
                }
            }
        } @else {
            p.muted role="status" #result-count {
                "Results " (from) "–" (to)
                @if r.next_cursor.is_some() { " (more on the next page)" }
                " · " (format!("{:.0}", r.timings.total_us as f64 / 1000.0)) " ms"
            }
            ol.hits start=(from) {
                @for h in &r.hits { (hit(h, ctx)) }
            }
        }
        nav.pager aria-label="Pages" {
            @if from > 1 { a href=(f.url(ws, &[])) { "« First page" } }
            @if let Some(c) = &r.next_cursor {
                a rel="next" href=(f.url(ws, &[("cursor", c), ("start", &(to + 1).to_string())])) { "Next page »" }
            }
        }
    }
}

fn hit(h: &SearchHit, ctx: &Ctx) -> Markup {
    let m = &h.message;
    let author = m.author_label();
    html! {
        li.hit {
            div.where {
                (avatar(&author, m.user.as_ref().map_or("", |u| u.as_str())))
                " " strong { (author) } " in "
                a href=(super::channel_id_url(&ctx.ws, &m.key.channel)) { (m.channel_label()) }
                " · " (m.time.format("%Y-%m-%d %H:%M"))
                @if h.parent.is_some() { " · in a thread" }
            }
            p.snippet { a.hit-link href=(ctx.message_url(&m.key)) { (marked(&h.snippet)) } }
            @if let Some(p) = &h.parent {
                p.muted { "Reply to " (p.user_name.as_deref().unwrap_or("someone")) ": "
                    (p.excerpt.as_deref().unwrap_or("")) }
            }
            p.muted {
                @if let Some(l) = h.why.lexical { span.badge.lexical title=(format!("word match, rank {}", l.rank)) { "matched words" } " " }
                @if let Some(s) = h.why.semantic { span.badge.semantic title=(format!("meaning match, rank {}", s.rank)) { "matched meaning" } " " }
                a href=(ctx.day_url(&m.key)) { "in the channel" }
                @if m.thread_parent.is_some() || m.reply_count > 0 { " · " a href=(ctx.thread_url(&m.key)) { "thread" } }
                @if let Some(l) = &m.permalink { " · " a href=(l) rel="noopener noreferrer" { "Slack" } }
            }
        }
    }
}

/// The snippet with its matched words in `<mark>`, every piece escaped.
pub(crate) fn marked(s: &Snippet) -> Markup {
    let mut pieces: Vec<(bool, &str)> = Vec::new();
    let mut at = 0;
    for [a, b] in &s.matches {
        let (a, b) = (*a, *b);
        if a < at || b > s.text.len() || !s.text.is_char_boundary(a) || !s.text.is_char_boundary(b)
        {
            continue;
        }
        pieces.push((false, &s.text[at..a]));
        pieces.push((true, &s.text[a..b]));
        at = b;
    }
    pieces.push((false, &s.text[at..]));
    html! {
        @for (m, t) in pieces {
            @if m { mark { (t) } } @else { (t) }
        }
    }
}
