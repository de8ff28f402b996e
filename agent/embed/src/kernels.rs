//! Two fused CPU kernels that candle would otherwise run as many small operations:
//!
//! - [`Attention`]: multi-head self-attention straight from the packed query/key/value rows to
//!   the context rows. candle would copy q, k and v into head-major layout, run one tiny matrix
//!   product per (sentence, head) twice, add the mask, soft-max, and copy back; for chat-sized
//!   inputs the overhead of those calls outweighs the arithmetic.
//! - [`BiasGelu`]: bias add and GELU in one pass, with an erf that vectorises (libm's erf was a
//!   sixth of the whole forward pass in a profile).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, bail};
use rayon::prelude::*;

type Result<T> = candle_core::Result<T>;

pub(crate) fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("expected f32 data")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("expected contiguous data"),
    }
}

/// Self-attention over `[batch * tokens, 3 * hidden]` rows (query pre-scaled, key, value side
/// by side), giving `[batch * tokens, hidden]`. Row `b` has `lengths[b]` real tokens, padding
/// after them: padding is never attended to, and its own output rows are zero.
pub struct Attention<'a> {
    pub lengths: &'a [usize],
    pub tokens: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl CustomOp1 for Attention<'_> {
    fn name(&self) -> &'static str {
        "valor-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = contiguous(storage, layout)?;
        let (tokens, heads, head_dim) = (self.tokens, self.heads, self.head_dim);
        let hidden = heads * head_dim;
        let batch = self.lengths.len();
        if qkv.len() != batch * tokens * 3 * hidden {
            bail!(
                "attention input has {} values, expected {}",
                qkv.len(),
                batch * tokens * 3 * hidden
            );
        }
        let mut out = vec![0f32; batch * tokens * hidden];
        let simd = Simd::detect();
        out.par_chunks_mut(tokens * hidden)
            .zip(self.lengths.par_iter())
            .enumerate()
            .for_each(|(b, (context, &length))| {
                let rows = &qkv[b * tokens * 3 * hidden..(b + 1) * tokens * 3 * hidden];
                simd.attend(rows, context, length, heads, head_dim);
            });
        Ok((CpuStorage::F32(out), Shape::from((batch * tokens, hidden))))
    }
}

/// One sentence's attention: `rows` are its `[tokens, 3 * hidden]` packed rows, `context` its
/// `[tokens, hidden]` output (zeroed), `length` its real tokens.
///
/// Per head the keys are copied transposed (`[head_dim, keys]`, keys padded to 16), so a
/// query's scores are summed a dimension at a time over 16 keys held in one register, with no
/// horizontal sum per score; the weighted values are summed likewise, 16 dimensions at a time.
#[inline(always)]
fn attend(rows: &[f32], context: &mut [f32], length: usize, heads: usize, head_dim: usize) {
    const LANES: usize = 16;
    let hidden = heads * head_dim;
    let stride = length.next_multiple_of(LANES);
    let mut scores = vec![0f32; stride];
    let mut keys = vec![0f32; head_dim * stride];
    for h in 0..heads {
        let offset = h * head_dim;
        for j in 0..length {
            let key = &rows[j * 3 * hidden + hidden + offset..][..head_dim];
            for (d, &k) in key.iter().enumerate() {
                keys[d * stride + j] = k;
            }
        }
        for t in 0..length {
            let query = &rows[t * 3 * hidden + offset..][..head_dim];
            for first in (0..stride).step_by(LANES) {
                let mut acc = [0f32; LANES];
                for (d, &q) in query.iter().enumerate() {
                    let column = &keys[d * stride + first..][..LANES];
                    for lane in 0..LANES {
                        acc[lane] += q * column[lane];
                    }
                }
                scores[first..first + LANES].copy_from_slice(&acc);
            }
            let real = &mut scores[..length];
            let max = maximum(real);
            // Two passes so each vectorises: exp alone, then a sum in independent lanes.
            for score in real.iter_mut() {
                *score = exp(*score - max);
            }
            let inverse = 1.0 / sum(real);
            let target = &mut context[t * hidden + offset..][..head_dim];
            let mut first = 0;
            while first + LANES <= head_dim {
                let mut acc = [0f32; LANES];
                for (j, &weight) in real.iter().enumerate() {
                    let value = &rows[j * 3 * hidden + 2 * hidden + offset + first..][..LANES];
                    for lane in 0..LANES {
                        acc[lane] += weight * value[lane];
                    }
                }
                for (c, a) in target[first..first + LANES].iter_mut().zip(acc) {
                    *c = a * inverse;
                }
                first += LANES;
            }
            // Head sizes that are not a multiple of 16 (small test models).
            for (j, &weight) in real.iter().enumerate() {
                let value = &rows[j * 3 * hidden + 2 * hidden + offset..][..head_dim];
                for d in first..head_dim {
                    target[d] += weight * inverse * value[d];
                }
            }
        }
    }
}

/// The largest value, in independent lanes so it vectorises.
#[inline(always)]
fn maximum(values: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut partial = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for chunk in chunks {
        for lane in 0..LANES {
            partial[lane] = partial[lane].max(chunk[lane]);
        }
    }
    partial.iter().fold(tail, |m, &v| m.max(v))
}

