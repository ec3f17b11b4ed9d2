#![doc = include_str!("../README.md")]
//!
//! ```
//! use chatvault_core::{Embedder, HashingEmbedder, MessageKey};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> chatvault_core::Result<()> {
//! let key = MessageKey::parse("T1", "C1", "1700000000.000100")?;
//! assert_eq!(key.content_id(), "C1:1700000000.000100");
//!
//! let embedder = HashingEmbedder::new(384)?;
//! let vectors = embedder.embed(&["deploy failed".to_string()]).await?;
//! assert_eq!(vectors[0].len(), 384);
//! # Ok(()) }
//! ```

mod aggregate;
mod backoff;
mod batch;
mod channel;
mod content_store;
mod embedder;
mod error;
mod filter;
mod ids;
mod lease;
mod message;
mod metadata_store;
mod outbox;
mod redact;
mod secret;
mod sync;
mod user;
mod workspace;

#[cfg(feature = "testing")]
pub mod testing;

pub use aggregate::{
    counts_as_activity, AggregateOptions, ChannelActivity, ChannelLatest, ContentIndexEntry,
    DomainCount, LatestOptions, LinkCount, LinkQuery, ReactedMessage, SharedLink, ThreadActivity,
    UserActivity, WorkspaceStats, ACTIVITY_SUBTYPES,
};
pub use backoff::{Backoff, Jitter};
pub use batch::{ApplyReport, ChannelScope, WriteBatch};
pub use channel::{Bookmark, Channel, ChannelKind, MembershipChange};
pub use content_store::{
    CollectionInfo, CollectionSpec, ContentCapabilities, ContentDelete, ContentDocument,
    ContentStore, ContentVersion, ScoredKey, SearchOptions, WriteOutcome,
};
pub use embedder::{cosine, Embedder, HashingEmbedder};
pub use error::{Error, ErrorKind, Result};
pub use filter::{ContentFilter, MessageFilter, PageRequest, ThreadFilter, TimeRange};
pub use ids::{ChannelId, MessageKey, TeamId, Ts, UserId, WorkspaceId, MAX_ID_LEN};
pub use lease::LeaseOwner;
pub use message::{
    ContentAttributes, FileRef, IndexContext, Link, LinkSource, MessageContent, MessageDetails,
    MessageMeta, MessageRecord, Reaction, ReactionChange, ThreadParticipant, INDEX_TEXT_VERSION,
    MAX_TEXT_BYTES,
};
pub use metadata_store::MetadataStore;
pub use outbox::{
    ClaimRequest, FailOutcome, OutboxEntry, OutboxFailure, OutboxId, OutboxOp, OutboxStats,
    RetryPolicy,
};
pub use redact::{redact_url, url_secrets};
pub use secret::SecretString;
pub use sync::{ProcessingQueueEntry, SyncState, SyncStatus};
pub use user::User;
pub use workspace::{BotConfig, Installation, Team, Workspace};

#[cfg(feature = "testing")]
pub use content_store::MockContentStore;
#[cfg(feature = "testing")]
pub use embedder::MockEmbedder;
#[cfg(feature = "testing")]
pub use metadata_store::MockMetadataStore;
