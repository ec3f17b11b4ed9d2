//! `chatvault backfill`: history from the Slack Web API.

use std::time::Duration;

use chatvault_collector::{Backfill, BackfillOptions};
use chatvault_core::{Error, Result, SecretString, Ts, WorkspaceId};
use chatvault_examples::parse_time;
use clap::{Args, ValueEnum};

use crate::cli::Global;
use crate::output::{print_json, Bars};
use crate::stores::{open_for_writing, relay_all};

#[derive(Args, Debug)]
pub(crate) struct BackfillArgs {
    /// The environment variable holding the bot token (never pass tokens as arguments).
    #[arg(long, default_value = "SLACK_BOT_TOKEN")]
    token_env: String,
    /// The workspace id to store under (default: --workspace, else "slack").
    #[arg(long = "as")]
    workspace_id: Option<String>,
    /// The Web API base URL (for tests and proxies).
    #[arg(long, default_value = "https://slack.com/api")]
    api_url: String,
    /// Only this conversation (a name or id); repeatable. One the token cannot see makes the
    /// command fail (exit 4) after fetching the others.
    #[arg(long = "channel", value_name = "NAME_OR_ID")]
    channels: Vec<String>,
    /// Not this conversation (a name or id); repeatable.
    #[arg(long = "exclude-channel", value_name = "NAME_OR_ID")]
    exclude_channels: Vec<String>,
    /// Fetch nothing older than this (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Which kinds of conversations: any of public, private, mpim, im (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "public,private,mpim,im")]
    types: Vec<ConversationType>,
    /// Days of history an incremental run reads again for late replies, edits, deletes and
    /// reactions (0: only what is newer than the newest stored message).
    #[arg(long, default_value_t = 7, value_name = "DAYS")]
    window: u64,
    /// Fail (exit 3) if any message was skipped or any conversation failed.
    #[arg(long)]
    strict: bool,
}

pub(crate) async fn run(g: &Global, args: &BackfillArgs) -> Result<()> {
    let BackfillArgs {
        token_env,
        workspace_id,
        api_url,
        channels,
        exclude_channels,
        since,
        types,
        window,
        strict,
    } = args;
    let token = std::env::var(token_env).map_err(|_| {
        Error::invalid_input(format!(
            "the environment variable {token_env} is not set: export your bot token (xoxb-…) in it"
        ))
    })?;
    let ws = WorkspaceId::new(
        workspace_id
            .as_deref()
            .or(g.workspace.as_deref())
            .unwrap_or("slack"),
    )?;
    let stores = open_for_writing(g, &ws).await?;
    let bars = Bars::new(g.json);
    let mut kinds: Vec<&str> = types.iter().map(|t| t.slack_name()).collect();
    kinds.dedup();
    let options = BackfillOptions {
        api_url: api_url.clone(),
        only_channels: (!channels.is_empty()).then(|| channels.clone()),
        exclude_channels: exclude_channels.clone(),
        channel_types: kinds.join(","),
        since: since
            .as_deref()
            .map(parse_time)
            .transpose()?
            .map(Ts::from_datetime),
        window: Duration::from_secs(window.saturating_mul(24 * 3600)),
        ..Default::default()
    };
    let backfill = Backfill::new(
        stores.meta.clone(),
        ws.clone(),
        SecretString::new(token),
        options,
    )?
    .with_progress(bars.clone());
    let report = backfill.run().await?;
    let relay = relay_all(&stores, &ws, &bars).await?;
    bars.finish();
    print_report(g.json, &ws, &report, &relay)?;
    if !report.missing.is_empty() {
        return Err(Error::not_found(format!(
            "{} of what was asked for could not be fetched: {}",
            report.missing.len(),
            report.missing.join("; ")
        )));
    }
    if *strict && (!report.skipped.is_empty() || !report.channels_failed.is_empty()) {
        return Err(Error::invalid_input(format!(
            "{} message(s) skipped and {} conversation(s) failed, and --strict was given",
            report.skipped.len(),
            report.channels_failed.len()
        )));
    }
    Ok(())
}

/// A kind of conversation `backfill --types` takes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConversationType {
    Public,
    Private,
    Mpim,
    Im,
}

impl ConversationType {
    /// Slack's name for it in `conversations.list`'s `types`.
    fn slack_name(self) -> &'static str {
        match self {
            ConversationType::Public => "public_channel",
            ConversationType::Private => "private_channel",
            ConversationType::Mpim => "mpim",
            ConversationType::Im => "im",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ModeArg {
    Hybrid,
    Semantic,
    Lexical,
}

/// The backfill's report, for people or as JSON.
fn print_report(
    json: bool,
    ws: &WorkspaceId,
    report: &chatvault_collector::BackfillReport,
    relay: &chatvault_collector::RelayReport,
) -> Result<()> {
    if json {
        print_json(&serde_json::json!({
            "workspace": ws,
            "users": report.users, "channels": report.channels,
            "messages": report.messages, "replies": report.replies,
            "api_calls": report.calls, "rate_limited": report.rate_limited,
            "channels_complete": report.channels_complete,
            "channels_failed": report.channels_failed.iter().map(|(c, e)| serde_json::json!({"channel": c, "error": e})).collect::<Vec<_>>(),
            "skipped": report.skipped,
            "missing": report.missing,
            "memberships_refreshed": report.memberships_refreshed,
            "late": {
                "new": report.late.new, "edited": report.late.edited,
                "reactions_changed": report.late.reactions_changed,
                "threads_reread": report.late.threads_reread, "deleted": report.late.deleted,
            },
            "embedded": relay.embedded, "delivered": relay.acked, "dead_lettered": relay.dead_lettered,
        }))?;
    } else {
        out!(
            "backfilled {}: {} users, {} channels ({} complete), {} messages ({} replies) in {} API calls ({} rate-limited)",
            ws, report.users, report.channels, report.channels_complete, report.messages,
            report.replies, report.calls, report.rate_limited
        );
        out!(
            "members of {} private conversations refreshed; in the re-read window: {} new, {} edited, {} with changed reactions, {} threads re-read, {} deleted",
            report.memberships_refreshed, report.late.new, report.late.edited,
            report.late.reactions_changed, report.late.threads_reread, report.late.deleted
        );
        for (c, e) in &report.channels_failed {
            out!("  channel {c} failed: {e} (a rerun continues where it stopped)");
        }
        for s in report.skipped.iter().take(20) {
            out!("  skipped: {s}");
        }
        if report.skipped.len() > 20 {
            out!(
                "  … and {} more skipped (--json lists all)",
                report.skipped.len() - 20
            );
        }
        for m in &report.missing {
            out!("missing: {m}");
        }
        out!(
            "content: {} embedded, {} delivered, {} dead-lettered",
            relay.embedded,
            relay.acked,
            relay.dead_lettered
        );
    }
    Ok(())
}
