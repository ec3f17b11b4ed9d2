#![doc = include_str!("../README.md")]

mod backfill;
mod domain;
mod events;
mod export;
mod grid;
mod import;
mod listing;
mod markup;
mod processor;
mod progress;
mod rate_limit;
mod reconcile;
mod relay;
pub mod subtype;
mod write;

pub use backfill::{Backfill, BackfillOptions, BackfillReport, LateActivity, WEB_API_SOURCE};
pub use events::{EventHandler, EventOutcome};
pub use export::{ExportArchive, ExportEntries, MAX_EXPORT_FILE_BYTES};
pub use grid::{
    grid_workspaces, is_grid_export, GridImport, GridImportOptions, GridImportSummary,
    GridWorkspace,
};
pub use import::{
    ChannelCounts, Collector, ImportIssue, ImportOptions, ImportSummary, EXPORT_SOURCE,
};
pub use markup::NameBook;
pub use processor::{process_message, ChannelContext, Processed, ProcessedMessage, UnknownSubtype};
pub use progress::{ChannelProgress, FnProgress, NoProgress, Progress, ProgressUpdate, Stage};
pub use reconcile::{
    reconcile, reconcile_with, ReconcileOptions, ReconcileReport, RESEND_CONTENT_JOB,
};
pub use relay::{IndexTextOptions, Relay, RelayHandle, RelayOptions, RelayReport};
pub use subtype::SubtypeHandling;
pub use write::apply_with_retry;
