//! `chatvault dead-letters`: list or re-queue content deliveries that kept failing.

use chatvault_core::{OutboxId, Result};
use chatvault_examples::Access;
use clap::{Args, Subcommand};

use crate::cli::Global;
use crate::output::{print_json, Bars};
use crate::stores::{open_workspace, relay_all, write_access};

#[derive(Args, Debug)]
pub(crate) struct DeadLettersArgs {
    #[command(subcommand)]
    pub(crate) action: DeadLetterAction,
}

pub(crate) async fn run(g: &Global, args: &DeadLettersArgs) -> Result<()> {
    let DeadLettersArgs { action } = args;
    let access = match action {
        DeadLetterAction::List { .. } => Access::Read,
        DeadLetterAction::Requeue { .. } => write_access(g),
    };
    let (stores, ws) = open_workspace(g, access).await?;
    match action {
        DeadLetterAction::List { limit } => {
            let dead = stores.meta.dead_letters(Some(ws.clone()), *limit).await?;
            if g.json {
                return print_json(&dead);
            }
            if dead.is_empty() {
                out!("no dead letters");
            }
            for d in &dead {
                out!(
                    "{:>8}  {:<10} {}  after {} attempts: {}",
                    d.id,
                    d.op.name(),
                    d.key,
                    d.attempts,
                    d.last_error.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }
        DeadLetterAction::Requeue { id } => {
            let ids = (!id.is_empty()).then(|| id.clone());
            let n = stores
                .meta
                .requeue_dead_letters(Some(ws.clone()), ids)
                .await?;
            let bars = Bars::new(g.json);
            let report = relay_all(&stores, &ws, &bars).await?;
            bars.finish();
            if g.json {
                return print_json(
                    &serde_json::json!({"requeued": n, "delivered": report.acked, "dead_lettered": report.dead_lettered}),
                );
            }
            out!(
                "re-queued {n}; delivered {}, dead-lettered again {}",
                report.acked,
                report.dead_lettered
            );
            Ok(())
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum DeadLetterAction {
    /// List them.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Put them back in the queue (all, or these ids) and deliver them.
    Requeue {
        /// Only these outbox ids.
        #[arg(long)]
        id: Vec<OutboxId>,
    },
}
