//! Importing a Slack export into the metadata store (content goes through the outbox).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::{info, info_span, warn, Instrument};

use chatvault_core::{
    ApplyReport, Channel, ChannelId, ChannelKind, Error, MembershipChange, MessageKey,
    MessageRecord, MetadataStore, Result, SyncState, SyncStatus, ThreadParticipant, Ts, User,
    UserId, Workspace, WorkspaceId, WriteBatch,
};

use crate::export::{parse_json, ExportArchive, MAX_EXPORT_FILE_BYTES};
use crate::listing::{ConversationListing, Listings, UsersListing};
use crate::markup::NameBook;
use crate::processor::{process_message, ChannelContext, Processed, UnknownSubtype};
use crate::progress::{NoProgress, Progress, ProgressUpdate, Stage};
use crate::subtype::SubtypeHandling;
use crate::write::apply_with_retry;

/// The `source` name export imports write to `sync_status`.
pub const EXPORT_SOURCE: &str = "export";

/// How an export is imported.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Messages per metadata transaction (default 500).
    pub batch_size: usize,
    /// What to do with subtypes the table does not know (default: skip and report).
    pub unknown_subtypes: UnknownSubtype,
    /// The workspace's display name if it must be created (default: its id).
    pub workspace_name: Option<String>,
    /// Only these conversations (folder names or ids); `None`: all. One that the export does
    /// not hold is listed in [`ImportSummary::missing`].
    pub only_channels: Option<Vec<String>>,
    /// How many times a transient store failure is retried before the import stops.
    pub store_retries: u32,
    /// The largest file read from the export (default [`MAX_EXPORT_FILE_BYTES`]); a zip entry is
    /// also never read past the size its header declares.
    pub max_file_bytes: u64,
}

impl ImportOptions {
    /// Whether the conversation in `folder` with id `id` is to be imported.
    fn wants(&self, folder: &str, id: &ChannelId) -> bool {
        self.only_channels
            .as_ref()
            .is_none_or(|only| only.iter().any(|o| o == folder || o == id.as_str()))
    }
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            batch_size: 500,
            unknown_subtypes: UnknownSubtype::Skip,
            workspace_name: None,
            only_channels: None,
            store_retries: 5,
            max_file_bytes: MAX_EXPORT_FILE_BYTES,
        }
    }
}

/// Something the import skipped or repaired, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportIssue {
    /// The file, relative to the export root (`general/2016-01-02.json`).
    pub file: String,
    /// Where in it (`message 3 (ts 1452837318.000002)`), when it concerns one item.
    pub position: Option<String>,
    /// What was wrong.
    pub reason: String,
}

impl std::fmt::Display for ImportIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.position {
            Some(p) => write!(f, "{}, {p}: {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

/// Counts for one conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelCounts {
    /// Messages stored (replies included).
    pub messages: u64,
    /// Of which thread replies.
    pub replies: u64,
    /// Of which with content for the content store.
    pub with_content: u64,
    /// Reactions (sum of counts).
    pub reactions: u64,
    /// Files.
    pub files: u64,
    /// Links.
    pub links: u64,
}

impl ChannelCounts {
    fn add_record(&mut self, r: &MessageRecord) {
        self.messages += 1;
        self.replies += u64::from(r.meta.is_reply());
        self.with_content += u64::from(r.content.is_some());
        self.reactions += r.reactions.iter().map(|x| u64::from(x.count)).sum::<u64>();
        self.files += r.files.len() as u64;
        self.links += r.links.len() as u64;
    }

