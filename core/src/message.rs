//! Messages: their metadata (no text), their content (text + filter attributes), and what hangs
//! off them (reactions, links, files, thread participants).

use serde::{Deserialize, Serialize};

use crate::channel::ChannelKind;
use crate::ids::{ChannelId, MessageKey, Ts, UserId};

/// The longest message text chatvault stores, in bytes. Slack caps messages at 40,000 characters;
/// longer input is rejected with a clear error rather than truncated silently.
pub const MAX_TEXT_BYTES: usize = 160_000;

/// A message's metadata: everything but its text. This is what the metadata store keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// Its identity.
    pub key: MessageKey,
    /// Who posted it (absent for some bot and system messages).
    pub user: Option<UserId>,
    /// The bot that posted it, for `bot_message`s.
    pub bot_id: Option<String>,
    /// The thread it belongs to: the parent's ts (equal to `key.ts` for a thread parent).
    pub thread_ts: Option<Ts>,
    /// How many replies the thread has (on the parent).
    pub reply_count: u32,
    /// How many people replied (on the parent).
    pub reply_users_count: u32,
    /// The newest reply's ts (on the parent).
    pub latest_reply: Option<Ts>,
    /// Slack's subtype (`bot_message`, `thread_broadcast`, `file_share`…); `None` for a plain message.
    pub subtype: Option<String>,
    /// When it was last edited: its revision. A write carrying an older `edited` than the stored
    /// row is ignored (`None` is oldest), so an edit never loses to the message it edits.
    pub edited: Option<Ts>,
    /// Whether it has legacy attachments (unfurls, bot attachments).
    pub has_attachments: bool,
    /// Whether files were shared with it.
    pub has_files: bool,
    /// Whether anyone reacted to it.
    pub has_reactions: bool,
    /// The total number of reactions (all emoji, all users).
    pub reaction_count: u32,
    /// How many users, channels or groups it mentions.
    pub mention_count: u32,
    /// How many links it carries (text, attachments and blocks).
    pub link_count: u32,
    /// The content store's id for its content, once the relay has delivered it. Set by the store;
    /// ignored on write.
    pub content_id: Option<String>,
    /// The hash of the content last enqueued for it. Set by the store; ignored on write.
    pub content_hash: Option<String>,
}

impl MessageMeta {
    /// Metadata with only a key; every count zero and every flag false.
    pub fn new(key: MessageKey) -> Self {
        MessageMeta {
            key,
            user: None,
            bot_id: None,
            thread_ts: None,
            reply_count: 0,
            reply_users_count: 0,
            latest_reply: None,
            subtype: None,
            edited: None,
            has_attachments: false,
            has_files: false,
            has_reactions: false,
            reaction_count: 0,
            mention_count: 0,
            link_count: 0,
            content_id: None,
            content_hash: None,
        }
    }

    /// Whether it is a reply inside a thread (not the thread's parent).
    pub fn is_reply(&self) -> bool {
        self.thread_ts.as_ref().is_some_and(|t| t != &self.key.ts)
    }

    /// Whether it starts a thread that has replies.
    pub fn is_thread_parent(&self) -> bool {
        self.thread_ts.as_ref() == Some(&self.key.ts) || self.reply_count > 0
    }
}

/// One emoji reaction on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    /// The emoji's name without colons (`thumbsup`).
    pub name: String,
    /// Who reacted (Slack may list fewer users than `count`).
    pub users: Vec<UserId>,
    /// How many reacted.
    pub count: u32,
}

/// Where in a message a link was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkSource {
    /// In the message text (`<https://…|label>`).
    Text,
    /// In a legacy attachment or unfurl.
    Attachment,
    /// In a Block Kit block.
    Block,
}

/// A link shared in a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The URL as shared.
    pub url: String,
    /// Its lowercase host without `www.` (`github.com`).
    pub domain: String,
    /// Where it was found.
    pub source: LinkSource,
    /// A title, when an unfurl or label gave one.
    pub title: Option<String>,
}

impl Link {
    /// A link, its domain taken from the URL (`None` when the URL has no host).
    pub fn parse(url: &str, source: LinkSource) -> Option<Self> {
        let parsed = url::Url::parse(url).ok()?;
        let host = parsed.host_str()?.to_ascii_lowercase();
        let domain = host.strip_prefix("www.").unwrap_or(&host).to_string();
        Some(Link {
            url: url.to_string(),
            domain,
            source,
            title: None,
        })
    }
}

/// A file shared in a message: metadata and links only, never the bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRef {
    /// Slack's file id.
    pub id: String,
    /// The file name.
    pub name: Option<String>,
    /// Its title.
    pub title: Option<String>,
    /// Its MIME type.
    pub mimetype: Option<String>,
    /// Slack's file type (`pdf`, `png`…).
    pub filetype: Option<String>,
    /// Size in bytes.
    pub size: Option<u64>,
    /// The authenticated download URL.
    pub url_private: Option<String>,
    /// The permalink.
    pub permalink: Option<String>,
}

/// Someone who took part in a thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadParticipant {
    /// The channel of the thread.
    pub channel: ChannelId,
    /// The parent's ts.
    pub thread_ts: Ts,
    /// The participant.
    pub user: UserId,
}

/// The attributes the content store filters on, stored next to the text.
///
/// All of them derive from metadata, so the metadata store can rebuild them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentAttributes {
    /// The author.
    pub user: Option<UserId>,
    /// The thread's parent ts, if in a thread.
    pub thread_ts: Option<Ts>,
    /// Whether it is a reply (not the parent).
    pub is_reply: bool,
    /// Whether files were shared with it.
    pub has_files: bool,
    /// Whether it carries links.
    pub has_links: bool,
    /// Total reactions when the content was last written. The metadata store is authoritative;
    /// reaction changes reach the content store through `OutboxOp::Attributes`.
    pub reaction_count: u32,
    /// The channel's kind, for permission filters.
    pub visibility: ChannelKind,
}

