//! The E-step: exact posterior responsibilities in log space.
//!
//! `log p(x, z = j) = log pi_j + log N(x | mu_j, Sigma_j)` for every row and component, then
//! `log p(x) = logsumexp_j log p(x, z = j)` and `log r_ij = log p(x_i, z = j) - log p(x_i)`.
//! For a labelled row `z` is observed: its responsibilities are clamped to the label by adding `-inf`
//! to every other component, so `log p(x)` becomes `log p(x, z = label)`.

use burn::tensor::Tensor;
use emvae_core::tensor::{log_sum_exp, tensor_to_vec};

use super::parameters::GmmParameters;
use super::params::CovarianceType;
use super::workspace::Workspace;

/// Parameters uploaded for the E-step (the quadratic form of each covariance type).
pub(crate) enum QuadraticForm {
    /// `P` of every component side by side, `[d, k d]`, and `mu_j^T P_j`, `[1, k d]`.
    Full { p: Tensor<2>, mu_p: Tensor<2> },
    /// The shared `P`, `[d, d]`, and `mu_j^T P`, `[k, d]`.
    Tied { p: Tensor<2>, mu_p: Tensor<2> },
    /// `sum_i mu_ji^2 tau_ji` `[1, k]`, `(mu * tau)^T` `[d, k]`, `tau^T` `[d, k]` with `tau = P^2`.
    Diag {
        mu2: Tensor<2>,
        mu_tau: Tensor<2>,
        tau: Tensor<2>,
    },
    /// `|mu_j|^2 tau_j` `[1, k]`, `mu^T tau` `[d, k]`, `tau` `[1, k]`.
    Spherical {
        mu2: Tensor<2>,
        mu_tau: Tensor<2>,
        tau: Tensor<2>,
    },
}

pub(crate) struct EStepParams {
    form: QuadraticForm,
    /// `log pi_j - d/2 log 2pi + log |P_j|`, `[1, k]`.
    constant: Tensor<2>,
}

impl Workspace {
    pub fn upload(&self, p: &GmmParameters) -> EStepParams {
        let (k, d) = (self.k, self.d);
        let c = &self.compute;
        let log_det = p.log_det_precision_cholesky();
        let half_log_2pi = 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln();
        let constant: Vec<f64> = (0..k)
            .map(|j| p.weights[j].ln() - half_log_2pi + log_det[j])
            .collect();
        let pc = &p.precisions_cholesky;
        let form = match self.cov_type {
            CovarianceType::Full => {
                let mut cat = vec![0.0; d * k * d];
                let mut mu_p = vec![0.0; k * d];
                for j in 0..k {
                    let pj = &pc[j * d * d..(j + 1) * d * d];
                    let mu = p.mean(j);
                    for r in 0..d {
                        for col in 0..d {
                            cat[r * k * d + j * d + col] = pj[r * d + col];
                            mu_p[j * d + col] += mu[r] * pj[r * d + col];
                        }
                    }
                }
                QuadraticForm::Full {
                    p: c.tensor(cat, [d, k * d]),
                    mu_p: c.tensor(mu_p, [1, k * d]),
                }
            }
            CovarianceType::Tied => {
                let mut mu_p = vec![0.0; k * d];
                for j in 0..k {
                    let mu = p.mean(j);
                    for r in 0..d {
                        for col in 0..d {
                            mu_p[j * d + col] += mu[r] * pc[r * d + col];
                        }
                    }
                }
                QuadraticForm::Tied {
                    p: c.tensor(pc.clone(), [d, d]),
                    mu_p: c.tensor(mu_p, [k, d]),
                }
            }
            CovarianceType::Diag => {
                let mut mu2 = vec![0.0; k];
                let mut mu_tau = vec![0.0; d * k];
                let mut tau = vec![0.0; d * k];
                for j in 0..k {
                    let mu = p.mean(j);
                    for i in 0..d {
                        let t = pc[j * d + i] * pc[j * d + i];
                        mu2[j] += mu[i] * mu[i] * t;
                        mu_tau[i * k + j] = mu[i] * t;
                        tau[i * k + j] = t;
                    }
                }
                QuadraticForm::Diag {
                    mu2: c.tensor(mu2, [1, k]),
                    mu_tau: c.tensor(mu_tau, [d, k]),
                    tau: c.tensor(tau, [d, k]),
                }
            }
            CovarianceType::Spherical => {
                let mut mu2 = vec![0.0; k];
                let mut mu_tau = vec![0.0; d * k];
                let tau: Vec<f64> = pc.iter().map(|v| v * v).collect();
                for j in 0..k {
                    let mu = p.mean(j);
                    mu2[j] = mu.iter().map(|m| m * m).sum::<f64>() * tau[j];
                    for i in 0..d {
                        mu_tau[i * k + j] = mu[i] * tau[j];
                    }
                }
                QuadraticForm::Spherical {
                    mu2: c.tensor(mu2, [1, k]),
                    mu_tau: c.tensor(mu_tau, [d, k]),
                    tau: c.tensor(tau, [1, k]),
                }
            }
        };
        EStepParams {
            form,
            constant: c.tensor(constant, [1, k]),
        }
    }

