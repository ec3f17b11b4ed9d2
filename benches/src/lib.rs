//! The data chatvault's benches run on: seeded and synthetic, sized by environment variables, so
//! that every run of `cargo bench -p chatvault-benches` measures the same thing.
//!
//! - [`workspace_batch`]: a workspace's channels (100 of them, so one channel is 1% of the
//!   messages; a quarter private) and users;
//! - [`message_batch`]: messages as the collector writes them (metadata, reactions, links,
//!   threads and the text), from a Zipf-skewed vocabulary so that BM25 has common and rare words;
//! - [`documents`]: the content-store documents of those messages, embedded;
//! - [`synthetic_export`]: a Slack export folder of any size, for the end-to-end import;
//! - [`preload`]: a synthetic archive loaded through the real write path, for the benches that
//!   run the server or the query engine over it;
//! - [`quality`]: the search-quality harness (labelled sets, nDCG/MRR/recall per mode), run by
//!   the `quality` binary.

pub mod preload;
pub mod quality;

use std::path::Path;

use chatvault_core::{
    Channel, ChannelId, ChannelKind, ContentAttributes, ContentDocument, Embedder, Link,
    LinkSource, MembershipChange, MessageContent, MessageKey, MessageMeta, MessageRecord, Reaction,
    Result, Ts, User, UserId, WorkspaceId, WriteBatch,
};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Channels in the synthetic workspace: one is 1% of the messages.
pub const CHANNELS: usize = 100;
/// Of which the first this many are private.
pub const PRIVATE_CHANNELS: usize = 25;
/// Users in the synthetic workspace.
pub const USERS: usize = 200;
/// Words in the vocabulary.
const VOCAB: usize = 5000;
/// 2023-01-01, the first message's time.
const START_SECS: i64 = 1_672_531_200;

/// A `usize` from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The benches' workspace id.
pub fn workspace() -> WorkspaceId {
    WorkspaceId::new("TBENCH").expect("a valid workspace id")
}

/// The id of channel `c`.
pub fn channel(c: usize) -> ChannelId {
    ChannelId::new(format!("C{c:04}")).expect("a valid channel id")
}

/// The id of user `u`.
pub fn user(u: usize) -> UserId {
    UserId::new(format!("U{u:04}")).expect("a valid user id")
}

/// The kind of channel `c`.
pub fn channel_kind(c: usize) -> ChannelKind {
    if c < PRIVATE_CHANNELS {
        ChannelKind::Private
    } else {
        ChannelKind::Public
    }
}

/// The workspace's channels (with members: every third user) and users.
pub fn workspace_batch(ws: &WorkspaceId) -> WriteBatch {
    let mut batch = WriteBatch::new(ws.clone());
    batch.users = (0..USERS)
        .map(|u| User::new(user(u), format!("user{u}")))
        .collect();
    for c in 0..CHANNELS {
        batch.channels.push(Channel::new(
            channel(c),
            format!("channel-{c}"),
            channel_kind(c),
        ));
        batch.memberships.push(MembershipChange::Replace {
            channel: channel(c),
            users: (0..USERS).filter(|u| (u + c) % 3 == 0).map(user).collect(),
        });
    }
    batch
}

/// A seeded vocabulary of made-up words and a Zipf-like sampler over it.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    words: Vec<String>,
}

impl Vocabulary {
    /// The vocabulary of seed `seed`.
    pub fn new(seed: u64) -> Self {
        const SYL: &[&str] = &[
            "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "de", "pa", "zu", "fe", "gri", "tor",
            "len", "bar", "qui", "mon", "sel", "dra",
        ];
        let mut rng = StdRng::seed_from_u64(seed);
        let words = (0..VOCAB)
            .map(|_| {
                let n = rng.random_range(2..=4);
                (0..n)
                    .map(|_| SYL[rng.random_range(0..SYL.len())])
                    .collect()
            })
            .collect();
        Vocabulary { words }
    }

    /// One word: common words are common.
    pub fn word(&self, rng: &mut StdRng) -> &str {
        let u: f64 = rng.random_range(0.0..1.0);
        let i = ((self.words.len() as f64).powf(u) as usize)
            .saturating_sub(1)
            .min(self.words.len() - 1);
        &self.words[i]
    }

    /// `n` words joined by spaces.
    pub fn phrase(&self, rng: &mut StdRng, n: usize) -> String {
        (0..n).map(|_| self.word(rng)).collect::<Vec<_>>().join(" ")
    }
}

