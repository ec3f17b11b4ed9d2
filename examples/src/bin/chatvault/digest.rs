//! `chatvault digest`: a Markdown digest of a time range.

use chatvault_core::{Result, TimeRange};
use chatvault_examples::{parse_time, Access};
use chatvault_query::DigestRequest;
use clap::Args;

use crate::cli::{Global, ScopeArgs};
use crate::output::print_json;
use crate::stores::{engine, open_workspace, resolve_scope};

#[derive(Args, Debug)]
pub(crate) struct DigestArgs {
    /// From (YYYY-MM-DD or RFC 3339); default: 7 days before --until.
    #[arg(long)]
    since: Option<String>,
    /// Until (default: now).
    #[arg(long)]
    until: Option<String>,
    /// Rows per section.
    #[arg(long, default_value_t = 5)]
    limit: usize,
    #[command(flatten)]
    scope: ScopeArgs,
}

pub(crate) async fn run(g: &Global, args: &DigestArgs) -> Result<()> {
    let DigestArgs {
        since,
        until,
        limit,
        scope,
    } = args;
    let (stores, ws) = open_workspace(g, Access::Read).await?;
    let until_t = match until {
        Some(u) => parse_time(u)?,
        None => chrono::Utc::now(),
    };
    let since_t = match since {
        Some(s) => parse_time(s)?,
        None => until_t - chrono::Duration::days(7),
    };
    let mut request = DigestRequest::new(TimeRange::between(since_t, until_t));
    request.limit = *limit;
    request.scope = resolve_scope(&stores, &ws, scope).await?;
    let digest = engine(&stores).digest(&ws, request).await?;
    if g.json {
        print_json(&digest)
    } else {
        out!("{}", digest.to_markdown());
        Ok(())
    }
}
