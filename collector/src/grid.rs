//! Enterprise Grid org exports: several workspaces in one archive, each imported into its own
//! chatvault workspace.
//!
//! The layout (as documented by Mattermost's Slack migration guide and read by its `mmetl
//! grid-transform`): the archive's top level holds the org's listings (`org_users.json`,
//! `channels.json`, `groups.json`, `dms.json`, `mpims.json`) and the folders of the org-level
//! conversations (channels shared between workspaces, direct messages); `teams/<folder>/` holds
//! one workspace as a workspace export of its own (`users.json`, the four conversation listings,
//! a folder per conversation).
//!
//! The workspace boundary is a security boundary: a workspace gets its own `teams/<folder>/`
//! conversations and users, the org users whose `team_id` or `enterprise_user.teams` names its
//! team, and the org-level conversations that belong to it — those whose `internal_team_ids` or
//! `shared_team_ids` name it, else (no such field naming a workspace of the archive) the
//! workspace named by the `team` of its first message that has one, the rule Mattermost's guide
//! gives for shared channels. A channel shared between two workspaces is thus stored in each,
//! as Slack shows it in each. An org-level conversation that names no workspace of the archive
//! is imported nowhere and reported.
//!
//! A workspace is stored under its Slack team id (what `chatvault serve` maps events by): the
//! `team_id` most of its active, non-guest members in `users.json` have, else the `team` of
//! its first message that has one (mmetl's rule).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::info;

use chatvault_core::{
    ChannelKind, Error, MetadataStore, Result, Team, TeamId, WorkspaceId, WriteBatch,
};

use crate::export::{parse_json, ExportArchive, GRID_TEAMS_FOLDER};
use crate::import::{Collector, ImportIssue, ImportOptions, ImportSummary, Layout};
use crate::listing::{ConversationListing, Listings, UsersListing};
use crate::progress::{NoProgress, Progress};
use crate::write::apply_with_retry;

/// How an Enterprise Grid org export is imported.
#[derive(Debug, Clone, Default)]
pub struct GridImportOptions {
    /// Only these workspaces (a team id, or a folder name under `teams/`); `None`: all. One the
    /// archive does not hold fails the import before anything is written.
    pub only_workspaces: Option<Vec<String>>,
    /// How each workspace is imported (its `workspace_name` is ignored: the folder's name is
    /// used). `only_channels` applies to every workspace; one that no selected workspace holds
    /// is listed in [`GridImportSummary::missing`].
    pub import: ImportOptions,
}

/// One workspace of a Grid export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridWorkspace {
    /// Its folder under `teams/`.
    pub folder: String,
    /// Its Slack team id, when the export reveals it.
    pub team: Option<TeamId>,
    /// The chatvault workspace it is stored in: its team id, else its folder name.
    pub workspace: WorkspaceId,
    /// Where the team id came from (`teams/acme/users.json: team_id of 3 of 4 members`).
    pub team_from: String,
}

/// What a Grid import did.
#[derive(Debug, Clone, Default)]
pub struct GridImportSummary {
    /// Each workspace imported, with its own summary.
    pub workspaces: Vec<(GridWorkspace, ImportSummary)>,
    /// The workspaces of the archive that were not selected.
    pub not_selected: Vec<GridWorkspace>,
    /// Org-level items imported into no workspace, and why (an org-level conversation naming
    /// no workspace of the archive, a top-level folder no org listing lists, a link).
    pub skipped: Vec<ImportIssue>,
    /// Org-level things worth knowing (a workspace without a team id, repaired UTF-8).
    pub warnings: Vec<ImportIssue>,
    /// Conversations asked for ([`ImportOptions::only_channels`]) that no selected workspace
    /// holds.
    pub missing: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

impl GridImportSummary {
    /// Messages stored, over all workspaces.
    pub fn messages(&self) -> u64 {
        self.workspaces.iter().map(|(_, s)| s.totals.messages).sum()
    }

