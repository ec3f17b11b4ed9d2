//! `chatvault stats`: counts for the workspace, the outbox and the index.

use chatvault_core::Result;
use chatvault_examples::Access;

use crate::cli::Global;
use crate::output::print_json;
use crate::stores::open_workspace;

pub(crate) async fn run(g: &Global) -> Result<()> {
    let (stores, ws) = open_workspace(g, Access::Read).await?;
    let stats = stores.meta.stats(&ws).await?;
    let outbox = stores.meta.outbox_stats(Some(ws.clone())).await?;
    let collection = stores.content.collection_info(&ws).await?;
    if g.json {
        return print_json(&serde_json::json!({
            "workspace": ws, "metadata": stats, "outbox": outbox,
            "content": collection,
            "metadata_backend": stores.meta.backend(), "content_backend": stores.content.backend(),
        }));
    }
    out!(
        "workspace {ws}  (metadata: {}, content: {})",
        stores.meta.backend(),
        stores.content.backend()
    );
    out!(
        "  messages      {:>8}  ({} replies)",
        stats.messages,
        stats.replies
    );
    out!("  with content  {:>8}", stats.with_content);
    out!("  channels      {:>8}", stats.channels);
    out!("  users         {:>8}", stats.users);
    out!("  reactions     {:>8}", stats.reactions);
    out!("  links         {:>8}", stats.links);
    out!("  files         {:>8}", stats.files);
    out!(
        "  outbox        {:>8} pending, {} leased, {} dead",
        outbox.pending,
        outbox.leased,
        outbox.dead
    );
    match collection {
        Some(c) => out!(
            "  index         {:>8} documents ({}, {} dims)",
            c.documents,
            c.spec.model_id,
            c.spec.dimension
        ),
        None => out!("  index         none yet"),
    }
    Ok(())
}
