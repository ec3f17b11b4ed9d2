//! The relational side: who, where, when, reactions, links, files, threads, sync state, and the
//! outbox that carries content to the content store.

use async_trait::async_trait;

use crate::aggregate::{
    AggregateOptions, ChannelActivity, ChannelLatest, ContentIndexEntry, DomainCount,
    LatestOptions, LinkCount, LinkQuery, ReactedMessage, SharedLink, ThreadActivity, UserActivity,
    WorkspaceStats,
};
use crate::batch::{ApplyReport, WriteBatch};
use crate::channel::{Bookmark, Channel};
use crate::error::Result;
use crate::filter::{MessageFilter, PageRequest};
use crate::ids::{ChannelId, MessageKey, TeamId, UserId, WorkspaceId};
use crate::message::MessageDetails;
use crate::outbox::{
    ClaimRequest, FailOutcome, OutboxEntry, OutboxFailure, OutboxId, OutboxStats, RetryPolicy,
};
use crate::sync::{ProcessingQueueEntry, SyncStatus};
use crate::user::User;
use crate::workspace::{BotConfig, Installation, Team, Workspace};

/// The metadata store: relational data about messages (never their text, except as a transient
/// outbox payload) and the transactional outbox.
///
/// Every read and write names one workspace and touches nothing outside it. Writes go through
/// [`apply`](Self::apply), which is atomic and idempotent. All methods are safe to call
/// concurrently.
///
/// Backends: `chatvault-storage-postgres` (PostgreSQL, SQLite) and the in-memory reference store
/// in `chatvault_core::testing`. Every backend passes `chatvault_core::testing::metadata_suite`.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait MetadataStore: Send + Sync + std::fmt::Debug + 'static {
    /// The backend's name (`"postgres"`, `"sqlite"`, `"memory"`), used in errors and logs.
    fn backend(&self) -> &'static str;

    // ----- workspaces and installations -----

    /// Creates the workspace or updates its name and domain. Idempotent.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn upsert_workspace(&self, workspace: &Workspace) -> Result<()>;

    /// The workspace, if it exists.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn get_workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>>;

    /// All workspaces, ordered by id.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn list_workspaces(&self) -> Result<Vec<Workspace>>;

    /// Deletes the workspace and every row that belongs to it (outbox entries included), in one
    /// transaction. Deleting a missing workspace succeeds (idempotent).
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn delete_workspace(&self, id: &WorkspaceId) -> Result<()>;

    /// Stores an installation (one per workspace and team), replacing an earlier one. Persistent
    /// backends encrypt the token at rest; it never appears in logs or errors.
    ///
    /// # Errors
    /// `NotFound` if the workspace does not exist.
    async fn put_installation(&self, installation: &Installation) -> Result<()>;

    /// The workspace's installation for `team` (`None`: the one without a team, or the only one).
    ///
    /// # Errors
    /// `Backend` if the stored token cannot be decrypted (wrong key).
    async fn get_installation(
        &self,
        workspace: &WorkspaceId,
        team: Option<TeamId>,
    ) -> Result<Option<Installation>>;

    // ----- writes -----

    /// Writes a batch in **one transaction**: all of it or nothing.
    ///
    /// Contract:
    /// - The workspace must exist (`NotFound` otherwise) and every key must name it
    ///   (`InvalidInput`); [`WriteBatch::validate`] rules apply. On any error nothing is written.
    /// - Every part is an upsert (see [`WriteBatch`]): applying the same batch again changes nothing
    ///   and enqueues nothing (idempotent).
    /// - A message write whose stored row has a newer `edited` revision is ignored; a message
    ///   write for a deleted (tombstoned) key is ignored. Both are counted in the report.
    /// - For each written message the store compares its content's
    ///   [`content_hash`](crate::MessageContent::content_hash) with the one recorded, and only when
    ///   it changed enqueues an `Upsert` outbox entry (or a `Delete` when content became `None`
    ///   and content had been enqueued before). Deletes enqueue a `Delete` when the message had
    ///   content. Reaction changes enqueue one `Attributes` entry per message with content whose
    ///   attributes ([`ContentAttributes::from_meta`](crate::ContentAttributes::from_meta) with the
    ///   channel's kind, `Public` if the channel is unknown) differ after the batch from before it —
    ///   so re-applying a batch enqueues nothing.
    /// - **Renames.** A user written with a [`best_name`](crate::User::best_name) other than the
    ///   stored one (or a user not stored before), and a channel written with a name other than
    ///   the stored one, enqueue one `Reindex` entry for each of their stored messages that has
    ///   content (a content hash recorded), so the names in the index follow. A write with the
    ///   same name enqueues nothing.
    ///   Outbox ids only grow, and are the versions of the changes.
    /// - Message text is stored only in outbox rows.
    ///
    /// # Errors
    /// `NotFound` (unknown workspace), `InvalidInput` (bad batch), `Unavailable`/`Backend`.
    async fn apply(&self, batch: WriteBatch) -> Result<ApplyReport>;

    /// Clears the recorded content hash and content id of these messages, so that their next write
    /// enqueues their content again (reconcile uses it when content went missing). Unknown keys are
    /// ignored. Returns how many stored messages were reset.
    ///
    /// # Errors
    /// `InvalidInput` if a key names another workspace.
    async fn forget_content(&self, workspace: &WorkspaceId, keys: &[MessageKey]) -> Result<u64>;

    /// Enqueues a `Reindex` outbox entry for each of these messages that has content (a
    /// content hash recorded), in one transaction, so the relay rebuilds their index text;
    /// migrating a collection to a new [index-text version](crate::INDEX_TEXT_VERSION) uses it.
    /// Unknown keys and messages without content are skipped. Returns how many were enqueued.
    ///
    /// # Errors
    /// `InvalidInput` if a key names another workspace; `Unsupported` on a read-only store;
    /// `Unavailable`/`Backend` when the store fails.
    async fn reindex_content(&self, workspace: &WorkspaceId, keys: &[MessageKey]) -> Result<u64>;

    // ----- reads -----

    /// The messages with these keys and what hangs off them, in the order of `keys`; missing keys
    /// are left out.
    ///
    /// # Errors
    /// `InvalidInput` if a key names another workspace.
    async fn get_messages(
        &self,
        workspace: &WorkspaceId,
        keys: &[MessageKey],
    ) -> Result<Vec<MessageDetails>>;

    /// The keys of messages matching `filter`, ordered by (ts, channel), one page at a time.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn filter_messages(
        &self,
        workspace: &WorkspaceId,
        filter: &MessageFilter,
        page: &PageRequest,
    ) -> Result<Vec<MessageKey>>;

    /// How many messages match `filter`.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn count_messages(&self, workspace: &WorkspaceId, filter: &MessageFilter) -> Result<u64>;

    /// One channel.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn get_channel(
        &self,
        workspace: &WorkspaceId,
        channel: &ChannelId,
    ) -> Result<Option<Channel>>;

    /// All channels, ordered by name.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn list_channels(&self, workspace: &WorkspaceId) -> Result<Vec<Channel>>;

    /// A channel's members, ordered by id.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn channel_members(
        &self,
        workspace: &WorkspaceId,
        channel: &ChannelId,
    ) -> Result<Vec<UserId>>;

    /// The channels a user is a member of, ordered by id.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn user_channels(&self, workspace: &WorkspaceId, user: &UserId)
        -> Result<Vec<ChannelId>>;

    /// These users, in the order of `ids`; unknown ids are left out.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn get_users(&self, workspace: &WorkspaceId, ids: &[UserId]) -> Result<Vec<User>>;

    /// All users, ordered by id.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn list_users(&self, workspace: &WorkspaceId) -> Result<Vec<User>>;

    /// All teams, ordered by id.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn list_teams(&self, workspace: &WorkspaceId) -> Result<Vec<Team>>;

    /// A channel's bookmarks (all channels' with `None`), ordered by id.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn list_bookmarks(
        &self,
        workspace: &WorkspaceId,
        channel: Option<ChannelId>,
    ) -> Result<Vec<Bookmark>>;

    /// The participants of one thread, ordered by id.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn thread_participants(
        &self,
        workspace: &WorkspaceId,
        parent: &MessageKey,
    ) -> Result<Vec<UserId>>;

    /// All sync cursors, ordered by (channel, source).
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn list_sync_status(&self, workspace: &WorkspaceId) -> Result<Vec<SyncStatus>>;

    /// Processing-queue jobs with this status (all with `None`), ordered by id.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn list_processing_queue(
        &self,
        workspace: &WorkspaceId,
        status: Option<String>,
    ) -> Result<Vec<ProcessingQueueEntry>>;

    /// All bot settings, ordered by key.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn list_bot_config(&self, workspace: &WorkspaceId) -> Result<Vec<BotConfig>>;

    /// Counts for the workspace.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn stats(&self, workspace: &WorkspaceId) -> Result<WorkspaceStats>;

    /// Messages that should have content (a content hash is recorded), ordered by (channel, ts) —
    /// the order of [`ContentStore::list_versions`](crate::ContentStore::list_versions), so
    /// reconcile can merge the two — for reconcile. `page.after` continues after that key in the
    /// same (channel, ts) order (not `PageRequest`'s usual (ts, channel)).
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn content_index(
        &self,
        workspace: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Vec<ContentIndexEntry>>;

    // ----- aggregates -----
    //
    // The activity aggregates (`most_active_threads`, `channel_activity`, `user_activity`) count
    // only messages in which someone said something (`counts_as_activity`): a channel full of
    // joins is not busy. The others list what happened to messages of any subtype.

    /// Messages with at least one reaction, most reactions first (ties: older first, then
    /// channel).
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn most_reacted(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<ReactedMessage>>;

    /// Threads with the most replies posted in the range, most first (ties: older parent first).
    /// Counted from stored replies (`thread_ts` set and not the message's own ts) that count as
    /// activity ([`counts_as_activity`](crate::counts_as_activity): no subtype, or one of
    /// [`ACTIVITY_SUBTYPES`](crate::ACTIVITY_SUBTYPES)); the parent need not be stored. A thread
    /// with no such reply in the range is not listed.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn most_active_threads(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<ThreadActivity>>;

    /// The most shared URLs (distinct messages), most first (ties: URL order).
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn top_links(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<LinkCount>>;

    /// The most linked domains, most first (ties: domain order).
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn top_domains(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<DomainCount>>;

    /// The busiest channels, most messages first (ties: channel id order). Counts only messages
    /// that count as activity ([`counts_as_activity`](crate::counts_as_activity): no subtype, or
    /// one of [`ACTIVITY_SUBTYPES`](crate::ACTIVITY_SUBTYPES)), bots' included; joins, topic
    /// changes, archives and other events are not, and a channel with nothing else in the range is
    /// not listed.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn channel_activity(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<ChannelActivity>>;

    /// Each channel's newest stored message in `options.range` (any subtype, replies included),
    /// and with [`with_counts`](LatestOptions::with_counts) how many it stored in the range, for
    /// the channels `options.channels` names (all with `None`), ordered by channel id. A channel
    /// with no message in the range is not listed. One query, not one per channel: a web
    /// archive's channel list, and its day navigation, are built on it.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn channel_latest(
        &self,
        workspace: &WorkspaceId,
        options: &LatestOptions,
    ) -> Result<Vec<ChannelLatest>>;

    /// The busiest people, most messages first (ties: user id order). Counts only messages with
    /// an author that count as activity ([`counts_as_activity`](crate::counts_as_activity): no
    /// subtype, or one of [`ACTIVITY_SUBTYPES`](crate::ACTIVITY_SUBTYPES)), and the reactions
    /// those received; a person whose only messages in the range are events (joins, topic
    /// changes…) is not listed.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn user_activity(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<UserActivity>>;

    /// Links shared in a range, ordered by (message ts, channel, position in the message).
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn list_links(
        &self,
        workspace: &WorkspaceId,
        query: &LinkQuery,
    ) -> Result<Vec<SharedLink>>;

    // ----- outbox -----

    /// Claims up to `limit` due outbox entries under a lease, oldest first.
    ///
    /// Contract:
    /// - While a lease holds, no other claim returns the entry (concurrent claimers never share one).
    /// - **Per-message order**: an entry is returned only if no older live (not dead-lettered)
    ///   entry for the same message exists; so a later change is never delivered before an
    ///   earlier one.
    /// - An entry whose lease expired without ack or fail becomes claimable again (at-least-once).
    /// - An entry leased by an owner that is known to be dead
    ///   ([`LeaseOwner::is_gone`](crate::LeaseOwner::is_gone) on its owner string: a process on
    ///   this host whose pid is gone or was reused) is claimable at once, as if its lease had
    ///   expired. Owners on other hosts, and owner strings that are not a `LeaseOwner`, keep their
    ///   leases until they expire.
    /// - Dead-lettered entries and entries waiting for a retry time are not returned.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn claim_outbox(&self, request: &ClaimRequest) -> Result<Vec<OutboxEntry>>;

    /// Acknowledges delivered entries: deletes them (their text goes with them) and, for upserts
    /// whose message still exists, records `content_id` on the message. Unknown ids are ignored
    /// (another relay acked them). Atomic.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn ack_outbox(&self, ids: &[OutboxId]) -> Result<()>;

    /// Ends the lease of claimed entries without counting an attempt: their attempt count, last
    /// error and retry time are unchanged, and they are claimable again at once. For a relay that
    /// claimed entries but could not start delivering them (another process holds the content
    /// store's writer lock, say) — that is not a failure of the entries. Unknown, acked and
    /// dead-lettered ids are ignored. Returns how many leases were ended.
    ///
    /// # Errors
    /// `Unsupported` on a read-only store; `Unavailable`/`Backend` when the store fails.
    async fn release_outbox(&self, ids: &[OutboxId]) -> Result<u64>;

    /// Records failed deliveries: bumps the attempt count, stores the error, and either sets the
    /// next retry time (`policy.delay_after(attempts)` from now) or, after `policy.max_attempts`
    /// attempts or a non-retryable failure, dead-letters the entry.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn fail_outbox(
        &self,
        failures: &[OutboxFailure],
        policy: &RetryPolicy,
    ) -> Result<Vec<FailOutcome>>;

    /// Dead-lettered entries (one workspace's, or all with `None`), oldest first.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn dead_letters(
        &self,
        workspace: Option<WorkspaceId>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>>;

    /// Puts dead-lettered entries back in the queue with zero attempts: these ids, or all of the
    /// workspace's with `None`. Returns how many were re-queued.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn requeue_dead_letters(
        &self,
        workspace: Option<WorkspaceId>,
        ids: Option<Vec<OutboxId>>,
    ) -> Result<u64>;

    /// Outbox counts (one workspace's, or all with `None`).
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn outbox_stats(&self, workspace: Option<WorkspaceId>) -> Result<OutboxStats>;

    /// The distinct keys of the workspace's messages that have an undelivered outbox entry
    /// (waiting, leased or dead-lettered), at most `limit` of them, ordered by (channel, ts).
    /// The content store's copy of every other message is current, which lets a search push
    /// conditions on fast-changing attributes (reactions) down to it.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the store fails.
    async fn undelivered_keys(
        &self,
        workspace: &WorkspaceId,
        limit: usize,
    ) -> Result<Vec<MessageKey>>;

    /// Ends the store's use: a writer makes everything it committed durable in the database's
    /// own files and lets its connections go (SQLite folds its write-ahead log into the database
    /// file, so that a reader on a read-only copy or mount sees every commit). Call it when a
    /// writing job is done; the store must not be used afterwards. Stores that hold nothing to
    /// flush (in-memory, read-only) do nothing.
    ///
    /// # Errors
    /// `Unavailable`/`Backend` when the final flush fails (every commit stays durable).
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
