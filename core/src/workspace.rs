//! Workspaces, teams, installations (bot tokens) and bot configuration.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{TeamId, UserId, WorkspaceId};
use crate::secret::SecretString;

/// A workspace: everything chatvault stores belongs to exactly one, and every query is scoped to one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    /// Its id.
    pub id: WorkspaceId,
    /// A display name ("Acme Corp").
    pub name: String,
    /// The Slack domain (`acme` for acme.slack.com), used to build permalinks.
    pub domain: Option<String>,
    /// When chatvault first stored it.
    pub created_at: Option<DateTime<Utc>>,
}

impl Workspace {
    /// A workspace with just an id and a name.
    pub fn new(id: WorkspaceId, name: impl Into<String>) -> Self {
        Workspace {
            id,
            name: name.into(),
            domain: None,
            created_at: None,
        }
    }
}

/// A Slack team inside a workspace (more than one in Enterprise Grid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    /// Slack's team id.
    pub id: TeamId,
    /// Its name.
    pub name: String,
    /// Its Slack domain.
    pub domain: Option<String>,
}

/// A bot installation: how the Web API and Events sources authenticate for a workspace.
///
/// The token is a [`SecretString`]: `Debug` and serde never reveal it, and stores encrypt it at rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Installation {
    /// The workspace it belongs to.
    pub workspace: WorkspaceId,
    /// The Slack team it was installed into.
    pub team: Option<TeamId>,
    /// The bot's user id.
    pub bot_user: Option<UserId>,
    /// The bot token (`xoxb-…`).
    pub bot_token: SecretString,
    /// The OAuth scopes granted.
    pub scopes: Vec<String>,
    /// When it was installed.
    pub installed_at: Option<DateTime<Utc>>,
}

/// One configuration setting of the bot for a workspace (the seed's `bot_config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BotConfig {
    /// The setting's name (`digest_channel`, `digest_weekday`…).
    pub key: String,
    /// Its value.
    pub value: serde_json::Value,
}
