//! Embeds a file of texts, one per line, with all-MiniLM-L6-v2 and writes the vectors as a NumPy
//! `.npy` file (float32, one row per line): the real-embeddings input of the ChromaDB comparison
//! (`benches/compare/run.sh`, `COMPARE_REAL_VECTORS`).
//!
//!     CHATVAULT_MODEL_DIR=… cargo run --release -p chatvault-embed --example embed_lines -- texts.txt out.npy

use std::io::Write;

use chatvault_embed::MiniLmEmbedder;

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(input), Some(output)) = (args.get(1), args.get(2)) else {
        return Err("usage: embed_lines <texts.txt> <out.npy>".into());
    };
    let texts: Vec<String> = std::fs::read_to_string(input)
        .map_err(|e| format!("{input}: {e}"))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if texts.is_empty() {
        return Err(format!("{input}: no texts").into());
    }
    let embedder = MiniLmEmbedder::from_env()?;
    let mut rows: Vec<Vec<f32>> = Vec::with_capacity(texts.len());
    for (i, chunk) in texts.chunks(256).enumerate() {
        rows.extend(embedder.embed_blocking(chunk)?);
        eprint!("\rembedded {} of {}", (i * 256 + chunk.len()), texts.len());
    }
    eprintln!();
    let dim = rows.first().map_or(0, Vec::len);
    // NPY 1.0: magic, version, header length, a Python dict literal padded to 64 bytes with '\n'
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {dim}), }}",
        rows.len()
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(output).map_err(|e| format!("{output}: {e}"))?,
    );
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&u16::try_from(header.len())?.to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    for row in &rows {
        for v in row {
            out.write_all(&v.to_le_bytes())?;
        }
    }
    out.flush()?;
    eprintln!("{output}: {} x {dim}", rows.len());
    Ok(())
}
