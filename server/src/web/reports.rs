//! The reports: the digest of a week, review requests and open questions, and Q&A retrieval.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chatvault_core::{TimeRange, Workspace};
use chatvault_query::{AskRequest, DigestRequest, MessageView, PrReviewRequest, Retrieval};
use chrono::{Datelike, Days, NaiveDate};
use maud::{html, Markup};
use serde::Deserialize;

use super::days::day_start;
use super::layout::{Page, Section};
use super::render::{self, Ctx};
use super::{channels, html_response, workspace, PageError, PageResult, Reader};
use crate::state::AppState;

/// `?week=` (any day of the week) for the digest.
#[derive(Debug, Deserialize)]
pub(crate) struct WeekQuery {
    week: Option<String>,
}

fn bad(message: String) -> PageError {
    PageError::new(StatusCode::BAD_REQUEST, "Bad request", message)
}

/// The Monday of the week holding `d`.
fn monday(d: NaiveDate) -> NaiveDate {
    d - Days::new(u64::from(d.weekday().num_days_from_monday()))
}

/// The last day with a message in any channel the viewer may read.
async fn latest_day(
    state: &AppState,
    w: &Workspace,
    visible: &[chatvault_core::Channel],
) -> Result<Option<NaiveDate>, PageError> {
    let options = chatvault_core::LatestOptions {
        channels: Some(visible.iter().map(|c| c.id.clone()).collect()),
        ..chatvault_core::LatestOptions::default()
    };
    let latest = state
        .meta()
        .channel_latest(&w.id, &options)
        .await?
        .into_iter()
        .map(|l| l.latest.to_datetime().date_naive())
        .max();
    Ok(latest)
}

/// `/w/{ws}/digest?week=YYYY-MM-DD`: the newsletter of a week (default: the latest week with
/// messages).
pub(crate) async fn digest(
    State(state): State<AppState>,
    Path(ws): Path<String>,
    Query(q): Query<WeekQuery>,
    reader: Reader,
) -> PageResult {
    let w = workspace(&state, &ws).await?;
    let visible = channels(&state, &w.id, &reader.scope).await?;
    let day = match q.week.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| bad(format!("{s:?} is not a day (YYYY-MM-DD).")))?,
        None => latest_day(&state, &w, &visible)
            .await?
            .unwrap_or_else(|| chrono::Utc::now().date_naive()),
    };
    let start = monday(day);
    let end = start + Days::new(7);
    let mut request = DigestRequest::new(TimeRange::between(day_start(start), day_start(end)));
    request.scope = reader.scope.clone();
    request.limit = 10;
    let d = state.engine().digest(&w.id, request).await?;
    let ctx = Ctx::new(&w.id, &visible);
    let prev = start - Days::new(7);
    let page = Page::new(format!("Digest, week of {start}"), Some(&w), &reader.scope)
        .named(reader.name.as_deref())
        .section(Section::Digest);
    let nothing = d.most_reacted.is_empty()
        && d.active_threads.is_empty()
        && d.busiest_channels.is_empty()
        && d.top_links.is_empty();
    let body = html! {
        h1 { "Digest: week of " (start.format("%-d %B %Y")) }
        nav.daynav aria-label="Weeks" {
            a rel="prev" href=(format!("/w/{}/digest?week={prev}", w.id)) { "← week of " (prev) }
            a rel="next" href=(format!("/w/{}/digest?week={end}", w.id)) { "week of " (end) " →" }
            form method="get" action=(format!("/w/{}/digest", w.id)) {
                label for="week" { "Week of" }
                input #week type="date" name="week" value=(start);
                button type="submit" { "Show" }
            }
        }
        @if nothing { p.notice { "Nothing was posted that week in the channels you can read." } }
        @if !d.busiest_channels.is_empty() {
            h2 { "Busiest channels" }
            table { thead { tr { th { "Channel" } th.num { "Messages" } th.num { "People" } } }
                tbody { @for c in &d.busiest_channels { tr {
                    td { a href=(super::channel_id_url(&w.id, &c.id)) { "#" (c.name.as_deref().unwrap_or(c.id.as_str())) } }
                    td.num { (c.messages) } td.num { (c.people) } } } } }
        }
        @if !d.most_reacted.is_empty() {
            h2 { "Most reacted" }
            (message_list(d.most_reacted.iter().map(|m| &m.message), &ctx))
        }
        @if !d.active_threads.is_empty() {
            h2 { "Liveliest threads" }
            ol.messages { @for t in &d.active_threads {
                @match &t.parent {
                    Some(p) => (render::message(p, &ctx, false, html! {
                        p.reply-note { a href=(ctx.thread_url(&t.parent_key)) { (t.replies) " replies from " (t.participants) " people" } }
                    })),
                    None => li { a href=(ctx.thread_url(&t.parent_key)) { (t.replies) " replies" } },
                }
            } }
        }
        @if !d.top_links.is_empty() {
            h2 { "Most shared links" }
            ul { @for l in &d.top_links { li { a href=(safe_url(&l.url)) rel="nofollow noopener noreferrer" { (l.url) } " " span.muted { "×" (l.count) } } } }
        }
        @if !d.busiest_people.is_empty() {
            h2 { "Most active people" }
            ul { @for p in &d.busiest_people { li { (p.name.as_deref().unwrap_or(p.id.as_str())) " " span.muted { (p.messages) " messages, " (p.reactions_received) " reactions received" } } } }
        }
        @if !d.new_channels.is_empty() {
            h2 { "New channels" }
            ul { @for c in &d.new_channels { li { a href=(super::channel_id_url(&w.id, &c.id)) { "#" (c.name) } @if let Some(p) = &c.purpose { " — " (p) } } } }
        }
    };
    Ok(html_response(StatusCode::OK, page.render(body)))
}

