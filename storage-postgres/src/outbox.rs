//! The outbox: claim under a lease (per-message order kept), ack, fail with backoff, dead letters.
//!
//! A claim is one `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING …` statement: on PostgreSQL
//! the inner select takes `FOR UPDATE SKIP LOCKED`, so concurrent claimers skip each other's rows
//! instead of waiting; on SQLite one statement holds the database's write lock from start to end
//! (and the store serialises its own writers), which gives the same exclusion. The lease column
//! then keeps the rows away from other claimers after the statement commits.
//!
//! Leases of owners known to be dead ([`LeaseOwner::is_gone`]) end at once: a claim first lists
//! the distinct owners of unexpired leases (a handful: one per live relay), checks each in Rust,
//! and lets the claim take the dead ones' rows as if their leases had expired.

use std::collections::HashMap;

use chatvault_core::{
    ClaimRequest, Error, FailOutcome, LeaseOwner, MessageKey, OutboxEntry, OutboxFailure, OutboxId,
    OutboxOp, OutboxStats, Result, RetryPolicy, WorkspaceId,
};
use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, TransactionTrait};

use crate::error::DbResultExt;
use crate::read::{decode_key, parse_channel, parse_ts, rows, time_of};
use crate::sql::{key_chunk, max_params, Cols, Sql};
use crate::store::SqlMetadataStore;
use crate::validate::MAX_LONG;

const ENTRY_COLS: &str =
    "id, workspace_id, channel_id, ts, payload, attempts, last_error, created_at, available_at, dead";

fn decode_entry(c: &mut Cols<'_>) -> std::result::Result<Result<OutboxEntry>, DbErr> {
    let id: i64 = c.next()?;
    let ws: String = c.next()?;
    let channel: String = c.next()?;
    let ts: String = c.next()?;
    let payload: String = c.next()?;
    let attempts: i64 = c.next()?;
    let last_error: Option<String> = c.next()?;
    let created_at: i64 = c.next()?;
    let available_at: i64 = c.next()?;
    let dead: bool = c.next()?;
    Ok((|| {
        let op: OutboxOp = serde_json::from_str(&payload).map_err(|e| {
            Error::backend_error(format!(
                "stored outbox entry {id} is not a valid change: {e}"
            ))
        })?;
        Ok(OutboxEntry {
            id,
            key: MessageKey::new(
                WorkspaceId::new(ws).map_err(|e| Error::backend_error(e.message().to_string()))?,
                parse_channel(&channel)?,
                parse_ts(&ts)?,
            ),
            op,
            attempts: attempts.clamp(0, i64::from(u32::MAX)) as u32,
            last_error,
            created_at: time_of(Some(created_at)).unwrap_or_default(),
            available_at: time_of(Some(available_at)).unwrap_or_default(),
            dead,
        })
    })())
}

async fn entries<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    doing: &'static str,
    q: Sql,
) -> Result<Vec<OutboxEntry>> {
    let rows = conn
        .query_all(q.stmt(conn.get_database_backend()))
        .await
        .db(be, doing)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(decode_entry(&mut Cols::new(r)).db(be, doing)??);
    }
    out.sort_by_key(|e| e.id);
    Ok(out)
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

