//! Pieces the host kernels share ([`crate::output`], [`crate::lstm_kernel`]): tensor values on the
//! host, and matrix products on them.

use burn::tensor::{Tensor, TensorData};

/// A tensor's values in host memory as `f32` (plain: autodiff's tracking is left alone), read with
/// [`f32s`]. A tensor nothing else holds hands over its buffer; a shared one (a parameter) is copied.
pub(crate) fn host_data<const D: usize>(t: Tensor<D>) -> TensorData {
    let t = if t.is_autodiff() { t.inner() } else { t };
    t.into_data().convert::<f32>()
}

/// The `f32` values of [`host_data`]'s result, borrowed.
pub(crate) fn f32s(data: &TensorData) -> &[f32] {
    data.as_slice::<f32>().expect("converted to f32")
}

/// `f32` values of a tensor, owned (a further copy where the buffer cannot become a `Vec<f32>`).
pub(crate) fn host_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    host_data(t)
        .try_into_vec::<f32>()
        .expect("converted to f32")
}

/// `dst [m, n] (+)= lhs [m, k] x rhs [k, n]`, each operand given with its strides (column stride, row
/// stride). gemm packs an operand into panels unless its layout suits the kernel already; a left
/// operand with unit row stride (column-major) and `m` a multiple of 16 is read in place.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    (dst_cs, dst_rs): (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    (lhs_cs, lhs_rs): (usize, usize),
    rhs: &[f32],
    (rhs_cs, rhs_rs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |cs: usize, rs: usize, rows: usize, cols: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(dst_cs, dst_rs, m, n) < dst.len());
    if k > 0 {
        assert!(last(lhs_cs, lhs_rs, m, k) < lhs.len() && last(rhs_cs, rhs_rs, k, n) < rhs.len());
    }
    let parallelism = if m * n * k >= 192 * 192 * 192 {
        ::gemm::Parallelism::Rayon(0)
    } else {
        ::gemm::Parallelism::None
    };
    // SAFETY: the extents of all three operands were checked against their slices above, and `dst`
    // (borrowed mutably) aliases neither input.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
