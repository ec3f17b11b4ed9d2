//! A BERT encoder for the CPU over *packed* batches: the tokens of all texts of a batch are rows of
//! one matrix, with no padding, so the dense layers (97 % of the arithmetic) are a few large matrix
//! products and attention runs text by text over exactly its own tokens.
//!
//! The matrix products are candle's (gemm, every core), in `f32` or with int8 weights
//! ([`Precision`]); everything between them is fused here ([`crate::kernels`]): bias + GELU in
//! one pass, bias + residual + layer norm in one pass, attention's products and softmax per
//! (text, head) without materialising scores for the whole batch. The rows are split across
//! cores with rayon.
//!
//! It computes what candle's `BertModel` (and Hugging Face's `BertModel`) compute for an
//! unpadded text: token, position and token-type (0) embeddings, layer norm, then per layer
//! self-attention → add & norm → feed-forward → add & norm.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, Device, Module, Storage, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;

use crate::kernels::{self, Activation};

/// How the dense layers' weights are stored and multiplied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Precision {
    /// The published `f32` weights: reproduces sentence-transformers' vectors (within 2e-4).
    #[default]
    F32,
    /// Weights quantised to 8 bits per value in blocks of 32 (ggml's `Q8_0`), activations
    /// quantised the same way for each product. The dense layers take a quarter of the memory,
    /// but candle's int8 product is vectorised only in builds for AVX2 (`-C target-cpu=native`):
    /// a default build is about twenty times slower than `F32`. Its vectors differ slightly from
    /// the model's (see the crate README for the measured trade-off). Collections record it in
    /// the model id, so the two are never mixed.
    Int8,
}

impl Precision {
    /// The suffix added to a model id for this precision (`""` for `F32`).
    pub fn model_id_suffix(self) -> &'static str {
        match self {
            Precision::F32 => "",
            Precision::Int8 => "+q8_0",
        }
    }

    /// Parses `f32` or `int8` (also `q8_0`), case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Some(Precision::F32),
            "int8" | "i8" | "q8" | "q8_0" => Some(Precision::Int8),
            _ => None,
        }
    }
}

/// A linear layer without its bias (the bias is fused into the kernel that follows).
enum Dense {
    /// `x · w` with `w` stored `(in, out)`, contiguous.
    F32(Tensor),
    /// `x · wᵀ` with `w` `(out, in)` quantised.
    Quantized(QMatMul),
}

