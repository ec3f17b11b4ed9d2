//! People and bots.

use serde::{Deserialize, Serialize};

use crate::ids::{TeamId, UserId};

/// A member of the workspace, or a bot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Slack's id.
    pub id: UserId,
    /// The team they belong to.
    pub team: Option<TeamId>,
    /// The handle (`ann`).
    pub name: String,
    /// The full name (`Ann Example`).
    pub real_name: Option<String>,
    /// The display name they chose.
    pub display_name: Option<String>,
    /// Whether it is a bot user.
    pub is_bot: bool,
    /// Whether the account was deactivated.
    pub is_deleted: bool,
    /// Whether they administer the workspace.
    pub is_admin: bool,
    /// Their time zone (`Europe/Berlin`).
    pub tz: Option<String>,
    /// Their email address, when the export or the API gave it (`users:read.email`); what maps
    /// a person signed in at an authenticating proxy to their Slack user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl User {
    /// A user with an id and a handle.
    pub fn new(id: UserId, name: impl Into<String>) -> Self {
        User {
            id,
            team: None,
            name: name.into(),
            real_name: None,
            display_name: None,
            is_bot: false,
            is_deleted: false,
            is_admin: false,
            tz: None,
            email: None,
        }
    }

    /// The name a person would recognise: display name, else real name, else handle.
    pub fn best_name(&self) -> &str {
        self.display_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(self.real_name.as_deref().filter(|s| !s.is_empty()))
            .unwrap_or(&self.name)
    }
}
