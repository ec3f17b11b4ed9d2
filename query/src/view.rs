//! Enrichment: turning message keys into what a person reads — text, names, time, permalink,
//! reactions, thread.

use std::collections::{HashMap, HashSet};

use chatvault_core::{
    ChannelKind, ContentStore, FileRef, Link, MessageKey, MetadataStore, Reaction, Result, User,
    UserId, Workspace, WorkspaceId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::scope::Allowed;

/// A message as a person reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageView {
    /// Its key.
    pub key: MessageKey,
    /// The channel's name (without `#`).
    pub channel_name: Option<String>,
    /// The channel's kind.
    pub channel_kind: Option<ChannelKind>,
    /// The author's id.
    pub user: Option<UserId>,
    /// The author's name as people know it (display name, else real name, else handle).
    pub user_name: Option<String>,
    /// When it was posted.
    pub time: DateTime<Utc>,
    /// Its text (`None` when the content store holds no content for it).
    pub text: Option<String>,
    /// The Slack web permalink; `None` when the workspace has no known domain (see `app_link`).
    pub permalink: Option<String>,
    /// A `slack://` deep link that works without the domain (assumes the workspace id is the
    /// Slack team id).
    pub app_link: String,
    /// Its reactions.
    pub reactions: Vec<Reaction>,
    /// Its total reactions.
    pub reaction_count: u32,
    /// Replies in its thread (on a thread parent).
    pub reply_count: u32,
    /// The thread it belongs to, when it is a reply: the parent's key.
    pub thread_parent: Option<MessageKey>,
    /// The links it carries.
    pub links: Vec<Link>,
    /// The files shared with it (metadata only).
    pub files: Vec<FileRef>,
}

impl MessageView {
    /// `#channel`, or the channel id when the name is unknown.
    pub fn channel_label(&self) -> String {
        match &self.channel_name {
            Some(n) => format!("#{n}"),
            None => self.key.channel.to_string(),
        }
    }

    /// The author's name, or id, or `unknown`.
    pub fn author_label(&self) -> String {
        match (&self.user_name, &self.user) {
            (Some(n), _) => n.clone(),
            (None, Some(u)) => u.to_string(),
            (None, None) => "unknown".to_string(),
        }
    }

    /// The best link to cite: the permalink, else the app link.
    pub fn link(&self) -> &str {
        self.permalink.as_deref().unwrap_or(&self.app_link)
    }
}

/// The Slack permalink of a message: `https://{domain}.slack.com/archives/{channel}/p{ts}` (the ts
/// without its dot), with `?thread_ts=…&cid=…` for a reply. `None` without a domain.
pub fn permalink(
    domain: Option<&str>,
    key: &MessageKey,
    thread_ts: Option<&chatvault_core::Ts>,
) -> Option<String> {
    let domain = domain.filter(|d| !d.is_empty())?;
    let ts: String = key.ts.as_str().chars().filter(|c| *c != '.').collect();
    let mut link = format!("https://{domain}.slack.com/archives/{}/p{ts}", key.channel);
    if let Some(t) = thread_ts.filter(|t| *t != &key.ts) {
        link.push_str(&format!("?thread_ts={}&cid={}", t.as_str(), key.channel));
    }
    Some(link)
}

/// A `slack://` deep link to a message.
pub fn app_link(key: &MessageKey) -> String {
    format!(
        "slack://channel?team={}&id={}&message={}",
        key.workspace,
        key.channel,
        key.ts.as_str()
    )
}

/// Loads views for keys the scope allows, in the order of `keys`; keys outside the scope, of
/// another workspace, or without metadata are left out.
pub(crate) async fn load_views(
    meta: &dyn MetadataStore,
    content: &dyn ContentStore,
    workspace: &Workspace,
    allowed: &Allowed,
    keys: &[MessageKey],
) -> Result<Vec<MessageView>> {
    let ws: &WorkspaceId = &workspace.id;
    let keys: Vec<MessageKey> = keys
        .iter()
        .filter(|k| &k.workspace == ws && allowed.allows(&k.channel))
        .cloned()
        .collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let details = meta.get_messages(ws, &keys).await?;
    let docs = content.get(ws, &keys).await?;
    let texts: HashMap<&MessageKey, &str> = docs
        .iter()
        .map(|d| (d.key(), d.content.text.as_str()))
        .collect();
    let mut user_ids: Vec<UserId> = details
        .iter()
        .filter_map(|d| d.meta.user.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    user_ids.sort();
    let users: HashMap<UserId, User> = meta
        .get_users(ws, &user_ids)
        .await?
        .into_iter()
        .map(|u| (u.id.clone(), u))
        .collect();
    let domain = workspace.domain.as_deref();
    let mut out = Vec::with_capacity(details.len());
    for d in details {
        let m = d.meta;
        if m.key.workspace != *ws || !allowed.allows(&m.key.channel) {
            continue;
        }
        let channel = allowed.channel(&m.key.channel);
        let thread_parent = if m.is_reply() {
            m.thread_ts
                .as_ref()
                .map(|t| MessageKey::new(ws.clone(), m.key.channel.clone(), t.clone()))
        } else {
            None
        };
        out.push(MessageView {
            channel_name: channel.map(|c| c.name.clone()),
            channel_kind: channel.map(|c| c.kind),
            user_name: m
                .user
                .as_ref()
                .and_then(|u| users.get(u))
                .map(|u| u.best_name().to_string()),
            user: m.user.clone(),
            time: m.key.ts.to_datetime(),
            text: texts.get(&m.key).map(|t| t.to_string()),
            permalink: permalink(domain, &m.key, m.thread_ts.as_ref()),
            app_link: app_link(&m.key),
            reactions: d.reactions,
            reaction_count: m.reaction_count,
            reply_count: m.reply_count,
            thread_parent,
            links: d.links,
            files: d.files,
            key: m.key,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permalinks_follow_slacks_format() {
        let key = MessageKey::parse("T1", "C024BE91L", "1355517523.000005").expect("key");
        assert_eq!(
            permalink(Some("acme"), &key, None).as_deref(),
            Some("https://acme.slack.com/archives/C024BE91L/p1355517523000005")
        );
        let parent = chatvault_core::Ts::new("1355517500.000001").expect("ts");
        assert_eq!(
            permalink(Some("acme"), &key, Some(&parent)).as_deref(),
            Some("https://acme.slack.com/archives/C024BE91L/p1355517523000005?thread_ts=1355517500.000001&cid=C024BE91L")
        );
        // a thread parent's own thread_ts adds nothing
        assert!(!permalink(Some("acme"), &key, Some(&key.ts))
            .unwrap_or_default()
            .contains('?'));
        assert_eq!(permalink(None, &key, None), None);
        assert_eq!(permalink(Some(""), &key, None), None);
        assert_eq!(
            app_link(&key),
            "slack://channel?team=T1&id=C024BE91L&message=1355517523.000005"
        );
    }
}
