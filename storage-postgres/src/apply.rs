//! The write path: [`MetadataStore::apply`](chatvault_core::MetadataStore::apply) in one
//! transaction (see [`crate::txn`]).
//!
//! The batch is resolved in memory against the stored state of the messages it touches:
//! edited-revision rule, tombstones, content-hash gate, reaction changes. Which of its keys are
//! stored is found with one primary-key range scan per channel (see [`existing_keys`]), and only
//! those messages are loaded. Then the final rows are written: new messages, reactions, links,
//! files and outbox rows as plain inserts (`COPY` on PostgreSQL, multi-row `INSERT`s on SQLite),
//! stored messages with multi-row `INSERT … ON CONFLICT DO UPDATE`s, all in the same transaction.
//! Concurrent applies to one workspace are serialised (a transaction-scoped advisory lock on
//! PostgreSQL, the store's writer lock on SQLite), so the read-then-write cannot interleave.

use std::collections::{HashMap, HashSet};

use chatvault_core::{
    ApplyReport, ChannelId, ChannelKind, ContentAttributes, Error, FileRef, Link, LinkSource,
    MembershipChange, MessageMeta, OutboxOp, Reaction, Result, Ts, UserId, WorkspaceId, WriteBatch,
};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Value};

use crate::error::DbResultExt;
use crate::read::{load_metas, load_reactions};
use crate::sql::{insert_rows, key_chunk, opt_i64, opt_str, s, Sql};
use crate::store::SqlMetadataStore;
use crate::txn::{TableRows, Txn};
use crate::validate::validate_batch;

type Key = (ChannelId, Ts);

/// One message's state while a batch is resolved.
#[derive(Default)]
struct Slot {
    /// A row for it was stored before this batch.
    existed: bool,
    /// It is deleted (tombstoned before or in this batch).
    tombstoned: bool,
    /// The tombstone is new in this batch.
    new_tombstone: bool,
    /// Its current metadata (`None`: no row).
    meta: Option<MessageMeta>,
    /// Its current reactions, when loaded or written.
    reactions: Vec<Reaction>,
    links: Vec<Link>,
    files: Vec<FileRef>,
    row_dirty: bool,
    reactions_dirty: bool,
    links_files_dirty: bool,
}

struct Enqueued {
    key: Key,
    op: OutboxOp,
}

