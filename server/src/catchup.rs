//! Catch-up: the Slack Web API backfill, run when the server starts and then periodically, so a
//! server that was down (or missed events) catches up. The backfill is resumable: a run stopped
//! by shutdown continues where it stopped on the next start.

use std::time::Duration;

use chatvault_collector::{Backfill, BackfillOptions};
use chatvault_core::{SecretString, WorkspaceId};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::state::AppState;

/// A periodic Web API backfill of one workspace (the bot token belongs to one Slack team).
#[derive(Debug, Clone)]
pub struct BackfillSchedule {
    /// The workspace the token's team is stored as.
    pub workspace: WorkspaceId,
    /// The bot token (from the environment; never logged).
    pub token: SecretString,
    /// Time between the end of one run and the start of the next; the first runs at start.
    pub every: Duration,
    /// The backfill's options (API URL, paging, retries).
    pub options: BackfillOptions,
}

/// Runs `schedule` until `stop` is cancelled: at once, then `every` after each run ends. A run
/// in progress when `stop` fires is dropped between two writes (each batch is atomic; the next
/// run resumes from what was stored).
pub(crate) async fn run(state: AppState, schedule: BackfillSchedule, stop: CancellationToken) {
    loop {
        let backfill = match Backfill::new(
            state.meta().clone(),
            schedule.workspace.clone(),
            schedule.token.clone(),
            schedule.options.clone(),
        ) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "the periodic backfill cannot start");
                Metrics::count(&state.metrics().backfill_runs, "error");
                return;
            }
        };
        info!(workspace = %schedule.workspace, "periodic backfill started");
        tokio::select! {
            () = stop.cancelled() => {
                info!("periodic backfill stopped by shutdown (the next start resumes it)");
                return;
            }
            report = backfill.run() => match report {
                Ok(r) => {
                    Metrics::count(&state.metrics().backfill_runs, "ok");
                    state.metrics().backfill_last_success.set(
                        chrono::Utc::now().timestamp_millis() as f64 / 1000.0,
                    );
                    info!(
                        workspace = %schedule.workspace,
                        messages = r.messages,
                        replies = r.replies,
                        channels_failed = r.channels_failed.len(),
                        calls = r.calls,
                        "periodic backfill done"
                    );
                }
                Err(e) => {
                    Metrics::count(&state.metrics().backfill_runs, "error");
                    warn!(workspace = %schedule.workspace, error = %e, "periodic backfill failed");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(schedule.every) => {}
        }
    }
}
