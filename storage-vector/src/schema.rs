//! The tantivy schema of a collection: one document per key (live or tombstone).
//!
//! tantivy is the source of truth: a document carries the text, the key, the filter attributes,
//! the version, the embedding (stored bytes) and `vid`, the id of this write in the graph. Every
//! write of a key gets a fresh `vid`, so a graph node is never reused for different content.

use chatvault_core::{
    ChannelKind, ContentAttributes, ContentDocument, Error, IndexContext, MessageContent,
    MessageKey, Result, Ts, UserId, WorkspaceId,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, INDEXED, STORED,
    STRING,
};
use tantivy::TantivyDocument;

use crate::markup;

/// Field handles.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    pub(crate) schema: Schema,
    /// `"{channel}:{ts}"`, the content id: indexed (upsert replaces by it), fast, stored.
    pub(crate) key: Field,
    pub(crate) channel: Field,
    /// The key's ts exactly as written (thread filters compare text).
    pub(crate) ts_raw: Field,
    /// The key's ts in microseconds (time-range filters).
    pub(crate) ts: Field,
    pub(crate) user: Field,
    pub(crate) thread_ts: Field,
    pub(crate) is_reply: Field,
    pub(crate) has_files: Field,
    pub(crate) has_links: Field,
    pub(crate) reactions: Field,
    pub(crate) visibility: Field,
    /// The text as written (stored only), then its context as JSON when it has one.
    pub(crate) text: Field,
    /// The normalised index text, context and text (indexed for BM25, not stored).
    pub(crate) body: Field,
    pub(crate) embedding: Field,
    pub(crate) version: Field,
    pub(crate) content_hash: Field,
    /// A tombstone: the key was deleted at `version`.
    pub(crate) deleted: Field,
    pub(crate) vid: Field,
}

impl Fields {
    pub(crate) fn new() -> Self {
        let mut b = Schema::builder();
        let key = b.add_text_field("key", STRING | STORED | FAST);
        let channel = b.add_text_field("channel", STRING);
        let ts_raw = b.add_text_field("ts_raw", STRING);
        let ts = b.add_i64_field("ts", INDEXED | FAST);
        let user = b.add_text_field("user", STRING | STORED);
        let thread_ts = b.add_text_field("thread_ts", STRING | STORED);
        let is_reply = b.add_bool_field("is_reply", INDEXED | STORED);
        let has_files = b.add_bool_field("has_files", INDEXED | STORED);
        let has_links = b.add_bool_field("has_links", INDEXED | STORED);
        let reactions = b.add_u64_field("reactions", INDEXED | FAST | STORED);
        let visibility = b.add_text_field("visibility", STRING | STORED);
        let text = b.add_text_field("text", STORED);
        let body = b.add_text_field(
            "body",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(markup::ANALYZER)
                    .set_index_option(IndexRecordOption::WithFreqs),
            ),
        );
        let embedding = b.add_bytes_field("embedding", STORED);
        let version = b.add_u64_field("version", FAST | STORED);
        let content_hash = b.add_text_field("content_hash", STORED);
        let deleted = b.add_bool_field("deleted", INDEXED | FAST | STORED);
        let vid = b.add_u64_field("vid", INDEXED | FAST | STORED);
        Fields {
            schema: b.build(),
            key,
            channel,
            ts_raw,
            ts,
            user,
            thread_ts,
            is_reply,
            has_files,
            has_links,
            reactions,
            visibility,
            text,
            body,
            embedding,
            version,
            content_hash,
            deleted,
            vid,
        }
    }

    /// A live document.
    pub(crate) fn live_doc(&self, d: &ContentDocument, vid: u64) -> TantivyDocument {
        let c = &d.content;
        let a = &c.attributes;
        let mut doc = TantivyDocument::default();
        self.add_key(&mut doc, &c.key);
        if let Some(u) = &a.user {
            doc.add_text(self.user, u.as_str());
        }
        if let Some(t) = &a.thread_ts {
            doc.add_text(self.thread_ts, t.as_str());
        }
        doc.add_bool(self.is_reply, a.is_reply);
        doc.add_bool(self.has_files, a.has_files);
        doc.add_bool(self.has_links, a.has_links);
        doc.add_u64(self.reactions, u64::from(a.reaction_count));
        doc.add_text(self.visibility, a.visibility.as_str());
        doc.add_text(self.text, &c.text);
        if !c.context.is_empty() {
            // The context rides as the stored field's second value: collections made before it
            // existed keep their schema.
            let ctx = serde_json::to_string(&c.context).expect("a context always serializes");
            doc.add_text(self.text, ctx);
        }
        doc.add_text(self.body, markup::normalize(&c.index_text()));
        doc.add_bytes(self.embedding, &embedding_bytes(&d.embedding));
        doc.add_u64(self.version, d.version);
        doc.add_text(self.content_hash, c.content_hash());
        doc.add_bool(self.deleted, false);
        doc.add_u64(self.vid, vid);
        doc
    }

    /// A tombstone: the key, its version, nothing else searchable.
    pub(crate) fn tombstone(&self, key: &MessageKey, version: u64, vid: u64) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        self.add_key(&mut doc, key);
        doc.add_u64(self.version, version);
        doc.add_bool(self.deleted, true);
        doc.add_u64(self.vid, vid);
        doc
    }

    fn add_key(&self, doc: &mut TantivyDocument, key: &MessageKey) {
        doc.add_text(self.key, key.content_id());
        doc.add_text(self.channel, key.channel.as_str());
        doc.add_text(self.ts_raw, key.ts.as_str());
        doc.add_i64(self.ts, key.ts.as_micros());
    }

    /// Reads a live document back.
    pub(crate) fn to_content(
        &self,
        workspace: &WorkspaceId,
        doc: &TantivyDocument,
    ) -> Result<ContentDocument> {
        let key = self.key_of(workspace, doc)?;
        let key_name = key.to_string();
        let bad = |what: &str| {
            Error::backend_error(format!("stored document lacks {what}"))
                .with_context("key", &key_name)
                .with_backend("tantivy")
        };
        let str_of = |f: Field| doc.get_first(f).and_then(|v| v.as_str());
        let bool_of = |f: Field| doc.get_first(f).and_then(|v| v.as_bool());
        let user = str_of(self.user).map(UserId::new).transpose()?;
        let thread_ts = str_of(self.thread_ts).map(Ts::new).transpose()?;
        let visibility = str_of(self.visibility)
            .and_then(ChannelKind::parse)
            .ok_or_else(|| bad("visibility"))?;
        let reactions = doc
            .get_first(self.reactions)
            .and_then(|v| v.as_u64())
            .ok_or_else(|| bad("reactions"))?;
        let embedding = doc
            .get_first(self.embedding)
            .and_then(|v| v.as_bytes())
            .and_then(embedding_from_bytes)
            .ok_or_else(|| bad("embedding"))?;
        let mut texts = doc.get_all(self.text).filter_map(|v| v.as_str());
        let text = texts.next().ok_or_else(|| bad("text"))?.to_string();
        let context = match texts.next() {
            Some(json) => serde_json::from_str(json).map_err(|_| bad("a readable context"))?,
            None => IndexContext::default(),
        };
        Ok(ContentDocument {
            content: MessageContent {
                context,
                text,
                attributes: ContentAttributes {
                    user,
                    thread_ts,
                    is_reply: bool_of(self.is_reply).ok_or_else(|| bad("is_reply"))?,
                    has_files: bool_of(self.has_files).ok_or_else(|| bad("has_files"))?,
                    has_links: bool_of(self.has_links).ok_or_else(|| bad("has_links"))?,
                    reaction_count: u32::try_from(reactions).unwrap_or(u32::MAX),
                    visibility,
                },
                key,
            },
            embedding,
            version: doc
                .get_first(self.version)
                .and_then(|v| v.as_u64())
                .ok_or_else(|| bad("version"))?,
        })
    }

    pub(crate) fn key_of(
        &self,
        workspace: &WorkspaceId,
        doc: &TantivyDocument,
    ) -> Result<MessageKey> {
        let id = doc
            .get_first(self.key)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                Error::backend_error("stored document lacks its key").with_backend("tantivy")
            })?;
        MessageKey::from_content_id(workspace, id)
    }
}