    /// `log p(x_i, z = j)` for chunk `chunk`, `[c, k]` (labels not applied).
    pub fn weighted_log_prob(&self, e: &EStepParams, chunk: usize) -> Tensor<2> {
        let x = self.x[chunk].clone();
        let [rows, d] = x.dims();
        let k = self.k;
        // Squared Mahalanobis distance ||(x - mu_j)^T P_j||^2, [c, k].
        let maha = match &e.form {
            QuadraticForm::Full { p, mu_p } => {
                let y = x.matmul(p.clone()) - mu_p.clone();
                (y.clone() * y)
                    .reshape([rows, k, d])
                    .sum_dim(2)
                    .reshape([rows, k])
            }
            QuadraticForm::Tied { p, mu_p } => {
                let y = x.matmul(p.clone());
                let diff = y.unsqueeze_dim::<3>(1) - mu_p.clone().unsqueeze_dim::<3>(0);
                (diff.clone() * diff).sum_dim(2).reshape([rows, k])
            }
            QuadraticForm::Diag { mu2, mu_tau, tau } => {
                mu2.clone() - x.matmul(mu_tau.clone()).mul_scalar(2.0)
                    + self.x_sq[chunk].clone().matmul(tau.clone())
            }
            QuadraticForm::Spherical { mu2, mu_tau, tau } => {
                let row_sq = self.x_sq[chunk].clone().sum_dim(1);
                mu2.clone() - x.matmul(mu_tau.clone()).mul_scalar(2.0) + row_sq * tau.clone()
            }
        };
        e.constant.clone() - maha.mul_scalar(0.5)
    }

    /// The E-step: `log r` per chunk and the average log-likelihood `1/n sum_i log p(x_i)` (with labelled
    /// rows contributing `log p(x_i, z_i)`).
    pub fn e_step(&self, p: &GmmParameters) -> (f64, Vec<Tensor<2>>) {
        let e = self.upload(p);
        let mut total = 0.0;
        let mut log_resp = Vec::with_capacity(self.x.len());
        for chunk in 0..self.x.len() {
            let mut wlp = self.weighted_log_prob(&e, chunk);
            if let Some(masks) = &self.label_mask {
                wlp = wlp + masks[chunk].clone();
            }
            let log_norm = log_sum_exp(wlp.clone(), 1);
            total += tensor_to_vec(log_norm.clone().sum())[0];
            log_resp.push(wlp - log_norm);
        }
        (total / self.n as f64, log_resp)
    }

    /// `log p(x_i)` for every row (labels ignored): scikit-learn's `score_samples`.
    pub fn score_samples(&self, p: &GmmParameters) -> Vec<f64> {
        let e = self.upload(p);
        (0..self.x.len())
            .flat_map(|chunk| tensor_to_vec(log_sum_exp(self.weighted_log_prob(&e, chunk), 1)))
            .collect()
    }

    /// Posterior responsibilities `p(z = j | x_i)`, `[n, k]` row-major (labels ignored).
    pub fn predict_proba(&self, p: &GmmParameters) -> Vec<f64> {
        let e = self.upload(p);
        (0..self.x.len())
            .flat_map(|chunk| {
                let wlp = self.weighted_log_prob(&e, chunk);
                let log_norm = log_sum_exp(wlp.clone(), 1);
                tensor_to_vec((wlp - log_norm).exp())
            })
            .collect()
    }
}
