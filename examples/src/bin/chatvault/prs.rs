//! `chatvault prs`: review requests shared in a range and the attention they got, and
//! unanswered questions.

use chatvault_core::Result;
use chatvault_examples::Access;
use chatvault_query::PrReviewRequest;
use clap::Args;

use crate::cli::{Global, ScopeArgs};
use crate::output::{print_json, print_message};
use crate::stores::{engine, open_workspace, range, resolve_scope};

#[derive(Args, Debug)]
pub(crate) struct PrsArgs {
    /// From (default: all time).
    #[arg(long)]
    since: Option<String>,
    /// Until (default: now).
    #[arg(long)]
    until: Option<String>,
    /// How many of each.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[command(flatten)]
    scope: ScopeArgs,
}

pub(crate) async fn run(g: &Global, args: &PrsArgs) -> Result<()> {
    let PrsArgs {
        since,
        until,
        limit,
        scope,
    } = args;
    let (stores, ws) = open_workspace(g, Access::Read).await?;
    let mut request = PrReviewRequest::new(range(since.as_deref(), until.as_deref())?);
    request.limit = *limit;
    request.scope = resolve_scope(&stores, &ws, scope).await?;
    let report = engine(&stores).pr_reviews(&ws, request).await?;
    if g.json {
        return print_json(&report);
    }
    out!("Review requests ({}):", report.reviews.len());
    for r in &report.reviews {
        out!(
            "  {}  — {} replies, {} reactions, shared {}×",
            r.url,
            r.reply_count,
            r.reaction_count,
            r.shares.len()
        );
        if let Some(first) = r.shares.first() {
            out!(
                "      first shared in {} by {}",
                first.message.channel_label(),
                first.message.author_label()
            );
        }
    }
    out!("\nUnanswered questions ({}):", report.open_questions.len());
    for q in &report.open_questions {
        print_message(&q.message, "  ");
    }
    Ok(())
}
