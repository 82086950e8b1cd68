//! Parameters of a mixture of multivariate Bernoullis, their M-step and their JSON form.
//!
//! ```text
//! p(x) = sum_j pi_j prod_a theta_ja^x_a (1 - theta_ja)^(1 - x_a),    x in {0, 1}^d
//! ```
//! In linear form `log p(x, z = j) = log pi_j + sum_a log(1 - theta_ja) + sum_a x_a logit(theta_ja)`.
//!
//! M-step from `N_j = sum_i r_ij` and `S_ja = sum_i r_ij x_ia`, with pseudo-counts `alpha` (a
//! `Beta(1 + alpha, 1 + alpha)` prior on every `theta_ja`; `alpha = 0` is maximum likelihood):
//! `theta_ja = (S_ja + alpha) / (N_j + 2 alpha)`, clamped into `[PROB_FLOOR, 1 - PROB_FLOOR]` — the
//! maximiser over that interval, since the objective is concave in each `theta_ja`. A component with
//! `N_j + 2 alpha = 0` (no rows, no prior) is not constrained by the objective and gets 1/2.

use emvae_core::config::InvalidParam;
use emvae_core::data::Dataset;
use serde::{Deserialize, Serialize};

use crate::EmError;
use crate::discrete::checks::{check_probs, check_weights};
use crate::discrete::engine::check_labels;
use crate::discrete::smoothing::{PROB_FLOOR, log_prior_weights, weights};
use crate::discrete::sparse::SparseRows;
use crate::discrete::stats::{LinearForm, MixtureStats, e_step};

/// Parameters of a Bernoulli mixture.
#[derive(Debug, Clone, PartialEq)]
pub struct BernoulliParameters {
    pub n_components: usize,
    pub n_features: usize,
    /// Mixing weights `pi_j`, `[k]`.
    pub weights: Vec<f64>,
    /// `theta_ja = p(x_a = 1 | z = j)`, `[k, d]` row-major.
    pub probs: Vec<f64>,
}

/// `theta` as the E-step uses it: inside `[PROB_FLOOR, 1 - PROB_FLOOR]`, so that a model file's exact 0
/// or 1 costs `-ln PROB_FLOOR` nats instead of giving `inf - inf`.
fn clamped(theta: f64) -> f64 {
    theta.clamp(PROB_FLOOR, 1.0 - PROB_FLOOR)
}

impl BernoulliParameters {
    /// Component `j`'s probabilities, `[d]`.
    pub fn prob(&self, j: usize) -> &[f64] {
        &self.probs[j * self.n_features..(j + 1) * self.n_features]
    }

    /// Number of free parameters: `k - 1` weights and `k d` probabilities.
    pub fn n_parameters(&self) -> usize {
        self.n_components * self.n_features + self.n_components - 1
    }

    /// The M-step (see the module documentation).
    pub fn from_stats(stats: &MixtureStats, alpha: f64, alpha_weights: f64) -> Self {
        let (k, d) = (stats.n_components(), stats.n_features());
        let mut probs = vec![0.5; k * d];
        for j in 0..k {
            let denominator = stats.nk[j] + 2.0 * alpha;
            if denominator > 0.0 {
                for a in 0..d {
                    probs[j * d + a] = clamped((stats.sum_x[a * k + j] + alpha) / denominator);
                }
            }
        }
        Self {
            n_components: k,
            n_features: d,
            weights: weights(&stats.nk, alpha_weights),
            probs,
        }
    }

    /// The E-step on `data` (labelled rows clamped): its expected sufficient statistics. Online
    /// (mini-batch) EM accumulates them over batches ([`MixtureStats::scale_add`]) and runs
    /// [`Self::from_stats`] on the running sum.
    pub fn expected_stats(&self, data: &Dataset) -> Result<MixtureStats, EmError> {
        if data.n_cols() != self.n_features {
            return Err(EmError::FeatureMismatch {
                expected: self.n_features,
                found: data.n_cols(),
            });
        }
        let labels = data.labels.as_deref();
        let (n, k) = (data.n_rows(), self.n_components);
        check_labels(n, k, labels, |m| data.error(m), |i, m| data.row_error(i, m))?;
        let x = SparseRows::from_binary(data)?;
        Ok(e_step(&x, &self.linear_form(), labels))
    }

