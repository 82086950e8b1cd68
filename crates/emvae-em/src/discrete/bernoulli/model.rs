//! A fitted Bernoulli mixture: `score_samples`, `score`, `predict_proba`, `predict`, `sample`,
//! information criteria, and its model file.

use emvae_core::config::InvalidParam;
use emvae_core::data::{Dataset, Matrix};
use emvae_core::rng::rng_for;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use super::parameters::{BernoulliParameters, BernoulliParametersJson};
use crate::EmError;
use crate::discrete::model::{FitSummary, argmax_rows, draw_categorical};
use crate::discrete::sparse::SparseRows;
use crate::discrete::stats::{Posterior, posterior};
use crate::driver::EmFit;

/// Format tag of the model file.
pub const MODEL_FORMAT: &str = "emvae.bernoulli_mixture.v1";

/// A mixture of multivariate Bernoullis fitted by EM.
#[derive(Debug, Clone, PartialEq)]
pub struct BernoulliMixture {
    pub parameters: BernoulliParameters,
    /// Whether the best restart converged (its last change was below `tol`).
    pub converged: bool,
    /// EM iterations of the best restart.
    pub n_iter: usize,
    /// The objective entering the last E-step of the best restart: the average log-likelihood, or
    /// with smoothing the average log posterior `(sum_i log p(x_i) + log p(params)) / n`.
    pub lower_bound: f64,
    /// The best restart's objective, one per iteration.
    pub lower_bounds: Vec<f64>,
    /// Which restart was best (0-based).
    pub best_restart: usize,
}

/// The model file: parameters plus the fit's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BernoulliMixtureJson {
    pub format: String,
    #[serde(flatten)]
    pub parameters: BernoulliParametersJson,
    pub converged: bool,
    pub n_iter: usize,
    pub lower_bound: f64,
    pub lower_bounds: Vec<f64>,
    pub best_restart: usize,
}

impl From<&BernoulliMixture> for BernoulliMixtureJson {
    fn from(m: &BernoulliMixture) -> Self {
        Self {
            format: MODEL_FORMAT.into(),
            parameters: (&m.parameters).into(),
            converged: m.converged,
            n_iter: m.n_iter,
            lower_bound: m.lower_bound,
            lower_bounds: m.lower_bounds.clone(),
            best_restart: m.best_restart,
        }
    }
}

/// A model file, validated: errors name the field (see [`BernoulliParameters`]'s `TryFrom`).
impl TryFrom<BernoulliMixtureJson> for BernoulliMixture {
    type Error = InvalidParam;
    fn try_from(j: BernoulliMixtureJson) -> Result<Self, InvalidParam> {
        if j.format != MODEL_FORMAT {
            return Err(InvalidParam::new(
                "format",
                format!(
                    "`{}` is not a Bernoulli mixture (`{MODEL_FORMAT}`)",
                    j.format
                ),
            ));
        }
        let s = FitSummary::checked(j.n_iter, j.lower_bound, j.lower_bounds, j.best_restart)?;
        Ok(Self {
            parameters: BernoulliParameters::try_from(j.parameters)?,
            converged: j.converged,
            n_iter: s.n_iter,
            lower_bound: s.lower_bound,
            lower_bounds: s.lower_bounds,
            best_restart: s.best_restart,
        })
    }
}

impl BernoulliMixture {
    pub(crate) fn from_fit(fit: EmFit<BernoulliParameters>) -> Self {
        Self {
            converged: fit.converged,
            n_iter: fit.n_iter(),
            lower_bound: fit.lower_bound(),
            lower_bounds: fit.lower_bounds,
            best_restart: fit.best_restart,
            parameters: fit.params,
        }
    }

    pub fn n_components(&self) -> usize {
        self.parameters.n_components
    }

    pub fn n_features(&self) -> usize {
        self.parameters.n_features
    }

    /// The posterior of every row of `data` (labels ignored).
    fn posterior(&self, data: &Dataset) -> Result<Posterior, EmError> {
        if data.n_cols() != self.n_features() {
            return Err(EmError::FeatureMismatch {
                expected: self.n_features(),
                found: data.n_cols(),
            });
        }
        let x = SparseRows::from_binary(data)?;
        Ok(posterior(&x, &self.parameters.linear_form(), None))
    }

    /// `log p(x_i) = logsumexp_j (log pi_j + log p(x_i | z = j))` per row (labels ignored).
    pub fn score_samples(&self, data: &Dataset) -> Result<Vec<f64>, EmError> {
        Ok(self.posterior(data)?.log_norm)
    }

    /// Average log-likelihood `1/n sum_i log p(x_i)`.
    pub fn score(&self, data: &Dataset) -> Result<f64, EmError> {
        let s = self.score_samples(data)?;
        if s.is_empty() {
            return Err(data.error("no rows to score").into());
        }
        Ok(s.iter().sum::<f64>() / s.len() as f64)
    }

    /// Posterior responsibilities `p(z = j | x_i)`, `[n, k]`.
    pub fn predict_proba(&self, data: &Dataset) -> Result<Matrix, EmError> {
        let resp = self.posterior(data)?.resp;
        Ok(Matrix::new(data.n_rows(), self.n_components(), resp))
    }

    /// The most probable component of every row.
    pub fn predict(&self, data: &Dataset) -> Result<Vec<usize>, EmError> {
        Ok(argmax_rows(&self.predict_proba(data)?))
    }

    /// Number of free parameters: `k - 1` weights and `k d` probabilities.
    pub fn n_parameters(&self) -> usize {
        self.parameters.n_parameters()
    }

