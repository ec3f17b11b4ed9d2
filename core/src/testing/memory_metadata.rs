//! [`MemoryMetadataStore`]: the in-memory reference [`MetadataStore`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{
    counts_as_activity, AggregateOptions, ApplyReport, Bookmark, BotConfig, Channel,
    ChannelActivity, ChannelId, ChannelKind, ChannelLatest, ClaimRequest, ContentAttributes,
    ContentIndexEntry, DomainCount, Error, FailOutcome, FileRef, Installation, LatestOptions,
    LeaseOwner, Link, LinkCount, LinkQuery, MembershipChange, MessageDetails, MessageFilter,
    MessageKey, MessageMeta, MetadataStore, OutboxEntry, OutboxFailure, OutboxId, OutboxOp,
    OutboxStats, PageRequest, ProcessingQueueEntry, ReactedMessage, Reaction, Result, RetryPolicy,
    SharedLink, SyncStatus, Team, TeamId, ThreadActivity, TimeRange, Ts, User, UserActivity,
    UserId, Workspace, WorkspaceId, WorkspaceStats, WriteBatch,
};

const BACKEND: &str = "memory";

/// The in-memory reference [`MetadataStore`]: every method implemented exactly as the trait
/// documents it, with one mutex around all state (so `apply` is trivially atomic and concurrent
/// claimers never share an outbox row).
///
/// For tests, examples and doctests: nothing is persisted. It passes
/// [`metadata_suite`](crate::testing::metadata_suite).
///
/// ```
/// use chatvault_core::testing::MemoryMetadataStore;
/// use chatvault_core::{MetadataStore, Workspace, WorkspaceId};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> chatvault_core::Result<()> {
/// let store = MemoryMetadataStore::new();
/// let ws = WorkspaceId::new("T1")?;
/// store.upsert_workspace(&Workspace::new(ws.clone(), "Acme")).await?;
/// assert_eq!(store.list_workspaces().await?.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct MemoryMetadataStore {
    state: Mutex<State>,
}

impl fmt::Debug for MemoryMetadataStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state();
        f.debug_struct("MemoryMetadataStore")
            .field("workspaces", &st.workspaces.len())
            .field("outbox", &st.outbox.len())
            .finish()
    }
}

#[derive(Default)]
struct State {
    workspaces: BTreeMap<WorkspaceId, WsData>,
    outbox: BTreeMap<OutboxId, OutboxRow>,
    last_outbox_id: OutboxId,
}

struct WsData {
    workspace: Workspace,
    installations: BTreeMap<Option<TeamId>, Installation>,
    teams: BTreeMap<TeamId, Team>,
    users: BTreeMap<UserId, User>,
    channels: BTreeMap<ChannelId, Channel>,
    members: BTreeMap<ChannelId, BTreeSet<UserId>>,
    /// Ordered by key, i.e. (channel, ts).
    messages: BTreeMap<MessageKey, StoredMessage>,
    tombstones: HashSet<MessageKey>,
    thread_participants: BTreeSet<(ChannelId, Ts, UserId)>,
    bookmarks: BTreeMap<String, Bookmark>,
    sync_status: BTreeMap<(ChannelId, String), SyncStatus>,
    processing_queue: BTreeMap<String, ProcessingQueueEntry>,
    bot_config: BTreeMap<String, BotConfig>,
}

impl WsData {
    fn new(workspace: Workspace) -> Self {
        WsData {
            workspace,
            installations: BTreeMap::new(),
            teams: BTreeMap::new(),
            users: BTreeMap::new(),
            channels: BTreeMap::new(),
            members: BTreeMap::new(),
            messages: BTreeMap::new(),
            tombstones: HashSet::new(),
            thread_participants: BTreeSet::new(),
            bookmarks: BTreeMap::new(),
            sync_status: BTreeMap::new(),
            processing_queue: BTreeMap::new(),
            bot_config: BTreeMap::new(),
        }
    }

    fn kind_of(&self, channel: &ChannelId) -> ChannelKind {
        self.channels
            .get(channel)
            .map(|c| c.kind)
            .unwrap_or(ChannelKind::Public)
    }

    /// Messages posted in `range` in one of `channels` (all with `None`).
    fn messages_in<'a>(
        &'a self,
        range: &'a TimeRange,
        channels: &'a Option<Vec<ChannelId>>,
    ) -> impl Iterator<Item = &'a StoredMessage> + 'a {
        self.messages.values().filter(move |m| {
            range.contains(&m.meta.key.ts)
                && channels
                    .as_ref()
                    .is_none_or(|c| c.contains(&m.meta.key.channel))
        })
    }
}