    fn add(&mut self, o: &ChannelCounts) {
        self.messages += o.messages;
        self.replies += o.replies;
        self.with_content += o.with_content;
        self.reactions += o.reactions;
        self.files += o.files;
        self.links += o.links;
    }
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportSummary {
    /// Files read (metadata files and day files).
    pub files_read: u64,
    /// Users written.
    pub users: u64,
    /// Conversations written.
    pub channels: u64,
    /// Totals over all conversations.
    pub totals: ChannelCounts,
    /// Metadata-only messages (joins, topic changes, tombstones…).
    pub metadata_only: u64,
    /// Per conversation (by folder name).
    pub per_channel: BTreeMap<String, ChannelCounts>,
    /// Per subtype (`""` for plain messages): messages stored.
    pub per_subtype: BTreeMap<String, u64>,
    /// Outbox entries enqueued (0 when re-importing unchanged content).
    pub outbox_enqueued: u64,
    /// Message writes the store ignored as older than what it holds.
    pub messages_stale: u64,
    /// Items not imported, and why.
    pub skipped: Vec<ImportIssue>,
    /// Things worth knowing that lost nothing listed in the export: a repair (invalid UTF-8
    /// replaced), a missing `users.json`, a listed conversation without a folder.
    pub warnings: Vec<ImportIssue>,
    /// What was asked for (a conversation of [`ImportOptions::only_channels`]) and is not in the
    /// export.
    pub missing: Vec<String>,
    /// Message writes ignored because the message was deleted since (its tombstone wins); they
    /// are not counted in `totals` and are listed in `warnings`.
    pub messages_deleted_before: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl ImportSummary {
    fn note(&mut self, report: &ApplyReport) {
        self.outbox_enqueued += report.outbox_enqueued;
        self.messages_stale += report.messages_stale;
        self.messages_deleted_before += report.messages_deleted_before;
    }

    /// Messages per second, end to end into the metadata store.
    pub fn messages_per_second(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.totals.messages as f64 / s
        } else {
            0.0
        }
    }
}

/// Imports Slack data of one workspace into a [`MetadataStore`]; content reaches the content
/// store through the outbox and a [`Relay`](crate::Relay).
#[derive(Debug, Clone)]
pub struct Collector {
    meta: Arc<dyn MetadataStore>,
    workspace: WorkspaceId,
    progress: Arc<dyn Progress>,
}

struct Conversation {
    id: ChannelId,
    kind: ChannelKind,
    /// Its folder's own name (`general`), without the folder it sits in.
    name: String,
    /// Where it is listed (`channels.json, conversation 3`).
    listed_at: String,
}

fn lenient_time(v: Option<&Value>) -> Option<chrono::DateTime<chrono::Utc>> {
    let secs = match v? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.split('.').next()?.parse().ok()?,
        _ => return None,
    };
    chrono::DateTime::from_timestamp(secs, 0).filter(|_| secs > 0)
}

fn nested_value(v: &Value, field: &str) -> Option<String> {
    match v.get(field)? {
        Value::Object(o) => o.get("value")?.as_str(),
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
    .filter(|s| !s.is_empty())
    .map(str::to_string)
}

fn str_field(v: &Value, f: &str) -> Option<String> {
    v.get(f)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Parses one `users.json` entry (also a `users.list` member or a `user_change` user).
pub(crate) fn parse_user(v: &Value) -> Result<User> {
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid_input("user without an `id`"))?;
    let mut u = User::new(
        UserId::new(id)?,
        str_field(v, "name").unwrap_or_else(|| id.to_string()),
    );
    u.team = str_field(v, "team_id").and_then(|t| chatvault_core::TeamId::new(t).ok());
    let profile = v.get("profile");
    u.real_name =
        str_field(v, "real_name").or_else(|| profile.and_then(|p| str_field(p, "real_name")));
    u.display_name = profile.and_then(|p| str_field(p, "display_name"));
    u.is_bot = v.get("is_bot").and_then(Value::as_bool).unwrap_or(false);
    u.is_deleted = v.get("deleted").and_then(Value::as_bool).unwrap_or(false);
    u.is_admin = v.get("is_admin").and_then(Value::as_bool).unwrap_or(false);
    u.tz = str_field(v, "tz");
    u.email = profile
        .and_then(|p| str_field(p, "email"))
        .filter(|e| e.contains('@'));
    Ok(u)
}

/// Parses a conversation object (export metadata file, `conversations.list`, `channel_created`).
/// Returns the channel and its member list when given.
pub(crate) fn parse_channel(
    v: &Value,
    default_kind: ChannelKind,
) -> Result<(Channel, Option<Vec<UserId>>)> {
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid_input("conversation without an `id`"))?;
    let flag = |f: &str| v.get(f).and_then(Value::as_bool).unwrap_or(false);
    let kind = if flag("is_im") {
        ChannelKind::Im
    } else if flag("is_mpim") {
        ChannelKind::Mpim
    } else if flag("is_private") || flag("is_group") {
        ChannelKind::Private
    } else if flag("is_channel") {
        ChannelKind::Public
    } else {
        default_kind
    };
    let members: Option<Vec<UserId>> = match v.get("members").and_then(Value::as_array) {
        Some(ms) => Some(
            ms.iter()
                .filter_map(Value::as_str)
                .map(UserId::new)
                .collect::<Result<_>>()?,
        ),
        None => None,
    };
    let name = str_field(v, "name")
        .or_else(|| str_field(v, "user"))
        .or_else(|| {
            members
                .as_ref()
                .map(|m| m.iter().map(UserId::as_str).collect::<Vec<_>>().join("-"))
        })
        .unwrap_or_else(|| id.to_string());
    let mut c = Channel::new(ChannelId::new(id)?, name, kind);
    c.is_archived = flag("is_archived");
    c.is_general = flag("is_general");
    c.topic = nested_value(v, "topic");
    c.purpose = nested_value(v, "purpose");
    c.creator = str_field(v, "creator").and_then(|u| UserId::new(u).ok());
    c.created = lenient_time(v.get("created"));
    Ok((c, members))
}

impl Collector {
    /// A collector writing `workspace`'s data into `meta`.
    pub fn new(meta: Arc<dyn MetadataStore>, workspace: WorkspaceId) -> Self {
        Collector {
            meta,
            workspace,
            progress: Arc::new(NoProgress),
        }
    }

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// The workspace written to.
    pub fn workspace(&self) -> &WorkspaceId {
        &self.workspace
    }