impl Dense {
    fn new(weight: Tensor, precision: Precision) -> candle_core::Result<Self> {
        match precision {
            Precision::F32 => Ok(Dense::F32(weight.t()?.contiguous()?)),
            Precision::Int8 => Ok(Dense::Quantized(QMatMul::from_qtensor(QTensor::quantize(
                &weight,
                GgmlDType::Q8_0,
            )?)?)),
        }
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Dense::F32(w) => x.matmul(w),
            Dense::Quantized(q) => q.forward(x),
        }
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Norm {
    fn load(vb: VarBuilder<'_>, size: usize) -> candle_core::Result<Self> {
        Ok(Norm {
            gamma: vb.get(size, "weight")?.to_vec1()?,
            beta: vb.get(size, "bias")?.to_vec1()?,
        })
    }
}

struct Layer {
    qkv: Dense,
    qkv_bias: Vec<f32>,
    attention_out: Dense,
    attention_out_bias: Vec<f32>,
    attention_norm: Norm,
    intermediate: Dense,
    intermediate_bias: Vec<f32>,
    output: Dense,
    output_bias: Vec<f32>,
    output_norm: Norm,
}

/// The packed CPU encoder. See the module documentation.
pub(crate) struct Encoder {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    vocab: usize,
    max_positions: usize,
    eps: f32,
    activation: Activation,
}

/// Rows per parallel task of the element-wise kernels: enough work to outweigh rayon's overhead.
const ROWS_PER_TASK: usize = 16;

impl Encoder {
    /// Loads the weights of a BERT model (at the root of `vb` or under `config.model_type`, as
    /// candle's `BertModel::load` accepts).
    pub(crate) fn load(
        vb: VarBuilder<'_>,
        config: &Config,
        precision: Precision,
    ) -> candle_core::Result<Self> {
        let vb = match &config.model_type {
            Some(prefix) if !vb.contains_tensor("embeddings.word_embeddings.weight") => {
                vb.pp(prefix)
            }
            _ => vb,
        };
        let h = config.hidden_size;
        if config.num_attention_heads == 0 || h % config.num_attention_heads != 0 {
            candle_core::bail!(
                "hidden_size {h} is not a multiple of num_attention_heads {}",
                config.num_attention_heads
            );
        }
        let e = vb.pp("embeddings");
        let flat = |t: Tensor| t.flatten_all()?.to_vec1::<f32>();
        let word = flat(e.get((config.vocab_size, h), "word_embeddings.weight")?)?;
        let position = flat(e.get(
            (config.max_position_embeddings, h),
            "position_embeddings.weight",
        )?)?;
        let token_type = flat(e.get((config.type_vocab_size, h), "token_type_embeddings.weight")?)?;
        if token_type.is_empty() {
            candle_core::bail!("type_vocab_size is 0");
        }
        let embedding_norm = Norm::load(e.pp("LayerNorm"), h)?;

        let i = config.intermediate_size;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for index in 0..config.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{index}"));
            let a = l.pp("attention");
            let s = a.pp("self");
            let (wq, wk, wv) = (
                s.get((h, h), "query.weight")?,
                s.get((h, h), "key.weight")?,
                s.get((h, h), "value.weight")?,
            );
            let mut qkv_bias = s.get(h, "query.bias")?.to_vec1::<f32>()?;
            qkv_bias.extend(s.get(h, "key.bias")?.to_vec1::<f32>()?);
            qkv_bias.extend(s.get(h, "value.bias")?.to_vec1::<f32>()?);
            layers.push(Layer {
                qkv: Dense::new(Tensor::cat(&[wq, wk, wv], 0)?, precision)?,
                qkv_bias,
                attention_out: Dense::new(a.get((h, h), "output.dense.weight")?, precision)?,
                attention_out_bias: a.get(h, "output.dense.bias")?.to_vec1()?,
                attention_norm: Norm::load(a.pp("output.LayerNorm"), h)?,
                intermediate: Dense::new(l.get((i, h), "intermediate.dense.weight")?, precision)?,
                intermediate_bias: l.get(i, "intermediate.dense.bias")?.to_vec1()?,
                output: Dense::new(l.get((h, i), "output.dense.weight")?, precision)?,
                output_bias: l.get(h, "output.dense.bias")?.to_vec1()?,
                output_norm: Norm::load(l.pp("output.LayerNorm"), h)?,
            });
        }
        Ok(Encoder {
            word,
            position,
            token_type,
            embedding_norm,
            layers,
            hidden: h,
            heads: config.num_attention_heads,
            vocab: config.vocab_size,
            max_positions: config.max_position_embeddings,
            eps: config.layer_norm_eps as f32,
            activation: match config.hidden_act {
                HiddenAct::Gelu => Activation::Gelu,
                HiddenAct::GeluApproximate => Activation::GeluTanh,
                HiddenAct::Relu => Activation::Relu,
            },
        })
    }

    /// The last hidden state of every token of `texts` (each a sequence of token ids), packed:
    /// `Σ len × hidden` values, text after text.
    pub(crate) fn forward(&self, texts: &[&[u32]]) -> candle_core::Result<Vec<f32>> {
        let h = self.hidden;
        let lens: Vec<usize> = texts.iter().map(|t| t.len()).collect();
        let tokens: usize = lens.iter().sum();
        if tokens == 0 {
            return Ok(Vec::new());
        }
        if let Some(&long) = lens.iter().find(|&&l| l > self.max_positions) {
            candle_core::bail!(
                "a text of {long} tokens exceeds max_position_embeddings {}",
                self.max_positions
            );
        }
        let mut hidden = self.embed(texts)?;
        for layer in &self.layers {
            hidden = self.layer(layer, hidden, &lens, tokens)?;
        }
        debug_assert_eq!(hidden.len(), tokens * h);
        Ok(hidden)
    }

