//! Shared helpers: export paths and counts computed straight from the JSON, independently of the
//! collector's processor.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::Value;

pub fn testdata(name: &str) -> PathBuf {
    let own = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    if own.exists() {
        return own;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("testdata")
        .join(name)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub messages: u64,
    pub replies: u64,
    pub reactions: u64,
    pub files: u64,
    pub links: u64,
}

fn urls_in(text: &str, re: &Regex, out: &mut Vec<String>) {
    for c in re.captures_iter(text) {
        out.push(c[1].replace("&amp;", "&"));
    }
}

fn block_urls(v: &Value, re: &Regex, rich: bool, out: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| block_urls(x, re, rich, out)),
        Value::Object(m) => {
            let rich = rich || m.get("type").and_then(Value::as_str) == Some("rich_text");
            if let Some(u) = m.get("url").and_then(Value::as_str) {
                out.push(u.replace("&amp;", "&"));
            }
            if !rich {
                if let Some(t) = m.get("text").and_then(Value::as_str) {
                    urls_in(t, re, out);
                }
            }
            for (k, x) in m {
                if k != "text" || !x.is_string() {
                    block_urls(x, re, rich, out);
                }
            }
        }
        _ => {}
    }
}

/// Per conversation folder: what the JSON says, counted with regexes and plain field access.
pub fn expected_counts(export: &Path) -> BTreeMap<String, Expected> {
    let re = Regex::new(r"<(https?://[^|>]+)(?:\|[^>]*)?>").unwrap();
    let mut out = BTreeMap::new();
    let mut dirs: Vec<_> = std::fs::read_dir(export)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut e = Expected::default();
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            let msgs: Vec<Value> = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            for m in msgs {
                let st = m.get("subtype").and_then(Value::as_str);
                if matches!(
                    st,
                    Some("message_changed" | "message_deleted" | "message_replied")
                ) {
                    continue;
                }
                e.messages += 1;
                let ts = m["ts"].as_str().unwrap();
                if let Some(t) = m.get("thread_ts").and_then(Value::as_str) {
                    if t != ts {
                        e.replies += 1;
                    }
                }
                for r in m
                    .get("reactions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    e.reactions += r["count"].as_u64().unwrap();
                }
                let mut file_ids = HashSet::new();
                for f in m
                    .get("files")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    file_ids.insert(f["id"].as_str().unwrap().to_string());
                }
                if let Some(f) = m.get("file") {
                    file_ids.insert(f["id"].as_str().unwrap().to_string());
                }
                e.files += file_ids.len() as u64;
                let mut urls = Vec::new();
                urls_in(m["text"].as_str().unwrap_or(""), &re, &mut urls);
                if let Some(c) = m
                    .get("comment")
                    .and_then(|c| c.get("comment"))
                    .and_then(Value::as_str)
                {
                    urls_in(c, &re, &mut urls);
                }
                for a in m
                    .get("attachments")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    for k in ["from_url", "title_link", "original_url"] {
                        if let Some(u) = a.get(k).and_then(Value::as_str) {
                            if !u.is_empty() {
                                urls.push(u.replace("&amp;", "&"));
                            }
                        }
                    }
                    for k in ["pretext", "title", "text"] {
                        if let Some(t) = a.get(k).and_then(Value::as_str) {
                            urls_in(t, &re, &mut urls);
                        }
                    }
                    for fl in a
                        .get("fields")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        for k in ["title", "value"] {
                            if let Some(t) = fl.get(k).and_then(Value::as_str) {
                                urls_in(t, &re, &mut urls);
                            }
                        }
                    }
                    if let Some(b) = a.get("blocks") {
                        block_urls(b, &re, false, &mut urls);
                    }
                }
                if let Some(b) = m.get("blocks") {
                    block_urls(b, &re, false, &mut urls);
                }
                let distinct: HashSet<String> = urls
                    .into_iter()
                    .filter(|u| {
                        url::Url::parse(u)
                            .ok()
                            .and_then(|p| p.host_str().map(|_| ()))
                            .is_some()
                    })
                    .collect();
                e.links += distinct.len() as u64;
            }
        }
        out.insert(dir.file_name().unwrap().to_string_lossy().to_string(), e);
    }
    out
}

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chatvault_core::{
    ChannelId, Embedder, Error, HashingEmbedder, MessageDetails, MessageFilter, MetadataStore,
    PageRequest, Result, WorkspaceId,
};

/// The hashing embedder, counting the texts it embeds and failing the first `fail_first` calls.
#[derive(Debug)]
pub struct CountingEmbedder {
    inner: HashingEmbedder,
    pub texts: AtomicU64,
    pub calls: AtomicU64,
    pub fail_first: AtomicU64,
}

impl CountingEmbedder {
    pub fn new() -> Arc<Self> {
        Arc::new(CountingEmbedder {
            inner: HashingEmbedder::new(64).unwrap(),
            texts: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            fail_first: AtomicU64::new(0),
        })
    }
    pub fn texts(&self) -> u64 {
        self.texts.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Embedder for CountingEmbedder {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }
    fn max_batch(&self) -> usize {
        32
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::unavailable("embedder down (injected)"));
        }
        self.texts.fetch_add(texts.len() as u64, Ordering::SeqCst);
        self.inner.embed(texts).await
    }
}

