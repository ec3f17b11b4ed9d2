//! Reads: messages and what hangs off them, filters, listings and the aggregates that replace
//! the seed's views. Every query names one workspace.

use std::collections::HashMap;

use chatvault_core::{
    AggregateOptions, Bookmark, BotConfig, Channel, ChannelActivity, ChannelId, ChannelKind,
    ChannelLatest, ContentIndexEntry, DomainCount, Error, FileRef, LatestOptions, Link, LinkCount,
    LinkQuery, LinkSource, MessageDetails, MessageFilter, MessageKey, MessageMeta, PageRequest,
    ProcessingQueueEntry, ReactedMessage, Reaction, Result, SharedLink, SyncState, SyncStatus,
    Team, TeamId, ThreadActivity, ThreadFilter, TimeRange, Ts, User, UserActivity, UserId,
    WorkspaceId, WorkspaceStats, ACTIVITY_SUBTYPES,
};
use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{ConnectionTrait, DbErr, QueryResult};

use crate::error::DbResultExt;
use crate::sql::{key_chunk, max_params, Cols, Sql};

type Key = (ChannelId, Ts);

// ----- decoding stored values -----

fn corrupt(what: &str, e: Error) -> Error {
    Error::backend_error(format!("stored {what} is invalid: {}", e.message()))
}

pub(crate) fn parse_channel(s: &str) -> Result<ChannelId> {
    ChannelId::new(s).map_err(|e| corrupt("channel id", e))
}

pub(crate) fn parse_ts(s: &str) -> Result<Ts> {
    Ts::new(s).map_err(|e| corrupt("ts", e))
}

fn parse_user(s: &str) -> Result<UserId> {
    UserId::new(s).map_err(|e| corrupt("user id", e))
}

fn opt<T>(v: Option<String>, f: impl Fn(&str) -> Result<T>) -> Result<Option<T>> {
    v.as_deref().map(f).transpose()
}

fn u32_of(v: i64) -> u32 {
    v.clamp(0, i64::from(u32::MAX)) as u32
}

fn u64_of(v: i64) -> u64 {
    v.max(0) as u64
}

pub(crate) fn time_of(micros: Option<i64>) -> Option<DateTime<Utc>> {
    micros.and_then(|m| Utc.timestamp_micros(m).single())
}

fn parse_json(what: &str, s: &str) -> Result<serde_json::Value> {
    serde_json::from_str(s)
        .map_err(|e| Error::backend_error(format!("stored {what} is not JSON: {e}")))
}

/// Runs a query and decodes every row with `f`.
pub(crate) async fn rows<C: ConnectionTrait, T>(
    conn: &C,
    be: &'static str,
    doing: &'static str,
    q: Sql,
    mut f: impl FnMut(&mut Cols<'_>) -> std::result::Result<Result<T>, DbErr>,
) -> Result<Vec<T>> {
    let all: Vec<QueryResult> = conn
        .query_all(q.stmt(conn.get_database_backend()))
        .await
        .db(be, doing)?;
    let mut out = Vec::with_capacity(all.len());
    for r in &all {
        let mut c = Cols::new(r);
        out.push(f(&mut c).db(be, doing)??);
    }
    Ok(out)
}

// ----- messages -----

const META_COLS: &str =
    "channel_id, ts, user_id, bot_id, thread_ts, reply_count, reply_users_count, \
    latest_reply, subtype, edited, has_attachments, has_files, has_reactions, reaction_count, \
    mention_count, link_count, content_id, content_hash";

fn decode_meta(
    ws: &WorkspaceId,
    c: &mut Cols<'_>,
) -> std::result::Result<Result<MessageMeta>, DbErr> {
    let channel: String = c.next()?;
    let ts: String = c.next()?;
    let user: Option<String> = c.next()?;
    let bot_id: Option<String> = c.next()?;
    let thread_ts: Option<String> = c.next()?;
    let reply_count: i64 = c.next()?;
    let reply_users_count: i64 = c.next()?;
    let latest_reply: Option<String> = c.next()?;
    let subtype: Option<String> = c.next()?;
    let edited: Option<String> = c.next()?;
    let has_attachments: bool = c.next()?;
    let has_files: bool = c.next()?;
    let has_reactions: bool = c.next()?;
    let reaction_count: i64 = c.next()?;
    let mention_count: i64 = c.next()?;
    let link_count: i64 = c.next()?;
    let content_id: Option<String> = c.next()?;
    let content_hash: Option<String> = c.next()?;
    Ok((|| {
        Ok(MessageMeta {
            key: MessageKey::new(ws.clone(), parse_channel(&channel)?, parse_ts(&ts)?),
            user: opt(user, parse_user)?,
            bot_id,
            thread_ts: opt(thread_ts, parse_ts)?,
            reply_count: u32_of(reply_count),
            reply_users_count: u32_of(reply_users_count),
            latest_reply: opt(latest_reply, parse_ts)?,
            subtype,
            edited: opt(edited, parse_ts)?,
            has_attachments,
            has_files,
            has_reactions,
            reaction_count: u32_of(reaction_count),
            mention_count: u32_of(mention_count),
            link_count: u32_of(link_count),
            content_id,
            content_hash,
        })
    })())
}

/// The stored metadata of these messages (any order; missing ones left out).
pub(crate) async fn load_metas<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    keys: &[Key],
) -> Result<Vec<MessageMeta>> {
    let backend = conn.get_database_backend();
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(key_chunk(backend, 1)) {
        let mut q = Sql::new(&format!(
            "SELECT {META_COLS} FROM message_metadata WHERE workspace_id = "
        ));
        q.bind(ws.as_str()).push(" AND ");
        q.bind_keys("channel_id", "ts", chunk.iter().map(|(c, t)| (c, t)));
        out.extend(rows(conn, be, "loading messages", q, |c| decode_meta(ws, c)).await?);
    }
    Ok(out)
}

