//! Shared by the integration tests: the real model when it is installed, and a tiny random BERT
//! model written to a temporary directory (so loading, batching and errors are tested always).

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use chatvault_embed::{MiniLmEmbedder, MODEL_DIR_ENV};

/// The all-MiniLM-L6-v2 embedder from `CHATVAULT_MODEL_DIR`, loaded once per test binary.
/// `None` (with a message) when the variable is unset; a panic under `CI=true`, where the model
/// must be present (`.ci/run` fetches it).
pub fn real_model() -> Option<&'static MiniLmEmbedder> {
    static MODEL: OnceLock<Option<MiniLmEmbedder>> = OnceLock::new();
    MODEL
        .get_or_init(
            || match std::env::var_os(MODEL_DIR_ENV).filter(|v| !v.is_empty()) {
                Some(dir) => {
                    Some(MiniLmEmbedder::from_dir(&dir).unwrap_or_else(|e| {
                        panic!("{MODEL_DIR_ENV}={dir:?} cannot be loaded: {e}")
                    }))
                }
                None => {
                    if std::env::var("CI").as_deref() == Ok("true") {
                        panic!(
                        "{MODEL_DIR_ENV} is not set under CI=true: run scripts/fetch-model.sh and \
                         export {MODEL_DIR_ENV} to the directory it prints"
                    );
                    }
                    eprintln!(
                        "SKIPPED: {MODEL_DIR_ENV} is not set, so the tests of the real \
                     all-MiniLM-L6-v2 model do not run (run scripts/fetch-model.sh and export \
                     {MODEL_DIR_ENV} to the directory it prints)"
                    );
                    None
                }
            },
        )
        .as_ref()
}

pub const TINY_VOCAB: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "deploy", "failed", "on", "staging", "lunch", "at",
    "noon", "any", "##one", "?", ",", ".", "!", "hello", "world", "a", "b", "c",
];

pub const TINY_HIDDEN: usize = 8;

/// Writes a tiny BERT sentence-transformers model (hidden size 8, 2 heads, 2 layers, random
/// weights from `seed`) into `dir`.
pub fn write_tiny_model(dir: &Path, seed: u64, max_seq_length: usize) {
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    let hidden = TINY_HIDDEN;
    let intermediate = 16;
    let layers = 2;
    let positions = 64;
    let config = serde_json::json!({
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": intermediate,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": positions,
        "model_type": "bert",
        "num_attention_heads": 2,
        "num_hidden_layers": layers,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "type_vocab_size": 2,
        "vocab_size": TINY_VOCAB.len(),
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        serde_json::json!({"max_seq_length": max_seq_length, "do_lower_case": false}).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        serde_json::json!({
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": false,
            "pooling_mode_mean_tokens": true,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("modules.json"),
        serde_json::json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        ])
        .to_string(),
    )
    .unwrap();
    let vocab: serde_json::Map<String, serde_json::Value> = TINY_VOCAB
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i.into()))
        .collect();
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": null,
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();

    let dev = Device::Cpu;
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut rand = |shape: &[usize], scale: f32| -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (((state >> 33) as f64 / (1u64 << 31) as f64) as f32 * 2.0 - 1.0) * scale
            })
            .collect();
        Tensor::from_vec(data, shape, &dev).unwrap()
    };
    let ones = |n: usize| Tensor::ones(n, DType::F32, &Device::Cpu).unwrap();
    let mut t: HashMap<String, Tensor> = HashMap::new();
    t.insert(
        "embeddings.word_embeddings.weight".into(),
        rand(&[TINY_VOCAB.len(), hidden], 1.0),
    );
    t.insert(
        "embeddings.position_embeddings.weight".into(),
        rand(&[positions, hidden], 0.5),
    );
    t.insert(
        "embeddings.token_type_embeddings.weight".into(),
        rand(&[2, hidden], 0.1),
    );
    t.insert("embeddings.LayerNorm.weight".into(), ones(hidden));
    t.insert("embeddings.LayerNorm.bias".into(), rand(&[hidden], 0.1));
    for l in 0..layers {
        let p = format!("encoder.layer.{l}");
        for name in ["query", "key", "value"] {
            t.insert(
                format!("{p}.attention.self.{name}.weight"),
                rand(&[hidden, hidden], 0.5),
            );
            t.insert(
                format!("{p}.attention.self.{name}.bias"),
                rand(&[hidden], 0.1),
            );
        }
        t.insert(
            format!("{p}.attention.output.dense.weight"),
            rand(&[hidden, hidden], 0.5),
        );
        t.insert(
            format!("{p}.attention.output.dense.bias"),
            rand(&[hidden], 0.1),
        );
        t.insert(
            format!("{p}.attention.output.LayerNorm.weight"),
            ones(hidden),
        );
        t.insert(
            format!("{p}.attention.output.LayerNorm.bias"),
            rand(&[hidden], 0.1),
        );
        t.insert(
            format!("{p}.intermediate.dense.weight"),
            rand(&[intermediate, hidden], 0.5),
        );
        t.insert(
            format!("{p}.intermediate.dense.bias"),
            rand(&[intermediate], 0.1),
        );
        t.insert(
            format!("{p}.output.dense.weight"),
            rand(&[hidden, intermediate], 0.5),
        );
        t.insert(format!("{p}.output.dense.bias"), rand(&[hidden], 0.1));
        t.insert(format!("{p}.output.LayerNorm.weight"), ones(hidden));
        t.insert(format!("{p}.output.LayerNorm.bias"), rand(&[hidden], 0.1));
    }
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    chatvault_core::cosine(a, b)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