    /// Imports a Slack export (a directory or a `.zip`): users, conversations with visibility and
    /// members, then every day file of every conversation, one file at a time.
    ///
    /// Bad items (a malformed day file, a message without `ts`, an oversized message, an unknown
    /// subtype…) are skipped and listed in the summary with their file and position; the rest
    /// continues. Re-importing the same export changes nothing and enqueues nothing.
    ///
    /// # Errors
    /// `InvalidInput` when the path is not a readable export; the store's error when it fails
    /// for good (transient failures are retried). What was committed before stays committed.
    pub async fn import_export(
        &self,
        path: impl AsRef<Path>,
        options: ImportOptions,
    ) -> Result<ImportSummary> {
        let path = path.as_ref();
        let span = info_span!("import_export", workspace = %self.workspace, path = %path.display());
        self.import_inner(path, options).instrument(span).await
    }

    async fn import_inner(&self, path: &Path, options: ImportOptions) -> Result<ImportSummary> {
        let start = Instant::now();
        let mut archive = ExportArchive::open(path)?.with_max_file_bytes(options.max_file_bytes);
        let (grid, _) = archive.grid_workspaces()?;
        if !grid.is_empty() {
            return Err(Error::invalid_input(format!(
                "{} is an Enterprise Grid org export holding {} workspaces ({}): each must become its own workspace, so import it with `import_grid` (`chatvault ingest-export` does); nothing was written",
                path.display(),
                grid.len(),
                grid.join(", ")
            ))
            .with_context("file", path.display()));
        }
        let entries = archive.entries()?;
        // Every listing is read and checked before anything is written.
        let mut warnings = Vec::new();
        let listings = Listings::read(&mut archive, "", &mut warnings)?;
        let layout = Layout {
            files_read: listings.files(),
            users: listings.users.into_iter().collect(),
            conversations: listings.conversations,
            day_files: entries
                .json
                .into_iter()
                .filter(|f| f.contains('/'))
                .collect(),
            folders: entries.folders,
            links: entries.links,
            warnings,
            skipped: Vec::new(),
        };
        self.import_layout(&mut archive, layout, &options, start)
            .await
    }

