//! Test-only helpers: a minimal Slack-export loader (until the collector's importer can be used
//! here) and store construction.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chatvault_core::testing::{MemoryContentStore, MemoryMetadataStore};
use chatvault_core::{
    Channel, ChannelId, ChannelKind, CollectionSpec, ContentAttributes, ContentDocument,
    ContentStore, Embedder, FileRef, Link, LinkSource, MembershipChange, MessageContent,
    MessageKey, MessageMeta, MessageRecord, MetadataStore, Reaction, Ts, User, UserId, Workspace,
    WorkspaceId, WriteBatch,
};
use serde_json::Value;

pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("testdata")
        .join(name)
}

/// The real stores of the embedded default: the SQL metadata store on a SQLite file and the
/// content store (tantivy + HNSW), both in a temporary directory. Keep the guard alive as long as
/// the stores.
pub async fn real_stores() -> (
    Arc<dyn MetadataStore>,
    Arc<dyn ContentStore>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("chatvault.sqlite").display()
    );
    let meta = chatvault_storage_postgres::SqlMetadataStore::connect(
        &url,
        chatvault_storage_postgres::ConnectOptions::default(),
    )
    .await
    .expect("SQLite metadata store");
    let store = chatvault_storage_vector::VectorStore::open(
        dir.path().join("vectors"),
        chatvault_storage_vector::VectorStoreOptions::default(),
    )
    .expect("vector store");
    (Arc::new(meta), Arc::new(store), dir)
}

