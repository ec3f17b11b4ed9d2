//! [`MiniLmEmbedder`]: sentence-transformers BERT models (all-MiniLM-L6-v2 first) run in-process
//! with candle, producing what sentence-transformers produces.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use chatvault_core::{Embedder, Error, Result};
use rayon::prelude::*;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::encoder::{Encoder, Precision};
use crate::model_dir::{model_id_for, ModelDir, Pooling};

/// Environment variable choosing the [`Precision`] of [`MiniLmEmbedder::from_env`]: `f32` (the
/// default) or `int8`.
pub const PRECISION_ENV: &str = "CHATVAULT_MODEL_PRECISION";

/// Settings of a [`MiniLmEmbedder`]; the defaults suit short chat messages on a small CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MiniLmOptions {
    /// Overrides the model id recorded by collections (by default the public name of known
    /// weights, such as `sentence-transformers/all-MiniLM-L6-v2`, else one derived from the
    /// directory name and a hash of the weights). The precision's suffix
    /// ([`Precision::model_id_suffix`]) is appended either way.
    pub model_id: Option<String>,
    /// Most texts in one forward pass.
    pub batch_size: usize,
    /// Most tokens in one forward pass: bounds memory (the feed-forward layer holds
    /// `tokens × intermediate_size × 4` bytes) and keeps several batches for the cores to share.
    pub max_batch_tokens: usize,
    /// `f32` weights (sentence-transformers' vectors) or int8 weights.
    pub precision: Precision,
}

impl Default for MiniLmOptions {
    fn default() -> Self {
        MiniLmOptions {
            model_id: None,
            batch_size: 256,
            max_batch_tokens: 2048,
            precision: Precision::F32,
        }
    }
}

impl MiniLmOptions {
    /// The defaults with the precision named by `CHATVAULT_MODEL_PRECISION`, if set.
    ///
    /// # Errors
    /// `InvalidInput` naming the variable when its value is neither `f32` nor `int8`.
    pub fn from_env() -> Result<Self> {
        let mut options = MiniLmOptions::default();
        if let Some(value) = std::env::var(PRECISION_ENV).ok().filter(|v| !v.is_empty()) {
            options.precision = Precision::parse(&value).ok_or_else(|| {
                Error::invalid_input(format!(
                    "{PRECISION_ENV}={value:?}: expected \"f32\" or \"int8\""
                ))
            })?;
        }
        Ok(options)
    }
}

/// How long each stage of an [`MiniLmEmbedder::embed_timed`] call took.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EmbedTimings {
    /// Tokenizing (WordPiece) all texts.
    pub tokenize: Duration,
    /// The transformer's forward passes (embeddings, attention, feed-forward), summed over the
    /// batches (which run side by side, so this can exceed the wall time).
    pub forward: Duration,
    /// Mean pooling, normalisation and copying out, summed over the batches.
    pub pooling: Duration,
    /// Tokens fed to the model, `[CLS]`/`[SEP]` included, padding excluded.
    pub tokens: usize,
    /// Tokens computed including padding (equal to `tokens` on the CPU, which packs batches
    /// without padding).
    pub padded_tokens: usize,
}

/// A sentence-transformers BERT model (all-MiniLM-L6-v2 and any other BERT model with mean or
/// CLS pooling) running on the CPU with candle.
///
/// It does what `SentenceTransformer.encode(texts, normalize_embeddings=True)` does: WordPiece
/// tokens (lowercased first when `sentence_bert_config.json` says `do_lower_case`), truncation at
/// the model's `max_seq_length` (`[CLS]` and `[SEP]` included), attention-masked mean pooling, L2
/// normalisation. Texts are sorted by length and batched by token count; on the CPU a batch's
/// texts are packed without padding (see `encoder.rs`). Work runs on the blocking thread pool and
/// uses every core.
///
/// Cloning is cheap: clones share the model.
///
/// ```no_run
/// use chatvault_core::Embedder;
/// use chatvault_embed::MiniLmEmbedder;
///
/// # async fn run() -> chatvault_core::Result<()> {
/// let embedder = MiniLmEmbedder::from_dir("/path/to/all-MiniLM-L6-v2")?;
/// assert_eq!(embedder.dimension(), 384);
/// let vectors = embedder.embed(&["the deploy failed".to_string()]).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MiniLmEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    model: Model,
    tokenizer: Tokenizer,
    model_dir: ModelDir,
    model_id: String,
    options: MiniLmOptions,
    load_time: Duration,
    /// Runs search queries apart from bulk batches (see [`Inner::embed_query`]); made on the
    /// first query, so a process that only imports never starts its threads.
    query_pool: std::sync::OnceLock<std::result::Result<rayon::ThreadPool, String>>,
}

