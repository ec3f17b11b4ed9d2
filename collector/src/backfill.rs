//! Web API backfill: `users.list`, `conversations.list`, `conversations.members`,
//! `conversations.history`, `conversations.replies`, with pagination, `429 Retry-After`, and a resumable per-channel cursor
//! in `sync_status` written in the same transaction as the messages it covers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::{info, info_span, warn, Instrument};

use chatvault_core::{
    ChannelId, ChannelKind, Error, ErrorKind, MembershipChange, MessageDetails, MessageFilter,
    MessageRecord, MetadataStore, PageRequest, Result, SecretString, SyncState, SyncStatus,
    ThreadFilter, TimeRange, Ts, UserId, WorkspaceId, WriteBatch,
};

use crate::import::{parse_channel, parse_user};
use crate::markup::NameBook;
use crate::processor::{process_message, ChannelContext, Processed, UnknownSubtype};
use crate::progress::{NoProgress, Progress, ProgressUpdate, Stage};
use crate::rate_limit::{has_reduced_limit, RateLimiter, REDUCED_PAGE_SIZE, REDUCED_PER_MINUTE};
use crate::write::apply_with_retry;

/// The `source` name backfills write to `sync_status`.
pub const WEB_API_SOURCE: &str = "web_api";

/// How a backfill runs.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// The Web API's base URL (default `https://slack.com/api`; tests point it at a fake server).
    pub api_url: String,
    /// Items per page (default 200).
    pub page_size: u32,
    /// Conversation types to list (default all four).
    pub channel_types: String,
    /// Only these conversations, by id or name (`None`: every one listed). One the token cannot
    /// see is listed in [`BackfillReport::missing`].
    pub only_channels: Option<Vec<String>>,
    /// Not these conversations, by id or name.
    pub exclude_channels: Vec<String>,
    /// Fetch thread replies of parents seen in history (default true).
    pub include_threads: bool,
    /// Retries of a failed call (network error, 5xx) before giving up (default 5).
    pub max_retries: u32,
    /// How many `429`s one call may wait out before giving up (default 20).
    pub max_rate_limit_waits: u32,
    /// The longest `Retry-After` honoured (default 5 minutes).
    pub max_retry_after: Duration,
    /// Timeout of one HTTP request (default 30 s).
    pub request_timeout: Duration,
    /// What to do with unknown message subtypes.
    pub unknown_subtypes: UnknownSubtype,
    /// How far back an incremental run re-reads each conversation's history for late activity
    /// (new replies in older threads, edits, deletes, reactions); default 7 days, zero reads
    /// only what is newer than the newest stored message.
    pub window: Duration,
    /// An incremental run also checks the threads that started before the window but have a
    /// reply stored from within this horizon (default 30 days; zero: none): one
    /// `conversations.history` call each reads the parent's `latest_reply` and `reply_count`,
    /// and the thread is re-read when they moved. Threads quiet for longer are left to the
    /// Events API.
    pub thread_horizon: Duration,
    /// Fetch nothing older than this (a first run starts here; `None`: the whole history).
    pub since: Option<Ts>,
    /// Multiplies Slack's documented per-method tier rates that calls are paced to (default 1;
    /// below 1 is gentler, tests use more).
    pub rate_scale: f64,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            api_url: "https://slack.com/api".into(),
            page_size: 200,
            channel_types: "public_channel,private_channel,mpim,im".into(),
            only_channels: None,
            exclude_channels: Vec::new(),
            include_threads: true,
            max_retries: 5,
            max_rate_limit_waits: 20,
            max_retry_after: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            unknown_subtypes: UnknownSubtype::Skip,
            window: Duration::from_secs(7 * 24 * 3600),
            thread_horizon: Duration::from_secs(30 * 24 * 3600),
            since: None,
            rate_scale: 1.0,
        }
    }
}

/// What an incremental run found changed in the trailing window it re-read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LateActivity {
    /// Messages (replies included) not stored before.
    pub new: u64,
    /// Messages whose `edited` revision changed.
    pub edited: u64,
    /// Messages whose reactions changed.
    pub reactions_changed: u64,
    /// Threads read again because their latest reply moved.
    pub threads_reread: u64,
    /// Messages stored before and no longer in Slack: deleted (tombstoned).
    pub deleted: u64,
}

impl LateActivity {
    fn count(&mut self, before: Option<&MessageDetails>, now: &MessageRecord) {
        let Some(before) = before else {
            self.new += 1;
            return;
        };
        if before.meta.edited != now.meta.edited {
            self.edited += 1;
        }
        let sorted = |r: &[chatvault_core::Reaction]| {
            let mut v: Vec<(String, u32)> = r.iter().map(|x| (x.name.clone(), x.count)).collect();
            v.sort();
            v
        };
        if sorted(&before.reactions) != sorted(&now.reactions) {
            self.reactions_changed += 1;
        }
    }
}

/// The most stored messages one window or thread comparison reads.
const STORED_WINDOW_MAX: usize = 1_000_000;

