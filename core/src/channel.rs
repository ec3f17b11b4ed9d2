//! Conversations (channels, private groups, IMs, MPIMs), their members and bookmarks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ChannelId, UserId};

/// What kind of conversation a channel is; decides who may see its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A public channel: every member of the workspace may read it.
    Public,
    /// A private channel: only its members.
    Private,
    /// A direct message between two people.
    Im,
    /// A group direct message.
    Mpim,
}

impl ChannelKind {
    /// Whether everyone in the workspace may read it.
    pub fn is_public(self) -> bool {
        matches!(self, ChannelKind::Public)
    }

    /// The lowercase name used in storage and filters (`public`, `private`, `im`, `mpim`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Public => "public",
            ChannelKind::Private => "private",
            ChannelKind::Im => "im",
            ChannelKind::Mpim => "mpim",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s output.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "public" => ChannelKind::Public,
            "private" => ChannelKind::Private,
            "im" => ChannelKind::Im,
            "mpim" => ChannelKind::Mpim,
            _ => return None,
        })
    }
}

/// A conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    /// Slack's id.
    pub id: ChannelId,
    /// Its name without `#` (for IMs, the other person's id).
    pub name: String,
    /// Public, private, IM or MPIM.
    pub kind: ChannelKind,
    /// Archived channels are read-only in Slack but stay searchable.
    pub is_archived: bool,
    /// Whether it is the workspace's `#general`.
    pub is_general: bool,
    /// The topic.
    pub topic: Option<String>,
    /// The purpose.
    pub purpose: Option<String>,
    /// Who created it.
    pub creator: Option<UserId>,
    /// When it was created.
    pub created: Option<DateTime<Utc>>,
}

impl Channel {
    /// A channel with only an id, a name and a kind.
    pub fn new(id: ChannelId, name: impl Into<String>, kind: ChannelKind) -> Self {
        Channel {
            id,
            name: name.into(),
            kind,
            is_archived: false,
            is_general: false,
            topic: None,
            purpose: None,
            creator: None,
            created: None,
        }
    }
}

/// A change to a channel's membership, as written in a [`WriteBatch`](crate::WriteBatch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MembershipChange {
    /// The channel's members are exactly these users (an export's `members` list).
    Replace {
        /// The channel.
        channel: ChannelId,
        /// All its members.
        users: Vec<UserId>,
    },
    /// One user joined (`member_joined_channel`). Idempotent.
    Join {
        /// The channel.
        channel: ChannelId,
        /// Who joined.
        user: UserId,
    },
    /// One user left (`member_left_channel`). Idempotent.
    Leave {
        /// The channel.
        channel: ChannelId,
        /// Who left.
        user: UserId,
    },
}

/// A channel bookmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bookmark {
    /// Slack's bookmark id.
    pub id: String,
    /// The channel it is pinned to.
    pub channel: ChannelId,
    /// Its title.
    pub title: String,
    /// Where it points.
    pub link: Option<String>,
    /// Its emoji.
    pub emoji: Option<String>,
    /// When it was created.
    pub created: Option<DateTime<Utc>>,
}