pub(crate) async fn claim(
    store: &SqlMetadataStore,
    req: &ClaimRequest,
) -> Result<Vec<OutboxEntry>> {
    let be = store.backend();
    store.ensure_writable()?;
    if req.limit == 0 {
        return Ok(Vec::new());
    }
    let now = Utc::now().timestamp_micros();
    let gone = gone_owners(store, req.workspace.as_ref(), now).await?;
    let until = now.saturating_add(micros(req.lease));
    let mut q = Sql::new("UPDATE outbox SET lease_until = ");
    q.bind(until)
        .push(", lease_owner = ")
        .bind(truncate(&req.owner, 256));
    q.push(" WHERE id IN (SELECT o.id FROM outbox o WHERE NOT o.dead AND o.available_at <= ")
        .bind(now);
    q.push(" AND (o.lease_until IS NULL OR o.lease_until <= ")
        .bind(now);
    if !gone.is_empty() {
        q.push(" OR o.lease_owner IN (");
        q.bind_list(gone).push(")");
    }
    q.push(")");
    if let Some(ws) = &req.workspace {
        q.push(" AND o.workspace_id = ").bind(ws.as_str());
    }
    // Per-message order: only a message's oldest live entry may be handed out.
    q.push(
        " AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.workspace_id = o.workspace_id \
         AND p.channel_id = o.channel_id AND p.ts = o.ts AND p.id < o.id AND NOT p.dead) \
         ORDER BY o.id LIMIT ",
    );
    q.bind(i64::try_from(req.limit).unwrap_or(i64::MAX));
    if store.db().get_database_backend() == DatabaseBackend::Postgres {
        q.push(" FOR UPDATE SKIP LOCKED");
    }
    q.push(&format!(") RETURNING {ENTRY_COLS}"));
    let _writer = store.writer_lock().await?;
    entries(store.db(), be, "claiming outbox entries", q).await
}

/// The most dead owners one claim looks at; more are taken by the next claims.
const MAX_GONE_OWNERS: usize = 64;

/// The owners of unexpired leases (of one workspace's entries, or all) that are known to be dead.
async fn gone_owners(
    store: &SqlMetadataStore,
    ws: Option<&WorkspaceId>,
    now: i64,
) -> Result<Vec<String>> {
    let mut q =
        Sql::new("SELECT DISTINCT lease_owner FROM outbox WHERE NOT dead AND lease_until > ");
    q.bind(now);
    if let Some(ws) = ws {
        q.push(" AND workspace_id = ").bind(ws.as_str());
    }
    let owners: Vec<Option<String>> = rows(
        store.db(),
        store.backend(),
        "listing outbox lease owners",
        q,
        |c| c.next().map(Ok),
    )
    .await?;
    Ok(owners
        .into_iter()
        .flatten()
        .filter(|o| LeaseOwner::is_gone_str(o))
        .take(MAX_GONE_OWNERS)
        .collect())
}

pub(crate) async fn release(store: &SqlMetadataStore, ids: &[OutboxId]) -> Result<u64> {
    let be = store.backend();
    store.ensure_writable()?;
    if ids.is_empty() {
        return Ok(0);
    }
    let backend = store.db().get_database_backend();
    let _writer = store.writer_lock().await?;
    let mut total = 0;
    for chunk in ids.chunks(max_params(backend) - 8) {
        let mut q = Sql::new(
            "UPDATE outbox SET lease_until = NULL, lease_owner = NULL \
             WHERE NOT dead AND lease_until IS NOT NULL AND id IN (",
        );
        q.bind_list(chunk.iter().copied()).push(")");
        total += store
            .db()
            .execute(q.stmt(backend))
            .await
            .db(be, "releasing outbox entries")?
            .rows_affected();
    }
    Ok(total)
}

