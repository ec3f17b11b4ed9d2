//! Filters: which messages a metadata query or a content search may return.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::channel::ChannelKind;
use crate::ids::{ChannelId, MessageKey, Ts, UserId};
use crate::message::{ContentAttributes, MessageMeta};

/// A half-open time range `[start, end)` over message timestamps; either end may be open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// Inclusive start.
    pub start: Option<DateTime<Utc>>,
    /// Exclusive end.
    pub end: Option<DateTime<Utc>>,
}

impl TimeRange {
    /// The range `[start, end)`.
    pub fn between(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        TimeRange {
            start: Some(start),
            end: Some(end),
        }
    }

    /// Every time.
    pub fn all() -> Self {
        TimeRange::default()
    }

    /// The start in microseconds since the epoch (what stores compare `ts` with).
    pub fn start_micros(&self) -> Option<i64> {
        self.start.map(|t| t.timestamp_micros())
    }

    /// The end in microseconds since the epoch.
    pub fn end_micros(&self) -> Option<i64> {
        self.end.map(|t| t.timestamp_micros())
    }

    /// Whether `ts` falls inside.
    pub fn contains(&self, ts: &Ts) -> bool {
        let m = ts.as_micros();
        self.start_micros().is_none_or(|s| m >= s) && self.end_micros().is_none_or(|e| m < e)
    }
}

/// Which part of threads to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "ts", rename_all = "snake_case")]
pub enum ThreadFilter {
    /// Messages that are not replies (thread parents and unthreaded messages).
    TopLevel,
    /// Only replies.
    Replies,
    /// One thread: the parent with this ts and its replies.
    Thread(Ts),
}

/// A metadata query: every condition set must hold (`None` means "any").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageFilter {
    /// Only these channels.
    pub channels: Option<Vec<ChannelId>>,
    /// Only these authors.
    pub users: Option<Vec<UserId>>,
    /// Only channels of these kinds.
    pub channel_kinds: Option<Vec<ChannelKind>>,
    /// Only messages in this time range.
    pub time: TimeRange,
    /// Only this part of threads.
    pub thread: Option<ThreadFilter>,
    /// Only messages with (or without) reactions.
    pub has_reactions: Option<bool>,
    /// Only messages with (or without) files.
    pub has_files: Option<bool>,
    /// Only messages with (or without) links.
    pub has_links: Option<bool>,
    /// Only messages with (or without) attachments.
    pub has_attachments: Option<bool>,
    /// Only messages with at least this many reactions.
    pub min_reactions: Option<u32>,
}

impl MessageFilter {
    /// Whether a message matches, given its channel's kind. The reference semantics every backend
    /// must reproduce.
    pub fn matches(&self, meta: &MessageMeta, kind: ChannelKind) -> bool {
        let k = &meta.key;
        self.channels
            .as_ref()
            .is_none_or(|c| c.contains(&k.channel))
            && self
                .users
                .as_ref()
                .is_none_or(|u| meta.user.as_ref().is_some_and(|m| u.contains(m)))
            && self
                .channel_kinds
                .as_ref()
                .is_none_or(|ks| ks.contains(&kind))
            && self.time.contains(&k.ts)
            && match &self.thread {
                None => true,
                Some(ThreadFilter::TopLevel) => !meta.is_reply(),
                Some(ThreadFilter::Replies) => meta.is_reply(),
                Some(ThreadFilter::Thread(t)) => &k.ts == t || meta.thread_ts.as_ref() == Some(t),
            }
            && self.has_reactions.is_none_or(|b| meta.has_reactions == b)
            && self.has_files.is_none_or(|b| meta.has_files == b)
            && self.has_links.is_none_or(|b| (meta.link_count > 0) == b)
            && self
                .has_attachments
                .is_none_or(|b| meta.has_attachments == b)
            && self.min_reactions.is_none_or(|n| meta.reaction_count >= n)
    }
}

/// A page of keys: those after `after` in (ts, channel) order, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Continue after this key (the last one of the previous page).
    pub after: Option<MessageKey>,
    /// At most this many.
    pub limit: usize,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            after: None,
            limit: 1000,
        }
    }
}

impl PageRequest {
    /// The first page of `limit` keys.
    pub fn first(limit: usize) -> Self {
        PageRequest { after: None, limit }
    }
}

/// A content-store filter: every condition set must hold (`None` means "any").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentFilter {
    /// Only these keys (an allow-list, usually the metadata store's candidates). `Some(vec![])`
    /// matches nothing.
    pub keys: Option<Vec<MessageKey>>,
    /// Only these channels.
    pub channels: Option<Vec<ChannelId>>,
    /// Only these authors.
    pub users: Option<Vec<UserId>>,
    /// Only messages in this time range.
    pub time: TimeRange,
    /// Only this thread (parent and replies).
    pub thread_ts: Option<Ts>,
    /// Only replies (`true`) or only non-replies (`false`).
    pub is_reply: Option<bool>,
    /// Only with (or without) files.
    pub has_files: Option<bool>,
    /// Only with (or without) links.
    pub has_links: Option<bool>,
    /// Only with at least this many reactions (as of the last content write).
    pub min_reactions: Option<u32>,
    /// Only channels of these kinds.
    pub visibility: Option<Vec<ChannelKind>>,
}

impl ContentFilter {
    /// Whether no condition is set.
    pub fn is_empty(&self) -> bool {
        self == &ContentFilter::default()
    }

    /// Whether a document with this key and these attributes matches. The reference semantics
    /// every backend must reproduce.
    pub fn matches(&self, key: &MessageKey, a: &ContentAttributes) -> bool {
        self.keys.as_ref().is_none_or(|ks| ks.contains(key))
            && self
                .channels
                .as_ref()
                .is_none_or(|c| c.contains(&key.channel))
            && self
                .users
                .as_ref()
                .is_none_or(|u| a.user.as_ref().is_some_and(|x| u.contains(x)))
            && self.time.contains(&key.ts)
            && self
                .thread_ts
                .as_ref()
                .is_none_or(|t| &key.ts == t || a.thread_ts.as_ref() == Some(t))
            && self.is_reply.is_none_or(|b| a.is_reply == b)
            && self.has_files.is_none_or(|b| a.has_files == b)
            && self.has_links.is_none_or(|b| a.has_links == b)
            && self.min_reactions.is_none_or(|n| a.reaction_count >= n)
            && self
                .visibility
                .as_ref()
                .is_none_or(|v| v.contains(&a.visibility))
    }
}