pub(crate) async fn apply(store: &SqlMetadataStore, mut batch: WriteBatch) -> Result<ApplyReport> {
    let be = store.backend();
    let mut tm = Phases::new();
    let ws = batch.validate().map_err(|e| e.with_backend(be))?.clone();
    validate_batch(&batch).map_err(|e| e.with_backend(be))?;
    tm.mark("validate");
    let _writer = store.writer_lock().await?;
    let txn = Txn::begin(store)
        .await
        .db(be, "beginning the write transaction")?;
    store.lock_workspace(&txn, &ws).await?;
    if !workspace_exists(&txn, be, &ws).await? {
        return Err(Error::not_found(format!("workspace {ws} does not exist"))
            .with_context("workspace", &ws)
            .with_backend(be));
    }
    let now = chrono::Utc::now().timestamp_micros();
    let mut report = ApplyReport::default();

    // ----- messages, reaction changes, deletes: resolved in memory -----
    let mut slots: HashMap<Key, Slot> = HashMap::new();
    let mut touched: Vec<Key> = Vec::new();
    {
        let mut seen: HashSet<Key> = HashSet::new();
        let keys = batch
            .messages
            .iter()
            .map(|m| &m.meta.key)
            .chain(batch.reaction_changes.iter().map(|r| &r.key))
            .chain(batch.message_deletes.iter());
        for k in keys {
            let kk = (k.channel.clone(), k.ts.clone());
            if seen.insert(kk.clone()) {
                touched.push(kk);
            }
        }
    }
    if !touched.is_empty() {
        // Most keys of a sync batch are new: find the few stored ones cheaply, then load only those.
        let stored = existing_keys(&txn, be, &ws, "message_metadata", true, &touched).await?;
        if !stored.is_empty() {
            for meta in load_metas(&txn, be, &ws, &stored).await? {
                let k = (meta.key.channel.clone(), meta.key.ts.clone());
                let slot = slots.entry(k).or_default();
                slot.existed = true;
                slot.meta = Some(meta);
            }
        }
        for k in existing_keys(&txn, be, &ws, "message_tombstones", false, &touched).await? {
            slots.entry(k).or_default().tombstoned = true;
        }
    }
    if !batch.reaction_changes.is_empty() {
        let mut rkeys: Vec<Key> = Vec::new();
        let mut seen = HashSet::new();
        for r in &batch.reaction_changes {
            let k = (r.key.channel.clone(), r.key.ts.clone());
            if slots.get(&k).is_some_and(|s| s.existed) && seen.insert(k.clone()) {
                rkeys.push(k);
            }
        }
        for (k, reactions) in load_reactions(&txn, be, &ws, &rkeys).await? {
            if let Some(slot) = slots.get_mut(&k) {
                slot.reactions = reactions;
            }
        }
    }

    // Attributes of the messages that reaction changes touch, as they were before the batch
    // (channel kinds as stored before this batch's channel writes).
    let mut kinds_before: HashMap<ChannelId, ChannelKind> = HashMap::new();
    let mut attributes_before: Vec<(Key, Option<ContentAttributes>)> = Vec::new();
    if !batch.reaction_changes.is_empty() {
        let mut channels: Vec<&ChannelId> = batch
            .reaction_changes
            .iter()
            .map(|r| &r.key.channel)
            .collect();
        channels.sort();
        channels.dedup();
        kinds_before = load_channel_kinds(&txn, be, &ws, &channels).await?;
        let mut seen = HashSet::new();
        for rc in &batch.reaction_changes {
            let k = (rc.key.channel.clone(), rc.key.ts.clone());
            if !seen.insert(k.clone()) {
                continue;
            }
            let before = slots
                .get(&k)
                .and_then(|s| s.meta.as_ref())
                .filter(|m| m.content_hash.is_some())
                .map(|m| {
                    let kind = kinds_before
                        .get(&k.0)
                        .copied()
                        .unwrap_or(ChannelKind::Public);
                    ContentAttributes::from_meta(m, kind)
                });
            attributes_before.push((k, before));
        }
    }

    // Renames first: their `Reindex` entries precede this batch's own changes of those messages.
    let mut outbox: Vec<Enqueued> = crate::reindex::renamed_message_keys(&txn, be, &ws, &batch)
        .await?
        .into_iter()
        .map(|key| Enqueued {
            key,
            op: OutboxOp::Reindex,
        })
        .collect();
    tm.mark("load");
    for rec in std::mem::take(&mut batch.messages) {
        let k = (rec.meta.key.channel.clone(), rec.meta.key.ts.clone());
        let slot = slots.entry(k.clone()).or_default();
        if slot.tombstoned {
            report.messages_deleted_before += 1;
            continue;
        }
        if let Some(old) = &slot.meta {
            if rec.meta.edited < old.edited {
                report.messages_stale += 1;
                continue;
            }
        }
        let (old_hash, old_id) = slot
            .meta
            .as_ref()
            .map(|o| (o.content_hash.clone(), o.content_id.clone()))
            .unwrap_or_default();
        let mut meta = rec.meta;
        meta.content_hash = old_hash.clone();
        meta.content_id = old_id;
        match rec.content {
            Some(content) => {
                let hash = content.content_hash();
                if old_hash.as_deref() != Some(hash.as_str()) {
                    outbox.push(Enqueued {
                        key: k.clone(),
                        op: OutboxOp::Upsert { content },
                    });
                    meta.content_hash = Some(hash);
                }
            }
            None => {
                if old_hash.is_some() {
                    outbox.push(Enqueued {
                        key: k.clone(),
                        op: OutboxOp::Delete,
                    });
                    meta.content_hash = None;
                    meta.content_id = None;
                }
            }
        }
        slot.meta = Some(meta);
        slot.reactions = dedupe_reactions(rec.reactions);
        slot.links = rec.links;
        slot.files = rec.files;
        slot.row_dirty = true;
        slot.reactions_dirty = true;
        slot.links_files_dirty = true;
        report.messages_written += 1;
    }

    if !batch.reaction_changes.is_empty() {
        for rc in &batch.reaction_changes {
            let k = (rc.key.channel.clone(), rc.key.ts.clone());
            let Some(slot) = slots.get_mut(&k) else {
                continue;
            };
            let Some(meta) = slot.meta.as_mut() else {
                continue;
            };
            if !apply_reaction_change(&mut slot.reactions, &rc.name, &rc.user, rc.added) {
                continue;
            }
            let total: u32 = slot.reactions.iter().map(|r| r.count).sum();
            meta.reaction_count = total;
            meta.has_reactions = total > 0;
            slot.row_dirty = true;
            slot.reactions_dirty = true;
        }
        // One `Attributes` entry per message with content whose attributes differ from before
        // the batch, so re-applying a batch enqueues nothing.
        let mut kinds_after = kinds_before.clone();
        for c in &batch.channels {
            kinds_after.insert(c.id.clone(), c.kind);
        }
        for (k, before) in attributes_before {
            let Some(meta) = slots.get(&k).and_then(|s| s.meta.as_ref()) else {
                continue;
            };
            if meta.content_hash.is_none() {
                continue;
            }
            let kind = kinds_after
                .get(&k.0)
                .copied()
                .unwrap_or(ChannelKind::Public);
            let attributes = ContentAttributes::from_meta(meta, kind);
            if before.as_ref() != Some(&attributes) {
                outbox.push(Enqueued {
                    key: k,
                    op: OutboxOp::Attributes { attributes },
                });
            }
        }
    }

    for key in &batch.message_deletes {
        let k = (key.channel.clone(), key.ts.clone());
        let slot = slots.entry(k.clone()).or_default();
        if let Some(old) = slot.meta.take() {
            report.messages_deleted += 1;
            if old.content_hash.is_some() {
                outbox.push(Enqueued {
                    key: k,
                    op: OutboxOp::Delete,
                });
            }
        }
        slot.reactions.clear();
        slot.links.clear();
        slot.files.clear();
        if !slot.tombstoned {
            slot.tombstoned = true;
            slot.new_tombstone = true;
        }
    }
    report.outbox_enqueued = outbox.len() as u64;

    tm.mark("resolve");
    write_teams(&txn, be, &ws, &batch).await?;
    write_users(&txn, be, &ws, &batch).await?;
    write_channels(&txn, be, &ws, &batch).await?;
    write_memberships(&txn, be, &ws, &batch.memberships).await?;
    tm.mark("entities");
    let mut tables = write_messages(&txn, be, &ws, &touched, &slots, &mut tm).await?;
    tables.push(tombstone_rows(&ws, &touched, &slots, now));
    tables.push(outbox_rows(&ws, outbox, now));
    if let Err((doing, e)) = txn.write(tables).await {
        return Err(e).db(be, doing);
    }
    tm.mark("write");

    write_thread_participants(&txn, be, &ws, &batch).await?;
    write_bookmarks(&txn, be, &ws, &batch).await?;
    write_sync_status(&txn, be, &ws, &batch).await?;
    write_processing_queue(&txn, be, &ws, &batch).await?;
    write_bot_config(&txn, be, &ws, &batch).await?;

    tm.mark("other");
    let messages = touched.len();
    // Freeing the batch's resolved state (every message's strings) takes a while; it is done
    // while the database commits (the commit is sent on the first poll).
    let (committed, ()) = tokio::join!(txn.commit(), async move {
        drop(slots);
        drop(touched);
        drop(batch);
    });
    committed.db(be, "committing the write batch")?;
    store.request_checkpoint();
    tm.mark("commit");
    tm.log(messages);
    Ok(report)
}

