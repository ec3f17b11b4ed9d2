//! The digest (newsletter): what happened in a workspace over a time range.

use std::collections::HashMap;
use std::fmt::Write as _;

use chatvault_core::{
    AggregateOptions, ChannelId, ChannelKind, DomainCount, LinkCount, MessageKey, Result,
    TimeRange, User, UserId, WorkspaceId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::{excerpt, QueryEngine};
use crate::scope::{Allowed, Scope};
use crate::view::{load_views, MessageView};

/// What a digest covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRequest {
    /// Messages posted in this range.
    pub range: TimeRange,
    /// For whom (decides which channels count).
    #[serde(default)]
    pub scope: Scope,
    /// Rows per section (1..=100).
    pub limit: usize,
}

impl DigestRequest {
    /// A digest of `range` for the public scope, 5 rows per section.
    pub fn new(range: TimeRange) -> Self {
        DigestRequest {
            range,
            scope: Scope::Public,
            limit: 5,
        }
    }
}

/// A message worth mentioning, with its numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestMessage {
    /// The message.
    pub message: MessageView,
    /// Reactions it got.
    pub reactions: u32,
}

/// A lively thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestThread {
    /// Its parent (when stored).
    pub parent: Option<MessageView>,
    /// The parent's key.
    pub parent_key: MessageKey,
    /// Replies posted in the range.
    pub replies: u32,
    /// Distinct repliers.
    pub participants: u32,
}

/// A busy channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestChannel {
    /// Its id.
    pub id: ChannelId,
    /// Its name.
    pub name: Option<String>,
    /// Messages posted in the range.
    pub messages: u64,
    /// Distinct authors.
    pub people: u64,
}

/// A busy person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestPerson {
    /// Their id.
    pub id: UserId,
    /// Their name.
    pub name: Option<String>,
    /// Messages posted in the range.
    pub messages: u64,
    /// Reactions their messages got.
    pub reactions_received: u64,
}

/// A channel created in the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewChannel {
    /// Its id.
    pub id: ChannelId,
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: ChannelKind,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// Its purpose.
    pub purpose: Option<String>,
}

/// What happened in a workspace over a range, as far as the scope may see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    /// The workspace.
    pub workspace: WorkspaceId,
    /// Its name.
    pub workspace_name: String,
    /// The range covered.
    pub range: TimeRange,
    /// Messages with the most reactions.
    pub most_reacted: Vec<DigestMessage>,
    /// Threads with the most replies.
    pub active_threads: Vec<DigestThread>,
    /// The most shared URLs.
    pub top_links: Vec<LinkCount>,
    /// The most linked domains.
    pub top_domains: Vec<DomainCount>,
    /// The busiest channels.
    pub busiest_channels: Vec<DigestChannel>,
    /// The busiest people.
    pub busiest_people: Vec<DigestPerson>,
    /// Channels created in the range.
    pub new_channels: Vec<NewChannel>,
}

impl QueryEngine {
    /// Builds a digest. Only channels the scope may read count, in every section.
    ///
    /// # Errors
    /// `NotFound` (no such workspace), `InvalidInput` (limit out of range, a range that ends
    /// before it starts), store errors.
    pub async fn digest(&self, workspace: &WorkspaceId, request: DigestRequest) -> Result<Digest> {
        crate::engine::check_time_range(&request.range, "range")?;
        if request.limit == 0 || request.limit > 100 {
            return Err(chatvault_core::Error::invalid_input(format!(
                "digest limit {} is out of range 1..=100",
                request.limit
            ))
            .with_context("field", "limit"));
        }
        let ws = self.workspace(workspace).await?;
        let allowed = Allowed::compute(self.meta.as_ref(), workspace, &request.scope).await?;
        let channels = allowed.list(None);
        let mut digest = Digest {
            workspace: workspace.clone(),
            workspace_name: ws.name.clone(),
            range: request.range.clone(),
            most_reacted: Vec::new(),
            active_threads: Vec::new(),
            top_links: Vec::new(),
            top_domains: Vec::new(),
            busiest_channels: Vec::new(),
            busiest_people: Vec::new(),
            new_channels: Vec::new(),
        };
        if channels.is_empty() {
            return Ok(digest);
        }
        let options = AggregateOptions {
            range: request.range.clone(),
            channels: Some(channels),
            limit: request.limit,
        };
        let meta = self.meta.as_ref();

        let reacted = meta.most_reacted(workspace, &options).await?;
        let keys: Vec<MessageKey> = reacted.iter().map(|r| r.key.clone()).collect();
        let views = load_views(meta, self.content.as_ref(), &ws, &allowed, &keys).await?;
        for r in reacted {
            if let Some(v) = views.iter().find(|v| v.key == r.key) {
                digest.most_reacted.push(DigestMessage {
                    message: v.clone(),
                    reactions: r.reaction_count,
                });
            }
        }

        let threads = meta.most_active_threads(workspace, &options).await?;
        let keys: Vec<MessageKey> = threads.iter().map(|t| t.parent.clone()).collect();
        let views = load_views(meta, self.content.as_ref(), &ws, &allowed, &keys).await?;
        for t in threads {
            if !allowed.allows(&t.parent.channel) || t.parent.workspace != *workspace {
                continue;
            }
            digest.active_threads.push(DigestThread {
                parent: views.iter().find(|v| v.key == t.parent).cloned(),
                parent_key: t.parent,
                replies: t.reply_count,
                participants: t.participant_count,
            });
        }

        digest.top_links = meta.top_links(workspace, &options).await?;
        digest.top_domains = meta.top_domains(workspace, &options).await?;

        for c in meta.channel_activity(workspace, &options).await? {
            if !allowed.allows(&c.channel) {
                continue;
            }
            digest.busiest_channels.push(DigestChannel {
                name: allowed.channel(&c.channel).map(|ch| ch.name.clone()),
                id: c.channel,
                messages: c.messages,
                people: c.users,
            });
        }

        let people = meta.user_activity(workspace, &options).await?;
        let ids: Vec<UserId> = people.iter().map(|p| p.user.clone()).collect();
        let users: HashMap<UserId, User> = meta
            .get_users(workspace, &ids)
            .await?
            .into_iter()
            .map(|u| (u.id.clone(), u))
            .collect();
        for p in people {
            digest.busiest_people.push(DigestPerson {
                name: users.get(&p.user).map(|u| u.best_name().to_string()),
                id: p.user,
                messages: p.messages,
                reactions_received: p.reactions_received,
            });
        }

        let mut new: Vec<NewChannel> = allowed
            .channels
            .values()
            .filter(|c| allowed.allows(&c.id))
            .filter_map(|c| {
                let created = c.created?;
                let ts = chatvault_core::Ts::from_datetime(created);
                request.range.contains(&ts).then(|| NewChannel {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    kind: c.kind,
                    created,
                    purpose: c.purpose.clone().filter(|p| !p.is_empty()),
                })
            })
            .collect();
        new.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        digest.new_channels = new;
        Ok(digest)
    }
}

