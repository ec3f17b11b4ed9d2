//! `chatvault ingest-export`: a Slack export (a workspace's, or an Enterprise Grid org's) imported,
//! then delivered to the index, with a report of everything stored, skipped or missing.

use std::path::PathBuf;
use std::time::Duration;

use chatvault_collector::{Collector, ImportOptions, ImportSummary};
use chatvault_core::{Error, Result, WorkspaceId};
use chatvault_examples::{workspace_id_from_path, Stores};
use clap::Args;

use crate::cli::Global;
use crate::output::{print_json, Bars};
use crate::stores::{open_for_writing, relay_all};

#[derive(Args, Debug)]
pub(crate) struct IngestArgs {
    /// The export directory or .zip.
    path: PathBuf,
    /// The workspace id (default: from the file name).
    #[arg(long = "as")]
    workspace_id: Option<String>,
    /// Only this conversation (its folder name or id); repeatable. One the export does not
    /// hold makes the command fail (exit 4) after importing the others.
    #[arg(long = "channel", value_name = "NAME_OR_ID")]
    channels: Vec<String>,
    /// Fail (exit 3) if anything was skipped, after importing the rest.
    #[arg(long)]
    strict: bool,
    /// An Enterprise Grid org export: only this workspace (its team id, or its folder under
    /// teams/); repeatable. Each workspace of the org is stored as its own workspace, under
    /// its team id; one the export does not hold fails the command (exit 4) before anything
    /// is written. The global --workspace picks one too.
    #[arg(long = "team", value_name = "TEAM_ID_OR_FOLDER")]
    teams: Vec<String>,
}

pub(crate) async fn run(g: &Global, args: &IngestArgs) -> Result<()> {
    let IngestArgs {
        path,
        workspace_id,
        channels,
        strict,
        teams,
    } = args;
    let options = ImportOptions {
        only_channels: (!channels.is_empty()).then(|| channels.clone()),
        ..Default::default()
    };
    if chatvault_collector::is_grid_export(path)? {
        if workspace_id.is_some() {
            return Err(Error::invalid_input(
                "--as does not apply to an Enterprise Grid org export: each of its workspaces is stored under its own team id (pick workspaces with --team)",
            ));
        }
        let mut only = teams.clone();
        only.extend(g.workspace.clone());
        return ingest_grid(
            g,
            path,
            (!only.is_empty()).then_some(only),
            options,
            *strict,
        )
        .await;
    }
    if !teams.is_empty() {
        return Err(Error::invalid_input(format!(
            "--team picks workspaces of an Enterprise Grid org export, and {} is a workspace export",
            path.display()
        )));
    }
    let ws = match workspace_id.as_deref().or(g.workspace.as_deref()) {
        Some(w) => WorkspaceId::new(w)?,
        None => workspace_id_from_path(path)?,
    };
    let stores = open_for_writing(g, &ws).await?;
    let summary = ingest(g, &stores, &ws, path, options).await?;
    import_outcome(&summary, *strict)
}

/// What an import's summary means for the exit code: something asked for and missing is an
/// error (exit 4), and with `--strict` so is anything skipped (exit 3). The summary has been
/// printed already.
fn import_outcome(summary: &ImportSummary, strict: bool) -> Result<()> {
    if !summary.missing.is_empty() {
        return Err(Error::not_found(format!(
            "{} of what was asked for is not in the export: {}",
            summary.missing.len(),
            summary.missing.join("; ")
        )));
    }
    if strict && !summary.skipped.is_empty() {
        return Err(Error::invalid_input(format!(
            "{} item(s) of the export were skipped and --strict was given (everything else was imported)",
            summary.skipped.len()
        )));
    }
    Ok(())
}

