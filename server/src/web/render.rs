//! How one message looks: initials, author, time, text, files, reactions, links to its page and
//! to Slack.

use chatvault_core::{Channel, MessageKey, WorkspaceId};
use chatvault_query::MessageView;
use maud::{html, Markup};

use super::mrkdwn::{self, Links};
use super::{channel_url, url_segment};

/// What rendering messages of one workspace needs: where things link to.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) ws: WorkspaceId,
    pub(crate) links: Links,
}

impl Ctx {
    /// Links for the channels the viewer may read (and only those).
    pub(crate) fn new(ws: &WorkspaceId, channels: &[Channel]) -> Self {
        let mut links = Links::default();
        for c in channels {
            links
                .channels
                .insert(c.name.to_lowercase(), channel_url(ws, c));
        }
        Ctx {
            ws: ws.clone(),
            links,
        }
    }

    /// The archive page of a message (its permalink page).
    pub(crate) fn message_url(&self, key: &MessageKey) -> String {
        format!(
            "/w/{}/m/{}/{}",
            self.ws,
            key.channel,
            url_segment(key.ts.as_str())
        )
    }

    /// The thread page of a message.
    pub(crate) fn thread_url(&self, key: &MessageKey) -> String {
        format!(
            "/w/{}/t/{}/{}",
            self.ws,
            key.channel,
            url_segment(key.ts.as_str())
        )
    }

    /// The day page holding a message, pointing at it.
    pub(crate) fn day_url(&self, key: &MessageKey) -> String {
        format!(
            "/w/{}/c/{}/{}#{}",
            self.ws,
            key.channel,
            key.ts.to_datetime().format("%Y-%m-%d"),
            anchor(key)
        )
    }
}

/// The element id of a message on a page.
pub(crate) fn anchor(key: &MessageKey) -> String {
    format!("m{}", key.ts.as_str().replace('.', "-"))
}

/// Up to two initials of a name, and a colour class chosen by the id.
pub(crate) fn avatar(name: &str, id: &str) -> Markup {
    let initials: String = name
        .split(|c: char| c.is_whitespace() || c == '.' || c == '_' || c == '-')
        .filter_map(|w| w.chars().next())
        .filter(|c| c.is_alphanumeric())
        .take(2)
        .flat_map(char::to_uppercase)
        .collect();
    let initials = if initials.is_empty() {
        "?".to_string()
    } else {
        initials
    };
    let colour = id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
        % 8;
    html! { span class=(format!("avatar a{colour}")) aria-hidden="true" { (initials) } }
}

/// One message as a list item; `after` goes below its reactions (a collapsed thread).
pub(crate) fn message(m: &MessageView, ctx: &Ctx, target: bool, after: Markup) -> Markup {
    let author = m.author_label();
    let id = m.user.as_ref().map_or("", |u| u.as_str());
    html! {
        li.msg.target[target] id=(anchor(&m.key)) {
            (avatar(&author, id))
            div.body {
                div.meta {
                    span.author { (author) }
                    a.time href=(ctx.message_url(&m.key)) title=(m.time.format("%Y-%m-%d %H:%M:%S UTC")) {
                        time datetime=(m.time.to_rfc3339()) { (m.time.format("%H:%M")) }
                    }
                    // On the message a page is about; the others' time links lead to theirs.
                    @if let Some(link) = m.permalink.as_ref().filter(|_| target) {
                        a.slack href=(link) rel="noopener noreferrer" { "Open in Slack" }
                    }
                }
                div.text {
                    @match &m.text {
                        Some(t) => (mrkdwn::mrkdwn(t, &ctx.links)),
                        None => span.muted { "(no text stored)" },
                    }
                }
                @if !m.files.is_empty() {
                    ul.files aria-label="Files" {
                        @for f in &m.files {
                            li {
                                "📄 " (f.title.as_deref().or(f.name.as_deref()).unwrap_or(&f.id))
                                @if let Some(t) = f.filetype.as_deref().or(f.mimetype.as_deref()) {
                                    " " span.muted { "(" (t) ")" }
                                }
                            }
                        }
                    }
                }
                @if !m.reactions.is_empty() {
                    ul.reactions aria-label="Reactions" {
                        @for r in &m.reactions {
                            li title=(format!(":{}:", r.name)) {
                                @match mrkdwn::reaction_emoji(&r.name) {
                                    Some(e) => (e),
                                    None => { ":" (r.name) ":" },
                                }
                                " " (r.count)
                            }
                        }
                    }
                }
                (after)
            }
        }
    }
}

/// A list of messages, `target` highlighted.
pub(crate) fn messages(list: &[MessageView], ctx: &Ctx, target: Option<&MessageKey>) -> Markup {
    html! {
        ol.messages {
            @for m in list {
                (message(m, ctx, Some(&m.key) == target, html! {}))
            }
        }
    }
}
