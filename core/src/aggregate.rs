//! Aggregates over a workspace's metadata: what the digest and the PR finder are built on.

use serde::{Deserialize, Serialize};

use crate::filter::TimeRange;
use crate::ids::{ChannelId, MessageKey, Ts, UserId};
use crate::message::Link;

/// The subtypes of messages in which someone said something — besides plain messages, which have
/// no subtype. Activity aggregates count only these (see [`counts_as_activity`]); every other
/// subtype records something happening to a conversation (joins, topic changes, archives, pins…)
/// and would make a channel look busy, or a person talkative, when nobody said anything.
///
/// A list of what counts rather than of what does not, so a subtype Slack adds later is not
/// counted until someone decides it carries something said. The collector stores text for
/// exactly these (its subtype table reads this list).
pub const ACTIVITY_SUBTYPES: &[&str] = &[
    "bot_message",
    "me_message",
    "thread_broadcast",
    "reply_broadcast",
    "file_share",
    "file_comment",
    "file_mention",
    "slackbot_response",
];

/// Whether a message with this subtype (`None`: a plain message) counts as activity: someone
/// said something in it.
pub fn counts_as_activity(subtype: Option<&str>) -> bool {
    subtype.is_none_or(|s| ACTIVITY_SUBTYPES.contains(&s))
}

/// Which messages an aggregate counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateOptions {
    /// Messages posted in this range.
    pub range: TimeRange,
    /// Only these channels (`None`: all): how permission scopes reach aggregates.
    pub channels: Option<Vec<ChannelId>>,
    /// At most this many rows.
    pub limit: usize,
}

impl Default for AggregateOptions {
    fn default() -> Self {
        AggregateOptions {
            range: TimeRange::all(),
            channels: None,
            limit: 10,
        }
    }
}

/// A message and how many reactions it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactedMessage {
    /// The message.
    pub key: MessageKey,
    /// Its total reactions.
    pub reaction_count: u32,
}

/// A thread and how lively it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadActivity {
    /// The thread's parent.
    pub parent: MessageKey,
    /// Replies stored for it in the range that count as activity ([`counts_as_activity`]).
    pub reply_count: u32,
    /// Distinct authors of those replies.
    pub participant_count: u32,
    /// The newest of those replies.
    pub latest_reply: Option<Ts>,
}

/// A URL and how often it was shared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCount {
    /// The URL.
    pub url: String,
    /// Its domain.
    pub domain: String,
    /// How many messages shared it.
    pub count: u64,
}

/// A domain and how often links to it were shared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainCount {
    /// The domain.
    pub domain: String,
    /// How many links to it.
    pub count: u64,
}

/// A channel's activity in a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelActivity {
    /// The channel.
    pub channel: ChannelId,
    /// Messages posted that count as activity ([`counts_as_activity`]).
    pub messages: u64,
    /// Distinct authors of those messages.
    pub users: u64,
}

/// Which channels' latest messages [`MetadataStore::channel_latest`](crate::MetadataStore::channel_latest)
/// finds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatestOptions {
    /// Messages posted in this range (`end` set: the latest before a day, say).
    pub range: TimeRange,
    /// Only these channels (`None`: every channel with a message): how permission scopes reach
    /// it. Callers pass the channels a viewer may read.
    pub channels: Option<Vec<ChannelId>>,
    /// Also count each channel's messages in the range (costs a scan of the channels' index
    /// entries in the range; finding the latest alone costs one index probe per channel).
    pub with_counts: bool,
}

/// A channel's latest stored message in a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelLatest {
    /// The channel.
    pub channel: ChannelId,
    /// The newest stored message's ts (any subtype, thread replies included: what a day of
    /// the channel shows).
    pub latest: Ts,
    /// Stored messages in the range (any subtype), when
    /// [`with_counts`](LatestOptions::with_counts) asked for them.
    pub messages: Option<u64>,
}

/// A person's activity in a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserActivity {
    /// The person.
    pub user: UserId,
    /// Messages they posted that count as activity ([`counts_as_activity`]).
    pub messages: u64,
    /// Reactions those messages received.
    pub reactions_received: u64,
}

/// Which shared links to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkQuery {
    /// Shared in this range.
    pub range: TimeRange,
    /// Only in these channels.
    pub channels: Option<Vec<ChannelId>>,
    /// Only to these domains (exact, lowercase).
    pub domains: Option<Vec<String>>,
    /// At most this many (0: no limit).
    pub limit: usize,
}

/// A link and the message that shared it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedLink {
    /// The message.
    pub key: MessageKey,
    /// The link.
    pub link: Link,
}

/// Counts for a workspace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceStats {
    /// Stored messages.
    pub messages: u64,
    /// Of which replies.
    pub replies: u64,
    /// Channels.
    pub channels: u64,
    /// Users.
    pub users: u64,
    /// Reactions (sum of counts).
    pub reactions: u64,
    /// Links.
    pub links: u64,
    /// Files.
    pub files: u64,
    /// Messages whose content was delivered to the content store.
    pub with_content: u64,
}

/// A message that should have content in the content store, as reconcile compares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentIndexEntry {
    /// The message.
    pub key: MessageKey,
    /// The hash of the content last enqueued for it.
    pub content_hash: String,
    /// Set once delivered.
    pub content_id: Option<String>,
}