    /// Imports what `layout` lists from `archive`: users, conversations, then day files.
    pub(crate) async fn import_layout(
        &self,
        archive: &mut ExportArchive,
        layout: Layout,
        options: &ImportOptions,
        start: Instant,
    ) -> Result<ImportSummary> {
        let mut summary = ImportSummary {
            files_read: layout.files_read,
            warnings: layout.warnings,
            skipped: layout.skipped,
            ..Default::default()
        };
        self.ensure_workspace(options.workspace_name.as_deref())
            .await?;
        for link in &layout.links {
            summary.skipped.push(ImportIssue {
                file: link.clone(),
                position: None,
                reason: "a symbolic link: not followed (nothing outside the export is read)".into(),
            });
        }
        let mut run = ImportRun {
            options,
            summary,
            start,
            // Names already stored first: an export without users.json (or missing some users)
            // renders mentions as the last import did, never degrading stored texts to ids.
            names: self.stored_names().await?,
            domain: None,
        };
        self.import_users(layout.users, &mut run).await?;
        let conversations = self
            .import_conversations(layout.conversations, &layout.folders, &mut run)
            .await?;
        self.import_day_files(archive, &layout.day_files, &conversations, &mut run)
            .await?;
        if let Some(only) = &options.only_channels {
            for wanted in only {
                let found = conversations
                    .values()
                    .any(|c| &c.name == wanted || c.id.as_str() == wanted);
                if !found {
                    run.summary.missing.push(format!(
                        "conversation {wanted} was asked for but is not in the export"
                    ));
                }
            }
        }
        self.record_domain(run.domain.take()).await?;
        let mut summary = run.summary;
        summary.elapsed = start.elapsed();
        info!(
            messages = summary.totals.messages,
            skipped = summary.skipped.len(),
            warnings = summary.warnings.len(),
            enqueued = summary.outbox_enqueued,
            elapsed_ms = summary.elapsed.as_millis() as u64,
            "export imported"
        );
        Ok(summary)
    }

    /// The names of the users and channels already stored for the workspace.
    async fn stored_names(&self) -> Result<NameBook> {
        let mut names = NameBook::default();
        for u in self.meta.list_users(&self.workspace).await? {
            names
                .users
                .insert(u.id.to_string(), u.best_name().to_string());
        }
        for c in self.meta.list_channels(&self.workspace).await? {
            names.add_channel(&c);
        }
        Ok(names)
    }

    async fn import_users(
        &self,
        listings: Vec<UsersListing>,
        run: &mut ImportRun<'_>,
    ) -> Result<()> {
        if listings.is_empty() {
            run.summary.warnings.push(ImportIssue {
                file: "users.json".into(),
                position: None,
                reason: format!(
                    "missing: no users imported; names come from the {} users already stored",
                    run.names.users.len()
                ),
            });
            return Ok(());
        }
        let batch_size = run.options.batch_size.max(1);
        // id → (file, position) where first listed. A user listed again in the same file is
        // reported; one listed in a second file (a Grid workspace's users.json and the org's
        // org_users.json) is the same person seen twice, and kept once.
        let mut first_at: HashMap<UserId, (usize, usize)> = HashMap::new();
        let mut batch = WriteBatch::new(self.workspace.clone());
        for (n, listing) in listings.iter().enumerate() {
            let file = listing.file.as_str();
            for (i, u) in &listing.entries {
                match parse_user(u) {
                    Ok(u) => {
                        if let Some((first_file, first)) = first_at.get(&u.id) {
                            if *first_file == n {
                                run.summary.skipped.push(ImportIssue {
                                    file: file.into(),
                                    position: Some(format!("user {i}")),
                                    reason: format!(
                                        "duplicate user id {} (first at user {first}); the first was kept",
                                        u.id
                                    ),
                                });
                            }
                            continue;
                        }
                        first_at.insert(u.id.clone(), (n, *i));
                        run.names
                            .users
                            .insert(u.id.to_string(), u.best_name().to_string());
                        batch.users.push(u);
                    }
                    Err(e) => run.summary.skipped.push(ImportIssue {
                        file: file.into(),
                        position: Some(format!("user {i}")),
                        reason: e.to_string(),
                    }),
                }
                if batch.users.len() >= batch_size {
                    let full =
                        std::mem::replace(&mut batch, WriteBatch::new(self.workspace.clone()));
                    run.summary.users += full.users.len() as u64;
                    self.apply(full, run.options, &mut run.summary).await?;
                }
            }
        }
        run.summary.users += batch.users.len() as u64;
        self.apply(batch, run.options, &mut run.summary).await?;
        self.report(Stage::Users, run.summary.users, None, run.start, None);
        Ok(())
    }

