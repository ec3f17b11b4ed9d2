//! Observable progress: counts and rates per stage, for progress bars and logs.

use std::fmt;
use std::time::Duration;

/// A stage of work that reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Users read (export `users.json`, `users.list`).
    Users,
    /// Conversations read.
    Channels,
    /// Export day files read (`total` is known).
    DayFiles,
    /// Messages written to the metadata store.
    Messages,
    /// Outbox entries delivered by the relay.
    Relay,
    /// Texts sent to the embedder by the relay.
    Embedded,
    /// Web API pages fetched by a backfill.
    ApiPages,
    /// Messages compared by reconcile.
    Reconcile,
    /// Messages queued for re-indexing when a collection is migrated to a new index-text
    /// version (`total` is known).
    Reindex,
}

/// One progress report: `done` units of `stage` so far (of `total` when known), after `elapsed`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    /// The stage.
    pub stage: Stage,
    /// Units done so far in this run.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
    /// Time since the run started.
    pub elapsed: Duration,
    /// What is being worked on (a channel or file name), if anything.
    pub detail: Option<String>,
}

impl ProgressUpdate {
    /// Units per second since the start (0 before any time passed).
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.done as f64 / s
        } else {
            0.0
        }
    }
}

/// Receives progress reports. Implementations must be cheap: they are called on the hot path.
pub trait Progress: Send + Sync + fmt::Debug {
    /// Called after each unit of work (or batch of units).
    fn update(&self, update: &ProgressUpdate);
}

/// Ignores progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&self, _update: &ProgressUpdate) {}
}

/// Forwards progress to a tokio channel (a CLI task turns it into progress bars). Reports are
/// dropped when the receiver is gone.
#[derive(Debug, Clone)]
pub struct ChannelProgress(tokio::sync::mpsc::UnboundedSender<ProgressUpdate>);

impl ChannelProgress {
    /// A sender and its receiver.
    pub fn channel() -> (Self, tokio::sync::mpsc::UnboundedReceiver<ProgressUpdate>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (ChannelProgress(tx), rx)
    }
}

impl Progress for ChannelProgress {
    fn update(&self, update: &ProgressUpdate) {
        let _ = self.0.send(update.clone());
    }
}

/// Calls a closure with each report.
pub struct FnProgress<F>(pub F);

impl<F> fmt::Debug for FnProgress<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnProgress")
    }
}

impl<F: Fn(&ProgressUpdate) + Send + Sync> Progress for FnProgress<F> {
    fn update(&self, update: &ProgressUpdate) {
        (self.0)(update)
    }
}
