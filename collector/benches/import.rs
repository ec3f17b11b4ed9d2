//! Import throughput, end to end: a Slack export → SQLite (metadata + outbox) → relay → embedder
//! → the vector store (tantivy + hnsw_rs). Prints messages/s per stage and peak RSS.
//!
//! ```text
//! cargo bench -p chatvault-collector --bench import
//! CHATVAULT_BENCH_MESSAGES=100000 cargo bench -p chatvault-collector --bench import   # synthetic export of that size
//! CHATVAULT_BENCH_EXPORT=/path/to/export cargo bench -p chatvault-collector --bench import
//! CHATVAULT_BENCH_RELAY_BATCH=2048 cargo bench -p chatvault-collector --bench import   # outbox entries per relay batch
//! ```
//!
//! Default: the houstondatavis export (1,382 messages) with the hashing test embedder (384-d),
//! then a synthetic 20,000-message export (memory should stay flat as the export grows).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chatvault_collector::{Collector, ImportOptions, Relay, RelayOptions};
use chatvault_core::{ContentStore, Embedder, HashingEmbedder, MetadataStore, WorkspaceId};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// A synthetic export: `n` messages over 10 channels, 500 messages per day file, with links,
/// mentions, reactions and threads.
fn synthesize(dir: &Path, n: usize) {
    let channels: Vec<String> = (0..10).map(|i| format!("chan-{i}")).collect();
    let chans: Vec<serde_json::Value> = channels
        .iter()
        .enumerate()
        .map(|(i, c)| serde_json::json!({"id": format!("C{i:04}"), "name": c, "members": ["U1", "U2"]}))
        .collect();
    std::fs::write(
        dir.join("channels.json"),
        serde_json::to_vec(&chans).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("users.json"),
        br#"[{"id":"U1","name":"ann"},{"id":"U2","name":"bob"}]"#,
    )
    .unwrap();
    let words = [
        "deploy", "staging", "failed", "latency", "postgres", "index", "review", "lunch",
        "release", "hotfix",
    ];
    let per_file = 500;
    let mut i = 0usize;
    let mut day = 0usize;
    while i < n {
        for c in &channels {
            if i >= n {
                break;
            }
            let folder = dir.join(c);
            std::fs::create_dir_all(&folder).unwrap();
            let mut msgs = Vec::with_capacity(per_file);
            for j in 0..per_file.min(n - i) {
                let ts = format!("{}.{:06}", 1_600_000_000 + day * 86_400 + j * 10, j);
                let w = |k: usize| words[(i + k * 7) % words.len()];
                let mut m = serde_json::json!({
                    "type": "message", "user": if j % 2 == 0 { "U1" } else { "U2" }, "ts": ts,
                    "text": format!("{} {} {} <@U2> see <https://example.com/{}/{}|doc {}>", w(1), w(2), w(3), c, i, i),
                });
                if j % 5 == 0 {
                    m["reactions"] =
                        serde_json::json!([{"name": "+1", "users": ["U1"], "count": 1}]);
                }
                msgs.push(m);
                i += 1;
            }
            std::fs::write(
                folder.join(format!(
                    "2020-{:02}-{:02}.json",
                    1 + day / 28 % 12,
                    1 + day % 28
                )),
                serde_json::to_vec(&msgs).unwrap(),
            )
            .unwrap();
        }
        day += 1;
    }
}

async fn run(label: &str, export: &Path, embedder: Arc<dyn Embedder>) {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", tmp.path().join("meta.db").display());
    let meta: Arc<dyn MetadataStore> = Arc::new(
        SqlMetadataStore::connect(&url, ConnectOptions::default())
            .await
            .unwrap(),
    );
    let content: Arc<dyn ContentStore> = Arc::new(
        VectorStore::open(tmp.path().join("content"), VectorStoreOptions::default()).unwrap(),
    );
    let ws = WorkspaceId::new("T1").unwrap();
    let t0 = Instant::now();
    let summary = Collector::new(meta.clone(), ws.clone())
        .import_export(export, ImportOptions::default())
        .await
        .unwrap();
    let t_import = t0.elapsed();
    let t1 = Instant::now();
    let batch_size = std::env::var("CHATVAULT_BENCH_RELAY_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RelayOptions::default().batch_size);
    let options = RelayOptions {
        batch_size,
        ..Default::default()
    };
    let report = Relay::new(meta.clone(), content, embedder, options)
        .drain()
        .await
        .unwrap();
    let t_relay = t1.elapsed();
    let total = t0.elapsed();
    let n = summary.totals.messages as f64;
    println!(
        "{label}: {} messages ({} with content), import {:.0} msg/s ({:.2?}), relay {:.0} docs/s ({:.2?}, {} embedded), end to end {:.0} msg/s ({:.2?}), peak RSS {:.0} MB",
        summary.totals.messages,
        summary.totals.with_content,
        n / t_import.as_secs_f64(),
        t_import,
        report.acked as f64 / t_relay.as_secs_f64(),
        t_relay,
        report.embedded,
        n / total.as_secs_f64(),
        total,
        peak_rss_mb()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let hashing: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(384).unwrap());
    let real_export: PathBuf = std::env::var("CHATVAULT_BENCH_EXPORT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/slack-export-houstondatavis")
        });
    rt.block_on(run(
        "export, hashing embedder",
        &real_export,
        hashing.clone(),
    ));
    let n: usize = std::env::var("CHATVAULT_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let synth = tempfile::tempdir().unwrap();
    synthesize(synth.path(), n);
    rt.block_on(run(
        &format!("synthetic {n}, hashing embedder"),
        synth.path(),
        hashing,
    ));
}