pub(crate) async fn ack(store: &SqlMetadataStore, ids: &[OutboxId]) -> Result<()> {
    let be = store.backend();
    store.ensure_writable()?;
    if ids.is_empty() {
        return Ok(());
    }
    let backend = store.db().get_database_backend();
    let _writer = store.writer_lock().await?;
    let txn = store.db().begin().await.db(be, "beginning an ack")?;
    // (workspace, channel, ts) -> (id, op) of the newest acked upsert/delete.
    let mut last: HashMap<(String, String, String), (i64, String)> = HashMap::new();
    for chunk in ids.chunks(max_params(backend) - 8) {
        let mut q = Sql::new("DELETE FROM outbox WHERE id IN (");
        q.bind_list(chunk.iter().copied())
            .push(") RETURNING id, workspace_id, channel_id, ts, op");
        let rows = txn
            .query_all(q.stmt(backend))
            .await
            .db(be, "acking outbox entries")?;
        for r in &rows {
            let mut c = Cols::new(r);
            let id: i64 = c.next().db(be, "acking outbox entries")?;
            let ws: String = c.next().db(be, "acking outbox entries")?;
            let ch: String = c.next().db(be, "acking outbox entries")?;
            let ts: String = c.next().db(be, "acking outbox entries")?;
            let op: String = c.next().db(be, "acking outbox entries")?;
            // Neither changes whether the message has content.
            if op == "attributes" || op == "reindex" {
                continue;
            }
            let e = last.entry((ws, ch, ts)).or_insert((id, op.clone()));
            if id >= e.0 {
                *e = (id, op);
            }
        }
    }
    // The content id is derived from the key (`channel:ts`), so it is set without a lookup.
    let mut groups: HashMap<(String, bool), Vec<(String, String)>> = HashMap::new();
    for ((ws, ch, ts), (_, op)) in last {
        groups
            .entry((ws, op == "upsert"))
            .or_default()
            .push((ch, ts));
    }
    for ((ws, upsert), keys) in groups {
        for chunk in keys.chunks(key_chunk(backend, 1)) {
            let mut q = Sql::new(if upsert {
                "UPDATE message_metadata SET content_id = channel_id || ':' || ts WHERE workspace_id = "
            } else {
                "UPDATE message_metadata SET content_id = NULL WHERE workspace_id = "
            });
            q.bind(ws.as_str())
                .push(" AND (channel_id, ts) IN (SELECT column1, column2 FROM (VALUES ");
            for (i, (c, t)) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.push("(")
                    .bind(c.as_str())
                    .push(", ")
                    .bind(t.as_str())
                    .push(")");
            }
            // The subquery form, not `IN (VALUES …)`: see `Sql::bind_keys`.
            q.push(") AS keys)");
            txn.execute(q.stmt(backend))
                .await
                .db(be, "recording content ids")?;
        }
    }
    txn.commit().await.db(be, "committing an ack")?;
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

pub(crate) async fn fail(
    store: &SqlMetadataStore,
    failures: &[OutboxFailure],
    policy: &RetryPolicy,
) -> Result<Vec<FailOutcome>> {
    let be = store.backend();
    let backend = store.db().get_database_backend();
    let now = Utc::now();
    let _writer = store.writer_lock().await?;
    let txn = store.db().begin().await.db(be, "beginning a fail")?;
    let mut out = Vec::with_capacity(failures.len());
    for f in failures {
        let mut q = Sql::new("SELECT attempts FROM outbox WHERE id = ");
        q.bind(f.id);
        if backend == DatabaseBackend::Postgres {
            q.push(" FOR UPDATE");
        }
        let row = txn
            .query_one(q.stmt(backend))
            .await
            .db(be, "failing an outbox entry")?;
        let Some(row) = row else {
            out.push(FailOutcome::Missing { id: f.id });
            continue;
        };
        let attempts: i64 = row.try_get_by_index(0).db(be, "failing an outbox entry")?;
        let attempts = (attempts.clamp(0, i64::from(u32::MAX)) as u32).saturating_add(1);
        let dead = !f.retryable || attempts >= policy.max_attempts;
        let at = now
            + chrono::Duration::from_std(policy.delay_after(attempts))
                .unwrap_or(chrono::Duration::MAX);
        let mut q = Sql::new("UPDATE outbox SET attempts = ");
        q.bind(i64::from(attempts));
        q.push(", last_error = ").bind(truncate(&f.error, MAX_LONG));
        q.push(", lease_until = NULL, lease_owner = NULL, dead = ")
            .bind(dead);
        if !dead {
            q.push(", available_at = ").bind(at.timestamp_micros());
        }
        q.push(" WHERE id = ").bind(f.id);
        txn.execute(q.stmt(backend))
            .await
            .db(be, "failing an outbox entry")?;
        out.push(if dead {
            FailOutcome::DeadLettered { id: f.id }
        } else {
            FailOutcome::Retry { id: f.id, at }
        });
    }
    txn.commit().await.db(be, "committing a fail")?;
    Ok(out)
}

pub(crate) async fn dead_letters(
    store: &SqlMetadataStore,
    ws: Option<&WorkspaceId>,
    limit: usize,
) -> Result<Vec<OutboxEntry>> {
    let mut q = Sql::new(&format!("SELECT {ENTRY_COLS} FROM outbox WHERE dead"));
    if let Some(ws) = ws {
        q.push(" AND workspace_id = ").bind(ws.as_str());
    }
    q.push(" ORDER BY id LIMIT ")
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
    entries(store.db(), store.backend(), "listing dead letters", q).await
}

