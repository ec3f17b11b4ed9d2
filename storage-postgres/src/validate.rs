//! Field limits: over-long input is rejected with an error naming the field and the key, before
//! anything is written.

use std::fmt::Display;

use chatvault_core::{Error, Result, WriteBatch};

/// Names, handles, emoji, kinds, sources, statuses, ids chosen by callers.
pub(crate) const MAX_NAME: usize = 1_024;
/// URLs, titles, topics, purposes, cursors, error messages.
pub(crate) const MAX_LONG: usize = 16_384;
/// A JSON value (processing-queue payload, bot setting), serialized.
pub(crate) const MAX_JSON: usize = 1_048_576;

pub(crate) fn check(field: &str, value: &str, max: usize, key: impl Display) -> Result<()> {
    if value.len() > max {
        return Err(Error::invalid_input(format!(
            "{field} is {} bytes long, more than the {max} allowed",
            value.len()
        ))
        .with_context("field", field)
        .with_context("key", key));
    }
    Ok(())
}

fn check_opt(field: &str, value: Option<&str>, max: usize, key: impl Display) -> Result<()> {
    match value {
        Some(v) => check(field, v, max, key),
        None => Ok(()),
    }
}

fn check_json(field: &str, value: &serde_json::Value, key: impl Display) -> Result<()> {
    let len = serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if len > MAX_JSON {
        return Err(Error::invalid_input(format!(
            "{field} is {len} bytes of JSON, more than the {MAX_JSON} allowed"
        ))
        .with_context("field", field)
        .with_context("key", key));
    }
    Ok(())
}

/// Checks every string field of the batch against its limit.
pub(crate) fn validate_batch(b: &WriteBatch) -> Result<()> {
    for t in &b.teams {
        check("team.name", &t.name, MAX_NAME, &t.id)?;
        check_opt("team.domain", t.domain.as_deref(), MAX_NAME, &t.id)?;
    }
    for u in &b.users {
        check("user.name", &u.name, MAX_NAME, &u.id)?;
        check_opt("user.real_name", u.real_name.as_deref(), MAX_NAME, &u.id)?;
        check_opt(
            "user.display_name",
            u.display_name.as_deref(),
            MAX_NAME,
            &u.id,
        )?;
        check_opt("user.tz", u.tz.as_deref(), MAX_NAME, &u.id)?;
        check_opt("user.email", u.email.as_deref(), MAX_NAME, &u.id)?;
    }
    for c in &b.channels {
        check("channel.name", &c.name, MAX_NAME, &c.id)?;
        check_opt("channel.topic", c.topic.as_deref(), MAX_LONG, &c.id)?;
        check_opt("channel.purpose", c.purpose.as_deref(), MAX_LONG, &c.id)?;
    }
    for m in &b.messages {
        let k = &m.meta.key;
        check_opt("message.bot_id", m.meta.bot_id.as_deref(), MAX_NAME, k)?;
        check_opt("message.subtype", m.meta.subtype.as_deref(), MAX_NAME, k)?;
        for r in &m.reactions {
            check("reaction.name", &r.name, MAX_NAME, k)?;
        }
        for l in &m.links {
            check("link.url", &l.url, MAX_LONG, k)?;
            check("link.domain", &l.domain, MAX_NAME, k)?;
            check_opt("link.title", l.title.as_deref(), MAX_LONG, k)?;
        }
        for f in &m.files {
            check("file.id", &f.id, MAX_NAME, k)?;
            check_opt("file.name", f.name.as_deref(), MAX_LONG, k)?;
            check_opt("file.title", f.title.as_deref(), MAX_LONG, k)?;
            check_opt("file.mimetype", f.mimetype.as_deref(), MAX_NAME, k)?;
            check_opt("file.filetype", f.filetype.as_deref(), MAX_NAME, k)?;
            check_opt("file.url_private", f.url_private.as_deref(), MAX_LONG, k)?;
            check_opt("file.permalink", f.permalink.as_deref(), MAX_LONG, k)?;
        }
    }
    for r in &b.reaction_changes {
        check("reaction.name", &r.name, MAX_NAME, &r.key)?;
    }
    for bm in &b.bookmarks {
        check("bookmark.id", &bm.id, MAX_NAME, &bm.id)?;
        check("bookmark.title", &bm.title, MAX_LONG, &bm.id)?;
        check_opt("bookmark.link", bm.link.as_deref(), MAX_LONG, &bm.id)?;
        check_opt("bookmark.emoji", bm.emoji.as_deref(), MAX_NAME, &bm.id)?;
    }
    for x in &b.sync_status {
        check("sync_status.source", &x.source, MAX_NAME, &x.channel)?;
        check_opt(
            "sync_status.cursor",
            x.cursor.as_deref(),
            MAX_LONG,
            &x.channel,
        )?;
        check_opt(
            "sync_status.error",
            x.error.as_deref(),
            MAX_LONG,
            &x.channel,
        )?;
    }
    for q in &b.processing_queue {
        check("processing_queue.id", &q.id, MAX_NAME, &q.id)?;
        check("processing_queue.kind", &q.kind, MAX_NAME, &q.id)?;
        check("processing_queue.status", &q.status, MAX_NAME, &q.id)?;
        check_json("processing_queue.payload", &q.payload, &q.id)?;
    }
    for c in &b.bot_config {
        check("bot_config.key", &c.key, MAX_NAME, &c.key)?;
        check_json("bot_config.value", &c.value, &c.key)?;
    }
    Ok(())
}
