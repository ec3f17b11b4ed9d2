//! `chatvault mcp`: the archive served to an AI assistant over MCP on standard input and output.

use chatvault_core::Result;
use chatvault_examples::Access;
use clap::Args;

use crate::cli::{Global, ScopeArgs};
use crate::stores::{engine, open_workspace, resolve_scope};

#[derive(Args, Debug)]
pub(crate) struct McpArgs {
    /// Read as this member (handle, name or id): public channels plus their private ones.
    #[arg(long = "as", value_name = "USER")]
    as_user: Option<String>,
    /// Read every channel, private ones included.
    #[arg(long, conflicts_with = "as_user")]
    admin: bool,
}

pub(crate) async fn run(g: &Global, args: &McpArgs) -> Result<()> {
    let McpArgs { as_user, admin } = args;
    let (stores, ws) = open_workspace(g, Access::Read).await?;
    let scope = ScopeArgs {
        viewer: as_user.clone(),
        admin: *admin,
    };
    let scope = resolve_scope(&stores, &ws, &scope).await?;
    tracing::info!(workspace = %ws, ?scope, "serving MCP on stdio");
    chatvault_server::mcp::serve_stdio(chatvault_server::mcp::ArchiveMcp::new(
        engine(&stores),
        ws,
        scope,
    ))
    .await
}