    /// Writes the conversations listed; returns folder (from the export's top level) →
    /// conversation.
    async fn import_conversations(
        &self,
        listings: Vec<ConversationListing>,
        present_folders: &[String],
        run: &mut ImportRun<'_>,
    ) -> Result<BTreeMap<String, Conversation>> {
        let mut folders: BTreeMap<String, Conversation> = BTreeMap::new();
        // id → where it was first listed
        let mut first_at: HashMap<ChannelId, String> = HashMap::new();
        for listing in listings {
            let (file, kind) = (listing.file.as_str(), listing.kind);
            let mut batch = WriteBatch::new(self.workspace.clone());
            for (i, v) in &listing.entries {
                let here = format!("{file}, conversation {i}");
                let skip = |reason: String| ImportIssue {
                    file: file.into(),
                    position: Some(format!("conversation {i}")),
                    reason,
                };
                let (mut c, members) = match parse_channel(v, kind) {
                    Ok(x) => x,
                    Err(e) => {
                        run.summary.skipped.push(skip(e.to_string()));
                        continue;
                    }
                };
                if let Some(first) = first_at.get(&c.id) {
                    run.summary.skipped.push(skip(format!(
                        "duplicate conversation id {} (first at {first}); the first was kept",
                        c.id
                    )));
                    continue;
                }
                // The kind comes from the file it is listed in, unless the object says it is
                // private (slackdump lists private channels in channels.json, `is_private`).
                if !(kind == ChannelKind::Public && c.kind != ChannelKind::Public) {
                    c.kind = kind;
                }
                // DMs are stored in folders named by id, the others by name.
                let name = if c.kind == ChannelKind::Im {
                    c.id.to_string()
                } else {
                    str_field(v, "name").unwrap_or_else(|| c.id.to_string())
                };
                let folder = format!("{}{name}", listing.base);
                if let Some(other) = folders.get(&folder) {
                    run.summary.skipped.push(skip(format!(
                        "conversation {} has the folder {folder}/ of {} (first at {}): its messages could not be told apart; not imported",
                        c.id, other.id, other.listed_at
                    )));
                    continue;
                }
                first_at.insert(c.id.clone(), here.clone());
                run.names.add_channel(&c);
                let wanted = run.options.wants(&name, &c.id);
                if wanted && !present_folders.contains(&folder) {
                    run.summary.warnings.push(ImportIssue {
                        file: file.into(),
                        position: Some(format!("conversation {i}")),
                        reason: format!(
                            "{} is listed but the export has no folder {folder}/: no messages imported for it",
                            c.id
                        ),
                    });
                }
                folders.insert(
                    folder,
                    Conversation {
                        id: c.id.clone(),
                        kind: c.kind,
                        name,
                        listed_at: here,
                    },
                );
                if let Some(users) = members {
                    batch.memberships.push(MembershipChange::Replace {
                        channel: c.id.clone(),
                        users,
                    });
                }
                batch.channels.push(c);
            }
            run.summary.channels += batch.channels.len() as u64;
            self.apply(batch, run.options, &mut run.summary).await?;
        }
        self.report(Stage::Channels, run.summary.channels, None, run.start, None);
        Ok(folders)
    }