/// `added`: the user is added to the emoji's users (once); removed: taken out, and the reaction
/// disappears at zero. Returns whether anything changed.
fn apply_reaction_change(
    reactions: &mut Vec<Reaction>,
    name: &str,
    user: &UserId,
    added: bool,
) -> bool {
    if added {
        match reactions.iter_mut().find(|r| r.name == name) {
            Some(r) if r.users.contains(user) => false,
            Some(r) => {
                r.users.push(user.clone());
                r.count += 1;
                true
            }
            None => {
                reactions.push(Reaction {
                    name: name.to_string(),
                    users: vec![user.clone()],
                    count: 1,
                });
                true
            }
        }
    } else {
        let Some(i) = reactions.iter().position(|r| r.name == name) else {
            return false;
        };
        let r = &mut reactions[i];
        let Some(u) = r.users.iter().position(|u| u == user) else {
            return false;
        };
        r.users.remove(u);
        r.count = r.count.saturating_sub(1);
        if r.count == 0 {
            reactions.remove(i);
        }
        true
    }
}

/// One row per emoji name (the table's key); a later entry for the same name wins.
fn dedupe_reactions(reactions: Vec<Reaction>) -> Vec<Reaction> {
    let mut out: Vec<Reaction> = Vec::with_capacity(reactions.len());
    for r in reactions {
        match out.iter_mut().find(|o| o.name == r.name) {
            Some(o) => *o = r,
            None => out.push(r),
        }
    }
    out
}

pub(crate) async fn workspace_exists<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
) -> Result<bool> {
    let mut q = Sql::new("SELECT 1 FROM workspaces WHERE workspace_id = ");
    q.bind(ws.as_str());
    Ok(conn
        .query_one(q.stmt(conn.get_database_backend()))
        .await
        .db(be, "looking up the workspace")?
        .is_some())
}

/// One channel's keys in [`existing_keys`].
struct Range<'a> {
    lo: &'a Ts,
    hi: &'a Ts,
    lo_micros: i64,
    hi_micros: i64,
    count: usize,
}