/// The stored reactions of these messages, by emoji name.
pub(crate) async fn load_reactions<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    keys: &[Key],
) -> Result<HashMap<Key, Vec<Reaction>>> {
    let backend = conn.get_database_backend();
    let mut out: HashMap<Key, Vec<Reaction>> = HashMap::new();
    for chunk in keys.chunks(key_chunk(backend, 1)) {
        let mut q = Sql::new(
            "SELECT channel_id, ts, name, count, users FROM reactions WHERE workspace_id = ",
        );
        q.bind(ws.as_str()).push(" AND ");
        q.bind_keys("channel_id", "ts", chunk.iter().map(|(c, t)| (c, t)));
        q.push(" ORDER BY channel_id, ts, name");
        let got = rows(conn, be, "loading reactions", q, |c| {
            let channel: String = c.next()?;
            let ts: String = c.next()?;
            let name: String = c.next()?;
            let count: i64 = c.next()?;
            let users: String = c.next()?;
            Ok((|| {
                let users: Vec<UserId> = serde_json::from_str(&users).map_err(|e| {
                    Error::backend_error(format!("stored reaction users are invalid: {e}"))
                })?;
                Ok((
                    (parse_channel(&channel)?, parse_ts(&ts)?),
                    Reaction {
                        name,
                        users,
                        count: u32_of(count),
                    },
                ))
            })())
        })
        .await?;
        for (k, r) in got {
            out.entry(k).or_default().push(r);
        }
    }
    Ok(out)
}

fn decode_link(c: &mut Cols<'_>) -> std::result::Result<(Key, Link), DbErr> {
    let channel: String = c.next()?;
    let ts: String = c.next()?;
    let url: String = c.next()?;
    let domain: String = c.next()?;
    let source: String = c.next()?;
    let title: Option<String> = c.next()?;
    let source = match source.as_str() {
        "attachment" => LinkSource::Attachment,
        "block" => LinkSource::Block,
        _ => LinkSource::Text,
    };
    // The key is validated by the caller (parse errors surface there).
    Ok((
        (
            ChannelId::new(&channel).map_err(|e| DbErr::Custom(e.to_string()))?,
            Ts::new(&ts).map_err(|e| DbErr::Custom(e.to_string()))?,
        ),
        Link {
            url,
            domain,
            source,
            title,
        },
    ))
}