    /// Items skipped, over the org and all workspaces.
    pub fn skipped_total(&self) -> usize {
        self.skipped.len()
            + self
                .workspaces
                .iter()
                .map(|(_, s)| s.skipped.len())
                .sum::<usize>()
    }
}

/// Whether the export at `path` (a directory or a `.zip`) is an Enterprise Grid org export:
/// it has workspaces under `teams/`.
///
/// # Errors
/// `InvalidInput` when the path is not a readable export.
pub fn is_grid_export(path: &Path) -> Result<bool> {
    let mut archive = ExportArchive::open(path)?;
    Ok(!archive.grid_workspaces()?.0.is_empty())
}

/// Imports Enterprise Grid org exports into a [`MetadataStore`], one chatvault workspace per
/// workspace of the org; content reaches the content store through the outbox.
#[derive(Debug, Clone)]
pub struct GridImport {
    meta: Arc<dyn MetadataStore>,
    progress: Arc<dyn Progress>,
}

/// A workspace's part of the archive, planned before anything is written.
struct Planned {
    workspace: GridWorkspace,
    layout: Layout,
}

/// The whole archive, planned.
struct Plan {
    workspaces: Vec<Planned>,
    skipped: Vec<ImportIssue>,
    warnings: Vec<ImportIssue>,
    files_read: u64,
}

/// The ids of `v`'s string array `field`.
fn str_array<'a>(v: &'a Value, field: &str) -> impl Iterator<Item = &'a str> {
    v.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// The team id most active, non-guest, non-bot users of a workspace's `users.json` have (mmetl's
/// rule: guests may come from other teams), else most users' of any kind; `None` on a tie.
fn majority_team(users: &UsersListing) -> Option<(String, usize, usize)> {
    let native = |u: &Value| {
        let flag = |f: &str| u.get(f).and_then(Value::as_bool).unwrap_or(false);
        !flag("deleted")
            && !flag("is_bot")
            && !flag("is_restricted")
            && !flag("is_ultra_restricted")
    };
    for only_native in [true, false] {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut total = 0;
        for (_, u) in &users.entries {
            if only_native && !native(u) {
                continue;
            }
            total += 1;
            if let Some(t) = u.get("team_id").and_then(Value::as_str) {
                *counts.entry(t).or_default() += 1;
            }
        }
        let best = counts.values().copied().max().unwrap_or(0);
        let leaders: Vec<&str> = counts
            .iter()
            .filter(|(_, n)| **n == best)
            .map(|(t, _)| *t)
            .collect();
        if best > 0 && leaders.len() == 1 {
            return Some((leaders[0].to_string(), best, total));
        }
    }
    None
}

/// The `team` of the first message that has one, reading `files` in order (files that cannot
/// be read are left for the import to report).
fn first_message_team(archive: &mut ExportArchive, files: &[&String]) -> Option<(String, String)> {
    for file in files {
        let Ok(Some(bytes)) = archive.read(file) else {
            continue;
        };
        let Ok((Value::Array(messages), _)) = parse_json(file, &bytes) else {
            continue;
        };
        if let Some(team) = messages
            .iter()
            .find_map(|m| m.get("team").and_then(Value::as_str))
        {
            return Some((team.to_string(), file.to_string()));
        }
    }
    None
}

/// A conversation's folder name: DMs by id, the others by name.
fn folder_name(v: &Value, kind: ChannelKind) -> Option<String> {
    let id = v.get("id").and_then(Value::as_str)?;
    let is_im = kind == ChannelKind::Im || v.get("is_im").and_then(Value::as_bool) == Some(true);
    if is_im {
        return Some(id.to_string());
    }
    Some(
        v.get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(id)
            .to_string(),
    )
}

/// The day files of each folder (`folder` → its files, sorted).
fn by_folder(files: &[String]) -> BTreeMap<String, Vec<&String>> {
    let mut out: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for f in files {
        if let Some((folder, _)) = f.rsplit_once('/') {
            out.entry(folder.to_string()).or_default().push(f);
        }
    }
    out
}

