//! The E-step: exact posterior responsibilities, in log space.
//!
//! `log p(x, z = j) = log pi_j + log N(x | mu_j, Sigma_j)` for every row and component (one GEMM
//! `phi(X) W`, see [`super::workspace`]), then `log p(x) = logsumexp_j log p(x, z = j)` and
//! `r_ij = p(z = j | x_i)`. For a labelled row `z` is observed: its responsibilities are clamped to the
//! label by adding `-inf` to every other component, so its `log p(x)` becomes `log p(x, z = label)`.
//!
//! The E-step also forms the M-step's statistics `R^T phi(X)` (see [`super::posterior`]). On a CPU
//! device in f64 it all runs fused on the host ([`super::host`]); elsewhere as tensor operations here.

use burn::tensor::Tensor;
use emvae_core::tensor::{Precision, tensor_to_vec};

use super::parameters::GmmParameters;
use super::params::CovarianceType;
use super::posterior::{Posterior, Responsibilities};
use super::workspace::{Workspace, pair_index, target_error};

/// A component whose log-density is computed centred on its own mean.
pub(crate) struct ExactComponent {
    pub j: usize,
    pub mu_centred: Vec<f64>,
    /// A `[d, d]` factor of the precision, `Lambda = P P^T`.
    pub p: Vec<f64>,
    /// `log pi_j - d/2 log 2pi + log |P_j|`.
    pub constant: f64,
}

/// The E-step's parameters in feature form, on the host.
pub(crate) struct EStepWeights {
    /// `[F, k]` row-major: `log p(x, z = j) = phi(x)^T W[:, j]`.
    pub w: Vec<f64>,
    pub exact: Vec<ExactComponent>,
}

/// Parameters uploaded for the E-step.
pub(crate) struct EStepParams {
    /// `[F, k]`: `log p(x, z = j) = phi(x)^T W[:, j]`.
    w: Tensor<2>,
    exact: Vec<ExactComponent>,
}

/// `|mu|^T |Lambda| |mu|`: the size of the terms that cancel in the feature form of
/// `(x - mu)^T Lambda (x - mu)` for `x` near `mu`.
fn cancellation(mu: &[f64], lambda: &[f64], d: usize) -> f64 {
    let mut s = 0.0;
    for a in 0..d {
        for b in 0..d {
            s += (mu[a] * lambda[a * d + b] * mu[b]).abs();
        }
    }
    s
}

impl Workspace {
    /// Floor of `log r`: 85% of the way to the smallest normal float, so that responsibilities times
    /// features stay normal too.
    pub(crate) fn log_ratio_floor(&self) -> f64 {
        0.85 * match self.compute.precision {
            Precision::F64 => f64::MIN_POSITIVE.ln(),
            Precision::F32 => (f32::MIN_POSITIVE as f64).ln(),
        }
    }

    /// Whether component `j` (mean centred on the data, precision `lambda`) must be computed exactly.
    pub(crate) fn needs_exact(&self, mu_centred: &[f64], lambda: &[f64]) -> bool {
        cancellation(mu_centred, lambda, self.d) * self.compute.eps()
            > target_error(self.compute.precision)
    }

    /// The E-step's weights `W` (and the components computed exactly) for parameters `p`.
    pub fn e_step_weights(&self, p: &GmmParameters) -> EStepWeights {
        let (k, d) = (self.k, self.d);
        let f = Self::n_features_phi(self.cov_type, d);
        let lin = self.linear_offset();
        let log_det = p.log_det_precision_cholesky();
        let half_log_2pi = 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln();
        let mut w = vec![0.0; f * k];
        let mut exact = Vec::new();
        for j in 0..k {
            let constant = p.weights[j].ln() - half_log_2pi + log_det[j];
            let mu: Vec<f64> = p
                .mean(j)
                .iter()
                .zip(&self.center)
                .map(|(m, c)| m - c)
                .collect();
            let lambda = p.precision_matrix(j);
            let lambda_mu: Vec<f64> = (0..d)
                .map(|a| (0..d).map(|b| lambda[a * d + b] * mu[b]).sum())
                .collect();
            let mu_lambda_mu: f64 = mu.iter().zip(&lambda_mu).map(|(m, l)| m * l).sum();
            match self.cov_type {
                CovarianceType::Full | CovarianceType::Tied => {
                    for a in 0..d {
                        for b in a..d {
                            let coef = if a == b { -0.5 } else { -1.0 };
                            w[pair_index(a, b, d) * k + j] = coef * lambda[a * d + b];
                        }
                    }
                }
                CovarianceType::Diag => {
                    for a in 0..d {
                        w[a * k + j] = -0.5 * lambda[a * d + a];
                    }
                }
                CovarianceType::Spherical => w[j] = -0.5 * lambda[0],
            }
            for a in 0..d {
                w[(lin + a) * k + j] = lambda_mu[a];
            }
            w[(f - 1) * k + j] = constant - 0.5 * mu_lambda_mu;
            if self.needs_exact(&mu, &lambda) {
                exact.push(ExactComponent {
                    j,
                    mu_centred: mu,
                    p: precision_factor(p, j),
                    constant,
                });
            }
        }
        if !exact.is_empty() {
            tracing::trace!(
                components = exact.len(),
                "E-step: components computed centred on their means"
            );
        }
        EStepWeights { w, exact }
    }