    async fn import_day_files(
        &self,
        archive: &mut ExportArchive,
        files: &[String],
        conversations: &BTreeMap<String, Conversation>,
        run: &mut ImportRun<'_>,
    ) -> Result<()> {
        let mut by_folder: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for f in files {
            if let Some((folder, _)) = f.rsplit_once('/') {
                by_folder.entry(folder).or_default().push(f.as_str());
            }
        }
        let total_day_files: u64 = by_folder.values().map(|v| v.len() as u64).sum();
        let mut day_files_done = 0u64;
        for (folder, day_files) in by_folder {
            let Some(conv) = conversations.get(folder) else {
                run.summary.skipped.push(ImportIssue {
                    file: format!("{folder}/"),
                    position: None,
                    reason: "folder is not listed in channels.json, groups.json, dms.json or mpims.json; its messages were not imported".into(),
                });
                day_files_done += day_files.len() as u64;
                continue;
            };
            if !run.options.wants(&conv.name, &conv.id) {
                day_files_done += day_files.len() as u64;
                continue;
            }
            let span = info_span!("conversation", folder, channel = %conv.id);
            let mut state = ConversationImport {
                ctx: ChannelContext {
                    workspace: self.workspace.clone(),
                    channel: conv.id.clone(),
                    kind: conv.kind,
                },
                counts: ChannelCounts::default(),
                oldest: None,
                latest: None,
                first_at: HashMap::new(),
            };
            async {
                for file in day_files {
                    day_files_done += 1;
                    self.import_day_file(archive, file, &mut state, run).await?;
                    self.report(
                        Stage::DayFiles,
                        day_files_done,
                        Some(total_day_files),
                        run.start,
                        Some(file),
                    );
                    self.report(
                        Stage::Messages,
                        run.summary.totals.messages + state.counts.messages,
                        None,
                        run.start,
                        None,
                    );
                }
                Ok::<_, Error>(())
            }
            .instrument(span)
            .await?;
            let mut batch = WriteBatch::new(self.workspace.clone());
            batch.sync_status.push(SyncStatus {
                channel: conv.id.clone(),
                source: EXPORT_SOURCE.into(),
                cursor: None,
                oldest_ts: state.oldest,
                latest_ts: state.latest,
                state: SyncState::Complete,
                updated_at: Some(chrono::Utc::now()),
                error: None,
            });
            self.apply(batch, run.options, &mut run.summary).await?;
            run.summary.totals.add(&state.counts);
            run.summary
                .per_channel
                .insert(folder.to_string(), state.counts);
        }
        Ok(())
    }

    /// Imports one day file: every message it holds that is new to the conversation, in batches.
    async fn import_day_file(
        &self,
        archive: &mut ExportArchive,
        file: &str,
        state: &mut ConversationImport,
        run: &mut ImportRun<'_>,
    ) -> Result<()> {
        let Some(value) = self.read_value(archive, file, &mut run.summary)? else {
            return Ok(());
        };
        run.summary.files_read += 1;
        let Value::Array(messages) = value else {
            run.summary.skipped.push(ImportIssue {
                file: file.to_string(),
                position: None,
                reason: "a day file must hold a JSON array of messages".into(),
            });
            return Ok(());
        };
        let batch_size = run.options.batch_size.max(1);
        let mut batch = WriteBatch::new(self.workspace.clone());
        let mut pending: Vec<Pending> = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let ts_hint = m.get("ts").and_then(Value::as_str).unwrap_or("?");
            let position = format!("message {i} (ts {ts_hint})");
            match process_message(&state.ctx, m, &run.names, run.options.unknown_subtypes) {
                Ok(Processed::Message(p)) => {
                    let ts = p.record.meta.key.ts.clone();
                    if let Some(first) = state.first_at.get(&ts) {
                        run.summary.skipped.push(ImportIssue {
                            file: file.to_string(),
                            position: Some(position),
                            reason: format!(
                                "duplicate ts: {first} has the same ts; the first was kept"
                            ),
                        });
                        continue;
                    }
                    state
                        .first_at
                        .insert(ts.clone(), format!("{file}, message {i}"));
                    let mut counts = ChannelCounts::default();
                    counts.add_record(&p.record);
                    if run.domain.is_none() {
                        run.domain = crate::domain::from_files(&p.record.files);
                    }
                    pending.push(Pending {
                        position,
                        ts,
                        counts,
                        subtype: p.record.meta.subtype.clone().unwrap_or_default(),
                        metadata_only: p.handling == SubtypeHandling::MetadataOnly,
                    });
                    batch.messages.push(p.record);
                    batch.thread_participants.extend(p.participants);
                }
                Ok(Processed::Skipped { reason, .. }) => {
                    run.summary.skipped.push(ImportIssue {
                        file: file.to_string(),
                        position: Some(position),
                        reason,
                    });
                }
                Err(e) => {
                    warn!(file, %position, error = %e, "message skipped");
                    run.summary.skipped.push(ImportIssue {
                        file: file.to_string(),
                        position: Some(position),
                        reason: e.to_string(),
                    });
                }
            }
            if batch.messages.len() >= batch_size {
                let full = std::mem::replace(&mut batch, WriteBatch::new(self.workspace.clone()));
                let stored = self
                    .apply_messages(full, std::mem::take(&mut pending), file, run)
                    .await?;
                state.record(stored, &mut run.summary);
            }
        }
        let stored = self.apply_messages(batch, pending, file, run).await?;
        state.record(stored, &mut run.summary);
        Ok(())
    }

