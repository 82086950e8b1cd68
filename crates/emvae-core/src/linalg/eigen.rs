//! Eigendecomposition of a symmetric matrix: Householder reduction to tridiagonal form, then the
//! implicit QL algorithm (EISPACK's `tred2` and `tql2`, as in JAMA, which is public domain).
//!
//! O(d^3) with a small constant and accurate to rounding: eigenvalues have absolute errors of order
//! `eps ||A||`, eigenvectors are orthonormal to rounding. Used for the closed-form maximum likelihood of
//! probabilistic PCA, where d is the number of features.

use super::LinalgError;

/// `A = V diag(values) V^T` for a symmetric `A`.
#[derive(Debug, Clone, PartialEq)]
pub struct SymmetricEigen {
    /// Eigenvalues in descending order.
    pub values: Vec<f64>,
    /// Row-major `d x d`; column `k` is the unit eigenvector of `values[k]`.
    pub vectors: Vec<f64>,
}

/// QL sweeps allowed per eigenvalue; QL converges cubically, so a handful suffice.
const MAX_SWEEPS: usize = 64;

/// The eigendecomposition of the symmetric row-major `d x d` matrix `a` (only its lower triangle is
/// read). Fails on a non-finite entry.
pub fn symmetric_eigen(a: &[f64], d: usize) -> Result<SymmetricEigen, LinalgError> {
    debug_assert_eq!(a.len(), d * d);
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let x = a[i * d + j];
            if !x.is_finite() {
                return Err(LinalgError::NotFinite);
            }
            v[i * d + j] = x;
            v[j * d + i] = x;
        }
    }
    if d == 0 {
        return Ok(SymmetricEigen {
            values: Vec::new(),
            vectors: Vec::new(),
        });
    }
    let mut diag = vec![0.0; d];
    let mut off = vec![0.0; d];
    tridiagonalize(&mut v, &mut diag, &mut off, d);
    ql_implicit(&mut v, &mut diag, &mut off, d)?;
    // Descending order, vectors permuted alongside.
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&i, &j| diag[j].total_cmp(&diag[i]));
    let values = order.iter().map(|&k| diag[k]).collect();
    let mut vectors = vec![0.0; d * d];
    for (new, &old) in order.iter().enumerate() {
        for r in 0..d {
            vectors[r * d + new] = v[r * d + old];
        }
    }
    Ok(SymmetricEigen { values, vectors })
}