impl std::fmt::Debug for MiniLmEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLmEmbedder")
            .field("model_id", &self.inner.model_id)
            .field("dir", &self.inner.model_dir.path())
            .field("dimension", &self.inner.model_dir.dimension())
            .field("max_seq_length", &self.inner.model_dir.max_seq_length())
            .field("precision", &self.inner.options.precision)
            .finish()
    }
}

impl MiniLmEmbedder {
    /// Loads the model in `dir` with default options.
    ///
    /// # Errors
    /// See [`ModelDir::open`]; also `InvalidInput` naming the file when the tokenizer or the
    /// weights cannot be read (a missing tensor, a wrong shape).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::load(ModelDir::open(dir)?, MiniLmOptions::default())
    }

    /// Loads the model in the directory named by `CHATVAULT_MODEL_DIR`, in the precision named by
    /// `CHATVAULT_MODEL_PRECISION` (`f32` when unset).
    ///
    /// # Errors
    /// `NotFound` when the variable is not set (the message says how to get the model);
    /// `InvalidInput` for an unknown precision; else as [`from_dir`](Self::from_dir).
    pub fn from_env() -> Result<Self> {
        match ModelDir::from_env() {
            Some(dir) => Self::load(dir?, MiniLmOptions::from_env()?),
            None => Err(Error::not_found(format!(
                "{} is not set: run scripts/fetch-model.sh and set it to the directory it prints",
                crate::MODEL_DIR_ENV
            ))),
        }
    }

    /// Loads `repo_id` (such as [`DEFAULT_MODEL`](crate::DEFAULT_MODEL)) from the Hugging Face
    /// cache (`HF_HOME`, default `~/.cache/huggingface`), downloading what is missing from the
    /// hub. Blocking: call it outside async code or in `spawn_blocking`.
    ///
    /// # Errors
    /// `Unavailable` when a file is neither cached nor downloadable; else as
    /// [`from_dir`](Self::from_dir).
    #[cfg(feature = "hf-hub")]
    pub fn from_hub(repo_id: &str) -> Result<Self> {
        const REQUIRED: &[&str] = &[
            "config.json",
            "tokenizer.json",
            "model.safetensors",
            "1_Pooling/config.json",
        ];
        const OPTIONAL: &[&str] = &["sentence_bert_config.json", "modules.json"];
        let cache = hf_hub::Cache::from_env().model(repo_id.to_string());
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .build()
            .map_err(|e| Error::unavailable(format!("cannot reach the Hugging Face hub: {e}")))?;
        let repo = api.model(repo_id.to_string());
        let fetch = |file: &str| -> Result<std::path::PathBuf> {
            if let Some(path) = cache.get(file) {
                return Ok(path);
            }
            repo.get(file).map_err(|e| {
                Error::unavailable(format!(
                    "{file} is not in the Hugging Face cache and cannot be downloaded: {e}"
                ))
                .with_context("repo", repo_id)
            })
        };
        let mut dir = None;
        for file in REQUIRED {
            let path = fetch(file)?;
            if *file == "config.json" {
                dir = path.parent().map(Path::to_path_buf);
            }
        }
        for file in OPTIONAL {
            // Models without them are valid: sentence-transformers falls back to defaults too.
            let _ = fetch(file);
        }
        let dir = dir.ok_or_else(|| {
            Error::backend_error("the hub cache returned a path without a parent")
        })?;
        let options = MiniLmOptions {
            model_id: Some(repo_id.to_string()),
            ..MiniLmOptions::default()
        };
        Self::load(ModelDir::open(dir)?, options)
    }

    /// Loads a checked model directory with `options`.
    ///
    /// # Errors
    /// `InvalidInput` naming the file when the tokenizer or the weights cannot be loaded;
    /// `InvalidInput` for options of zero.
    pub fn load(model_dir: ModelDir, options: MiniLmOptions) -> Result<Self> {
        let started = Instant::now();
        if options.batch_size == 0 || options.max_batch_tokens == 0 {
            return Err(Error::invalid_input(
                "batch_size and max_batch_tokens must be at least 1",
            ));
        }

        if options.precision == Precision::Int8 {
            let widths = [model_dir.bert.hidden_size, model_dir.bert.intermediate_size];
            if widths.iter().any(|w| w % 32 != 0) {
                return Err(Error::invalid_input(format!(
                    "the int8 precision quantises weights in blocks of 32, so hidden_size and \
                     intermediate_size must each be a multiple of 32; this model has {} and {}",
                    widths[0], widths[1]
                ))
                .with_context("file", model_dir.path().join("config.json").display()));
            }
        }
        let tokenizer_path = model_dir.tokenizer_path();
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| {
            Error::invalid_input(format!("cannot load the tokenizer: {e}"))
                .with_context("file", tokenizer_path.display())
        })?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: model_dir.max_seq_length(),
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| {
                Error::invalid_input(format!("cannot set truncation: {e}"))
                    .with_context("file", tokenizer_path.display())
            })?;
        // We pad ourselves, per batch, to the batch's longest text.
        tokenizer.with_padding(None);

        let weights_path = model_dir.weights_path();
        let weights = std::fs::read(&weights_path).map_err(|e| {
            Error::not_found(format!("cannot read the weights: {e}"))
                .with_context("file", weights_path.display())
                .with_source(e)
        })?;
        let hash = blake3::hash(&weights);
        let device = device();
        let vb =
            VarBuilder::from_buffered_safetensors(weights, DType::F32, &device).map_err(|e| {
                Error::invalid_input(format!("not a safetensors file: {e}"))
                    .with_context("file", weights_path.display())
            })?;
        let model = Model::load(vb, &model_dir.bert, options.precision).map_err(|e| {
            Error::invalid_input(format!(
                "the weights do not match config.json or are not a BERT model: {e}"
            ))
            .with_context("file", weights_path.display())
        })?;

        let base_id = options
            .model_id
            .clone()
            .unwrap_or_else(|| model_id_for(&hash, model_dir.path()));
        let model_id = format!("{base_id}{}", options.precision.model_id_suffix());
        let load_time = started.elapsed();
        tracing::info!(
            model_id = %model_id,
            dir = %model_dir.path().display(),
            dimension = model_dir.dimension(),
            max_seq_length = model_dir.max_seq_length(),
            precision = ?options.precision,
            load_ms = load_time.as_millis() as u64,
            "loaded embedding model"
        );
        Ok(MiniLmEmbedder {
            inner: Arc::new(Inner {
                model,
                tokenizer,
                model_dir,
                model_id,
                options,
                load_time,
                query_pool: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The model's directory and configuration.
    pub fn model_dir(&self) -> &ModelDir {
        &self.inner.model_dir
    }

    /// How long loading took (reading, hashing and mapping the weights, loading the tokenizer).
    pub fn load_time(&self) -> Duration {
        self.inner.load_time
    }

    /// The precision the dense layers run in.
    pub fn precision(&self) -> Precision {
        self.inner.options.precision
    }

    /// Token ids of `text` as the model sees them: `[CLS] … [SEP]`, truncated at
    /// `max_seq_length`.
    ///
    /// # Errors
    /// `Backend` if the tokenizer fails.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.inner.tokenize(text)
    }

    /// Embeds `texts` on the calling thread (using every core). [`Embedder::embed`] runs this on
    /// the blocking pool; call it directly outside an async runtime.
    ///
    /// # Errors
    /// `Backend` if the tokenizer or the model fails.
    pub fn embed_blocking<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        self.inner.embed(texts, None)
    }

    /// As [`embed_blocking`](Self::embed_blocking), also reporting where the time went.
    ///
    /// # Errors
    /// As [`embed_blocking`](Self::embed_blocking).
    pub fn embed_timed<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
    ) -> Result<(Vec<Vec<f32>>, EmbedTimings)> {
        let mut timings = EmbedTimings::default();
        let vectors = self.inner.embed(texts, Some(&mut timings))?;
        Ok((vectors, timings))
    }
}

