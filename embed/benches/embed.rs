//! Embedding throughput of all-MiniLM-L6-v2 on real Slack messages (the houstondatavis export),
//! in `f32` and, on request, int8 with the int8 vectors' fidelity to the `f32` ones.
//!
//! ```sh
//! export CHATVAULT_MODEL_DIR="$(scripts/fetch-model.sh | tail -n1)"
//! cargo bench -p chatvault-embed --bench embed
//! CHATVAULT_BENCH_MESSAGES=0 cargo bench -p chatvault-embed --bench embed   # every message
//! CHATVAULT_BENCH_RUNS=9 cargo bench -p chatvault-embed --bench embed -- nothing  # summary only
//! CHATVAULT_BENCH_PRECISION=f32,int8 cargo bench -p chatvault-embed --bench embed  # + int8
//! ```
//!
//! It first prints a summary per precision: messages/s over `CHATVAULT_BENCH_RUNS` runs (default
//! 5; min/median/max of the wall time) and CPU-seconds per 1,000 messages (user + system of this
//! process, which depends far less on other processes than the wall time does), the machine load
//! before and after, where the time goes (tokenizer, forward pass, pooling), the arithmetic the
//! forward pass does and how that compares with the machine's own matmul throughput; with both
//! precisions, the per-text cosine of the int8 vectors to the `f32` ones over every message of the
//! bundled exports. Criterion's own timings follow (a filter that matches nothing skips them).
//! int8 is not in the default run: candle's int8 product is about twenty times slower than `f32`
//! here (see the crate README), so it would take a quarter of an hour.

// criterion_group! generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use chatvault_embed::{MiniLmEmbedder, MiniLmOptions, ModelDir, Precision, MODEL_DIR_ENV};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn export_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(name)
}

/// The `text` of every message with text in the export, in file order: every day file
/// (`YYYY-MM-DD.json`) under it, so an Enterprise Grid export's `teams/*/` channels count too.
fn messages(export: &Path) -> Vec<String> {
    fn day_files(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                day_files(&path, files);
            } else if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.len() == 15
                    && n.ends_with(".json")
                    && n[..10].bytes().all(|b| b.is_ascii_digit() || b == b'-')
            }) {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    day_files(export, &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        let Ok(serde_json::Value::Array(items)) = serde_json::from_slice(&bytes) else {
            continue;
        };
        for m in items {
            if let Some(text) = m.get("text").and_then(|t| t.as_str()) {
                if !text.trim().is_empty() {
                    out.push(text.to_string());
                }
            }
        }
    }
    out
}

fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os(MODEL_DIR_ENV).filter(|v| !v.is_empty());
    if dir.is_none() {
        eprintln!("SKIPPED: set {MODEL_DIR_ENV} (scripts/fetch-model.sh) to bench the real model");
    }
    dir.map(PathBuf::from)
}

/// Multiply-adds ×2 of one forward pass over `padded` tokens in batches of length `len`.
fn forward_flops(hidden: f64, inter: f64, layers: f64, tokens: f64, len: f64) -> f64 {
    let dense = 2.0 * (4.0 * hidden * hidden + 2.0 * hidden * inter);
    let attention = 2.0 * 2.0 * len * hidden;
    layers * tokens * (dense + attention)
}

/// GFLOP/s of one large f32 matmul with candle (gemm, all cores): the practical ceiling.
fn matmul_gflops() -> f64 {
    let (m, k, n) = (1024, 1024, 1024);
    let dev = Device::Cpu;
    let (Ok(a), Ok(b)) = (
        Tensor::randn(0f32, 1.0, (m, k), &dev),
        Tensor::randn(0f32, 1.0, (k, n), &dev),
    ) else {
        return f64::NAN;
    };
    let _ = a.matmul(&b);
    let runs = 10;
    let start = Instant::now();
    for _ in 0..runs {
        let _ = std::hint::black_box(a.matmul(&b));
    }
    2.0 * (m * k * n) as f64 * runs as f64 / start.elapsed().as_secs_f64() / 1e9
}

