//! Index text with context: the author's name is indexed with each message (for BM25 and the
//! embedding) while the stored text stays what was said; renames reach the index through the
//! outbox; a collection of an older index-text version is re-indexed once, with progress. On
//! real stores (SQLite, tantivy/HNSW on disk).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatvault_collector::{
    Collector, FnProgress, ImportOptions, IndexTextOptions, ProgressUpdate, Relay, RelayOptions,
    Stage,
};
use chatvault_core::{
    ContentStore, MessageFilter, MessageKey, MetadataStore, PageRequest, SearchOptions, User,
    UserId, WorkspaceId, WriteBatch, INDEX_TEXT_VERSION,
};
use chatvault_query::{QueryEngine, Scope, SearchMode, SearchRequest};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};
use common::*;

const EXPORT: &str = "slack-export-viewer-testarchive";

struct Stores {
    meta: Arc<dyn MetadataStore>,
    content: Arc<dyn ContentStore>,
    ws: WorkspaceId,
    _dir: tempfile::TempDir,
}

async fn imported() -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("meta.sqlite").display()
    );
    let meta: Arc<dyn MetadataStore> = Arc::new(
        SqlMetadataStore::connect(&url, ConnectOptions::default())
            .await
            .unwrap(),
    );
    let content: Arc<dyn ContentStore> = Arc::new(
        VectorStore::open(dir.path().join("vectors"), VectorStoreOptions::default()).unwrap(),
    );
    let ws = WorkspaceId::new("T1").unwrap();
    Collector::new(meta.clone(), ws.clone())
        .import_export(testdata(EXPORT), ImportOptions::default())
        .await
        .unwrap();
    Stores {
        meta,
        content,
        ws,
        _dir: dir,
    }
}

fn opts(index_text: IndexTextOptions) -> RelayOptions {
    RelayOptions {
        batch_size: 64,
        poll_interval: Duration::from_millis(5),
        index_text,
        ..Default::default()
    }
}

/// The keys of a user's messages that have content.
async fn messages_of(s: &Stores, user: &UserId) -> Vec<MessageKey> {
    let filter = MessageFilter {
        users: Some(vec![user.clone()]),
        ..Default::default()
    };
    let keys = s
        .meta
        .filter_messages(&s.ws, &filter, &PageRequest::first(10_000))
        .await
        .unwrap();
    let docs = s.content.get(&s.ws, &keys).await.unwrap();
    docs.into_iter().map(|d| d.content.key).collect()
}

async fn lexical(s: &Stores, q: &str) -> Vec<MessageKey> {
    let mut keys: Vec<MessageKey> = s
        .content
        .search_lexical(&s.ws, q, &SearchOptions::top(1000))
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.key)
        .collect();
    keys.sort();
    keys
}