#[derive(Clone)]
struct StoredMessage {
    meta: MessageMeta,
    reactions: Vec<Reaction>,
    links: Vec<Link>,
    files: Vec<FileRef>,
}

struct OutboxRow {
    entry: OutboxEntry,
    lease_until: Option<DateTime<Utc>>,
    lease_owner: Option<String>,
}

impl OutboxRow {
    fn leased(&self, now: DateTime<Utc>) -> bool {
        self.lease_until.is_some_and(|t| t > now)
    }
}

fn enqueue(
    outbox: &mut BTreeMap<OutboxId, OutboxRow>,
    last_id: &mut OutboxId,
    key: MessageKey,
    op: OutboxOp,
    now: DateTime<Utc>,
) {
    *last_id += 1;
    outbox.insert(
        *last_id,
        OutboxRow {
            entry: OutboxEntry {
                id: *last_id,
                key,
                op,
                attempts: 0,
                last_error: None,
                created_at: now,
                available_at: now,
                dead: false,
            },
            lease_until: None,
            lease_owner: None,
        },
    );
}

fn check_keys(workspace: &WorkspaceId, keys: &[MessageKey]) -> Result<()> {
    for k in keys {
        k.ensure_workspace(workspace)
            .map_err(|e| e.with_context("key", k).with_backend(BACKEND))?;
    }
    Ok(())
}

fn to_std(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl MemoryMetadataStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere (a failing test) must not make every later call panic too.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the workspace's data, or returns `default` when the workspace is unknown.
    fn read<T>(&self, ws: &WorkspaceId, default: T, f: impl FnOnce(&WsData) -> T) -> T {
        let st = self.state();
        match st.workspaces.get(ws) {
            Some(d) => f(d),
            None => default,
        }
    }
}

fn apply_reaction_change(
    reactions: &mut Vec<Reaction>,
    name: &str,
    user: &UserId,
    added: bool,
) -> bool {
    if added {
        match reactions.iter_mut().find(|r| r.name == name) {
            Some(r) if r.users.contains(user) => false,
            Some(r) => {
                r.users.push(user.clone());
                r.count += 1;
                true
            }
            None => {
                reactions.push(Reaction {
                    name: name.to_string(),
                    users: vec![user.clone()],
                    count: 1,
                });
                true
            }
        }
    } else {
        let Some(i) = reactions.iter().position(|r| r.name == name) else {
            return false;
        };
        let r = &mut reactions[i];
        let Some(u) = r.users.iter().position(|u| u == user) else {
            return false;
        };
        r.users.remove(u);
        r.count = r.count.saturating_sub(1);
        if r.count == 0 {
            reactions.remove(i);
        }
        true
    }
}

fn sort_limit<T>(
    mut v: Vec<T>,
    limit: usize,
    cmp: impl FnMut(&T, &T) -> std::cmp::Ordering,
) -> Vec<T> {
    v.sort_by(cmp);
    v.truncate(limit);
    v
}

