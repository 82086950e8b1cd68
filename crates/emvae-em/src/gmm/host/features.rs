//! `phi(x)` of a tile of rows, built feature-major.
//!
//! A tile's centred rows are stored transposed, `xt[a c + i] = x_ia`, and its features likewise,
//! `phit[p c + i] = phi_p(x_i)` (the order of [`crate::gmm::workspace`]: second-order terms, then `x_a`,
//! then 1). Each feature is then one element-wise product of two contiguous columns, and the layout is
//! what both matrix products of the E-step take without repacking: `Phi` column-major on the left of
//! `Phi W`, `Phi^T` row-major on the left of `Phi^T R`.

use crate::gmm::params::CovarianceType;
use emvae_core::simd::multiversion;

#[inline(always)]
fn features_body(cov_type: CovarianceType, xt: &[f64], c: usize, phit: &mut [f64]) {
    let d = xt.len() / c;
    let column = |a: usize| &xt[a * c..(a + 1) * c];
    let mut rows = phit.chunks_exact_mut(c);
    let mut next = || rows.next().expect("phit holds every feature of the tile");
    match cov_type {
        CovarianceType::Full | CovarianceType::Tied => {
            for a in 0..d {
                for b in a..d {
                    for ((o, &u), &v) in next().iter_mut().zip(column(a)).zip(column(b)) {
                        *o = u * v;
                    }
                }
            }
        }
        CovarianceType::Diag => {
            for a in 0..d {
                for (o, &u) in next().iter_mut().zip(column(a)) {
                    *o = u * u;
                }
            }
        }
        CovarianceType::Spherical => {
            let o = next();
            o.fill(0.0);
            for a in 0..d {
                for (o, &u) in o.iter_mut().zip(column(a)) {
                    *o += u * u;
                }
            }
        }
    }
    for a in 0..d {
        next().copy_from_slice(column(a));
    }
    next().fill(1.0);
}

multiversion! {
    /// Writes `phi(x_i)` of the tile's `c` rows `xt` (`[d, c]`, row-major) to `phit` (`[F, c]`).
    pub(crate) fn tile_features(cov_type: CovarianceType, xt: &[f64], c: usize, phit: &mut [f64])
        => features_body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gmm::workspace::{Workspace, pair_index};

    #[test]
    fn features_follow_the_workspace_order() {
        let (d, c) = (3, 2);
        let x = [[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]];
        let mut xt = vec![0.0; d * c];
        for i in 0..c {
            for a in 0..d {
                xt[a * c + i] = x[i][a];
            }
        }
        for cov in [
            CovarianceType::Full,
            CovarianceType::Tied,
            CovarianceType::Diag,
            CovarianceType::Spherical,
        ] {
            let f = Workspace::n_features_phi(cov, d);
            let mut phit = vec![f64::NAN; f * c];
            tile_features(cov, &xt, c, &mut phit);
            for (i, xi) in x.iter().enumerate() {
                let phi = |p: usize| phit[p * c + i];
                let lin = f - 1 - d;
                match cov {
                    CovarianceType::Full | CovarianceType::Tied => {
                        for a in 0..d {
                            for b in a..d {
                                assert_eq!(phi(pair_index(a, b, d)), xi[a] * xi[b]);
                            }
                        }
                    }
                    CovarianceType::Diag => (0..d).for_each(|a| assert_eq!(phi(a), xi[a] * xi[a])),
                    CovarianceType::Spherical => {
                        assert_eq!(phi(0), xi.iter().map(|v| v * v).sum::<f64>())
                    }
                }
                (0..d).for_each(|a| assert_eq!(phi(lin + a), xi[a]));
                assert_eq!(phi(f - 1), 1.0);
            }
        }
    }
}
