//! The M-step: closed-form maximisers of the expected complete-data log-likelihood.
//!
//! With responsibilities `r_ij` and `N_j = sum_i r_ij` (plus `10 eps`, as scikit-learn, so an empty
//! component never divides by zero): `pi_j = N_j / sum N`, `mu_j = 1/N_j sum_i r_ij x_i` and
//! - full: `Sigma_j = 1/N_j sum_i r_ij (x_i - mu_j)(x_i - mu_j)^T + reg I`,
//! - tied: `Sigma = 1/n sum_j sum_i r_ij (x_i - mu_j)(x_i - mu_j)^T + reg I`,
//! - diag: `sigma_ja^2 = 1/N_j sum_i r_ij (x_ia - mu_ja)^2 + reg`,
//! - spherical: the mean over features of the diagonal variances.
//!
//! All statistics come from one product `R^T phi(X)` as `E[x x^T] - mu mu^T`; components where that
//! difference would lose accuracy to cancellation are recomputed centred on their means.

use burn::tensor::Tensor;
use emvae_core::linalg;
use emvae_core::tensor::tensor_to_vec;

use super::host::RespSource;
use super::parameters::{GmmParameters, precisions_cholesky_from_covariances};
use super::params::CovarianceType;
use super::posterior::{Posterior, Responsibilities};
use super::workspace::{Workspace, pair_index, symmetrise};
use crate::EmError;

/// `(N, means, covariances)` on the host, in the data's coordinates.
pub(crate) struct GaussianEstimate {
    pub nk: Vec<f64>,
    pub means: Vec<f64>,
    pub covariances: Vec<f64>,
}

impl Workspace {
    /// scikit-learn's `_estimate_gaussian_parameters` for responsibilities `resp` (per chunk of
    /// [`Workspace::x`], `[c, k]`).
    pub fn estimate_gaussian_parameters(
        &self,
        resp: &[Tensor<2>],
        reg_covar: f64,
    ) -> GaussianEstimate {
        self.estimate_from_posterior(&self.posterior_of(resp), reg_covar)
    }

    /// The M-step's estimate from an E-step's posterior.
    pub fn estimate_from_posterior(
        &self,
        posterior: &Posterior,
        reg_covar: f64,
    ) -> GaussianEstimate {
        self.estimate_from_moments(&posterior.moments, reg_covar, Some(&posterior.resp))
    }

    /// The posterior of given responsibilities (per chunk of [`Workspace::x`], `[c, k]`).
    pub fn posterior_of(&self, resp: &[Tensor<2>]) -> Posterior {
        match &self.host {
            Some(host) => {
                let rows: Vec<f64> = resp.iter().cloned().flat_map(tensor_to_vec).collect();
                Posterior {
                    moments: self.moments_from_transposed(&host.moments_of(&rows)),
                    resp: Responsibilities::Rows(rows),
                }
            }
            None => Posterior {
                moments: self.device_moments(resp),
                resp: Responsibilities::Tensors(resp.to_vec()),
            },
        }
    }

    /// The expected sufficient statistics `G = R^T phi(X)` of a posterior, `[k, F]` row-major: row `j`
    /// holds `sum_i r_ij phi(x_i)`, so `N_j`, `sum_i r_ij x_i` and the second moments of the covariance
    /// type (centred on [`Workspace::center`]).
    pub fn moments(&self, posterior: &Posterior) -> Vec<f64> {
        posterior.moments.clone()
    }

    /// `G` from `G^T` (`[F, k]`, as the host kernels accumulate it).
    pub(crate) fn moments_from_transposed(&self, gt: &[f64]) -> Vec<f64> {
        let (k, f) = (self.k, Self::n_features_phi(self.cov_type, self.d));
        (0..k * f).map(|v| gt[(v % f) * k + v / f]).collect()
    }

