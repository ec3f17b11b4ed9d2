//! How a document maps onto a Chroma record (id, embedding, document, metadata), and how our
//! filters become Chroma `where` clauses.

use chatvault_core::{
    ChannelKind, ContentAttributes, ContentDocument, ContentFilter, Error, IndexContext,
    MessageContent, MessageKey, Result, Ts, UserId, WorkspaceId,
};
use serde_json::{json, Map, Value};

use crate::client::BACKEND;

// Metadata keys. Every record carries all of them: Chroma's upsert *merges* metadata into an
// existing record, so an absent optional value is written as `null` (which removes the key).
pub(crate) const VERSION: &str = "cv_version";
pub(crate) const HASH: &str = "cv_hash";
const CHANNEL: &str = "channel";
const TS: &str = "ts";
const TS_MICROS: &str = "ts_us";
const USER: &str = "user";
const THREAD_TS: &str = "thread_ts";
const IS_REPLY: &str = "is_reply";
const HAS_FILES: &str = "has_files";
const HAS_LINKS: &str = "has_links";
const REACTIONS: &str = "reactions";
const VISIBILITY: &str = "visibility";
/// The index context as JSON (`null` when it has none).
const CONTEXT: &str = "cv_context";

/// Versions are stored as Chroma integers (i64).
pub(crate) fn version_value(version: u64, key: &MessageKey) -> Result<i64> {
    i64::try_from(version).map_err(|_| {
        Error::invalid_input(format!(
            "version {version} is larger than ChromaDB can store ({})",
            i64::MAX
        ))
        .with_context("key", key)
    })
}

/// A live document's metadata.
pub(crate) fn metadata(doc: &ContentDocument) -> Result<Map<String, Value>> {
    let c = &doc.content;
    let a = &c.attributes;
    let mut m = Map::new();
    m.insert(VERSION.into(), version_value(doc.version, &c.key)?.into());
    m.insert(HASH.into(), c.content_hash().into());
    m.insert(CHANNEL.into(), c.key.channel.as_str().into());
    m.insert(TS.into(), c.key.ts.as_str().into());
    m.insert(TS_MICROS.into(), c.key.ts.as_micros().into());
    m.insert(
        USER.into(),
        a.user.as_ref().map_or(Value::Null, |u| u.as_str().into()),
    );
    m.insert(
        THREAD_TS.into(),
        a.thread_ts
            .as_ref()
            .map_or(Value::Null, |t| t.as_str().into()),
    );
    m.insert(IS_REPLY.into(), a.is_reply.into());
    m.insert(HAS_FILES.into(), a.has_files.into());
    m.insert(HAS_LINKS.into(), a.has_links.into());
    m.insert(REACTIONS.into(), i64::from(a.reaction_count).into());
    m.insert(VISIBILITY.into(), a.visibility.as_str().into());
    m.insert(
        CONTEXT.into(),
        if c.context.is_empty() {
            Value::Null
        } else {
            serde_json::to_string(&c.context)
                .expect("a context always serializes")
                .into()
        },
    );
    Ok(m)
}

/// A tombstone's metadata.
pub(crate) fn tombstone_metadata(version: i64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(VERSION.into(), version.into());
    m
}

fn corrupt(id: &str, field: &str, why: &str) -> Error {
    Error::backend_error(format!(
        "ChromaDB record {id:?} has an invalid {field:?}: {why} (was it written by another program?)"
    ))
    .with_backend(BACKEND)
}

fn str_field<'a>(m: &'a Map<String, Value>, id: &str, field: &str) -> Result<&'a str> {
    m.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| corrupt(id, field, "missing or not a string"))
}

fn opt_str_field<'a>(m: &'a Map<String, Value>, id: &str, field: &str) -> Result<Option<&'a str>> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(corrupt(id, field, "not a string")),
    }
}

fn bool_field(m: &Map<String, Value>, id: &str, field: &str) -> Result<bool> {
    m.get(field)
        .and_then(Value::as_bool)
        .ok_or_else(|| corrupt(id, field, "missing or not a boolean"))
}

/// The version a record's metadata carries.
pub(crate) fn version_of(m: Option<&Map<String, Value>>, id: &str) -> Result<u64> {
    m.and_then(|m| m.get(VERSION))
        .and_then(Value::as_i64)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| corrupt(id, VERSION, "missing or not a non-negative integer"))
}

/// The content hash a record's metadata carries.
pub(crate) fn hash_of(m: Option<&Map<String, Value>>, id: &str) -> Result<String> {
    m.and_then(|m| m.get(HASH))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| corrupt(id, HASH, "missing or not a string"))
}

/// Rebuilds a document from a record.
pub(crate) fn document(
    ws: &WorkspaceId,
    id: &str,
    text: Option<String>,
    embedding: Vec<f32>,
    m: Option<&Map<String, Value>>,
) -> Result<ContentDocument> {
    let key = MessageKey::from_content_id(ws, id).map_err(|e| corrupt(id, "id", e.message()))?;
    let m = m.ok_or_else(|| corrupt(id, "metadata", "missing"))?;
    let version = version_of(Some(m), id)?;
    let user = opt_str_field(m, id, USER)?
        .map(UserId::new)
        .transpose()
        .map_err(|e| corrupt(id, USER, e.message()))?;
    let thread_ts = opt_str_field(m, id, THREAD_TS)?
        .map(Ts::new)
        .transpose()
        .map_err(|e| corrupt(id, THREAD_TS, e.message()))?;
    let reactions = m
        .get(REACTIONS)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| corrupt(id, REACTIONS, "missing or not a count"))?;
    let vis = str_field(m, id, VISIBILITY)?;
    let visibility =
        ChannelKind::parse(vis).ok_or_else(|| corrupt(id, VISIBILITY, "unknown channel kind"))?;
    let context = match opt_str_field(m, id, CONTEXT)? {
        Some(json) => {
            serde_json::from_str(json).map_err(|_| corrupt(id, CONTEXT, "not a context"))?
        }
        None => IndexContext::default(),
    };
    Ok(ContentDocument {
        content: MessageContent {
            context,
            key,
            text: text.unwrap_or_default(),
            attributes: ContentAttributes {
                user,
                thread_ts,
                is_reply: bool_field(m, id, IS_REPLY)?,
                has_files: bool_field(m, id, HAS_FILES)?,
                has_links: bool_field(m, id, HAS_LINKS)?,
                reaction_count: reactions,
                visibility,
            },
        },
        embedding,
        version,
    })
}