pub(crate) async fn requeue(
    store: &SqlMetadataStore,
    ws: Option<&WorkspaceId>,
    ids: Option<&[OutboxId]>,
) -> Result<u64> {
    store.ensure_writable()?;
    if ids.is_some_and(|i| i.is_empty()) {
        return Ok(0);
    }
    let be = store.backend();
    let backend = store.db().get_database_backend();
    let now = Utc::now().timestamp_micros();
    let _writer = store.writer_lock().await?;
    let mut total = 0;
    let chunks: Vec<Option<&[OutboxId]>> = match ids {
        Some(ids) => ids.chunks(max_params(backend) - 8).map(Some).collect(),
        None => vec![None],
    };
    for chunk in chunks {
        let mut q = Sql::new("UPDATE outbox SET dead = ");
        q.bind(false)
            .push(", attempts = 0, lease_until = NULL, lease_owner = NULL, available_at = ")
            .bind(now);
        q.push(" WHERE dead");
        if let Some(ws) = ws {
            q.push(" AND workspace_id = ").bind(ws.as_str());
        }
        if let Some(ids) = chunk {
            q.push(" AND id IN (");
            q.bind_list(ids.iter().copied()).push(")");
        }
        total += store
            .db()
            .execute(q.stmt(backend))
            .await
            .db(be, "re-queueing dead letters")?
            .rows_affected();
    }
    Ok(total)
}

pub(crate) async fn undelivered_keys(
    store: &SqlMetadataStore,
    ws: &WorkspaceId,
    limit: usize,
) -> Result<Vec<MessageKey>> {
    let mut q = Sql::new("SELECT DISTINCT channel_id, ts FROM outbox WHERE workspace_id = ");
    q.bind(ws.as_str());
    q.push(" ORDER BY channel_id, ts LIMIT ")
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
    rows(
        store.db(),
        store.backend(),
        "listing undelivered outbox keys",
        q,
        |c| {
            let ch: String = c.next()?;
            let ts: String = c.next()?;
            Ok(decode_key(ws, &ch, &ts))
        },
    )
    .await
}

pub(crate) async fn stats(
    store: &SqlMetadataStore,
    ws: Option<&WorkspaceId>,
) -> Result<OutboxStats> {
    let be = store.backend();
    let now = Utc::now().timestamp_micros();
    let mut q = Sql::new(
        "SELECT COUNT(CASE WHEN dead THEN 1 END), COUNT(CASE WHEN NOT dead AND lease_until > ",
    );
    q.bind(now);
    q.push(" THEN 1 END), COUNT(CASE WHEN NOT dead AND (lease_until IS NULL OR lease_until <= ")
        .bind(now);
    q.push(") THEN 1 END), MIN(CASE WHEN NOT dead AND lease_until > ")
        .bind(now);
    q.push(" THEN lease_until END), MIN(CASE WHEN NOT dead THEN created_at END) FROM outbox");
    if let Some(ws) = ws {
        q.push(" WHERE workspace_id = ").bind(ws.as_str());
    }
    let row = store
        .db()
        .query_one(q.stmt(store.db().get_database_backend()))
        .await
        .db(be, "counting outbox entries")?;
    let Some(row) = row else {
        return Ok(OutboxStats::default());
    };
    let mut c = Cols::new(&row);
    let dead: i64 = c.next().db(be, "counting outbox entries")?;
    let leased: i64 = c.next().db(be, "counting outbox entries")?;
    let pending: i64 = c.next().db(be, "counting outbox entries")?;
    let next_lease_expiry: Option<i64> = c.next().db(be, "counting outbox entries")?;
    let oldest_live: Option<i64> = c.next().db(be, "counting outbox entries")?;
    Ok(OutboxStats {
        pending: pending.max(0) as u64,
        leased: leased.max(0) as u64,
        dead: dead.max(0) as u64,
        next_lease_expiry: time_of(next_lease_expiry),
        oldest_live: time_of(oldest_live),
    })
}