    /// `w[a, j] = logit(theta_ja)`, `bias_j = log pi_j + sum_a log(1 - theta_ja)`.
    pub(crate) fn linear_form(&self) -> LinearForm {
        let (k, d) = (self.n_components, self.n_features);
        let mut w = vec![0.0; d * k];
        let mut bias: Vec<f64> = self.weights.iter().map(|p| p.ln()).collect();
        for j in 0..k {
            for (a, &t) in self.prob(j).iter().enumerate() {
                let t = clamped(t);
                let log_off = (-t).ln_1p();
                w[a * k + j] = t.ln() - log_off;
                bias[j] += log_off;
            }
        }
        LinearForm { w, bias }
    }

    /// `alpha sum_ja (log theta_ja + log(1 - theta_ja)) + alpha_weights sum_j log pi_j`.
    pub fn log_prior(&self, alpha: f64, alpha_weights: f64) -> f64 {
        let theta = if alpha == 0.0 {
            0.0
        } else {
            let s: f64 = self
                .probs
                .iter()
                .map(|&t| clamped(t).ln() + (-clamped(t)).ln_1p())
                .sum();
            alpha * s
        };
        theta + log_prior_weights(&self.weights, alpha_weights)
    }
}

/// The JSON form of [`BernoulliParameters`] (a model file's and a checkpoint's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BernoulliParametersJson {
    pub n_components: usize,
    pub n_features: usize,
    pub weights: Vec<f64>,
    /// `probs[j][a] = p(x_a = 1 | z = j)`.
    pub probs: Vec<Vec<f64>>,
}

impl From<&BernoulliParameters> for BernoulliParametersJson {
    fn from(p: &BernoulliParameters) -> Self {
        Self {
            n_components: p.n_components,
            n_features: p.n_features,
            weights: p.weights.clone(),
            probs: p
                .probs
                .chunks_exact(p.n_features)
                .map(<[f64]>::to_vec)
                .collect(),
        }
    }
}

