//! `chatvault search`: hybrid, semantic or lexical search with filters, for people or as JSON.

use chatvault_core::Result;
use chatvault_examples::{resolve_channel, resolve_user, Access};
use chatvault_query::{SearchFilter, SearchMode, SearchRequest, SearchResponse};
use clap::{Args, ValueEnum};

use crate::cli::{Global, ScopeArgs};
use crate::output::{one_line, print_json};
use crate::stores::{engine, open_workspace, range, resolve_scope};

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum ModeArg {
    Hybrid,
    Semantic,
    Lexical,
}

#[derive(Args, Debug)]
pub(crate) struct SearchArgs {
    /// What to look for.
    query: String,
    /// hybrid (default), semantic or lexical.
    #[arg(long, value_enum, default_value_t = ModeArg::Hybrid)]
    mode: ModeArg,
    /// Only in these channels (#name or id); repeatable.
    #[arg(long)]
    channel: Vec<String>,
    /// Only by these people (handle, name or id); repeatable.
    #[arg(long)]
    user: Vec<String>,
    /// Only from this date (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only before this date.
    #[arg(long)]
    until: Option<String>,
    /// How many hits.
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// Continue from a previous page's cursor.
    #[arg(long)]
    cursor: Option<String>,
    #[command(flatten)]
    scope: ScopeArgs,
}

pub(crate) async fn run(g: &Global, args: &SearchArgs) -> Result<()> {
    let SearchArgs {
        query,
        mode,
        channel,
        user,
        since,
        until,
        limit,
        cursor,
        scope,
    } = args;
    let (stores, ws) = open_workspace(g, Access::Read).await?;
    let engine = engine(&stores);
    let mut filter = SearchFilter::default();
    if !channel.is_empty() {
        let mut ids = Vec::new();
        for c in channel {
            ids.push(resolve_channel(stores.meta.as_ref(), &ws, c).await?);
        }
        filter.channels = Some(ids);
    }
    if !user.is_empty() {
        let mut ids = Vec::new();
        for u in user {
            ids.push(resolve_user(stores.meta.as_ref(), &ws, u).await?);
        }
        filter.users = Some(ids);
    }
    filter.time = range(since.as_deref(), until.as_deref())?;
    let request = SearchRequest::new(query.clone())
        .mode(match mode {
            ModeArg::Hybrid => SearchMode::Hybrid,
            ModeArg::Semantic => SearchMode::Semantic,
            ModeArg::Lexical => SearchMode::Lexical,
        })
        .filter(filter)
        .limit(*limit)
        .cursor(cursor.clone())
        .scope(resolve_scope(&stores, &ws, scope).await?);
    let response = engine.search(&ws, request).await?;
    if g.json {
        print_json(&response)
    } else {
        print_search(query, &response);
        Ok(())
    }
}

pub(crate) fn print_search(query: &str, response: &SearchResponse) {
    if let Some(d) = &response.degraded {
        out!("(note: {d})");
    }
    if response.hits.is_empty() {
        out!("no results for {query:?}");
        return;
    }
    for (i, hit) in response.hits.iter().enumerate() {
        let m = &hit.message;
        let mut why = Vec::new();
        if let Some(l) = hit.why.lexical {
            why.push(format!("lexical #{}", l.rank));
        }
        if let Some(s) = hit.why.semantic {
            why.push(format!("semantic #{} ({:.2})", s.rank, s.score));
        }
        out!(
            "{:>2}. {} · {} · {}   [{}]",
            i + 1,
            m.channel_label(),
            m.author_label(),
            m.time.format("%Y-%m-%d %H:%M"),
            why.join(", ")
        );
        out!("    {}", one_line(&hit.snippet.marked, 200));
        let mut extra = Vec::new();
        if m.reaction_count > 0 {
            extra.push(format!("{} reactions", m.reaction_count));
        }
        if m.reply_count > 0 {
            extra.push(format!("{} replies", m.reply_count));
        }
        if let Some(p) = &hit.parent {
            extra.push(format!(
                "in a thread by {}",
                p.user_name.as_deref().unwrap_or("?")
            ));
        }
        if !extra.is_empty() {
            out!("    ({})", extra.join(", "));
        }
        out!("    {}", m.link());
    }
    if let Some(c) = &response.next_cursor {
        out!("(more: --cursor {c})");
    }
}
