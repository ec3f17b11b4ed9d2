//! The web archive's test server: the shared test archive (`archive`: the bundled
//! houstondatavis export plus a private channel) and a day of formatted (and hostile) messages,
//! on the embedded default's real stores (SQLite + tantivy/HNSW), served over real HTTP on
//! 127.0.0.1.
//!
//! One server per test binary: built once, on a runtime of its own (a background thread).
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chatvault_query::Scope;
use chatvault_server::{router, ApiToken, AppState, AuthConfig, ServerConfig};
use serde_json::json;

#[path = "../archive/mod.rs"]
mod archive;
pub use archive::*;

pub const ADMIN_TOKEN: &str = "admin-token";
pub const MEMBER_TOKEN: &str = "member-token";
pub const OUTSIDER_TOKEN: &str = "outsider-token";
/// The formatted message's thread, in #general (2016-07-28).
pub const FORMATTED_TS: &str = "1469700000.000100";
pub const FORMATTED_DAY: &str = "2016-07-28";
/// A word only the formatted message's replies contain.
pub const REPLY_WORD: &str = "zebrafish";

pub struct Fixture {
    /// `http://127.0.0.1:port`.
    pub url: String,
    pub state: AppState,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

pub fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the fixture");
            rt.block_on(async move {
                let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
                let fixture = setup(dir.path()).await;
                tx.send(fixture).expect("the tests wait for the fixture");
                std::future::pending::<()>().await;
                drop(dir);
            });
        });
        rx.recv().expect("the fixture starts")
    })
}

/// The shared archive (`archive`) with a day of formatted messages in #general.
fn export(dir: &Path) -> PathBuf {
    let dst = export_with_private_channel(dir);
    // Slack escapes <, > and & in text; the rest is mrkdwn.
    let formatted = json!([
        {"type": "message", "user": MEMBER, "ts": FORMATTED_TS, "thread_ts": FORMATTED_TS,
         "reply_count": 2,
         "text": "look &lt;script&gt;alert('xss')&lt;/script&gt; *bold move* _quietly_ ~never~ `inline code` :tada: <https://example.com/docs|the docs> <#C061A2UGJ|general>\n&gt; a quoted line\n```let x = 1 &lt; 2;```",
         "reactions": [{"name": "+1", "users": [MEMBER, OUTSIDER], "count": 2}]},
        {"type": "message", "user": OUTSIDER, "ts": "1469700100.000200", "thread_ts": FORMATTED_TS,
         "parent_user_id": MEMBER, "text": "first reply about the zebrafish"}
    ]);
    std::fs::write(
        dst.join("general").join(format!("{FORMATTED_DAY}.json")),
        formatted.to_string(),
    )
    .expect("formatted day");
    let next = json!([
        {"type": "message", "user": MEMBER, "ts": "1469790000.000300", "thread_ts": FORMATTED_TS,
         "parent_user_id": MEMBER, "text": "second reply, a day later, zebrafish again"}
    ]);
    std::fs::write(
        dst.join("general").join("2016-07-29.json"),
        next.to_string(),
    )
    .expect("next day");
    dst
}

async fn setup(dir: &Path) -> Fixture {
    let Stores {
        meta,
        content,
        embedder,
    } = import(dir, export(dir)).await;
    let auth = AuthConfig {
        tokens: vec![
            ApiToken::from_secret(ADMIN_TOKEN, Scope::Admin),
            ApiToken::from_secret(
                MEMBER_TOKEN,
                Scope::User(chatvault_core::UserId::new(MEMBER).expect("id")),
            ),
            ApiToken::from_secret(
                OUTSIDER_TOKEN,
                Scope::User(chatvault_core::UserId::new(OUTSIDER).expect("id")),
            ),
        ],
        trusted_email_header: None,
    };
    let state = AppState::new(
        meta,
        content,
        embedder,
        ServerConfig {
            relay: None,
            auth,
            ..ServerConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fixture {
        url: format!("http://{addr}"),
        state,
    }
}
