//! Small dense linear algebra in f64 on the host.
//!
//! Mixture models need the Cholesky factor of k covariance matrices of size d x d per EM iteration.
//! That is O(k d^3), negligible next to the O(n k d^2) work done on tensors, and doing it in f64 on the
//! host keeps it exact whatever the tensors' backend or float type. Linear-Gaussian models (pPCA,
//! factor analysis) need the eigendecomposition of a d x d covariance and small solves. Matrices are
//! row-major `&[f64]` slices (`d * d` when square).

mod eigen;

pub use eigen::{SymmetricEigen, symmetric_eigen};

/// Why a factorisation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinalgError {
    /// The matrix is not (numerically) symmetric positive definite: the pivot at `index` was
    /// `pivot` <= 0 (or not finite).
    #[error("matrix is not positive definite (pivot {index} is {pivot:e})")]
    NotPositiveDefinite { index: usize, pivot: f64 },
    /// The matrix holds a NaN or an infinity.
    #[error("matrix has a non-finite entry")]
    NotFinite,
    /// The symmetric QL iteration did not deflate eigenvalue `index` (cannot happen for finite input
    /// in exact arithmetic; a guard against looping forever).
    #[error("eigenvalue iteration did not converge (eigenvalue {index})")]
    NoConvergence { index: usize },
}

/// Lower Cholesky factor `L` of a symmetric positive definite matrix `A = L L^T` (row-major).
///
/// Reads only the lower triangle of `a`. Column-by-column (Cholesky-Banachiewicz) in the order LAPACK's
/// unblocked `potf2` accumulates, so results agree with LAPACK to rounding.
pub fn cholesky_lower(a: &[f64], d: usize) -> Result<Vec<f64>, LinalgError> {
    cholesky_lower_floored(a, d, None)
}

/// [`cholesky_lower`], also failing when pivot `j` (the variance of coordinate `j` given the previous
/// ones) is at most `floor[j]`: a matrix that is positive definite only by rounding error.
pub fn cholesky_lower_floored(
    a: &[f64],
    d: usize,
    floor: Option<&[f64]>,
) -> Result<Vec<f64>, LinalgError> {
    debug_assert_eq!(a.len(), d * d);
    let mut l = vec![0.0; d * d];
    for j in 0..d {
        let mut pivot = a[j * d + j];
        for p in 0..j {
            pivot -= l[j * d + p] * l[j * d + p];
        }
        let min = floor.map_or(0.0, |f| f[j]);
        if !(pivot.is_finite() && pivot > min) {
            return Err(LinalgError::NotPositiveDefinite { index: j, pivot });
        }
        let ljj = pivot.sqrt();
        l[j * d + j] = ljj;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for p in 0..j {
                s -= l[i * d + p] * l[j * d + p];
            }
            l[i * d + j] = s / ljj;
        }
    }
    Ok(l)
}

/// Inverse of a lower-triangular matrix with a non-zero diagonal (forward substitution against `I`).
pub fn invert_lower(l: &[f64], d: usize) -> Vec<f64> {
    let mut inv = vec![0.0; d * d];
    for col in 0..d {
        // Solve L x = e_col; x is zero above `col`.
        for i in col..d {
            let mut s = if i == col { 1.0 } else { 0.0 };
            for p in col..i {
                s -= l[i * d + p] * inv[p * d + col];
            }
            inv[i * d + col] = s / l[i * d + i];
        }
    }
    inv
}

/// Transpose of a square row-major matrix.
pub fn transpose(a: &[f64], d: usize) -> Vec<f64> {
    let mut t = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            t[j * d + i] = a[i * d + j];
        }
    }
    t
}

/// `A B` for square row-major matrices.
pub fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        for p in 0..d {
            let aip = a[i * d + p];
            if aip == 0.0 {
                continue;
            }
            for j in 0..d {
                c[i * d + j] += aip * b[p * d + j];
            }
        }
    }
    c
}

/// `A A^T` for a square row-major matrix: the covariance (or precision) a Cholesky factor stands for.
pub fn gram(a: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (0..d).map(|p| a[i * d + p] * a[j * d + p]).sum();
            c[i * d + j] = s;
            c[j * d + i] = s;
        }
    }
    c
}

/// Inverse of a symmetric positive definite matrix through its Cholesky factor: `A^-1 = L^-T L^-1`.
pub fn spd_inverse(a: &[f64], d: usize) -> Result<Vec<f64>, LinalgError> {
    let l = cholesky_lower(a, d)?;
    let l_inv = invert_lower(&l, d);
    Ok(gram(&transpose(&l_inv, d), d))
}

/// `A B` for row-major `A` (`m x k`) and `B` (`k x n`): an `m x n` matrix.
pub fn matmul_rect(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    debug_assert_eq!(a.len(), m * k);
    debug_assert_eq!(b.len(), k * n);
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        let row = &mut c[i * n..(i + 1) * n];
        for p in 0..k {
            let aip = a[i * k + p];
            for (cj, bj) in row.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                *cj += aip * bj;
            }
        }
    }
    c
}

