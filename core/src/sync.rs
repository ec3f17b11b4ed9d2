//! Sync state per channel, and the processing queue.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ChannelId, Ts};

/// Where a channel's backfill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// Started, not finished: `cursor` says where to continue.
    InProgress,
    /// Finished: the next run fetches only what is newer than `latest_ts`.
    Complete,
    /// The last run failed: `error` says why; the next run continues from `cursor`.
    Failed,
}

impl SyncState {
    /// The lowercase name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::InProgress => "in_progress",
            SyncState::Complete => "complete",
            SyncState::Failed => "failed",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s output.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "in_progress" => SyncState::InProgress,
            "complete" => SyncState::Complete,
            "failed" => SyncState::Failed,
            _ => return None,
        })
    }
}

/// A channel's sync cursor: written in the same transaction as the messages it covers, so a
/// crashed backfill resumes exactly where its last committed batch ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The channel.
    pub channel: ChannelId,
    /// Which source wrote it (`web_api`, `export`…).
    pub source: String,
    /// The pagination cursor to continue from, while in progress.
    pub cursor: Option<String>,
    /// The oldest message fetched so far.
    pub oldest_ts: Option<Ts>,
    /// The newest message fetched so far: the high-water mark for incremental runs.
    pub latest_ts: Option<Ts>,
    /// Where the sync stands.
    pub state: SyncState,
    /// When it was last written.
    pub updated_at: Option<DateTime<Utc>>,
    /// The last error, if `state` is `Failed`.
    pub error: Option<String>,
}

/// One job in the processing queue (the seed's `processing_queue`): work a bot schedules for later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessingQueueEntry {
    /// A caller-chosen id, unique within the workspace (writes with the same id replace).
    pub id: String,
    /// What to do (`digest`, `backfill_channel`…).
    pub kind: String,
    /// Its parameters.
    pub payload: serde_json::Value,
    /// `pending`, `running`, `done` or `failed`.
    pub status: String,
    /// How many times it was tried.
    pub attempts: u32,
    /// When it may run.
    pub run_after: Option<DateTime<Utc>>,
}