/// CPU time this process has used (user + system), from /proc: on a shared machine the wall
/// clock measures the neighbours too, CPU time only us.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // CLK_TCK is 100 on Linux
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn load(dir: &Path, precision: Precision) -> (MiniLmEmbedder, Duration) {
    let start = Instant::now();
    let mut options = MiniLmOptions::default();
    options.precision = precision;
    let model = ModelDir::open(dir)
        .and_then(|d| MiniLmEmbedder::load(d, options))
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", dir.display()));
    (model, start.elapsed())
}

fn min_median_max(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn report(model: &MiniLmEmbedder, texts: &[String], load: Duration, runs: usize) {
    let load_before = load_average();
    let mut rates = Vec::new();
    let mut cpu_per_1000 = Vec::new();
    let mut first = None;
    for _ in 0..runs {
        let cpu_before = cpu_time();
        let wall = Instant::now();
        let Ok((_, t)) = model.embed_timed(texts) else {
            eprintln!("embedding failed");
            return;
        };
        let wall = wall.elapsed();
        if let Some(cpu) = cpu_before.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a)) {
            cpu_per_1000.push(cpu.as_secs_f64() * 1000.0 / texts.len() as f64);
        }
        rates.push(texts.len() as f64 / wall.as_secs_f64());
        first.get_or_insert(t);
    }
    let t = first.expect("at least one run");
    let total = t.tokenize + t.forward + t.pooling;
    let n = texts.len() as f64;
    let cfg = model.model_dir();
    // all-MiniLM-L6-v2: 384 hidden, 1536 intermediate, 6 layers; the average batch length is
    // approximated by padded tokens per text.
    let avg_len = t.padded_tokens as f64 / n;
    let flops = forward_flops(
        cfg.dimension() as f64,
        1536.0,
        6.0,
        t.padded_tokens as f64,
        avg_len,
    );
    let achieved = flops / t.forward.as_secs_f64() / 1e9;
    let peak = matmul_gflops();
    let threads = rayon::current_num_threads();
    let (lo, mid, hi) = min_median_max(rates);
    println!(
        "\n== all-MiniLM-L6-v2, {:?}, on {} Slack messages ({threads} threads) ==",
        model.precision(),
        texts.len(),
    );
    println!(
        "machine load (1/5/15 min): {load_before} before, {} after",
        load_average()
    );
    println!("load time:            {:.0} ms", load.as_secs_f64() * 1e3);
    println!("messages/s:           {mid:.0} median of {runs} runs (min {lo:.0}, max {hi:.0})");
    if !cpu_per_1000.is_empty() {
        let (lo, mid, hi) = min_median_max(cpu_per_1000);
        println!(
            "CPU time:             {mid:.2} s per 1,000 messages, median (min {lo:.2}, max {hi:.2}): {:.0} messages/s on {threads} idle cores",
            1000.0 * threads as f64 / mid
        );
    }
    println!(
        "tokens/s:             {:.0} ({} tokens, {:.1} per message, {} computed)",
        t.tokens as f64 / total.as_secs_f64(),
        t.tokens,
        t.tokens as f64 / n,
        t.padded_tokens
    );
    println!("first run, summed over batches running side by side:");
    println!(
        "  tokenizer:          {:>7.1} ms ({:.1}%)",
        t.tokenize.as_secs_f64() * 1e3,
        100.0 * t.tokenize.as_secs_f64() / total.as_secs_f64()
    );
    println!(
        "  forward (matmuls…): {:>7.1} ms ({:.1}%)",
        t.forward.as_secs_f64() * 1e3,
        100.0 * t.forward.as_secs_f64() / total.as_secs_f64()
    );
    println!(
        "  pooling + normalise:{:>7.1} ms ({:.1}%)",
        t.pooling.as_secs_f64() * 1e3,
        100.0 * t.pooling.as_secs_f64() / total.as_secs_f64()
    );
    println!(
        "forward arithmetic:   {:.1} GFLOP, {achieved:.1} GFLOP/s achieved",
        flops / 1e9
    );
    println!(
        "large matmul (candle): {peak:.1} GFLOP/s: the forward pass runs at {:.0}% of it",
        100.0 * achieved / peak
    );
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Per-text cosine of int8 vectors to f32 vectors over every message of the bundled exports.
fn fidelity(f32_model: &MiniLmEmbedder, int8_model: &MiniLmEmbedder) {
    println!("\n== int8 fidelity: cosine of each text's int8 vector to its f32 vector ==");
    let summary = |name: &str, cosines: &[f64]| {
        let min = cosines.iter().copied().fold(f64::INFINITY, f64::min);
        let mean = cosines.iter().sum::<f64>() / cosines.len() as f64;
        let below = cosines.iter().filter(|&&c| c < 0.99).count();
        println!(
            "{name}: {} texts, cosine min {min:.4}, mean {mean:.4}, {below} below 0.99",
            cosines.len()
        );
    };
    let mut all = Vec::new();
    for name in [
        "slack-export-houstondatavis",
        "slack-export-viewer-testarchive",
        "slack-export-grid",
    ] {
        let texts = messages(&export_dir(name));
        if texts.is_empty() {
            println!("{name}: no messages found");
            continue;
        }
        let (Ok(a), Ok(b)) = (
            f32_model.embed_blocking(&texts),
            int8_model.embed_blocking(&texts),
        ) else {
            eprintln!("embedding failed");
            return;
        };
        let cosines: Vec<f64> = a.iter().zip(&b).map(|(x, y)| cosine(x, y)).collect();
        summary(name, &cosines);
        all.extend(cosines);
    }
    if !all.is_empty() {
        summary("all bundled exports", &all);
    }
}

