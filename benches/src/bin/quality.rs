//! `quality`: search quality of an archive on labelled sets, every mode.
//!
//! ```text
//! cargo run --release -p chatvault-benches --bin quality -- \
//!     --export testdata/slack-export-houstondatavis \
//!     testdata/quality/houstondatavis-qa.jsonl testdata/quality/houstondatavis-replies.jsonl
//! ```
//!
//! Imports the export (a Slack export folder or zip) with the collector into fresh stores in a
//! temporary directory (SQLite + tantivy/HNSW), delivers it through the relay with the embedder
//! (all-MiniLM-L6-v2 from `CHATVAULT_MODEL_DIR`; `--hashing` for the built-in hashing embedder),
//! then runs every labelled query in each mode and prints nDCG@10, MRR@10 and recall@10 (the
//! labelled-set format is documented in `chatvault_benches::quality`). `--fusion rrf` measures
//! hybrid with reciprocal rank fusion instead of the default (`--fusion '{...}'`: any
//! `FusionConfig` as JSON); `--index-text none|author|author,channel` chooses the context in
//! each message's index text (default: the relay's, the author's name); `--per-query` prints each query's
//! scores; `--json` prints one JSON object per set and mode; `--dump FILE` writes each query's
//! lexical and semantic rankings (top 50, with scores) as JSON lines, to study fusion offline.
//! `--sweep FILE` embeds once and runs hybrid search under each `FusionConfig` of FILE (one JSON
//! object per line), one JSON line per configuration and set: for tuning on the tuning sets.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chatvault_benches::quality::{evaluate, read_set, Archive};
use chatvault_collector::{Collector, ImportOptions, IndexTextOptions, Relay, RelayOptions};
use chatvault_core::{ContentStore, Embedder, HashingEmbedder, MetadataStore, WorkspaceId};
use chatvault_query::{FusionConfig, QueryEngine, Scope, SearchMode, SearchRequest};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};

struct Args {
    export: PathBuf,
    sets: Vec<PathBuf>,
    hashing: bool,
    fusion: Option<String>,
    per_query: bool,
    json: bool,
    dump: Option<PathBuf>,
    index_text: IndexTextOptions,
    sweep: Option<PathBuf>,
}

fn parse_index_text(s: &str) -> Result<IndexTextOptions, String> {
    let mut o = IndexTextOptions::none();
    if s == "none" {
        return Ok(o);
    }
    for part in s.split(',') {
        match part.trim() {
            "author" => o.author = true,
            "channel" => o.channel = true,
            other => {
                return Err(format!(
                    "--index-text: unknown part {other:?} (none, or a list of author, channel)"
                ))
            }
        }
    }
    Ok(o)
}

const USAGE: &str = "usage: quality --export DIR [--hashing] [--fusion rrf|default] [--index-text none|author[,channel]] [--per-query] [--json] [--dump FILE] [--sweep FILE] SET.jsonl...";

