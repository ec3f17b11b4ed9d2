//! Crash test: a child process imports an export into SQLite + the vector store and relays it,
//! and is killed with SIGKILL at random moments; after each kill it is rerun. At the end both
//! stores hold exactly the export's messages, each once, and the outbox is empty.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use chatvault_collector::{Collector, ImportOptions, Relay, RelayOptions};
use chatvault_core::testing::MemoryMetadataStore;
use chatvault_core::{
    ContentStore, HashingEmbedder, MetadataStore, PageRequest, RetryPolicy, WorkspaceId,
};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};
use common::*;

const EXPORT: &str = "slack-export-viewer-testarchive";
const KILLS: usize = 20;

async fn open(dir: &Path) -> (Arc<dyn MetadataStore>, Arc<dyn ContentStore>) {
    let url = format!("sqlite://{}?mode=rwc", dir.join("meta.db").display());
    let meta = SqlMetadataStore::connect(&url, ConnectOptions::default())
        .await
        .unwrap();
    let content = VectorStore::open(dir.join("content"), VectorStoreOptions::default()).unwrap();
    (Arc::new(meta), Arc::new(content))
}

/// The child's work: import then relay everything. Runs only in the child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by kill_at_random_moments_then_rerun as a child process"]
async fn kill_child_entry() {
    let Ok(dir) = std::env::var("CHATVAULT_KILL_DIR") else {
        return;
    };
    let (meta, content) = open(Path::new(&dir)).await;
    let ws = WorkspaceId::new("T1").unwrap();
    Collector::new(meta.clone(), ws)
        .import_export(
            testdata(EXPORT),
            ImportOptions {
                batch_size: 7,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let options = RelayOptions {
        batch_size: 8,
        lease: Duration::from_millis(500),
        poll_interval: Duration::from_millis(20),
        retry: RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
        },
        ..Default::default()
    };
    Relay::new(
        meta,
        content,
        Arc::new(HashingEmbedder::new(64).unwrap()),
        options,
    )
    .drain()
    .await
    .unwrap();
}

fn child(dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_child_entry",
            "--ignored",
            "--test-threads=1",
            "--quiet",
        ])
        .env("CHATVAULT_KILL_DIR", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn kill_at_random_moments_then_rerun() {
    // What the export holds, from the reference store.
    let reference = MemoryMetadataStore::new();
    let summary = Collector::new(Arc::new(reference), WorkspaceId::new("T1").unwrap())
        .import_export(testdata(EXPORT), ImportOptions::default())
        .await
        .unwrap();

    // How long one full run takes, in a scratch directory.
    let scratch = tempfile::tempdir().unwrap();
    let t = Instant::now();
    assert!(
        child(scratch.path()).wait().unwrap().success(),
        "a child run failed"
    );
    let full = t.elapsed();

    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut kills = 0;
    let mut attempts = 0;
    // Kill moments are drawn over the length of the last run that finished in this directory
    // (reruns get shorter as the stores fill up).
    let mut span = full;
    while kills < KILLS {
        attempts += 1;
        assert!(
            attempts < KILLS * 3,
            "the child kept finishing before the kill"
        );
        let started = Instant::now();
        let mut c = child(tmp.path());
        let at = Duration::from_millis(rng.random_range(5..(span.as_millis() as u64).max(10)));
        std::thread::sleep(at);
        if c.try_wait().unwrap().is_none() {
            c.kill().unwrap(); // SIGKILL
            kills += 1;
            c.wait().unwrap();
        } else {
            span = started.elapsed();
        }
    }
    // rerun to completion
    let status = child(tmp.path()).wait().unwrap();
    assert!(status.success(), "the final run failed: {status}");

    let (meta, content) = open(tmp.path()).await;
    let ws = WorkspaceId::new("T1").unwrap();
    let stats = meta.stats(&ws).await.unwrap();
    assert_eq!(stats.messages, summary.totals.messages);
    assert_eq!(stats.with_content, summary.totals.with_content);
    let versions = content
        .list_versions(&ws, &PageRequest::first(1_000_000))
        .await
        .unwrap();
    assert_eq!(versions.len() as u64, summary.totals.with_content);
    assert_stores_agree(meta.as_ref(), content.as_ref(), &ws).await;
    let stored = stored_counts(meta.as_ref(), &ws).await;
    assert_eq!(stored, expected_counts(&testdata(EXPORT)));
    eprintln!("{kills} kills in {attempts} attempts; a full run takes {full:?}");
}
