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
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    let len = dst.len();
    // SAFETY: `dst` is a live, initialised slice of `len` values, borrowed mutably for the call.
    unsafe {
        gemm_raw(
            (m, n, k),
            dst.as_mut_ptr(),
            len,
            dst_strides,
            accumulate,
            (lhs, lhs_strides),
            (rhs, rhs_strides),
        );
    }
}

/// `lhs [m, k] x rhs [k, n]` as a new row-major `[m, n]` buffer. It is not zero-filled first: gemm
/// writes every entry without reading it (a vocabulary-sized buffer's zero-fill was 5% of scoring).
pub(crate) fn gemm_new(
    (m, n, k): (usize, usize, usize),
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) -> Vec<f32> {
    if k == 0 {
        return vec![0.0; m * n];
    }
    let mut dst = Vec::<f32>::with_capacity(m * n);
    // SAFETY: the buffer holds `m * n` values of capacity; with `accumulate` false gemm only writes
    // them (its kernels take the write-only path when the destination is not read), all of them as
    // k > 0, so the first `m * n` values are initialised when `set_len` exposes them.
    unsafe {
        gemm_raw(
            (m, n, k),
            dst.as_mut_ptr(),
            m * n,
            (1, n),
            false,
            (lhs, lhs_strides),
            (rhs, rhs_strides),
        );
        dst.set_len(m * n);
    }
    dst
}

/// The gemm call behind [`gemm`] and [`gemm_new`], with the operands' extents checked.
///
/// # Safety
/// `dst` must be valid for writes of `dst_len` values (and for reads when `accumulate`), aliasing
/// neither operand.
unsafe fn gemm_raw(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_len: usize,
    (dst_cs, dst_rs): (usize, usize),
    accumulate: bool,
    (lhs, (lhs_cs, lhs_rs)): (&[f32], (usize, usize)),
    (rhs, (rhs_cs, rhs_rs)): (&[f32], (usize, usize)),
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |cs: usize, rs: usize, rows: usize, cols: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(dst_cs, dst_rs, m, n) < dst_len);
    if k > 0 {
        assert!(last(lhs_cs, lhs_rs, m, k) < lhs.len() && last(rhs_cs, rhs_rs, k, n) < rhs.len());
    }
    let parallelism = if m * n * k >= 192 * 192 * 192 {
        ::gemm::Parallelism::Rayon(0)
    } else {
        ::gemm::Parallelism::None
    };
    // SAFETY: the extents of all three operands were checked above; the caller vouches for `dst`.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `lhs [m, k] x rhs [k, n]` in f64, both row-major.
    fn naive(m: usize, n: usize, k: usize, lhs: &[f32], rhs: &[f32]) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|l| f64::from(lhs[i * k + l]) * f64::from(rhs[l * n + j]))
                    .sum();
            }
        }
        out
    }

    #[test]
    fn gemm_new_writes_every_entry_of_the_product() {
        // Sizes off the kernels' 16 x 6 tiles, and one large enough to run on the thread pool.
        for &(m, n, k) in &[(37, 53, 29), (1, 7, 3), (200, 190, 210), (5, 4, 0)] {
            let lhs: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let rhs: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0)
                .collect();
            let want = naive(m, n, k, &lhs, &rhs);
            // Fill freed memory with garbage first, so that a buffer gemm leaves unwritten shows.
            drop(vec![f32::NAN; m * n]);
            let got = gemm_new((m, n, k), &lhs, (1, k), &rhs, (1, n));
            assert_eq!(got.len(), m * n);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (f64::from(*g) - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "{m}x{n}x{k}: {g} vs {w}"
                );
            }
            // The same product accumulated onto a column-major destination.
            let mut dst = vec![1.0f32; m * n];
            gemm(m, n, k, &mut dst, (m, 1), true, &lhs, (1, k), &rhs, (1, n));
            for i in 0..m {
                for j in 0..n {
                    let w = want[i * n + j] + 1.0;
                    let g = f64::from(dst[j * m + i]);
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{m}x{n}x{k} accumulated"
                    );
                }
            }
        }
    }
}