impl ContentAttributes {
    /// The attributes of a message with this metadata in a channel of this kind.
    pub fn from_meta(meta: &MessageMeta, visibility: ChannelKind) -> Self {
        ContentAttributes {
            user: meta.user.clone(),
            thread_ts: meta.thread_ts.clone(),
            is_reply: meta.is_reply(),
            has_files: meta.has_files,
            has_links: meta.link_count > 0,
            reaction_count: meta.reaction_count,
            visibility,
        }
    }
}

/// The version of the index-text format ([`MessageContent::index_text`]). A content collection
/// records the version its documents were indexed with; the relay re-indexes a collection of an
/// older version once (through the outbox) when it starts.
///
/// 1: the author's name before the text (`"Dana Lee: text"`).
pub const INDEX_TEXT_VERSION: u32 = 1;

/// A message's context: what is indexed with its text (for BM25 and the embedding) but never
/// shown as what was said. In chat a line means little without who said it.
///
/// The relay fills it at delivery from the metadata store's current names, so a rename reaches
/// the index through the outbox ([`OutboxOp::Reindex`](crate::OutboxOp::Reindex)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexContext {
    /// The author's name as people know it ([`User::best_name`](crate::User::best_name)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The channel's name, without `#`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

impl IndexContext {
    /// Whether it adds nothing.
    pub fn is_empty(&self) -> bool {
        self.author.is_none() && self.channel.is_none()
    }
}

/// A message's content: its searchable text and filter attributes. Only the content store keeps
/// it; in the metadata store it exists only as a transient outbox payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageContent {
    /// Whose content.
    pub key: MessageKey,
    /// The text as said, shown in results: the message text with attachment and block text
    /// appended.
    pub text: String,
    /// What searches filter on.
    pub attributes: ContentAttributes,
    /// What is indexed with the text ([`index_text`](Self::index_text)); content stores keep it
    /// beside the text and return it from `get`.
    #[serde(default, skip_serializing_if = "IndexContext::is_empty")]
    pub context: IndexContext,
}

impl MessageContent {
    /// The channel (part of the key).
    pub fn channel(&self) -> &ChannelId {
        &self.key.channel
    }

    /// A message's content with no context.
    pub fn new(key: MessageKey, text: impl Into<String>, attributes: ContentAttributes) -> Self {
        MessageContent {
            key,
            text: text.into(),
            attributes,
            context: IndexContext::default(),
        }
    }

    /// What is indexed, for BM25 and the embedding alike: the text with its context in front
    /// (`"#general Dana Lee: text"`). Without context it is the text itself.
    pub fn index_text(&self) -> std::borrow::Cow<'_, str> {
        let c = &self.context;
        if c.is_empty() {
            return std::borrow::Cow::Borrowed(&self.text);
        }
        let mut s = String::with_capacity(self.text.len() + 48);
        if let Some(ch) = &c.channel {
            s.push('#');
            s.push_str(ch);
            s.push(' ');
        }
        if let Some(a) = &c.author {
            s.push_str(a);
            s.push_str(": ");
        }
        s.push_str(&self.text);
        std::borrow::Cow::Owned(s)
    }

    /// A hash of the [index text](Self::index_text): equal hashes mean the stored embedding can
    /// be reused.
    pub fn text_hash(&self) -> String {
        blake3::hash(self.index_text().as_bytes())
            .to_hex()
            .to_string()
    }

    /// A hash of the text and the attributes (not the context, which the relay adds): the
    /// metadata store enqueues a content change only when it differs from the one it recorded
    /// last, and reconcile compares it with the content store's.
    pub fn content_hash(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(self.text.as_bytes());
        h.update(&[0]);
        // serde_json of a struct with fixed field order is deterministic
        let attrs = serde_json::to_vec(&self.attributes).expect("attributes always serialize");
        h.update(&attrs);
        h.finalize().to_hex().to_string()
    }
}

/// A message to write in a [`WriteBatch`](crate::WriteBatch): metadata plus the sets that hang off
/// it, and its content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The metadata row.
    pub meta: MessageMeta,
    /// All its reactions: replaces the stored set.
    pub reactions: Vec<Reaction>,
    /// All its links: replaces the stored set.
    pub links: Vec<Link>,
    /// All its files: replaces the stored set.
    pub files: Vec<FileRef>,
    /// Its content. `Some`: enqueued for the content store when its hash changed. `None`: the
    /// message has no searchable content (a `channel_join`, say); content stored earlier is deleted.
    pub content: Option<MessageContent>,
}

impl MessageRecord {
    /// A record with metadata only.
    pub fn new(meta: MessageMeta) -> Self {
        MessageRecord {
            meta,
            reactions: Vec::new(),
            links: Vec::new(),
            files: Vec::new(),
            content: None,
        }
    }
}

/// One user adding or removing one reaction (`reaction_added` / `reaction_removed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionChange {
    /// The message reacted to.
    pub key: MessageKey,
    /// The emoji name.
    pub name: String,
    /// Who reacted.
    pub user: UserId,
    /// `true` for added, `false` for removed.
    pub added: bool,
}

/// A message's metadata with everything that hangs off it: what enrichment reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageDetails {
    /// The metadata row.
    pub meta: MessageMeta,
    /// Its reactions, by emoji name.
    pub reactions: Vec<Reaction>,
    /// Its links, in the order written.
    pub links: Vec<Link>,
    /// Its files, in the order written.
    pub files: Vec<FileRef>,
}