pub(crate) async fn get_messages<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    keys: &[MessageKey],
) -> Result<Vec<MessageDetails>> {
    for k in keys {
        k.ensure_workspace(ws).map_err(|e| e.with_backend(be))?;
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let backend = conn.get_database_backend();
    let mut uniq: Vec<Key> = keys
        .iter()
        .map(|k| (k.channel.clone(), k.ts.clone()))
        .collect();
    uniq.sort();
    uniq.dedup();
    let metas: HashMap<Key, MessageMeta> = load_metas(conn, be, ws, &uniq)
        .await?
        .into_iter()
        .map(|m| ((m.key.channel.clone(), m.key.ts.clone()), m))
        .collect();
    let present: Vec<Key> = uniq.into_iter().filter(|k| metas.contains_key(k)).collect();
    let reactions = load_reactions(conn, be, ws, &present).await?;
    let mut links: HashMap<Key, Vec<Link>> = HashMap::new();
    let mut files: HashMap<Key, Vec<FileRef>> = HashMap::new();
    for chunk in present.chunks(key_chunk(backend, 1)) {
        let mut q = Sql::new(
            "SELECT channel_id, ts, url, domain, source, title FROM links WHERE workspace_id = ",
        );
        q.bind(ws.as_str()).push(" AND ");
        q.bind_keys("channel_id", "ts", chunk.iter().map(|(c, t)| (c, t)));
        q.push(" ORDER BY channel_id, ts, position");
        for (k, l) in rows(conn, be, "loading links", q, |c| Ok(Ok(decode_link(c)?))).await? {
            links.entry(k).or_default().push(l);
        }
        let mut q = Sql::new(
            "SELECT channel_id, ts, file_id, name, title, mimetype, filetype, size, url_private, permalink \
             FROM files WHERE workspace_id = ",
        );
        q.bind(ws.as_str()).push(" AND ");
        q.bind_keys("channel_id", "ts", chunk.iter().map(|(c, t)| (c, t)));
        q.push(" ORDER BY channel_id, ts, position");
        let got = rows(conn, be, "loading files", q, |c| {
            let channel: String = c.next()?;
            let ts: String = c.next()?;
            let f = FileRef {
                id: c.next()?,
                name: c.next()?,
                title: c.next()?,
                mimetype: c.next()?,
                filetype: c.next()?,
                size: c.next::<Option<i64>>()?.map(u64_of),
                url_private: c.next()?,
                permalink: c.next()?,
            };
            Ok((|| Ok(((parse_channel(&channel)?, parse_ts(&ts)?), f)))())
        })
        .await?;
        for (k, f) in got {
            files.entry(k).or_default().push(f);
        }
    }
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let kk = (k.channel.clone(), k.ts.clone());
        if let Some(meta) = metas.get(&kk) {
            // a key asked for twice gets the same details twice
            let mut rs = reactions.get(&kk).cloned().unwrap_or_default();
            rs.sort_by(|a, b| a.name.cmp(&b.name));
            out.push(MessageDetails {
                meta: meta.clone(),
                reactions: rs,
                links: links.get(&kk).cloned().unwrap_or_default(),
                files: files.get(&kk).cloned().unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// Appends ` AND …` conditions for a message filter over `message_metadata m`.
fn push_filter(q: &mut Sql, f: &MessageFilter) {
    if let Some(cs) = &f.channels {
        if cs.is_empty() {
            q.push(" AND 1 = 0");
        } else {
            q.push(" AND m.channel_id IN (");
            q.bind_list(cs.iter().map(|c| c.as_str())).push(")");
        }
    }
    if let Some(us) = &f.users {
        if us.is_empty() {
            q.push(" AND 1 = 0");
        } else {
            q.push(" AND m.user_id IN (");
            q.bind_list(us.iter().map(|u| u.as_str())).push(")");
        }
    }
    if let Some(kinds) = &f.channel_kinds {
        // A channel the store does not know counts as public (as in the reference store).
        let public = kinds.contains(&ChannelKind::Public);
        q.push(" AND ");
        if public {
            q.push("NOT EXISTS (SELECT 1 FROM channels c WHERE c.workspace_id = m.workspace_id AND c.channel_id = m.channel_id");
            let others: Vec<&str> = [
                ChannelKind::Private,
                ChannelKind::Im,
                ChannelKind::Mpim,
                ChannelKind::Public,
            ]
            .iter()
            .filter(|k| !kinds.contains(k))
            .map(|k| k.as_str())
            .collect();
            if others.is_empty() {
                q.push(" AND 1 = 0)");
            } else {
                q.push(" AND c.kind IN (");
                q.bind_list(others).push("))");
            }
        } else if kinds.is_empty() {
            q.push("1 = 0");
        } else {
            q.push("EXISTS (SELECT 1 FROM channels c WHERE c.workspace_id = m.workspace_id AND c.channel_id = m.channel_id AND c.kind IN (");
            q.bind_list(kinds.iter().map(|k| k.as_str())).push("))");
        }
    }
    push_range(q, "m.ts_micros", &f.time);
    match &f.thread {
        None => {}
        Some(ThreadFilter::TopLevel) => {
            q.push(" AND NOT m.is_reply");
        }
        Some(ThreadFilter::Replies) => {
            q.push(" AND m.is_reply");
        }
        Some(ThreadFilter::Thread(t)) => {
            q.push(" AND (m.ts = ")
                .bind(t.as_str())
                .push(" OR m.thread_ts = ")
                .bind(t.as_str())
                .push(")");
        }
    }
    if let Some(v) = f.has_reactions {
        q.push(if v {
            " AND m.has_reactions"
        } else {
            " AND NOT m.has_reactions"
        });
    }
    if let Some(v) = f.has_files {
        q.push(if v {
            " AND m.has_files"
        } else {
            " AND NOT m.has_files"
        });
    }
    if let Some(v) = f.has_links {
        q.push(if v {
            " AND m.link_count > 0"
        } else {
            " AND m.link_count = 0"
        });
    }
    if let Some(v) = f.has_attachments {
        q.push(if v {
            " AND m.has_attachments"
        } else {
            " AND NOT m.has_attachments"
        });
    }
    if let Some(n) = f.min_reactions {
        q.push(" AND m.reaction_count >= ").bind(i64::from(n));
    }
}

fn push_range(q: &mut Sql, col: &str, r: &TimeRange) {
    if let Some(s) = r.start_micros() {
        q.push(&format!(" AND {col} >= ")).bind(s);
    }
    if let Some(e) = r.end_micros() {
        q.push(&format!(" AND {col} < ")).bind(e);
    }
}

fn push_channels(q: &mut Sql, col: &str, channels: &Option<Vec<ChannelId>>) {
    if let Some(cs) = channels {
        if cs.is_empty() {
            q.push(" AND 1 = 0");
        } else {
            q.push(&format!(" AND {col} IN ("));
            q.bind_list(cs.iter().map(|c| c.as_str())).push(")");
        }
    }
}

fn limit_of(n: usize) -> i64 {
    n.min(i64::MAX as usize) as i64
}

pub(crate) fn decode_key(ws: &WorkspaceId, channel: &str, ts: &str) -> Result<MessageKey> {
    Ok(MessageKey::new(
        ws.clone(),
        parse_channel(channel)?,
        parse_ts(ts)?,
    ))
}

pub(crate) async fn filter_messages<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    f: &MessageFilter,
    page: &PageRequest,
) -> Result<Vec<MessageKey>> {
    if page.limit == 0 {
        return Ok(Vec::new());
    }
    let mut q =
        Sql::new("SELECT m.channel_id, m.ts FROM message_metadata m WHERE m.workspace_id = ");
    q.bind(ws.as_str());
    push_filter(&mut q, f);
    if let Some(a) = &page.after {
        let m = a.ts.as_micros();
        q.push(" AND (m.ts_micros > ").bind(m);
        q.push(" OR (m.ts_micros = ")
            .bind(m)
            .push(" AND (m.ts > ")
            .bind(a.ts.as_str());
        q.push(" OR (m.ts = ")
            .bind(a.ts.as_str())
            .push(" AND m.channel_id > ")
            .bind(a.channel.as_str());
        q.push("))))");
    }
    q.push(" ORDER BY m.ts_micros, m.ts, m.channel_id LIMIT ")
        .bind(limit_of(page.limit));
    rows(conn, be, "filtering messages", q, |c| {
        let ch: String = c.next()?;
        let ts: String = c.next()?;
        Ok(decode_key(ws, &ch, &ts))
    })
    .await
}

pub(crate) async fn count_messages<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    f: &MessageFilter,
) -> Result<u64> {
    let mut q = Sql::new("SELECT COUNT(*) FROM message_metadata m WHERE m.workspace_id = ");
    q.bind(ws.as_str());
    push_filter(&mut q, f);
    let n = rows(conn, be, "counting messages", q, |c| {
        Ok(Ok(c.next::<i64>()?))
    })
    .await?;
    Ok(n.first().copied().map(u64_of).unwrap_or(0))
}

pub(crate) async fn content_index<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    page: &PageRequest,
) -> Result<Vec<ContentIndexEntry>> {
    if page.limit == 0 {
        return Ok(Vec::new());
    }
    let mut q = Sql::new(
        "SELECT m.channel_id, m.ts, m.content_hash, m.content_id FROM message_metadata m \
         WHERE m.content_hash IS NOT NULL AND m.workspace_id = ",
    );
    q.bind(ws.as_str());
    if let Some(a) = &page.after {
        let m = a.ts.as_micros();
        q.push(" AND (m.channel_id > ").bind(a.channel.as_str());
        q.push(" OR (m.channel_id = ")
            .bind(a.channel.as_str())
            .push(" AND (m.ts_micros > ")
            .bind(m);
        q.push(" OR (m.ts_micros = ")
            .bind(m)
            .push(" AND m.ts > ")
            .bind(a.ts.as_str())
            .push("))))");
    }
    q.push(" ORDER BY m.channel_id, m.ts_micros, m.ts LIMIT ")
        .bind(limit_of(page.limit));
    rows(conn, be, "listing the content index", q, |c| {
        let ch: String = c.next()?;
        let ts: String = c.next()?;
        let content_hash: String = c.next()?;
        let content_id: Option<String> = c.next()?;
        Ok((|| {
            Ok(ContentIndexEntry {
                key: decode_key(ws, &ch, &ts)?,
                content_hash,
                content_id,
            })
        })())
    })
    .await
}

// ----- channels, users, the rest -----

const CHANNEL_COLS: &str =
    "channel_id, name, kind, is_archived, is_general, topic, purpose, creator, created";

fn decode_channel(c: &mut Cols<'_>) -> std::result::Result<Result<Channel>, DbErr> {
    let id: String = c.next()?;
    let name: String = c.next()?;
    let kind: String = c.next()?;
    let is_archived: bool = c.next()?;
    let is_general: bool = c.next()?;
    let topic: Option<String> = c.next()?;
    let purpose: Option<String> = c.next()?;
    let creator: Option<String> = c.next()?;
    let created: Option<i64> = c.next()?;
    Ok((|| {
        Ok(Channel {
            id: parse_channel(&id)?,
            name,
            kind: ChannelKind::parse(&kind).ok_or_else(|| {
                Error::backend_error(format!("stored channel kind {kind:?} is invalid"))
            })?,
            is_archived,
            is_general,
            topic,
            purpose,
            creator: opt(creator, parse_user)?,
            created: time_of(created),
        })
    })())
}

pub(crate) async fn get_channel<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    channel: &ChannelId,
) -> Result<Option<Channel>> {
    let mut q = Sql::new(&format!(
        "SELECT {CHANNEL_COLS} FROM channels WHERE workspace_id = "
    ));
    q.bind(ws.as_str())
        .push(" AND channel_id = ")
        .bind(channel.as_str());
    Ok(rows(conn, be, "loading a channel", q, decode_channel)
        .await?
        .into_iter()
        .next())
}

pub(crate) async fn list_channels<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
) -> Result<Vec<Channel>> {
    let mut q = Sql::new(&format!(
        "SELECT {CHANNEL_COLS} FROM channels WHERE workspace_id = "
    ));
    q.bind(ws.as_str()).push(" ORDER BY name, channel_id");
    rows(conn, be, "listing channels", q, decode_channel).await
}