    /// `G = R^T phi(X)` on the device, chunk by chunk.
    pub(crate) fn device_moments(&self, resp: &[Tensor<2>]) -> Vec<f64> {
        let mut acc: Option<Tensor<2>> = None;
        for (chunk, r) in resp.iter().enumerate() {
            let part = r.clone().transpose().matmul(self.phi(chunk));
            acc = Some(match acc {
                Some(a) => a + part,
                None => part,
            });
        }
        tensor_to_vec(acc.expect("at least one chunk"))
    }

    /// `(N, means, covariances)` from statistics `g` as [`Workspace::moments`] gives them (or any
    /// multiple of them: a running average per row works as well as sums).
    ///
    /// Components whose covariance lost accuracy to cancellation are recomputed centred on their means
    /// from `exact`, the responsibilities of this workspace's rows, when given; a running average of
    /// statistics has no rows to go back to, and keeps the feature form.
    pub fn estimate_from_moments(
        &self,
        g: &[f64],
        reg_covar: f64,
        exact: Option<&Responsibilities>,
    ) -> GaussianEstimate {
        let (k, d) = (self.k, self.d);
        let f = Self::n_features_phi(self.cov_type, d);
        let lin = self.linear_offset();
        let eps10 = 10.0 * self.compute.eps();
        let nk: Vec<f64> = (0..k).map(|j| g[j * f + f - 1] + eps10).collect();
        let mu: Vec<Vec<f64>> = (0..k)
            .map(|j| (0..d).map(|a| g[j * f + lin + a] / nk[j]).collect())
            .collect();
        let stat = |j: usize, col: usize| g[j * f + col];
        // The exact scatters of components `js`, one pass over the rows for all of them.
        let scatters = |resp: &Responsibilities, js: &[usize]| {
            let components: Vec<(usize, &[f64])> =
                js.iter().map(|&j| (j, mu[j].as_slice())).collect();
            self.exact_scatters(resp, &components)
        };

        let covariances = match self.cov_type {
            CovarianceType::Full => {
                let mut cov: Vec<Vec<f64>> = Vec::with_capacity(k);
                for j in 0..k {
                    let mut c = vec![0.0; d * d];
                    for a in 0..d {
                        for b in 0..d {
                            c[a * d + b] =
                                stat(j, pair_index(a, b, d)) / nk[j] - mu[j][a] * mu[j][b];
                        }
                        c[a * d + a] += reg_covar;
                    }
                    cov.push(c);
                }
                if let Some(resp) = exact {
                    let lost: Vec<usize> = (0..k)
                        .filter(|&j| self.lost_accuracy(&mu[j], &cov[j]))
                        .collect();
                    if !lost.is_empty() {
                        for (&j, mut c) in lost.iter().zip(scatters(resp, &lost)) {
                            c.iter_mut().for_each(|v| *v /= nk[j]);
                            for a in 0..d {
                                c[a * d + a] += reg_covar;
                            }
                            cov[j] = c;
                        }
                    }
                }
                cov.concat()
            }
            CovarianceType::Tied => {
                let total: f64 = nk.iter().sum();
                let mut c = vec![0.0; d * d];
                for a in 0..d {
                    for b in 0..d {
                        let second: f64 = (0..k).map(|j| stat(j, pair_index(a, b, d))).sum();
                        let means2: f64 = (0..k).map(|j| nk[j] * mu[j][a] * mu[j][b]).sum();
                        c[a * d + b] = (second - means2) / total;
                    }
                    c[a * d + a] += reg_covar;
                }
                if let Some(resp) = exact
                    && (0..k).any(|j| self.lost_accuracy(&mu[j], &c))
                {
                    c = vec![0.0; d * d];
                    let all: Vec<usize> = (0..k).collect();
                    for s in scatters(resp, &all) {
                        c.iter_mut().zip(s).for_each(|(c, s)| *c += s);
                    }
                    c.iter_mut().for_each(|v| *v /= total);
                    for a in 0..d {
                        c[a * d + a] += reg_covar;
                    }
                }
                c
            }
            CovarianceType::Diag | CovarianceType::Spherical => {
                let mut vars: Vec<Vec<f64>> = Vec::with_capacity(k);
                for j in 0..k {
                    vars.push(if self.cov_type == CovarianceType::Diag {
                        (0..d)
                            .map(|a| stat(j, a) / nk[j] - mu[j][a] * mu[j][a] + reg_covar)
                            .collect()
                    } else {
                        let sq: f64 = mu[j].iter().map(|m| m * m).sum();
                        vec![(stat(j, 0) / nk[j] - sq) / d as f64 + reg_covar]
                    });
                }
                let as_matrix = |v: &[f64]| {
                    let mut m = vec![0.0; d * d];
                    for a in 0..d {
                        m[a * d + a] = if v.len() == d { v[a] } else { v[0] };
                    }
                    m
                };
                if let Some(resp) = exact {
                    let lost: Vec<usize> = (0..k)
                        .filter(|&j| self.lost_accuracy(&mu[j], &as_matrix(&vars[j])))
                        .collect();
                    if !lost.is_empty() {
                        for (&j, s) in lost.iter().zip(scatters(resp, &lost)) {
                            let diag: Vec<f64> =
                                (0..d).map(|a| s[a * d + a] / nk[j] + reg_covar).collect();
                            vars[j] = if self.cov_type == CovarianceType::Diag {
                                diag
                            } else {
                                vec![diag.iter().sum::<f64>() / d as f64]
                            };
                        }
                    }
                }
                vars.concat()
            }
        };
        let means = mu
            .iter()
            .flat_map(|m| m.iter().zip(&self.center).map(|(m, c)| m + c))
            .collect();
        GaussianEstimate {
            nk,
            means,
            covariances,
        }
    }

