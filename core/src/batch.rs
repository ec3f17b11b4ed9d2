//! The unit of writing to the metadata store: one batch, one transaction.

use serde::{Deserialize, Serialize};

use crate::channel::{Bookmark, Channel, MembershipChange};
use crate::ids::{ChannelId, MessageKey, UserId, WorkspaceId};
use crate::message::{MessageRecord, ReactionChange, ThreadParticipant};
use crate::sync::{ProcessingQueueEntry, SyncStatus};
use crate::user::User;
use crate::workspace::{BotConfig, Team};

/// Everything one [`MetadataStore::apply`](crate::MetadataStore::apply) writes, in one transaction.
///
/// Every part is an upsert keyed as documented on it, so applying the same batch twice changes
/// nothing. Parts are applied in field order: teams, users, channels, memberships, messages,
/// reaction changes, message deletes, thread participants, bookmarks, sync status, processing
/// queue, bot config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WriteBatch {
    /// The workspace every row belongs to; it must exist. Every key in the batch must name it.
    pub workspace: Option<WorkspaceId>,
    /// Teams, by id.
    pub teams: Vec<Team>,
    /// Users, by id.
    pub users: Vec<User>,
    /// Channels, by id.
    pub channels: Vec<Channel>,
    /// Membership changes, in order.
    pub memberships: Vec<MembershipChange>,
    /// Messages, by key, with their reactions, links, files and content.
    pub messages: Vec<MessageRecord>,
    /// Single reaction changes, in order; a change to an unknown message is ignored.
    pub reaction_changes: Vec<ReactionChange>,
    /// Messages deleted: removed with everything that hangs off them, content deleted through the
    /// outbox, and a tombstone kept so that an older write arriving later cannot resurrect them.
    pub message_deletes: Vec<MessageKey>,
    /// Thread participants, by (channel, thread, user).
    pub thread_participants: Vec<ThreadParticipant>,
    /// Bookmarks, by id.
    pub bookmarks: Vec<Bookmark>,
    /// Sync cursors, by (channel, source).
    pub sync_status: Vec<SyncStatus>,
    /// Processing-queue jobs, by id.
    pub processing_queue: Vec<ProcessingQueueEntry>,
    /// Bot settings, by key.
    pub bot_config: Vec<BotConfig>,
}

impl WriteBatch {
    /// An empty batch for `workspace`.
    pub fn new(workspace: WorkspaceId) -> Self {
        WriteBatch {
            workspace: Some(workspace),
            ..Default::default()
        }
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.teams.is_empty()
            && self.users.is_empty()
            && self.channels.is_empty()
            && self.memberships.is_empty()
            && self.messages.is_empty()
            && self.reaction_changes.is_empty()
            && self.message_deletes.is_empty()
            && self.thread_participants.is_empty()
            && self.bookmarks.is_empty()
            && self.sync_status.is_empty()
            && self.processing_queue.is_empty()
            && self.bot_config.is_empty()
    }

    /// Checks what can be checked without a store: the workspace is set, every key names it,
    /// content belongs to its own message, texts are within [`MAX_TEXT_BYTES`](crate::MAX_TEXT_BYTES).
    /// Backends call this first so that every one rejects the same input the same way.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming the offending key.
    pub fn validate(&self) -> crate::Result<&WorkspaceId> {
        use crate::Error;
        let ws = self
            .workspace
            .as_ref()
            .ok_or_else(|| Error::invalid_input("write batch has no workspace"))?;
        for m in &self.messages {
            m.meta.key.ensure_workspace(ws)?;
            if let Some(c) = &m.content {
                if c.key != m.meta.key {
                    return Err(Error::invalid_input(format!(
                        "content key {} differs from its message's key {}",
                        c.key, m.meta.key
                    )));
                }
                if c.text.len() > crate::message::MAX_TEXT_BYTES {
                    return Err(Error::invalid_input(format!(
                        "message text is {} bytes, more than {}",
                        c.text.len(),
                        crate::message::MAX_TEXT_BYTES
                    ))
                    .with_context("key", &m.meta.key));
                }
            }
        }
        for r in &self.reaction_changes {
            r.key.ensure_workspace(ws)?;
        }
        for k in &self.message_deletes {
            k.ensure_workspace(ws)?;
        }
        Ok(ws)
    }
}

/// What an [`apply`](crate::MetadataStore::apply) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Message rows inserted or updated.
    pub messages_written: u64,
    /// Message writes ignored because the stored row had a newer `edited` revision.
    pub messages_stale: u64,
    /// Message writes ignored because the message was deleted.
    pub messages_deleted_before: u64,
    /// Messages deleted.
    pub messages_deleted: u64,
    /// Outbox entries enqueued (content whose hash changed, deletes, attribute changes).
    pub outbox_enqueued: u64,
}

/// Channels and users a caller may see: what a permission-aware read passes down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelScope {
    /// The channels allowed.
    pub channels: Vec<ChannelId>,
    /// For whom the scope was computed (`None`: an administrator or public-only scope).
    pub viewer: Option<UserId>,
}