pub(crate) async fn ingest(
    g: &Global,
    stores: &Stores,
    ws: &WorkspaceId,
    path: &std::path::Path,
    options: ImportOptions,
) -> Result<ImportSummary> {
    let bars = Bars::new(g.json);
    let collector = Collector::new(stores.meta.clone(), ws.clone()).with_progress(bars.clone());
    let summary = collector.import_export(path, options).await?;
    let relay = relay_all(stores, ws, &bars).await?;
    bars.finish();
    if g.json {
        print_json(&import_json(ws, &summary, &relay))?;
    } else {
        print_import(&path.display().to_string(), ws, &summary, &relay);
        out!("{}", import_verdict(&summary));
    }
    Ok(summary)
}

/// An Enterprise Grid org export: each selected workspace imported into its own workspace (all
/// locked first), then delivered, with a report per workspace and one for the org.
async fn ingest_grid(
    g: &Global,
    path: &std::path::Path,
    only: Option<Vec<String>>,
    options: ImportOptions,
    strict: bool,
) -> Result<()> {
    let selected = chatvault_collector::grid_workspaces(path, only.as_deref())?;
    let ids: Vec<WorkspaceId> = selected.iter().map(|w| w.workspace.clone()).collect();
    let Some(first) = ids.first() else {
        return Err(Error::invalid_input(format!(
            "{} holds no workspace to import",
            path.display()
        )));
    };
    let stores = open_for_writing(g, first).await?;
    if let Some(locks) = &stores.locks {
        chatvault_examples::lock_workspaces(locks, &ids[1..], Duration::from_secs(g.wait)).await?;
    }
    let bars = Bars::new(g.json);
    let summary = chatvault_collector::GridImport::new(stores.meta.clone())
        .with_progress(bars.clone())
        .import(
            path,
            chatvault_collector::GridImportOptions {
                only_workspaces: Some(selected.iter().map(|w| w.folder.clone()).collect()),
                import: options,
            },
        )
        .await?;
    let mut reports = Vec::new();
    for (w, _) in &summary.workspaces {
        reports.push(relay_all(&stores, &w.workspace, &bars).await?);
    }
    bars.finish();
    print_grid(g.json, path, &summary, &reports)?;
    if !summary.missing.is_empty() {
        return Err(Error::not_found(format!(
            "{} of what was asked for is not in the export: {}",
            summary.missing.len(),
            summary.missing.join("; ")
        )));
    }
    if strict && summary.skipped_total() > 0 {
        return Err(Error::invalid_input(format!(
            "{} item(s) of the export were skipped and --strict was given (everything else was imported)",
            summary.skipped_total()
        )));
    }
    Ok(())
}

/// One workspace's import report for scripts.
fn import_json(
    ws: &WorkspaceId,
    summary: &ImportSummary,
    relay: &chatvault_collector::RelayReport,
) -> serde_json::Value {
    serde_json::json!({
        "workspace": ws,
        "files_read": summary.files_read, "users": summary.users, "channels": summary.channels,
        "messages": summary.totals.messages, "replies": summary.totals.replies,
        "with_content": summary.totals.with_content, "reactions": summary.totals.reactions,
        "files": summary.totals.files, "links": summary.totals.links,
        "metadata_only": summary.metadata_only, "outbox_enqueued": summary.outbox_enqueued,
        "skipped": summary.skipped.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        "warnings": summary.warnings.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        "missing": summary.missing,
        "deleted_since": summary.messages_deleted_before,
        "embedded": relay.embedded, "embeddings_reused": relay.embeddings_reused,
        "delivered": relay.acked, "dead_lettered": relay.dead_lettered,
        "seconds": summary.elapsed.as_secs_f64(),
    })
}