fn parse_args() -> Result<Args, String> {
    let mut export = None;
    let mut sets = Vec::new();
    let mut hashing = false;
    let mut fusion = None;
    let mut per_query = false;
    let mut json = false;
    let mut dump = None;
    let mut index_text = IndexTextOptions::default();
    let mut sweep = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--export" => export = Some(PathBuf::from(it.next().ok_or("--export needs a path")?)),
            "--hashing" => hashing = true,
            "--fusion" => fusion = Some(it.next().ok_or("--fusion needs rrf or default")?),
            "--per-query" => per_query = true,
            "--json" => json = true,
            "--dump" => dump = Some(PathBuf::from(it.next().ok_or("--dump needs a path")?)),
            "--sweep" => sweep = Some(PathBuf::from(it.next().ok_or("--sweep needs a path")?)),
            "--index-text" => {
                index_text = parse_index_text(&it.next().ok_or("--index-text needs a value")?)?
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}")),
            s => sets.push(PathBuf::from(s)),
        }
    }
    let export = export.ok_or_else(|| format!("--export is required\n{USAGE}"))?;
    if sets.is_empty() {
        return Err(format!("no labelled set given\n{USAGE}"));
    }
    Ok(Args {
        export,
        sets,
        hashing,
        fusion,
        per_query,
        json,
        dump,
        index_text,
        sweep,
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> chatvault_core::Result<()> {
    let embedder: Arc<dyn Embedder> = if args.hashing {
        Arc::new(HashingEmbedder::new(384)?)
    } else {
        Arc::new(chatvault_embed::MiniLmEmbedder::from_env()?)
    };
    // Sets are read first: a bad file fails before minutes of embedding.
    let mut sets = Vec::new();
    for p in &args.sets {
        sets.push((p.display().to_string(), read_set(p)?));
    }
    let dir = tempfile::tempdir()
        .map_err(|e| chatvault_core::Error::unavailable(format!("temporary directory: {e}")))?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("chatvault.sqlite").display()
    );
    let meta: Arc<dyn MetadataStore> =
        Arc::new(SqlMetadataStore::connect(&url, ConnectOptions::default()).await?);
    let content: Arc<dyn ContentStore> = Arc::new(VectorStore::open(
        dir.path().join("vectors"),
        VectorStoreOptions::default(),
    )?);
    let ws = WorkspaceId::new("TQUALITY")?;
    let started = std::time::Instant::now();
    let summary = Collector::new(meta.clone(), ws.clone())
        .import_export(&args.export, ImportOptions::default())
        .await?;
    let relay = Relay::new(
        meta.clone(),
        content.clone(),
        embedder.clone(),
        RelayOptions {
            workspace: Some(ws.clone()),
            index_text: args.index_text,
            ..RelayOptions::default()
        },
    );
    let delivered = relay.drain().await?;
    eprintln!(
        "loaded {} ({} messages, {} documents embedded with {}) in {:.1} s",
        args.export.display(),
        summary.totals.messages,
        delivered.embedded,
        embedder.model_id(),
        started.elapsed().as_secs_f64()
    );
    let mut engine = QueryEngine::new(meta.clone(), content.clone(), embedder.clone());
    match args.fusion.as_deref() {
        None | Some("default") => {}
        Some("rrf") => {
            engine = engine.with_fusion(FusionConfig::rrf_for_embedder(embedder.model_id()))?;
        }
        Some(json) if json.starts_with('{') => {
            let cfg: FusionConfig = serde_json::from_str(json).map_err(|e| {
                chatvault_core::Error::invalid_input(format!("--fusion {json}: {e}"))
            })?;
            engine = engine.with_fusion(cfg)?;
        }
        Some(other) => {
            return Err(chatvault_core::Error::invalid_input(format!(
                "--fusion {other:?}: expected rrf, default or a FusionConfig in JSON"
            )))
        }
    }
    let archive = Archive::load(meta.as_ref(), content.as_ref(), &ws).await?;
    if let Some(path) = &args.sweep {
        return sweep(&archive, &sets, path, &meta, &content, &embedder, &ws).await;
    }
    let mut dump = match &args.dump {
        Some(p) => Some(std::fs::File::create(p).map_err(|e| {
            chatvault_core::Error::invalid_input(format!("cannot create {}: {e}", p.display()))
        })?),
        None => None,
    };
    for (name, lines) in &sets {
        let queries = archive.resolve(name, lines)?;
        if let Some(f) = dump.as_mut() {
            for q in &queries {
                let line = dump_rankings(&engine, &ws, name, q).await?;
                writeln!(f, "{line}").map_err(|e| {
                    chatvault_core::Error::unavailable(format!("writing the dump: {e}"))
                })?;
            }
        }
        for mode in [
            SearchMode::Lexical,
            SearchMode::Semantic,
            SearchMode::Hybrid,
        ] {
            let (s, per) = evaluate(&engine, &ws, &queries, mode).await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "set": name, "mode": mode, "model": embedder.model_id(),
                        "queries": s.queries, "ndcg_at_10": s.ndcg, "mrr_at_10": s.mrr,
                        "recall_at_10": s.recall,
                    })
                );
            } else {
                println!(
                    "{name:<48} {:<9} n={:<3} nDCG@10 {:.3}  MRR@10 {:.3}  recall@10 {:.3}",
                    format!("{mode:?}"),
                    s.queries,
                    s.ndcg,
                    s.mrr,
                    s.recall
                );
            }
            if args.per_query {
                for (q, s) in queries.iter().zip(&per) {
                    println!(
                        "    {:<12} nDCG {:.3} MRR {:.3} recall {:.3}  {}",
                        q.id, s.ndcg, s.mrr, s.recall, q.query
                    );
                }
            }
        }
    }
    Ok(())
}

/// Hybrid search under each fusion configuration of `path` (one `FusionConfig` as JSON per
/// line), on every set, from the one archive embedded once: one JSON line per configuration
/// and set.
async fn sweep(
    archive: &Archive,
    sets: &[(String, Vec<chatvault_benches::quality::LabelledLine>)],
    path: &std::path::Path,
    meta: &Arc<dyn MetadataStore>,
    content: &Arc<dyn ContentStore>,
    embedder: &Arc<dyn Embedder>,
    ws: &WorkspaceId,
) -> chatvault_core::Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        chatvault_core::Error::invalid_input(format!("cannot read {}: {e}", path.display()))
    })?;
    for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
        let cfg: FusionConfig = serde_json::from_str(line)
            .map_err(|e| chatvault_core::Error::invalid_input(format!("--sweep {line}: {e}")))?;
        let engine =
            QueryEngine::new(meta.clone(), content.clone(), embedder.clone()).with_fusion(cfg)?;
        for (name, lines) in sets {
            let queries = archive.resolve(name, lines)?;
            let (s, _) = evaluate(&engine, ws, &queries, SearchMode::Hybrid).await?;
            println!(
                "{}",
                serde_json::json!({
                    "set": name, "fusion": cfg, "queries": s.queries,
                    "ndcg_at_10": s.ndcg, "mrr_at_10": s.mrr, "recall_at_10": s.recall,
                })
            );
        }
    }
    Ok(())
}

/// One query's two rankings (top 50, scores as the backends gave them) as a JSON line.
async fn dump_rankings(
    engine: &QueryEngine,
    ws: &WorkspaceId,
    set: &str,
    q: &chatvault_benches::quality::LabelledQuery,
) -> chatvault_core::Result<serde_json::Value> {
    let mut out = serde_json::json!({
        "set": set, "id": q.id, "query": q.query,
        "relevant": q.relevant.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        "exclude": q.exclude.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
    });
    for (field, mode) in [
        ("lexical", SearchMode::Lexical),
        ("semantic", SearchMode::Semantic),
    ] {
        let resp = engine
            .search(
                ws,
                SearchRequest::new(q.query.clone())
                    .mode(mode)
                    .limit(50)
                    .scope(Scope::Admin),
            )
            .await?;
        let ranking: Vec<serde_json::Value> = resp
            .hits
            .iter()
            .map(|h| {
                let s = h.why.lexical.or(h.why.semantic).map_or(0.0, |r| r.score);
                serde_json::json!([h.message.key.to_string(), s])
            })
            .collect();
        out[field] = serde_json::Value::Array(ranking);
    }
    Ok(out)
}