/// The keys among `keys` whose own text (not its context) contains `word`.
async fn said(s: &Stores, keys: &[MessageKey], word: &str) -> Vec<MessageKey> {
    let docs = s.content.get(&s.ws, keys).await.unwrap();
    let mut out: Vec<MessageKey> = docs
        .into_iter()
        .filter(|d| d.content.text.to_lowercase().contains(word))
        .map(|d| d.content.key)
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn the_author_is_indexed_the_text_stays_and_renames_follow() {
    let s = imported().await;
    let embedder = CountingEmbedder::new();
    let relay = Relay::new(
        s.meta.clone(),
        s.content.clone(),
        embedder.clone(),
        opts(IndexTextOptions::default()),
    );
    let first = relay.drain().await.unwrap();
    assert!(first.embedded > 50, "{first:?}");
    let info = s.content.collection_info(&s.ws).await.unwrap().unwrap();
    assert_eq!(info.index_version, INDEX_TEXT_VERSION, "a new collection");

    // Hermione Granger (display name "doubledeez") wrote messages.
    let hermione = UserId::new("U0BMS113R").unwrap();
    let mine = messages_of(&s, &hermione).await;
    assert!(!mine.is_empty());
    let docs = s.content.get(&s.ws, &mine).await.unwrap();
    for d in &docs {
        assert_eq!(d.content.context.author.as_deref(), Some("doubledeez"));
        assert!(
            !d.content.text.starts_with("doubledeez:"),
            "the stored text is what was said: {:?}",
            d.content.text
        );
        assert!(d.content.index_text().starts_with("doubledeez: "));
    }
    let found = lexical(&s, "doubledeez").await;
    for k in &mine {
        assert!(found.contains(k), "{k} is found by its author's name");
    }
    // Through the query layer too, and what it shows is what was said. (Some of her messages
    // name her in their own text, `@doubledeez uploaded a file`: the others are found only by
    // their context.)
    let silent: Vec<MessageKey> = {
        let named = said(&s, &mine, "doubledeez").await;
        mine.iter()
            .filter(|k| !named.contains(k))
            .cloned()
            .collect()
    };
    assert!(!silent.is_empty());
    let engine = QueryEngine::new(s.meta.clone(), s.content.clone(), embedder.clone());
    let res = engine
        .search(
            &s.ws,
            SearchRequest::new("doubledeez")
                .mode(SearchMode::Lexical)
                .limit(100)
                .scope(Scope::Admin),
        )
        .await
        .unwrap();
    for k in &silent {
        let hit = res
            .hits
            .iter()
            .find(|h| &h.message.key == k)
            .unwrap_or_else(|| panic!("{k} is a search hit for its author's name"));
        let stored = docs.iter().find(|d| d.key() == k).expect("stored");
        assert_eq!(
            hit.message.text.as_deref(),
            Some(stored.content.text.as_str())
        );
        assert!(!hit
            .message
            .text
            .as_deref()
            .unwrap_or("")
            .contains("doubledeez"));
    }

    // She changes her display name: exactly her messages are re-indexed and re-embedded.
    let users = s
        .meta
        .get_users(&s.ws, std::slice::from_ref(&hermione))
        .await
        .unwrap();
    let mut renamed: User = users[0].clone();
    renamed.display_name = Some("Hermione Zanzibar".into());
    let mut b = WriteBatch::new(s.ws.clone());
    b.users = vec![renamed.clone()];
    let r = s.meta.apply(b.clone()).await.unwrap();
    assert_eq!(r.outbox_enqueued, mine.len() as u64);
    let before = embedder.texts();
    let second = relay.drain().await.unwrap();
    assert_eq!(second.reindexed, mine.len() as u64, "{second:?}");
    assert_eq!(embedder.texts() - before, mine.len() as u64);
    let mut mine_sorted = mine.clone();
    mine_sorted.sort();
    assert_eq!(lexical(&s, "zanzibar").await, mine_sorted);
    // The old name finds only the messages that say it themselves.
    let old_name = lexical(&s, "doubledeez").await;
    for k in &silent {
        assert!(
            !old_name.contains(k),
            "{k} is no longer found by the old name"
        );
    }
    let after = s.content.get(&s.ws, &mine).await.unwrap();
    for (old, new) in docs.iter().zip(&after) {
        assert_eq!(old.content.text, new.content.text, "the text is unchanged");
    }

    // The same name again costs nothing: no outbox entry, no embedding.
    let r = s.meta.apply(b).await.unwrap();
    assert_eq!(r.outbox_enqueued, 0);
    let third = relay.drain().await.unwrap();
    assert_eq!((third.claimed, third.embedded), (0, 0), "{third:?}");
}

#[tokio::test]
async fn an_old_collection_is_reindexed_once_with_progress() {
    let s = imported().await;
    // A collection from before context: plain texts, no index version recorded.
    let old = Relay::new(
        s.meta.clone(),
        s.content.clone(),
        CountingEmbedder::new(),
        opts(IndexTextOptions::none()),
    )
    .drain()
    .await
    .unwrap();
    s.content.set_index_version(&s.ws, 0).await.unwrap();
    let n = s
        .content
        .collection_info(&s.ws)
        .await
        .unwrap()
        .unwrap()
        .documents;
    assert_eq!(old.upserted, n);
    // Without context, her name finds only the messages that say it.
    let hermione = UserId::new("U0BMS113R").unwrap();
    let mine = messages_of(&s, &hermione).await;
    let before = lexical(&s, "doubledeez").await;
    assert_eq!(before, said(&s, &before, "doubledeez").await);
    assert!(mine.iter().any(|k| !before.contains(k)));

    let updates: Arc<Mutex<Vec<ProgressUpdate>>> = Arc::default();
    let seen = updates.clone();
    let embedder = CountingEmbedder::new();
    let relay = Relay::new(
        s.meta.clone(),
        s.content.clone(),
        embedder.clone(),
        opts(IndexTextOptions::default()),
    )
    .with_progress(Arc::new(FnProgress(move |u: &ProgressUpdate| {
        seen.lock().unwrap().push(u.clone())
    })));
    let report = relay.drain().await.unwrap();
    assert_eq!(report.reindexed, n, "every document re-indexed: {report:?}");
    assert!(report.embedded > 0 && report.embedded <= n);
    // Messages without a known author keep their index text: their embedding is reused.
    assert_eq!(report.embedded + report.embeddings_reused, n, "{report:?}");
    let info = s.content.collection_info(&s.ws).await.unwrap().unwrap();
    assert_eq!(
        (info.index_version, info.documents),
        (INDEX_TEXT_VERSION, n)
    );
    let after = lexical(&s, "doubledeez").await;
    for k in &mine {
        assert!(
            after.contains(k),
            "{k} is found by its author's name once migrated"
        );
    }
    let progress: Vec<ProgressUpdate> = updates
        .lock()
        .unwrap()
        .iter()
        .filter(|u| u.stage == Stage::Reindex)
        .cloned()
        .collect();
    let last = progress.last().expect("progress of the migration");
    assert_eq!((last.done, last.total), (n, Some(n)), "{progress:?}");

    // Once only: the next run finds the version recorded and enqueues nothing.
    assert_eq!(relay.upgrade_index_text().await.unwrap(), 0);
    let again = relay.drain().await.unwrap();
    assert_eq!(again.claimed, 0);
}