/// One workspace's import report for people (without the verdict line).
fn print_import(
    what: &str,
    ws: &WorkspaceId,
    summary: &ImportSummary,
    relay: &chatvault_collector::RelayReport,
) {
    out!(
        "imported {what} into workspace {ws}: {} messages ({} replies, {} with text, {} metadata-only), {} users, {} channels, {} reactions, {} files, {} links in {:.1} s ({:.0} messages/s)",
        summary.totals.messages,
        summary.totals.replies,
        summary.totals.with_content,
        summary.metadata_only,
        summary.users,
        summary.channels,
        summary.totals.reactions,
        summary.totals.files,
        summary.totals.links,
        summary.elapsed.as_secs_f64(),
        summary.messages_per_second()
    );
    out!(
        "content: {} embedded, {} reused unchanged, {} delivered, {} dead-lettered",
        relay.embedded,
        relay.embeddings_reused,
        relay.acked,
        relay.dead_lettered
    );
    for (title, issues) in [
        ("skipped", &summary.skipped),
        ("warnings", &summary.warnings),
    ] {
        if issues.is_empty() {
            continue;
        }
        out!("{title} {}:", issues.len());
        for i in issues.iter().take(20) {
            out!("  {i}");
        }
        if issues.len() > 20 {
            out!("  … and {} more (--json lists all)", issues.len() - 20);
        }
    }
    for m in &summary.missing {
        out!("missing: {m}");
    }
}

/// The last line of an import's report: whether everything in the export was stored.
fn import_verdict(s: &ImportSummary) -> String {
    let mut parts = Vec::new();
    if !s.missing.is_empty() {
        parts.push(format!("{} asked for but missing", s.missing.len()));
    }
    if !s.skipped.is_empty() {
        parts.push(format!("{} skipped", s.skipped.len()));
    }
    if !s.warnings.is_empty() {
        parts.push(format!("{} warnings", s.warnings.len()));
    }
    if parts.is_empty() {
        "result: everything in the export was stored".into()
    } else {
        format!(
            "result: {} messages stored; {} (listed above)",
            s.totals.messages,
            parts.join(", ")
        )
    }
}

/// An org import's report, per workspace and for the org, for people or as JSON.
fn print_grid(
    json: bool,
    path: &std::path::Path,
    summary: &chatvault_collector::GridImportSummary,
    reports: &[chatvault_collector::RelayReport],
) -> Result<()> {
    let issues = |v: &[chatvault_collector::ImportIssue]| {
        v.iter().map(|i| i.to_string()).collect::<Vec<_>>()
    };
    if json {
        let workspaces: Vec<serde_json::Value> = summary
            .workspaces
            .iter()
            .zip(reports)
            .map(|((w, s), relay)| {
                let mut v = import_json(&w.workspace, s, relay);
                v["folder"] = serde_json::json!(w.folder);
                v["team"] = serde_json::json!(w.team);
                v
            })
            .collect();
        print_json(&serde_json::json!({
            "grid": true,
            "workspaces": workspaces,
            "not_selected": summary.not_selected.iter().map(|w| &w.folder).collect::<Vec<_>>(),
            "skipped": issues(summary.skipped.as_slice()),
            "warnings": issues(summary.warnings.as_slice()),
            "missing": summary.missing,
        }))?;
    } else {
        out!(
            "{} is an Enterprise Grid org export: {} workspace(s) imported, each into its own workspace{}",
            path.display(),
            summary.workspaces.len(),
            if summary.not_selected.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} not selected: {})",
                    summary.not_selected.len(),
                    summary
                        .not_selected
                        .iter()
                        .map(|w| w.folder.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        for ((w, s), relay) in summary.workspaces.iter().zip(reports) {
            out!("");
            print_import(
                &format!("teams/{}/ (team id from {})", w.folder, w.team_from),
                &w.workspace,
                s,
                relay,
            );
        }
        out!("");
        for (title, list) in [
            ("org-level skipped", &summary.skipped),
            ("org-level warnings", &summary.warnings),
        ] {
            if !list.is_empty() {
                out!("{title} {}:", list.len());
                for i in list {
                    out!("  {i}");
                }
            }
        }
        for m in &summary.missing {
            out!("missing: {m}");
        }
        let skipped = summary.skipped_total();
        out!(
            "result: {} messages stored in {} workspace(s); {}",
            summary.messages(),
            summary.workspaces.len(),
            if skipped == 0 && summary.missing.is_empty() {
                "everything selected in the export was stored".to_string()
            } else {
                format!(
                    "{skipped} skipped, {} asked for but missing (listed above)",
                    summary.missing.len()
                )
            }
        );
    }
    Ok(())
}