/// The keys among `keys` (distinct) that have a row in `table` (keyed by workspace, channel, ts).
///
/// Instead of one key lookup per key, each channel's keys are covered by one range scan of the
/// primary key between their smallest and largest `ts` (text order, as the index stores them),
/// all channels in one `UNION ALL` statement. A sync batch of new messages finds nothing there
/// for almost no work. Each scan is capped at twice its channel's key count (plus some slack): a
/// range holding more stored rows than that (a batch of scattered old messages) falls back to
/// exact key lookups for that channel, so the cost stays bounded by the batch, not the table.
///
/// `with_micros`: the table has `ts_micros`. PostgreSQL then also gets the keys' `ts_micros`
/// range (true of every listed key, so it drops only other rows): with stale statistics it may
/// scan `message_metadata_by_channel_time` instead of the primary key, and this keeps that scan
/// to the range too. SQLite does not get it: there it would pick `message_metadata_by_time` and
/// scan every channel's rows in the time range, once per channel.
async fn existing_keys(
    txn: &Txn,
    be: &'static str,
    ws: &WorkspaceId,
    table: &str,
    with_micros: bool,
    keys: &[Key],
) -> Result<Vec<Key>> {
    /// Channels per statement (SQLite allows 500 terms in a compound `SELECT`).
    const CHANNELS_PER_STATEMENT: usize = 200;
    let backend = txn.get_database_backend();
    let wanted: HashSet<&Key> = keys.iter().collect();
    let micros = with_micros && backend == DatabaseBackend::Postgres;
    let mut by_channel: HashMap<&ChannelId, Range<'_>> = HashMap::new();
    for (c, t) in keys {
        let m = t.as_micros();
        let e = by_channel.entry(c).or_insert(Range {
            lo: t,
            hi: t,
            lo_micros: m,
            hi_micros: m,
            count: 0,
        });
        if t.as_str() < e.lo.as_str() {
            e.lo = t;
        }
        if t.as_str() > e.hi.as_str() {
            e.hi = t;
        }
        e.lo_micros = e.lo_micros.min(m);
        e.hi_micros = e.hi_micros.max(m);
        e.count += 1;
    }
    let mut channels: Vec<(&ChannelId, Range<'_>)> = by_channel.into_iter().collect();
    channels.sort_by(|a, b| a.0.cmp(b.0));
    let doing = "looking up stored messages";
    let mut out = Vec::new();
    let mut overflowed: HashSet<&ChannelId> = HashSet::new();
    for chunk in channels.chunks(CHANNELS_PER_STATEMENT) {
        let mut q = Sql::default();
        let mut caps: HashMap<&ChannelId, (usize, usize)> = HashMap::new();
        for (n, (c, r)) in chunk.iter().enumerate() {
            let cap = r.count.saturating_mul(2).saturating_add(16);
            caps.insert(c, (cap, 0));
            if n > 0 {
                q.push(" UNION ALL ");
            }
            q.push(&format!(
                "SELECT channel_id, ts FROM (SELECT channel_id, ts FROM {table} WHERE workspace_id = "
            ));
            q.bind(ws.as_str())
                .push(" AND channel_id = ")
                .bind(c.as_str());
            q.push(" AND ts >= ").bind(r.lo.as_str());
            q.push(" AND ts <= ").bind(r.hi.as_str());
            if micros {
                q.push(" AND ts_micros >= ").bind(r.lo_micros);
                q.push(" AND ts_micros <= ").bind(r.hi_micros);
            }
            q.push(" LIMIT ")
                .bind(i64::try_from(cap).unwrap_or(i64::MAX))
                .push(&format!(") AS r{n}"));
        }
        let mut found: Vec<Key> = Vec::new();
        for row in txn.query_all(q.stmt(backend)).await.db(be, doing)? {
            let c: String = row.try_get_by_index(0).db(be, doing)?;
            let t: String = row.try_get_by_index(1).db(be, doing)?;
            found.push((crate::read::parse_channel(&c)?, crate::read::parse_ts(&t)?));
        }
        for k in &found {
            if let Some(cap) = caps.get_mut(&k.0) {
                cap.1 += 1;
            }
        }
        for (c, (cap, got)) in &caps {
            if got >= cap {
                overflowed.insert(c);
            }
        }
        out.extend(
            found
                .into_iter()
                .filter(|k| !overflowed.contains(&k.0) && wanted.contains(k)),
        );
    }
    if !overflowed.is_empty() {
        let rest: Vec<&Key> = keys.iter().filter(|k| overflowed.contains(&k.0)).collect();
        for chunk in rest.chunks(key_chunk(backend, 1)) {
            let mut q = Sql::new(&format!(
                "SELECT channel_id, ts FROM {table} WHERE workspace_id = "
            ));
            q.bind(ws.as_str()).push(" AND ");
            q.bind_keys("channel_id", "ts", chunk.iter().map(|(c, t)| (c, t)));
            for row in txn.query_all(q.stmt(backend)).await.db(be, doing)? {
                let c: String = row.try_get_by_index(0).db(be, doing)?;
                let t: String = row.try_get_by_index(1).db(be, doing)?;
                out.push((crate::read::parse_channel(&c)?, crate::read::parse_ts(&t)?));
            }
        }
    }
    Ok(out)
}

async fn load_channel_kinds(
    txn: &Txn,
    be: &'static str,
    ws: &WorkspaceId,
    channels: &[&ChannelId],
) -> Result<HashMap<ChannelId, ChannelKind>> {
    let backend = txn.get_database_backend();
    let mut out = HashMap::new();
    for chunk in channels.chunks(key_chunk(backend, 1)) {
        let mut q = Sql::new("SELECT channel_id, kind FROM channels WHERE workspace_id = ");
        q.bind(ws.as_str()).push(" AND channel_id IN (");
        q.bind_list(chunk.iter().map(|c| c.as_str())).push(")");
        for row in txn
            .query_all(q.stmt(backend))
            .await
            .db(be, "loading channel kinds")?
        {
            let c: String = row.try_get_by_index(0).db(be, "reading a channel")?;
            let k: String = row.try_get_by_index(1).db(be, "reading a channel")?;
            if let Some(kind) = ChannelKind::parse(&k) {
                out.insert(crate::read::parse_channel(&c)?, kind);
            }
        }
    }
    Ok(out)
}

/// Keeps the last of several rows with the same key (a multi-row upsert may not touch a row twice).
fn last_by_key<T, K: std::hash::Hash + Eq>(items: &[T], key: impl Fn(&T) -> K) -> Vec<&T> {
    let mut last: HashMap<K, usize> = HashMap::new();
    for (i, it) in items.iter().enumerate() {
        last.insert(key(it), i);
    }
    items
        .iter()
        .enumerate()
        .filter(|(i, it)| last.get(&key(it)) == Some(i))
        .map(|(_, it)| it)
        .collect()
}

fn ws_v(ws: &WorkspaceId) -> Value {
    s(ws.as_str())
}

fn b(v: bool) -> Value {
    Value::Bool(Some(v))
}

fn i(v: i64) -> Value {
    Value::BigInt(Some(v))
}

fn micros(t: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    opt_i64(t.map(|t| t.timestamp_micros()))
}

async fn write_teams(
    txn: &Txn,
    be: &'static str,
    ws: &WorkspaceId,
    batch: &WriteBatch,
) -> Result<()> {
    let rows = last_by_key(&batch.teams, |t| t.id.clone())
        .into_iter()
        .map(|t| {
            vec![
                ws_v(ws),
                s(t.id.as_str()),
                s(&t.name),
                opt_str(t.domain.as_deref()),
            ]
        })
        .collect();
    insert_rows(
        txn,
        "INSERT INTO teams (workspace_id, team_id, name, domain)",
        4,
        rows,
        "ON CONFLICT (workspace_id, team_id) DO UPDATE SET name = excluded.name, domain = excluded.domain",
    )
    .await
    .db(be, "writing teams")?;
    Ok(())
}

async fn write_users(
    txn: &Txn,
    be: &'static str,
    ws: &WorkspaceId,
    batch: &WriteBatch,
) -> Result<()> {
    let rows = last_by_key(&batch.users, |u| u.id.clone())
        .into_iter()
        .map(|u| {
            vec![
                ws_v(ws),
                s(u.id.as_str()),
                opt_str(u.team.as_ref().map(|t| t.as_str())),
                s(&u.name),
                opt_str(u.real_name.as_deref()),
                opt_str(u.display_name.as_deref()),
                b(u.is_bot),
                b(u.is_deleted),
                b(u.is_admin),
                opt_str(u.tz.as_deref()),
                opt_str(u.email.as_deref()),
            ]
        })
        .collect();
    insert_rows(
        txn,
        "INSERT INTO users (workspace_id, user_id, team_id, name, real_name, display_name, is_bot, is_deleted, is_admin, tz, email)",
        11,
        rows,
        "ON CONFLICT (workspace_id, user_id) DO UPDATE SET team_id = excluded.team_id, name = excluded.name, \
         real_name = excluded.real_name, display_name = excluded.display_name, is_bot = excluded.is_bot, \
         is_deleted = excluded.is_deleted, is_admin = excluded.is_admin, tz = excluded.tz, email = COALESCE(excluded.email, users.email)",
    )
    .await
    .db(be, "writing users")?;
    Ok(())
}

async fn write_channels(
    txn: &Txn,
    be: &'static str,
    ws: &WorkspaceId,
    batch: &WriteBatch,
) -> Result<()> {
    let rows = last_by_key(&batch.channels, |c| c.id.clone())
        .into_iter()
        .map(|c| {
            vec![
                ws_v(ws),
                s(c.id.as_str()),
                s(&c.name),
                s(c.kind.as_str()),
                b(c.is_archived),
                b(c.is_general),
                opt_str(c.topic.as_deref()),
                opt_str(c.purpose.as_deref()),
                opt_str(c.creator.as_ref().map(|u| u.as_str())),
                micros(c.created),
            ]
        })
        .collect();
    insert_rows(
        txn,
        "INSERT INTO channels (workspace_id, channel_id, name, kind, is_archived, is_general, topic, purpose, creator, created)",
        10,
        rows,
        "ON CONFLICT (workspace_id, channel_id) DO UPDATE SET name = excluded.name, kind = excluded.kind, \
         is_archived = excluded.is_archived, is_general = excluded.is_general, topic = excluded.topic, \
         purpose = excluded.purpose, creator = excluded.creator, created = excluded.created",
    )
    .await
    .db(be, "writing channels")?;
    Ok(())
}

async fn write_memberships(
    txn: &Txn,
    be: &'static str,
    ws: &WorkspaceId,
    changes: &[MembershipChange],
) -> Result<()> {
    let backend = txn.get_database_backend();
    for change in changes {
        match change {
            MembershipChange::Replace { channel, users } => {
                let mut q = Sql::new("DELETE FROM channel_members WHERE workspace_id = ");
                q.bind(ws.as_str())
                    .push(" AND channel_id = ")
                    .bind(channel.as_str());
                txn.execute(q.stmt(backend))
                    .await
                    .db(be, "replacing channel members")?;
                let rows = users
                    .iter()
                    .map(|u| vec![ws_v(ws), s(channel.as_str()), s(u.as_str())])
                    .collect();
                insert_rows(
                    txn,
                    "INSERT INTO channel_members (workspace_id, channel_id, user_id)",
                    3,
                    rows,
                    "ON CONFLICT DO NOTHING",
                )
                .await
                .db(be, "replacing channel members")?;
            }
            MembershipChange::Join { channel, user } => {
                let mut q = Sql::new(
                    "INSERT INTO channel_members (workspace_id, channel_id, user_id) VALUES (",
                );
                q.bind(ws.as_str())
                    .push(", ")
                    .bind(channel.as_str())
                    .push(", ")
                    .bind(user.as_str());
                q.push(") ON CONFLICT DO NOTHING");
                txn.execute(q.stmt(backend))
                    .await
                    .db(be, "adding a channel member")?;
            }
            MembershipChange::Leave { channel, user } => {
                let mut q = Sql::new("DELETE FROM channel_members WHERE workspace_id = ");
                q.bind(ws.as_str())
                    .push(" AND channel_id = ")
                    .bind(channel.as_str());
                q.push(" AND user_id = ").bind(user.as_str());
                txn.execute(q.stmt(backend))
                    .await
                    .db(be, "removing a channel member")?;
            }
        }
    }
    Ok(())
}

async fn delete_by_keys(
    txn: &Txn,
    be: &'static str,
    ws: &WorkspaceId,
    table: &str,
    keys: &[&Key],
    doing: &'static str,
) -> Result<()> {
    let backend = txn.get_database_backend();
    for chunk in keys.chunks(key_chunk(backend, 1)) {
        let mut q = Sql::new(&format!("DELETE FROM {table} WHERE workspace_id = "));
        q.bind(ws.as_str()).push(" AND ");
        q.bind_keys("channel_id", "ts", chunk.iter().map(|(c, t)| (c, t)));
        txn.execute(q.stmt(backend)).await.db(be, doing)?;
    }
    Ok(())
}

/// Deletes what the batch replaces, and returns the rows to write for the messages in `touched`
/// (built lazily, while earlier statements run).
async fn write_messages<'a>(
    txn: &Txn,
    be: &'static str,
    ws: &'a WorkspaceId,
    touched: &'a [Key],
    slots: &'a HashMap<Key, Slot>,
    tm: &mut Phases,
) -> Result<Vec<TableRows<'a>>> {
    let mut gone: Vec<&Key> = Vec::new();
    let mut old_reactions: Vec<&Key> = Vec::new();
    let mut old_links_files: Vec<&Key> = Vec::new();
    for k in touched {
        let Some(slot) = slots.get(k) else { continue };
        if !slot.existed {
            continue;
        }
        if slot.meta.is_none() {
            gone.push(k);
            continue;
        }
        if slot.reactions_dirty {
            old_reactions.push(k);
        }
        if slot.links_files_dirty {
            old_links_files.push(k);
        }
    }
    // The messages that have rows to write, with their slots.
    let live = move || {
        touched.iter().filter_map(move |k| {
            let slot = slots.get(k)?;
            slot.meta.as_ref().map(|meta| (k, slot, meta))
        })
    };
    let pg = txn.get_database_backend() == DatabaseBackend::Postgres;
    // New messages (no stored row) and updates of stored ones.
    let rows = live()
        .filter(move |(_, slot, _)| slot.row_dirty && !slot.existed && pg)
        .map(move |(_, _, meta)| Ok(meta_row(ws, meta)));
    let update_rows = live()
        .filter(move |(_, slot, _)| slot.row_dirty && (slot.existed || !pg))
        .map(move |(_, _, meta)| Ok(meta_row(ws, meta)));
    let reaction_rows =
        live()
            .filter(|(_, slot, _)| slot.reactions_dirty)
            .flat_map(move |(k, slot, _)| {
                let mut out = Vec::with_capacity(slot.reactions.len());
                for r in &slot.reactions {
                    out.push(
                        serde_json::to_string(&r.users)
                            .map_err(|e| DbErr::Custom(format!("encoding reaction users: {e}")))
                            .map(|users| {
                                vec![
                                    ws_v(ws),
                                    s(k.0.as_str()),
                                    s(k.1.as_str()),
                                    s(&r.name),
                                    i(i64::from(r.count)),
                                    Value::String(Some(Box::new(users))),
                                ]
                            }),
                    );
                }
                out
            });
    let link_rows = live()
        .filter(|(_, slot, _)| slot.links_files_dirty)
        .flat_map(move |(k, slot, _)| {
            let micros = k.1.as_micros();
            let mut out = Vec::with_capacity(slot.links.len());
            for (pos, l) in slot.links.iter().enumerate() {
                out.push(Ok(vec![
                    ws_v(ws),
                    s(k.0.as_str()),
                    s(k.1.as_str()),
                    i(pos as i64),
                    i(micros),
                    s(&l.url),
                    s(&l.domain),
                    s(link_source(l.source)),
                    opt_str(l.title.as_deref()),
                ]));
            }
            out
        });
    let file_rows = live()
        .filter(|(_, slot, _)| slot.links_files_dirty)
        .flat_map(move |(k, slot, _)| {
            let mut out = Vec::with_capacity(slot.files.len());
            for (pos, f) in slot.files.iter().enumerate() {
                out.push(Ok(vec![
                    ws_v(ws),
                    s(k.0.as_str()),
                    s(k.1.as_str()),
                    i(pos as i64),
                    s(&f.id),
                    opt_str(f.name.as_deref()),
                    opt_str(f.title.as_deref()),
                    opt_str(f.mimetype.as_deref()),
                    opt_str(f.filetype.as_deref()),
                    opt_i64(f.size.map(|v| v.min(i64::MAX as u64) as i64)),
                    opt_str(f.url_private.as_deref()),
                    opt_str(f.permalink.as_deref()),
                ]));
            }
            out
        });
    // Reactions, links and files go with their message.
    delete_by_keys(txn, be, ws, "message_metadata", &gone, "deleting messages").await?;
    old_reactions.extend(gone.iter().copied());
    old_links_files.extend(gone.iter().copied());
    delete_by_keys(
        txn,
        be,
        ws,
        "reactions",
        &old_reactions,
        "replacing reactions",
    )
    .await?;
    delete_by_keys(txn, be, ws, "links", &old_links_files, "replacing links").await?;
    delete_by_keys(txn, be, ws, "files", &old_links_files, "replacing files").await?;
    tm.mark("deletes");
    // New messages are plain inserts on PostgreSQL (`COPY`): none of their keys is stored, and
    // the workspace lock keeps it so until commit. Stored ones are upserted, and on SQLite new
    // ones too (the same statement).
    let mut tables = Vec::with_capacity(8);
    tables.push(TableRows {
        table: "message_metadata",
        columns: META_COLUMNS,
        ncols: 22,
        rows: Box::new(rows),
        on_conflict: "",
        doing: "writing messages",
    });
    tables.push(TableRows {
        table: "message_metadata",
        columns: META_COLUMNS,
        ncols: 22,
        rows: Box::new(update_rows),
        on_conflict: "ON CONFLICT (workspace_id, channel_id, ts) DO UPDATE SET ts_micros = excluded.ts_micros, \
         user_id = excluded.user_id, bot_id = excluded.bot_id, thread_ts = excluded.thread_ts, \
         thread_ts_micros = excluded.thread_ts_micros, is_reply = excluded.is_reply, \
         reply_count = excluded.reply_count, reply_users_count = excluded.reply_users_count, \
         latest_reply = excluded.latest_reply, subtype = excluded.subtype, edited = excluded.edited, \
         has_attachments = excluded.has_attachments, has_files = excluded.has_files, \
         has_reactions = excluded.has_reactions, reaction_count = excluded.reaction_count, \
         mention_count = excluded.mention_count, link_count = excluded.link_count, \
         content_id = excluded.content_id, content_hash = excluded.content_hash",
        doing: "writing messages",
    });
    tables.push(TableRows {
        table: "reactions",
        columns: "workspace_id, channel_id, ts, name, count, users",
        ncols: 6,
        rows: Box::new(reaction_rows),
        on_conflict: "",
        doing: "writing reactions",
    });
    tables.push(TableRows {
        table: "links",
        columns: "workspace_id, channel_id, ts, position, ts_micros, url, domain, source, title",
        ncols: 9,
        rows: Box::new(link_rows),
        on_conflict: "",
        doing: "writing links",
    });
    tables.push(TableRows {
        table: "files",
        columns:
            "workspace_id, channel_id, ts, position, file_id, name, title, mimetype, filetype, \
                  size, url_private, permalink",
        ncols: 12,
        rows: Box::new(file_rows),
        on_conflict: "",
        doing: "writing files",
    });
    Ok(tables)
}

