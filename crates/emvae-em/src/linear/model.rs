//! A fitted linear-Gaussian model: exact log-likelihoods, the posterior of the latent variables,
//! sampling, information criteria, and its model file.

use emvae_core::config::InvalidParam;
use emvae_core::data::Matrix;
use emvae_core::linalg::symmetric_eigen;
use emvae_core::rng::rng_for;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::em::Density;
use super::parameters::{LinearParameters, LinearParametersJson};
use super::params::Noise;
use crate::EmError;

/// Format tag of the model file.
pub const MODEL_FORMAT: &str = "emvae.linear.v1";

/// Probabilistic PCA or factor analysis fitted by EM.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearGaussian {
    pub parameters: LinearParameters,
    /// Whether the best restart converged (its last change was below `tol`).
    pub converged: bool,
    /// EM iterations of the best restart.
    pub n_iter: usize,
    /// Average log-likelihood entering the last E-step of the best restart.
    pub lower_bound: f64,
    /// The best restart's trajectory of average log-likelihoods, one per iteration.
    pub lower_bounds: Vec<f64>,
    /// Which restart was best (0-based).
    pub best_restart: usize,
    /// E-steps over all restarts (more than the iterations with SQUAREM).
    pub e_steps: usize,
}

/// The model file: parameters plus the fit's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearGaussianJson {
    pub format: String,
    pub parameters: LinearParametersJson,
    pub converged: bool,
    pub n_iter: usize,
    pub lower_bound: f64,
    pub lower_bounds: Vec<f64>,
    pub best_restart: usize,
    pub e_steps: usize,
}

impl From<&LinearGaussian> for LinearGaussianJson {
    fn from(m: &LinearGaussian) -> Self {
        Self {
            format: MODEL_FORMAT.into(),
            parameters: (&m.parameters).into(),
            converged: m.converged,
            n_iter: m.n_iter,
            lower_bound: m.lower_bound,
            lower_bounds: m.lower_bounds.clone(),
            best_restart: m.best_restart,
            e_steps: m.e_steps,
        }
    }
}

/// A model file, validated: errors name the field (`parameters.loadings`, ...).
impl TryFrom<LinearGaussianJson> for LinearGaussian {
    type Error = InvalidParam;
    fn try_from(j: LinearGaussianJson) -> Result<Self, InvalidParam> {
        if j.format != MODEL_FORMAT {
            return Err(InvalidParam::new(
                "format",
                format!(
                    "`{}` is not a linear-Gaussian model (`{MODEL_FORMAT}`)",
                    j.format
                ),
            ));
        }
        Ok(Self {
            parameters: LinearParameters::try_from(&j.parameters)
                .map_err(|e| e.within("parameters"))?,
            converged: j.converged,
            n_iter: j.n_iter,
            lower_bound: j.lower_bound,
            lower_bounds: j.lower_bounds,
            best_restart: j.best_restart,
            e_steps: j.e_steps,
        })
    }
}

/// The posterior of the latent variables: `z_i | x_i ~ N(means_i, covariance)`.
#[derive(Debug, Clone, PartialEq)]
pub struct LatentPosterior {
    /// `E[z_i | x_i] = M^-1 W^T Psi^-1 (x_i - mu)`, `[n, q]`.
    pub means: Matrix,
    /// `M^-1 = (I + W^T Psi^-1 W)^-1`, row-major `[q, q]`, the same for every row.
    pub covariance: Vec<f64>,
}

/// Rows per parallel task of row-wise computations.
const ROWS_PER_TASK: usize = 1024;

impl LinearGaussian {
    pub fn n_features(&self) -> usize {
        self.parameters.n_features
    }

    pub fn n_components(&self) -> usize {
        self.parameters.n_components
    }

    pub fn noise(&self) -> Noise {
        self.parameters.noise
    }

    fn check_width(&self, x: &Matrix) -> Result<(), EmError> {
        if x.n_cols != self.n_features() {
            return Err(EmError::FeatureMismatch {
                expected: self.n_features(),
                found: x.n_cols,
            });
        }
        Ok(())
    }