fn precisions() -> Vec<Precision> {
    let spec = std::env::var("CHATVAULT_BENCH_PRECISION").unwrap_or_else(|_| "f32".into());
    spec.split(',')
        .map(|p| Precision::parse(p).unwrap_or_else(|| panic!("unknown precision {p:?}")))
        .collect()
}

fn bench(c: &mut Criterion) {
    let Some(dir) = model_dir() else { return };
    let all = messages(&export_dir("slack-export-houstondatavis"));
    assert!(
        !all.is_empty(),
        "no messages found in the houstondatavis export"
    );
    let limit = std::env::var("CHATVAULT_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1000);
    let runs = std::env::var("CHATVAULT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(5)
        .max(1);
    let texts: Vec<String> = if limit == 0 {
        all
    } else {
        all.into_iter().take(limit).collect()
    };

    let mut models = Vec::new();
    for precision in precisions() {
        let (model, load) = self::load(&dir, precision);
        let _ = model.embed_blocking(&texts[..texts.len().min(64)]); // warm caches
        report(&model, &texts, load, runs);
        models.push(model);
    }
    let f32_model = models.iter().find(|m| m.precision() == Precision::F32);
    let int8_model = models.iter().find(|m| m.precision() == Precision::Int8);
    if let (Some(a), Some(b)) = (f32_model, int8_model) {
        fidelity(a, b);
    }

    let mut group = c.benchmark_group("all-MiniLM-L6-v2");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(texts.len() as u64));
    for model in &models {
        let name = format!(
            "embed {} slack messages ({:?})",
            texts.len(),
            model.precision()
        );
        group.bench_function(name, |b| {
            b.iter(|| model.embed_blocking(&texts).map(|v| v.len()))
        });
    }
    if let Some(model) = models.first() {
        group.bench_function(format!("tokenize {} slack messages", texts.len()), |b| {
            b.iter(|| {
                texts
                    .iter()
                    .map(|t| model.tokenize(t).map(|ids| ids.len()).unwrap_or(0))
                    .sum::<usize>()
            })
        });
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("load model", |b| {
        b.iter(|| MiniLmEmbedder::from_dir(&dir).is_ok())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