/// Only `http(s)` links are made clickable (a stored URL is data from Slack).
fn safe_url(url: &str) -> &str {
    let lower = url.trim_start().to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        url
    } else {
        "#"
    }
}

fn message_list<'a>(list: impl Iterator<Item = &'a MessageView>, ctx: &Ctx) -> Markup {
    html! { ol.messages { @for m in list { (render::message(m, ctx, false, html! {})) } } }
}

/// `?since=&until=` for the review report.
#[derive(Debug, Deserialize)]
pub(crate) struct RangeQuery {
    since: Option<String>,
    until: Option<String>,
}

fn optional_day(field: &str, v: Option<&str>) -> Result<Option<NaiveDate>, PageError> {
    v.filter(|s| !s.is_empty())
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| bad(format!("{field}: {s:?} is not a day (YYYY-MM-DD).")))
        })
        .transpose()
}

/// `/w/{ws}/prs`: review requests shared in the channels, and questions nobody answered.
pub(crate) async fn prs(
    State(state): State<AppState>,
    Path(ws): Path<String>,
    Query(q): Query<RangeQuery>,
    reader: Reader,
) -> PageResult {
    let w = workspace(&state, &ws).await?;
    let visible = channels(&state, &w.id, &reader.scope).await?;
    let since = optional_day("From", q.since.as_deref())?;
    let until = optional_day("Until", q.until.as_deref())?;
    let range = TimeRange {
        start: since.map(day_start),
        end: until.map(|d| day_start(d + Days::new(1))),
    };
    let mut request = PrReviewRequest::new(range);
    request.scope = reader.scope.clone();
    request.limit = 50;
    let r = state.engine().pr_reviews(&w.id, request).await?;
    let ctx = Ctx::new(&w.id, &visible);
    let page = Page::new("Review requests", Some(&w), &reader.scope)
        .named(reader.name.as_deref())
        .section(Section::Prs);
    let body = html! {
        h1 { "Review requests" }
        form.search-form method="get" action=(format!("/w/{}/prs", w.id)) {
            label for="since" { "From" input #since type="date" name="since" value=(q.since.as_deref().unwrap_or("")); }
            label for="until" { "Until" input #until type="date" name="until" value=(q.until.as_deref().unwrap_or("")); }
            button type="submit" { "Show" }
        }
        @if r.reviews.is_empty() { p.notice { "No pull or merge request was shared in the channels you can read." } }
        ol.hits { @for rv in &r.reviews {
            li.hit {
                h3 { a href=(safe_url(&rv.url)) rel="nofollow noopener noreferrer" { (rv.review.project) " #" (rv.review.number) } }
                p.muted { (rv.shares.len()) " shares · " (rv.reply_count) " replies · " (rv.reaction_count) " reactions" }
                (message_list(rv.shares.iter().map(|s| &s.message), &ctx))
            }
        } }
        h2 { "Open questions" }
        @if r.open_questions.is_empty() { p.muted { "None: every question found an answer." } }
        (message_list(r.open_questions.iter().map(|q| &q.message), &ctx))
    };
    Ok(html_response(StatusCode::OK, page.render(body)))
}

/// `?q=` for Q&A.
#[derive(Debug, Deserialize)]
pub(crate) struct AskQuery {
    q: Option<String>,
}

/// What the Q&A page shows for a question.
enum Asked {
    /// Passages and the prompt (no language model configured).
    Passages(Retrieval),
    /// A grounded answer, its sources, and the passages.
    Answer(Box<chatvault_answer::GroundedAnswer>),
}

/// `/w/{ws}/ask?q=…`: with a language model configured, a grounded answer whose `[n]`
/// citations link to the passages below it; without one, the passages that answer a question,
/// with their citations and the prompt a language model would be given.
pub(crate) async fn ask(
    State(state): State<AppState>,
    Path(ws): Path<String>,
    Query(q): Query<AskQuery>,
    reader: Reader,
) -> PageResult {
    let w = workspace(&state, &ws).await?;
    let visible = channels(&state, &w.id, &reader.scope).await?;
    let question = q.q.unwrap_or_default().trim().to_string();
    let (status, result): (StatusCode, Option<Result<Asked, String>>) = if question.is_empty() {
        (StatusCode::OK, None)
    } else {
        let mut request = AskRequest::new(question.clone());
        request.scope = reader.scope.clone();
        match state.engine().ask(&w.id, request).await {
            Ok(r) => match state.config().answerer.clone() {
                None => (StatusCode::OK, Some(Ok(Asked::Passages(r)))),
                Some(answerer) => {
                    let gate = state.inner.relevance;
                    let noop = |_: &str| {};
                    let a = chatvault_answer::generate(r, answerer.as_ref(), &gate, &noop).await;
                    (StatusCode::OK, Some(Ok(Asked::Answer(Box::new(a)))))
                }
            },
            Err(e) if e.kind() == chatvault_core::ErrorKind::InvalidInput => {
                (StatusCode::BAD_REQUEST, Some(Err(e.message().to_string())))
            }
            Err(e) => return Err(e.into()),
        }
    };
    let ctx = Ctx::new(&w.id, &visible);
    let page = Page::new("Ask", Some(&w), &reader.scope)
        .named(reader.name.as_deref())
        .section(Section::Ask);
    let body = html! {
        h1 { "Ask the archive" }
        form.search-form method="get" action=(format!("/w/{}/ask", w.id)) {
            div.wide {
                label.visually-hidden for="ask-q" { "Your question" }
                input #ask-q type="search" name="q" value=(question) placeholder="Ask a question";
                button type="submit" { "Ask" }
            }
        }
        @match &result {
            None => p.notice { "Ask in your own words. The archive finds the messages that answer it and shows them with their context, numbered for citation." },
            Some(Err(m)) => div.error role="alert" { strong { "Cannot ask: " } (m) },
            Some(Ok(Asked::Passages(r))) => {
                p.muted { "No language model is configured on this server: these are the passages an answer would cite." }
                @if let Some(why) = &r.degraded { p.notice { (why) } }
                (passages(&r.passages, &ctx))
                details { summary { "The prompt" } pre.prompt { (r.prompt) } }
            }
            Some(Ok(Asked::Answer(a))) => {
                (answer(a))
                @if let Some(why) = &a.degraded { p.notice { (why) } }
                @if !a.passages.is_empty() { h2 { "Passages" } }
                (passages(&a.passages, &ctx))
            }
        }
    };
    Ok(html_response(status, page.render(body)))
}

fn passages(passages: &[chatvault_query::Passage], ctx: &Ctx) -> Markup {
    html! {
        @if passages.is_empty() { p.notice { "No message in the channels you can read answers this." } }
        @for p in passages {
            section.passage id=(format!("passage-{}", p.citation)) aria-label=(format!("Passage {}", p.citation)) {
                h3 { "[" (p.citation) "] " (p.hit.message.channel_label()) " · "
                    a href=(ctx.message_url(&p.hit.message.key)) { (p.hit.message.time.format("%Y-%m-%d %H:%M")) } }
                (render::messages(&p.context, ctx, Some(&p.hit.message.key)))
            }
        }
    }
}

/// The grounded answer, what its checks found, and its sources.
fn answer(a: &chatvault_answer::GroundedAnswer) -> Markup {
    use chatvault_answer::Outcome;
    let removed = a
        .checks
        .removed_citations
        .iter()
        .map(|n| format!("[{n}]"))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        section.answer aria-label="Answer" {
            @match a.outcome {
                Outcome::NotFound => p.notice { "Not found in the archive: no message in the channels you can read is close enough to the question, so no model was asked." },
                Outcome::ModelFailed => div.error role="alert" {
                    strong { "The language model failed: " } (a.error.as_deref().unwrap_or("no reason given"))
                    " The passages it would have been given are below."
                },
                _ => {
                    p { (cited(&a.answer, a.passages.len())) }
                    @if a.outcome == Outcome::Unsupported {
                        p.notice { "Unsupported: this answer cites none of the passages, so nothing in the archive backs it." }
                    }
                    @if !removed.is_empty() {
                        p.muted { "Removed citations of passages that do not exist: " (removed) "." }
                    }
                    @if !a.sources.is_empty() {
                        h2 { "Sources" }
                        ol.sources { @for s in &a.sources {
                            li { a href=(format!("#passage-{}", s.citation)) { "[" (s.citation) "]" } " " (s.channel) ", " (s.author) ", " (s.time.format("%Y-%m-%d %H:%M"))
                                @if let Some(p) = &s.permalink { " · " a href=(safe_url(p)) rel="nofollow noopener noreferrer" { "in Slack" } } }
                        } }
                    }
                    @if let Some(m) = &a.answerer { p.muted { "Generated by " (m) " from the passages below; check what matters against them." } }
                }
            }
        }
    }
}

/// `text` with every `[n]` of an existing passage (1..=`passages`) a link to it; the rest is
/// escaped text.
fn cited(text: &str, passages: usize) -> Markup {
    let mut parts: Vec<(String, Option<usize>)> = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n = after[..digits].parse::<usize>().ok();
        match n {
            Some(n) if after[digits..].starts_with(']') && (1..=passages).contains(&n) => {
                parts.push((rest[..open].to_string(), None));
                parts.push((format!("[{n}]"), Some(n)));
                rest = &after[digits + 1..];
            }
            _ => {
                parts.push((rest[..=open].to_string(), None));
                rest = after;
            }
        }
    }
    parts.push((rest.to_string(), None));
    html! {
        @for (t, n) in &parts {
            @match n {
                Some(n) => a.cite href=(format!("#passage-{n}")) { (t) },
                None => (t),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cited;

    #[test]
    fn citations_of_passages_become_links_and_everything_is_escaped() {
        let html = cited("<b>On GitHub</b> [1][2], not [7] nor [x] [", 2).into_string();
        assert_eq!(
            html,
            "&lt;b&gt;On GitHub&lt;/b&gt; <a class=\"cite\" href=\"#passage-1\">[1]</a>\
             <a class=\"cite\" href=\"#passage-2\">[2]</a>, not [7] nor [x] ["
        );
    }
}