    /// [`Workspace::e_step_weights`] on the device.
    pub fn upload(&self, p: &GmmParameters) -> EStepParams {
        let e = self.e_step_weights(p);
        let f = Self::n_features_phi(self.cov_type, self.d);
        EStepParams {
            w: self.compute.tensor(e.w, [f, self.k]),
            exact: e.exact,
        }
    }

    /// `log p(x_i, z = j)` for chunk `chunk`, `[c, k]` (labels not applied).
    pub fn weighted_log_prob(&self, e: &EStepParams, chunk: usize) -> Tensor<2> {
        let mut wlp = self.phi(chunk).matmul(e.w.clone());
        let rows = wlp.dims()[0];
        for ex in &e.exact {
            let q = self.exact_mahalanobis(chunk, &ex.mu_centred, &ex.p);
            let column = q.mul_scalar(-0.5).add_scalar(ex.constant);
            wlp = wlp.slice_assign([0..rows, ex.j..ex.j + 1], column);
        }
        wlp
    }

    /// Normalises `log p(x, z)` `[c, k]` into `(log p(x) [c, 1], p(z | x) [c, k])` with one `exp`:
    /// `m = max_j`, `e = exp(wlp - m)`, `s = sum_j e`, `log p(x) = m + log s`, `r = e / s`.
    ///
    /// `wlp - m` is floored where `exp` would leave the normal floats (below about `1e-261` in f64): such
    /// ratios change nothing at working precision, and subnormal arithmetic is two orders of magnitude
    /// slower in the M-step's matrix product.
    fn normalise(&self, wlp: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let max = wlp.clone().max_dim(1);
        // A row whose entries are all -inf cannot occur (weights are > 0), but keep it NaN-free.
        let shift = max.clone().mask_fill(max.clone().is_inf(), 0.0);
        let e = (wlp - shift.clone())
            .clamp_min(self.log_ratio_floor())
            .exp();
        let s = e.clone().sum_dim(1);
        let log_norm = s.clone().log() + shift;
        (log_norm, e / s)
    }

    /// The E-step: the average log-likelihood `1/n sum_i log p(x_i)` (labelled rows contribute
    /// `log p(x_i, z_i)`) and the posterior with its sufficient statistics.
    pub fn e_step(&self, p: &GmmParameters) -> (f64, Posterior) {
        let Some(host) = &self.host else {
            let (ll, resp) = self.device_e_step(p);
            let moments = self.device_moments(&resp);
            return (
                ll,
                Posterior {
                    moments,
                    resp: Responsibilities::Tensors(resp),
                },
            );
        };
        let e = self.e_step_weights(p);
        let (total, gt) = host.e_step(&e);
        let posterior = Posterior {
            moments: self.moments_from_transposed(&gt),
            resp: Responsibilities::Recompute(e),
        };
        (total / self.n as f64, posterior)
    }

    /// [`Workspace::e_step`] on the device: responsibilities per chunk.
    fn device_e_step(&self, p: &GmmParameters) -> (f64, Vec<Tensor<2>>) {
        let e = self.upload(p);
        let mut total = 0.0;
        let mut resp = Vec::with_capacity(self.n_chunks());
        for chunk in 0..self.n_chunks() {
            let mut wlp = self.weighted_log_prob(&e, chunk);
            if let Some(masks) = &self.label_mask {
                wlp = wlp + masks[chunk].clone();
            }
            let (log_norm, r) = self.normalise(wlp);
            total += tensor_to_vec(log_norm.sum())[0];
            resp.push(r);
        }
        (total / self.n as f64, resp)
    }

    /// `log p(x_i)` for every row (labels ignored): scikit-learn's `score_samples`.
    pub fn score_samples(&self, p: &GmmParameters) -> Vec<f64> {
        if let Some(host) = &self.host {
            return host.score_samples(&self.e_step_weights(p));
        }
        let e = self.upload(p);
        (0..self.n_chunks())
            .flat_map(|chunk| tensor_to_vec(self.normalise(self.weighted_log_prob(&e, chunk)).0))
            .collect()
    }

    /// Posterior responsibilities `p(z = j | x_i)`, `[n, k]` row-major (labels ignored).
    pub fn predict_proba(&self, p: &GmmParameters) -> Vec<f64> {
        if let Some(host) = &self.host {
            return host.predict_proba(&self.e_step_weights(p));
        }
        let e = self.upload(p);
        (0..self.n_chunks())
            .flat_map(|chunk| tensor_to_vec(self.normalise(self.weighted_log_prob(&e, chunk)).1))
            .collect()
    }
}

/// A `[d, d]` factor `P` of component `j`'s precision (`Lambda = P P^T`).
fn precision_factor(p: &GmmParameters, j: usize) -> Vec<f64> {
    let d = p.n_features;
    let pc = &p.precisions_cholesky;
    match p.covariance_type {
        CovarianceType::Full => pc[j * d * d..(j + 1) * d * d].to_vec(),
        CovarianceType::Tied => pc.clone(),
        CovarianceType::Diag | CovarianceType::Spherical => {
            let mut m = vec![0.0; d * d];
            for a in 0..d {
                m[a * d + a] = if p.covariance_type == CovarianceType::Diag {
                    pc[j * d + a]
                } else {
                    pc[j]
                };
            }
            m
        }
    }
}
