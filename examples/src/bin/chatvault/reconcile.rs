//! `chatvault reconcile`: compare the metadata and content stores and repair drift.

use chatvault_core::{Error, Result};
use chatvault_examples::Access;
use clap::Args;

use crate::cli::Global;
use crate::output::print_json;
use crate::stores::{open_workspace, write_access};

#[derive(Args, Debug)]
pub(crate) struct ReconcileArgs {
    /// Only report, repair nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

pub(crate) async fn run(g: &Global, args: &ReconcileArgs) -> Result<()> {
    let ReconcileArgs { dry_run } = args;
    let access = if *dry_run {
        Access::Read
    } else {
        write_access(g)
    };
    let (stores, ws) = open_workspace(g, access).await?;
    let options = chatvault_collector::ReconcileOptions {
        repair: !dry_run,
        collection_spec: Some(chatvault_core::CollectionSpec {
            dimension: stores.embedder.dimension(),
            model_id: stores.embedder.model_id().to_string(),
        }),
        ..Default::default()
    };
    let report = chatvault_collector::reconcile_with(
        stores.meta.clone(),
        stores.content.clone(),
        ws.clone(),
        options,
    )
    .await?;
    if g.json {
        let mut json = serde_json::to_value(&report)?;
        if let Some(fields) = json.as_object_mut() {
            fields.insert("workspace".into(), serde_json::json!(ws));
            fields.insert("clean".into(), report.is_clean().into());
            fields.insert("summary".into(), report.summary().into());
        }
        print_json(&json)?;
    } else {
        out!(
            "{} expected, {} stored; {} missing, {} mismatched, {} undelivered, {} awaiting source, {} orphans",
            report.expected,
            report.stored,
            report.missing,
            report.mismatched,
            report.undelivered,
            report.awaiting_source,
            report.orphans
        );
        out!("workspace {ws}: {}", report.summary());
        for (what, key) in &report.examples {
            out!("  {what}: {key}");
        }
    }
    if *dry_run && !report.is_clean() {
        return Err(Error::conflict(format!(
            "the stores of workspace {ws} disagree (reconcile --dry-run found drift)"
        )));
    }
    Ok(())
}