/// `A^T B` for row-major `A` (`k x m`) and `B` (`k x n`): an `m x n` matrix.
pub fn matmul_tn(a: &[f64], b: &[f64], k: usize, m: usize, n: usize) -> Vec<f64> {
    debug_assert_eq!(a.len(), k * m);
    debug_assert_eq!(b.len(), k * n);
    let mut c = vec![0.0; m * n];
    for p in 0..k {
        let brow = &b[p * n..(p + 1) * n];
        for i in 0..m {
            let api = a[p * m + i];
            for (cj, bj) in c[i * n..(i + 1) * n].iter_mut().zip(brow) {
                *cj += api * bj;
            }
        }
    }
    c
}

/// Solves `A X = B` for `X` given the lower Cholesky factor `L` of `A = L L^T` (`d x d`) and a
/// row-major right-hand side `B` (`d x m`): forward then back substitution, O(d^2 m).
pub fn cholesky_solve(l: &[f64], d: usize, b: &[f64], m: usize) -> Vec<f64> {
    debug_assert_eq!(l.len(), d * d);
    debug_assert_eq!(b.len(), d * m);
    let mut x = b.to_vec();
    // L Y = B.
    for i in 0..d {
        for p in 0..i {
            let lip = l[i * d + p];
            for c in 0..m {
                x[i * m + c] -= lip * x[p * m + c];
            }
        }
        for c in 0..m {
            x[i * m + c] /= l[i * d + i];
        }
    }
    // L^T X = Y.
    for i in (0..d).rev() {
        for p in i + 1..d {
            let lpi = l[p * d + i];
            for c in 0..m {
                x[i * m + c] -= lpi * x[p * m + c];
            }
        }
        for c in 0..m {
            x[i * m + c] /= l[i * d + i];
        }
    }
    x
}

/// `log |A| = 2 sum_i log L_ii` from the Cholesky factor `L` of `A`.
pub fn log_det_cholesky(l: &[f64], d: usize) -> f64 {
    2.0 * (0..d).map(|i| l[i * d + i].ln()).sum::<f64>()
}

/// The identity matrix.
pub fn identity(d: usize) -> Vec<f64> {
    let mut a = vec![0.0; d * d];
    for i in 0..d {
        a[i * d + i] = 1.0;
    }
    a
}

/// Largest absolute difference between `A` and `A^T`, relative to the largest absolute entry.
pub fn asymmetry(a: &[f64], d: usize) -> f64 {
    let scale = a
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    let mut worst = 0.0f64;
    for i in 0..d {
        for j in 0..i {
            worst = worst.max((a[i * d + j] - a[j * d + i]).abs());
        }
    }
    worst / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn cholesky_reconstructs_and_inverts() {
        let a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let l = cholesky_lower(&a, 3).unwrap();
        assert!(close(&gram(&l, 3), &a, 1e-14));
        assert_eq!(l[1], 0.0);
        let inv = spd_inverse(&a, 3).unwrap();
        assert!(close(&matmul(&a, &inv, 3), &identity(3), 1e-14));
        let l_inv = invert_lower(&l, 3);
        assert!(close(&matmul(&l, &l_inv, 3), &identity(3), 1e-14));
    }

    #[test]
    fn cholesky_rejects_indefinite_and_nan() {
        let a = [1.0, 2.0, 2.0, 1.0];
        assert!(matches!(
            cholesky_lower(&a, 2),
            Err(LinalgError::NotPositiveDefinite { index: 1, .. })
        ));
        assert!(cholesky_lower(&[f64::NAN], 1).is_err());
        assert!(cholesky_lower(&[0.0], 1).is_err());
    }

    #[test]
    fn rectangular_products_and_solves() {
        // A (2 x 3), B (3 x 2).
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
        assert_eq!(matmul_rect(&a, &b, 2, 3, 2), vec![58.0, 64.0, 139.0, 154.0]);
        // A^T A with A read as 2 x 3: 3 x 3.
        let ata = matmul_tn(&a, &a, 2, 3, 3);
        assert_eq!(
            ata,
            vec![17.0, 22.0, 27.0, 22.0, 29.0, 36.0, 27.0, 36.0, 45.0]
        );
        let s = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let l = cholesky_lower(&s, 3).unwrap();
        let rhs = [1.0, -2.0, 0.5, 3.0, 2.0, 1.0];
        let x = cholesky_solve(&l, 3, &rhs, 2);
        assert!(close(&matmul_rect(&s, &x, 3, 3, 2), &rhs, 1e-14));
        let det = 4.0 * (5.0 * 3.0 - 1.0) - 2.0 * (2.0 * 3.0 - 0.6) + 0.6 * (2.0 - 5.0 * 0.6);
        assert!((log_det_cholesky(&l, 3) - f64::ln(det)).abs() < 1e-14);
    }

    #[test]
    fn asymmetry_detects_nonsymmetric() {
        assert_eq!(asymmetry(&[1.0, 0.5, 0.5, 1.0], 2), 0.0);
        assert!(asymmetry(&[1.0, 0.5, 0.0, 1.0], 2) > 0.4);
    }
}