/// Texts longer than this many bytes per allowed token are tokenized from a prefix first (see
/// [`Inner::tokenize`]).
const PREFIX_BYTES_PER_TOKEN: usize = 16;

impl Inner {
    fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let lowered;
        let text = if self.model_dir.do_lower_case {
            lowered = text.to_lowercase();
            lowered.as_str()
        } else {
            text
        };
        let max = self.model_dir.max_seq_length();
        // A 1 MB text would cost ~100 ms to tokenize only to keep its first 256 tokens. BERT's
        // normalizer works per character and its pre-tokenizer splits at whitespace, so the
        // tokens before a whitespace do not depend on what follows it: if a prefix ending at a
        // whitespace already fills the window, the full text gives the same tokens.
        let mut prefix_len = max.saturating_mul(PREFIX_BYTES_PER_TOKEN);
        while prefix_len < text.len() {
            if let Some(cut) = whitespace_cut(text, prefix_len) {
                let ids = self.encode(&text[..cut])?;
                if ids.len() >= max {
                    return Ok(ids);
                }
            }
            prefix_len = prefix_len.saturating_mul(4);
        }
        self.encode(text)
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode_fast(text, true)
            .map_err(|e| Error::backend_error(format!("tokenizer failed: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// One query, on the query pool. Bulk batches run on rayon's global pool; a query sent
    /// there would wait behind every batch already queued (measured in the server's load bench:
    /// p99 937 ms at 8 clients while events were embedded). The query pool has its own threads,
    /// one per core, so a query waits at most for other queries; the OS shares the cores.
    fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        let pool = self
            .query_pool
            .get_or_init(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(candle_core::utils::get_num_threads())
                    .thread_name(|i| format!("chatvault-embed-query-{i}"))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Error::backend_error(format!("cannot start the query threads: {e}")))?;
        let mut vectors = pool.install(|| self.embed(&[query], None))?;
        match vectors.pop() {
            Some(v) if vectors.is_empty() => Ok(v),
            _ => Err(Error::backend_error(
                "the model returned no vector for the query",
            )),
        }
    }

    fn embed<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        mut timings: Option<&mut EmbedTimings>,
    ) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let ids: Vec<Vec<u32>> = texts
            .par_iter()
            .map(|t| self.tokenize(t.as_ref()))
            .collect::<Result<_>>()?;
        if let Some(t) = timings.as_deref_mut() {
            t.tokenize += started.elapsed();
            t.tokens += ids.iter().map(Vec::len).sum::<usize>();
        }

        // Shortest first, then batches by token count: texts of similar length share a batch
        // (on a GPU each batch pads to its longest text; on the CPU they are packed, and similar
        // lengths keep the per-text attention work of a batch even).
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let ranges = self.model.batches(&order, &ids, &self.options);
        // Batches run side by side, and each also splits its products and kernels across the
        // cores (rayon's work stealing balances the two).
        let results: Vec<Result<(Vec<Vec<f32>>, EmbedTimings)>> = ranges
            .par_iter()
            .map(|&(start, end)| {
                let batch: Vec<&[u32]> = order[start..end].iter().map(|&i| &ids[i][..]).collect();
                let mut t = EmbedTimings::default();
                let vectors = self.forward(&batch, &mut t)?;
                Ok((vectors, t))
            })
            .collect();
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for (&(start, end), result) in ranges.iter().zip(results) {
            let (vectors, t) = result?;
            if let Some(total) = timings.as_deref_mut() {
                total.forward += t.forward;
                total.pooling += t.pooling;
                total.padded_tokens += t.padded_tokens;
            }
            for (&i, v) in order[start..end].iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// One forward pass over `batch`, pooled and normalised.
    fn forward(&self, batch: &[&[u32]], timings: &mut EmbedTimings) -> Result<Vec<Vec<f32>>> {
        let started = Instant::now();
        let mut rows = match &self.model {
            Model::Packed(encoder) => {
                let hidden = encoder.forward(batch).map_err(candle_error)?;
                timings.forward += started.elapsed();
                let pooling = Instant::now();
                let h = self.model_dir.bert.hidden_size;
                let mut rows = Vec::with_capacity(batch.len());
                let mut offset = 0;
                for ids in batch {
                    let states = &hidden[offset * h..(offset + ids.len()) * h];
                    offset += ids.len();
                    rows.push(pool(states, h, self.model_dir.pooling));
                }
                timings.pooling += pooling.elapsed();
                timings.padded_tokens += offset;
                rows
            }
            #[cfg(feature = "cuda")]
            Model::Padded(model) => {
                let rows = padded::forward(model, &self.model_dir, batch, timings)
                    .map_err(candle_error)?;
                timings.forward += started.elapsed();
                rows
            }
        };
        let pooling = Instant::now();
        for v in &mut rows {
            normalize(v)?;
        }
        timings.pooling += pooling.elapsed();
        Ok(rows)
    }
}

/// Mean (over all tokens: the texts are unpadded) or CLS pooling of one text's hidden states.
fn pool(states: &[f32], hidden: usize, pooling: Pooling) -> Vec<f32> {
    match pooling {
        Pooling::Cls => states[..hidden].to_vec(),
        Pooling::Mean => {
            let mut sum = vec![0f32; hidden];
            let mut count = 0usize;
            for row in states.chunks_exact(hidden) {
                sum.iter_mut().zip(row).for_each(|(s, x)| *s += x);
                count += 1;
            }
            let n = count.max(1) as f32;
            sum.iter_mut().for_each(|s| *s /= n);
            sum
        }
    }
}

/// The device the model runs on: the first CUDA GPU when built with `cuda` and one is present,
/// else the CPU.
fn device() -> Device {
    #[cfg(feature = "cuda")]
    {
        if let Ok(device) = Device::cuda_if_available(0) {
            return device;
        }
    }
    Device::Cpu
}

/// The transformer, as run on its device.
enum Model {
    /// CPU: our packed encoder (no padding, fused kernels, `f32` or int8).
    Packed(Encoder),
    /// CUDA: candle's `BertModel`, batches padded to their longest text.
    #[cfg(feature = "cuda")]
    Padded(candle_transformers::models::bert::BertModel),
}

impl Model {
    fn load(
        vb: VarBuilder<'_>,
        config: &candle_transformers::models::bert::Config,
        precision: Precision,
    ) -> candle_core::Result<Self> {
        #[cfg(feature = "cuda")]
        if vb.device().is_cuda() {
            if precision != Precision::F32 {
                candle_core::bail!("the int8 precision runs on the CPU only");
            }
            return Ok(Model::Padded(
                candle_transformers::models::bert::BertModel::load(vb, config)?,
            ));
        }
        Ok(Model::Packed(Encoder::load(vb, config, precision)?))
    }

    /// Splits the texts, in `order` (shortest first), into `(start, end)` ranges of `order`.
    fn batches(
        &self,
        order: &[usize],
        ids: &[Vec<u32>],
        options: &MiniLmOptions,
    ) -> Vec<(usize, usize)> {
        let padded = match self {
            Model::Packed(_) => false,
            #[cfg(feature = "cuda")]
            Model::Padded(_) => true,
        };
        let mut ranges = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            let mut real = ids[order[start]].len();
            while end < order.len() && end - start < options.batch_size {
                let len = ids[order[end]].len();
                // Sorted ascending, so `len` is the longest text of the batch so far.
                let cost = if padded {
                    (end - start + 1) * len
                } else {
                    real + len
                };
                // Padded: at most a tenth of the work on padding (measured with the bench).
                if cost > options.max_batch_tokens || (padded && cost * 10 > (real + len) * 11) {
                    break;
                }
                real += len;
                end += 1;
            }
            ranges.push((start, end));
            start = end;
        }
        ranges
    }
}

/// candle's `BertModel` over padded batches, for GPUs.
#[cfg(feature = "cuda")]
mod padded {
    use candle_core::Tensor;
    use candle_transformers::models::bert::BertModel;