pub(crate) async fn channel_members<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    channel: &ChannelId,
) -> Result<Vec<UserId>> {
    let mut q = Sql::new("SELECT user_id FROM channel_members WHERE workspace_id = ");
    q.bind(ws.as_str())
        .push(" AND channel_id = ")
        .bind(channel.as_str())
        .push(" ORDER BY user_id");
    rows(conn, be, "listing channel members", q, |c| {
        Ok(parse_user(&c.next::<String>()?))
    })
    .await
}

pub(crate) async fn user_channels<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    user: &UserId,
) -> Result<Vec<ChannelId>> {
    let mut q = Sql::new("SELECT channel_id FROM channel_members WHERE workspace_id = ");
    q.bind(ws.as_str())
        .push(" AND user_id = ")
        .bind(user.as_str())
        .push(" ORDER BY channel_id");
    rows(conn, be, "listing a user's channels", q, |c| {
        Ok(parse_channel(&c.next::<String>()?))
    })
    .await
}

const USER_COLS: &str =
    "user_id, team_id, name, real_name, display_name, is_bot, is_deleted, is_admin, tz, email";

fn decode_user(c: &mut Cols<'_>) -> std::result::Result<Result<User>, DbErr> {
    let id: String = c.next()?;
    let team: Option<String> = c.next()?;
    let name: String = c.next()?;
    let real_name: Option<String> = c.next()?;
    let display_name: Option<String> = c.next()?;
    let is_bot: bool = c.next()?;
    let is_deleted: bool = c.next()?;
    let is_admin: bool = c.next()?;
    let tz: Option<String> = c.next()?;
    let email: Option<String> = c.next()?;
    Ok((|| {
        Ok(User {
            id: parse_user(&id)?,
            team: opt(team, |t| TeamId::new(t).map_err(|e| corrupt("team id", e)))?,
            name,
            real_name,
            display_name,
            is_bot,
            is_deleted,
            is_admin,
            tz,
            email,
        })
    })())
}