const META_COLUMNS: &str = "workspace_id, channel_id, ts, ts_micros, user_id, bot_id, thread_ts, \
    thread_ts_micros, is_reply, reply_count, reply_users_count, latest_reply, subtype, edited, \
    has_attachments, has_files, has_reactions, reaction_count, mention_count, link_count, content_id, \
    content_hash";

pub(crate) fn link_source(s: LinkSource) -> &'static str {
    match s {
        LinkSource::Text => "text",
        LinkSource::Attachment => "attachment",
        LinkSource::Block => "block",
    }
}

fn meta_row(ws: &WorkspaceId, m: &MessageMeta) -> Vec<Value> {
    vec![
        ws_v(ws),
        s(m.key.channel.as_str()),
        s(m.key.ts.as_str()),
        i(m.key.ts.as_micros()),
        opt_str(m.user.as_ref().map(|u| u.as_str())),
        opt_str(m.bot_id.as_deref()),
        opt_str(m.thread_ts.as_ref().map(|t| t.as_str())),
        opt_i64(m.thread_ts.as_ref().map(|t| t.as_micros())),
        b(m.is_reply()),
        i(i64::from(m.reply_count)),
        i(i64::from(m.reply_users_count)),
        opt_str(m.latest_reply.as_ref().map(|t| t.as_str())),
        opt_str(m.subtype.as_deref()),
        opt_str(m.edited.as_ref().map(|t| t.as_str())),
        b(m.has_attachments),
        b(m.has_files),
        b(m.has_reactions),
        i(i64::from(m.reaction_count)),
        i(i64::from(m.mention_count)),
        i(i64::from(m.link_count)),
        opt_str(m.content_id.as_deref()),
        opt_str(m.content_hash.as_deref()),
    ]
}