    /// `(BIC, AIC)` of `n` rows whose average log-likelihood is `score`: `-2 n score + p ln n` and
    /// `-2 n score + 2 p` (lower is better).
    pub fn criteria(&self, score: f64, n: usize) -> (f64, f64) {
        FitSummary::criteria(score, n, self.n_parameters())
    }

    /// Draws `n` rows `[n, d]` with their components: `z ~ Categorical(pi)`, then
    /// `x_a ~ Bernoulli(theta_za)`. Depends only on `seed`.
    pub fn sample(&self, n: usize, seed: u64) -> (Matrix, Vec<usize>) {
        let p = &self.parameters;
        let mut rng = rng_for(seed, b"bernoulli-mixture-sample", 0);
        let mut values = Vec::with_capacity(n * p.n_features);
        let mut components = Vec::with_capacity(n);
        for _ in 0..n {
            let j = draw_categorical(&p.weights, &mut rng);
            components.push(j);
            values.extend(
                p.prob(j)
                    .iter()
                    .map(|&t| f64::from(rng.random::<f64>() < t)),
            );
        }
        (Matrix::new(n, p.n_features, values), components)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discrete::bernoulli::BernoulliMixtureParams;
    use crate::discrete::testing::best_permutation;

    fn truth() -> BernoulliMixture {
        let d = 16;
        // Three well separated patterns.
        let pattern = |j: usize, a: usize| match (j, a % 3 == j) {
            (_, true) => 0.85,
            (0, false) => 0.1,
            (1, false) => 0.25,
            _ => 0.05,
        };
        BernoulliMixture {
            parameters: BernoulliParameters {
                n_components: 3,
                n_features: d,
                weights: vec![0.5, 0.3, 0.2],
                probs: (0..3)
                    .flat_map(|j| (0..d).map(move |a| pattern(j, a)))
                    .collect(),
            },
            converged: true,
            n_iter: 0,
            lower_bound: 0.0,
            lower_bounds: vec![],
            best_restart: 0,
        }
    }

    #[test]
    fn known_parameters_are_recovered() {
        let truth = truth();
        let (x, z) = truth.sample(4000, 11);
        let data = Dataset::new(x, "sampled");
        let fit = BernoulliMixtureParams::new(3)
            .n_init(3)
            .seed(2)
            .check()
            .unwrap()
            .fit(&data)
            .unwrap();
        let (t, f) = (&truth.parameters, &fit.parameters);
        let distance = |j: usize, l: usize| {
            (0..t.n_features)
                .map(|a| (t.prob(j)[a] - f.prob(l)[a]).abs())
                .sum::<f64>()
        };
        let perm = best_permutation(3, distance);
        for j in 0..3 {
            let l = perm[j];
            assert!(
                (t.weights[j] - f.weights[l]).abs() < 0.03,
                "{:?}",
                f.weights
            );
            let worst = (0..t.n_features)
                .map(|a| (t.prob(j)[a] - f.prob(l)[a]).abs())
                .fold(0.0, f64::max);
            assert!(worst < 0.06, "component {j}: {worst}");
        }
        // Nearly every row is assigned to the component that drew it.
        let predicted = fit.predict(&data).unwrap();
        let agree = z
            .iter()
            .zip(&predicted)
            .filter(|(z, p)| perm[**z] == **p)
            .count();
        assert!(agree as f64 > 0.95 * z.len() as f64, "{agree}");
    }

    #[test]
    fn scores_criteria_and_the_model_file() {
        let m = truth();
        let (x, _) = m.sample(50, 1);
        let data = Dataset::new(x, "sampled");
        let s = m.score_samples(&data).unwrap();
        let proba = m.predict_proba(&data).unwrap();
        let p = &m.parameters;
        for (i, row) in data.x.rows().enumerate() {
            let joint: Vec<f64> = (0..3)
                .map(|j| {
                    p.weights[j]
                        * row
                            .iter()
                            .zip(p.prob(j))
                            .map(|(x, t)| if *x == 1.0 { *t } else { 1.0 - t })
                            .product::<f64>()
                })
                .collect();
            let total: f64 = joint.iter().sum();
            assert!((s[i] - total.ln()).abs() < 1e-12);
            assert!((proba.row(i)[2] - joint[2] / total).abs() < 1e-12);
        }
        let score = m.score(&data).unwrap();
        let (bic, aic) = m.criteria(score, 50);
        assert_eq!(m.n_parameters(), 3 * 16 + 2);
        assert!((bic - (-100.0 * score + 50.0 * 50f64.ln())).abs() < 1e-9);
        assert!((aic - (-100.0 * score + 100.0)).abs() < 1e-9);
        let json = serde_json::to_string(&BernoulliMixtureJson::from(&m)).unwrap();
        let back: BernoulliMixtureJson = serde_json::from_str(&json).unwrap();
        assert_eq!(BernoulliMixture::try_from(back.clone()).unwrap(), m);
        let e = BernoulliMixture::try_from(BernoulliMixtureJson {
            format: "emvae.gmm.v1".into(),
            ..back
        })
        .unwrap_err();
        assert_eq!(e.key, "format");
        let extra = json.replacen('{', "{\"extra\":1,", 1);
        assert!(serde_json::from_str::<BernoulliMixtureJson>(&extra).is_err());
        let wide = Dataset::new(Matrix::new(1, 3, vec![0.0; 3]), "wide");
        assert!(matches!(
            m.score(&wide),
            Err(EmError::FeatureMismatch {
                expected: 16,
                found: 3
            })
        ));
    }
}