    /// The weighted scatters `sum_i r_ij (x_i - mu_j)(x_i - mu_j)^T` (`[d, d]`, symmetric) of
    /// `components` `(j, mu_j)`, `mu_j` centred on the data mean, computed centred on `mu_j`.
    fn exact_scatters(
        &self,
        resp: &Responsibilities,
        components: &[(usize, &[f64])],
    ) -> Vec<Vec<f64>> {
        let d = self.d;
        let source = match resp {
            Responsibilities::Tensors(chunks) => {
                return components
                    .iter()
                    .map(|&(j, mu)| self.exact_scatter(chunks, j, mu))
                    .collect();
            }
            Responsibilities::Rows(rows) => RespSource::Rows(rows),
            Responsibilities::Recompute(e) => RespSource::Recompute(e),
        };
        let host = self
            .host
            .as_ref()
            .expect("host responsibilities come from a workspace with host data");
        host.scatters(source, components)
            .chunks_exact(d * d)
            .map(|s| {
                let mut s = s.to_vec();
                symmetrise(&mut s, d);
                s
            })
            .collect()
    }

    /// The M-step's parameters from an estimate: weights `N_j / sum N`, the means and covariances, and
    /// the Cholesky factors of the precisions (an error for a covariance that collapsed below the
    /// data's [`Workspace::variance_floor`]).
    pub fn parameters_from_estimate(
        &self,
        est: GaussianEstimate,
        reg_covar: f64,
    ) -> Result<GmmParameters, EmError> {
        let total: f64 = est.nk.iter().sum();
        let precisions_cholesky = precisions_cholesky_from_covariances(
            self.cov_type,
            self.d,
            &est.covariances,
            reg_covar,
            Some(&self.variance_floor),
        )?;
        Ok(GmmParameters {
            covariance_type: self.cov_type,
            n_components: self.k,
            n_features: self.d,
            weights: est.nk.iter().map(|v| v / total).collect(),
            means: est.means,
            covariances: est.covariances,
            precisions_cholesky,
        })
    }

    /// Whether `E[x x^T] - mu mu^T = cov` (centred on the data mean) lost accuracy to cancellation, or
    /// is not positive definite and deserves an exact second look.
    fn lost_accuracy(&self, mu_centred: &[f64], cov: &[f64]) -> bool {
        match linalg::spd_inverse(cov, self.d) {
            Ok(lambda) => self.needs_exact(mu_centred, &lambda),
            Err(_) => true,
        }
    }
}