/// Every message of one channel with what hangs off it.
pub async fn channel_messages(
    meta: &dyn MetadataStore,
    ws: &WorkspaceId,
    channel: &ChannelId,
) -> Vec<MessageDetails> {
    let filter = MessageFilter {
        channels: Some(vec![channel.clone()]),
        ..Default::default()
    };
    let keys = meta
        .filter_messages(ws, &filter, &PageRequest::first(1_000_000))
        .await
        .unwrap();
    meta.get_messages(ws, &keys).await.unwrap()
}

/// Counts as stored, per channel name.
pub async fn stored_counts(
    meta: &dyn MetadataStore,
    ws: &WorkspaceId,
) -> BTreeMap<String, Expected> {
    let mut out = BTreeMap::new();
    for c in meta.list_channels(ws).await.unwrap() {
        let msgs = channel_messages(meta, ws, &c.id).await;
        let mut e = Expected::default();
        for m in &msgs {
            e.messages += 1;
            e.replies += u64::from(m.meta.is_reply());
            e.reactions += m.reactions.iter().map(|r| u64::from(r.count)).sum::<u64>();
            e.files += m.files.len() as u64;
            e.links += m.links.len() as u64;
        }
        if e.messages > 0 {
            // export folders: DMs by id, the others by name
            let folder = if c.kind == chatvault_core::ChannelKind::Im {
                c.id.to_string()
            } else {
                c.name.clone()
            };
            out.insert(folder, e);
        }
    }
    out
}

use chatvault_core::{
    CollectionInfo, CollectionSpec, ContentDelete, ContentDocument, ContentStore, ContentVersion,
    MessageKey, ScoredKey, SearchOptions, WriteOutcome,
};

/// A content store whose writes fail (retryable `Unavailable`) the first `fail_writes` times.
#[derive(Debug)]
pub struct FlakyContent {
    pub inner: Arc<dyn ContentStore>,
    pub fail_writes: AtomicU64,
    pub failed: AtomicU64,
}

impl FlakyContent {
    pub fn new(inner: Arc<dyn ContentStore>, fail_writes: u64) -> Arc<Self> {
        Arc::new(FlakyContent {
            inner,
            fail_writes: AtomicU64::new(fail_writes),
            failed: AtomicU64::new(0),
        })
    }
    fn maybe_fail(&self) -> Result<()> {
        if self
            .fail_writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(Error::unavailable("content store down (injected)"));
        }
        Ok(())
    }
}

#[async_trait]
impl ContentStore for FlakyContent {
    fn backend(&self) -> &'static str {
        "flaky"
    }
    async fn create_collection(&self, ws: &WorkspaceId, spec: &CollectionSpec) -> Result<()> {
        self.inner.create_collection(ws, spec).await
    }
    async fn collection_info(&self, ws: &WorkspaceId) -> Result<Option<CollectionInfo>> {
        self.inner.collection_info(ws).await
    }
    async fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        self.inner.list_collections().await
    }
    async fn drop_collection(&self, ws: &WorkspaceId) -> Result<()> {
        self.inner.drop_collection(ws).await
    }
    async fn set_index_version(&self, ws: &WorkspaceId, version: u32) -> Result<()> {
        self.inner.set_index_version(ws, version).await
    }
    async fn upsert(&self, ws: &WorkspaceId, docs: &[ContentDocument]) -> Result<WriteOutcome> {
        self.maybe_fail()?;
        self.inner.upsert(ws, docs).await
    }
    async fn delete(&self, ws: &WorkspaceId, d: &[ContentDelete]) -> Result<WriteOutcome> {
        self.maybe_fail()?;
        self.inner.delete(ws, d).await
    }
    async fn get(&self, ws: &WorkspaceId, keys: &[MessageKey]) -> Result<Vec<ContentDocument>> {
        self.inner.get(ws, keys).await
    }
    async fn search_vector(
        &self,
        ws: &WorkspaceId,
        q: &[f32],
        o: &SearchOptions,
    ) -> Result<Vec<ScoredKey>> {
        self.inner.search_vector(ws, q, o).await
    }
    async fn search_lexical(
        &self,
        ws: &WorkspaceId,
        q: &str,
        o: &SearchOptions,
    ) -> Result<Vec<ScoredKey>> {
        self.inner.search_lexical(ws, q, o).await
    }
    async fn list_versions(
        &self,
        ws: &WorkspaceId,
        p: &PageRequest,
    ) -> Result<Vec<ContentVersion>> {
        self.inner.list_versions(ws, p).await
    }
}

/// Whether both stores agree: every message with delivered content is in the content store with
/// the same hash, nothing else is, and the outbox is empty.
pub async fn assert_stores_agree(
    meta: &dyn MetadataStore,
    content: &dyn ContentStore,
    ws: &WorkspaceId,
) {
    let index = meta
        .content_index(ws, &PageRequest::first(1_000_000))
        .await
        .unwrap();
    let versions = content
        .list_versions(ws, &PageRequest::first(1_000_000))
        .await
        .unwrap();
    let a: BTreeMap<String, String> = index
        .iter()
        .map(|e| (e.key.to_string(), e.content_hash.clone()))
        .collect();
    let b: BTreeMap<String, String> = versions
        .iter()
        .map(|e| (e.key.to_string(), e.content_hash.clone()))
        .collect();
    assert_eq!(a, b, "content index and content store differ");
    assert!(index.iter().all(|e| e.content_id.is_some()));
    let ob = meta.outbox_stats(Some(ws.clone())).await.unwrap();
    assert_eq!(
        (ob.pending, ob.leased, ob.dead),
        (0, 0, 0),
        "outbox not empty"
    );
}
