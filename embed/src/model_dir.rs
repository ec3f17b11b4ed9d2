//! A sentence-transformers model directory: finding it, reading its configuration, refusing what
//! [`MiniLmEmbedder`](crate::MiniLmEmbedder) cannot reproduce exactly.

use std::path::{Path, PathBuf};

use candle_transformers::models::bert;
use chatvault_core::{Error, Result};
use serde::Deserialize;

/// The environment variable naming a model directory (see [`ModelDir::from_env`]).
pub const MODEL_DIR_ENV: &str = "CHATVAULT_MODEL_DIR";

/// The model the `scripts/fetch-model.sh` script installs and the hub loader fetches by default.
pub const DEFAULT_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Weights this crate recognises by content, so that a collection records the model's public
/// name whatever directory it was loaded from: (BLAKE3 of `model.safetensors`, model id).
const KNOWN_WEIGHTS: &[(&str, &str)] = &[(
    // sentence-transformers/all-MiniLM-L6-v2, revision 1110a243 (SHA-256 53aa5117…d9db).
    "8087e9bf97c265f8435ed268733ecf3791825ad24850fd5d84d89e32ee3a589a",
    DEFAULT_MODEL,
)];

/// How the transformer's token embeddings become one sentence embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of the token embeddings, padding excluded (all-MiniLM-L6-v2 and most models).
    Mean,
    /// The embedding of the first (`[CLS]`) token (BGE and others).
    Cls,
}

/// A validated sentence-transformers model directory: its parsed configuration and the paths of
/// the tokenizer and the weights. Nothing heavy is loaded yet.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub(crate) dir: PathBuf,
    pub(crate) bert: bert::Config,
    pub(crate) max_seq_length: usize,
    pub(crate) do_lower_case: bool,
    pub(crate) pooling: Pooling,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