/// Little-endian f32s.
pub(crate) fn embedding_bytes(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

pub(crate) fn embedding_from_bytes(b: &[u8]) -> Option<Vec<f32>> {
    if b.len() % 4 != 0 {
        return None;
    }
    Some(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Only the embedding of a stored document: what a reader's tail needs, read without building
/// the rest of the document. The embedding is the schema's only bytes field.
pub(crate) struct StoredEmbedding(Option<Vec<u8>>);

impl StoredEmbedding {
    /// The stored vector (`None`: the document has no readable embedding).
    pub(crate) fn vector(&self) -> Option<Vec<f32>> {
        self.0.as_deref().and_then(embedding_from_bytes)
    }
}

impl tantivy::schema::document::DocumentDeserialize for StoredEmbedding {
    fn deserialize<'de, D>(
        mut fields: D,
    ) -> Result<Self, tantivy::schema::document::DeserializeError>
    where
        D: tantivy::schema::document::DocumentDeserializer<'de>,
    {
        let mut found = None;
        while let Some((_, value)) = fields.next_field::<BytesOnly>()? {
            if value.0.is_some() {
                found = value.0;
            }
        }
        Ok(StoredEmbedding(found))
    }
}

/// A stored value kept only when it is bytes.
struct BytesOnly(Option<Vec<u8>>);

impl tantivy::schema::document::ValueDeserialize for BytesOnly {
    fn deserialize<'de, D>(value: D) -> Result<Self, tantivy::schema::document::DeserializeError>
    where
        D: tantivy::schema::document::ValueDeserializer<'de>,
    {
        value.deserialize_any(BytesOnlyVisitor)
    }
}

struct BytesOnlyVisitor;

impl tantivy::schema::document::ValueVisitor for BytesOnlyVisitor {
    type Value = BytesOnly;

    fn visit_null(&self) -> Result<BytesOnly, tantivy::schema::document::DeserializeError> {
        Ok(BytesOnly(None))
    }
    fn visit_string(
        &self,
        _: String,
    ) -> Result<BytesOnly, tantivy::schema::document::DeserializeError> {
        Ok(BytesOnly(None))
    }
    fn visit_u64(&self, _: u64) -> Result<BytesOnly, tantivy::schema::document::DeserializeError> {
        Ok(BytesOnly(None))
    }
    fn visit_i64(&self, _: i64) -> Result<BytesOnly, tantivy::schema::document::DeserializeError> {
        Ok(BytesOnly(None))
    }
    fn visit_f64(&self, _: f64) -> Result<BytesOnly, tantivy::schema::document::DeserializeError> {
        Ok(BytesOnly(None))
    }
    fn visit_bool(
        &self,
        _: bool,
    ) -> Result<BytesOnly, tantivy::schema::document::DeserializeError> {
        Ok(BytesOnly(None))
    }
    fn visit_bytes(
        &self,
        b: Vec<u8>,
    ) -> Result<BytesOnly, tantivy::schema::document::DeserializeError> {
        Ok(BytesOnly(Some(b)))
    }
}
