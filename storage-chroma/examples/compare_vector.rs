//! The Rust side of `benches/compare/run.sh`: reads the dataset written by
//! `benches/compare/dataset.py` and measures one content store on it — insert throughput, search
//! QPS and recall@10 against exact search (with `ef_search` raised until recall@10 reaches the
//! target), filtered search at 1% selectivity, and peak memory. Prints one JSON object.
//!
//! ```text
//! cargo run -p chatvault-storage-chroma --example compare_vector -- <dataset dir> chatvault
//! cargo run -p chatvault-storage-chroma --example compare_vector -- <dataset dir> chroma-server <url>
//! ```
//! Environment: `TARGET_RECALL` (0.95), `HNSW_M` (16), `EF_CONSTRUCTION` (100), `EF_LIST`
//! (ef_search values tried in order), `BATCH` (5000 documents per upsert), `COMPARE_TMP`,
//! and for `chroma-server` `CHROMA_EF_SEARCH` (the collection's fixed ef_search).

use std::path::{Path, PathBuf};
use std::time::Instant;

use chatvault_core::{
    ChannelId, ChannelKind, CollectionSpec, ContentAttributes, ContentDocument, ContentFilter,
    ContentStore, MessageContent, MessageKey, SearchOptions, Ts, WorkspaceId,
};
use chatvault_storage_chroma::{ChromaContentStore, ChromaOptions, HnswSettings};
use chatvault_storage_vector::{SearchTuning, VectorStore, VectorStoreOptions};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Dataset {
    n: usize,
    q: usize,
    d: usize,
    k: usize,
    groups: usize,
    vectors: Vec<f32>,
    queries: Vec<f32>,
    channel: Vec<u8>,
    texts: Vec<String>,
    truth: Vec<i32>,
    truth_filtered: Vec<i32>,
}

