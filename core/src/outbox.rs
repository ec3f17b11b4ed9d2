//! The transactional outbox: content changes committed with the metadata, delivered to the
//! content store by the relay.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{MessageKey, WorkspaceId};
use crate::message::{ContentAttributes, MessageContent};

/// An outbox row's id. Ids only grow, so an entry's id is also the **version** of the content
/// change it carries: the content store ignores anything older than the version it holds.
pub type OutboxId = i64;

/// What an outbox entry asks the content store to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OutboxOp {
    /// Store this content (embedding it unless the stored text is the same).
    Upsert {
        /// The content.
        content: MessageContent,
    },
    /// Replace only the attributes of the stored document (after a reaction change, say).
    /// If the document is absent there is nothing to update.
    Attributes {
        /// The new attributes.
        attributes: ContentAttributes,
    },
    /// Remove the message's content, leaving a tombstone at this version.
    Delete,
    /// Rebuild the stored document's [index text](crate::MessageContent::index_text) from the
    /// current names (its author or channel was renamed, or the collection is being migrated to
    /// a new [index-text version](crate::INDEX_TEXT_VERSION)), re-embedding it only if that
    /// text changed. If the document is absent there is nothing to rebuild.
    Reindex,
}

impl OutboxOp {
    /// `"upsert"`, `"attributes"`, `"delete"` or `"reindex"`.
    pub fn name(&self) -> &'static str {
        match self {
            OutboxOp::Upsert { .. } => "upsert",
            OutboxOp::Attributes { .. } => "attributes",
            OutboxOp::Delete => "delete",
            OutboxOp::Reindex => "reindex",
        }
    }
}

/// One pending content change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Its id, and the version of the change.
    pub id: OutboxId,
    /// The message it changes.
    pub key: MessageKey,
    /// The change.
    pub op: OutboxOp,
    /// How many deliveries failed so far.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it may next be claimed.
    pub available_at: DateTime<Utc>,
    /// Whether it was dead-lettered (too many failures).
    pub dead: bool,
}

impl OutboxEntry {
    /// The version of the change it carries (its id).
    pub fn version(&self) -> u64 {
        self.id as u64
    }
}

/// How a relay claims outbox entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// Only this workspace's entries (`None`: all workspaces).
    pub workspace: Option<WorkspaceId>,
    /// At most this many entries.
    pub limit: usize,
    /// How long the claim holds: until then no other claimer receives these entries; after it,
    /// an entry not acked or failed becomes claimable again (its relay is presumed dead).
    pub lease: Duration,
    /// Who claims: a [`LeaseOwner`](crate::LeaseOwner) string (the default is this process), so
    /// that a later claimer on the same host can tell when this one died and take its leases at
    /// once. Any other string works too, but its leases are held until they expire.
    pub owner: String,
}

impl Default for ClaimRequest {
    fn default() -> Self {
        ClaimRequest {
            workspace: None,
            limit: 256,
            lease: Duration::from_secs(60),
            owner: crate::LeaseOwner::current().to_string(),
        }
    }
}

/// When a failed delivery is retried, and when it gives up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// After this many failed attempts the entry is dead-lettered.
    pub max_attempts: u32,
    /// The first retry's delay; each further retry doubles it.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The delay before the retry that follows failure number `attempts` (1-based).
    pub fn delay_after(&self, attempts: u32) -> Duration {
        self.backoff().delay(attempts.saturating_sub(1))
    }

    /// The doubling delays of this policy as a [`Backoff`](crate::Backoff).
    pub fn backoff(&self) -> crate::Backoff {
        crate::Backoff::exponential(self.base_delay, self.max_delay)
    }
}

/// A delivery that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxFailure {
    /// The entry.
    pub id: OutboxId,
    /// What went wrong (stored; must not contain secrets).
    pub error: String,
    /// `false` for an error that will never succeed (invalid content): dead-letter at once.
    pub retryable: bool,
}

/// What [`fail_outbox`](crate::MetadataStore::fail_outbox) did with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum FailOutcome {
    /// It will be retried at `at`.
    Retry {
        /// The entry.
        id: OutboxId,
        /// When it becomes claimable again.
        at: DateTime<Utc>,
    },
    /// It was dead-lettered.
    DeadLettered {
        /// The entry.
        id: OutboxId,
    },
    /// No such entry (acked or failed by another relay already).
    Missing {
        /// The entry.
        id: OutboxId,
    },
}

/// How many outbox entries are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxStats {
    /// Waiting (claimable now or after a retry delay).
    pub pending: u64,
    /// Held under an unexpired lease.
    pub leased: u64,
    /// Dead-lettered.
    pub dead: u64,
    /// When the earliest unexpired lease of a live entry ends (`None`: no entry is leased), so a
    /// relay waiting for leased entries can say how long it will wait.
    pub next_lease_expiry: Option<DateTime<Utc>>,
    /// When the oldest live (not dead-lettered) entry was enqueued (`None`: nothing waits or is
    /// being delivered): how far the relay is behind the metadata store.
    #[serde(default)]
    pub oldest_live: Option<DateTime<Utc>>,
}