/// `out = gelu(x + bias)`, row by row.
#[inline(always)]
fn bias_gelu(out: &mut [f32], x: &[f32], bias: &[f32]) {
    for (out, x) in out.chunks_mut(bias.len()).zip(x.chunks(bias.len())) {
        for ((o, &v), &b) in out.iter_mut().zip(x).zip(bias) {
            *o = gelu(v + b);
        }
    }
}

/// The widest vector instructions this CPU has, found once per kernel call. The kernels are
/// plain loops that the compiler vectorises; each is compiled again inside a function with the
/// wider instructions enabled, and run through it when the CPU has them. (pulp's closure
/// dispatch left them compiled for baseline SSE2: a fifth of the forward pass ran 4 lanes
/// wide.)
#[derive(Clone, Copy)]
enum Simd {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Simd {
    fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            // Each kernel only when every feature it is compiled for is there (the AVX-512
            // one uses AVX2 and FMA too; a CPU or VM may report AVX-512F without them).
            let avx2_fma = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            if avx2_fma && std::arch::is_x86_feature_detected!("avx512f") {
                return Simd::Avx512;
            }
            if avx2_fma {
                return Simd::Avx2;
            }
        }
        Simd::Baseline
    }

    #[allow(unsafe_code)]
    fn attend(
        self,
        rows: &[f32],
        context: &mut [f32],
        length: usize,
        heads: usize,
        head_dim: usize,
    ) {
        match self {
            Simd::Baseline => attend(rows, context, length, heads, head_dim),
            // SAFETY: `detect` saw the features these functions are compiled for.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => unsafe { x86::attend_avx2(rows, context, length, heads, head_dim) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, `detect` saw AVX-512F, AVX2 and FMA.
            Simd::Avx512 => unsafe { x86::attend_avx512(rows, context, length, heads, head_dim) },
        }
    }

    #[allow(unsafe_code)]
    fn bias_gelu(self, out: &mut [f32], x: &[f32], bias: &[f32]) {
        match self {
            Simd::Baseline => bias_gelu(out, x, bias),
            // SAFETY: `detect` saw the features these functions are compiled for.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => unsafe { x86::bias_gelu_avx2(out, x, bias) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, `detect` saw AVX-512F, AVX2 and FMA.
            Simd::Avx512 => unsafe { x86::bias_gelu_avx512(out, x, bias) },
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    /// The two kernels compiled for one instruction set.
    macro_rules! compiled_for {
        ($features:literal, $attend:ident, $bias_gelu:ident) => {
            #[target_feature(enable = $features)]
            pub(super) fn $attend(
                rows: &[f32],
                context: &mut [f32],
                length: usize,
                heads: usize,
                head_dim: usize,
            ) {
                super::attend(rows, context, length, heads, head_dim)
            }

            #[target_feature(enable = $features)]
            pub(super) fn $bias_gelu(out: &mut [f32], x: &[f32], bias: &[f32]) {
                super::bias_gelu(out, x, bias)
            }
        };
    }

    compiled_for!("avx2,fma", attend_avx2, bias_gelu_avx2);
    compiled_for!("avx512f,avx2,fma", attend_avx512, bias_gelu_avx512);
}

/// A sum with independent partial sums, so it vectorises.
#[inline(always)]
fn sum(values: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut partial = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for lane in 0..LANES {
            partial[lane] += chunk[lane];
        }
    }
    partial.iter().sum::<f32>() + tail
}

/// `gelu(x + bias)` over `[rows, bias.len()]`.
pub struct BiasGelu<'a> {
    pub bias: &'a [f32],
}

impl CustomOp1 for BiasGelu<'_> {
    fn name(&self) -> &'static str {
        "valor-bias-gelu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(storage, layout)?;
        let width = self.bias.len();
        if width == 0 || !x.len().is_multiple_of(width) {
            bail!("bias of {width} does not divide {} values", x.len());
        }
        let mut out = vec![0f32; x.len()];
        let simd = Simd::detect();
        out.par_chunks_mut(width * 64)
            .zip(x.par_chunks(width * 64))
            .for_each(|(out, x)| simd.bias_gelu(out, x, self.bias));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// GELU with the exact (erf) form BERT was trained with.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7), branch-free so the
/// compiler can vectorise it.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = x.abs();
    let t = 1.0 / (1.0 + P * x);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    sign * (1.0 - poly * exp(-x * x))
}

/// e^x for x ≤ 0 (and modest positive x), accurate to a few ulp, branch-free and free of
/// library calls (`round` is one on baseline x86-64), so loops over it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Adding and removing 1.5 * 2^23 rounds to the nearest integer in f32 arithmetic.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    // x - n ln 2 in two parts, to keep the remainder exact.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_and_exp_match_the_library() {
        for i in -400..=400 {
            let x = i as f32 / 50.0;
            let exact = series_erf(f64::from(x));
            assert!((f64::from(erf(x)) - exact).abs() < 5e-7, "erf({x})");
            let e = f64::from(x).exp();
            assert!(((f64::from(exp(x)) - e) / e).abs() < 1e-6, "exp({x})");
        }
        assert_eq!(exp(-200.0), exp(-87.0));
    }

    /// erf in f64 by its Taylor series (exact enough for |x| ≤ 3); beyond, erf is within
    /// 2.3e-5 of ±1 and the bound checked is loosened to match.
    fn series_erf(x: f64) -> f64 {
        if x.abs() > 3.0 {
            return f64::from(erf(x as f32)).clamp(x.signum() - 2.3e-5, x.signum() + 2.3e-5);
        }
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 || n < 5.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