pub(crate) async fn get_users<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    ids: &[UserId],
) -> Result<Vec<User>> {
    let backend = conn.get_database_backend();
    let mut found: HashMap<UserId, User> = HashMap::new();
    for chunk in ids.chunks(key_chunk(backend, 1)) {
        let mut q = Sql::new(&format!(
            "SELECT {USER_COLS} FROM users WHERE workspace_id = "
        ));
        q.bind(ws.as_str()).push(" AND user_id IN (");
        q.bind_list(chunk.iter().map(|u| u.as_str())).push(")");
        for u in rows(conn, be, "loading users", q, decode_user).await? {
            found.insert(u.id.clone(), u);
        }
    }
    Ok(ids.iter().filter_map(|i| found.get(i).cloned()).collect())
}

pub(crate) async fn list_users<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
) -> Result<Vec<User>> {
    let mut q = Sql::new(&format!(
        "SELECT {USER_COLS} FROM users WHERE workspace_id = "
    ));
    q.bind(ws.as_str()).push(" ORDER BY user_id");
    rows(conn, be, "listing users", q, decode_user).await
}

pub(crate) async fn list_teams<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
) -> Result<Vec<Team>> {
    let mut q = Sql::new("SELECT team_id, name, domain FROM teams WHERE workspace_id = ");
    q.bind(ws.as_str()).push(" ORDER BY team_id");
    rows(conn, be, "listing teams", q, |c| {
        let id: String = c.next()?;
        let name: String = c.next()?;
        let domain: Option<String> = c.next()?;
        Ok((|| {
            Ok(Team {
                id: TeamId::new(id).map_err(|e| corrupt("team id", e))?,
                name,
                domain,
            })
        })())
    })
    .await
}

pub(crate) async fn list_bookmarks<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    channel: Option<&ChannelId>,
) -> Result<Vec<Bookmark>> {
    let mut q = Sql::new("SELECT bookmark_id, channel_id, title, link, emoji, created FROM bookmarks WHERE workspace_id = ");
    q.bind(ws.as_str());
    if let Some(c) = channel {
        q.push(" AND channel_id = ").bind(c.as_str());
    }
    q.push(" ORDER BY bookmark_id");
    rows(conn, be, "listing bookmarks", q, |c| {
        let id: String = c.next()?;
        let channel: String = c.next()?;
        let title: String = c.next()?;
        let link: Option<String> = c.next()?;
        let emoji: Option<String> = c.next()?;
        let created: Option<i64> = c.next()?;
        Ok((|| {
            Ok(Bookmark {
                id,
                channel: parse_channel(&channel)?,
                title,
                link,
                emoji,
                created: time_of(created),
            })
        })())
    })
    .await
}

pub(crate) async fn thread_participants<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    parent: &MessageKey,
) -> Result<Vec<UserId>> {
    parent
        .ensure_workspace(ws)
        .map_err(|e| e.with_backend(be))?;
    let mut q = Sql::new("SELECT user_id FROM thread_participants WHERE workspace_id = ");
    q.bind(ws.as_str())
        .push(" AND channel_id = ")
        .bind(parent.channel.as_str());
    q.push(" AND thread_ts = ")
        .bind(parent.ts.as_str())
        .push(" ORDER BY user_id");
    rows(conn, be, "listing thread participants", q, |c| {
        Ok(parse_user(&c.next::<String>()?))
    })
    .await
}