/// What a backfill did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillReport {
    /// Users written.
    pub users: u64,
    /// Conversations written.
    pub channels: u64,
    /// API calls that succeeded.
    pub calls: u64,
    /// `429` responses waited out.
    pub rate_limited: u64,
    /// Calls retried after a network error or a 5xx.
    pub retries: u64,
    /// Messages written (replies included).
    pub messages: u64,
    /// Of which thread replies.
    pub replies: u64,
    /// Messages not stored (bad input or skipped subtypes), with why.
    pub skipped: Vec<String>,
    /// Private channels, MPIMs and DMs whose members were read (`conversations.members`) and
    /// stored this run.
    pub memberships_refreshed: u64,
    /// Conversations synced to the end this run.
    pub channels_complete: u64,
    /// Conversations that failed (id, error); the next run continues them from their cursor.
    pub channels_failed: Vec<(ChannelId, String)>,
    /// Outbox entries enqueued.
    pub outbox_enqueued: u64,
    /// What the re-read windows found changed.
    pub late: LateActivity,
    /// What was asked for (a conversation of [`BackfillOptions::only_channels`]) and could not
    /// be found.
    pub missing: Vec<String>,
    /// Things a person should know about this run (the reduced rate limits detected, and what
    /// to do about them).
    pub notices: Vec<String>,
}

/// A backfill of one workspace through the Web API.
///
/// The client is `reqwest` rather than slack-morphism: the processor reads Slack's JSON as it
/// is (the same code path as export files), which slack-morphism's typed models would turn into
/// a lossy round trip, and `Retry-After`, retries and the base URL (a local fake server in tests)
/// are under our control.
#[derive(Debug)]
pub struct Backfill {
    meta: Arc<dyn MetadataStore>,
    workspace: WorkspaceId,
    token: SecretString,
    options: BackfillOptions,
    http: reqwest::Client,
    progress: Arc<dyn Progress>,
    limiter: Arc<RateLimiter>,
}

enum CallError {
    /// Slack answered `ok: false` with this code (and, for `missing_scope`, the scope it needed).
    Api {
        code: String,
        needed: Option<String>,
    },
    /// Anything else (network, HTTP status, bad JSON, retries exhausted).
    Other(Error),
}

/// The context entry holding the Slack error code of a failed call.
const SLACK_ERROR: &str = "slack_error";

/// Codes saying the token itself is bad: every call will fail the same way.
const TOKEN_REJECTED: [&str; 5] = [
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
];

/// Codes saying the token may not do this: it needs another scope or kind of token.
const TOKEN_NOT_PERMITTED: [&str; 4] = [
    "missing_scope",
    "not_allowed_token_type",
    "no_permission",
    "team_access_not_granted",
];

impl CallError {
    fn into_error(self, method: &str) -> Error {
        match self {
            CallError::Api { code, needed } => {
                let (kind, why) = match code.as_str() {
                    // A bad token is the caller's input; the token itself is never quoted.
                    c if TOKEN_REJECTED.contains(&c) => (
                        ErrorKind::InvalidInput,
                        Some(
                            "Slack rejected the token; give a valid, current bot token (xoxb-…)"
                                .to_string(),
                        ),
                    ),
                    "not_allowed_token_type" => (
                        ErrorKind::InvalidInput,
                        Some(
                            "this kind of token may not call it; give a bot token (xoxb-…)".into(),
                        ),
                    ),
                    c if TOKEN_NOT_PERMITTED.contains(&c) => (
                        ErrorKind::InvalidInput,
                        Some(match needed {
                            Some(scope) => format!("the token lacks the scope {scope}"),
                            None => "the token lacks a required scope or permission".into(),
                        }),
                    ),
                    "ratelimited" => (
                        ErrorKind::Unavailable,
                        Some("still rate limited; try again later".to_string()),
                    ),
                    "channel_not_found" | "thread_not_found" | "user_not_found" => {
                        (ErrorKind::NotFound, None)
                    }
                    "invalid_cursor" | "invalid_arguments" | "invalid_limit"
                    | "invalid_ts_oldest" | "invalid_ts_latest" => (ErrorKind::InvalidInput, None),
                    _ => (ErrorKind::Backend, None),
                };
                let message = match why {
                    Some(why) => format!("Slack API {method} failed: {code}: {why}"),
                    None => format!("Slack API {method} failed: {code}"),
                };
                Error::new(kind, message)
                    .with_context("method", method)
                    .with_context(SLACK_ERROR, &code)
                    .with_backend("slack")
            }
            CallError::Other(e) => e.with_context("method", method),
        }
    }
}

/// Whether `e` is a failure no other conversation will escape (a rejected token, a missing
/// permission, the API or the store out of reach): stop the run instead of going on.
fn stops_the_run(e: &Error) -> bool {
    token_refused(e) || matches!(e.kind(), ErrorKind::Conflict | ErrorKind::Unavailable)
}

/// Whether Slack refused the token or its permissions.
fn token_refused(e: &Error) -> bool {
    e.context(SLACK_ERROR)
        .is_some_and(|code| TOKEN_REJECTED.contains(&code) || TOKEN_NOT_PERMITTED.contains(&code))
}