impl GridImport {
    /// An importer writing into `meta`.
    pub fn new(meta: Arc<dyn MetadataStore>) -> Self {
        GridImport {
            meta,
            progress: Arc::new(NoProgress),
        }
    }

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Imports every selected workspace of the Grid export at `path` (a directory or a `.zip`)
    /// into its own chatvault workspace, with a summary for each.
    ///
    /// Every listing of the org and of every workspace is read and checked, and the workspaces
    /// asked for are found, before anything is written. Within a workspace the import is what
    /// [`Collector::import_export`] does for a workspace export.
    ///
    /// # Errors
    /// `InvalidInput` naming the file when the path is not a Grid export or a listing is
    /// unreadable, not JSON or not an array, or when two folders are the same team;
    /// `NotFound` when a workspace asked for is not in the archive (nothing is written then);
    /// the store's error when it fails for good.
    pub async fn import(
        &self,
        path: impl AsRef<Path>,
        options: GridImportOptions,
    ) -> Result<GridImportSummary> {
        let path = path.as_ref();
        let start = Instant::now();
        let mut archive =
            ExportArchive::open(path)?.with_max_file_bytes(options.import.max_file_bytes);
        let plan = plan(&mut archive, path)?;
        let mut summary = GridImportSummary {
            skipped: plan.skipped,
            warnings: plan.warnings,
            ..Default::default()
        };
        let (selected, not_selected) =
            select(plan.workspaces, options.only_workspaces.as_deref(), path)?;
        summary.not_selected = not_selected.into_iter().map(|p| p.workspace).collect();
        let mut missing: Option<BTreeSet<String>> = None;
        for (n, planned) in selected.into_iter().enumerate() {
            let w = planned.workspace;
            let mut layout = planned.layout;
            if n == 0 {
                // The org's listings are read once; count them once.
                layout.files_read += plan.files_read;
            }
            let mut import = options.import.clone();
            import.workspace_name = Some(w.folder.clone());
            let collector = Collector::new(self.meta.clone(), w.workspace.clone())
                .with_progress(self.progress.clone());
            info!(workspace = %w.workspace, folder = %w.folder, "importing a workspace of the Grid export");
            let mut ws_summary = collector
                .import_layout(&mut archive, layout, &import, Instant::now())
                .await?;
            if let Some(team) = &w.team {
                let mut batch = WriteBatch::new(w.workspace.clone());
                batch.teams.push(Team {
                    id: team.clone(),
                    name: w.folder.clone(),
                    domain: None,
                });
                apply_with_retry(self.meta.as_ref(), batch, import.store_retries).await?;
            }
            // Asked for and missing only when no selected workspace holds it.
            let here: BTreeSet<String> = std::mem::take(&mut ws_summary.missing)
                .into_iter()
                .collect();
            missing = Some(match missing {
                None => here,
                Some(m) => m.intersection(&here).cloned().collect(),
            });
            summary.workspaces.push((w, ws_summary));
        }
        summary.missing = missing.unwrap_or_default().into_iter().collect();
        summary.elapsed = start.elapsed();
        Ok(summary)
    }
}

/// The workspaces of the Grid export at `path` that `only` selects (team ids or folder names;
/// `None`: all), without importing anything: what [`GridImport::import`] would import, and
/// where.
///
/// # Errors
/// As [`GridImport::import`] before it writes: `InvalidInput` for a damaged archive,
/// `NotFound` for a workspace asked for that the archive does not hold.
pub fn grid_workspaces(path: &Path, only: Option<&[String]>) -> Result<Vec<GridWorkspace>> {
    let mut archive = ExportArchive::open(path)?;
    let (selected, _) = select(plan(&mut archive, path)?.workspaces, only, path)?;
    Ok(selected.into_iter().map(|p| p.workspace).collect())
}

/// Splits the planned workspaces into those `only` selects and the others.
///
/// # Errors
/// `NotFound` naming a workspace of `only` the archive does not hold, and those it holds.
fn select(
    planned: Vec<Planned>,
    only: Option<&[String]>,
    path: &Path,
) -> Result<(Vec<Planned>, Vec<Planned>)> {
    let Some(only) = only else {
        return Ok((planned, Vec::new()));
    };
    let matches = |w: &GridWorkspace, o: &str| {
        w.folder == o || w.team.as_ref().is_some_and(|t| t.as_str() == o)
    };
    if let Some(wanted) = only
        .iter()
        .find(|o| !planned.iter().any(|p| matches(&p.workspace, o)))
    {
        let held: Vec<String> = planned
            .iter()
            .map(|p| match &p.workspace.team {
                Some(t) => format!("{} ({t})", p.workspace.folder),
                None => p.workspace.folder.clone(),
            })
            .collect();
        return Err(Error::not_found(format!(
            "workspace {wanted} is not in the Enterprise Grid export {}: it holds {}; nothing was written",
            path.display(),
            held.join(", ")
        ))
        .with_context("file", path.display()));
    }
    Ok(planned
        .into_iter()
        .partition(|p| only.iter().any(|o| matches(&p.workspace, o))))
}