fn read_f32(p: &Path) -> Result<Vec<f32>, BoxError> {
    let b = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn read_i32(p: &Path) -> Result<Vec<i32>, BoxError> {
    let b = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(b.chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn load(dir: &Path) -> Result<Dataset, BoxError> {
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json"))?)?;
    let get = |k: &str| -> Result<usize, BoxError> {
        meta[k]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| format!("meta.json: {k} missing").into())
    };
    let (n, q, d, k, groups) = (get("n")?, get("q")?, get("d")?, get("k")?, get("groups")?);
    let texts: Vec<String> = std::fs::read_to_string(dir.join("texts.txt"))?
        .lines()
        .take(n)
        .map(str::to_owned)
        .collect();
    let ds = Dataset {
        n,
        q,
        d,
        k,
        groups,
        vectors: read_f32(&dir.join("vectors.f32"))?,
        queries: read_f32(&dir.join("queries.f32"))?,
        channel: std::fs::read(dir.join("groups.u8"))?,
        texts,
        truth: read_i32(&dir.join("truth.i32"))?,
        truth_filtered: read_i32(&dir.join("truth_filtered.i32"))?,
    };
    if ds.vectors.len() != n * d
        || ds.queries.len() != q * d
        || ds.channel.len() != n
        || ds.texts.len() != n
    {
        return Err("dataset files do not match meta.json".into());
    }
    Ok(ds)
}

fn channel(g: usize) -> String {
    format!("C{g:03}")
}

/// Record `i`'s key: its channel and a ts derived from `i`, so the id maps back to `i`.
fn key_of(ws: &WorkspaceId, i: usize, g: u8) -> Result<MessageKey, BoxError> {
    Ok(MessageKey::new(
        ws.clone(),
        ChannelId::new(channel(g as usize))?,
        Ts::from_micros(1_600_000_000_000_000 + i as i64),
    ))
}

fn index_of(k: &MessageKey) -> usize {
    (k.ts.as_micros() - 1_600_000_000_000_000) as usize
}

fn recall(found: &[Vec<usize>], truth: &[i32], k: usize) -> f64 {
    let (mut hits, mut total) = (0usize, 0usize);
    for (i, f) in found.iter().enumerate() {
        let t: Vec<usize> = truth[i * k..(i + 1) * k]
            .iter()
            .filter(|&&x| x >= 0)
            .map(|&x| x as usize)
            .collect();
        total += t.len();
        hits += f.iter().filter(|x| t.contains(x)).count();
    }
    hits as f64 / total.max(1) as f64
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

enum Side {
    Chatvault(VectorStore),
    Chroma(Box<ChromaContentStore>),
}

impl Side {
    fn store(&self) -> &dyn ContentStore {
        match self {
            Side::Chatvault(s) => s,
            Side::Chroma(s) => s.as_ref(),
        }
    }

    async fn search(
        &self,
        ws: &WorkspaceId,
        q: &[f32],
        opts: &SearchOptions,
        ef: Option<usize>,
    ) -> Result<Vec<usize>, BoxError> {
        let hits = match self {
            Side::Chatvault(s) => s.search_vector_tuned(
                ws,
                q,
                opts,
                &SearchTuning {
                    ef_search: ef,
                    exact_scan_threshold: None,
                },
            )?,
            Side::Chroma(s) => s.search_vector(ws, q, opts).await?,
        };
        Ok(hits.iter().map(|h| index_of(&h.key)).collect())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: compare_vector <dataset dir> chatvault|chroma-server [url]";
    let dir = PathBuf::from(args.get(1).ok_or(usage)?);
    let which = args.get(2).ok_or(usage)?.as_str();
    let ds = load(&dir)?;
    let baseline_mb = peak_rss_mb();
    let target: f64 = std::env::var("TARGET_RECALL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.95);
    // "equal or better recall": at least the recall the other side reached at its setting
    let target = std::env::var("MATCH_RECALL")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(target, |m| target.max(m));
    let m = env_usize("HNSW_M", 16);
    let efc = env_usize("EF_CONSTRUCTION", 100);
    let batch = env_usize("BATCH", 5000);
    let ef_list: Vec<usize> = std::env::var("EF_LIST")
        .unwrap_or_else(|_| "10,12,16,20,24,28,32,40,48,56,64,80,96,128,160,192,256,384,512".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let tmp = tempfile::Builder::new()
        .prefix("chatvault-compare-")
        .tempdir_in(
            std::env::var("COMPARE_TMP")
                .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
        )?;
    let ws = WorkspaceId::new("bench")?;
    let (side, label, settings) = match which {
        "chatvault" => {
            let opts = VectorStoreOptions {
                hnsw_m: m,
                ef_construction: efc,
                ..Default::default()
            };
            let s = format!("M={m} ef_construction={efc} batch={batch}");
            (
                Side::Chatvault(VectorStore::open(tmp.path(), opts)?),
                "chatvault (tantivy + HNSW, in-process)".to_string(),
                s,
            )
        }
        "chroma-server" => {
            let url = args.get(3).ok_or(usage)?;
            let ef = env_usize("CHROMA_EF_SEARCH", 100);
            let mut opts = ChromaOptions::from_url(url)?
                .with_database(format!("compare_{}", std::process::id()))?;
            opts.hnsw = HnswSettings {
                max_neighbors: Some(m as u32),
                ef_construction: Some(efc as u32),
                ef_search: Some(ef as u32),
            };
            let s = format!("M={m} ef_construction={efc} ef_search={ef} batch={batch}");
            (
                Side::Chroma(Box::new(ChromaContentStore::connect(opts).await?)),
                "chatvault-storage-chroma (chroma run, HTTP)".to_string(),
                s,
            )
        }
        other => return Err(format!("unknown side {other:?}; {usage}").into()),
    };
    let store = side.store();
    store
        .create_collection(
            &ws,
            &CollectionSpec {
                dimension: ds.d,
                model_id: "compare".into(),
            },
        )
        .await?;

    // ---- insert: timed until every document is searchable ----
    let t0 = Instant::now();
    let mut start = 0;
    while start < ds.n {
        let end = (start + batch).min(ds.n);
        let docs: Vec<ContentDocument> = (start..end)
            .map(|i| {
                Ok(ContentDocument {
                    content: MessageContent {
                        context: Default::default(),
                        key: key_of(&ws, i, ds.channel[i])?,
                        text: ds.texts[i].clone(),
                        attributes: ContentAttributes {
                            user: None,
                            thread_ts: None,
                            is_reply: false,
                            has_files: false,
                            has_links: false,
                            reaction_count: 0,
                            visibility: ChannelKind::Public,
                        },
                    },
                    embedding: ds.vectors[i * ds.d..(i + 1) * ds.d].to_vec(),
                    version: 1,
                })
            })
            .collect::<Result<_, BoxError>>()?;
        store.upsert(&ws, &docs).await?;
        start = end;
    }
    let first = side
        .search(&ws, &ds.queries[..ds.d], &SearchOptions::top(ds.k), None)
        .await?;
    let insert_s = t0.elapsed().as_secs_f64();
    assert!(!first.is_empty());
    // the in-process store indexes the graph in the background: wait for it before searching
    let graph_s = match &side {
        Side::Chatvault(s) => {
            s.wait_for_graph(&ws)?;
            Some(t0.elapsed().as_secs_f64())
        }
        Side::Chroma(_) => None,
    };
    let docs = store.collection_info(&ws).await?.map_or(0, |c| c.documents);
    assert_eq!(docs as usize, ds.n, "every document stored");

    // ---- search ----
    let run = |ef: Option<usize>, filtered: bool, reps: usize| {
        let side = &side;
        let ws = &ws;
        let ds = &ds;
        async move {
            let mut found = Vec::new();
            let t = Instant::now();
            for _ in 0..reps {
                found.clear();
                for i in 0..ds.q {
                    let mut opts = SearchOptions::top(ds.k);
                    if filtered {
                        opts.filter = ContentFilter {
                            channels: Some(vec![ChannelId::new(channel(i % ds.groups))?]),
                            ..Default::default()
                        };
                    }
                    found.push(
                        side.search(ws, &ds.queries[i * ds.d..(i + 1) * ds.d], &opts, ef)
                            .await?,
                    );
                }
            }
            let qps = (ds.q * reps) as f64 / t.elapsed().as_secs_f64();
            Ok::<_, BoxError>((qps, found))
        }
    };
    let mut sweep = Vec::new();
    let mut chosen: Option<(usize, f64, f64)> = None;
    let efs: Vec<Option<usize>> = match &side {
        Side::Chatvault(_) => ef_list.iter().map(|&e| Some(e)).collect(),
        // the server's ef_search is fixed per collection (chosen by the ChromaDB side's sweep)
        Side::Chroma(_) => vec![None],
    };
    let mut below: Option<usize> = None;
    let mut reached = false;
    for ef in efs {
        run(ef, false, 1).await?; // warm-up
        let (qps, found) = run(ef, false, 1).await?;
        let r = recall(&found, &ds.truth, ds.k);
        let e = ef.unwrap_or(env_usize("CHROMA_EF_SEARCH", 100));
        eprintln!("{which}: ef_search={e} recall@10={r:.3} qps={qps:.0}");
        sweep.push(serde_json::json!({"ef_search": e, "qps": qps, "recall": r}));
        if r >= target || chosen.is_none_or(|c| r > c.2) {
            chosen = Some((e, qps, r));
        }
        if r >= target {
            reached = true;
            break;
        }
        below = Some(e);
    }
    // the list's steps are coarse: bisect between the last ef below the target and the first at
    // it, so the side runs at the smallest ef reaching the target (as the ChromaDB side does)
    if let (true, Some(mut lo), Side::Chatvault(_)) = (reached, below, &side) {
        let mut hi = chosen.map_or(lo, |c| c.0);
        while hi > lo + 1 {
            let mid = (lo + hi) / 2;
            run(Some(mid), false, 1).await?; // warm-up
            let (qps, found) = run(Some(mid), false, 1).await?;
            let r = recall(&found, &ds.truth, ds.k);
            eprintln!("{which}: ef_search={mid} recall@10={r:.3} qps={qps:.0}");
            sweep.push(serde_json::json!({"ef_search": mid, "qps": qps, "recall": r}));
            if r >= target {
                hi = mid;
                chosen = Some((mid, qps, r));
            } else {
                lo = mid;
            }
        }
    }
    let (ef, _, _) = chosen.ok_or("no ef_search value to try")?;
    let ef_opt = matches!(side, Side::Chatvault(_)).then_some(ef);
    let (qps, found) = run(ef_opt, false, 2).await?;
    let rec = recall(&found, &ds.truth, ds.k);
    let (fqps, ffound) = run(ef_opt, true, 1).await?;
    let frec = recall(&ffound, &ds.truth_filtered, ds.k);
    let out = serde_json::json!({
        "side": label,
        "n": ds.n,
        "insert_s": insert_s,
        "insert_per_s": ds.n as f64 / insert_s,
        "graph_complete_s": graph_s,
        "ef_search": ef,
        "qps": qps,
        "recall": rec,
        "filtered_qps": fqps,
        "filtered_recall": frec,
        "peak_rss_mb": peak_rss_mb(),
        "dataset_rss_mb": baseline_mb,
        "sweep": sweep,
        "settings": settings,
    });
    if let Side::Chroma(s) = &side {
        s.delete_database().await?;
    }
    println!("{out}");
    Ok(())
}
