//! Small builders for test data: ids, keys, messages, content and documents.
//!
//! They panic on invalid literals: they are meant for tests, with inputs written in the test.

use chrono::{DateTime, Utc};

use crate::{
    ChannelKind, ContentAttributes, ContentDocument, MessageContent, MessageKey, MessageMeta,
    MessageRecord, MetadataStore, Ts, UserId, Workspace, WorkspaceId,
};

/// A workspace id from a literal.
pub fn ws(id: &str) -> WorkspaceId {
    WorkspaceId::new(id).unwrap_or_else(|e| panic!("fixture workspace id {id:?}: {e}"))
}

/// A user id from a literal.
pub fn user(id: &str) -> UserId {
    UserId::new(id).unwrap_or_else(|e| panic!("fixture user id {id:?}: {e}"))
}

/// A Slack ts from a literal.
pub fn ts(raw: &str) -> Ts {
    Ts::new(raw).unwrap_or_else(|e| panic!("fixture ts {raw:?}: {e}"))
}

/// The point in time of a Slack ts literal (for time ranges).
pub fn at(raw: &str) -> DateTime<Utc> {
    ts(raw).to_datetime()
}

/// A message key from literals.
pub fn key(workspace: &str, channel: &str, ts: &str) -> MessageKey {
    MessageKey::parse(workspace, channel, ts)
        .unwrap_or_else(|e| panic!("fixture key {workspace}/{channel}/{ts}: {e}"))
}

/// Metadata with a key and an author.
pub fn meta(key: &MessageKey, author: Option<&str>) -> MessageMeta {
    let mut m = MessageMeta::new(key.clone());
    m.user = author.map(user);
    m
}

/// The content of a message with this metadata, in a channel of this kind.
pub fn content(meta: &MessageMeta, text: &str, kind: ChannelKind) -> MessageContent {
    MessageContent {
        context: Default::default(),
        key: meta.key.clone(),
        text: text.to_string(),
        attributes: ContentAttributes::from_meta(meta, kind),
    }
}

/// A message record with this metadata and (when `text` is set) its content.
pub fn record(meta: MessageMeta, text: Option<&str>, kind: ChannelKind) -> MessageRecord {
    let c = text.map(|t| content(&meta, t, kind));
    MessageRecord {
        content: c,
        ..MessageRecord::new(meta)
    }
}

/// A content document.
pub fn document(content: MessageContent, embedding: Vec<f32>, version: u64) -> ContentDocument {
    ContentDocument {
        content,
        embedding,
        version,
    }
}

/// Creates workspace `id` (named after it) and returns its id.
pub async fn create_workspace(store: &dyn MetadataStore, id: &str) -> WorkspaceId {
    let w = ws(id);
    store
        .upsert_workspace(&Workspace::new(w.clone(), format!("Workspace {id}")))
        .await
        .unwrap_or_else(|e| panic!("upsert_workspace({id}) failed: {e}"));
    w
}

/// Texts that stores must keep byte for byte: emoji, CJK, right-to-left scripts, combining
/// marks, and a 40 KB text.
pub fn unicode_texts() -> Vec<String> {
    vec![
        "deploy 🚀🔥 done 👍🏽 (family: 👨‍👩‍👧‍👦)".to_string(),
        "東京の会議は明日です 데이터베이스 服务器".to_string(),
        "שלום עולם مرحبا بالعالم".to_string(),
        "e\u{301}te\u{301} naïve café — “quotes” ‘single’ \t tab\nnewline".to_string(),
        "x".repeat(40 * 1024 - 20) + " long tail ✓",
    ]
}
