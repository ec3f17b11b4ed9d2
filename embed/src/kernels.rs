//! The transformer's non-matmul work, fused and vectorised: bias + GELU, bias + residual + layer
//! norm, and attention's small products with its softmax.
//!
//! Each kernel is plain Rust over fixed-width lanes in a [`pulp::WithSimd`] body, run through
//! [`pulp::Arch::dispatch`] so that the compiler vectorises it for the widest instruction set the
//! CPU has (AVX2 where present, detected at run time) while the crate stays free of `unsafe`. The
//! body must be a `#[inline(always)]` `with_simd`, not a closure: a closure's call shim is not
//! inlined into the dispatching function, so it kept SSE2 (measured with `perf`). Products are
//! written `a * b + c`, not `mul_add`: outside an FMA-enabled function `mul_add` is a call to
//! libm's `fmaf`, which made the first version of these kernels three times slower than candle's.
//! The transcendental functions are polynomial approximations accurate to a few units in the last
//! place of an `f32`, written so that they vectorise (`std`'s `exp`/`erf` are scalar library
//! calls).

use std::sync::LazyLock;

/// The instruction set picked at first use.
static ARCH: LazyLock<pulp::Arch> = LazyLock::new(pulp::Arch::new);

/// Width of the accumulators: eight lanes fill an AVX register; on narrower hardware the compiler
/// splits them.
const LANES: usize = 8;

/// `exp(x)` for `f32`, Cephes' polynomial (relative error ≈ 1e-7), branch-free so it vectorises.
/// Inputs below −87.3 give ≈ 1e-38 rather than 0, which is harmless for softmax and GELU.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 × 2^23: adding it rounds to the nearest integer, which then sits in the low mantissa
    // bits (no float→int conversion, which SSE2 lacks in packed form with rounding).
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let shifted = x * LOG2E + MAGIC;
    let n = shifted - MAGIC;
    let r = x - n * LN2_HI;
    let r = r - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // The integer in `shifted`'s low bits, moved into an exponent field: 2^n.
    let bits = shifted.to_bits().wrapping_sub(MAGIC.to_bits());
    let scale = f32::from_bits(bits.wrapping_add(127) << 23);
    y * scale
}

/// `erf(x)` as a rational function of `x` on [−4, 4] (±1 beyond, where `f32` cannot tell erf
/// from 1): the approximation Eigen and XLA use for `f32`, absolute error 6.5e-8 in exact
/// arithmetic. Unlike `1 − poly·exp(−x²)` forms (Abramowitz & Stegun 7.1.26) it does not cancel
/// near 0: evaluated in `f32` it is within 4e-7 of erf across the range (a few units in the last
/// place near ±1; the test measures it).
#[inline(always)]
// The coefficients are quoted as published; `f32` rounds them.
#[allow(clippy::excessive_precision)]
pub(crate) fn erf(x: f32) -> f32 {
    const ALPHA: [f32; 7] = [
        -2.726_142_258_013_06e-10,
        2.770_681_424_959_02e-8,
        -2.101_024_020_825_08e-6,
        -5.692_506_394_623_46e-5,
        -7.349_906_303_268_55e-4,
        -2.954_599_808_540_25e-3,
        -1.609_603_332_624_15e-2,
    ];
    const BETA: [f32; 5] = [
        -1.456_607_184_649_96e-5,
        -2.133_740_552_789_05e-4,
        -1.682_826_974_382_03e-3,
        -7.373_329_167_204_68e-3,
        -1.426_473_905_141_89e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = ALPHA[0];
    for a in &ALPHA[1..] {
        p = p * x2 + a;
    }
    let mut q = BETA[0];
    for b in &BETA[1..] {
        q = q * x2 + b;
    }
    x * p / q
}

/// The activation of the feed-forward layer, as named in `config.json`'s `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `x·Φ(x)` with the exact normal CDF (BERT's `gelu`).
    Gelu,
    /// The tanh approximation of GELU (`gelu_new`/`gelu_pytorch_tanh`).
    GeluTanh,
    /// `max(x, 0)`.
    Relu,
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2/π)
    let y = C * x * (0.044_715 * x * x + 1.0);
    // tanh(y) = 1 − 2 / (exp(2y) + 1), saturating correctly at both ends.
    let tanh = 1.0 - 2.0 / (exp(2.0 * y) + 1.0);
    0.5 * x * (1.0 + tanh)
}

