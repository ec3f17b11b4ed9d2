//! Loading sentence-transformers directories: any BERT model with mean pooling loads (a tiny
//! random one here, so these tests never need a download), and broken directories fail clearly.

mod common;

use chatvault_core::{Embedder, ErrorKind};
use chatvault_embed::{MiniLmEmbedder, MiniLmOptions, ModelDir, Pooling};
use common::{max_abs_diff, write_tiny_model, TINY_HIDDEN};

fn tiny(max_seq_length: usize) -> (tempfile::TempDir, MiniLmEmbedder) {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("tiny-bert");
    write_tiny_model(&model_dir, 7, max_seq_length);
    let model = MiniLmEmbedder::from_dir(&model_dir).unwrap();
    (dir, model)
}

#[tokio::test]
async fn any_bert_model_with_mean_pooling_loads_with_its_own_dimension() {
    let (_dir, model) = tiny(32);
    assert_eq!(model.dimension(), TINY_HIDDEN);
    assert_eq!(model.model_dir().pooling(), Pooling::Mean);
    assert!(
        model.model_id().starts_with("local/tiny-bert@blake3:"),
        "{}",
        model.model_id()
    );
    let texts: Vec<String> = ["the deploy failed on staging", "", "lunch at noon, anyone?"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let v = model.embed(&texts).await.unwrap();
    assert_eq!(v.len(), 3);
    for x in &v {
        assert_eq!(x.len(), TINY_HIDDEN);
        assert!(x.iter().all(|f| f.is_finite()));
        let norm: f32 = x.iter().map(|f| f * f).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    // Deterministic, and different texts differ.
    assert_eq!(v, model.embed(&texts).await.unwrap());
    assert!(max_abs_diff(&v[0], &v[2]) > 1e-3);
    assert!(model.embed(&[]).await.unwrap().is_empty());
}

#[test]
fn same_weights_same_id_other_weights_other_id() {
    let dir = tempfile::tempdir().unwrap();
    for (name, seed) in [("a", 1), ("b", 1), ("c", 2)] {
        write_tiny_model(&dir.path().join(name), seed, 32);
    }
    let id = |n: &str| {
        MiniLmEmbedder::from_dir(dir.path().join(n))
            .unwrap()
            .model_id()
            .to_string()
    };
    let (a, b, c) = (id("a"), id("b"), id("c"));
    assert_eq!(a[a.find('@').unwrap()..], b[b.find('@').unwrap()..]);
    assert_ne!(a[a.find('@').unwrap()..], c[c.find('@').unwrap()..]);

    let mut options = MiniLmOptions::default();
    options.model_id = Some("my-org/tiny".to_string());
    let named =
        MiniLmEmbedder::load(ModelDir::open(dir.path().join("a")).unwrap(), options).unwrap();
    assert_eq!(named.model_id(), "my-org/tiny");
}

#[test]
fn padding_and_batch_boundaries_never_change_a_vector() {
    let (_dir, model) = tiny(32);
    let texts: Vec<String> = (0..40)
        .map(|i| {
            let words = [
                "the", "deploy", "failed", "on", "staging", "hello", "world", "a", "b",
            ];
            (0..(i * 7 % 23))
                .map(|j| words[(i + j) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let together = model.embed_blocking(&texts).unwrap();
    // Tiny batches and a tiny token budget: many more, differently padded, forward passes.
    let mut options = MiniLmOptions::default();
    options.batch_size = 3;
    options.max_batch_tokens = 40;
    let small = MiniLmEmbedder::load(model.model_dir().clone(), options).unwrap();
    let batched = small.embed_blocking(&texts).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let alone = model.embed_blocking(&[text]).unwrap();
        assert!(max_abs_diff(&together[i], &alone[0]) < 1e-5, "text {i}");
        assert!(max_abs_diff(&batched[i], &alone[0]) < 1e-5, "text {i}");
    }
}

#[test]
fn truncation_follows_max_seq_length() {
    let (_dir, model) = tiny(8);
    let ids = model
        .tokenize("the deploy failed on staging the deploy failed on staging")
        .unwrap();
    assert_eq!(ids.len(), 8);
    assert_eq!((ids[0], ids[7]), (2, 3)); // [CLS] … [SEP]
    assert_eq!(model.tokenize("").unwrap(), vec![2, 3]);
    // Unknown words become [UNK] (id 1), as WordPiece does.
    assert_eq!(model.tokenize("zebra").unwrap(), vec![2, 1, 3]);
}

#[test]
fn missing_directories_and_files_are_named() {
    let err = MiniLmEmbedder::from_dir("/nonexistent/model").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("/nonexistent/model"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let err = MiniLmEmbedder::from_dir(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("config.json"), "{err}");

    let model = dir.path().join("m");
    write_tiny_model(&model, 1, 32);
    std::fs::remove_file(model.join("1_Pooling/config.json")).unwrap();
    let err = MiniLmEmbedder::from_dir(&model).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("1_Pooling"), "{err}");
}

#[test]
fn malformed_and_unsupported_configurations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    let reset = || {
        let _ = std::fs::remove_dir_all(&model);
        write_tiny_model(&model, 1, 32);
    };
    let check = |kind: ErrorKind, needle: &str| {
        let err = MiniLmEmbedder::from_dir(&model).unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert!(err.to_string().contains(needle), "{needle:?} not in: {err}");
    };

    reset();
    std::fs::write(model.join("config.json"), "{\"hidden_size\": 8,").unwrap();
    check(ErrorKind::InvalidInput, "config.json");

    reset();
    std::fs::write(
        model.join("config.json"),
        r#"{"model_type": "bert", "hidden_size": 8}"#,
    )
    .unwrap();
    check(ErrorKind::InvalidInput, "vocab_size");

    reset();
    std::fs::write(
        model.join("config.json"),
        r#"{"model_type": "xlm-roberta"}"#,
    )
    .unwrap();
    check(ErrorKind::Unsupported, "xlm-roberta");

    reset();
    std::fs::write(
        model.join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 8, "pooling_mode_max_tokens": true}"#,
    )
    .unwrap();
    check(ErrorKind::Unsupported, "pooling");

    reset();
    std::fs::write(
        model.join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 16, "pooling_mode_mean_tokens": true}"#,
    )
    .unwrap();
    check(ErrorKind::InvalidInput, "word_embedding_dimension 16");

    reset();
    std::fs::write(
        model.join("modules.json"),
        r#"[{"path": "", "type": "sentence_transformers.models.Transformer"},
            {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}]"#,
    )
    .unwrap();
    check(ErrorKind::Unsupported, "Dense");
}

#[test]
fn broken_weights_and_tokenizers_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    write_tiny_model(&model, 1, 32);

    std::fs::write(model.join("tokenizer.json"), "{\"model\": 3}").unwrap();
    let err = MiniLmEmbedder::from_dir(&model).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("tokenizer.json"), "{err}");

    write_tiny_model(&model, 1, 32);
    std::fs::write(model.join("model.safetensors"), b"not a safetensors file").unwrap();
    let err = MiniLmEmbedder::from_dir(&model).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    // Weights of another shape than config.json says: a dimension mismatch inside the model.
    write_tiny_model(&model, 1, 32);
    let config = std::fs::read_to_string(model.join("config.json")).unwrap();
    std::fs::write(
        model.join("config.json"),
        config.replace("\"hidden_size\":8", "\"hidden_size\":16"),
    )
    .unwrap();
    std::fs::write(
        model.join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 16, "pooling_mode_mean_tokens": true}"#,
    )
    .unwrap();
    let err = MiniLmEmbedder::from_dir(&model).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}