/// Messages `from..from + n` of the synthetic workspace (deterministic per index): in channel
/// `i % CHANNELS`, 5-30 words, one in ten a thread reply, one in five with reactions, one in
/// twenty with a GitHub pull-request link. Message `i` is `i` seconds after the first.
pub fn message_batch(ws: &WorkspaceId, vocab: &Vocabulary, from: usize, n: usize) -> WriteBatch {
    let mut batch = WriteBatch::new(ws.clone());
    for i in from..from + n {
        let mut rng = StdRng::seed_from_u64(i as u64);
        let c = i % CHANNELS;
        let ts = Ts::from_micros((START_SECS + i as i64) * 1_000_000);
        let key = MessageKey::new(ws.clone(), channel(c), ts);
        let mut meta = MessageMeta::new(key.clone());
        meta.user = Some(user(rng.random_range(0..USERS)));
        if i >= 10 * CHANNELS && rng.random_bool(0.1) {
            // a reply to a message of the same channel some minutes earlier
            let back = CHANNELS * rng.random_range(1..10);
            meta.thread_ts = Some(Ts::from_micros(
                (START_SECS + (i - back) as i64) * 1_000_000,
            ));
        }
        let reactions: u32 = if rng.random_bool(0.2) {
            rng.random_range(1..8)
        } else {
            0
        };
        meta.reaction_count = reactions;
        meta.has_reactions = reactions > 0;
        let words = rng.random_range(5..30);
        let mut text = vocab.phrase(&mut rng, words);
        let mut links = Vec::new();
        if rng.random_bool(0.05) {
            let url = format!(
                "https://github.com/acme/app/pull/{}",
                rng.random_range(1..500)
            );
            text.push(' ');
            text.push_str(&url);
            links.extend(Link::parse(&url, LinkSource::Text));
        }
        meta.link_count = links.len() as u32;
        let content = MessageContent {
            context: Default::default(),
            key,
            attributes: ContentAttributes::from_meta(&meta, channel_kind(c)),
            text,
        };
        batch.messages.push(MessageRecord {
            reactions: if reactions > 0 {
                vec![Reaction {
                    name: "tada".into(),
                    users: vec![user((i + 1) % USERS)],
                    count: reactions,
                }]
            } else {
                Vec::new()
            },
            links,
            files: Vec::new(),
            content: Some(content),
            meta,
        });
    }
    batch
}

/// The content-store documents of a batch's messages, embedded by `embedder`, at version 1.
///
/// # Errors
/// As the embedder's.
pub async fn documents(
    batch: &WriteBatch,
    embedder: &dyn Embedder,
) -> Result<Vec<ContentDocument>> {
    let contents: Vec<MessageContent> = batch
        .messages
        .iter()
        .filter_map(|m| m.content.clone())
        .collect();
    let texts: Vec<String> = contents.iter().map(|c| c.text.clone()).collect();
    let vectors = embedder.embed(&texts).await?;
    Ok(contents
        .into_iter()
        .zip(vectors)
        .map(|(content, embedding)| ContentDocument {
            content,
            embedding,
            version: 1,
        })
        .collect())
}

/// The embedded default's metadata store: SQLite in a file under `dir`.
///
/// # Errors
/// When the database cannot be created.
pub async fn sqlite_store(dir: &Path) -> Result<SqlMetadataStore> {
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.join("chatvault.sqlite").display()
    );
    SqlMetadataStore::connect(&url, ConnectOptions::default()).await
}

/// The PostgreSQL database to bench against, if one is configured
/// (`CHATVAULT_BENCH_DATABASE_URL`, else `CHATVAULT_TEST_DATABASE_URL`).
pub fn postgres_url() -> Option<String> {
    std::env::var("CHATVAULT_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("CHATVAULT_TEST_DATABASE_URL"))
        .ok()
        .filter(|u| u.starts_with("postgres"))
}

/// Writes a Slack export of `n` messages into `dir`: 10 channels, 500 messages per day file, with
/// mentions, links and reactions.
///
/// # Errors
/// When `dir` cannot be written.
pub fn synthetic_export(dir: &Path, n: usize) -> std::io::Result<()> {
    let channels: Vec<String> = (0..10).map(|i| format!("chan-{i}")).collect();
    let listed: Vec<serde_json::Value> = channels
        .iter()
        .enumerate()
        .map(|(i, c)| {
            serde_json::json!({"id": format!("C{i:04}"), "name": c, "members": ["U1", "U2"]})
        })
        .collect();
    std::fs::write(dir.join("channels.json"), serde_json::to_vec(&listed)?)?;
    std::fs::write(
        dir.join("users.json"),
        br#"[{"id":"U1","name":"ann"},{"id":"U2","name":"bob"}]"#,
    )?;
    let vocab = Vocabulary::new(7);
    let per_file = 500;
    let (mut i, mut day) = (0usize, 0usize);
    while i < n {
        for c in &channels {
            if i >= n {
                break;
            }
            let folder = dir.join(c);
            std::fs::create_dir_all(&folder)?;
            let mut msgs = Vec::with_capacity(per_file);
            for j in 0..per_file.min(n - i) {
                let mut rng = StdRng::seed_from_u64(i as u64);
                let ts = format!("{}.{:06}", 1_600_000_000 + day * 86_400 + j * 10, j);
                let words = rng.random_range(5..25);
                let mut m = serde_json::json!({
                    "type": "message",
                    "user": if j % 2 == 0 { "U1" } else { "U2" },
                    "ts": ts,
                    "text": format!(
                        "{} <@U2> see <https://example.com/{c}/{i}|doc {i}>",
                        vocab.phrase(&mut rng, words)
                    ),
                });
                if j % 5 == 0 {
                    m["reactions"] =
                        serde_json::json!([{"name": "+1", "users": ["U1"], "count": 1}]);
                }
                msgs.push(m);
                i += 1;
            }
            let name = format!("2020-{:02}-{:02}.json", 1 + day / 28 % 12, 1 + day % 28);
            std::fs::write(folder.join(name), serde_json::to_vec(&msgs)?)?;
        }
        day += 1;
    }
    Ok(())
}

/// The repository's `testdata/` folder.
pub fn testdata(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("testdata")
        .join(name)
}
