//! Embedding throughput of all-MiniLM-L6-v2 on real Slack messages (the houstondatavis export).
//!
//! ```sh
//! export CHATVAULT_MODEL_DIR="$(scripts/fetch-model.sh | tail -n1)"
//! cargo bench -p chatvault-embed --bench embed
//! CHATVAULT_BENCH_MESSAGES=0 cargo bench -p chatvault-embed --bench embed   # every message
//! ```
//!
//! Besides criterion's timings it prints one breakdown: messages/s, tokens/s, where the time goes
//! (tokenizer, forward pass, pooling), the arithmetic the forward pass does, and how that compares
//! with the machine's own matmul throughput measured with the same library.

// criterion_group! generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use chatvault_embed::{MiniLmEmbedder, MODEL_DIR_ENV};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn export_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/slack-export-houstondatavis")
}

/// The `text` of every message with text in the export, in file order.
fn messages() -> Vec<String> {
    let mut files = Vec::new();
    let Ok(channels) = std::fs::read_dir(export_dir()) else {
        return Vec::new();
    };
    for channel in channels.flatten() {
        if channel.path().is_dir() {
            for day in std::fs::read_dir(channel.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if day.path().extension().is_some_and(|e| e == "json") {
                    files.push(day.path());
                }
            }
        }
    }
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

fn report(model: &MiniLmEmbedder, texts: &[String], load: Duration) {
    let cpu_before = cpu_time();
    let Ok((_, t)) = model.embed_timed(texts) else {
        eprintln!("embedding failed");
        return;
    };
    let cpu = cpu_before.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a));
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
    println!(
        "\n== all-MiniLM-L6-v2 on {} Slack messages ({} threads) ==",
        texts.len(),
        rayon::current_num_threads()
    );
    println!("load time:            {:.0} ms", load.as_secs_f64() * 1e3);
    println!("messages/s:           {:.0}", n / total.as_secs_f64());
    println!(
        "tokens/s:             {:.0} ({} tokens, {:.1} per message, {} with padding)",
        t.tokens as f64 / total.as_secs_f64(),
        t.tokens,
        t.tokens as f64 / n,
        t.padded_tokens
    );
    if let Some(cpu) = cpu {
        let per_core = n / cpu.as_secs_f64();
        println!("CPU time:             {:.2} s for {:.2} s of wall time: {per_core:.0} messages per CPU-second, {:.0} messages/s on {} idle cores", cpu.as_secs_f64(), total.as_secs_f64(), per_core * rayon::current_num_threads() as f64, rayon::current_num_threads());
    }
    println!(
        "tokenizer:            {:>7.1} ms ({:.1}%)",
        t.tokenize.as_secs_f64() * 1e3,
        100.0 * t.tokenize.as_secs_f64() / total.as_secs_f64()
    );
    println!(
        "forward (matmuls…):   {:>7.1} ms ({:.1}%)",
        t.forward.as_secs_f64() * 1e3,
        100.0 * t.forward.as_secs_f64() / total.as_secs_f64()
    );
    println!(
        "pooling + normalise:  {:>7.1} ms ({:.1}%)",
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

fn bench(c: &mut Criterion) {
    let Some(dir) = model_dir() else { return };
    let all = messages();
    assert!(
        !all.is_empty(),
        "no messages found under {}",
        export_dir().display()
    );
    let limit = std::env::var("CHATVAULT_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1000);
    let texts: Vec<String> = if limit == 0 {
        all
    } else {
        all.into_iter().take(limit).collect()
    };

    let start = Instant::now();
    let model = match MiniLmEmbedder::from_dir(&dir) {
        Ok(m) => m,
        Err(e) => panic!("cannot load {}: {e}", dir.display()),
    };
    let load = start.elapsed();
    let _ = model.embed_blocking(&texts[..texts.len().min(64)]); // warm caches
    report(&model, &texts, load);

    let mut group = c.benchmark_group("all-MiniLM-L6-v2");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(texts.len() as u64));
    group.bench_function(format!("embed {} slack messages", texts.len()), |b| {
        b.iter(|| model.embed_blocking(&texts).map(|v| v.len()))
    });
    group.bench_function(format!("tokenize {} slack messages", texts.len()), |b| {
        b.iter(|| {
            texts
                .iter()
                .map(|t| model.tokenize(t).map(|ids| ids.len()).unwrap_or(0))
                .sum::<usize>()
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("load model", |b| {
        b.iter(|| MiniLmEmbedder::from_dir(&dir).is_ok())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
