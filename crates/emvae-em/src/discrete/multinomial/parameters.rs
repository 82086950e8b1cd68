//! Parameters of a mixture of multinomials (unigrams), their M-step and their JSON form.
//!
//! ```text
//! p(doc) = sum_j pi_j prod_w theta_jw^c_w
//! ```
//! for a document with `c_w` tokens of word `w`: the probability of its word sequence, without the
//! multinomial coefficient `(sum_w c_w)! / prod_w c_w!`. The coefficient is the same for every component
//! and every parameter, so it changes no posterior and no fit, only the value of the likelihood; left
//! out, the likelihood is that of the text as written, which per-document negative log-likelihood and
//! perplexity of text need. In linear form `log p(doc, z = j) = log pi_j + sum_w c_w log theta_jw`.
//!
//! M-step from `N_j` and the expected counts `S_jw = sum_i r_ij c_iw`, with pseudo-count `alpha` (a
//! symmetric Dirichlet prior of concentration `1 + alpha` on every `theta_j`): `theta_jw` proportional to
//! `S_jw + alpha`, but at least [`PROB_FLOOR`](crate::discrete::PROB_FLOOR) — the exact maximiser under
//! that constraint (see [`floored_proportions`]). With `alpha = 0` (maximum likelihood) a word never seen
//! in a component thus keeps a tiny probability instead of 0, so documents with unseen words score a
//! finite log-likelihood and EM can start from a few documents per component.

use emvae_core::config::InvalidParam;
use serde::{Deserialize, Serialize};

use super::corpus::BagOfWords;
use crate::EmError;
use crate::discrete::checks::{check_probs, check_weights};
use crate::discrete::engine::check_labels;
use crate::discrete::smoothing::{floor_for, floored_proportions, log_prior_weights, weights};
use crate::discrete::stats::{LinearForm, MixtureStats, e_step};

/// Parameters of a multinomial mixture.
#[derive(Debug, Clone, PartialEq)]
pub struct MultinomialParameters {
    pub n_components: usize,
    pub vocab_size: usize,
    /// Mixing weights `pi_j`, `[k]`.
    pub weights: Vec<f64>,
    /// `theta_jw = p(word w | z = j)`, `[k, V]` row-major, rows summing to 1.
    pub probs: Vec<f64>,
}

impl MultinomialParameters {
    /// Component `j`'s word distribution, `[V]`.
    pub fn prob(&self, j: usize) -> &[f64] {
        &self.probs[j * self.vocab_size..(j + 1) * self.vocab_size]
    }

    /// Number of free parameters: `k - 1` weights and `k (V - 1)` word probabilities.
    pub fn n_parameters(&self) -> usize {
        self.n_components * (self.vocab_size - 1) + self.n_components - 1
    }

    /// The M-step (see the module documentation).
    pub fn from_stats(stats: &MixtureStats, alpha: f64, alpha_weights: f64) -> Self {
        let (k, v) = (stats.n_components(), stats.n_features());
        let floor = floor_for(v);
        let mut probs = Vec::with_capacity(k * v);
        let mut counts = vec![0.0; v];
        for j in 0..k {
            for (w, c) in counts.iter_mut().enumerate() {
                *c = stats.sum_x[w * k + j] + alpha;
            }
            probs.extend(floored_proportions(&counts, floor));
        }
        Self {
            n_components: k,
            vocab_size: v,
            weights: weights(&stats.nk, alpha_weights),
            probs,
        }
    }

    /// The E-step on `docs` (labelled ones clamped): its expected sufficient statistics. Online
    /// (mini-batch) EM accumulates them over batches ([`MixtureStats::scale_add`]) and runs
    /// [`Self::from_stats`] on the running sum.
    pub fn expected_stats(&self, docs: &BagOfWords) -> Result<MixtureStats, EmError> {
        if docs.vocab_size() != self.vocab_size {
            return Err(EmError::FeatureMismatch {
                expected: self.vocab_size,
                found: docs.vocab_size(),
            });
        }
        let labels = docs.labels.as_deref();
        let (n, k) = (docs.n_documents(), self.n_components);
        check_labels(n, k, labels, |m| docs.error(m), |i, m| docs.row_error(i, m))?;
        Ok(e_step(&docs.x, &self.linear_form(), labels))
    }

    /// `w[w, j] = log theta_jw`, `bias_j = log pi_j`. A zero probability (possible in a model file)
    /// gives `-inf`: documents using that word have probability 0 under that component.
    pub(crate) fn linear_form(&self) -> LinearForm {
        let (k, v) = (self.n_components, self.vocab_size);
        let mut w = vec![0.0; v * k];
        for j in 0..k {
            for (word, &t) in self.prob(j).iter().enumerate() {
                w[word * k + j] = t.ln();
            }
        }
        LinearForm {
            w,
            bias: self.weights.iter().map(|p| p.ln()).collect(),
        }
    }

