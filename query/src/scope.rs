//! Who is asking: the viewer a read is made for, and the channels that viewer may see.

use std::collections::{HashMap, HashSet};

use chatvault_core::{Channel, ChannelId, Error, MetadataStore, Result, UserId, WorkspaceId};
use serde::{Deserialize, Serialize};

/// Whose eyes a read is for. Every read of the query layer takes one.
///
/// - [`Scope::User`]: public channels, plus the private channels, IMs and MPIMs the user is a
///   member of.
/// - [`Scope::Public`] (the default): public channels only.
/// - [`Scope::Admin`]: every channel of the workspace; callers must ask for it explicitly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "user", rename_all = "snake_case")]
pub enum Scope {
    /// A workspace member.
    User(UserId),
    /// Nobody in particular: public channels only.
    #[default]
    Public,
    /// An administrator: everything in the workspace.
    Admin,
}

/// The name the CLI and the issue use for [`Scope`].
pub type Viewer = Scope;

impl Scope {
    /// A scope for this member.
    pub fn user(user: UserId) -> Self {
        Scope::User(user)
    }

    /// The viewer's user id, if any.
    pub fn viewer(&self) -> Option<&UserId> {
        match self {
            Scope::User(u) => Some(u),
            _ => None,
        }
    }
}

/// The channels a scope allows in one workspace, with the channels themselves for enrichment.
#[derive(Debug, Clone)]
pub(crate) struct Allowed {
    /// Every channel of the workspace (allowed or not), by id.
    pub(crate) channels: HashMap<ChannelId, Channel>,
    /// The ids the scope may read.
    pub(crate) ids: HashSet<ChannelId>,
}

impl Allowed {
    /// Computes the allowed set: public channels, plus the viewer's memberships, or all for Admin.
    pub(crate) async fn compute(
        meta: &dyn MetadataStore,
        workspace: &WorkspaceId,
        scope: &Scope,
    ) -> Result<Self> {
        if meta.get_workspace(workspace).await?.is_none() {
            return Err(
                Error::not_found(format!("workspace {workspace} does not exist"))
                    .with_context("workspace", workspace),
            );
        }
        let channels = meta.list_channels(workspace).await?;
        let ids: HashSet<ChannelId> = match scope {
            Scope::Admin => channels.iter().map(|c| c.id.clone()).collect(),
            Scope::Public => channels
                .iter()
                .filter(|c| c.kind.is_public())
                .map(|c| c.id.clone())
                .collect(),
            Scope::User(user) => {
                let member: HashSet<ChannelId> = meta
                    .user_channels(workspace, user)
                    .await?
                    .into_iter()
                    .collect();
                channels
                    .iter()
                    .filter(|c| c.kind.is_public() || member.contains(&c.id))
                    .map(|c| c.id.clone())
                    .collect()
            }
        };
        let channels = channels.into_iter().map(|c| (c.id.clone(), c)).collect();
        Ok(Allowed { channels, ids })
    }

    /// Whether the scope may read this channel.
    pub(crate) fn allows(&self, channel: &ChannelId) -> bool {
        self.ids.contains(channel)
    }

    /// The allowed ids, sorted (what filters pass down), narrowed to `only` when given.
    pub(crate) fn list(&self, only: Option<&[ChannelId]>) -> Vec<ChannelId> {
        let mut v: Vec<ChannelId> = match only {
            Some(only) => only.iter().filter(|c| self.allows(c)).cloned().collect(),
            None => self.ids.iter().cloned().collect(),
        };
        v.sort();
        v.dedup();
        v
    }

    /// Whether the scope allows every channel of the workspace (then a channel filter that lists
    /// them all can be left out, which lets backends use their unfiltered fast path).
    pub(crate) fn allows_all(&self) -> bool {
        self.ids.len() == self.channels.len()
    }

    /// The channel with this id.
    pub(crate) fn channel(&self, id: &ChannelId) -> Option<&Channel> {
        self.channels.get(id)
    }
}
