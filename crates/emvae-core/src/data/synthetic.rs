//! Generated data sets: draws from random latent-variable models, with the truth behind them.
//!
//! Used by the `[data.synthetic]` config table (so the README's first command needs no download),
//! `emvae generate`, tests and benchmarks.

use rand::Rng as _;
use rand::seq::SliceRandom;
use rand_distr::{Binomial, Distribution, Gamma, StandardNormal};
use serde::{Deserialize, Serialize};

use super::{Dataset, Matrix};
use crate::config::InvalidParam;
use crate::linalg;
use crate::rng::{Rng, rng_for};

fn default_separation() -> f64 {
    4.0
}

fn normal(rng: &mut Rng) -> f64 {
    StandardNormal.sample(rng)
}

/// Draws `n` points from a Gaussian mixture (weights `[k]`, means `[k, d]`, full covariances
/// `[k, d, d]`): component counts from a multinomial over the weights (sequential conditional
/// binomials), then `x = mu_j + L_j e` with `Sigma_j = L_j L_j^T`, `e ~ N(0, I)`. Rows come grouped by
/// component, as in scikit-learn's `GaussianMixture.sample`.
///
/// Returns `None` when a covariance is not positive definite.
pub fn sample_gaussian_mixture(
    weights: &[f64],
    means: &[f64],
    covariances: &[f64],
    n: usize,
    rng: &mut Rng,
) -> Option<(Matrix, Vec<usize>)> {
    let k = weights.len();
    let d = means.len() / k.max(1);
    let mut counts = vec![0u64; k];
    let mut left = n as u64;
    let mut mass = 1.0;
    for j in 0..k {
        if j + 1 == k {
            counts[j] = left;
            break;
        }
        let prob = if mass > 0.0 {
            (weights[j] / mass).clamp(0.0, 1.0)
        } else {
            0.0
        };
        counts[j] = Binomial::new(left, prob).map_or(0, |b| b.sample(rng));
        left -= counts[j];
        mass -= weights[j];
    }
    let mut values = Vec::with_capacity(n * d);
    let mut components = Vec::with_capacity(n);
    for (j, &count) in counts.iter().enumerate() {
        let l = linalg::cholesky_lower(&covariances[j * d * d..(j + 1) * d * d], d).ok()?;
        let mu = &means[j * d..(j + 1) * d];
        for _ in 0..count {
            let e: Vec<f64> = (0..d).map(|_| normal(rng)).collect();
            for r in 0..d {
                let z: f64 = (0..=r).map(|c| l[r * d + c] * e[c]).sum();
                values.push(mu[r] + z);
            }
            components.push(j);
        }
    }
    Some((Matrix::new(n, d, values), components))
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

/// The parameters of a generated mixture.
#[derive(Debug, Clone, PartialEq)]
pub struct MixtureTruth {
    pub weights: Vec<f64>,
    /// `[k, d]`
    pub means: Vec<f64>,
    /// `[k, d, d]`
    pub covariances: Vec<f64>,
}

/// Generated data with the truth behind it.
#[derive(Debug, Clone)]
pub struct SyntheticData {
    pub data: Dataset,
    /// The component every row was drawn from.
    pub components: Vec<usize>,
    pub truth: MixtureTruth,
}

impl SyntheticMixture {
    /// Validates the specification; keys in errors are field names.
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
    pub fn truth(&self) -> MixtureTruth {
        let (k, d) = (self.n_components, self.n_features);
        let mut rng = rng_for(self.seed, b"synthetic-truth", 0);
        let gamma = Gamma::new(4.0, 1.0).expect("valid gamma");
        let raw: Vec<f64> = (0..k).map(|_| gamma.sample(&mut rng)).collect();
        let total: f64 = raw.iter().sum();
        let weights = raw.iter().map(|w| w / total).collect();
        let means = (0..k * d)
            .map(|_| self.separation * normal(&mut rng))
            .collect();
        let mut covariances = Vec::with_capacity(k * d * d);
        let scale = 1.0 / (d as f64).sqrt();
        for _ in 0..k {
            let a: Vec<f64> = (0..d * d).map(|_| scale * normal(&mut rng)).collect();
            let mut c = linalg::gram(&a, d);
            for i in 0..d {
                c[i * d + i] += 0.25;
            }
            covariances.extend(c);
        }
        MixtureTruth {
            weights,
            means,
            covariances,
        }
    }

    /// Draws the data set (rows shuffled), labelling each row with probability `label_fraction`.
    pub fn generate(&self) -> SyntheticData {
        let truth = self.truth();
        let mut rng = rng_for(self.seed, b"synthetic-sample", 0);
        let (x, comps) = sample_gaussian_mixture(
            &truth.weights,
            &truth.means,
            &truth.covariances,
            self.n_samples,
            &mut rng,
        )
        .expect("A A^T + I/4 is positive definite");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_reproducible_and_recovers_weights() {
        let spec = SyntheticMixture {
            n_samples: 20_000,
            n_features: 2,
            n_components: 3,
            separation: 4.0,
            label_fraction: 0.1,
            seed: 3,
        };
        let a = spec.generate();
        let b = spec.generate();
        assert_eq!(a.data.x, b.data.x);
        let labels = a.data.labels.as_ref().unwrap();
        let frac = labels.iter().filter(|l| l.is_some()).count() as f64 / 20_000.0;
        assert!((frac - 0.1).abs() < 0.01, "{frac}");
        for j in 0..3 {
            let share = a.components.iter().filter(|&&c| c == j).count() as f64 / 20_000.0;
            assert!(
                (share - a.truth.weights[j]).abs() < 0.015,
                "{share} vs {}",
                a.truth.weights[j]
            );
        }
        assert!(spec.check().is_ok());
        assert_eq!(
            SyntheticMixture {
                n_samples: 2,
                ..spec
            }
            .check()
            .unwrap_err()
            .key,
            "n_samples"
        );
    }
}