pub(crate) async fn list_sync_status<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
) -> Result<Vec<SyncStatus>> {
    let mut q = Sql::new(
        "SELECT channel_id, source, cursor, oldest_ts, latest_ts, state, updated_at, error FROM sync_status \
         WHERE workspace_id = ",
    );
    q.bind(ws.as_str()).push(" ORDER BY channel_id, source");
    rows(conn, be, "listing sync status", q, |c| {
        let channel: String = c.next()?;
        let source: String = c.next()?;
        let cursor: Option<String> = c.next()?;
        let oldest: Option<String> = c.next()?;
        let latest: Option<String> = c.next()?;
        let state: String = c.next()?;
        let updated: Option<i64> = c.next()?;
        let error: Option<String> = c.next()?;
        Ok((|| {
            Ok(SyncStatus {
                channel: parse_channel(&channel)?,
                source,
                cursor,
                oldest_ts: opt(oldest, parse_ts)?,
                latest_ts: opt(latest, parse_ts)?,
                state: SyncState::parse(&state).ok_or_else(|| {
                    Error::backend_error(format!("stored sync state {state:?} is invalid"))
                })?,
                updated_at: time_of(updated),
                error,
            })
        })())
    })
    .await
}

pub(crate) async fn list_processing_queue<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    status: Option<&str>,
) -> Result<Vec<ProcessingQueueEntry>> {
    let mut q = Sql::new("SELECT job_id, kind, payload, status, attempts, run_after FROM processing_queue WHERE workspace_id = ");
    q.bind(ws.as_str());
    if let Some(s) = status {
        q.push(" AND status = ").bind(s);
    }
    q.push(" ORDER BY job_id");
    rows(conn, be, "listing the processing queue", q, |c| {
        let id: String = c.next()?;
        let kind: String = c.next()?;
        let payload: String = c.next()?;
        let status: String = c.next()?;
        let attempts: i64 = c.next()?;
        let run_after: Option<i64> = c.next()?;
        Ok((|| {
            Ok(ProcessingQueueEntry {
                id,
                kind,
                payload: parse_json("processing-queue payload", &payload)?,
                status,
                attempts: u32_of(attempts),
                run_after: time_of(run_after),
            })
        })())
    })
    .await
}

pub(crate) async fn list_bot_config<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
) -> Result<Vec<BotConfig>> {
    let mut q = Sql::new("SELECT config_key, value FROM bot_config WHERE workspace_id = ");
    q.bind(ws.as_str()).push(" ORDER BY config_key");
    rows(conn, be, "listing bot config", q, |c| {
        let key: String = c.next()?;
        let value: String = c.next()?;
        Ok((|| {
            Ok(BotConfig {
                key,
                value: parse_json("bot setting", &value)?,
            })
        })())
    })
    .await
}

pub(crate) async fn stats<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
) -> Result<WorkspaceStats> {
    let mut q = Sql::new("SELECT ");
    let parts = [
        "(SELECT COUNT(*) FROM message_metadata WHERE workspace_id = ",
        "(SELECT COUNT(*) FROM message_metadata WHERE is_reply AND workspace_id = ",
        "(SELECT COUNT(*) FROM channels WHERE workspace_id = ",
        "(SELECT COUNT(*) FROM users WHERE workspace_id = ",
        "(SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM reactions WHERE workspace_id = ",
        "(SELECT COUNT(*) FROM links WHERE workspace_id = ",
        "(SELECT COUNT(*) FROM files WHERE workspace_id = ",
        "(SELECT COUNT(*) FROM message_metadata WHERE content_id IS NOT NULL AND workspace_id = ",
    ];
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push(p).bind(ws.as_str()).push(")");
    }
    let got = rows(conn, be, "computing workspace stats", q, |c| {
        Ok(Ok(WorkspaceStats {
            messages: u64_of(c.next()?),
            replies: u64_of(c.next()?),
            channels: u64_of(c.next()?),
            users: u64_of(c.next()?),
            reactions: u64_of(c.next()?),
            links: u64_of(c.next()?),
            files: u64_of(c.next()?),
            with_content: u64_of(c.next()?),
        }))
    })
    .await?;
    Ok(got.into_iter().next().unwrap_or_default())
}

// ----- aggregates -----

fn base(q: &mut Sql, ws: &WorkspaceId, o: &AggregateOptions, alias: &str) {
    q.bind(ws.as_str());
    push_range(q, &format!("{alias}.ts_micros"), &o.range);
    push_channels(q, &format!("{alias}.channel_id"), &o.channels);
}

/// Keeps only messages that count as activity (`counts_as_activity`: no subtype, or one of
/// `ACTIVITY_SUBTYPES`), so joins and topic changes do not make a channel look busy. A filter on
/// the rows the range scan already reads (for `user_id`), so it needs no index of its own.
fn push_activity(q: &mut Sql, alias: &str) {
    q.push(&format!(
        " AND ({alias}.subtype IS NULL OR {alias}.subtype IN ("
    ));
    q.bind_list(ACTIVITY_SUBTYPES.iter().copied()).push("))");
}