/// Reads and checks every listing of the archive, finds each workspace's team, and decides what
/// each workspace imports. Reads only.
fn plan(archive: &mut ExportArchive, path: &Path) -> Result<Plan> {
    let (folders, team_links) = archive.grid_workspaces()?;
    if folders.is_empty() {
        return Err(Error::invalid_input(format!(
            "{} is not an Enterprise Grid org export: it has no workspace folders under {GRID_TEAMS_FOLDER}/ (import it as a workspace export)",
            path.display()
        ))
        .with_context("file", path.display()));
    }
    let mut warnings = Vec::new();
    let mut skipped: Vec<ImportIssue> = team_links
        .into_iter()
        .map(|l| ImportIssue {
            file: l,
            position: None,
            reason: "a symbolic link: not followed (nothing outside the export is read)".into(),
        })
        .collect();
    // The org level: its listings, folders and day files (`teams/` is not a conversation).
    let org = Listings::read(archive, "", &mut warnings)?;
    let files_read = org.files();
    let root = archive.entries_at("")?;
    let teams_prefix = format!("{GRID_TEAMS_FOLDER}/");
    let root_days: Vec<String> = root
        .json
        .iter()
        .filter(|f| f.contains('/') && !f.starts_with(&teams_prefix))
        .cloned()
        .collect();
    let root_by_folder = by_folder(&root_days);
    skipped.extend(root.links.iter().map(|l| ImportIssue {
        file: l.clone(),
        position: None,
        reason: "a symbolic link: not followed (nothing outside the export is read)".into(),
    }));

    // Each workspace: its listings (all checked before anything is written) and its team.
    let mut workspaces: Vec<(String, Listings, crate::export::ExportEntries)> = Vec::new();
    for folder in &folders {
        let base = format!("{teams_prefix}{folder}/");
        let listings = Listings::read(archive, &base, &mut warnings)?;
        let entries = archive.entries_at(&base)?;
        workspaces.push((folder.clone(), listings, entries));
    }
    let mut planned: Vec<Planned> = Vec::new();
    let mut team_of_folder: HashMap<String, String> = HashMap::new();
    for (folder, listings, entries) in workspaces {
        let base = format!("{teams_prefix}{folder}/");
        let day_files: Vec<String> = entries
            .json
            .iter()
            .filter(|f| f[base.len()..].contains('/'))
            .cloned()
            .collect();
        let found = match listings.users.as_ref().and_then(majority_team) {
            Some((team, n, total)) => Some((
                team,
                format!("{base}users.json: team_id of {n} of its {total} members"),
            )),
            None => {
                let files: Vec<&String> = day_files.iter().collect();
                first_message_team(archive, &files)
                    .map(|(team, file)| (team, format!("{file}: the `team` of its messages")))
            }
        };
        let (team, workspace, team_from) = match found {
            Some((team, from)) => {
                let id = TeamId::new(team.as_str()).map_err(|e| {
                    Error::invalid_input(format!(
                        "cannot import: {from} gives the team id {team:?}, which is not valid ({e}); nothing was written"
                    ))
                    .with_context("file", format!("{base}users.json"))
                })?;
                if let Some(other) = team_of_folder.get(&team) {
                    return Err(Error::invalid_input(format!(
                        "cannot import: {teams_prefix}{other}/ and {base} are both team {team}: a workspace would receive another's conversations; nothing was written"
                    ))
                    .with_context("file", base.clone()));
                }
                team_of_folder.insert(team.clone(), folder.clone());
                (Some(id), WorkspaceId::new(team.as_str())?, from)
            }
            None => {
                let ws = WorkspaceId::new(folder.as_str()).map_err(|e| {
                    Error::invalid_input(format!(
                        "cannot import: no team id in {base}users.json or its messages, and its folder name cannot be a workspace id ({e}); nothing was written"
                    ))
                    .with_context("file", base.clone())
                })?;
                warnings.push(ImportIssue {
                    file: base.clone(),
                    position: None,
                    reason: format!(
                        "no team id in its users.json (`team_id`) or messages (`team`): stored as workspace {folder}, which Slack events cannot be matched to"
                    ),
                });
                (None, ws, "its folder name".to_string())
            }
        };
        planned.push(Planned {
            workspace: GridWorkspace {
                folder: folder.clone(),
                team,
                workspace,
                team_from,
            },
            layout: Layout {
                files_read: listings.files(),
                users: listings.users.into_iter().collect(),
                conversations: listings.conversations,
                folders: entries.folders,
                day_files,
                links: entries.links,
                warnings: Vec::new(),
                skipped: Vec::new(),
            },
        });
    }

    assign_org_users(&org, &mut planned);
    assign_org_conversations(
        archive,
        org.conversations,
        &root,
        &root_by_folder,
        &mut planned,
        &mut skipped,
    );
    Ok(Plan {
        workspaces: planned,
        skipped,
        warnings,
        files_read,
    })
}