    /// `log p(x_i) = log N(x_i | mu, W W^T + Psi)` per row, exactly (Woodbury, O(d q) per row).
    pub fn score_samples(&self, x: &Matrix) -> Result<Vec<f64>, EmError> {
        self.check_width(x)?;
        let (d, q) = (self.n_features(), self.n_components());
        let dens = Density::new(&self.parameters)?;
        let mean = &self.parameters.mean;
        Ok(x.values[..x.n_rows * d]
            .par_chunks(ROWS_PER_TASK * d)
            .flat_map_iter(|rows| {
                let (mut r, mut scratch) = (vec![0.0; d], vec![0.0; q]);
                rows.chunks_exact(d)
                    .map(|row| {
                        for j in 0..d {
                            r[j] = row[j] - mean[j];
                        }
                        dens.log_density(&r, &mut scratch)
                    })
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    /// Average log-likelihood `1/n sum_i log p(x_i)` (NaN for no rows).
    pub fn score(&self, x: &Matrix) -> Result<f64, EmError> {
        let s = self.score_samples(x)?;
        Ok(s.iter().sum::<f64>() / s.len() as f64)
    }

    /// The posterior of `z` given each row (for `emvae encode`).
    pub fn posterior(&self, x: &Matrix) -> Result<LatentPosterior, EmError> {
        self.check_width(x)?;
        let (d, q) = (self.n_features(), self.n_components());
        let dens = Density::new(&self.parameters)?;
        let gain = dens.posterior_gain(d);
        let mean = &self.parameters.mean;
        let values: Vec<f64> = x.values[..x.n_rows * d]
            .par_chunks(ROWS_PER_TASK * d)
            .flat_map_iter(|rows| {
                rows.chunks_exact(d).flat_map(|row| {
                    (0..q).map(|k| {
                        (0..d)
                            .map(|j| gain[k * d + j] * (row[j] - mean[j]))
                            .sum::<f64>()
                    })
                })
            })
            .collect();
        Ok(LatentPosterior {
            means: Matrix::new(x.n_rows, q, values),
            covariance: dens.posterior_covariance(),
        })
    }

    /// Draws `n` points `x = W z + mu + eps` with their latent `z`: `([n, d], [n, q])`. Computed on the
    /// host, so the draws depend only on `seed`.
    pub fn sample(&self, n: usize, seed: u64) -> (Matrix, Matrix) {
        let p = &self.parameters;
        let (d, q) = (p.n_features, p.n_components);
        let sd: Vec<f64> = p.noise_variances.iter().map(|v| v.sqrt()).collect();
        let mut rng = rng_for(seed, b"linear-sample", 0);
        let mut x = Vec::with_capacity(n * d);
        let mut z = Vec::with_capacity(n * q);
        for _ in 0..n {
            let zi: Vec<f64> = (0..q).map(|_| StandardNormal.sample(&mut rng)).collect();
            for j in 0..d {
                let e: f64 = StandardNormal.sample(&mut rng);
                let wz: f64 = (0..q).map(|k| p.loadings[j * q + k] * zi[k]).sum();
                x.push(p.mean[j] + wz + sd[j] * e);
            }
            z.extend(zi);
        }
        (Matrix::new(n, d, x), Matrix::new(n, q, z))
    }

    /// Free parameters: pPCA `d q + d + 1 - q (q - 1) / 2`, FA `d q + 2 d - q (q - 1) / 2`.
    pub fn n_parameters(&self) -> usize {
        self.parameters.n_parameters()
    }

    /// `(BIC, AIC) = (-2 n score + p ln n, -2 n score + 2 p)` of `n` rows whose average
    /// log-likelihood is `score`.
    pub fn criteria(&self, score: f64, n: usize) -> (f64, f64) {
        let (n, p) = (n as f64, self.n_parameters() as f64);
        (-2.0 * score * n + p * n.ln(), -2.0 * score * n + 2.0 * p)
    }

    /// The model's covariance `W W^T + Psi`, row-major `[d, d]`.
    pub fn covariance(&self) -> Vec<f64> {
        self.parameters.covariance()
    }

    /// Variance along each latent direction: the eigenvalues of `W W^T` (those of `W^T W`, `q x q`),
    /// descending. Invariant to the rotation `W R` left free by the likelihood.
    pub fn explained_variance(&self) -> Result<Vec<f64>, EmError> {
        let (d, q) = (self.n_features(), self.n_components());
        let w = &self.parameters.loadings;
        let wtw = emvae_core::linalg::matmul_tn(w, w, d, q, q);
        symmetric_eigen(&wtw, q)
            .map(|e| e.values)
            .map_err(|e| EmError::IllConditioned {
                component: None,
                message: format!("W^T W has no eigendecomposition ({e})"),
            })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::linear::LinearGaussianParams;
    use emvae_core::data::Dataset;
    use emvae_core::linalg::{cholesky_lower, log_det_cholesky, spd_inverse};
    use rand::Rng as _;

    /// A random factor model with `q` factors in `d` dimensions (equal noise variances when
    /// `isotropic`), and `n` rows drawn from it.
    pub(crate) fn factor_data(
        n: usize,
        d: usize,
        q: usize,
        isotropic: bool,
        seed: u64,
    ) -> (Dataset, LinearGaussian) {
        let mut rng = rng_for(seed, b"linear-test-data", 0);
        let truth = LinearGaussian {
            parameters: LinearParameters {
                noise: if isotropic {
                    Noise::Isotropic
                } else {
                    Noise::Diagonal
                },
                n_features: d,
                n_components: q,
                loadings: (0..d * q).map(|_| rng.random_range(-1.5..1.5)).collect(),
                mean: (0..d).map(|_| rng.random_range(-3.0..3.0)).collect(),
                noise_variances: if isotropic {
                    vec![0.3; d]
                } else {
                    (0..d).map(|_| rng.random_range(0.1..1.5)).collect()
                },
            },
            converged: true,
            n_iter: 0,
            lower_bound: 0.0,
            lower_bounds: Vec::new(),
            best_restart: 0,
            e_steps: 0,
        };
        let (x, _) = truth.sample(n, seed);
        (Dataset::new(x, "generated"), truth)
    }

    #[test]
    fn scores_and_posteriors_match_dense_formulas() {
        let (data, model) = factor_data(50, 5, 2, false, 1);
        let (d, q) = (5, 2);
        let c = model.covariance();
        let l = cholesky_lower(&c, d).unwrap();
        let c_inv = spd_inverse(&c, d).unwrap();
        let p = &model.parameters;
        let scores = model.score_samples(&data.x).unwrap();
        let post = model.posterior(&data.x).unwrap();
        // Posterior covariance (I + W^T Psi^-1 W)^-1 and gain W^T C^-1 (an equivalent form).
        let mut m = vec![0.0; q * q];
        for a in 0..q {
            for b in 0..q {
                m[a * q + b] = (0..d)
                    .map(|j| p.loadings[j * q + a] * p.loadings[j * q + b] / p.noise_variances[j])
                    .sum::<f64>()
                    + if a == b { 1.0 } else { 0.0 };
            }
        }
        let m_inv = spd_inverse(&m, q).unwrap();
        assert!(
            post.covariance
                .iter()
                .zip(&m_inv)
                .all(|(a, b)| (a - b).abs() < 1e-13)
        );
        for (i, row) in data.x.rows().enumerate() {
            let r: Vec<f64> = (0..d).map(|j| row[j] - p.mean[j]).collect();
            let quad: f64 = (0..d)
                .map(|a| (0..d).map(|b| r[a] * c_inv[a * d + b] * r[b]).sum::<f64>())
                .sum();
            let dense = -0.5
                * (d as f64 * (2.0 * std::f64::consts::PI).ln() + log_det_cholesky(&l, d) + quad);
            assert!(
                (scores[i] - dense).abs() < 1e-11,
                "row {i}: {} vs {dense}",
                scores[i]
            );
            for k in 0..q {
                let mean: f64 = (0..d)
                    .map(|a| {
                        p.loadings[a * q + k] * (0..d).map(|b| c_inv[a * d + b] * r[b]).sum::<f64>()
                    })
                    .sum();
                assert!((post.means.row(i)[k] - mean).abs() < 1e-12, "row {i}, z{k}");
            }
        }
        let wrong = Matrix::new(1, 4, vec![0.0; 4]);
        assert!(matches!(
            model.score_samples(&wrong),
            Err(EmError::FeatureMismatch {
                expected: 5,
                found: 4
            })
        ));
        assert!(model.posterior(&wrong).is_err());
    }

    #[test]
    fn samples_have_the_model_covariance_and_are_reproducible() {
        let (_, model) = factor_data(0, 4, 2, false, 2);
        let (x, z) = model.sample(100_000, 9);
        assert_eq!(
            (x.n_rows, x.n_cols, z.n_rows, z.n_cols),
            (100_000, 4, 100_000, 2)
        );
        assert_eq!(model.sample(10, 9), model.sample(10, 9));
        assert_ne!(model.sample(10, 9).0, model.sample(10, 8).0);
        let stats = crate::linear::SufficientStats::from_matrix(&x);
        let c = model.covariance();
        for a in 0..4 {
            // Standard error of a sample (co)variance: sqrt((C_aa C_bb + C_ab^2) / n).
            for b in 0..4 {
                let se = ((c[a * 4 + a] * c[b * 4 + b] + c[a * 4 + b].powi(2)) / 1e5).sqrt();
                assert!((stats.covariance[a * 4 + b] - c[a * 4 + b]).abs() < 5.0 * se);
            }
            let se = (c[a * 4 + a] / 1e5).sqrt();
            assert!((stats.mean[a] - model.parameters.mean[a]).abs() < 5.0 * se);
        }
    }

    #[test]
    fn model_files_round_trip_and_bad_ones_name_the_key() {
        let (data, _) = factor_data(200, 4, 1, false, 4);
        let fit = LinearGaussianParams::new(1)
            .noise(Noise::Diagonal)
            .check()
            .unwrap()
            .fit(&data)
            .unwrap();
        let text = serde_json::to_string(&LinearGaussianJson::from(&fit)).unwrap();
        let back: LinearGaussianJson = serde_json::from_str(&text).unwrap();
        assert_eq!(LinearGaussian::try_from(back.clone()).unwrap(), fit);
        let mut bad = back.clone();
        bad.format = "emvae.gmm.v1".into();
        assert_eq!(LinearGaussian::try_from(bad).unwrap_err().key, "format");
        let mut bad = back;
        bad.parameters.noise_variance[3] = f64::INFINITY;
        assert_eq!(
            LinearGaussian::try_from(bad).unwrap_err().key,
            "parameters.noise_variance"
        );
        assert!(
            serde_json::from_str::<LinearGaussianJson>(&text.replace("\"e_steps\"", "\"steps\""))
                .is_err()
        );
        // Criteria: pPCA and FA parameter counts, BIC and AIC from a score.
        assert_eq!(fit.n_parameters(), 4 + 8);
        let (bic, aic) = fit.criteria(-2.0, 100);
        assert!((bic - (400.0 + 12.0 * 100f64.ln())).abs() < 1e-12);
        assert!((aic - 424.0).abs() < 1e-12);
    }
}