pub(crate) async fn most_reacted<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    o: &AggregateOptions,
) -> Result<Vec<ReactedMessage>> {
    let mut q = Sql::new("SELECT m.channel_id, m.ts, m.reaction_count FROM message_metadata m WHERE m.reaction_count > 0 AND m.workspace_id = ");
    base(&mut q, ws, o, "m");
    q.push(" ORDER BY m.reaction_count DESC, m.ts_micros, m.ts, m.channel_id LIMIT ")
        .bind(limit_of(o.limit));
    rows(conn, be, "finding the most reacted messages", q, |c| {
        let ch: String = c.next()?;
        let ts: String = c.next()?;
        let n: i64 = c.next()?;
        Ok((|| {
            Ok(ReactedMessage {
                key: decode_key(ws, &ch, &ts)?,
                reaction_count: u32_of(n),
            })
        })())
    })
    .await
}

pub(crate) async fn most_active_threads<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    o: &AggregateOptions,
) -> Result<Vec<ThreadActivity>> {
    let mut q = Sql::new(
        "SELECT m.channel_id, m.thread_ts, MIN(m.thread_ts_micros), COUNT(*), COUNT(DISTINCT m.user_id), \
         MAX(m.ts_micros) FROM message_metadata m WHERE m.is_reply AND m.thread_ts IS NOT NULL AND m.workspace_id = ",
    );
    base(&mut q, ws, o, "m");
    push_activity(&mut q, "m");
    q.push(" GROUP BY m.channel_id, m.thread_ts ORDER BY COUNT(*) DESC, MIN(m.thread_ts_micros), m.thread_ts, m.channel_id LIMIT ");
    q.bind(limit_of(o.limit));
    let threads = rows(conn, be, "finding the most active threads", q, |c| {
        let ch: String = c.next()?;
        let ts: String = c.next()?;
        let _parent_micros: Option<i64> = c.next()?;
        let n: i64 = c.next()?;
        let users: i64 = c.next()?;
        let latest: Option<i64> = c.next()?;
        Ok((|| {
            Ok((decode_key(ws, &ch, &ts)?, u32_of(n), u32_of(users), latest))
        })())
    })
    .await?;
    // The newest reply's ts as Slack wrote it (the aggregate only knows its microseconds).
    let mut out = Vec::with_capacity(threads.len());
    for (parent, n, users, latest) in threads {
        let latest_reply = match latest {
            Some(micros) => {
                let mut q = Sql::new(
                    "SELECT m.ts FROM message_metadata m WHERE m.is_reply AND m.workspace_id = ",
                );
                base(&mut q, ws, o, "m");
                push_activity(&mut q, "m");
                q.push(" AND m.channel_id = ").bind(parent.channel.as_str());
                q.push(" AND m.thread_ts = ").bind(parent.ts.as_str());
                q.push(" AND m.ts_micros = ").bind(micros);
                q.push(" ORDER BY m.ts DESC");
                let ts = rows(conn, be, "finding a thread's latest reply", q, |c| {
                    Ok(parse_ts(&c.next::<String>()?))
                })
                .await?;
                ts.into_iter()
                    .max()
                    .or_else(|| Some(Ts::from_micros(micros)))
            }
            None => None,
        };
        out.push(ThreadActivity {
            parent,
            reply_count: n,
            participant_count: users,
            latest_reply,
        });
    }
    Ok(out)
}

pub(crate) async fn top_links<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    o: &AggregateOptions,
) -> Result<Vec<LinkCount>> {
    let mut q = Sql::new(
        "SELECT d.url, MIN(d.domain), COUNT(*) FROM \
         (SELECT DISTINCT l.url, l.domain, l.channel_id, l.ts FROM links l WHERE l.workspace_id = ",
    );
    base(&mut q, ws, o, "l");
    q.push(") d GROUP BY d.url ORDER BY COUNT(*) DESC, d.url LIMIT ")
        .bind(limit_of(o.limit));
    rows(conn, be, "finding the top links", q, |c| {
        Ok(Ok(LinkCount {
            url: c.next()?,
            domain: c.next()?,
            count: u64_of(c.next()?),
        }))
    })
    .await
}

pub(crate) async fn top_domains<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    o: &AggregateOptions,
) -> Result<Vec<DomainCount>> {
    let mut q = Sql::new("SELECT l.domain, COUNT(*) FROM links l WHERE l.workspace_id = ");
    base(&mut q, ws, o, "l");
    q.push(" GROUP BY l.domain ORDER BY COUNT(*) DESC, l.domain LIMIT ")
        .bind(limit_of(o.limit));
    rows(conn, be, "finding the top domains", q, |c| {
        Ok(Ok(DomainCount {
            domain: c.next()?,
            count: u64_of(c.next()?),
        }))
    })
    .await
}

pub(crate) async fn channel_activity<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    o: &AggregateOptions,
) -> Result<Vec<ChannelActivity>> {
    let mut q = Sql::new("SELECT m.channel_id, COUNT(*), COUNT(DISTINCT m.user_id) FROM message_metadata m WHERE m.workspace_id = ");
    base(&mut q, ws, o, "m");
    push_activity(&mut q, "m");
    q.push(" GROUP BY m.channel_id ORDER BY COUNT(*) DESC, m.channel_id LIMIT ")
        .bind(limit_of(o.limit));
    rows(conn, be, "computing channel activity", q, |c| {
        let ch: String = c.next()?;
        let messages: i64 = c.next()?;
        let users: i64 = c.next()?;
        Ok((|| {
            Ok(ChannelActivity {
                channel: parse_channel(&ch)?,
                messages: u64_of(messages),
                users: u64_of(users),
            })
        })())
    })
    .await
}