/// `out = act(x + bias)` row by row (`bias.len()` columns).
pub(crate) fn bias_activation(x: &[f32], bias: &[f32], act: Activation, out: &mut [f32]) {
    struct Kernel<'a>(&'a [f32], &'a [f32], Activation, &'a mut [f32]);
    impl pulp::WithSimd for Kernel<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) {
            let Kernel(x, bias, act, out) = self;
            let rows = out
                .chunks_exact_mut(bias.len())
                .zip(x.chunks_exact(bias.len()));
            for (o, x) in rows {
                let each = o.iter_mut().zip(x).zip(bias);
                match act {
                    Activation::Gelu => each.for_each(|((o, x), b)| *o = gelu(x + b)),
                    Activation::GeluTanh => each.for_each(|((o, x), b)| *o = gelu_tanh(x + b)),
                    Activation::Relu => each.for_each(|((o, x), b)| *o = (x + b).max(0.0)),
                }
            }
        }
    }
    ARCH.dispatch(Kernel(x, bias, act, out))
}

/// A lane-parallel sum (a fixed association order, so results do not depend on the CPU).
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    let mut total = acc.iter().sum::<f32>();
    for v in chunks.remainder() {
        total += v;
    }
    total
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut total = acc.iter().sum::<f32>();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        total += x * y;
    }
    total
}

/// `out[r] = LayerNorm(x[r] + bias + residual[r]) · gamma + beta` for every row (`bias.len()`
/// columns): BERT's "add & norm" after the attention output and the feed-forward output.
pub(crate) fn bias_residual_layer_norm(
    x: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    struct Kernel<'a> {
        x: &'a [f32],
        bias: Option<&'a [f32]>,
        residual: Option<&'a [f32]>,
        gamma: &'a [f32],
        beta: &'a [f32],
        eps: f32,
        out: &'a mut [f32],
    }
    impl pulp::WithSimd for Kernel<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) {
            let h = self.gamma.len();
            for (r, o) in self.out.chunks_exact_mut(h).enumerate() {
                o.copy_from_slice(&self.x[r * h..(r + 1) * h]);
                if let Some(bias) = self.bias {
                    o.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                }
                if let Some(res) = self.residual {
                    o.iter_mut()
                        .zip(&res[r * h..(r + 1) * h])
                        .for_each(|(v, b)| *v += b);
                }
                layer_norm_row(o, self.gamma, self.beta, self.eps);
            }
        }
    }
    ARCH.dispatch(Kernel {
        x,
        bias,
        residual,
        gamma,
        beta,
        eps,
        out,
    })
}

#[inline(always)]
fn layer_norm_row(o: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = o.len() as f32;
    let mean = sum(o) / n;
    o.iter_mut().for_each(|v| *v -= mean);
    let var = dot(o, o) / n;
    let inv = 1.0 / (var + eps).sqrt();
    o.iter_mut()
        .zip(gamma.iter().zip(beta))
        .for_each(|(v, (g, b))| *v = *v * inv * g + b);
}

