//! Small dense linear algebra in f64 on the host.
//!
//! Mixture models need the Cholesky factor of k covariance matrices of size d x d per EM iteration.
//! That is O(k d^3), negligible next to the O(n k d^2) work done on tensors, and doing it in f64 on the
//! host keeps it exact whatever the tensors' backend or float type. Matrices are row-major `&[f64]`
//! slices of length `d * d`.

/// Why a factorisation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinalgError {
    /// The matrix is not (numerically) symmetric positive definite: the pivot at `index` was
    /// `pivot` <= 0 (or not finite).
    #[error("matrix is not positive definite (pivot {index} is {pivot:e})")]
    NotPositiveDefinite { index: usize, pivot: f64 },
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
    fn asymmetry_detects_nonsymmetric() {
        assert_eq!(asymmetry(&[1.0, 0.5, 0.5, 1.0], 2), 0.0);
        assert!(asymmetry(&[1.0, 0.5, 0.0, 1.0], 2) > 0.4);
    }
}