    fn report(
        &self,
        stage: Stage,
        done: u64,
        total: Option<u64>,
        start: Instant,
        detail: Option<&str>,
    ) {
        self.progress.update(&ProgressUpdate {
            stage,
            done,
            total,
            elapsed: start.elapsed(),
            detail: detail.map(str::to_string),
        });
    }

    /// Keeps the Slack domain the export revealed (for permalinks), unless one is known.
    async fn record_domain(&self, domain: Option<String>) -> Result<()> {
        let Some(domain) = domain else { return Ok(()) };
        if let Some(mut w) = self.meta.get_workspace(&self.workspace).await? {
            if w.domain.is_none() {
                info!(
                    domain,
                    "workspace domain read from the export's file permalinks"
                );
                w.domain = Some(domain);
                self.meta.upsert_workspace(&w).await?;
            }
        }
        Ok(())
    }

    async fn ensure_workspace(&self, name: Option<&str>) -> Result<()> {
        if self.meta.get_workspace(&self.workspace).await?.is_none() {
            let name = name.unwrap_or(self.workspace.as_str());
            self.meta
                .upsert_workspace(&Workspace::new(self.workspace.clone(), name))
                .await?;
        }
        Ok(())
    }

    fn read_value(
        &self,
        archive: &mut ExportArchive,
        file: &str,
        summary: &mut ImportSummary,
    ) -> Result<Option<Value>> {
        let bytes = match archive.read(file) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(e) => {
                summary.skipped.push(ImportIssue {
                    file: file.into(),
                    position: None,
                    reason: e.message().to_string(),
                });
                return Ok(None);
            }
        };
        match parse_json(file, &bytes) {
            Ok((v, warning)) => {
                if let Some(w) = warning {
                    summary.warnings.push(ImportIssue {
                        file: file.into(),
                        position: None,
                        reason: w,
                    });
                }
                Ok(Some(v))
            }
            Err(e) => {
                warn!(file, error = %e, "file skipped");
                summary.skipped.push(ImportIssue {
                    file: file.into(),
                    position: e.context("line").map(|l| format!("line {l}")),
                    reason: e.message().to_string(),
                });
                Ok(None)
            }
        }
    }

    async fn apply(
        &self,
        batch: WriteBatch,
        options: &ImportOptions,
        summary: &mut ImportSummary,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let report = apply_with_retry(self.meta.as_ref(), batch, options.store_retries).await?;
        summary.note(&report);
        Ok(())
    }

    /// Applies a batch of messages; if the store rejects it as invalid, applies them one by one
    /// so that only the offending messages are skipped. Returns what was stored.
    async fn apply_messages(
        &self,
        batch: WriteBatch,
        pending: Vec<Pending>,
        file: &str,
        run: &mut ImportRun<'_>,
    ) -> Result<Vec<Pending>> {
        if batch.is_empty() {
            return Ok(pending);
        }
        let retries = run.options.store_retries;
        match apply_with_retry(self.meta.as_ref(), batch.clone(), retries).await {
            Ok(report) if report.messages_deleted_before > 0 => {
                run.summary.note(&report);
                // Some were deleted since the export was made: find which, they are not stored.
                let keys: Vec<MessageKey> =
                    batch.messages.iter().map(|r| r.meta.key.clone()).collect();
                let present: HashSet<Ts> = self
                    .meta
                    .get_messages(&self.workspace, &keys)
                    .await?
                    .into_iter()
                    .map(|d| d.meta.key.ts)
                    .collect();
                let (stored, gone): (Vec<Pending>, Vec<Pending>) =
                    pending.into_iter().partition(|p| present.contains(&p.ts));
                for p in gone {
                    run.summary.warnings.push(ImportIssue {
                        file: file.into(),
                        position: Some(p.position),
                        reason: "deleted since the export was made (the stored tombstone wins); not restored".into(),
                    });
                }
                Ok(stored)
            }
            Ok(report) => {
                run.summary.note(&report);
                Ok(pending)
            }
            Err(e) if e.kind() == chatvault_core::ErrorKind::InvalidInput => {
                warn!(file, error = %e, "batch rejected; retrying message by message");
                let participants: Vec<ThreadParticipant> = batch.thread_participants;
                let mut stored = Vec::new();
                for (record, p) in batch.messages.into_iter().zip(pending) {
                    let key = record.meta.key.clone();
                    let mut one = WriteBatch::new(self.workspace.clone());
                    one.thread_participants = participants
                        .iter()
                        .filter(|p| {
                            p.channel == key.channel
                                && (record.meta.thread_ts.as_ref() == Some(&p.thread_ts))
                        })
                        .cloned()
                        .collect();
                    one.messages.push(record);
                    match apply_with_retry(self.meta.as_ref(), one, retries).await {
                        Ok(report) => {
                            run.summary.note(&report);
                            stored.push(p);
                        }
                        Err(e) if e.kind() == chatvault_core::ErrorKind::InvalidInput => {
                            run.summary.skipped.push(ImportIssue {
                                file: file.into(),
                                position: Some(p.position),
                                reason: e.to_string(),
                            });
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(stored)
            }
            Err(e) => Err(e),
        }
    }
}

/// What one workspace's import reads: its listings, the folders present and the day files, all
/// named from the archive's top level. A workspace export's layout is its whole archive; a
/// Grid workspace's is its `teams/<folder>/` plus the org-level conversations it is in.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    /// Users listings, in the order they are read (the first mention of an id wins).
    pub(crate) users: Vec<UsersListing>,
    /// Conversation listings.
    pub(crate) conversations: Vec<ConversationListing>,
    /// Folders present (`general`, `teams/acme/general`).
    pub(crate) folders: Vec<String>,
    /// Day files (`teams/acme/general/2016-01-02.json`).
    pub(crate) day_files: Vec<String>,
    /// Symbolic links found and refused.
    pub(crate) links: Vec<String>,
    /// Listing files read.
    pub(crate) files_read: u64,
    /// Warnings from reading the listings.
    pub(crate) warnings: Vec<ImportIssue>,
    /// Items already known to be skipped.
    pub(crate) skipped: Vec<ImportIssue>,
}

/// One import's options, running summary and names.
struct ImportRun<'a> {
    options: &'a ImportOptions,
    summary: ImportSummary,
    start: Instant,
    names: NameBook,
    /// The Slack domain, once a file permalink revealed it.
    domain: Option<String>,
}

/// One conversation being imported.
struct ConversationImport {
    ctx: ChannelContext,
    counts: ChannelCounts,
    oldest: Option<Ts>,
    latest: Option<Ts>,
    /// Every ts seen so far, and where: a second message with the same ts is reported, not
    /// written over the first.
    first_at: HashMap<Ts, String>,
}

impl ConversationImport {
    /// Counts messages the store accepted.
    fn record(&mut self, stored: Vec<Pending>, summary: &mut ImportSummary) {
        for p in stored {
            if self.oldest.as_ref().is_none_or(|o| &p.ts < o) {
                self.oldest = Some(p.ts.clone());
            }
            if self.latest.as_ref().is_none_or(|l| &p.ts > l) {
                self.latest = Some(p.ts.clone());
            }
            self.counts.add(&p.counts);
            if p.metadata_only {
                summary.metadata_only += 1;
            }
            *summary.per_subtype.entry(p.subtype).or_default() += 1;
        }
    }
}

/// A message in a batch not yet applied: what it will count for once stored.
struct Pending {
    position: String,
    ts: Ts,
    counts: ChannelCounts,
    subtype: String,
    metadata_only: bool,
}
