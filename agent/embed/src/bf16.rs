//! Matrix products in bfloat16 on CPUs with AVX-512 BF16 (`vdpbf16ps`): two multiply-adds per
//! 32-bit lane per instruction, twice the fp32 rate, and weights half the size to stream.
//!
//! Weights are packed once at load, in panels of 32 output columns, each panel holding pairs of
//! consecutive inputs side by side (the layout `vdpbf16ps` multiplies). Activations are rounded
//! to bfloat16 per product; sums stay in fp32, and so does everything outside the products
//! (residuals, layer norms, attention, GELU). Debian's OpenBLAS is built without its bf16 GEMM,
//! hence this kernel.

use rayon::prelude::*;

/// Output columns per panel: two AVX-512 registers of fp32 sums.
const PANEL: usize = 32;
/// Rows per micro-kernel call: 8 rows x 2 registers = 16 accumulators.
const ROWS: usize = 8;
/// Rows of activations per cache block (8 x 192 KB of bf16 at 384 inputs stays in L2).
const BLOCK_ROWS: usize = 256;

/// True when this CPU runs the bf16 kernel.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// fp32 to bfloat16, rounding to nearest even (NaN stays NaN).
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounding = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// A weight `[inputs, outputs]` packed for the kernel, with its bias.
pub struct PackedWeight {
    inputs: usize,
    outputs: usize,
    /// Input pairs (inputs rounded up to even).
    pairs: usize,
    /// Per panel: per input pair, 32 columns x 2 bf16 values.
    data: Vec<u16>,
    /// Zero-padded to whole panels.
    bias: Vec<f32>,
    /// GELU applied to each output as it is stored (the intermediate projection), saving a
    /// pass over the largest activations.
    gelu: bool,
}

impl PackedWeight {
    /// Packs `weight`, row-major `[inputs, outputs]`.
    pub fn pack(weight: &[f32], inputs: usize, outputs: usize, bias: Option<&[f32]>) -> Self {
        let pairs = inputs.div_ceil(2);
        let panels = outputs.div_ceil(PANEL);
        let mut data = vec![0u16; panels * pairs * PANEL * 2];
        for panel in 0..panels {
            for pair in 0..pairs {
                let base = (panel * pairs + pair) * PANEL * 2;
                for col in 0..PANEL {
                    let n = panel * PANEL + col;
                    if n >= outputs {
                        break;
                    }
                    for half in 0..2 {
                        let k = pair * 2 + half;
                        if k < inputs {
                            data[base + col * 2 + half] = to_bf16(weight[k * outputs + n]);
                        }
                    }
                }
            }
        }
        let mut padded_bias = vec![0f32; panels * PANEL];
        if let Some(bias) = bias {
            padded_bias[..outputs].copy_from_slice(&bias[..outputs]);
        }
        PackedWeight {
            inputs,
            outputs,
            pairs,
            data,
            bias: padded_bias,
            gelu: false,
        }
    }

