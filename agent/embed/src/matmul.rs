//! The model's matrix products: `x · W (+ bias)` with `x` as `[rows, in]` and the weight stored
//! as `[in, out]`.
//!
//! With OpenBLAS linked (see `build.rs`) they run through its `cblas_sgemm`: on this project's
//! 2-core AMD machines it reaches about 190 GFLOP/s on the model's shapes, against about 100 for
//! the portable `gemm` kernels candle uses, and 95 against 30 for a single short query. Without
//! it they are candle's own `matmul`.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, bail};

use crate::bf16::PackedWeight;
use crate::kernels::contiguous;

type Result<T> = candle_core::Result<T>;

/// Which matrix kernels this build uses (shown by `valor doctor` and the benchmarks).
pub fn backend() -> &'static str {
    if cfg!(valor_blas) { "openblas" } else { "gemm" }
}

/// `x · W (+ bias)` through the bf16 kernel, for a weight packed at load.
pub fn linear_bf16(x: &Tensor, packed: &PackedWeight) -> Result<Tensor> {
    x.apply_op1_no_bwd(&Bf16Linear(packed))
}

struct Bf16Linear<'a>(&'a PackedWeight);

impl CustomOp1 for Bf16Linear<'_> {
    fn name(&self) -> &'static str {
        "valor-linear-bf16"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (rows, inputs) = layout.shape().dims2()?;
        if inputs != self.0.inputs() {
            bail!(
                "cannot multiply [{rows}, {inputs}] by a packed [{}, {}]",
                self.0.inputs(),
                self.0.outputs()
            );
        }
        let x = contiguous(storage, layout)?;
        match self.0.apply(x, rows) {
            Some(out) => Ok((CpuStorage::F32(out), Shape::from((rows, self.0.outputs())))),
            None => bail!("the bf16 kernel cannot run here"),
        }
    }
}

/// `x · weight`, plus `bias` on every row when given.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&[f32]>) -> Result<Tensor> {
    #[cfg(valor_blas)]
    {
        x.apply_op2_no_bwd(weight, &blas::Linear { bias })
    }
    #[cfg(not(valor_blas))]
    {
        let product = x.matmul(weight)?;
        match bias {
            Some(bias) => product.broadcast_add(&Tensor::new(bias, x.device())?),
            None => Ok(product),
        }
    }
}

#[cfg(valor_blas)]
mod blas {
    use std::ffi::c_int;

    use candle_core::{CpuStorage, CustomOp2, Layout, Shape, bail};

    use crate::kernels::contiguous;

    const ROW_MAJOR: c_int = 101;
    const NO_TRANS: c_int = 111;

    #[allow(unsafe_code)]
    unsafe extern "C" {
        fn cblas_sgemm(
            layout: c_int,
            trans_a: c_int,
            trans_b: c_int,
            m: c_int,
            n: c_int,
            k: c_int,
            alpha: f32,
            a: *const f32,
            lda: c_int,
            b: *const f32,
            ldb: c_int,
            beta: f32,
            c: *mut f32,
            ldc: c_int,
        );
        fn openblas_set_num_threads(threads: c_int);
    }

    /// OpenBLAS's own thread pool spins (`sched_yield`) between products, taking the cores from
    /// the attention and GELU kernels that run on rayon; one pool is enough: OpenBLAS runs on
    /// the calling thread and rayon splits each product by output columns.
    fn single_threaded() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: a plain setter of OpenBLAS's global thread count.
        #[allow(unsafe_code)]
        ONCE.call_once(|| unsafe { openblas_set_num_threads(1) });
    }

    /// A raw pointer that may cross to another rayon thread: the two halves it points into are
    /// disjoint column ranges of one output.
    #[derive(Clone, Copy)]
    struct Out(*mut f32);

    impl Out {
        /// A method, not the field: a closure then captures the whole (Send) wrapper.
        fn at(self, offset: usize) -> *mut f32 {
            self.0.wrapping_add(offset)
        }
    }
    // SAFETY: see the type's comment; each thread writes only its own columns.
    #[allow(unsafe_code)]
    unsafe impl Send for Out {}
    // SAFETY: as for Send: threads share the pointer but write disjoint columns.
    #[allow(unsafe_code)]
    unsafe impl Sync for Out {}

    pub(super) struct Linear<'a> {
        pub bias: Option<&'a [f32]>,
    }

    impl CustomOp2 for Linear<'_> {
        fn name(&self) -> &'static str {
            "valor-linear"
        }

        fn cpu_fwd(
            &self,
            x: &CpuStorage,
            x_layout: &Layout,
            weight: &CpuStorage,
            weight_layout: &Layout,
        ) -> candle_core::Result<(CpuStorage, Shape)> {
            let (rows, inputs) = x_layout.shape().dims2()?;
            let (weight_inputs, outputs) = weight_layout.shape().dims2()?;
            if inputs != weight_inputs {
                bail!("cannot multiply [{rows}, {inputs}] by [{weight_inputs}, {outputs}]");
            }
            if self.bias.is_some_and(|b| b.len() != outputs) {
                bail!("a bias for {outputs} outputs is needed");
            }
            let (x, weight) = (contiguous(x, x_layout)?, contiguous(weight, weight_layout)?);
            if x.len() != rows * inputs || weight.len() != inputs * outputs {
                bail!("matrix data does not match its shape");
            }
            let fits = |v: usize| c_int::try_from(v).ok();
            let (Some(m), Some(n), Some(k)) = (fits(rows), fits(outputs), fits(inputs)) else {
                bail!("[{rows}, {inputs}] x [{inputs}, {outputs}] is too large for BLAS");
            };
            let mut out = match self.bias {
                Some(bias) => bias.repeat(rows),
                None => vec![0f32; rows * outputs],
            };
            if rows > 0 && outputs > 0 && inputs > 0 {
                single_threaded();
                let beta = if self.bias.is_some() { 1.0 } else { 0.0 };
                let out_ptr = Out(out.as_mut_ptr());
                // Columns [first, first + width) of out = x · weight[.., first..first + width].
                let columns = |first: usize, width: usize| {
                    // SAFETY: x is rows x inputs, weight inputs x outputs and out rows x
                    // outputs, contiguous row-major slices of exactly those lengths (checked
                    // above); the column range lies inside `outputs`, every dimension fits a C
                    // int, and the two calls write disjoint columns of `out`.
                    #[allow(unsafe_code)]
                    unsafe {
                        cblas_sgemm(
                            ROW_MAJOR,
                            NO_TRANS,
                            NO_TRANS,
                            m,
                            width as c_int,
                            k,
                            1.0,
                            x.as_ptr(),
                            k,
                            weight.as_ptr().add(first),
                            n,
                            beta,
                            out_ptr.at(first),
                            n,
                        );
                    }
                };
                // Halves on 16-column boundaries (one AVX-512 register of floats).
                let half = (outputs / 2).next_multiple_of(16).min(outputs);
                if rayon::current_num_threads() > 1 && half < outputs {
                    rayon::join(|| columns(0, half), || columns(half, outputs - half));
                } else {
                    columns(0, outputs);
                }
            }
            Ok((CpuStorage::F32(out), Shape::from((rows, outputs))))
        }
    }
}