/// What a filter becomes for Chroma.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Translated {
    /// Nothing can match (an empty allow-list, say): no need to ask the server.
    Nothing,
    /// The `where` clause (`None`: no condition) and the `ids` allow-list.
    Query {
        where_: Option<Value>,
        ids: Option<Vec<String>>,
    },
}

/// Translates a filter: key allow-lists become `ids`, every other condition a `where` clause.
/// Every [`ContentFilter`] condition has an exact Chroma equivalent.
pub(crate) fn translate(ws: &WorkspaceId, f: &ContentFilter) -> Result<Translated> {
    let mut ids = None;
    if let Some(keys) = &f.keys {
        // A key of another workspace can never match here (the reference semantics of
        // `ContentFilter::matches`): it is left out, not sent.
        let mut v: Vec<String> = keys
            .iter()
            .filter(|k| &k.workspace == ws)
            .map(MessageKey::content_id)
            .collect();
        if v.is_empty() {
            return Ok(Translated::Nothing);
        }
        v.sort_unstable();
        v.dedup();
        ids = Some(v);
    }
    let mut clauses: Vec<Value> = Vec::new();
    let mut any_in = |field: &str, values: Vec<String>| -> bool {
        if values.is_empty() {
            return false;
        }
        clauses.push(json!({ field: { "$in": values } }));
        true
    };
    if let Some(c) = &f.channels {
        if !any_in(CHANNEL, c.iter().map(|c| c.as_str().to_owned()).collect()) {
            return Ok(Translated::Nothing);
        }
    }
    if let Some(u) = &f.users {
        if !any_in(USER, u.iter().map(|u| u.as_str().to_owned()).collect()) {
            return Ok(Translated::Nothing);
        }
    }
    if let Some(v) = &f.visibility {
        if !any_in(
            VISIBILITY,
            v.iter().map(|k| k.as_str().to_owned()).collect(),
        ) {
            return Ok(Translated::Nothing);
        }
    }
    if let Some(s) = f.time.start_micros() {
        clauses.push(json!({ TS_MICROS: { "$gte": s } }));
    }
    if let Some(e) = f.time.end_micros() {
        clauses.push(json!({ TS_MICROS: { "$lt": e } }));
    }
    if let Some(t) = &f.thread_ts {
        clauses.push(json!({ "$or": [
            { TS: { "$eq": t.as_str() } },
            { THREAD_TS: { "$eq": t.as_str() } },
        ]}));
    }
    if let Some(b) = f.is_reply {
        clauses.push(json!({ IS_REPLY: { "$eq": b } }));
    }
    if let Some(b) = f.has_files {
        clauses.push(json!({ HAS_FILES: { "$eq": b } }));
    }
    if let Some(b) = f.has_links {
        clauses.push(json!({ HAS_LINKS: { "$eq": b } }));
    }
    if let Some(n) = f.min_reactions {
        clauses.push(json!({ REACTIONS: { "$gte": i64::from(n) } }));
    }
    let where_ = match clauses.len() {
        0 => None,
        1 => clauses.pop(),
        _ => Some(json!({ "$and": clauses })),
    };
    Ok(Translated::Query { where_, ids })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatvault_core::{ChannelId, TimeRange};

    fn ws() -> WorkspaceId {
        WorkspaceId::new("T1").unwrap()
    }

    #[test]
    fn empty_filter_is_no_condition() {
        assert_eq!(
            translate(&ws(), &ContentFilter::default()).unwrap(),
            Translated::Query {
                where_: None,
                ids: None
            }
        );
    }

    #[test]
    fn empty_lists_and_foreign_keys_match_nothing() {
        let f = ContentFilter {
            keys: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(translate(&ws(), &f).unwrap(), Translated::Nothing);
        let f = ContentFilter {
            channels: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(translate(&ws(), &f).unwrap(), Translated::Nothing);
        let f = ContentFilter {
            keys: Some(vec![MessageKey::parse("T2", "C1", "1.0").unwrap()]),
            ..Default::default()
        };
        assert_eq!(translate(&ws(), &f).unwrap(), Translated::Nothing);
    }

    #[test]
    fn conditions_are_anded() {
        let start = Ts::new("100").unwrap().to_datetime();
        let f = ContentFilter {
            keys: Some(vec![MessageKey::parse("T1", "C1", "1.5").unwrap()]),
            channels: Some(vec![ChannelId::new("C1").unwrap()]),
            time: TimeRange {
                start: Some(start),
                end: None,
            },
            min_reactions: Some(2),
            ..Default::default()
        };
        let Translated::Query { where_, ids } = translate(&ws(), &f).unwrap() else {
            panic!("expected a query")
        };
        assert_eq!(ids, Some(vec!["C1:1.5".to_string()]));
        assert_eq!(
            where_,
            Some(json!({"$and": [
                {"channel": {"$in": ["C1"]}},
                {"ts_us": {"$gte": 100_000_000}},
                {"reactions": {"$gte": 2}},
            ]}))
        );
    }
}