fn tombstone_rows<'a>(
    ws: &'a WorkspaceId,
    touched: &'a [Key],
    slots: &'a HashMap<Key, Slot>,
    now: i64,
) -> TableRows<'a> {
    let rows = touched
        .iter()
        .filter(|k| slots.get(*k).is_some_and(|s| s.new_tombstone))
        .map(move |(c, t)| Ok(vec![ws_v(ws), s(c.as_str()), s(t.as_str()), i(now)]));
    TableRows {
        table: "message_tombstones",
        columns: "workspace_id, channel_id, ts, deleted_at",
        ncols: 4,
        rows: Box::new(rows),
        on_conflict: "ON CONFLICT DO NOTHING",
        doing: "writing tombstones",
    }
}

fn outbox_rows(ws: &WorkspaceId, outbox: Vec<Enqueued>, now: i64) -> TableRows<'_> {
    let rows = outbox.into_iter().map(move |e| {
        let payload = serde_json::to_string(&e.op)
            .map_err(|err| DbErr::Custom(format!("encoding an outbox entry: {err}")))?;
        Ok(vec![
            ws_v(ws),
            s(e.key.0.as_str()),
            s(e.key.1.as_str()),
            s(e.op.name()),
            Value::String(Some(Box::new(payload))),
            i(0),
            i(now),
            i(now),
            b(false),
        ])
    });
    // Rows get ids in the order given (one statement's VALUES, or `COPY`'s input), so a
    // message's changes keep their order.
    TableRows {
        table: "outbox",
        columns:
            "workspace_id, channel_id, ts, op, payload, attempts, created_at, available_at, dead",
        ncols: 9,
        rows: Box::new(rows),
        on_conflict: "",
        doing: "writing outbox entries",
    }
}