fn range_label(range: &TimeRange) -> String {
    let f = |t: Option<DateTime<Utc>>| t.map(|t| t.format("%Y-%m-%d").to_string());
    match (f(range.start), f(range.end)) {
        (Some(s), Some(e)) => format!("{s} to {e}"),
        (Some(s), None) => format!("since {s}"),
        (None, Some(e)) => format!("until {e}"),
        (None, None) => "all time".to_string(),
    }
}

/// Escapes Markdown's inline specials so message text cannot break the layout.
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn message_line(v: &MessageView) -> String {
    let text = v
        .text
        .as_deref()
        .map(|t| excerpt(t, 140))
        .unwrap_or_default();
    format!(
        "{} in {} on {}: “{}” ([link]({}))",
        md(&v.author_label()),
        md(&v.channel_label()),
        v.time.format("%Y-%m-%d"),
        md(&text),
        v.link()
    )
}

impl Digest {
    /// The digest as a Markdown newsletter; empty sections say so.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# {} digest — {}\n",
            md(&self.workspace_name),
            range_label(&self.range)
        );
        let section = |s: &mut String, title: &str, empty: bool| {
            let _ = writeln!(s, "## {title}\n");
            if empty {
                let _ = writeln!(s, "_Nothing in this period._\n");
            }
        };

        section(
            &mut s,
            "Most reacted messages",
            self.most_reacted.is_empty(),
        );
        for (i, m) in self.most_reacted.iter().enumerate() {
            let _ = writeln!(
                s,
                "{}. **{} reactions** — {}",
                i + 1,
                m.reactions,
                message_line(&m.message)
            );
        }
        if !self.most_reacted.is_empty() {
            s.push('\n');
        }

        section(
            &mut s,
            "Most active threads",
            self.active_threads.is_empty(),
        );
        for (i, t) in self.active_threads.iter().enumerate() {
            let what = match &t.parent {
                Some(p) => message_line(p),
                None => format!("thread {}", t.parent_key),
            };
            let _ = writeln!(
                s,
                "{}. **{} replies, {} people** — {}",
                i + 1,
                t.replies,
                t.participants,
                what
            );
        }
        if !self.active_threads.is_empty() {
            s.push('\n');
        }

        section(&mut s, "Most shared links", self.top_links.is_empty());
        for l in &self.top_links {
            let _ = writeln!(s, "- <{}> — shared {} times", l.url, l.count);
        }
        if !self.top_links.is_empty() {
            s.push('\n');
        }
        if !self.top_domains.is_empty() {
            let _ = writeln!(s, "Top domains:\n");
            for d in &self.top_domains {
                let _ = writeln!(s, "- {} — {} links", md(&d.domain), d.count);
            }
            s.push('\n');
        }

        section(&mut s, "Busiest channels", self.busiest_channels.is_empty());
        for c in &self.busiest_channels {
            let name = c.name.clone().unwrap_or_else(|| c.id.to_string());
            let _ = writeln!(
                s,
                "- \\#{} — {} messages from {} people",
                md(&name),
                c.messages,
                c.people
            );
        }
        if !self.busiest_channels.is_empty() {
            s.push('\n');
        }

        section(&mut s, "Busiest people", self.busiest_people.is_empty());
        for p in &self.busiest_people {
            let name = p.name.clone().unwrap_or_else(|| p.id.to_string());
            let _ = writeln!(
                s,
                "- {} — {} messages, {} reactions received",
                md(&name),
                p.messages,
                p.reactions_received
            );
        }
        if !self.busiest_people.is_empty() {
            s.push('\n');
        }

        section(&mut s, "New channels", self.new_channels.is_empty());
        for c in &self.new_channels {
            let purpose = c
                .purpose
                .as_deref()
                .map(|p| format!(": {}", md(&excerpt(p, 120))))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "- \\#{} (created {}){}",
                md(&c.name),
                c.created.format("%Y-%m-%d"),
                purpose
            );
        }
        s
    }
}