    use super::{EmbedTimings, ModelDir, Pooling};

    pub(super) fn forward(
        model: &BertModel,
        model_dir: &ModelDir,
        batch: &[&[u32]],
        timings: &mut EmbedTimings,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let n = batch.len();
        let len = batch.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let pad = model_dir.bert.pad_token_id as u32;
        let mut input = vec![pad; n * len];
        let mut mask = vec![0f32; n * len];
        for (row, ids) in batch.iter().enumerate() {
            input[row * len..row * len + ids.len()].copy_from_slice(ids);
            mask[row * len..row * len + ids.len()].fill(1.0);
        }
        let device = &model.device;
        let input = Tensor::from_vec(input, (n, len), device)?;
        let types = input.zeros_like()?;
        let mask = Tensor::from_vec(mask, (n, len), device)?;
        let hidden = model.forward(&input, &types, Some(&mask))?;
        let pooled = match model_dir.pooling {
            Pooling::Mean => {
                let m = mask.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&m)?.sum(1)?;
                summed.broadcast_div(&m.sum(1)?)?
            }
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
        };
        timings.padded_tokens += n * len;
        pooled.to_vec2()
    }
}

/// The largest byte index ≤ `at` (and > 0) that starts a whitespace character, if any.
fn whitespace_cut(text: &str, at: usize) -> Option<usize> {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text[..at]
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map(|(i, _)| i)
        .filter(|&i| i > 0)
}

