//! Synthetic data: a random Gaussian mixture and draws from it, optionally with some rows labelled.
//! Used by the `[data.synthetic]` config table, `emvae generate`, tests and benchmarks.

use emvae_core::config::InvalidParam;
use emvae_core::data::Dataset;
use emvae_core::linalg;
use emvae_core::rng::rng_for;
use rand::Rng as _;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Gamma, StandardNormal};
use serde::{Deserialize, Serialize};

use super::model::GaussianMixture;
use super::parameters::{GmmParameters, precisions_cholesky_from_covariances};
use super::params::CovarianceType;

fn default_separation() -> f64 {
    4.0
}

/// A random mixture of `n_components` full-covariance Gaussians in `n_features` dimensions.
///
/// Means are drawn from `N(0, separation^2 I)`; covariances are `A A^T + I/4` with `A` standard normal
/// scaled by `1/sqrt(d)` (average variance about 1.25); weights are Gamma(4) draws normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticMixture {
    pub n_samples: usize,
    pub n_features: usize,
    pub n_components: usize,
    /// Spread of the means relative to the components' own scale (about 1).
    #[serde(default = "default_separation")]
    pub separation: f64,
    /// Fraction of rows that keep their true component as a label (partly labelled data).
    #[serde(default)]
    pub label_fraction: f64,
    #[serde(default)]
    pub seed: u64,
}

/// Generated data with the truth behind it.
pub struct SyntheticData {
    pub data: Dataset,
    /// The component every row was drawn from.
    pub components: Vec<usize>,
    pub truth: GaussianMixture,
}

impl SyntheticMixture {
    pub fn check(&self) -> Result<(), InvalidParam> {
        let bad = |k: &str, m: String| Err(InvalidParam::new(k, m));
        if self.n_features == 0 {
            return bad("n_features", "must be at least 1".into());
        }
        if self.n_components == 0 {
            return bad("n_components", "must be at least 1".into());
        }
        if self.n_samples < self.n_components {
            return bad(
                "n_samples",
                format!(
                    "must be at least n_components = {}, got {}",
                    self.n_components, self.n_samples
                ),
            );
        }
        if !(self.separation.is_finite() && self.separation >= 0.0) {
            return bad(
                "separation",
                format!("must be a finite number >= 0, got {}", self.separation),
            );
        }
        if !(0.0..=1.0).contains(&self.label_fraction) {
            return bad(
                "label_fraction",
                format!("must be in [0, 1], got {}", self.label_fraction),
            );
        }
        Ok(())
    }

    /// The random mixture itself.
    pub fn truth(&self) -> GaussianMixture {
        let (k, d) = (self.n_components, self.n_features);
        let mut rng = rng_for(self.seed, b"synthetic-truth", 0);
        let gamma = Gamma::new(4.0, 1.0).expect("valid gamma");
        let raw: Vec<f64> = (0..k).map(|_| gamma.sample(&mut rng)).collect();
        let total: f64 = raw.iter().sum();
        let weights = raw.iter().map(|w| w / total).collect();
        let means = (0..k * d)
            .map(|_| {
                self.separation * {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    z
                }
            })
            .collect();
        let mut covariances = Vec::with_capacity(k * d * d);
        let scale = 1.0 / (d as f64).sqrt();
        for _ in 0..k {
            let a: Vec<f64> = (0..d * d)
                .map(|_| {
                    scale * {
                        let z: f64 = StandardNormal.sample(&mut rng);
                        z
                    }
                })
                .collect();
            let mut c = linalg::gram(&a, d);
            for i in 0..d {
                c[i * d + i] += 0.25;
            }
            covariances.extend(c);
        }
        let precisions_cholesky =
            precisions_cholesky_from_covariances(CovarianceType::Full, k, d, &covariances, 0.0)
                .expect("A A^T + I/4 is positive definite");
        GaussianMixture {
            parameters: GmmParameters {
                covariance_type: CovarianceType::Full,
                n_components: k,
                n_features: d,
                weights,
                means,
                covariances,
                precisions_cholesky,
            },
            converged: true,
            n_iter: 0,
            lower_bound: f64::NAN,
            lower_bounds: Vec::new(),
            best_restart: 0,
        }
    }

    /// Draws the data set (rows shuffled), labelling each row with probability `label_fraction`.
    pub fn generate(&self) -> SyntheticData {
        let truth = self.truth();
        let (x, comps) = truth
            .sample(
                self.n_samples,
                rng_for(self.seed, b"synthetic-sample", 0).random(),
            )
            .expect("the truth's covariances are positive definite");
        let mut rng = rng_for(self.seed, b"synthetic-shuffle", 0);
        let mut order: Vec<usize> = (0..self.n_samples).collect();
        order.shuffle(&mut rng);
        let x = x.select_rows(&order);
        let components: Vec<usize> = order.iter().map(|&i| comps[i]).collect();
        let mut data = Dataset::new(
            x,
            format!(
                "synthetic mixture (n_samples = {}, n_features = {}, n_components = {}, seed = {})",
                self.n_samples, self.n_features, self.n_components, self.seed
            ),
        );
        if self.label_fraction > 0.0 {
            data.labels = Some(
                components
                    .iter()
                    .map(|&c| (rng.random::<f64>() < self.label_fraction).then_some(c))
                    .collect(),
            );
        }
        SyntheticData {
            data,
            components,
            truth,
        }
    }
}