/// One row per channel, each answered by probes of `message_metadata_by_channel_time`: the
/// newest message is the first entry of a backward index walk (not a scan of the channel), and
/// the count, when asked for, reads only the channel's index entries in the range. The channels
/// come from the list given (a `VALUES` table) or, without one, from the messages themselves.
pub(crate) async fn channel_latest<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    o: &LatestOptions,
) -> Result<Vec<ChannelLatest>> {
    let in_channel = |q: &mut Sql| {
        q.push(" FROM message_metadata m WHERE m.workspace_id = ")
            .bind(ws.as_str())
            .push(" AND m.channel_id = v.column1");
        push_range(q, "m.ts_micros", &o.range);
    };
    let query = |channels: Option<&[ChannelId]>| {
        let mut q = Sql::new("SELECT v.column1, (SELECT m.ts");
        in_channel(&mut q);
        q.push(" ORDER BY m.ts_micros DESC, m.ts DESC LIMIT 1)");
        if o.with_counts {
            q.push(", (SELECT COUNT(*)");
            in_channel(&mut q);
            q.push(")");
        }
        match channels {
            Some(cs) => {
                q.push(" FROM (VALUES ");
                for (i, c) in cs.iter().enumerate() {
                    q.push(if i == 0 { "(" } else { ", (" })
                        .bind(c.as_str())
                        .push(")");
                }
                q.push(") v");
            }
            None => {
                q.push(" FROM (SELECT m.channel_id AS column1 FROM message_metadata m WHERE m.workspace_id = ")
                    .bind(ws.as_str());
                push_range(&mut q, "m.ts_micros", &o.range);
                q.push(" GROUP BY m.channel_id) v");
            }
        }
        q
    };
    let statements = match &o.channels {
        None => vec![query(None)],
        Some(cs) => {
            let mut cs = cs.clone();
            cs.sort();
            cs.dedup();
            cs.chunks(max_params(conn.get_database_backend()) - 8)
                .map(|chunk| query(Some(chunk)))
                .collect()
        }
    };
    let mut out = Vec::new();
    for q in statements {
        let found = rows(conn, be, "finding channels' latest messages", q, |c| {
            let ch: String = c.next()?;
            let latest: Option<String> = c.next()?;
            let messages: Option<i64> = if o.with_counts { c.next()? } else { None };
            Ok((|| {
                let Some(latest) = latest else {
                    return Ok(None);
                };
                Ok(Some(ChannelLatest {
                    channel: parse_channel(&ch)?,
                    latest: parse_ts(&latest)?,
                    messages: messages.map(u64_of),
                }))
            })())
        })
        .await?;
        out.extend(found.into_iter().flatten());
    }
    out.sort_by(|a, b| a.channel.cmp(&b.channel));
    Ok(out)
}

pub(crate) async fn user_activity<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    o: &AggregateOptions,
) -> Result<Vec<UserActivity>> {
    let mut q = Sql::new(
        "SELECT m.user_id, COUNT(*), CAST(COALESCE(SUM(m.reaction_count), 0) AS BIGINT) FROM message_metadata m \
         WHERE m.user_id IS NOT NULL AND m.workspace_id = ",
    );
    base(&mut q, ws, o, "m");
    push_activity(&mut q, "m");
    q.push(" GROUP BY m.user_id ORDER BY COUNT(*) DESC, m.user_id LIMIT ")
        .bind(limit_of(o.limit));
    rows(conn, be, "computing user activity", q, |c| {
        let u: String = c.next()?;
        let messages: i64 = c.next()?;
        let reactions: i64 = c.next()?;
        Ok((|| {
            Ok(UserActivity {
                user: parse_user(&u)?,
                messages: u64_of(messages),
                reactions_received: u64_of(reactions),
            })
        })())
    })
    .await
}

pub(crate) async fn list_links<C: ConnectionTrait>(
    conn: &C,
    be: &'static str,
    ws: &WorkspaceId,
    query: &LinkQuery,
) -> Result<Vec<SharedLink>> {
    let mut q = Sql::new("SELECT l.channel_id, l.ts, l.url, l.domain, l.source, l.title FROM links l WHERE l.workspace_id = ");
    q.bind(ws.as_str());
    push_range(&mut q, "l.ts_micros", &query.range);
    push_channels(&mut q, "l.channel_id", &query.channels);
    if let Some(ds) = &query.domains {
        if ds.is_empty() {
            q.push(" AND 1 = 0");
        } else {
            q.push(" AND l.domain IN (");
            q.bind_list(ds.iter().map(|d| d.as_str())).push(")");
        }
    }
    q.push(" ORDER BY l.ts_micros, l.ts, l.channel_id, l.position");
    if query.limit > 0 {
        q.push(" LIMIT ").bind(limit_of(query.limit));
    }
    rows(conn, be, "listing links", q, |c| {
        let ((ch, ts), link) = decode_link(c)?;
        Ok(Ok(SharedLink {
            key: MessageKey::new(ws.clone(), ch, ts),
            link,
        }))
    })
    .await
}