    /// `alpha sum_jw log theta_jw + alpha_weights sum_j log pi_j`.
    pub fn log_prior(&self, alpha: f64, alpha_weights: f64) -> f64 {
        let theta = if alpha == 0.0 {
            0.0
        } else {
            alpha * self.probs.iter().map(|t| t.ln()).sum::<f64>()
        };
        theta + log_prior_weights(&self.weights, alpha_weights)
    }
}

/// The JSON form of [`MultinomialParameters`] (a model file's and a checkpoint's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultinomialParametersJson {
    pub n_components: usize,
    pub vocab_size: usize,
    pub weights: Vec<f64>,
    /// `probs[j][w] = p(word w | z = j)`.
    pub probs: Vec<Vec<f64>>,
}

impl From<&MultinomialParameters> for MultinomialParametersJson {
    fn from(p: &MultinomialParameters) -> Self {
        Self {
            n_components: p.n_components,
            vocab_size: p.vocab_size,
            weights: p.weights.clone(),
            probs: p
                .probs
                .chunks_exact(p.vocab_size)
                .map(<[f64]>::to_vec)
                .collect(),
        }
    }
}

/// Parameters read from a file: at least one component and word, weights `>= 0` summing to 1, `k` rows
/// of `V` probabilities in `[0, 1]` each summing to 1. Errors name the field.
impl TryFrom<MultinomialParametersJson> for MultinomialParameters {
    type Error = InvalidParam;
    fn try_from(j: MultinomialParametersJson) -> Result<Self, InvalidParam> {
        let (k, v) = (j.n_components, j.vocab_size);
        for (key, n) in [("n_components", k), ("vocab_size", v)] {
            if n == 0 {
                return Err(InvalidParam::new(key, "must be at least 1, got 0"));
            }
        }
        check_weights(&j.weights, k, true).map_err(|e| InvalidParam::new("weights", e))?;
        let probs = check_probs(&j.probs, k, v, true).map_err(|e| InvalidParam::new("probs", e))?;
        Ok(Self {
            n_components: k,
            vocab_size: v,
            weights: j.weights,
            probs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discrete::smoothing::PROB_FLOOR;

    /// An edit of a valid value and what the error must say.
    type Edit = (
        fn(&mut MultinomialParametersJson),
        &'static str,
        &'static str,
    );

    #[test]
    fn m_step_is_the_smoothed_word_frequency() {
        // Two components, three words; component 1 never saw word 0.
        let stats = MixtureStats {
            n_rows: 3.0,
            nk: vec![2.0, 1.0],
            sum_x: vec![4.0, 0.0, 2.0, 1.0, 2.0, 3.0],
            log_likelihood: 0.0,
        };
        let p = MultinomialParameters::from_stats(&stats, 1.0, 0.0);
        assert!((p.prob(0)[0] - 5.0 / 11.0).abs() < 1e-15);
        assert!((p.prob(1)[0] - 1.0 / 7.0).abs() < 1e-15);
        let p = MultinomialParameters::from_stats(&stats, 0.0, 0.0);
        assert!((p.prob(0)[2] - 2.0 / 8.0).abs() < 1e-15);
        assert_eq!(p.prob(1)[0], PROB_FLOOR);
        assert!((p.prob(1).iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!(p.linear_form().w.iter().all(|w| w.is_finite()));
        assert_eq!(p.n_parameters(), 2 * 2 + 1);
    }

    #[test]
    fn model_file_errors_name_the_field() {
        let good = MultinomialParametersJson {
            n_components: 2,
            vocab_size: 2,
            weights: vec![0.5, 0.5],
            probs: vec![vec![0.1, 0.9], vec![0.3, 0.7]],
        };
        let p = MultinomialParameters::try_from(good.clone()).unwrap();
        assert_eq!(MultinomialParametersJson::from(&p), good);
        let cases: [Edit; 4] = [
            (|j| j.vocab_size = 0, "vocab_size", "at least 1"),
            (|j| j.weights = vec![0.2, 0.2], "weights", "sum to 1"),
            (
                |j| j.probs[1] = vec![0.3, 0.6],
                "probs",
                "row 1 must sum to 1",
            ),
            (|j| j.probs[0][1] = 1.9, "probs", "[0][1] is 1.9"),
        ];
        for (edit, key, needle) in cases {
            let mut j = good.clone();
            edit(&mut j);
            let e = MultinomialParameters::try_from(j).unwrap_err();
            assert_eq!(e.key, key);
            assert!(e.message.contains(needle), "{e}");
        }
    }
}
