//! The M-step: closed-form maximisers of the expected complete-data log-likelihood.
//!
//! With responsibilities `r_ij` and `N_j = sum_i r_ij` (plus `10 eps`, as scikit-learn, so an empty
//! component never divides by zero):
//! `pi_j = N_j / sum N`, `mu_j = 1/N_j sum_i r_ij x_i` and
//! - full: `Sigma_j = 1/N_j sum_i r_ij (x_i - mu_j)(x_i - mu_j)^T + reg I`,
//! - tied: `Sigma = 1/n (X^T X - sum_j N_j mu_j mu_j^T) + reg I`,
//! - diag: `sigma_ji^2 = 1/N_j sum_i r_ij x_i^2 - mu_ji^2 + reg`,
//! - spherical: the mean over features of the diagonal variances.

use burn::tensor::Tensor;
use emvae_core::tensor::tensor_to_vec;

use super::params::CovarianceType;
use super::workspace::Workspace;

/// Sufficient statistics turned into `(N, means, covariances)` on the host.
pub(crate) struct GaussianEstimate {
    pub nk: Vec<f64>,
    pub means: Vec<f64>,
    pub covariances: Vec<f64>,
}

impl Workspace {
    /// scikit-learn's `_estimate_gaussian_parameters` for responsibilities `resp` (per chunk, `[c, k]`).
    pub fn estimate_gaussian_parameters(
        &self,
        resp: &[Tensor<2>],
        reg_covar: f64,
    ) -> GaussianEstimate {
        let (k, d) = (self.k, self.d);
        let eps10 = 10.0 * self.compute.eps();
        let mut nk_t: Option<Tensor<2>> = None;
        let mut sums_t: Option<Tensor<2>> = None;
        for (r, x) in resp.iter().zip(&self.x) {
            let n_part = r.clone().sum_dim(0);
            let s_part = r.clone().transpose().matmul(x.clone());
            nk_t = Some(match nk_t {
                Some(a) => a + n_part,
                None => n_part,
            });
            sums_t = Some(match sums_t {
                Some(a) => a + s_part,
                None => s_part,
            });
        }
        let nk: Vec<f64> = tensor_to_vec(nk_t.expect("at least one chunk"))
            .into_iter()
            .map(|v| v + eps10)
            .collect();
        let sums = tensor_to_vec(sums_t.expect("at least one chunk"));
        let means: Vec<f64> = (0..k * d).map(|i| sums[i] / nk[i / d]).collect();

        let covariances = match self.cov_type {
            CovarianceType::Full => {
                let means_t = self
                    .compute
                    .tensor(means.clone(), [k, d])
                    .unsqueeze_dim::<3>(1);
                let mut acc: Option<Tensor<3>> = None;
                for (r, x) in resp.iter().zip(&self.x) {
                    // [k, c, d]: every row centred on every component's mean.
                    let diff = x.clone().unsqueeze_dim::<3>(0) - means_t.clone();
                    let weighted = diff.clone() * r.clone().transpose().unsqueeze_dim::<3>(2);
                    let part = weighted.swap_dims(1, 2).matmul(diff);
                    acc = Some(match acc {
                        Some(a) => a + part,
                        None => part,
                    });
                }
                let mut cov = tensor_to_vec(acc.expect("at least one chunk"));
                for j in 0..k {
                    for v in &mut cov[j * d * d..(j + 1) * d * d] {
                        *v /= nk[j];
                    }
                    for i in 0..d {
                        cov[j * d * d + i * d + i] += reg_covar;
                    }
                }
                cov
            }
            CovarianceType::Tied => {
                let xtx = tensor_to_vec(self.xtx.clone().expect("tied workspace holds X^T X"));
                let total: f64 = nk.iter().sum();
                let mut cov = vec![0.0; d * d];
                for a in 0..d {
                    for b in 0..d {
                        let avg_means2: f64 = (0..k)
                            .map(|j| nk[j] * means[j * d + a] * means[j * d + b])
                            .sum();
                        cov[a * d + b] = (xtx[a * d + b] - avg_means2) / total;
                    }
                    cov[a * d + a] += reg_covar;
                }
                cov
            }
            CovarianceType::Diag | CovarianceType::Spherical => {
                let mut acc: Option<Tensor<2>> = None;
                for (r, x_sq) in resp.iter().zip(&self.x_sq) {
                    let part = r.clone().transpose().matmul(x_sq.clone());
                    acc = Some(match acc {
                        Some(a) => a + part,
                        None => part,
                    });
                }
                let avg_x2 = tensor_to_vec(acc.expect("at least one chunk"));
                let diag: Vec<f64> = (0..k * d)
                    .map(|i| avg_x2[i] / nk[i / d] - means[i] * means[i] + reg_covar)
                    .collect();
                if self.cov_type == CovarianceType::Diag {
                    diag
                } else {
                    diag.chunks_exact(d)
                        .map(|r| r.iter().sum::<f64>() / d as f64)
                        .collect()
                }
            }
        };
        GaussianEstimate {
            nk,
            means,
            covariances,
        }
    }
}
