//! Index-text refreshes: which stored messages a batch's renames touch, and the explicit
//! [`reindex_content`](chatvault_core::MetadataStore::reindex_content) request. Both enqueue
//! `Reindex` outbox entries for messages that have content; the relay rebuilds their index text
//! from the current names.

use std::collections::{BTreeSet, HashMap};

use chatvault_core::{
    ChannelId, MessageKey, OutboxOp, Result, Ts, User, UserId, WorkspaceId, WriteBatch,
};
use sea_orm::{ConnectionTrait, DbErr};

use crate::error::DbResultExt;
use crate::read::{parse_channel, parse_ts};
use crate::sql::{key_chunk, Sql};
use crate::store::SqlMetadataStore;
use crate::txn::Txn;

/// The stored messages with content whose author or channel this batch renames (a user whose
/// [`best_name`](User::best_name) differs from the stored one or who was not stored, a channel
/// whose name differs or that was not stored), ordered by (channel, ts). Read before the batch's
/// users and channels are written.
pub(crate) async fn renamed_message_keys(
    txn: &Txn,
    be: &'static str,
    ws: &WorkspaceId,
    batch: &WriteBatch,
) -> Result<Vec<(ChannelId, Ts)>> {
    let backend = txn.get_database_backend();
    let mut users: Vec<&UserId> = Vec::new();
    if !batch.users.is_empty() {
        let ids: Vec<&UserId> = batch.users.iter().map(|u| &u.id).collect();
        let mut stored: HashMap<String, String> = HashMap::new();
        for chunk in ids.chunks(key_chunk(backend, 1)) {
            let mut q = Sql::new(
                "SELECT user_id, name, real_name, display_name FROM users WHERE workspace_id = ",
            );
            q.bind(ws.as_str()).push(" AND user_id IN (");
            q.bind_list(chunk.iter().map(|u| u.as_str())).push(")");
            for row in txn
                .query_all(q.stmt(backend))
                .await
                .db(be, "loading user names")?
            {
                let read = || -> std::result::Result<_, DbErr> {
                    Ok((
                        row.try_get_by_index::<String>(0)?,
                        row.try_get_by_index::<String>(1)?,
                        row.try_get_by_index::<Option<String>>(2)?,
                        row.try_get_by_index::<Option<String>>(3)?,
                    ))
                };
                let (id, name, real_name, display_name) = read().db(be, "reading a user")?;
                let Ok(uid) = UserId::new(id.as_str()) else {
                    continue;
                };
                let mut u = User::new(uid, name);
                u.real_name = real_name;
                u.display_name = display_name;
                stored.insert(id, u.best_name().to_string());
            }
        }
        // The last write of a user in the batch is the one that stays.
        let mut last: HashMap<&UserId, &User> = HashMap::new();
        for u in &batch.users {
            last.insert(&u.id, u);
        }
        for (id, u) in last {
            if stored.get(id.as_str()).map(String::as_str) != Some(u.best_name()) {
                users.push(id);
            }
        }
    }
    let mut channels: Vec<&ChannelId> = Vec::new();
    if !batch.channels.is_empty() {
        let ids: Vec<&ChannelId> = batch.channels.iter().map(|c| &c.id).collect();
        let mut stored: HashMap<String, String> = HashMap::new();
        for chunk in ids.chunks(key_chunk(backend, 1)) {
            let mut q = Sql::new("SELECT channel_id, name FROM channels WHERE workspace_id = ");
            q.bind(ws.as_str()).push(" AND channel_id IN (");
            q.bind_list(chunk.iter().map(|c| c.as_str())).push(")");
            for row in txn
                .query_all(q.stmt(backend))
                .await
                .db(be, "loading channel names")?
            {
                let id: String = row.try_get_by_index(0).db(be, "reading a channel")?;
                let name: String = row.try_get_by_index(1).db(be, "reading a channel")?;
                stored.insert(id, name);
            }
        }
        let mut last: HashMap<&ChannelId, &str> = HashMap::new();
        for c in &batch.channels {
            last.insert(&c.id, c.name.as_str());
        }
        for (id, name) in last {
            if stored.get(id.as_str()).map(String::as_str) != Some(name) {
                channels.push(id);
            }
        }
    }
    let mut keys: BTreeSet<(ChannelId, Ts)> = BTreeSet::new();
    for (column, ids) in [
        (
            "user_id",
            users.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
        ),
        (
            "channel_id",
            channels.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        ),
    ] {
        for chunk in ids.chunks(key_chunk(backend, 1)) {
            let mut q =
                Sql::new("SELECT channel_id, ts FROM message_metadata WHERE workspace_id = ");
            q.bind(ws.as_str())
                .push(" AND content_hash IS NOT NULL AND ")
                .push(column)
                .push(" IN (");
            q.bind_list(chunk.iter().copied()).push(")");
            for row in txn
                .query_all(q.stmt(backend))
                .await
                .db(be, "finding renamed messages")?
            {
                let c: String = row.try_get_by_index(0).db(be, "reading a message key")?;
                let t: String = row.try_get_by_index(1).db(be, "reading a message key")?;
                keys.insert((parse_channel(&c)?, parse_ts(&t)?));
            }
        }
    }
    Ok(keys.into_iter().collect())
}

/// [`MetadataStore::reindex_content`](chatvault_core::MetadataStore::reindex_content): one
/// `INSERT … SELECT` per chunk of keys, in one transaction.
pub(crate) async fn reindex_content(
    store: &SqlMetadataStore,
    ws: &WorkspaceId,
    keys: &[MessageKey],
) -> Result<u64> {
    let be = store.backend();
    for k in keys {
        k.ensure_workspace(ws).map_err(|e| e.with_backend(be))?;
    }
    if keys.is_empty() {
        return Ok(0);
    }
    let payload = serde_json::to_string(&OutboxOp::Reindex).expect("an op always serializes");
    let now = chrono::Utc::now().timestamp_micros();
    let _writer = store.writer_lock().await?;
    let txn = Txn::begin(store)
        .await
        .db(be, "beginning the reindex transaction")?;
    store.lock_workspace(&txn, ws).await?;
    let backend = txn.get_database_backend();
    let mut n = 0;
    // Keys in (channel, ts) order, so a message's entries keep a stable order among themselves.
    let mut sorted: Vec<&MessageKey> = keys.iter().collect();
    sorted.sort();
    sorted.dedup();
    for chunk in sorted.chunks(key_chunk(backend, 6)) {
        let mut q = Sql::new(
            "INSERT INTO outbox (workspace_id, channel_id, ts, op, payload, attempts, created_at, available_at, dead) \
             SELECT workspace_id, channel_id, ts, ",
        );
        q.bind(OutboxOp::Reindex.name())
            .push(", ")
            .bind(payload.as_str())
            .push(", 0, ")
            .bind(now)
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(false)
            .push(" FROM message_metadata WHERE workspace_id = ")
            .bind(ws.as_str())
            .push(" AND content_hash IS NOT NULL AND ");
        q.bind_keys(
            "channel_id",
            "ts",
            chunk.iter().map(|k| (&k.channel, &k.ts)),
        );
        q.push(" ORDER BY channel_id, ts");
        n += txn
            .execute(q.stmt(backend))
            .await
            .db(be, "enqueueing reindex entries")?
            .rows_affected();
    }
    txn.commit()
        .await
        .db(be, "committing the reindex entries")?;
    store.request_checkpoint();
    Ok(n)
}