pub fn memory_stores() -> (Arc<dyn MetadataStore>, Arc<dyn ContentStore>) {
    (
        Arc::new(MemoryMetadataStore::new()),
        Arc::new(MemoryContentStore::new()),
    )
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// Slack markup to plain text: `<@U1>` → `@name`, `<url|label>` → `label url`, `<url>` → `url`,
/// `&amp;` etc. decoded. Returns the text and the URLs found.
pub fn plain_text(text: &str, names: &HashMap<String, String>) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut urls = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('>') else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let inner = &after[..j];
        let (target, label) = match inner.split_once('|') {
            Some((t, l)) => (t, Some(l)),
            None => (inner, None),
        };
        if let Some(u) = target.strip_prefix('@') {
            let name = names.get(u).cloned().unwrap_or_else(|| u.to_string());
            out.push('@');
            out.push_str(label.unwrap_or(&name));
        } else if let Some(c) = target.strip_prefix('#') {
            out.push('#');
            out.push_str(label.unwrap_or(c));
        } else if let Some(sp) = target.strip_prefix('!') {
            out.push('@');
            out.push_str(label.unwrap_or(sp));
        } else {
            if target.starts_with("http") {
                urls.push(target.to_string());
            }
            if let Some(l) = label {
                out.push_str(l);
                out.push(' ');
            }
            out.push_str(target);
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    let out = out
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    (out, urls)
}

/// Everything loaded from one export.
pub struct Loaded {
    pub workspace: WorkspaceId,
    pub channels: HashMap<String, ChannelId>,
    pub messages: usize,
}

/// Loads the bundled houstondatavis export (team T061A2UFL) with all channels public.
pub async fn load_houstondatavis(
    meta: &dyn MetadataStore,
    content: &dyn ContentStore,
    embedder: &dyn Embedder,
) -> Loaded {
    load_export(
        &testdata("slack-export-houstondatavis"),
        "T061A2UFL",
        Some("houstondatavis"),
        meta,
        content,
        embedder,
        &[],
    )
    .await
}

/// Loads a Slack export directory into both stores (content written directly, embedded with
/// `embedder`). Channel kinds: public unless `private` names them.
pub async fn load_export(
    dir: &Path,
    ws: &str,
    domain: Option<&str>,
    meta: &dyn MetadataStore,
    content: &dyn ContentStore,
    embedder: &dyn Embedder,
    private: &[&str],
) -> Loaded {
    let wsid = WorkspaceId::new(ws).expect("workspace id");
    let mut workspace = Workspace::new(wsid.clone(), ws);
    workspace.domain = domain.map(str::to_string);
    meta.upsert_workspace(&workspace).await.expect("workspace");
    content
        .create_collection(
            &wsid,
            &CollectionSpec {
                dimension: embedder.dimension(),
                model_id: embedder.model_id().to_string(),
            },
        )
        .await
        .expect("collection");

    let mut batch = WriteBatch::new(wsid.clone());
    let mut names = HashMap::new();
    if let Value::Array(users) = read_json(&dir.join("users.json")) {
        for u in users {
            let id = s(&u, "id").expect("user id");
            let name = s(&u, "name").unwrap_or(id);
            names.insert(id.to_string(), name.to_string());
            let mut user = User::new(UserId::new(id).expect("user id"), name);
            user.real_name = s(&u, "real_name").map(str::to_string);
            user.is_bot = u.get("is_bot").and_then(Value::as_bool).unwrap_or(false);
            batch.users.push(user);
        }
    }
    let mut channels = HashMap::new();
    let mut kinds = HashMap::new();
    let chans = match read_json(&dir.join("channels.json")) {
        Value::Array(c) => c,
        _ => panic!("channels.json is not an array"),
    };
    for c in &chans {
        let id = ChannelId::new(s(c, "id").expect("channel id")).expect("channel id");
        let name = s(c, "name").expect("channel name").to_string();
        let kind = if private.contains(&name.as_str()) {
            ChannelKind::Private
        } else {
            ChannelKind::Public
        };
        let mut ch = Channel::new(id.clone(), &name, kind);
        ch.is_archived = c
            .get("is_archived")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        ch.is_general = c
            .get("is_general")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        ch.created = s(c, "created")
            .and_then(|t| Ts::new(t).ok())
            .map(|t| t.to_datetime());
        ch.purpose = c
            .get("purpose")
            .and_then(|p| s(p, "value"))
            .map(str::to_string);
        batch.channels.push(ch);
        let members: Vec<UserId> = c
            .get("members")
            .and_then(Value::as_array)
            .map(|m| {
                m.iter()
                    .filter_map(Value::as_str)
                    .filter_map(|u| UserId::new(u).ok())
                    .collect()
            })
            .unwrap_or_default();
        batch.memberships.push(MembershipChange::Replace {
            channel: id.clone(),
            users: members,
        });
        channels.insert(name.clone(), id.clone());
        kinds.insert(name, kind);
    }

    let mut docs = Vec::new();
    let mut count = 0;
    let mut names_sorted: Vec<&String> = channels.keys().collect();
    names_sorted.sort();
    for name in names_sorted {
        let cdir = dir.join(name);
        let Ok(rd) = std::fs::read_dir(&cdir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            let Value::Array(msgs) = read_json(&f) else {
                continue;
            };
            for m in msgs {
                let Some(ts) = s(&m, "ts").and_then(|t| Ts::new(t).ok()) else {
                    continue;
                };
                let key = MessageKey::new(wsid.clone(), channels[name].clone(), ts);
                let mut meta_row = MessageMeta::new(key.clone());
                meta_row.user = s(&m, "user").and_then(|u| UserId::new(u).ok());
                meta_row.bot_id = s(&m, "bot_id").map(str::to_string);
                meta_row.subtype = s(&m, "subtype").map(str::to_string);
                meta_row.thread_ts = s(&m, "thread_ts").and_then(|t| Ts::new(t).ok());
                meta_row.reply_count =
                    m.get("reply_count").and_then(Value::as_u64).unwrap_or(0) as u32;
                meta_row.edited = m
                    .get("edited")
                    .and_then(|e| s(e, "ts"))
                    .and_then(|t| Ts::new(t).ok());
                let reactions: Vec<Reaction> = m
                    .get("reactions")
                    .and_then(Value::as_array)
                    .map(|rs| {
                        rs.iter()
                            .map(|r| Reaction {
                                name: s(r, "name").unwrap_or("?").to_string(),
                                users: r
                                    .get("users")
                                    .and_then(Value::as_array)
                                    .map(|us| {
                                        us.iter()
                                            .filter_map(Value::as_str)
                                            .filter_map(|u| UserId::new(u).ok())
                                            .collect()
                                    })
                                    .unwrap_or_default(),
                                count: r.get("count").and_then(Value::as_u64).unwrap_or(1) as u32,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                meta_row.reaction_count = reactions.iter().map(|r| r.count).sum();
                meta_row.has_reactions = meta_row.reaction_count > 0;
                let (mut text, urls) = plain_text(s(&m, "text").unwrap_or(""), &names);
                let mut links: Vec<Link> = urls
                    .iter()
                    .filter_map(|u| Link::parse(u, LinkSource::Text))
                    .collect();
                if let Some(atts) = m.get("attachments").and_then(Value::as_array) {
                    meta_row.has_attachments = true;
                    for a in atts {
                        for k in ["title", "text", "fallback"] {
                            if let Some(t) = s(a, k) {
                                if !text.contains(t) {
                                    text.push('\n');
                                    text.push_str(t);
                                }
                            }
                        }
                        if let Some(u) = s(a, "from_url").or_else(|| s(a, "title_link")) {
                            if let Some(l) = Link::parse(u, LinkSource::Attachment) {
                                if !links.iter().any(|x| x.url == l.url) {
                                    links.push(l);
                                }
                            }
                        }
                    }
                }
                let mut files = Vec::new();
                if let Some(f) = m.get("file") {
                    files.push(FileRef {
                        id: s(f, "id").unwrap_or("F?").to_string(),
                        name: s(f, "name").map(str::to_string),
                        title: s(f, "title").map(str::to_string),
                        mimetype: s(f, "mimetype").map(str::to_string),
                        filetype: s(f, "filetype").map(str::to_string),
                        size: f.get("size").and_then(Value::as_u64),
                        url_private: None,
                        permalink: s(f, "permalink").map(str::to_string),
                    });
                }
                meta_row.has_files = !files.is_empty();
                meta_row.link_count = links.len() as u32;
                let attrs = ContentAttributes::from_meta(&meta_row, kinds[name]);
                let content_row = (!text.trim().is_empty()).then(|| MessageContent {
                    context: Default::default(),
                    key: key.clone(),
                    text: text.clone(),
                    attributes: attrs,
                });
                if let Some(c) = &content_row {
                    docs.push(c.clone());
                }
                batch.messages.push(MessageRecord {
                    meta: meta_row,
                    reactions,
                    links,
                    files,
                    content: content_row,
                });
                count += 1;
            }
        }
    }
    meta.apply(batch).await.expect("apply export batch");
    write_content(content, embedder, &wsid, docs).await;
    Loaded {
        workspace: wsid,
        channels,
        messages: count,
    }
}

/// Embeds and upserts content directly (what the relay would do).
pub async fn write_content(
    content: &dyn ContentStore,
    embedder: &dyn Embedder,
    ws: &WorkspaceId,
    docs: Vec<MessageContent>,
) {
    for chunk in docs.chunks(embedder.max_batch().clamp(1, 256)) {
        let texts: Vec<String> = chunk.iter().map(|c| c.text.clone()).collect();
        let vectors = embedder.embed(&texts).await.expect("embed");
        let docs: Vec<ContentDocument> = chunk
            .iter()
            .cloned()
            .zip(vectors)
            .map(|(content, embedding)| ContentDocument {
                content,
                embedding,
                version: 1,
            })
            .collect();
        content.upsert(ws, &docs).await.expect("upsert content");
    }
}