#[async_trait]
impl MetadataStore for MemoryMetadataStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn upsert_workspace(&self, workspace: &Workspace) -> Result<()> {
        let mut st = self.state();
        match st.workspaces.get_mut(&workspace.id) {
            Some(d) => {
                d.workspace.name = workspace.name.clone();
                d.workspace.domain = workspace.domain.clone();
            }
            None => {
                let mut w = workspace.clone();
                w.created_at = Some(w.created_at.unwrap_or_else(Utc::now));
                st.workspaces.insert(w.id.clone(), WsData::new(w));
            }
        }
        Ok(())
    }

    async fn get_workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>> {
        Ok(self.read(id, None, |d| Some(d.workspace.clone())))
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        Ok(self
            .state()
            .workspaces
            .values()
            .map(|d| d.workspace.clone())
            .collect())
    }

    async fn delete_workspace(&self, id: &WorkspaceId) -> Result<()> {
        let mut st = self.state();
        st.workspaces.remove(id);
        st.outbox.retain(|_, r| &r.entry.key.workspace != id);
        Ok(())
    }

    async fn put_installation(&self, installation: &Installation) -> Result<()> {
        let mut st = self.state();
        let d = st
            .workspaces
            .get_mut(&installation.workspace)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "workspace {} does not exist",
                    installation.workspace
                ))
                .with_context("workspace", &installation.workspace)
                .with_backend(BACKEND)
            })?;
        d.installations
            .insert(installation.team.clone(), installation.clone());
        Ok(())
    }

    async fn get_installation(
        &self,
        workspace: &WorkspaceId,
        team: Option<TeamId>,
    ) -> Result<Option<Installation>> {
        Ok(self.read(workspace, None, |d| match &team {
            Some(_) => d.installations.get(&team).cloned(),
            None => d.installations.get(&None).cloned().or_else(|| {
                if d.installations.len() == 1 {
                    d.installations.values().next().cloned()
                } else {
                    None
                }
            }),
        }))
    }

    async fn apply(&self, batch: WriteBatch) -> Result<ApplyReport> {
        let ws_id = batch
            .validate()
            .map_err(|e| e.with_backend(BACKEND))?
            .clone();
        let now = Utc::now();
        let mut guard = self.state();
        let State {
            workspaces,
            outbox,
            last_outbox_id,
        } = &mut *guard;
        let ws = workspaces.get_mut(&ws_id).ok_or_else(|| {
            Error::not_found(format!("workspace {ws_id} does not exist"))
                .with_context("workspace", &ws_id)
                .with_backend(BACKEND)
        })?;
        // Everything that can fail was checked above: from here on every step succeeds, so the
        // batch is written entirely or (on an error above) not at all.
        let mut report = ApplyReport::default();
        let mut attributes_before: Vec<(MessageKey, Option<ContentAttributes>)> = Vec::new();
        for rc in &batch.reaction_changes {
            if attributes_before.iter().any(|(k, _)| k == &rc.key) {
                continue;
            }
            let before = ws
                .messages
                .get(&rc.key)
                .filter(|m| m.meta.content_hash.is_some())
                .map(|m| ContentAttributes::from_meta(&m.meta, ws.kind_of(&rc.key.channel)));
            attributes_before.push((rc.key.clone(), before));
        }
        for t in batch.teams {
            ws.teams.insert(t.id.clone(), t);
        }
        let mut renamed_users: HashSet<UserId> = HashSet::new();
        for mut u in batch.users {
            // A user seen without an email (a `user_change` read without the email scope)
            // keeps the one already stored.
            if u.email.is_none() {
                u.email = ws.users.get(&u.id).and_then(|old| old.email.clone());
            }
            if ws.users.get(&u.id).map(User::best_name) != Some(u.best_name()) {
                renamed_users.insert(u.id.clone());
            }
            ws.users.insert(u.id.clone(), u);
        }
        let mut renamed_channels: HashSet<ChannelId> = HashSet::new();
        for c in batch.channels {
            if ws.channels.get(&c.id).map(|o| o.name.as_str()) != Some(c.name.as_str()) {
                renamed_channels.insert(c.id.clone());
            }
            ws.channels.insert(c.id.clone(), c);
        }
        // The names in the index follow a rename: one `Reindex` per stored message with content.
        if !renamed_users.is_empty() || !renamed_channels.is_empty() {
            for (key, m) in &ws.messages {
                let by_renamed = m
                    .meta
                    .user
                    .as_ref()
                    .is_some_and(|u| renamed_users.contains(u));
                if m.meta.content_hash.is_some()
                    && (by_renamed || renamed_channels.contains(&key.channel))
                {
                    enqueue(outbox, last_outbox_id, key.clone(), OutboxOp::Reindex, now);
                    report.outbox_enqueued += 1;
                }
            }
        }
        for m in batch.memberships {
            match m {
                MembershipChange::Replace { channel, users } => {
                    ws.members.insert(channel, users.into_iter().collect());
                }
                MembershipChange::Join { channel, user } => {
                    ws.members.entry(channel).or_default().insert(user);
                }
                MembershipChange::Leave { channel, user } => {
                    if let Some(s) = ws.members.get_mut(&channel) {
                        s.remove(&user);
                    }
                }
            }
        }
        for rec in batch.messages {
            let key = rec.meta.key.clone();
            if ws.tombstones.contains(&key) {
                report.messages_deleted_before += 1;
                continue;
            }
            let old = ws.messages.get(&key);
            if old.is_some_and(|o| rec.meta.edited < o.meta.edited) {
                report.messages_stale += 1;
                continue;
            }
            let (old_hash, old_id) = old
                .map(|o| (o.meta.content_hash.clone(), o.meta.content_id.clone()))
                .unwrap_or_default();
            let mut meta = rec.meta;
            meta.content_hash = old_hash.clone();
            meta.content_id = old_id;
            match rec.content {
                Some(content) => {
                    let hash = content.content_hash();
                    if old_hash.as_deref() != Some(hash.as_str()) {
                        enqueue(
                            outbox,
                            last_outbox_id,
                            key.clone(),
                            OutboxOp::Upsert { content },
                            now,
                        );
                        report.outbox_enqueued += 1;
                        meta.content_hash = Some(hash);
                    }
                }
                None => {
                    if old_hash.is_some() {
                        enqueue(outbox, last_outbox_id, key.clone(), OutboxOp::Delete, now);
                        report.outbox_enqueued += 1;
                        meta.content_hash = None;
                        meta.content_id = None;
                    }
                }
            }
            ws.messages.insert(
                key,
                StoredMessage {
                    meta,
                    reactions: rec.reactions,
                    links: rec.links,
                    files: rec.files,
                },
            );
            report.messages_written += 1;
        }
        for rc in batch.reaction_changes {
            if let Some(m) = ws.messages.get_mut(&rc.key) {
                if apply_reaction_change(&mut m.reactions, &rc.name, &rc.user, rc.added) {
                    let total: u32 = m.reactions.iter().map(|r| r.count).sum();
                    m.meta.reaction_count = total;
                    m.meta.has_reactions = total > 0;
                }
            }
        }
        // One `Attributes` entry per message with content whose attributes differ from what they
        // were before the batch: re-applying a batch enqueues nothing.
        for (key, before) in attributes_before {
            let kind = ws.kind_of(&key.channel);
            let Some(m) = ws.messages.get(&key) else {
                continue;
            };
            if m.meta.content_hash.is_none() {
                continue;
            }
            let attributes = ContentAttributes::from_meta(&m.meta, kind);
            if before.as_ref() != Some(&attributes) {
                enqueue(
                    outbox,
                    last_outbox_id,
                    key,
                    OutboxOp::Attributes { attributes },
                    now,
                );
                report.outbox_enqueued += 1;
            }
        }
        for key in batch.message_deletes {
            if let Some(old) = ws.messages.remove(&key) {
                report.messages_deleted += 1;
                if old.meta.content_hash.is_some() {
                    enqueue(outbox, last_outbox_id, key.clone(), OutboxOp::Delete, now);
                    report.outbox_enqueued += 1;
                }
            }
            ws.tombstones.insert(key);
        }
        for p in batch.thread_participants {
            ws.thread_participants
                .insert((p.channel, p.thread_ts, p.user));
        }
        for b in batch.bookmarks {
            ws.bookmarks.insert(b.id.clone(), b);
        }
        for s in batch.sync_status {
            ws.sync_status
                .insert((s.channel.clone(), s.source.clone()), s);
        }
        for q in batch.processing_queue {
            ws.processing_queue.insert(q.id.clone(), q);
        }
        for c in batch.bot_config {
            ws.bot_config.insert(c.key.clone(), c);
        }
        Ok(report)
    }

    async fn forget_content(&self, workspace: &WorkspaceId, keys: &[MessageKey]) -> Result<u64> {
        check_keys(workspace, keys)?;
        let mut st = self.state();
        let Some(d) = st.workspaces.get_mut(workspace) else {
            return Ok(0);
        };
        let mut n = 0;
        for k in keys {
            if let Some(m) = d.messages.get_mut(k) {
                m.meta.content_hash = None;
                m.meta.content_id = None;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn reindex_content(&self, workspace: &WorkspaceId, keys: &[MessageKey]) -> Result<u64> {
        check_keys(workspace, keys)?;
        let now = Utc::now();
        let mut guard = self.state();
        let State {
            workspaces,
            outbox,
            last_outbox_id,
        } = &mut *guard;
        let Some(d) = workspaces.get(workspace) else {
            return Ok(0);
        };
        let mut n = 0;
        for k in keys {
            if d.messages
                .get(k)
                .is_some_and(|m| m.meta.content_hash.is_some())
            {
                enqueue(outbox, last_outbox_id, k.clone(), OutboxOp::Reindex, now);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn get_messages(
        &self,
        workspace: &WorkspaceId,
        keys: &[MessageKey],
    ) -> Result<Vec<MessageDetails>> {
        check_keys(workspace, keys)?;
        Ok(self.read(workspace, Vec::new(), |d| {
            keys.iter()
                .filter_map(|k| d.messages.get(k))
                .map(|m| {
                    let mut reactions = m.reactions.clone();
                    reactions.sort_by(|a, b| a.name.cmp(&b.name));
                    MessageDetails {
                        meta: m.meta.clone(),
                        reactions,
                        links: m.links.clone(),
                        files: m.files.clone(),
                    }
                })
                .collect()
        }))
    }

    async fn filter_messages(
        &self,
        workspace: &WorkspaceId,
        filter: &MessageFilter,
        page: &PageRequest,
    ) -> Result<Vec<MessageKey>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            let after = page.after.as_ref().map(|a| (&a.ts, &a.channel));
            let mut keys: Vec<&MessageKey> = d
                .messages
                .values()
                .filter(|m| filter.matches(&m.meta, d.kind_of(&m.meta.key.channel)))
                .map(|m| &m.meta.key)
                .filter(|k| after.is_none_or(|a| (&k.ts, &k.channel) > a))
                .collect();
            keys.sort_by(|a, b| (&a.ts, &a.channel).cmp(&(&b.ts, &b.channel)));
            keys.into_iter().take(page.limit).cloned().collect()
        }))
    }

    async fn count_messages(&self, workspace: &WorkspaceId, filter: &MessageFilter) -> Result<u64> {
        Ok(self.read(workspace, 0, |d| {
            d.messages
                .values()
                .filter(|m| filter.matches(&m.meta, d.kind_of(&m.meta.key.channel)))
                .count() as u64
        }))
    }

    async fn get_channel(
        &self,
        workspace: &WorkspaceId,
        channel: &ChannelId,
    ) -> Result<Option<Channel>> {
        Ok(self.read(workspace, None, |d| d.channels.get(channel).cloned()))
    }

    async fn list_channels(&self, workspace: &WorkspaceId) -> Result<Vec<Channel>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            let mut v: Vec<Channel> = d.channels.values().cloned().collect();
            v.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
            v
        }))
    }

    async fn channel_members(
        &self,
        workspace: &WorkspaceId,
        channel: &ChannelId,
    ) -> Result<Vec<UserId>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            d.members
                .get(channel)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        }))
    }

    async fn user_channels(
        &self,
        workspace: &WorkspaceId,
        user: &UserId,
    ) -> Result<Vec<ChannelId>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            d.members
                .iter()
                .filter(|(_, s)| s.contains(user))
                .map(|(c, _)| c.clone())
                .collect()
        }))
    }

    async fn get_users(&self, workspace: &WorkspaceId, ids: &[UserId]) -> Result<Vec<User>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            ids.iter().filter_map(|i| d.users.get(i).cloned()).collect()
        }))
    }

    async fn list_users(&self, workspace: &WorkspaceId) -> Result<Vec<User>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            d.users.values().cloned().collect()
        }))
    }

    async fn list_teams(&self, workspace: &WorkspaceId) -> Result<Vec<Team>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            d.teams.values().cloned().collect()
        }))
    }

    async fn list_bookmarks(
        &self,
        workspace: &WorkspaceId,
        channel: Option<ChannelId>,
    ) -> Result<Vec<Bookmark>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            d.bookmarks
                .values()
                .filter(|b| channel.as_ref().is_none_or(|c| &b.channel == c))
                .cloned()
                .collect()
        }))
    }

    async fn thread_participants(
        &self,
        workspace: &WorkspaceId,
        parent: &MessageKey,
    ) -> Result<Vec<UserId>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            let mut v: Vec<UserId> = d
                .thread_participants
                .iter()
                .filter(|(c, t, _)| c == &parent.channel && t == &parent.ts)
                .map(|(_, _, u)| u.clone())
                .collect();
            v.sort();
            v
        }))
    }

    async fn list_sync_status(&self, workspace: &WorkspaceId) -> Result<Vec<SyncStatus>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            d.sync_status.values().cloned().collect()
        }))
    }

    async fn list_processing_queue(
        &self,
        workspace: &WorkspaceId,
        status: Option<String>,
    ) -> Result<Vec<ProcessingQueueEntry>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            d.processing_queue
                .values()
                .filter(|q| status.as_ref().is_none_or(|s| &q.status == s))
                .cloned()
                .collect()
        }))
    }

    async fn list_bot_config(&self, workspace: &WorkspaceId) -> Result<Vec<BotConfig>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            d.bot_config.values().cloned().collect()
        }))
    }

    async fn stats(&self, workspace: &WorkspaceId) -> Result<WorkspaceStats> {
        Ok(self.read(workspace, WorkspaceStats::default(), |d| {
            let mut s = WorkspaceStats {
                channels: d.channels.len() as u64,
                users: d.users.len() as u64,
                ..Default::default()
            };
            for m in d.messages.values() {
                s.messages += 1;
                s.replies += u64::from(m.meta.is_reply());
                s.reactions += m.reactions.iter().map(|r| u64::from(r.count)).sum::<u64>();
                s.links += m.links.len() as u64;
                s.files += m.files.len() as u64;
                s.with_content += u64::from(m.meta.content_id.is_some());
            }
            s
        }))
    }

    async fn content_index(
        &self,
        workspace: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Vec<ContentIndexEntry>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            d.messages
                .values()
                .filter(|m| {
                    m.meta.content_hash.is_some()
                        && page.after.as_ref().is_none_or(|a| {
                            (&m.meta.key.channel, &m.meta.key.ts) > (&a.channel, &a.ts)
                        })
                })
                .take(page.limit)
                .filter_map(|m| {
                    Some(ContentIndexEntry {
                        key: m.meta.key.clone(),
                        content_hash: m.meta.content_hash.clone()?,
                        content_id: m.meta.content_id.clone(),
                    })
                })
                .collect()
        }))
    }

    async fn most_reacted(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<ReactedMessage>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            let v: Vec<ReactedMessage> = d
                .messages_in(&options.range, &options.channels)
                .filter(|m| m.meta.reaction_count > 0)
                .map(|m| ReactedMessage {
                    key: m.meta.key.clone(),
                    reaction_count: m.meta.reaction_count,
                })
                .collect();
            sort_limit(v, options.limit, |a, b| {
                b.reaction_count
                    .cmp(&a.reaction_count)
                    .then_with(|| (&a.key.ts, &a.key.channel).cmp(&(&b.key.ts, &b.key.channel)))
            })
        }))
    }

    async fn most_active_threads(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<ThreadActivity>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            // (channel, parent ts) -> (replies, repliers, latest reply)
            let mut threads: HashMap<(ChannelId, Ts), (u32, BTreeSet<UserId>, Option<Ts>)> =
                HashMap::new();
            for m in d.messages_in(&options.range, &options.channels) {
                if !m.meta.is_reply() || !counts_as_activity(m.meta.subtype.as_deref()) {
                    continue;
                }
                let Some(parent) = m.meta.thread_ts.clone() else {
                    continue;
                };
                let t = threads
                    .entry((m.meta.key.channel.clone(), parent))
                    .or_default();
                t.0 += 1;
                if let Some(u) = &m.meta.user {
                    t.1.insert(u.clone());
                }
                if t.2.as_ref().is_none_or(|l| l < &m.meta.key.ts) {
                    t.2 = Some(m.meta.key.ts.clone());
                }
            }
            let v: Vec<ThreadActivity> = threads
                .into_iter()
                .map(|((channel, ts), (n, users, latest))| ThreadActivity {
                    parent: MessageKey::new(workspace.clone(), channel, ts),
                    reply_count: n,
                    participant_count: users.len() as u32,
                    latest_reply: latest,
                })
                .collect();
            sort_limit(v, options.limit, |a, b| {
                b.reply_count.cmp(&a.reply_count).then_with(|| {
                    (&a.parent.ts, &a.parent.channel).cmp(&(&b.parent.ts, &b.parent.channel))
                })
            })
        }))
    }

    async fn top_links(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<LinkCount>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            let mut urls: BTreeMap<&str, (&str, u64)> = BTreeMap::new();
            for m in d.messages_in(&options.range, &options.channels) {
                let distinct: BTreeMap<&str, &str> = m
                    .links
                    .iter()
                    .map(|l| (l.url.as_str(), l.domain.as_str()))
                    .collect();
                for (url, domain) in distinct {
                    urls.entry(url).or_insert((domain, 0)).1 += 1;
                }
            }
            let v: Vec<LinkCount> = urls
                .into_iter()
                .map(|(url, (domain, count))| LinkCount {
                    url: url.to_string(),
                    domain: domain.to_string(),
                    count,
                })
                .collect();
            sort_limit(v, options.limit, |a, b| {
                b.count.cmp(&a.count).then_with(|| a.url.cmp(&b.url))
            })
        }))
    }

    async fn top_domains(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<DomainCount>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            let mut domains: BTreeMap<&str, u64> = BTreeMap::new();
            for m in d.messages_in(&options.range, &options.channels) {
                for l in &m.links {
                    *domains.entry(l.domain.as_str()).or_default() += 1;
                }
            }
            let v: Vec<DomainCount> = domains
                .into_iter()
                .map(|(domain, count)| DomainCount {
                    domain: domain.to_string(),
                    count,
                })
                .collect();
            sort_limit(v, options.limit, |a, b| {
                b.count.cmp(&a.count).then_with(|| a.domain.cmp(&b.domain))
            })
        }))
    }

    async fn channel_activity(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<ChannelActivity>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            let mut chans: BTreeMap<&ChannelId, (u64, BTreeSet<&UserId>)> = BTreeMap::new();
            for m in d
                .messages_in(&options.range, &options.channels)
                .filter(|m| counts_as_activity(m.meta.subtype.as_deref()))
            {
                let c = chans.entry(&m.meta.key.channel).or_default();
                c.0 += 1;
                if let Some(u) = &m.meta.user {
                    c.1.insert(u);
                }
            }
            let v: Vec<ChannelActivity> = chans
                .into_iter()
                .map(|(channel, (messages, users))| ChannelActivity {
                    channel: channel.clone(),
                    messages,
                    users: users.len() as u64,
                })
                .collect();
            sort_limit(v, options.limit, |a, b| {
                b.messages
                    .cmp(&a.messages)
                    .then_with(|| a.channel.cmp(&b.channel))
            })
        }))
    }

    async fn channel_latest(
        &self,
        workspace: &WorkspaceId,
        options: &LatestOptions,
    ) -> Result<Vec<ChannelLatest>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            let mut chans: BTreeMap<&ChannelId, (&Ts, u64)> = BTreeMap::new();
            for m in d.messages_in(&options.range, &options.channels) {
                let c = chans
                    .entry(&m.meta.key.channel)
                    .or_insert((&m.meta.key.ts, 0));
                c.0 = c.0.max(&m.meta.key.ts);
                c.1 += 1;
            }
            chans
                .into_iter()
                .map(|(channel, (latest, n))| ChannelLatest {
                    channel: channel.clone(),
                    latest: latest.clone(),
                    messages: options.with_counts.then_some(n),
                })
                .collect()
        }))
    }

    async fn user_activity(
        &self,
        workspace: &WorkspaceId,
        options: &AggregateOptions,
    ) -> Result<Vec<UserActivity>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            let mut users: BTreeMap<&UserId, (u64, u64)> = BTreeMap::new();
            for m in d
                .messages_in(&options.range, &options.channels)
                .filter(|m| counts_as_activity(m.meta.subtype.as_deref()))
            {
                if let Some(u) = &m.meta.user {
                    let e = users.entry(u).or_default();
                    e.0 += 1;
                    e.1 += u64::from(m.meta.reaction_count);
                }
            }
            let v: Vec<UserActivity> = users
                .into_iter()
                .map(|(user, (messages, reactions_received))| UserActivity {
                    user: user.clone(),
                    messages,
                    reactions_received,
                })
                .collect();
            sort_limit(v, options.limit, |a, b| {
                b.messages
                    .cmp(&a.messages)
                    .then_with(|| a.user.cmp(&b.user))
            })
        }))
    }

    async fn list_links(
        &self,
        workspace: &WorkspaceId,
        query: &LinkQuery,
    ) -> Result<Vec<SharedLink>> {
        Ok(self.read(workspace, Vec::new(), |d| {
            let mut msgs: Vec<&StoredMessage> =
                d.messages_in(&query.range, &query.channels).collect();
            msgs.sort_by(|a, b| {
                (&a.meta.key.ts, &a.meta.key.channel).cmp(&(&b.meta.key.ts, &b.meta.key.channel))
            });
            let limit = if query.limit == 0 {
                usize::MAX
            } else {
                query.limit
            };
            msgs.into_iter()
                .flat_map(|m| {
                    m.links.iter().map(move |l| SharedLink {
                        key: m.meta.key.clone(),
                        link: l.clone(),
                    })
                })
                .filter(|s| {
                    query
                        .domains
                        .as_ref()
                        .is_none_or(|ds| ds.contains(&s.link.domain))
                })
                .take(limit)
                .collect()
        }))
    }

    async fn claim_outbox(&self, request: &ClaimRequest) -> Result<Vec<OutboxEntry>> {
        let now = Utc::now();
        let lease_until = now + to_std(request.lease);
        let mut st = self.state();
        // Leases of owners known to be dead end now (checked once per owner).
        let mut gone: HashMap<&str, bool> = HashMap::new();
        // Per-message order: only the oldest live entry of each key is a candidate.
        let mut seen: HashSet<MessageKey> = HashSet::new();
        let mut ids = Vec::new();
        for (id, row) in &st.outbox {
            if ids.len() >= request.limit {
                break;
            }
            let e = &row.entry;
            if e.dead
                || request
                    .workspace
                    .as_ref()
                    .is_some_and(|w| &e.key.workspace != w)
            {
                continue;
            }
            if !seen.insert(e.key.clone()) {
                continue;
            }
            let held = row.leased(now)
                && !row
                    .lease_owner
                    .as_deref()
                    .is_some_and(|o| *gone.entry(o).or_insert_with(|| LeaseOwner::is_gone_str(o)));
            if e.available_at <= now && !held {
                ids.push(*id);
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = st.outbox.get_mut(&id) {
                row.lease_until = Some(lease_until);
                row.lease_owner = Some(request.owner.clone());
                out.push(row.entry.clone());
            }
        }
        Ok(out)
    }

    async fn ack_outbox(&self, ids: &[OutboxId]) -> Result<()> {
        let mut guard = self.state();
        let State {
            workspaces, outbox, ..
        } = &mut *guard;
        for id in ids {
            let Some(row) = outbox.remove(id) else {
                continue;
            };
            let key = &row.entry.key;
            let Some(m) = workspaces
                .get_mut(&key.workspace)
                .and_then(|d| d.messages.get_mut(key))
            else {
                continue;
            };
            match row.entry.op {
                OutboxOp::Upsert { .. } => m.meta.content_id = Some(key.content_id()),
                OutboxOp::Delete => m.meta.content_id = None,
                OutboxOp::Attributes { .. } | OutboxOp::Reindex => {}
            }
        }
        Ok(())
    }

    async fn release_outbox(&self, ids: &[OutboxId]) -> Result<u64> {
        let mut st = self.state();
        let mut n = 0;
        for id in ids {
            if let Some(row) = st.outbox.get_mut(id) {
                if !row.entry.dead && row.lease_until.is_some() {
                    row.lease_until = None;
                    row.lease_owner = None;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    async fn fail_outbox(
        &self,
        failures: &[OutboxFailure],
        policy: &RetryPolicy,
    ) -> Result<Vec<FailOutcome>> {
        let now = Utc::now();
        let mut st = self.state();
        let mut out = Vec::with_capacity(failures.len());
        for f in failures {
            let Some(row) = st.outbox.get_mut(&f.id) else {
                out.push(FailOutcome::Missing { id: f.id });
                continue;
            };
            row.lease_until = None;
            row.lease_owner = None;
            let e = &mut row.entry;
            e.attempts = e.attempts.saturating_add(1);
            e.last_error = Some(f.error.clone());
            if !f.retryable || e.attempts >= policy.max_attempts {
                e.dead = true;
                out.push(FailOutcome::DeadLettered { id: f.id });
            } else {
                let at = now + to_std(policy.delay_after(e.attempts));
                e.available_at = at;
                out.push(FailOutcome::Retry { id: f.id, at });
            }
        }
        Ok(out)
    }

    async fn dead_letters(
        &self,
        workspace: Option<WorkspaceId>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>> {
        Ok(self
            .state()
            .outbox
            .values()
            .filter(|r| {
                r.entry.dead
                    && workspace
                        .as_ref()
                        .is_none_or(|w| &r.entry.key.workspace == w)
            })
            .take(limit)
            .map(|r| r.entry.clone())
            .collect())
    }

    async fn requeue_dead_letters(
        &self,
        workspace: Option<WorkspaceId>,
        ids: Option<Vec<OutboxId>>,
    ) -> Result<u64> {
        let now = Utc::now();
        let mut st = self.state();
        let mut n = 0;
        for (id, row) in st.outbox.iter_mut() {
            let e = &mut row.entry;
            if e.dead
                && workspace.as_ref().is_none_or(|w| &e.key.workspace == w)
                && ids.as_ref().is_none_or(|ids| ids.contains(id))
            {
                e.dead = false;
                e.attempts = 0;
                e.available_at = now;
                row.lease_until = None;
                row.lease_owner = None;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn outbox_stats(&self, workspace: Option<WorkspaceId>) -> Result<OutboxStats> {
        let now = Utc::now();
        let st = self.state();
        let mut s = OutboxStats::default();
        for r in st.outbox.values().filter(|r| {
            workspace
                .as_ref()
                .is_none_or(|w| &r.entry.key.workspace == w)
        }) {
            if !r.entry.dead {
                let t = r.entry.created_at;
                s.oldest_live = Some(s.oldest_live.map_or(t, |o| o.min(t)));
            }
            if r.entry.dead {
                s.dead += 1;
            } else if r.leased(now) {
                s.leased += 1;
                if let Some(until) = r.lease_until {
                    s.next_lease_expiry = Some(s.next_lease_expiry.map_or(until, |t| t.min(until)));
                }
            } else {
                s.pending += 1;
            }
        }
        Ok(s)
    }

    async fn undelivered_keys(
        &self,
        workspace: &WorkspaceId,
        limit: usize,
    ) -> Result<Vec<MessageKey>> {
        let st = self.state();
        let keys: std::collections::BTreeSet<MessageKey> = st
            .outbox
            .values()
            .filter(|r| &r.entry.key.workspace == workspace)
            .map(|r| r.entry.key.clone())
            .collect();
        Ok(keys.into_iter().take(limit).collect())
    }
}
