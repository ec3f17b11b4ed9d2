//! `chatvault thread`: a message's whole thread.

use chatvault_core::{MessageKey, Result, Ts};
use chatvault_examples::{resolve_channel, Access};
use clap::Args;

use crate::cli::{Global, ScopeArgs};
use crate::output::{print_json, print_message};
use crate::stores::{engine, open_workspace, resolve_scope};

#[derive(Args, Debug)]
pub(crate) struct ThreadArgs {
    /// The channel (#name or id).
    channel: String,
    /// The message's ts (any message of the thread).
    ts: String,
    #[command(flatten)]
    scope: ScopeArgs,
}

pub(crate) async fn run(g: &Global, args: &ThreadArgs) -> Result<()> {
    let ThreadArgs { channel, ts, scope } = args;
    let (stores, ws) = open_workspace(g, Access::Read).await?;
    let channel = resolve_channel(stores.meta.as_ref(), &ws, channel).await?;
    let key = MessageKey::new(ws.clone(), channel, Ts::new(ts.as_str())?);
    let thread = engine(&stores)
        .thread(&key, &resolve_scope(&stores, &ws, scope).await?)
        .await?;
    if g.json {
        print_json(&thread)
    } else {
        for m in &thread.messages {
            print_message(m, "");
        }
        Ok(())
    }
}