/// `e`'s message followed by its causes, which reqwest's `Display` leaves out ("error sending
/// request" says nothing of a refused connection or a failed TLS handshake).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        // hyper and io errors sometimes repeat their source's text as their own
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

struct Progressing {
    start: Instant,
    calls: u64,
}

impl Backfill {
    /// A backfill of `workspace` with a bot `token`.
    ///
    /// # Errors
    /// `InvalidInput` if the token is empty or the HTTP client cannot be built.
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        workspace: WorkspaceId,
        token: SecretString,
        options: BackfillOptions,
    ) -> Result<Self> {
        if token.is_empty() {
            return Err(Error::invalid_input("the Slack token is empty"));
        }
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .build()
            .map_err(|e| Error::invalid_input(format!("cannot build the HTTP client: {e}")))?;
        let limiter = Arc::new(RateLimiter::new(options.rate_scale));
        Ok(Backfill {
            meta,
            workspace,
            token,
            options,
            http,
            progress: Arc::new(NoProgress),
            limiter,
        })
    }

    /// Reports progress (stage `ApiPages`, `Messages`) to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Fetches users, conversations and every conversation's history (and threads). Per
    /// conversation it continues where the last run stopped (its cursor in `sync_status`), and a
    /// conversation synced to the end fetches only messages newer than its high-water mark.
    ///
    /// A conversation that fails (not a member, not found…) is marked `failed` and the run goes
    /// on; an authentication or permission failure stops the run. Nothing, not even the
    /// workspace, is written before Slack has answered the first call.
    ///
    /// # Errors
    /// `InvalidInput` when Slack rejects the token or it lacks a scope; `Unavailable` when Slack
    /// cannot be reached or keeps rate limiting; the store's error.
    pub async fn run(&self) -> Result<BackfillReport> {
        let span = info_span!("backfill", workspace = %self.workspace);
        self.run_inner().instrument(span).await
    }

    async fn run_inner(&self) -> Result<BackfillReport> {
        let mut report = BackfillReport::default();
        let mut prog = Progressing {
            start: Instant::now(),
            calls: 0,
        };
        let limit = self.options.page_size.max(1).to_string();

        // users
        let mut names = NameBook::default();
        let mut cursor: Option<String> = None;
        loop {
            let mut params = vec![("limit", limit.clone())];
            if let Some(c) = &cursor {
                params.push(("cursor", c.clone()));
            }
            let page = self
                .call("users.list", &params, &mut report, &mut prog)
                .await?;
            if cursor.is_none() {
                // Registered only once the token has proved good, so a bad token or an
                // unreachable API leaves no empty workspace behind; a rerun finds it and
                // continues.
                self.ensure_workspace().await?;
            }
            let mut batch = WriteBatch::new(self.workspace.clone());
            for m in page
                .get("members")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match parse_user(m) {
                    Ok(u) => {
                        names
                            .users
                            .insert(u.id.to_string(), u.best_name().to_string());
                        batch.users.push(u);
                    }
                    Err(e) => report.skipped.push(format!("users.list: {e}")),
                }
            }
            report.users += batch.users.len() as u64;
            self.apply(batch, &mut report).await?;
            cursor = next_cursor(&page);
            if cursor.is_none() {
                break;
            }
        }

        // conversations
        let mut channels: Vec<(ChannelId, ChannelKind)> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params = vec![
                ("limit", limit.clone()),
                ("types", self.options.channel_types.clone()),
                ("exclude_archived", "false".to_string()),
            ];
            if let Some(c) = &cursor {
                params.push(("cursor", c.clone()));
            }
            let page = self
                .call("conversations.list", &params, &mut report, &mut prog)
                .await?;
            let mut batch = WriteBatch::new(self.workspace.clone());
            for c in page
                .get("channels")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match parse_channel(c, ChannelKind::Public) {
                    Ok((ch, members)) => {
                        names.add_channel(&ch);
                        channels.push((ch.id.clone(), ch.kind));
                        if let Some(users) = members {
                            batch.memberships.push(MembershipChange::Replace {
                                channel: ch.id.clone(),
                                users,
                            });
                        }
                        batch.channels.push(ch);
                    }
                    Err(e) => report.skipped.push(format!("conversations.list: {e}")),
                }
            }
            report.channels += batch.channels.len() as u64;
            self.apply(batch, &mut report).await?;
            cursor = next_cursor(&page);
            if cursor.is_none() {
                break;
            }
        }

        let statuses: HashMap<ChannelId, SyncStatus> = self
            .meta
            .list_sync_status(&self.workspace)
            .await?
            .into_iter()
            .filter(|s| s.source == WEB_API_SOURCE)
            .map(|s| (s.channel.clone(), s))
            .collect();
        let mut members_readable = true;
        let named = |wanted: &str, id: &ChannelId| {
            let wanted = wanted.trim_start_matches('#');
            wanted == id.as_str()
                || names.channels.get(id.as_str()).map(String::as_str) == Some(wanted)
        };
        if let Some(only) = &self.options.only_channels {
            for wanted in only {
                if !channels.iter().any(|(id, _)| named(wanted, id)) {
                    report.missing.push(format!(
                        "conversation {wanted} was asked for but the token cannot see it (not listed by conversations.list)"
                    ));
                }
            }
        }
        let channels: Vec<(ChannelId, ChannelKind)> = channels
            .into_iter()
            .filter(|(id, _)| {
                self.options
                    .only_channels
                    .as_ref()
                    .is_none_or(|only| only.iter().any(|w| named(w, id)))
                    && !self.options.exclude_channels.iter().any(|w| named(w, id))
            })
            .collect();
        let total = channels.len() as u64;
        for (done, (channel, kind)) in channels.into_iter().enumerate() {
            self.progress.update(&ProgressUpdate {
                stage: Stage::Channels,
                done: done as u64,
                total: Some(total),
                elapsed: prog.start.elapsed(),
                detail: Some(channel.to_string()),
            });
            if kind != ChannelKind::Public && members_readable {
                // Slack's conversation objects carry no member list: ask for it, every run, so
                // that viewers see exactly the private conversations they are in.
                match self.refresh_members(&channel, &mut report, &mut prog).await {
                    Ok(()) => report.memberships_refreshed += 1,
                    Err(e) if token_refused(&e) => {
                        // The same refusal would repeat for every conversation: say it once.
                        members_readable = false;
                        report.skipped.push(format!(
                            "memberships of private conversations not refreshed (viewers will not see them until they are): {e}"
                        ));
                    }
                    Err(e) if stops_the_run(&e) => return Err(e),
                    Err(e) => report
                        .skipped
                        .push(format!("{channel}: members not refreshed: {e}")),
                }
            }
            let prev = statuses.get(&channel).cloned();
            let span = info_span!("channel", channel = %channel);
            let r = self
                .sync_channel(&channel, kind, prev.clone(), &names, &mut report, &mut prog)
                .instrument(span)
                .await;
            match r {
                Ok(()) => report.channels_complete += 1,
                Err((e, status)) => {
                    warn!(channel = %channel, error = %e, "channel backfill failed");
                    let mut failed = status.or(prev).unwrap_or_else(|| SyncStatus {
                        channel: channel.clone(),
                        source: WEB_API_SOURCE.into(),
                        cursor: None,
                        oldest_ts: None,
                        latest_ts: None,
                        state: SyncState::Failed,
                        updated_at: None,
                        error: None,
                    });
                    if failed.state == SyncState::Complete {
                        // Nothing of this run was committed: keep it complete, note the error.
                        failed.error = Some(e.to_string());
                    } else {
                        failed.state = SyncState::Failed;
                        failed.error = Some(e.to_string());
                    }
                    failed.updated_at = Some(chrono::Utc::now());
                    let mut batch = WriteBatch::new(self.workspace.clone());
                    batch.sync_status.push(failed);
                    self.apply(batch, &mut report).await?;
                    report
                        .channels_failed
                        .push((channel.clone(), e.to_string()));
                    if stops_the_run(&e) {
                        return Err(e);
                    }
                }
            }
        }
        self.progress.update(&ProgressUpdate {
            stage: Stage::Channels,
            done: total,
            total: Some(total),
            elapsed: prog.start.elapsed(),
            detail: None,
        });
        if self.options.only_channels.is_some() {
            // Asked for by name: one that could not be fetched is missing, not just failed.
            for (c, e) in &report.channels_failed {
                report.missing.push(format!(
                    "conversation {c} was asked for but could not be fetched: {e}"
                ));
            }
        }
        info!(
            messages = report.messages,
            calls = report.calls,
            rate_limited = report.rate_limited,
            failed = report.channels_failed.len(),
            "backfill done"
        );
        Ok(report)
    }

    /// Syncs one conversation. On error returns the last committed status, if any.
    ///
    /// A conversation synced to the end before re-reads its trailing window (see
    /// [`BackfillOptions::window`]): what is new, edited or reacted to is written through the
    /// normal write path, threads whose `latest_reply` moved are re-read, and messages stored
    /// in the window that Slack no longer returns are deleted (tombstoned).
    async fn sync_channel(
        &self,
        channel: &ChannelId,
        kind: ChannelKind,
        prev: Option<SyncStatus>,
        names: &NameBook,
        report: &mut BackfillReport,
        prog: &mut Progressing,
    ) -> std::result::Result<(), (Error, Option<SyncStatus>)> {
        let since = self.options.since.clone();
        // Where to start: the cursor carries `"{oldest bound}|{slack cursor}"`.
        let (bound, mut cursor, mut latest, mut oldest, window) = match &prev {
            Some(s) if s.state != SyncState::Complete => {
                let (b, c) = s
                    .cursor
                    .as_deref()
                    .and_then(|c| c.split_once('|'))
                    .unwrap_or(("", ""));
                (
                    Ts::new(b).ok(),
                    Some(c.to_string()).filter(|c| !c.is_empty()),
                    s.latest_ts.clone(),
                    s.oldest_ts.clone(),
                    false,
                )
            }
            Some(s) => {
                let start = self.window_start(s.latest_ts.as_ref());
                (
                    start.max(since),
                    None,
                    s.latest_ts.clone(),
                    s.oldest_ts.clone(),
                    !self.options.window.is_zero(),
                )
            }
            None => (since, None, None, None, false),
        };
        let ctx = ChannelContext {
            workspace: self.workspace.clone(),
            channel: channel.clone(),
            kind,
        };
        // What the window held when this run started: to tell new from changed from gone.
        let stored: HashMap<Ts, MessageDetails> = match (&bound, window) {
            (Some(start), true) => self
                .stored_after(channel, start, None)
                .await
                .map_err(|e| (e, None))?,
            _ => HashMap::new(),
        };
        let mut seen: HashSet<Ts> = HashSet::new();
        let mut committed: Option<SyncStatus> = None;
        loop {
            let limit = self.page_size("conversations.history");
            let mut params = vec![
                ("channel", channel.to_string()),
                ("limit", limit.to_string()),
            ];
            if let Some(b) = &bound {
                params.push(("oldest", b.to_string()));
            }
            if let Some(c) = &cursor {
                params.push(("cursor", c.clone()));
            }
            let page = self
                .call("conversations.history", &params, report, prog)
                .await
                .map_err(|e| (e, committed.clone()))?;
            self.detect_reduced_limits(&page, limit, report);
            let mut batch = WriteBatch::new(self.workspace.clone());
            let mut page_messages = 0u64;
            let mut page_replies = 0u64;
            for m in page
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(ts) = m
                    .get("ts")
                    .and_then(Value::as_str)
                    .and_then(|t| Ts::new(t).ok())
                {
                    seen.insert(ts);
                }
                let Some(record) = self.add(&ctx, m, names, &mut batch, report) else {
                    continue;
                };
                let ts = record.meta.key.ts.clone();
                page_messages += 1;
                let before = stored.get(&ts);
                if window {
                    report.late.count(before, &record);
                }
                if latest.as_ref().is_none_or(|l| &ts > l) {
                    latest = Some(ts.clone());
                }
                if oldest.as_ref().is_none_or(|o| &ts < o) {
                    oldest = Some(ts.clone());
                }
                let parent = record.meta.reply_count > 0 && !record.meta.is_reply();
                // A thread is read again only when its latest reply moved since it was stored.
                let moved = before.is_none_or(|b| {
                    b.meta.latest_reply != record.meta.latest_reply
                        || b.meta.reply_count != record.meta.reply_count
                });
                if parent && moved && self.options.include_threads {
                    let replies = self
                        .sync_thread(&ctx, &ts, names, &mut batch, report, prog, window)
                        .await
                        .map_err(|e| (e, committed.clone()))?;
                    page_messages += replies;
                    page_replies += replies;
                }
            }
            cursor = next_cursor(&page);
            if cursor.is_none() && window {
                // The whole window was read in this run: what is stored there and was not
                // returned has been deleted in Slack (replies are not in the history, except
                // those also sent to the channel).
                for (ts, d) in &stored {
                    let in_history =
                        !d.meta.is_reply() || d.meta.subtype.as_deref() == Some("thread_broadcast");
                    if in_history && !seen.contains(ts) {
                        batch.message_deletes.push(d.meta.key.clone());
                        report.late.deleted += 1;
                    }
                }
            }
            let status = SyncStatus {
                channel: channel.clone(),
                source: WEB_API_SOURCE.into(),
                cursor: cursor.as_ref().map(|c| {
                    format!(
                        "{}|{c}",
                        bound.as_ref().map(Ts::to_string).unwrap_or_default()
                    )
                }),
                oldest_ts: oldest.clone(),
                latest_ts: latest.clone(),
                state: if cursor.is_some() {
                    SyncState::InProgress
                } else {
                    SyncState::Complete
                },
                updated_at: Some(chrono::Utc::now()),
                error: None,
            };
            batch.sync_status.push(status.clone());
            self.apply(batch, report)
                .await
                .map_err(|e| (e, committed.clone()))?;
            committed = Some(status);
            report.messages += page_messages;
            report.replies += page_replies;
            self.progress.update(&ProgressUpdate {
                stage: Stage::Messages,
                done: report.messages,
                total: None,
                elapsed: prog.start.elapsed(),
                detail: Some(channel.to_string()),
            });
            if cursor.is_none() {
                break;
            }
        }
        if let (true, Some(start)) = (window, &bound) {
            self.recheck_old_threads(&ctx, start, &seen, names, report, prog)
                .await
                .map_err(|e| (e, committed.clone()))?;
        }
        Ok(())
    }

    /// Checks the threads of a conversation that started before `window_start` (so the history
    /// just read did not return their parents) and had a reply stored within
    /// [`BackfillOptions::thread_horizon`]: reads each parent with `conversations.history`
    /// (`latest` = `oldest` = its ts, inclusive), writes it, and re-reads the thread when its
    /// `latest_reply` or `reply_count` moved.
    async fn recheck_old_threads(
        &self,
        ctx: &ChannelContext,
        window_start: &Ts,
        handled: &HashSet<Ts>,
        names: &NameBook,
        report: &mut BackfillReport,
        prog: &mut Progressing,
    ) -> Result<()> {
        if self.options.thread_horizon.is_zero() || !self.options.include_threads {
            return Ok(());
        }
        let horizon = chrono::Duration::from_std(self.options.thread_horizon)
            .unwrap_or(chrono::Duration::MAX);
        let since = chrono::Utc::now()
            .checked_sub_signed(horizon)
            .map(Ts::from_datetime)
            .unwrap_or_else(|| Ts::from_micros(0));
        let filter = MessageFilter {
            channels: Some(vec![ctx.channel.clone()]),
            time: TimeRange {
                start: Some(since.to_datetime()),
                end: None,
            },
            thread: Some(ThreadFilter::Replies),
            ..Default::default()
        };
        let keys = self
            .meta
            .filter_messages(
                &self.workspace,
                &filter,
                &PageRequest::first(STORED_WINDOW_MAX),
            )
            .await?;
        let mut parents: Vec<Ts> = self
            .meta
            .get_messages(&self.workspace, &keys)
            .await?
            .into_iter()
            .filter_map(|d| d.meta.thread_ts)
            .filter(|t| t < window_start && !handled.contains(t))
            .collect();
        parents.sort();
        parents.dedup();
        if parents.is_empty() {
            return Ok(());
        }
        let parent_keys: Vec<chatvault_core::MessageKey> = parents
            .iter()
            .map(|t| {
                chatvault_core::MessageKey::new(
                    self.workspace.clone(),
                    ctx.channel.clone(),
                    t.clone(),
                )
            })
            .collect();
        let stored: HashMap<Ts, MessageDetails> = self
            .meta
            .get_messages(&self.workspace, &parent_keys)
            .await?
            .into_iter()
            .map(|d| (d.meta.key.ts.clone(), d))
            .collect();
        for parent in parents {
            let params = [
                ("channel", ctx.channel.to_string()),
                ("latest", parent.to_string()),
                ("oldest", parent.to_string()),
                ("inclusive", "true".to_string()),
                ("limit", "1".to_string()),
            ];
            let page = self
                .call("conversations.history", &params, report, prog)
                .await?;
            let Some(m) = page
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|m| m.get("ts").and_then(Value::as_str) == Some(parent.as_str()))
            else {
                // Gone: a deleted parent with replies stays as a tombstone in Slack, so this
                // is rare; its replies are left as stored.
                continue;
            };
            let mut batch = WriteBatch::new(self.workspace.clone());
            let Some(record) = self.add(ctx, m, names, &mut batch, report) else {
                continue;
            };
            let before = stored.get(&parent);
            report.late.count(before, &record);
            report.messages += 1;
            let moved = before.is_none_or(|b| {
                b.meta.latest_reply != record.meta.latest_reply
                    || b.meta.reply_count != record.meta.reply_count
            });
            if moved {
                let replies = self
                    .sync_thread(ctx, &parent, names, &mut batch, report, prog, true)
                    .await?;
                report.messages += replies;
                report.replies += replies;
            }
            self.apply(batch, report).await?;
        }
        Ok(())
    }

    /// The page size to ask `method` for: the option, or what the reduced limits allow.
    fn page_size(&self, method: &str) -> u32 {
        let size = self.options.page_size.max(1);
        if has_reduced_limit(method) && self.limiter.reduced() {
            size.min(REDUCED_PAGE_SIZE)
        } else {
            size
        }
    }

    /// Slack serves apps that are neither Marketplace nor internal apps at most
    /// [`REDUCED_PAGE_SIZE`] messages a page whatever they ask: a short page that says there is
    /// more reveals the reduced limits. Pace to them from then on, and say so.
    fn detect_reduced_limits(&self, page: &Value, asked: u32, report: &mut BackfillReport) {
        let got = page
            .get("messages")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let more = page.get("has_more").and_then(Value::as_bool) == Some(true)
            || next_cursor(page).is_some();
        if asked > REDUCED_PAGE_SIZE
            && more
            && got <= REDUCED_PAGE_SIZE as usize
            && self.limiter.set_reduced()
        {
            let notice = format!(
                "Slack applies its reduced rate limits to this app (it is neither a Marketplace app nor an internal app of the workspace): conversations.history and conversations.replies allow {REDUCED_PER_MINUTE} request per minute and {REDUCED_PAGE_SIZE} messages per page. The backfill paces itself to that and goes on, but a large history will take hours to days (about one minute per {REDUCED_PAGE_SIZE} messages); a rerun resumes where it stopped. To lift the limit, install chatvault as an internal app created in your own workspace, or import a Slack export (chatvault ingest-export) and use the backfill only to keep current."
            );
            warn!("{notice}");
            report.notices.push(notice);
        }
    }

    /// Where an incremental run starts reading: the trailing window before now, or the newest
    /// stored message if that is older.
    fn window_start(&self, latest: Option<&Ts>) -> Option<Ts> {
        if self.options.window.is_zero() {
            return latest.cloned();
        }
        let window =
            chrono::Duration::from_std(self.options.window).unwrap_or(chrono::Duration::MAX);
        let start = chrono::Utc::now()
            .checked_sub_signed(window)
            .map(Ts::from_datetime)
            .unwrap_or_else(|| Ts::from_micros(0));
        Some(match latest {
            Some(l) if l < &start => l.clone(),
            _ => start,
        })
    }

    /// The stored messages of `channel` newer than `after` (of one thread when given).
    async fn stored_after(
        &self,
        channel: &ChannelId,
        after: &Ts,
        thread: Option<&Ts>,
    ) -> Result<HashMap<Ts, MessageDetails>> {
        let filter = MessageFilter {
            channels: Some(vec![channel.clone()]),
            time: TimeRange {
                start: Some(after.to_datetime()),
                end: None,
            },
            thread: thread.map(|t| ThreadFilter::Thread(t.clone())),
            ..Default::default()
        };
        let keys = self
            .meta
            .filter_messages(
                &self.workspace,
                &filter,
                &PageRequest::first(STORED_WINDOW_MAX),
            )
            .await?;
        Ok(self
            .meta
            .get_messages(&self.workspace, &keys)
            .await?
            .into_iter()
            .filter(|d| &d.meta.key.ts > after)
            .map(|d| (d.meta.key.ts.clone(), d))
            .collect())
    }

    /// Reads every reply of the thread `parent` into `batch`; with `window`, counts what changed
    /// and deletes stored replies Slack no longer returns. Returns the replies written.
    #[allow(clippy::too_many_arguments)]
    async fn sync_thread(
        &self,
        ctx: &ChannelContext,
        parent: &Ts,
        names: &NameBook,
        batch: &mut WriteBatch,
        report: &mut BackfillReport,
        prog: &mut Progressing,
        window: bool,
    ) -> Result<u64> {
        let stored = if window {
            report.late.threads_reread += 1;
            self.stored_after(&ctx.channel, &Ts::from_micros(0), Some(parent))
                .await?
        } else {
            HashMap::new()
        };
        let mut seen: HashSet<Ts> = HashSet::new();
        let mut written = 0u64;
        let mut rcursor: Option<String> = None;
        loop {
            let limit = self.page_size("conversations.replies");
            let mut params = vec![
                ("channel", ctx.channel.to_string()),
                ("ts", parent.to_string()),
                ("limit", limit.to_string()),
            ];
            if let Some(c) = &rcursor {
                params.push(("cursor", c.clone()));
            }
            let rpage = self
                .call("conversations.replies", &params, report, prog)
                .await?;
            for r in rpage
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if r.get("ts").and_then(Value::as_str) == Some(parent.as_str()) {
                    continue; // the parent, already in history
                }
                if let Some(ts) = r
                    .get("ts")
                    .and_then(Value::as_str)
                    .and_then(|t| Ts::new(t).ok())
                {
                    seen.insert(ts);
                }
                if let Some(record) = self.add(ctx, r, names, batch, report) {
                    if window {
                        report.late.count(stored.get(&record.meta.key.ts), &record);
                    }
                    written += 1;
                }
            }
            rcursor = next_cursor(&rpage);
            if rcursor.is_none() {
                break;
            }
        }
        for (ts, d) in &stored {
            if ts != parent && !seen.contains(ts) {
                batch.message_deletes.push(d.meta.key.clone());
                report.late.deleted += 1;
            }
        }
        Ok(written)
    }

    /// Replaces the members of one conversation with what `conversations.members` lists (paged).
    async fn refresh_members(
        &self,
        channel: &ChannelId,
        report: &mut BackfillReport,
        prog: &mut Progressing,
    ) -> Result<()> {
        let limit = self.options.page_size.max(1).to_string();
        let mut users = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params = vec![("channel", channel.to_string()), ("limit", limit.clone())];
            if let Some(c) = &cursor {
                params.push(("cursor", c.clone()));
            }
            let page = self
                .call("conversations.members", &params, report, prog)
                .await?;
            for m in page
                .get("members")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match m.as_str().map(UserId::new) {
                    Some(Ok(u)) => users.push(u),
                    _ => report
                        .skipped
                        .push(format!("{channel}: conversations.members: bad member {m}")),
                }
            }
            cursor = next_cursor(&page);
            if cursor.is_none() {
                break;
            }
        }
        let mut batch = WriteBatch::new(self.workspace.clone());
        batch.memberships.push(MembershipChange::Replace {
            channel: channel.clone(),
            users,
        });
        self.apply(batch, report).await
    }

    /// Processes one message into the batch; returns what was added.
    fn add(
        &self,
        ctx: &ChannelContext,
        m: &Value,
        names: &NameBook,
        batch: &mut WriteBatch,
        report: &mut BackfillReport,
    ) -> Option<MessageRecord> {
        match process_message(ctx, m, names, self.options.unknown_subtypes) {
            Ok(Processed::Message(p)) => {
                let record = p.record.clone();
                batch.messages.push(p.record);
                batch.thread_participants.extend(p.participants);
                Some(record)
            }
            Ok(Processed::Skipped { reason, .. }) => {
                report.skipped.push(format!("{}: {reason}", ctx.channel));
                None
            }
            Err(e) => {
                let ts = m.get("ts").and_then(Value::as_str).unwrap_or("?");
                report
                    .skipped
                    .push(format!("{} message ts {ts}: {e}", ctx.channel));
                None
            }
        }
    }

    async fn ensure_workspace(&self) -> Result<()> {
        if self.meta.get_workspace(&self.workspace).await?.is_none() {
            self.meta
                .upsert_workspace(&chatvault_core::Workspace::new(
                    self.workspace.clone(),
                    self.workspace.as_str(),
                ))
                .await?;
        }
        Ok(())
    }

    async fn apply(&self, batch: WriteBatch, report: &mut BackfillReport) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let r = apply_with_retry(self.meta.as_ref(), batch, 5).await?;
        report.outbox_enqueued += r.outbox_enqueued;
        Ok(())
    }

    async fn call(
        &self,
        method: &str,
        params: &[(&str, String)],
        report: &mut BackfillReport,
        prog: &mut Progressing,
    ) -> Result<Value> {
        let r = self.call_inner(method, params, report).await;
        match r {
            Ok(v) => {
                report.calls += 1;
                prog.calls += 1;
                self.progress.update(&ProgressUpdate {
                    stage: Stage::ApiPages,
                    done: prog.calls,
                    total: None,
                    elapsed: prog.start.elapsed(),
                    detail: Some(method.to_string()),
                });
                Ok(v)
            }
            Err(e) => Err(e.into_error(method)),
        }
    }

    async fn call_inner(
        &self,
        method: &str,
        params: &[(&str, String)],
        report: &mut BackfillReport,
    ) -> std::result::Result<Value, CallError> {
        let url = format!("{}/{method}", self.options.api_url.trim_end_matches('/'));
        let mut failures = 0u32;
        let mut waits = 0u32;
        loop {
            self.limiter.acquire(method).await;
            let sent = self
                .http
                .post(&url)
                .bearer_auth(self.token.expose())
                .form(params)
                .send()
                .await;
            let retry_in = match sent {
                Err(e) => {
                    // reqwest errors carry the URL, never the header with the token
                    failures += 1;
                    if failures > self.options.max_retries {
                        // The token travels in a header, never in the URL or the error.
                        return Err(CallError::Other(
                            Error::unavailable(format!(
                                "{method}: {}",
                                with_causes(&e.without_url())
                            ))
                            .with_backend("slack"),
                        ));
                    }
                    report.retries += 1;
                    backoff(failures)
                }
                Ok(resp) if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                    waits += 1;
                    if waits > self.options.max_rate_limit_waits {
                        return Err(CallError::Other(
                            Error::unavailable(format!(
                                "{method}: still rate limited after {} waits",
                                waits - 1
                            ))
                            .with_backend("slack"),
                        ));
                    }
                    report.rate_limited += 1;
                    let secs = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|h| h.to_str().ok())
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .unwrap_or(1);
                    let wait = Duration::from_secs(secs).min(self.options.max_retry_after);
                    // Every conversation waits, not just this call.
                    self.limiter.blocked_for(method, wait);
                    wait
                }
                Ok(resp) if resp.status().is_server_error() => {
                    failures += 1;
                    if failures > self.options.max_retries {
                        return Err(CallError::Other(
                            Error::unavailable(format!("{method}: HTTP {}", resp.status()))
                                .with_backend("slack"),
                        ));
                    }
                    report.retries += 1;
                    backoff(failures)
                }
                Ok(resp) if !resp.status().is_success() => {
                    return Err(CallError::Other(
                        Error::backend_error(format!("{method}: HTTP {}", resp.status()))
                            .with_backend("slack"),
                    ))
                }
                Ok(resp) => {
                    let body = resp.bytes().await.map_err(|e| {
                        CallError::Other(
                            Error::unavailable(format!(
                                "{method}: reading the response failed: {}",
                                with_causes(&e.without_url())
                            ))
                            .with_backend("slack"),
                        )
                    })?;
                    let v: Value = serde_json::from_slice(&body).map_err(|e| {
                        CallError::Other(
                            Error::backend_error(format!("{method}: response is not JSON: {e}"))
                                .with_backend("slack"),
                        )
                    })?;
                    if v.get("ok").and_then(Value::as_bool) == Some(true) {
                        return Ok(v);
                    }
                    let code = v
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown_error")
                        .to_string();
                    let needed = v.get("needed").and_then(Value::as_str).map(str::to_string);
                    if code == "ratelimited" {
                        waits += 1;
                        report.rate_limited += 1;
                        if waits > self.options.max_rate_limit_waits {
                            return Err(CallError::Api { code, needed });
                        }
                        Duration::from_secs(1)
                    } else {
                        return Err(CallError::Api { code, needed });
                    }
                }
            };
            tokio::time::sleep(retry_in).await;
        }
    }
}

/// The wait after `failures` transient failures in a row: 100 ms doubling, at most 30 s.
fn backoff(failures: u32) -> Duration {
    chatvault_core::Backoff::exponential(Duration::from_millis(100), Duration::from_secs(30))
        .delay(failures)
}

fn next_cursor(page: &Value) -> Option<String> {
    page.get("response_metadata")
        .and_then(|m| m.get("next_cursor"))
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}