pub(crate) fn normalize(v: &mut [f32]) -> Result<()> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return Err(Error::backend_error(
            "the model produced a zero or non-finite embedding",
        ));
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Ok(())
}

fn candle_error(e: candle_core::Error) -> Error {
    Error::backend_error(format!("candle: {e}")).with_backend("candle")
}

#[async_trait]
impl Embedder for MiniLmEmbedder {
    fn model_id(&self) -> &str {
        &self.inner.model_id
    }

    fn dimension(&self) -> usize {
        self.inner.model_dir.dimension()
    }

    fn max_batch(&self) -> usize {
        256
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let inner = Arc::clone(&self.inner);
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || inner.embed(&texts, None))
            .await
            .map_err(|e| Error::backend_error(format!("the embedding task failed: {e}")))?
    }

    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        let inner = Arc::clone(&self.inner);
        let query = query.to_owned();
        tokio::task::spawn_blocking(move || inner.embed_query(&query))
            .await
            .map_err(|e| Error::backend_error(format!("the embedding task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_cut_finds_a_char_boundary_before_the_limit() {
        assert_eq!(whitespace_cut("ab cd ef", 7), Some(5));
        assert_eq!(whitespace_cut("ab cd ef", 5), Some(2));
        assert_eq!(whitespace_cut("abcdef", 4), None);
        // 'é' is two bytes: index 4 is inside it.
        assert_eq!(whitespace_cut("a é é", 4), Some(1));
        assert_eq!(whitespace_cut(" abc", 3), None);
    }

    #[test]
    fn normalize_refuses_zero_vectors() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v).unwrap();
        assert_eq!(v, vec![0.6, 0.8]);
        assert!(normalize(&mut [0.0, 0.0]).is_err());
        assert!(normalize(&mut [f32::NAN, 1.0]).is_err());
    }
}
