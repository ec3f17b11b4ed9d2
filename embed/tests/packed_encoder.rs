//! The packed CPU encoder against candle's `BertModel`, and the int8 precision.
//!
//! The tiny random model runs everywhere; the int8 checks of the real model need
//! `CHATVAULT_MODEL_DIR` (skipped with a message without it, failing under `CI=true`).

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::BertModel;
use chatvault_core::{CollectionSpec, ContentStore, Embedder, ErrorKind, WorkspaceId};
use chatvault_embed::{check_collection, MiniLmEmbedder, MiniLmOptions, ModelDir, Precision};
use common::{cosine, max_abs_diff, real_model, write_tiny_model};

/// What candle's `BertModel` computes for `texts` padded to the longest, mean-pooled over the
/// attention mask and normalised: the reference the packed encoder must reproduce.
fn candle_reference(dir: &std::path::Path, ids: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let model_dir = ModelDir::open(dir).unwrap();
    let config: candle_transformers::models::bert::Config =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let vb = VarBuilder::from_buffered_safetensors(
        std::fs::read(model_dir.path().join("model.safetensors")).unwrap(),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let model = BertModel::load(vb, &config).unwrap();
    let len = ids.iter().map(Vec::len).max().unwrap();
    let mut input = vec![0u32; ids.len() * len];
    let mut mask = vec![0f32; ids.len() * len];
    for (r, t) in ids.iter().enumerate() {
        input[r * len..r * len + t.len()].copy_from_slice(t);
        mask[r * len..r * len + t.len()].fill(1.0);
    }
    let input = Tensor::from_vec(input, (ids.len(), len), &Device::Cpu).unwrap();
    let mask = Tensor::from_vec(mask, (ids.len(), len), &Device::Cpu).unwrap();
    let hidden = model
        .forward(&input, &input.zeros_like().unwrap(), Some(&mask))
        .unwrap();
    let m = mask.unsqueeze(2).unwrap();
    let pooled = hidden
        .broadcast_mul(&m)
        .unwrap()
        .sum(1)
        .unwrap()
        .broadcast_div(&m.sum(1).unwrap())
        .unwrap();
    pooled
        .to_vec2::<f32>()
        .unwrap()
        .into_iter()
        .map(|v| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect()
        })
        .collect()
}

#[test]
fn packed_batches_reproduce_candles_padded_bert_model() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_model(tmp.path(), 7, 48);
    let texts = [
        "",
        "hello",
        "the deploy failed on staging",
        "lunch at noon, anyone? the deploy failed on staging. hello world! a b c a b c a b c",
        "a",
        "hello world",
    ];
    let embedder = MiniLmEmbedder::from_dir(tmp.path()).unwrap();
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| embedder.tokenize(t).unwrap())
        .collect();
    assert!(ids.iter().map(Vec::len).max().unwrap() > 20);
    let want = candle_reference(tmp.path(), &ids);
    let got = embedder.embed_blocking(&texts).unwrap();
    for ((text, g), w) in texts.iter().zip(&got).zip(&want) {
        let d = max_abs_diff(g, w);
        assert!(d < 1e-5, "{text:?}: largest difference {d}");
    }

    // Batches of one text each (the other extreme of packing) give the same vectors.
    let mut options = MiniLmOptions::default();
    options.max_batch_tokens = 1;
    let one_by_one =
        MiniLmEmbedder::load(ModelDir::open(tmp.path()).unwrap(), options.clone()).unwrap();
    let singles = one_by_one.embed_blocking(&texts).unwrap();
    for (a, b) in got.iter().zip(&singles) {
        assert!(max_abs_diff(a, b) < 1e-6);
    }
}

#[test]
fn int8_needs_layer_widths_in_blocks_of_32_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_model(tmp.path(), 3, 16);
    let mut options = MiniLmOptions::default();
    options.precision = Precision::Int8;
    let err = MiniLmEmbedder::load(ModelDir::open(tmp.path()).unwrap(), options).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("multiple of 32"), "{err}");
}

#[test]
fn precisions_parse_from_their_names() {
    assert_eq!(Precision::parse("F32"), Some(Precision::F32));
    assert_eq!(Precision::parse(" int8 "), Some(Precision::Int8));
    assert_eq!(Precision::parse("q8_0"), Some(Precision::Int8));
    assert_eq!(Precision::parse("bf16"), None);
    assert_eq!(Precision::F32.model_id_suffix(), "");
    assert_ne!(Precision::Int8.model_id_suffix(), "");
}

fn int8_model() -> Option<MiniLmEmbedder> {
    let f32_model = real_model()?;
    let mut options = MiniLmOptions::default();
    options.precision = Precision::Int8;
    Some(MiniLmEmbedder::load(f32_model.model_dir().clone(), options).unwrap())
}

#[test]
fn int8_vectors_stay_close_to_the_f32_ones() {
    let (Some(f32_model), Some(int8)) = (real_model(), int8_model()) else {
        return;
    };
    let texts = [
        "the deploy failed on staging",
        "Has anyone used D3 v4 with React? I keep fighting the DOM ownership question.",
        "Meetup tonight at 6:30pm, pizza provided 🍕",
        "ok",
        "",
    ];
    let a = f32_model.embed_blocking(&texts).unwrap();
    let b = int8.embed_blocking(&texts).unwrap();
    for ((text, x), y) in texts.iter().zip(&a).zip(&b) {
        let c = cosine(x, y);
        // The bench measures the precise figure over whole exports; this guards against a
        // broken quantised path (an unrelated vector has a cosine near 0).
        assert!(c > 0.98, "{text:?}: cosine {c} between int8 and f32");
        assert!(max_abs_diff(x, y) > 0.0, "int8 gave exactly the f32 vector");
    }
}

#[tokio::test]
async fn a_collection_built_in_f32_refuses_int8_vectors_and_back() {
    let (Some(f32_model), Some(int8)) = (real_model(), int8_model()) else {
        return;
    };
    assert_eq!(
        f32_model.model_id(),
        "sentence-transformers/all-MiniLM-L6-v2"
    );
    assert_ne!(int8.model_id(), f32_model.model_id());
    assert!(int8.model_id().starts_with(f32_model.model_id()));
    assert_eq!(int8.dimension(), f32_model.dimension());

    // The reference content store refuses a second spec for a collection exactly as every
    // backend does (the content-store conformance suite checks that of each backend).
    let store = chatvault_core::testing::MemoryContentStore::new();
    for (i, (builder, other)) in [(f32_model, &int8), (&int8, f32_model)]
        .into_iter()
        .enumerate()
    {
        let ws = WorkspaceId::new(format!("T{i}")).unwrap();
        let spec = CollectionSpec {
            dimension: builder.dimension(),
            model_id: builder.model_id().to_string(),
        };
        store.create_collection(&ws, &spec).await.unwrap();
        let recorded = store.collection_info(&ws).await.unwrap().unwrap().spec;
        check_collection(builder, &recorded).unwrap();
        let err = check_collection(other, &recorded).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        let other_spec = CollectionSpec {
            dimension: other.dimension(),
            model_id: other.model_id().to_string(),
        };
        let err = store.create_collection(&ws, &other_spec).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    }
}