/// Gives each workspace the org users whose `team_id` or `enterprise_user.teams` names its team.
fn assign_org_users(org: &Listings, planned: &mut [Planned]) {
    let Some(users) = &org.users else { return };
    for p in planned.iter_mut() {
        let Some(team) = &p.workspace.team else {
            continue;
        };
        let team = team.as_str();
        let entries: Vec<(usize, Value)> = users
            .entries
            .iter()
            .filter(|(_, u)| {
                u.get("team_id").and_then(Value::as_str) == Some(team)
                    || u.get("enterprise_user")
                        .is_some_and(|e| str_array(e, "teams").any(|t| t == team))
            })
            .cloned()
            .collect();
        if !entries.is_empty() {
            p.layout.users.push(UsersListing {
                file: users.file.clone(),
                entries,
            });
        }
    }
}

/// Gives each org-level conversation to the workspaces it belongs to (see the module's doc);
/// reports those that belong to none, and top-level folders no org listing lists.
fn assign_org_conversations(
    archive: &mut ExportArchive,
    listings: Vec<ConversationListing>,
    root: &crate::export::ExportEntries,
    root_by_folder: &BTreeMap<String, Vec<&String>>,
    planned: &mut [Planned],
    skipped: &mut Vec<ImportIssue>,
) {
    let teams: Vec<Option<String>> = planned
        .iter()
        .map(|p| p.workspace.team.as_ref().map(|t| t.to_string()))
        .collect();
    let index_of = |team: &str| teams.iter().position(|t| t.as_deref() == Some(team));
    let mut listed: BTreeSet<String> = BTreeSet::new();
    for listing in listings {
        // Per workspace: the entries of this listing it receives.
        let mut given: Vec<Vec<(usize, Value)>> = vec![Vec::new(); planned.len()];
        for (i, v) in listing.entries {
            let Some(folder) = folder_name(&v, listing.kind) else {
                skipped.push(ImportIssue {
                    file: listing.file.clone(),
                    position: Some(format!("conversation {i}")),
                    reason: "conversation without an `id`".into(),
                });
                continue;
            };
            listed.insert(folder.clone());
            let mut to: BTreeSet<usize> = str_array(&v, "internal_team_ids")
                .chain(str_array(&v, "shared_team_ids"))
                .filter_map(index_of)
                .collect();
            if to.is_empty() {
                let files = root_by_folder.get(&folder).cloned().unwrap_or_default();
                if let Some(i) =
                    first_message_team(archive, &files).and_then(|(team, _)| index_of(&team))
                {
                    to.insert(i);
                }
            }
            if to.is_empty() {
                let id = v.get("id").and_then(Value::as_str).unwrap_or("?");
                skipped.push(ImportIssue {
                    file: listing.file.clone(),
                    position: Some(format!("conversation {i}")),
                    reason: format!(
                        "org-level conversation {id} ({folder}/) belongs to no workspace of this export: neither its `internal_team_ids`/`shared_team_ids` nor the `team` of its messages name one of {}; not imported",
                        teams.iter().flatten().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
                continue;
            }
            for n in to {
                given[n].push((i, v.clone()));
                let p = &mut planned[n];
                if root.folders.contains(&folder) {
                    p.layout.folders.push(folder.clone());
                }
                if let Some(files) = root_by_folder.get(&folder) {
                    p.layout
                        .day_files
                        .extend(files.iter().map(|f| (*f).clone()));
                }
            }
        }
        for (p, entries) in planned.iter_mut().zip(given) {
            if !entries.is_empty() {
                p.layout.conversations.push(ConversationListing {
                    file: listing.file.clone(),
                    kind: listing.kind,
                    base: String::new(),
                    entries,
                });
            }
        }
    }
    for folder in &root.folders {
        if folder == GRID_TEAMS_FOLDER || listed.contains(folder) {
            continue;
        }
        skipped.push(ImportIssue {
            file: format!("{folder}/"),
            position: None,
            reason: "folder is not listed in the org-level channels.json, groups.json, dms.json or mpims.json; its messages were not imported".into(),
        });
    }
}