async fn write_thread_participants(
    txn: &Txn,
    be: &'static str,
    ws: &WorkspaceId,
    batch: &WriteBatch,
) -> Result<()> {
    let rows = batch
        .thread_participants
        .iter()
        .map(|p| {
            vec![
                ws_v(ws),
                s(p.channel.as_str()),
                s(p.thread_ts.as_str()),
                s(p.user.as_str()),
            ]
        })
        .collect();
    insert_rows(
        txn,
        "INSERT INTO thread_participants (workspace_id, channel_id, thread_ts, user_id)",
        4,
        rows,
        "ON CONFLICT DO NOTHING",
    )
    .await
    .db(be, "writing thread participants")?;
    Ok(())
}

async fn write_bookmarks(
    txn: &Txn,
    be: &'static str,
    ws: &WorkspaceId,
    batch: &WriteBatch,
) -> Result<()> {
    let rows = last_by_key(&batch.bookmarks, |b| b.id.clone())
        .into_iter()
        .map(|bm| {
            vec![
                ws_v(ws),
                s(&bm.id),
                s(bm.channel.as_str()),
                s(&bm.title),
                opt_str(bm.link.as_deref()),
                opt_str(bm.emoji.as_deref()),
                micros(bm.created),
            ]
        })
        .collect();
    insert_rows(
        txn,
        "INSERT INTO bookmarks (workspace_id, bookmark_id, channel_id, title, link, emoji, created)",
        7,
        rows,
        "ON CONFLICT (workspace_id, bookmark_id) DO UPDATE SET channel_id = excluded.channel_id, \
         title = excluded.title, link = excluded.link, emoji = excluded.emoji, created = excluded.created",
    )
    .await
    .db(be, "writing bookmarks")?;
    Ok(())
}

