//! Browsing: the channels a viewer may open, and a channel's messages over a time range (a day
//! of the web archive), enriched like search hits.

use chatvault_core::{Channel, ChannelId, Error, MessageFilter, Result, TimeRange, WorkspaceId};

use crate::engine::{check_time_range, QueryEngine};
use crate::scope::{Allowed, Scope};
use crate::view::{load_views, MessageView};

/// The most messages one [`QueryEngine::channel_messages`] call returns.
pub const MAX_BROWSE: usize = 10_000;

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
        let ws = self.workspace(workspace).await?;
        let allowed = Allowed::compute(self.meta.as_ref(), workspace, scope).await?;
        if !allowed.allows(channel) {
            return Err(Error::not_found(format!(
                "channel {channel} not found in workspace {workspace}"
            ))
            .with_context("channel", channel));
        }
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
}
