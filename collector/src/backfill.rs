//! Web API backfill: `users.list`, `conversations.list`, `conversations.history`,
//! `conversations.replies`, with pagination, `429 Retry-After`, and a resumable per-channel cursor
//! in `sync_status` written in the same transaction as the messages it covers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::{info, info_span, warn, Instrument};

use chatvault_core::{
    ChannelId, ChannelKind, Error, ErrorKind, MembershipChange, MetadataStore, Result,
    SecretString, SyncState, SyncStatus, Ts, WorkspaceId, WriteBatch,
};

use crate::import::{parse_channel, parse_user};
use crate::markup::NameBook;
use crate::processor::{process_message, ChannelContext, Processed, UnknownSubtype};
use crate::progress::{NoProgress, Progress, ProgressUpdate, Stage};
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
    /// Only these conversations (`None`: every one listed).
    pub only_channels: Option<Vec<ChannelId>>,
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
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            api_url: "https://slack.com/api".into(),
            page_size: 200,
            channel_types: "public_channel,private_channel,mpim,im".into(),
            only_channels: None,
            include_threads: true,
            max_retries: 5,
            max_rate_limit_waits: 20,
            max_retry_after: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            unknown_subtypes: UnknownSubtype::Skip,
        }
    }
}

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
    /// Conversations synced to the end this run.
    pub channels_complete: u64,
    /// Conversations that failed (id, error); the next run continues them from their cursor.
    pub channels_failed: Vec<(ChannelId, String)>,
    /// Outbox entries enqueued.
    pub outbox_enqueued: u64,
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
    let token_refused = e
        .context(SLACK_ERROR)
        .is_some_and(|code| TOKEN_REJECTED.contains(&code) || TOKEN_NOT_PERMITTED.contains(&code));
    token_refused || matches!(e.kind(), ErrorKind::Conflict | ErrorKind::Unavailable)
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
        Ok(Backfill {
            meta,
            workspace,
            token,
            options,
            http,
            progress: Arc::new(NoProgress),
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
                        names.channels.insert(ch.id.to_string(), ch.name.clone());
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
        for (channel, kind) in channels {
            if let Some(only) = &self.options.only_channels {
                if !only.contains(&channel) {
                    continue;
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
    async fn sync_channel(
        &self,
        channel: &ChannelId,
        kind: ChannelKind,
        prev: Option<SyncStatus>,
        names: &NameBook,
        report: &mut BackfillReport,
        prog: &mut Progressing,
    ) -> std::result::Result<(), (Error, Option<SyncStatus>)> {
        // Where to start: the cursor carries `"{oldest bound}|{slack cursor}"`.
        let (bound, mut cursor, mut latest, mut oldest) = match &prev {
            Some(s) if s.state != SyncState::Complete => {
                let (b, c) = s
                    .cursor
                    .as_deref()
                    .and_then(|c| c.split_once('|'))
                    .unwrap_or(("", ""));
                (
                    Some(b.to_string()).filter(|b| !b.is_empty()),
                    Some(c.to_string()).filter(|c| !c.is_empty()),
                    s.latest_ts.clone(),
                    s.oldest_ts.clone(),
                )
            }
            Some(s) => (
                s.latest_ts.as_ref().map(|t| t.to_string()),
                None,
                s.latest_ts.clone(),
                s.oldest_ts.clone(),
            ),
            None => (None, None, None, None),
        };
        let ctx = ChannelContext {
            workspace: self.workspace.clone(),
            channel: channel.clone(),
            kind,
        };
        let mut committed: Option<SyncStatus> = None;
        let limit = self.options.page_size.max(1).to_string();
        loop {
            let mut params = vec![("channel", channel.to_string()), ("limit", limit.clone())];
            if let Some(b) = &bound {
                params.push(("oldest", b.clone()));
            }
            if let Some(c) = &cursor {
                params.push(("cursor", c.clone()));
            }
            let page = self
                .call("conversations.history", &params, report, prog)
                .await
                .map_err(|e| (e, committed.clone()))?;
            let mut batch = WriteBatch::new(self.workspace.clone());
            let mut page_messages = 0u64;
            let mut page_replies = 0u64;
            for m in page
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some((ts, thread)) = self.add(&ctx, m, names, &mut batch, report) else {
                    continue;
                };
                page_messages += 1;
                if latest.as_ref().is_none_or(|l| &ts > l) {
                    latest = Some(ts.clone());
                }
                if oldest.as_ref().is_none_or(|o| &ts < o) {
                    oldest = Some(ts.clone());
                }
                if thread && self.options.include_threads {
                    let mut rcursor: Option<String> = None;
                    loop {
                        let mut params = vec![
                            ("channel", channel.to_string()),
                            ("ts", ts.to_string()),
                            ("limit", limit.clone()),
                        ];
                        if let Some(c) = &rcursor {
                            params.push(("cursor", c.clone()));
                        }
                        let rpage = self
                            .call("conversations.replies", &params, report, prog)
                            .await
                            .map_err(|e| (e, committed.clone()))?;
                        for r in rpage
                            .get("messages")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            if r.get("ts").and_then(Value::as_str) == Some(ts.as_str()) {
                                continue; // the parent, already in history
                            }
                            if self.add(&ctx, r, names, &mut batch, report).is_some() {
                                page_messages += 1;
                                page_replies += 1;
                            }
                        }
                        rcursor = next_cursor(&rpage);
                        if rcursor.is_none() {
                            break;
                        }
                    }
                }
            }
            cursor = next_cursor(&page);
            let status = SyncStatus {
                channel: channel.clone(),
                source: WEB_API_SOURCE.into(),
                cursor: cursor
                    .as_ref()
                    .map(|c| format!("{}|{c}", bound.as_deref().unwrap_or(""))),
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
                return Ok(());
            }
        }
    }

    /// Processes one message into the batch: its ts and whether it is a thread parent with replies.
    fn add(
        &self,
        ctx: &ChannelContext,
        m: &Value,
        names: &NameBook,
        batch: &mut WriteBatch,
        report: &mut BackfillReport,
    ) -> Option<(Ts, bool)> {
        match process_message(ctx, m, names, self.options.unknown_subtypes) {
            Ok(Processed::Message(p)) => {
                let ts = p.record.meta.key.ts.clone();
                let parent = p.record.meta.reply_count > 0 && !p.record.meta.is_reply();
                batch.messages.push(p.record);
                batch.thread_participants.extend(p.participants);
                Some((ts, parent))
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
                    Duration::from_secs(secs).min(self.options.max_retry_after)
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

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64 << failures.min(8)).min(Duration::from_secs(30))
}

fn next_cursor(page: &Value) -> Option<String> {
    page.get("response_metadata")
        .and_then(|m| m.get("next_cursor"))
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}