async fn write_sync_status(
    txn: &Txn,
    be: &'static str,
    ws: &WorkspaceId,
    batch: &WriteBatch,
) -> Result<()> {
    let rows = last_by_key(&batch.sync_status, |x| {
        (x.channel.clone(), x.source.clone())
    })
    .into_iter()
    .map(|x| {
        vec![
            ws_v(ws),
            s(x.channel.as_str()),
            s(&x.source),
            opt_str(x.cursor.as_deref()),
            opt_str(x.oldest_ts.as_ref().map(|t| t.as_str())),
            opt_str(x.latest_ts.as_ref().map(|t| t.as_str())),
            s(x.state.as_str()),
            micros(x.updated_at),
            opt_str(x.error.as_deref()),
        ]
    })
    .collect();
    insert_rows(
        txn,
        "INSERT INTO sync_status (workspace_id, channel_id, source, cursor, oldest_ts, latest_ts, state, updated_at, error)",
        9,
        rows,
        "ON CONFLICT (workspace_id, channel_id, source) DO UPDATE SET cursor = excluded.cursor, \
         oldest_ts = excluded.oldest_ts, latest_ts = excluded.latest_ts, state = excluded.state, \
         updated_at = excluded.updated_at, error = excluded.error",
    )
    .await
    .db(be, "writing sync status")?;
    Ok(())
}

async fn write_processing_queue(
    txn: &Txn,
    be: &'static str,
    ws: &WorkspaceId,
    batch: &WriteBatch,
) -> Result<()> {
    let mut rows = Vec::new();
    for q in last_by_key(&batch.processing_queue, |q| q.id.clone()) {
        let payload = serde_json::to_string(&q.payload)
            .map_err(|e| Error::invalid_input(format!("processing-queue payload: {e}")))?;
        rows.push(vec![
            ws_v(ws),
            s(&q.id),
            s(&q.kind),
            s(&payload),
            s(&q.status),
            i(i64::from(q.attempts)),
            micros(q.run_after),
        ]);
    }
    insert_rows(
        txn,
        "INSERT INTO processing_queue (workspace_id, job_id, kind, payload, status, attempts, run_after)",
        7,
        rows,
        "ON CONFLICT (workspace_id, job_id) DO UPDATE SET kind = excluded.kind, payload = excluded.payload, \
         status = excluded.status, attempts = excluded.attempts, run_after = excluded.run_after",
    )
    .await
    .db(be, "writing processing-queue jobs")?;
    Ok(())
}

async fn write_bot_config(
    txn: &Txn,
    be: &'static str,
    ws: &WorkspaceId,
    batch: &WriteBatch,
) -> Result<()> {
    let mut rows = Vec::new();
    for c in last_by_key(&batch.bot_config, |c| c.key.clone()) {
        let value = serde_json::to_string(&c.value)
            .map_err(|e| Error::invalid_input(format!("bot config {}: {e}", c.key)))?;
        rows.push(vec![ws_v(ws), s(&c.key), s(&value)]);
    }
    insert_rows(
        txn,
        "INSERT INTO bot_config (workspace_id, config_key, value)",
        3,
        rows,
        "ON CONFLICT (workspace_id, config_key) DO UPDATE SET value = excluded.value",
    )
    .await
    .db(be, "writing bot config")?;
    Ok(())
}

/// Time spent in each phase of one `apply`, logged at debug level (target
/// `chatvault_storage_postgres::apply`) for performance work.
struct Phases {
    at: std::time::Instant,
    done: Vec<(&'static str, std::time::Duration)>,
}

impl Phases {
    fn new() -> Self {
        Phases {
            at: std::time::Instant::now(),
            done: Vec::with_capacity(12),
        }
    }

    /// Ends the phase called `name`.
    fn mark(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((name, now - self.at));
        self.at = now;
    }

    fn log(&self, messages: usize) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let phases: Vec<String> = self
                .done
                .iter()
                .map(|(n, d)| format!("{n}={:.1}ms", d.as_secs_f64() * 1000.0))
                .collect();
            tracing::debug!(messages, phases = %phases.join(" "), "apply");
        }
    }
}