/// Self-attention of one text: `qkv` holds its `len` rows of `[q | k | v]` (each `heads × dim`
/// wide, before their biases), `out` receives its `len × heads·dim` context rows.
/// `scratch` is reused between calls to avoid allocating.
pub(crate) fn attention(
    qkv: &[f32],
    bias: &[f32],
    heads: usize,
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    struct Kernel<'a> {
        qkv: &'a [f32],
        bias: &'a [f32],
        heads: usize,
        out: &'a mut [f32],
        scratch: &'a mut Vec<f32>,
    }
    impl pulp::WithSimd for Kernel<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) {
            let Kernel {
                qkv,
                bias,
                heads,
                out,
                scratch,
            } = self;
            let width = bias.len() / 3;
            let dim = width / heads;
            let len = out.len() / width;
            let scale = 1.0 / (dim as f32).sqrt();
            // Per head, contiguous: q (scaled), k, v, and one row of scores.
            scratch.clear();
            scratch.resize(3 * len * dim + len, 0.0);
            let (q, rest) = scratch.split_at_mut(len * dim);
            let (k, rest) = rest.split_at_mut(len * dim);
            let (v, scores) = rest.split_at_mut(len * dim);
            for head in 0..heads {
                let col = head * dim;
                for t in 0..len {
                    let row = &qkv[t * 3 * width..(t + 1) * 3 * width];
                    for d in 0..dim {
                        q[t * dim + d] = (row[col + d] + bias[col + d]) * scale;
                        k[t * dim + d] = row[width + col + d] + bias[width + col + d];
                        v[t * dim + d] = row[2 * width + col + d] + bias[2 * width + col + d];
                    }
                }
                for i in 0..len {
                    let qi = &q[i * dim..(i + 1) * dim];
                    let mut max = f32::NEG_INFINITY;
                    for (j, s) in scores.iter_mut().enumerate() {
                        *s = dot(qi, &k[j * dim..(j + 1) * dim]);
                        max = max.max(*s);
                    }
                    scores.iter_mut().for_each(|s| *s = exp(*s - max));
                    let inv = 1.0 / sum(scores);
                    let o = &mut out[i * width + col..i * width + col + dim];
                    o.fill(0.0);
                    for (j, s) in scores.iter().enumerate() {
                        let p = s * inv;
                        o.iter_mut()
                            .zip(&v[j * dim..(j + 1) * dim])
                            .for_each(|(o, v)| *o += p * v);
                    }
                }
            }
        }
    }
    ARCH.dispatch(Kernel {
        qkv,
        bias,
        heads,
        out,
        scratch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_to_a_few_ulps() {
        let mut worst = 0f64;
        let mut x = -80.0f32;
        while x < 80.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 4e-7, "largest relative error {worst}");
        assert!(exp(-1000.0) < 1e-37);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_matches_the_series_within_4e_7() {
        // erf by its Taylor series in f64 (converges well for |x| ≤ 3).
        fn erf64(x: f64) -> f64 {
            let mut term = x;
            let mut total = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                total += term / (2 * n + 1) as f64;
            }
            total * 2.0 / std::f64::consts::PI.sqrt()
        }
        let mut worst = 0f64;
        let mut x = -3.0f32;
        while x <= 3.0 {
            let d = (erf(x) as f64 - erf64(x as f64)).abs();
            assert!(d < 4e-7, "erf({x}) off by {d}");
            worst = worst.max(d);
            x += 0.001;
        }
        eprintln!("erf: largest absolute error {worst:.2e}");
        assert!((erf(6.0) - 1.0).abs() < 1e-7 && (erf(-6.0) + 1.0).abs() < 1e-7);
    }

    #[test]
    fn layer_norm_centres_and_scales() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        let res = [1.0; 10];
        let gamma = [2.0; 10];
        let beta = [0.5; 10];
        let mut out = [0.0; 10];
        bias_residual_layer_norm(&x, None, Some(&res), &gamma, &beta, 1e-12, &mut out);
        let mean = out.iter().sum::<f32>() / 10.0;
        assert!((mean - 0.5).abs() < 1e-5);
        let var = out.iter().map(|v| (v - 0.5) * (v - 0.5)).sum::<f32>() / 10.0;
        assert!((var - 4.0).abs() < 1e-4, "{var}");
    }

    #[test]
    fn attention_of_one_token_returns_its_value() {
        // One token, one head of width 2: softmax over a single score is 1, so out = v + bias.
        let qkv = [0.3, -0.1, 0.7, 0.2, 1.5, -2.0];
        let bias = [0.0, 0.0, 0.0, 0.0, 0.5, 0.5];
        let mut out = [0.0; 2];
        attention(&qkv, &bias, 1, &mut out, &mut Vec::new());
        assert!(
            (out[0] - 2.0).abs() < 1e-6 && (out[1] + 1.5).abs() < 1e-6,
            "{out:?}"
        );
    }

    #[test]
    fn attention_weighs_values_by_softmax_of_scores() {
        // Two tokens, one head of width 1: q = k = [1, 2] so scores (scaled by 1) are
        // q_i·k_j; v = [10, 20].
        let qkv = [1.0, 1.0, 10.0, 2.0, 2.0, 20.0];
        let bias = [0.0; 3];
        let mut out = [0.0; 2];
        attention(&qkv, &bias, 1, &mut out, &mut Vec::new());
        for (i, qi) in [1.0f64, 2.0].iter().enumerate() {
            let (a, b) = ((qi * 1.0).exp(), (qi * 2.0).exp());
            let want = (10.0 * a + 20.0 * b) / (a + b);
            assert!((out[i] as f64 - want).abs() < 1e-4, "{out:?}");
        }
    }
}