#[derive(Deserialize)]
struct PoolingConfig {
    word_embedding_dimension: usize,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
    #[serde(default)]
    include_prompt: Option<bool>,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

impl ModelDir {
    /// Reads and checks the model in `dir`.
    ///
    /// # Errors
    /// `NotFound` when `dir` or a required file (`config.json`, `tokenizer.json`,
    /// `model.safetensors`, `1_Pooling/config.json`) is missing; `InvalidInput` naming the file
    /// and field when one cannot be parsed; `Unsupported` for a model this crate cannot run
    /// exactly like sentence-transformers (not BERT, other pooling, extra modules such as `Dense`).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(Error::not_found(
                "the model directory does not exist or is not a directory",
            )
            .with_context("dir", dir.display()));
        }
        for required in ["config.json", "tokenizer.json", "model.safetensors"] {
            if !dir.join(required).is_file() {
                return Err(Error::not_found(format!(
                    "the model directory has no {required}: expected a sentence-transformers model \
                     (config.json, tokenizer.json, model.safetensors, 1_Pooling/config.json)"
                ))
                .with_context("dir", dir.display()));
            }
        }

        let config: serde_json::Value = read_json(&dir.join("config.json"))?;
        let model_type = config.get("model_type").and_then(|v| v.as_str());
        if let Some(other) = model_type.filter(|t| *t != "bert") {
            return Err(Error::unsupported(format!(
                "model_type {other:?} is not supported: only BERT models (model_type \"bert\") run \
                 exactly like sentence-transformers here"
            ))
            .with_context("file", dir.join("config.json").display()));
        }
        let bert: bert::Config = serde_json::from_value(config).map_err(|e| {
            Error::invalid_input(format!("config.json is not a BERT configuration: {e}"))
                .with_context("file", dir.join("config.json").display())
        })?;
        if bert.position_embedding_type != bert::PositionEmbeddingType::Absolute {
            return Err(
                Error::unsupported("only absolute position embeddings are supported")
                    .with_context("file", dir.join("config.json").display()),
            );
        }
        if bert.hidden_size == 0
            || bert.num_attention_heads == 0
            || bert.hidden_size % bert.num_attention_heads != 0
        {
            return Err(Error::invalid_input(format!(
                "hidden_size {} is not a positive multiple of num_attention_heads {}",
                bert.hidden_size, bert.num_attention_heads
            ))
            .with_context("file", dir.join("config.json").display()));
        }

        let st_path = dir.join("sentence_bert_config.json");
        let st: SentenceBertConfig = if st_path.is_file() {
            read_json(&st_path)?
        } else {
            SentenceBertConfig {
                max_seq_length: None,
                do_lower_case: false,
            }
        };
        let max_seq_length = st
            .max_seq_length
            .unwrap_or(bert.max_position_embeddings)
            .min(bert.max_position_embeddings);
        if max_seq_length < 2 {
            return Err(Error::invalid_input(format!(
                "max_seq_length {max_seq_length} leaves no room for [CLS] and [SEP]"
            ))
            .with_context("file", st_path.display()));
        }

        let (pooling_dir, extra_modules) = read_modules(&dir)?;
        if let Some(extra) = extra_modules.first() {
            return Err(Error::unsupported(format!(
                "module {extra} after pooling is not supported (only Normalize is)"
            ))
            .with_context("file", dir.join("modules.json").display()));
        }
        let pooling_path = dir.join(&pooling_dir).join("config.json");
        if !pooling_path.is_file() {
            return Err(
                Error::not_found("the model directory has no pooling configuration")
                    .with_context("file", pooling_path.display()),
            );
        }
        let pc: PoolingConfig = read_json(&pooling_path)?;
        let pooling = match (
            pc.pooling_mode_mean_tokens,
            pc.pooling_mode_cls_token,
            pc.pooling_mode_max_tokens
                || pc.pooling_mode_mean_sqrt_len_tokens
                || pc.pooling_mode_weightedmean_tokens
                || pc.pooling_mode_lasttoken,
        ) {
            (true, false, false) => Pooling::Mean,
            (false, true, false) => Pooling::Cls,
            _ => {
                return Err(Error::unsupported(
                    "only mean pooling or CLS pooling, alone, is supported",
                )
                .with_context("file", pooling_path.display()))
            }
        };
        if pc.include_prompt == Some(false) {
            return Err(
                Error::unsupported("include_prompt = false is not supported")
                    .with_context("file", pooling_path.display()),
            );
        }
        if pc.word_embedding_dimension != bert.hidden_size {
            return Err(Error::invalid_input(format!(
                "word_embedding_dimension {} differs from the transformer's hidden_size {}",
                pc.word_embedding_dimension, bert.hidden_size
            ))
            .with_context("file", pooling_path.display()));
        }

        Ok(ModelDir {
            dir,
            bert,
            max_seq_length,
            do_lower_case: st.do_lower_case,
            pooling,
        })
    }

    /// The model directory named by `CHATVAULT_MODEL_DIR`, if that variable is set.
    ///
    /// # Errors
    /// As [`open`](Self::open), for the directory the variable names.
    pub fn from_env() -> Option<Result<Self>> {
        let dir = std::env::var_os(MODEL_DIR_ENV).filter(|v| !v.is_empty())?;
        Some(Self::open(PathBuf::from(dir)))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The embedding dimension (the transformer's hidden size).
    pub fn dimension(&self) -> usize {
        self.bert.hidden_size
    }

    /// Texts are truncated to this many tokens, `[CLS]` and `[SEP]` included.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// How token embeddings are pooled.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    pub(crate) fn tokenizer_path(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }

    pub(crate) fn weights_path(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
}

/// The model id for weights with this BLAKE3 hash: the public name for known weights, else a
/// name built from the directory and the hash, so two different models never share an id.
pub(crate) fn model_id_for(weights_blake3: &blake3::Hash, dir: &Path) -> String {
    let hex = weights_blake3.to_hex();
    if let Some((_, id)) = KNOWN_WEIGHTS.iter().find(|(h, _)| *h == hex.as_str()) {
        return (*id).to_string();
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_string());
    format!("local/{name}@blake3:{}", &hex.as_str()[..16])
}

/// Reads `modules.json` when present: the pooling module's folder, and the types of any module
/// after pooling other than `Normalize` (which we always apply).
fn read_modules(dir: &Path) -> Result<(String, Vec<String>)> {
    let path = dir.join("modules.json");
    if !path.is_file() {
        return Ok(("1_Pooling".to_string(), Vec::new()));
    }
    let modules: Vec<ModuleEntry> = read_json(&path)?;
    let mut pooling = None;
    let mut extra = Vec::new();
    for m in &modules {
        let kind = m.kind.rsplit('.').next().unwrap_or(&m.kind);
        match kind {
            "Transformer" => {
                if !m.path.is_empty() {
                    return Err(Error::unsupported(format!(
                        "the transformer must be at the top of the directory, not in {:?}",
                        m.path
                    ))
                    .with_context("file", path.display()));
                }
            }
            "Pooling" => pooling = Some(m.path.clone()),
            "Normalize" => {}
            other => extra.push(other.to_string()),
        }
    }
    let pooling = pooling.ok_or_else(|| {
        Error::unsupported("modules.json has no Pooling module")
            .with_context("file", path.display())
    })?;
    Ok((pooling, extra))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::not_found(format!("cannot read the file: {e}"))
            .with_context("file", path.display())
            .with_source(e)
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::invalid_input(format!("invalid JSON at line {}: {e}", e.line()))
            .with_context("file", path.display())
            .with_source(e)
    })
}