/// Parameters read from a file: at least one component and feature, weights `>= 0` summing to 1,
/// `k` rows of `d` probabilities in `[0, 1]`. Errors name the field.
impl TryFrom<BernoulliParametersJson> for BernoulliParameters {
    type Error = InvalidParam;
    fn try_from(j: BernoulliParametersJson) -> Result<Self, InvalidParam> {
        let (k, d) = (j.n_components, j.n_features);
        for (key, v) in [("n_components", k), ("n_features", d)] {
            if v == 0 {
                return Err(InvalidParam::new(key, "must be at least 1, got 0"));
            }
        }
        check_weights(&j.weights, k, true).map_err(|e| InvalidParam::new("weights", e))?;
        let probs =
            check_probs(&j.probs, k, d, false).map_err(|e| InvalidParam::new("probs", e))?;
        Ok(Self {
            n_components: k,
            n_features: d,
            weights: j.weights,
            probs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An edit of a valid value and what the error must say.
    type Edit = (fn(&mut BernoulliParametersJson), &'static str, &'static str);

    fn stats() -> MixtureStats {
        // Two components, three features.
        MixtureStats {
            n_rows: 4.0,
            nk: vec![3.0, 1.0],
            sum_x: vec![3.0, 0.0, 1.5, 1.0, 0.0, 0.5],
            log_likelihood: 0.0,
        }
    }

    #[test]
    fn m_step_is_the_smoothed_frequency_clamped() {
        let p = BernoulliParameters::from_stats(&stats(), 0.0, 0.0);
        assert_eq!(p.prob(0), &[1.0 - PROB_FLOOR, 0.5, PROB_FLOOR]);
        assert_eq!(p.prob(1), &[PROB_FLOOR, 1.0 - PROB_FLOOR, 0.5]);
        assert!((p.weights[0] - 0.75).abs() < 1e-14);
        let p = BernoulliParameters::from_stats(&stats(), 1.0, 1.0);
        assert!((p.prob(0)[0] - 4.0 / 5.0).abs() < 1e-15);
        assert!((p.prob(1)[2] - 1.5 / 3.0).abs() < 1e-15);
        assert!((p.weights[1] - 2.0 / 6.0).abs() < 1e-14);
        let mut empty = stats();
        empty.nk[1] = 0.0;
        let p = BernoulliParameters::from_stats(&empty, 0.0, 0.0);
        assert_eq!(p.prob(1), &[0.5, 0.5, 0.5]);
    }

    #[test]
    fn linear_form_is_the_log_density() {
        let p = BernoulliParameters {
            n_components: 2,
            n_features: 2,
            weights: vec![0.4, 0.6],
            probs: vec![0.2, 0.9, 0.7, 0.5],
        };
        let f = p.linear_form();
        let x = [1.0, 0.0];
        for j in 0..2 {
            let direct = p.weights[j].ln()
                + (0..2)
                    .map(|a| {
                        let t = p.prob(j)[a];
                        x[a] * t.ln() + (1.0 - x[a]) * (1.0 - t).ln()
                    })
                    .sum::<f64>();
            let linear = f.bias[j] + x[0] * f.w[j] + x[1] * f.w[2 + j];
            assert!((direct - linear).abs() < 1e-14);
        }
        // A model file's 0 and 1 stay finite.
        let hard = BernoulliParameters {
            probs: vec![0.0, 1.0, 1.0, 0.0],
            ..p
        };
        let f = hard.linear_form();
        assert!(f.w.iter().chain(&f.bias).all(|v| v.is_finite()));
    }

    #[test]
    fn statistics_of_two_batches_add_up_to_those_of_both() {
        use emvae_core::data::Matrix;
        let p = BernoulliParameters {
            n_components: 2,
            n_features: 3,
            weights: vec![0.3, 0.7],
            probs: vec![0.9, 0.2, 0.5, 0.1, 0.6, 0.3],
        };
        let rows = [
            [1., 0., 1.],
            [0., 0., 1.],
            [1., 1., 1.],
            [0., 1., 0.],
            [1., 0., 0.],
        ];
        let batch = |r: &[[f64; 3]], labels: Vec<Option<usize>>| {
            let mut d = Dataset::new(Matrix::new(r.len(), 3, r.concat()), "batch");
            d.labels = Some(labels);
            p.expected_stats(&d).unwrap()
        };
        let all = batch(&rows, vec![None, Some(1), None, None, Some(0)]);
        let mut sum = batch(&rows[..2], vec![None, Some(1)]);
        sum.scale_add(&batch(&rows[2..], vec![None, None, Some(0)]), 1.0);
        assert_eq!(sum.n_rows, 5.0);
        for (a, b) in [(sum.log_likelihood, all.log_likelihood)]
            .into_iter()
            .chain(sum.nk.iter().copied().zip(all.nk.iter().copied()))
            .chain(sum.sum_x.iter().copied().zip(all.sum_x.iter().copied()))
        {
            assert!((a - b).abs() < 1e-14, "{a} {b}");
        }
        let mut bad = Dataset::new(Matrix::new(1, 3, vec![0.; 3]), "batch");
        bad.labels = Some(vec![Some(2)]);
        assert!(
            p.expected_stats(&bad)
                .unwrap_err()
                .to_string()
                .contains("label 2")
        );
    }

    #[test]
    fn model_file_errors_name_the_field() {
        let good = BernoulliParametersJson {
            n_components: 2,
            n_features: 2,
            weights: vec![0.5, 0.5],
            probs: vec![vec![0.1, 0.2], vec![0.3, 0.4]],
        };
        let p = BernoulliParameters::try_from(good.clone()).unwrap();
        assert_eq!(BernoulliParametersJson::from(&p), good);
        let cases: [Edit; 5] = [
            (|j| j.n_features = 0, "n_features", "at least 1"),
            (|j| j.weights = vec![0.5, 0.6], "weights", "sum to 1"),
            (|j| j.weights = vec![1.0], "weights", "1 entries"),
            (|j| j.probs[1][0] = -0.1, "probs", "[1][0] is -0.1"),
            (|j| j.probs[0].push(0.5), "probs", "row 0 has 3"),
        ];
        for (edit, key, needle) in cases {
            let mut j = good.clone();
            edit(&mut j);
            let e = BernoulliParameters::try_from(j).unwrap_err();
            assert_eq!(e.key, key);
            assert!(e.message.contains(needle), "{e}");
        }
    }
}
