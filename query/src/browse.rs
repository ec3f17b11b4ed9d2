//! Browsing: the channels a viewer may open, and a channel's messages over a time range (a day
//! of the web archive) with the threads that start there, enriched like search hits.

use std::collections::BTreeMap;

use chatvault_core::{
    Channel, ChannelId, Error, MessageFilter, Result, ThreadFilter, TimeRange, Ts, Workspace,
    WorkspaceId,
};

use crate::engine::{check_time_range, QueryEngine};
use crate::scope::{Allowed, Scope};
use crate::view::{load_views, MessageView};

/// The most messages one [`QueryEngine::channel_messages`] or
/// [`QueryEngine::thread_replies`] call returns.
pub const MAX_BROWSE: usize = 10_000;

/// The most threads one [`QueryEngine::thread_replies`] call loads.
pub const MAX_THREADS: usize = 200;

impl QueryEngine {
    /// The channels of `workspace` that `scope` may read, ordered by name.
    ///
    /// # Errors
    /// `NotFound` when the workspace does not exist; store errors.
    pub async fn channels(&self, workspace: &WorkspaceId, scope: &Scope) -> Result<Vec<Channel>> {
        let allowed = Allowed::compute(self.meta.as_ref(), workspace, scope).await?;
        let mut channels: Vec<Channel> = allowed
            .channels
            .into_iter()
            .filter(|(id, _)| allowed.ids.contains(id))
            .map(|(_, c)| c)
            .collect();
        channels.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(channels)
    }

    /// The workspace and what `scope` may read in it, when that includes `channel`; `NotFound`
    /// otherwise (whether the channel exists or not, so a viewer learns nothing about channels
    /// they cannot see).
    async fn readable(
        &self,
        workspace: &WorkspaceId,
        channel: &ChannelId,
        scope: &Scope,
    ) -> Result<(Workspace, Allowed)> {
        let ws = self.workspace(workspace).await?;
        let allowed = Allowed::compute(self.meta.as_ref(), workspace, scope).await?;
        if !allowed.allows(channel) {
            return Err(Error::not_found(format!(
                "channel {channel} not found in workspace {workspace}"
            ))
            .with_context("channel", channel));
        }
        Ok((ws, allowed))
    }

    /// The messages of one channel posted in `range` (thread replies included), oldest first,
    /// at most [`MAX_BROWSE`] of them.
    ///
    /// # Errors
    /// `NotFound` when the workspace does not exist, or the channel does not exist or `scope`
    /// may not read it (the two are indistinguishable, so a viewer learns nothing about channels
    /// they cannot see); `InvalidInput` for a range that ends before it starts; store errors.
    pub async fn channel_messages(
        &self,
        workspace: &WorkspaceId,
        channel: &ChannelId,
        range: &TimeRange,
        scope: &Scope,
    ) -> Result<Vec<MessageView>> {
        check_time_range(range, "range")?;
        let (ws, allowed) = self.readable(workspace, channel, scope).await?;
        let filter = MessageFilter {
            channels: Some(vec![channel.clone()]),
            time: range.clone(),
            ..MessageFilter::default()
        };
        let mut keys = self.all_keys(workspace, &filter).await?;
        keys.sort_by(|a, b| a.ts.cmp(&b.ts));
        keys.truncate(MAX_BROWSE);
        load_views(
            self.meta.as_ref(),
            self.content.as_ref(),
            &ws,
            &allowed,
            &keys,
        )
        .await
    }

    /// The replies of some threads of one channel, whichever day they were posted on: for each
    /// parent ts that has replies, its replies oldest first (the parent itself left out). What a
    /// day page opens in place under the threads that start on it. One index probe per thread
    /// for the keys, run together, then one batched load of every reply (names, reactions,
    /// files, text) — never a load per thread. At most [`MAX_BROWSE`] replies in all: past
    /// that, the threads started last get theirs cut.
    ///
    /// # Errors
    /// `NotFound` as [`channel_messages`](Self::channel_messages); `InvalidInput` for more than
    /// [`MAX_THREADS`] parents; store errors.
    pub async fn thread_replies(
        &self,
        workspace: &WorkspaceId,
        channel: &ChannelId,
        parents: &[Ts],
        scope: &Scope,
    ) -> Result<BTreeMap<Ts, Vec<MessageView>>> {
        if parents.len() > MAX_THREADS {
            return Err(Error::invalid_input(format!(
                "{} threads asked for at once; at most {MAX_THREADS}",
                parents.len()
            ))
            .with_context("field", "parents"));
        }
        let (ws, allowed) = self.readable(workspace, channel, scope).await?;
        let mut parents = parents.to_vec();
        parents.sort();
        parents.dedup();
        let probes = parents.iter().map(|p| {
            let filter = MessageFilter {
                channels: Some(vec![channel.clone()]),
                thread: Some(ThreadFilter::Thread(p.clone())),
                ..MessageFilter::default()
            };
            async move { self.all_keys(workspace, &filter).await }
        });
        let mut keys: Vec<_> = futures::future::try_join_all(probes)
            .await?
            .into_iter()
            .zip(&parents)
            .flat_map(|(keys, parent)| keys.into_iter().filter(move |k| &k.ts != parent))
            .collect();
        keys.truncate(MAX_BROWSE);
        keys.sort_by(|a, b| a.ts.cmp(&b.ts));
        let views = load_views(
            self.meta.as_ref(),
            self.content.as_ref(),
            &ws,
            &allowed,
            &keys,
        )
        .await?;
        let mut out: BTreeMap<Ts, Vec<MessageView>> = BTreeMap::new();
        for v in views {
            if let Some(p) = &v.thread_parent {
                out.entry(p.ts.clone()).or_default().push(v);
            }
        }
        Ok(out)
    }
}
