//! The archive the server's tests read, shared by the API's and the web archive's tests: the
//! bundled houstondatavis export plus one private channel (one member, a review request and a
//! thread) and e-mail addresses for two members, imported and delivered into the embedded
//! default's real stores (SQLite + tantivy/HNSW). Each test binary adds what only it needs.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chatvault_collector::{Collector, ImportOptions, Relay, RelayOptions};
use chatvault_core::{ContentStore, Embedder, HashingEmbedder, MetadataStore, WorkspaceId};
use serde_json::{json, Value};

pub const WS: &str = "hdv";
/// A member of the private channel (micahstubbs).
pub const MEMBER: &str = "U061A1R2R";
/// A workspace member who is not in the private channel (javier).
pub const OUTSIDER: &str = "U061A3E0G";
pub const SECRET_ID: &str = "G0SECRET1";
pub const SECRET_NAME: &str = "secret-plans";
/// A word only the private channel's messages contain.
pub const SECRET_WORD: &str = "zanzibar";
/// The private channel's thread (its parent's ts) and day.
pub const SECRET_THREAD_TS: &str = "1433900000.000100";
pub const SECRET_DAY: &str = "2015-06-10";

/// The houstondatavis export copied under `dir`, with the private channel and the e-mail
/// addresses added.
pub fn export_with_private_channel(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/slack-export-houstondatavis");
    let dst = dir.join("export");
    copy_dir(&src, &dst);
    let groups = json!([{
        "id": SECRET_ID, "name": SECRET_NAME, "created": "1433558319", "creator": MEMBER,
        "is_archived": false, "is_private": true, "members": [MEMBER],
        "purpose": {"value": "nobody outside may know"}
    }]);
    std::fs::write(dst.join("groups.json"), groups.to_string()).expect("groups.json");
    // Email addresses, as an export made with the email scope carries them (the trusted proxy
    // header maps a signed-in address to its member).
    let users_path = dst.join("users.json");
    let mut users: Value =
        serde_json::from_str(&std::fs::read_to_string(&users_path).expect("users.json"))
            .expect("users.json parses");
    for u in users.as_array_mut().expect("users") {
        let email = match u["id"].as_str() {
            Some(MEMBER) => "Micah@Example.com",
            Some(OUTSIDER) => "javier@example.com",
            _ => continue,
        };
        u["profile"]["email"] = json!(email);
    }
    std::fs::write(&users_path, users.to_string()).expect("users.json");
    std::fs::create_dir_all(dst.join(SECRET_NAME)).expect("private folder");
    let messages = json!([
        {"type": "message", "user": MEMBER, "ts": SECRET_THREAD_TS, "thread_ts": SECRET_THREAD_TS,
         "reply_count": 1,
         "text": "zanzibar launch plan <https://github.com/acme/widgets/pull/42> can someone review this please?"},
        {"type": "message", "user": OUTSIDER, "ts": "1433900100.000200", "thread_ts": SECRET_THREAD_TS,
         "parent_user_id": MEMBER, "text": "zanzibar looks good to me"}
    ]);
    std::fs::write(
        dst.join(SECRET_NAME).join(format!("{SECRET_DAY}.json")),
        messages.to_string(),
    )
    .expect("private day");
    dst
}

pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read export") {
        let e = e.expect("entry");
        let to = dst.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).expect("copy");
        }
    }
}

/// The stores the tests' servers read.
pub struct Stores {
    pub meta: Arc<dyn MetadataStore>,
    pub content: Arc<dyn ContentStore>,
    pub embedder: Arc<dyn Embedder>,
}

/// Opens the embedded default's stores under `dir`, imports `export` and delivers its content.
pub async fn import(dir: &Path, export: PathBuf) -> Stores {
    let meta: Arc<dyn MetadataStore> = Arc::new(
        chatvault_storage_postgres::SqlMetadataStore::open_sqlite(
            dir.join("chatvault.sqlite"),
            chatvault_storage_postgres::ConnectOptions::default(),
        )
        .await
        .expect("SQLite metadata store"),
    );
    let content: Arc<dyn ContentStore> = Arc::new(
        chatvault_storage_vector::VectorStore::open(
            dir.join("vectors"),
            chatvault_storage_vector::VectorStoreOptions::default(),
        )
        .expect("vector store"),
    );
    let embedder: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(384).expect("embedder"));
    let ws = WorkspaceId::new(WS).expect("id");
    Collector::new(meta.clone(), ws)
        .import_export(export, ImportOptions::default())
        .await
        .expect("import");
    Relay::new(
        meta.clone(),
        content.clone(),
        embedder.clone(),
        RelayOptions::default(),
    )
    .drain()
    .await
    .expect("relay");
    Stores {
        meta,
        content,
        embedder,
    }
}

/// What must never reach someone who may not read the private channel.
pub fn assert_no_secret(what: &str, text: &str) {
    for s in [SECRET_WORD, SECRET_NAME, SECRET_ID] {
        assert!(
            !text.to_lowercase().contains(&s.to_lowercase()),
            "{what} leaks {s}: {text}"
        );
    }
}