    /// The same product with GELU applied to its outputs.
    pub fn with_gelu(mut self) -> Self {
        self.gelu = true;
        self
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// `x · W + bias` for `x` row-major `[rows, inputs]`; `None` if this CPU lacks the
    /// instructions or the shapes do not match.
    pub fn apply(&self, x: &[f32], rows: usize) -> Option<Vec<f32>> {
        if !supported() || x.len() != rows * self.inputs {
            return None;
        }
        let mut out = vec![0f32; rows * self.outputs];
        if rows == 0 || self.outputs == 0 {
            return Some(out);
        }
        let activations = self.round_rows(x, rows);
        let panels = self.outputs.div_ceil(PANEL);
        let padded_rows = rows.next_multiple_of(ROWS);
        let threads = rayon::current_num_threads().max(1);
        // At least one block per thread, at most BLOCK_ROWS rows per block.
        let block = BLOCK_ROWS.min(padded_rows.div_ceil(threads).next_multiple_of(ROWS));
        // Many rows: row blocks across threads (each reads every panel once per block). Few
        // rows (a query, a small batch): the panels split across threads instead, so each core
        // streams half the weights once.
        if rows >= BLOCK_ROWS / 2 * threads {
            out.par_chunks_mut(block * self.outputs)
                .zip(activations.par_chunks(block * self.pairs * 2))
                .for_each(|(out, a)| {
                    let block_rows = out.len() / self.outputs;
                    self.run(a, block_rows, 0..panels, out);
                });
        } else {
            let half = panels / 2;
            if half == 0 {
                self.run(&activations, rows, 0..panels, &mut out);
            } else {
                let (left, right) = rayon::join(
                    || {
                        let mut part = vec![0f32; rows * self.outputs];
                        self.run(&activations, rows, 0..half, &mut part);
                        part
                    },
                    || {
                        let mut part = vec![0f32; rows * self.outputs];
                        self.run(&activations, rows, half..panels, &mut part);
                        part
                    },
                );
                let split = half * PANEL;
                for ((o, l), r) in out
                    .chunks_mut(self.outputs)
                    .zip(left.chunks(self.outputs))
                    .zip(right.chunks(self.outputs))
                {
                    o[..split].copy_from_slice(&l[..split]);
                    o[split..].copy_from_slice(&r[split..]);
                }
            }
        }
        Some(out)
    }

    /// The activations in bf16, each row's inputs rounded up to pairs, rows up to a multiple
    /// of [`ROWS`] (zeros), so the kernel never reads past its data.
    fn round_rows(&self, x: &[f32], rows: usize) -> Vec<u16> {
        let width = self.pairs * 2;
        let mut out = vec![0u16; rows.next_multiple_of(ROWS) * width];
        out.par_chunks_mut(width * 64)
            .zip(x.par_chunks(self.inputs * 64))
            .for_each(|(out, x)| {
                for (o, row) in out.chunks_mut(width).zip(x.chunks(self.inputs)) {
                    for (o, &v) in o.iter_mut().zip(row) {
                        *o = to_bf16(v);
                    }
                }
            });
        out
    }

    /// Rows `0..rows` of `a` (bf16, padded) times the panels in `panels`, into `out`
    /// (`[rows, outputs]`).
    fn run(&self, a: &[u16], rows: usize, panels: std::ops::Range<usize>, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `apply` checked the CPU has AVX-512F and AVX-512 BF16; `a` holds
            // `rows.next_multiple_of(ROWS)` padded rows of `pairs` pairs and `out` `rows` rows
            // of `outputs`, which the kernel's reads and writes stay within.
            #[allow(unsafe_code)]
            unsafe {
                x86::run(self, a, rows, panels, out)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (a, rows, panels, out);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{PANEL, PackedWeight, ROWS};

    /// See [`PackedWeight::run`]. Caller: the CPU has avx512f and avx512bf16; `a` holds at
    /// least `rows.next_multiple_of(ROWS) * pairs * 2` values; `out` `rows * outputs`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn run(
        w: &PackedWeight,
        a: &[u16],
        rows: usize,
        panels: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        let pairs = w.pairs;
        let width = pairs * 2;
        for panel in panels {
            let b = &w.data[panel * pairs * PANEL * 2..(panel + 1) * pairs * PANEL * 2];
            let bias = &w.bias[panel * PANEL..(panel + 1) * PANEL];
            let first_col = panel * PANEL;
            let cols = PANEL.min(w.outputs - first_col);
            let mut row = 0;
            while row < rows {
                let a_rows = &a[row * width..(row + ROWS) * width];
                let mut sums = [[0f32; PANEL]; ROWS];
                // SAFETY: `a_rows` holds ROWS rows of `pairs` pairs, `b` `pairs` groups of 64
                // values; the caller checked the features.
                unsafe { micro(a_rows, b, pairs, &mut sums) };
                for (r, sum) in sums.iter().enumerate().take(rows - row) {
                    let target = &mut out[(row + r) * w.outputs + first_col..][..cols];
                    if w.gelu {
                        for ((t, s), bias) in target.iter_mut().zip(sum).zip(bias) {
                            *t = crate::kernels::gelu(s + bias);
                        }
                    } else {
                        for ((t, s), bias) in target.iter_mut().zip(sum).zip(bias) {
                            *t = s + bias;
                        }
                    }
                }
                row += ROWS;
            }
        }
    }

    /// 8 rows x 32 columns: for each input pair, two registers of packed weights and, per row,
    /// the row's pair broadcast, multiplied and summed by `vdpbf16ps`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn micro(a: &[u16], b: &[u16], pairs: usize, sums: &mut [[f32; PANEL]; ROWS]) {
        let width = pairs * 2;
        debug_assert!(a.len() >= ROWS * width && b.len() >= pairs * PANEL * 2);
        let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
        let a_ptr = a.as_ptr();
        let b_ptr = b.as_ptr();
        for pair in 0..pairs {
            // SAFETY: pair < pairs, so the 64 values at pair * 64 are inside `b`, and the
            // two values at row * width + pair * 2 inside `a` (checked above).
            unsafe {
                let b0: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(b_ptr.add(pair * PANEL * 2).cast()));
                let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(
                    b_ptr.add(pair * PANEL * 2 + PANEL).cast(),
                ));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let two = a_ptr
                        .add(r * width + pair * 2)
                        .cast::<i32>()
                        .read_unaligned();
                    let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(two));
                    acc[0] = _mm512_dpbf16_ps(acc[0], a, b0);
                    acc[1] = _mm512_dpbf16_ps(acc[1], a, b1);
                }
            }
        }
        for (sum, acc) in sums.iter_mut().zip(acc) {
            // SAFETY: each half of `sum` is 16 floats.
            unsafe {
                _mm512_storeu_ps(sum.as_mut_ptr(), acc[0]);
                _mm512_storeu_ps(sum.as_mut_ptr().add(16), acc[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], w: &[f32], bias: &[f32], rows: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0f32; rows * n];
        for r in 0..rows {
            for c in 0..n {
                let mut s = bias[c];
                for i in 0..k {
                    // The kernel multiplies bf16 values: so does the reference.
                    let a = f32::from_bits(u32::from(to_bf16(x[r * k + i])) << 16);
                    let b = f32::from_bits(u32::from(to_bf16(w[i * n + c])) << 16);
                    s += a * b;
                }
                out[r * n + c] = s;
            }
        }
        out
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3F80);
        assert_eq!(to_bf16(-2.0), 0xC000);
        // 1 + 2^-8 is halfway between two bf16 values: to the even one (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3F80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3F82);
        assert!(f32::from_bits(u32::from(to_bf16(f32::NAN)) << 16).is_nan());
    }

    #[test]
    #[allow(clippy::print_stderr)] // a skipped test says why
    fn the_kernel_matches_a_plain_product_on_odd_shapes() {
        if !supported() {
            eprintln!("no AVX-512 BF16 here: the kernel is not used on this CPU");
            return;
        }
        let mut seed = 7u32;
        let mut random = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for (rows, k, n) in [(1, 384, 1152), (13, 7, 45), (40, 384, 384), (300, 33, 70)] {
            let x: Vec<f32> = (0..rows * k).map(|_| random()).collect();
            let w: Vec<f32> = (0..k * n).map(|_| random()).collect();
            let bias: Vec<f32> = (0..n).map(|_| random()).collect();
            let packed = PackedWeight::pack(&w, k, n, Some(&bias));
            let got = packed.apply(&x, rows).unwrap();
            let want = naive(&x, &w, &bias, rows, k, n);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() < 1e-3 * (1.0 + w.abs()),
                    "{rows}x{k}x{n}: {g} vs {w}"
                );
            }
        }
        assert!(
            PackedWeight::pack(&[0.0; 6], 2, 3, None)
                .apply(&[1.0; 5], 2)
                .is_none()
        );
    }
}