/// Householder reduction of the symmetric `v` to tridiagonal form (`tred2`): on return `diag` and
/// `off[1..]` hold the diagonal and sub-diagonal, and `v` the orthogonal transformation.
fn tridiagonalize(v: &mut [f64], diag: &mut [f64], off: &mut [f64], n: usize) {
    let at = |i: usize, j: usize| i * n + j;
    for j in 0..n {
        diag[j] = v[at(n - 1, j)];
    }
    for i in (1..n).rev() {
        // Scaling avoids under- and overflow in the Householder vector.
        let scale: f64 = diag[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            off[i] = diag[i - 1];
            for j in 0..i {
                diag[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
                v[at(j, i)] = 0.0;
            }
        } else {
            for k in 0..i {
                diag[k] /= scale;
                h += diag[k] * diag[k];
            }
            let mut f = diag[i - 1];
            let mut g = if f > 0.0 { -h.sqrt() } else { h.sqrt() };
            off[i] = scale * g;
            h -= f * g;
            diag[i - 1] = f - g;
            off[..i].fill(0.0);
            for j in 0..i {
                f = diag[j];
                v[at(j, i)] = f;
                g = off[j] + v[at(j, j)] * f;
                for k in j + 1..i {
                    g += v[at(k, j)] * diag[k];
                    off[k] += v[at(k, j)] * f;
                }
                off[j] = g;
            }
            f = 0.0;
            for j in 0..i {
                off[j] /= h;
                f += off[j] * diag[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                off[j] -= hh * diag[j];
            }
            for j in 0..i {
                let (f, g) = (diag[j], off[j]);
                for k in j..i {
                    v[at(k, j)] -= f * off[k] + g * diag[k];
                }
                diag[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
            }
        }
        diag[i] = h;
    }
    // Accumulate the transformations.
    for i in 0..n - 1 {
        v[at(n - 1, i)] = v[at(i, i)];
        v[at(i, i)] = 1.0;
        let h = diag[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                diag[k] = v[at(k, i + 1)] / h;
            }
            for j in 0..=i {
                let g: f64 = (0..=i).map(|k| v[at(k, i + 1)] * v[at(k, j)]).sum();
                for k in 0..=i {
                    v[at(k, j)] -= g * diag[k];
                }
            }
        }
        for k in 0..=i {
            v[at(k, i + 1)] = 0.0;
        }
    }
    for j in 0..n {
        diag[j] = v[at(n - 1, j)];
        v[at(n - 1, j)] = 0.0;
    }
    v[at(n - 1, n - 1)] = 1.0;
    off[0] = 0.0;
}

/// Eigenvalues and vectors of the tridiagonal matrix by the implicit QL algorithm (`tql2`),
/// accumulating the rotations into `v`.
fn ql_implicit(
    v: &mut [f64],
    diag: &mut [f64],
    off: &mut [f64],
    n: usize,
) -> Result<(), LinalgError> {
    let at = |i: usize, j: usize| i * n + j;
    for i in 1..n {
        off[i - 1] = off[i];
    }
    off[n - 1] = 0.0;
    let mut f = 0.0;
    let mut tst1 = 0.0f64;
    let eps = f64::EPSILON;
    for l in 0..n {
        // Find a negligible sub-diagonal element; off[n - 1] = 0 stops the search.
        tst1 = tst1.max(diag[l].abs() + off[l].abs());
        let mut m = l;
        while m < n - 1 && off[m].abs() > eps * tst1 {
            m += 1;
        }
        if m > l {
            let mut sweeps = 0;
            loop {
                sweeps += 1;
                if sweeps > MAX_SWEEPS {
                    return Err(LinalgError::NoConvergence { index: l });
                }
                // Implicit shift.
                let mut g = diag[l];
                let mut p = (diag[l + 1] - g) / (2.0 * off[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                diag[l] = off[l] / (p + r);
                diag[l + 1] = off[l] * (p + r);
                let dl1 = diag[l + 1];
                let mut h = g - diag[l];
                for x in &mut diag[l + 2..n] {
                    *x -= h;
                }
                f += h;
                // Implicit QL transformation.
                p = diag[m];
                let (mut c, mut c2, mut c3) = (1.0, 1.0, 1.0);
                let el1 = off[l + 1];
                let (mut s, mut s2) = (0.0, 0.0);
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * off[i];
                    h = c * p;
                    r = p.hypot(off[i]);
                    off[i + 1] = s * r;
                    s = off[i] / r;
                    c = p / r;
                    p = c * diag[i] - s * g;
                    diag[i + 1] = h + s * (c * g + s * diag[i]);
                    for k in 0..n {
                        let h = v[at(k, i + 1)];
                        v[at(k, i + 1)] = s * v[at(k, i)] + c * h;
                        v[at(k, i)] = c * v[at(k, i)] - s * h;
                    }
                }
                p = -s * s2 * c3 * el1 * off[l] / dl1;
                off[l] = s * p;
                diag[l] = c * p;
                if off[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        diag[l] += f;
        off[l] = 0.0;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::{matmul, transpose};
    use crate::rng::rng_for;
    use rand_distr::{Distribution, StandardNormal};

    /// Largest entry of `|A V - V diag(values)|` and of `|V^T V - I|`.
    fn residuals(a: &[f64], e: &SymmetricEigen, d: usize) -> (f64, f64) {
        let av = matmul(a, &e.vectors, d);
        let mut fit = 0.0f64;
        for i in 0..d {
            for k in 0..d {
                fit = fit.max((av[i * d + k] - e.vectors[i * d + k] * e.values[k]).abs());
            }
        }
        let vtv = matmul(&transpose(&e.vectors, d), &e.vectors, d);
        let mut orth = 0.0f64;
        for i in 0..d {
            for j in 0..d {
                let id = if i == j { 1.0 } else { 0.0 };
                orth = orth.max((vtv[i * d + j] - id).abs());
            }
        }
        (fit, orth)
    }

    #[test]
    fn decomposes_random_symmetric_matrices() {
        let mut rng = rng_for(3, b"eigen-test", 0);
        for d in [1, 2, 3, 5, 8, 20, 60] {
            let b: Vec<f64> = (0..d * d)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            let a: Vec<f64> = (0..d * d)
                .map(|k| (b[k] + b[(k % d) * d + k / d]) / 2.0)
                .collect();
            let e = symmetric_eigen(&a, d).unwrap();
            let (fit, orth) = residuals(&a, &e, d);
            assert!(fit < 1e-12 * d as f64, "d = {d}: |AV - VL| = {fit:e}");
            assert!(orth < 1e-13 * d as f64, "d = {d}: |V'V - I| = {orth:e}");
            assert!(e.values.windows(2).all(|w| w[0] >= w[1]), "descending");
            let trace: f64 = (0..d).map(|i| a[i * d + i]).sum();
            assert!((e.values.iter().sum::<f64>() - trace).abs() < 1e-12 * d as f64);
        }
    }

    #[test]
    fn known_spectra_and_degenerate_matrices() {
        // [[2, 1], [1, 2]] has eigenvalues 3 and 1.
        let e = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2).unwrap();
        assert!((e.values[0] - 3.0).abs() < 1e-15 && (e.values[1] - 1.0).abs() < 1e-15);
        // A diagonal matrix, a zero matrix and a repeated eigenvalue (rank-1 plus identity).
        let e = symmetric_eigen(&[1.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, -2.0], 3).unwrap();
        assert_eq!(e.values, vec![5.0, 1.0, -2.0]);
        let e = symmetric_eigen(&[0.0; 16], 4).unwrap();
        assert_eq!(e.values, vec![0.0; 4]);
        let u = [1.0, 2.0, 2.0, 4.0];
        let a: Vec<f64> = (0..16)
            .map(|k| u[k / 4] * u[k % 4] + if k / 4 == k % 4 { 1.0 } else { 0.0 })
            .collect();
        let e = symmetric_eigen(&a, 4).unwrap();
        assert!((e.values[0] - 26.0).abs() < 1e-13, "{:?}", e.values);
        assert!(e.values[1..].iter().all(|v| (v - 1.0).abs() < 1e-13));
        let (fit, orth) = residuals(&a, &e, 4);
        assert!(fit < 1e-13 && orth < 1e-14);
        assert_eq!(symmetric_eigen(&[], 0).unwrap().values, Vec::<f64>::new());
    }

    #[test]
    fn rejects_non_finite_entries() {
        assert_eq!(
            symmetric_eigen(&[1.0, 0.0, f64::NAN, 1.0], 2),
            Err(LinalgError::NotFinite)
        );
        assert!(symmetric_eigen(&[f64::INFINITY], 1).is_err());
    }
}
