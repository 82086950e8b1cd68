//! The tile-sized matrix products, on the `gemm` crate (burn-flex's own matrix kernel, with
//! run-time AVX-512/AVX2 dispatch), called single-threaded: the tiles are what run in parallel.
//!
//! Layouts are given by strides, so nothing is transposed or packed here.

use gemm::{Parallelism, gemm};

/// `dst (+)= lhs rhs` for an `m x n` destination and inner size `inner`, each operand given as a
/// slice and its (row, column) strides. `accumulate` adds to `dst` instead of overwriting it.
#[allow(clippy::too_many_arguments)]
fn product(
    (m, n, inner): (usize, usize, usize),
    dst: &mut [f64],
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: &[f64],
    lhs_strides: (usize, usize),
    rhs: &[f64],
    rhs_strides: (usize, usize),
) {
    let end = |(rs, cs): (usize, usize), rows: usize, cols: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs + 1
    };
    assert!(
        dst.len() >= end(dst_strides, m, n)
            && lhs.len() >= end(lhs_strides, m, inner)
            && rhs.len() >= end(rhs_strides, inner, n),
        "operands too short for a {m}x{inner} by {inner}x{n} product"
    );
    if m == 0 || n == 0 {
        return;
    }
    let s = |v: usize| v as isize;
    // SAFETY: the assertion above keeps every element the strides address inside its slice; `dst`
    // is borrowed mutably, so it does not overlap `lhs` or `rhs`.
    unsafe {
        gemm(
            m,
            n,
            inner,
            dst.as_mut_ptr(),
            s(dst_strides.1),
            s(dst_strides.0),
            accumulate,
            lhs.as_ptr(),
            s(lhs_strides.1),
            s(lhs_strides.0),
            rhs.as_ptr(),
            s(rhs_strides.1),
            s(rhs_strides.0),
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// `out[j c + i] = sum_p phit[p c + i] w[p k + j]`: a tile's `log p(x_i, z = j)` (`Phi W`), column-major,
/// from its features `phit` (`[F, c]`) and the weights `w` (`[F, k]`).
pub(crate) fn log_joint(phit: &[f64], w: &[f64], c: usize, k: usize, out: &mut [f64]) {
    let f = w.len() / k;
    product((c, k, f), out, (1, c), false, phit, (1, c), w, (k, 1));
}

/// `gt[p k + j] += sum_i phit[p c + i] r[j c + i]`: a tile's share of `(R^T Phi)^T`, from its features
/// and its responsibilities `r` (column-major, as [`log_joint`] leaves them).
pub(crate) fn add_moments(phit: &[f64], r: &[f64], c: usize, k: usize, gt: &mut [f64]) {
    let f = gt.len() / k;
    product((f, k, c), gt, (k, 1), true, phit, (c, 1), r, (1, c));
}

/// `s[a d + b] += sum_i u[a c + i] v[b c + i]` (`U V^T` for `[d, c]` operands).
pub(crate) fn add_gram(u: &[f64], v: &[f64], c: usize, s: &mut [f64]) {
    let d = u.len() / c;
    product((d, d, c), s, (d, 1), true, u, (c, 1), v, (1, c));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_loops() {
        let (c, f, k) = (7, 5, 3);
        let phit: Vec<f64> = (0..f * c).map(|v| (v as f64 * 0.37).sin()).collect();
        let w: Vec<f64> = (0..f * k).map(|v| (v as f64 * 0.11).cos()).collect();
        let mut out = vec![f64::NAN; c * k];
        log_joint(&phit, &w, c, k, &mut out);
        for i in 0..c {
            for j in 0..k {
                let e: f64 = (0..f).map(|p| phit[p * c + i] * w[p * k + j]).sum();
                assert!((out[j * c + i] - e).abs() < 1e-14);
            }
        }
        let mut gt = vec![1.0; f * k];
        add_moments(&phit, &out, c, k, &mut gt);
        for p in 0..f {
            for j in 0..k {
                let e: f64 = 1.0
                    + (0..c)
                        .map(|i| phit[p * c + i] * out[j * c + i])
                        .sum::<f64>();
                assert!((gt[p * k + j] - e).abs() < 1e-13);
            }
        }
        let d = 2;
        let (u, v) = (&phit[..d * c], &phit[d * c..2 * d * c]);
        let mut s = vec![0.5; d * d];
        add_gram(u, v, c, &mut s);
        for a in 0..d {
            for b in 0..d {
                let e: f64 = 0.5 + (0..c).map(|i| u[a * c + i] * v[b * c + i]).sum::<f64>();
                assert!((s[a * d + b] - e).abs() < 1e-13);
            }
        }
    }
}