    fn embed(&self, texts: &[&[u32]]) -> candle_core::Result<Vec<f32>> {
        let h = self.hidden;
        let mut rows: Vec<(u32, usize)> = Vec::new();
        for ids in texts {
            for (pos, &id) in ids.iter().enumerate() {
                if id as usize >= self.vocab {
                    candle_core::bail!("token id {id} is outside the vocabulary ({})", self.vocab);
                }
                rows.push((id, pos));
            }
        }
        let mut out = vec![0f32; rows.len() * h];
        let token_type = &self.token_type[..h];
        out.par_chunks_mut(h * ROWS_PER_TASK)
            .zip(rows.par_chunks(ROWS_PER_TASK))
            .for_each(|(out, rows)| {
                let mut sum = vec![0f32; h];
                for (o, &(id, pos)) in out.chunks_exact_mut(h).zip(rows) {
                    let word = &self.word[id as usize * h..(id as usize + 1) * h];
                    let position = &self.position[pos * h..(pos + 1) * h];
                    for (((s, w), p), t) in sum.iter_mut().zip(word).zip(position).zip(token_type) {
                        *s = w + t + p;
                    }
                    kernels::bias_residual_layer_norm(
                        &sum,
                        None,
                        None,
                        &self.embedding_norm.gamma,
                        &self.embedding_norm.beta,
                        self.eps,
                        o,
                    );
                }
            });
        Ok(out)
    }

    fn layer(
        &self,
        layer: &Layer,
        input: Vec<f32>,
        lens: &[usize],
        tokens: usize,
    ) -> candle_core::Result<Vec<f32>> {
        let h = self.hidden;
        let input = Tensor::from_vec(input, (tokens, h), &Device::Cpu)?;

        // Self-attention, text by text over its own rows.
        let qkv = layer.qkv.forward(&input)?;
        let mut context = vec![0f32; tokens * h];
        with_slice(&qkv, |qkv| {
            let mut parts: Vec<(&[f32], &mut [f32])> = Vec::with_capacity(lens.len());
            let (mut qkv, mut ctx) = (qkv, context.as_mut_slice());
            for &len in lens {
                let (q_head, q_rest) = qkv.split_at(len * 3 * h);
                let (c_head, c_rest) = ctx.split_at_mut(len * h);
                parts.push((q_head, c_head));
                qkv = q_rest;
                ctx = c_rest;
            }
            parts
                .into_par_iter()
                .for_each_init(Vec::new, |scratch, (q, c)| {
                    kernels::attention(q, &layer.qkv_bias, self.heads, c, scratch)
                });
        })?;
        drop(qkv);

        // Output projection, + bias + residual, layer norm.
        let projected =
            layer
                .attention_out
                .forward(&Tensor::from_vec(context, (tokens, h), &Device::Cpu)?)?;
        let attended = self.add_norm(
            &projected,
            &layer.attention_out_bias,
            &input,
            &layer.attention_norm,
        )?;
        drop((projected, input));
        let attended = Tensor::from_vec(attended, (tokens, h), &Device::Cpu)?;

        // Feed-forward: bias + activation fused, then projection, + bias + residual, norm.
        let inter = layer.intermediate.forward(&attended)?;
        let width = layer.intermediate_bias.len();
        let mut activated = vec![0f32; tokens * width];
        with_slice(&inter, |inter| {
            activated
                .par_chunks_mut(width * ROWS_PER_TASK)
                .zip(inter.par_chunks(width * ROWS_PER_TASK))
                .for_each(|(o, x)| {
                    kernels::bias_activation(x, &layer.intermediate_bias, self.activation, o)
                });
        })?;
        drop(inter);
        let out =
            layer
                .output
                .forward(&Tensor::from_vec(activated, (tokens, width), &Device::Cpu)?)?;
        self.add_norm(&out, &layer.output_bias, &attended, &layer.output_norm)
    }

    /// `LayerNorm(x + bias + residual)`, rows in parallel.
    fn add_norm(
        &self,
        x: &Tensor,
        bias: &[f32],
        residual: &Tensor,
        norm: &Norm,
    ) -> candle_core::Result<Vec<f32>> {
        let h = self.hidden;
        with_slice(x, |x| {
            with_slice(residual, |residual| {
                let mut out = vec![0f32; x.len()];
                out.par_chunks_mut(h * ROWS_PER_TASK)
                    .zip(x.par_chunks(h * ROWS_PER_TASK))
                    .zip(residual.par_chunks(h * ROWS_PER_TASK))
                    .for_each(|((o, x), r)| {
                        kernels::bias_residual_layer_norm(
                            x,
                            Some(bias),
                            Some(r),
                            &norm.gamma,
                            &norm.beta,
                            self.eps,
                            o,
                        )
                    });
                out
            })
        })?
    }
}

/// Runs `f` on the `f32` values of a contiguous CPU tensor, without copying them.
fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(values)), Some((start, end))) => Ok(f(&values[start..end])),
        _ => candle_core::bail!("expected a contiguous f32 CPU tensor"),
    }
}
