//! A fitted hidden Markov model: hmmlearn's `score`, `score_samples`, `decode`, `predict`,
//! `predict_proba` and `sample`, and its model file.

use std::ops::Range;

use emvae_core::config::InvalidParam;
use emvae_core::data::Matrix;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::data::Sequences;
use super::estep::impossible;
use super::forward_backward::{ForwardBackward, Want};
use super::parameters::{HmmParameters, HmmParametersJson};
use super::viterbi::Viterbi;
use crate::EmError;

/// Format tag of the model file.
pub const MODEL_FORMAT: &str = "emvae.hmm.v1";

/// A hidden Markov model fitted by Baum-Welch.
#[derive(Debug, Clone, PartialEq)]
pub struct Hmm {
    pub parameters: HmmParameters,
    /// Whether the best restart converged (its last change was below `tol`).
    pub converged: bool,
    /// Iterations of the best restart.
    pub n_iter: usize,
    /// Average log-likelihood per observation entering the last E-step of the best restart.
    pub lower_bound: f64,
    /// The best restart's trajectory of average log-likelihoods per observation, one per iteration.
    pub lower_bounds: Vec<f64>,
    /// Which restart was best (0-based).
    pub best_restart: usize,
}

/// The model file: parameters as nested JSON arrays plus the fit's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmmJson {
    pub format: String,
    #[serde(flatten)]
    pub parameters: HmmParametersJson,
    pub converged: bool,
    pub n_iter: usize,
    pub lower_bound: f64,
    pub lower_bounds: Vec<f64>,
    pub best_restart: usize,
}

impl From<&Hmm> for HmmJson {
    fn from(m: &Hmm) -> Self {
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

/// A model file, validated: errors name the field (see [`HmmParameters`]'s `TryFrom`).
impl TryFrom<HmmJson> for Hmm {
    type Error = InvalidParam;
    fn try_from(j: HmmJson) -> Result<Self, InvalidParam> {
        if j.format != MODEL_FORMAT {
            let m = format!(
                "`{}` is not a hidden Markov model (`{MODEL_FORMAT}`)",
                j.format
            );
            return Err(InvalidParam::new("format", m));
        }
        Ok(Self {
            parameters: HmmParameters::try_from(j.parameters)?,
            converged: j.converged,
            n_iter: j.n_iter,
            lower_bound: j.lower_bound,
            lower_bounds: j.lower_bounds,
            best_restart: j.best_restart,
        })
    }
}

/// The most probable state path of one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// `log p(x, z*)`, the joint log-probability of the sequence and the path.
    pub log_prob: f64,
    pub states: Vec<usize>,
}

impl Hmm {
    pub fn n_states(&self) -> usize {
        self.parameters.n_states()
    }

    /// Number of free parameters (for BIC and AIC).
    pub fn n_parameters(&self) -> usize {
        self.parameters.n_parameters()
    }

    /// `f(s, rows)` for every sequence `s` (at `rows` of the concatenation) in parallel, in sequence
    /// order, once the data are checked against the model.
    fn per_sequence<T: Send>(
        &self,
        data: &Sequences,
        f: impl Fn(usize, Range<usize>) -> T + Sync,
    ) -> Result<Vec<T>, EmError> {
        self.parameters.check_data(data)?;
        let offsets = data.offsets();
        Ok((0..data.n_sequences())
            .into_par_iter()
            .map(|s| f(s, offsets[s]..offsets[s] + data.lengths[s]))
            .collect())
    }

    /// `log p(x_s)` of every sequence (hmmlearn's `score` of each alone); `-inf` for an impossible one.
    pub fn score_sequences(&self, data: &Sequences) -> Result<Vec<f64>, EmError> {
        let (p, k) = (&self.parameters, self.n_states());
        self.per_sequence(data, |_, rows| {
            ForwardBackward::new(k).run(p, &data.observations, rows, Want::LogLikelihood)
        })
    }

    /// Total log-likelihood `sum_s log p(x_s)` (hmmlearn's `score`).
    pub fn total_score(&self, data: &Sequences) -> Result<f64, EmError> {
        Ok(self.score_sequences(data)?.iter().sum())
    }

    /// Average log-likelihood per observation, `sum_s log p(x_s) / sum_s T_s` (what `tol` is on).
    pub fn score(&self, data: &Sequences) -> Result<f64, EmError> {
        Ok(self.total_score(data)? / data.n_observations() as f64)
    }

    /// `(BIC, AIC)` for a total log-likelihood over `n_observations`: `-2 L + p ln n`, `-2 L + 2 p`.
    pub fn criteria(&self, total_log_likelihood: f64, n_observations: usize) -> (f64, f64) {
        let (n, p) = (n_observations as f64, self.n_parameters() as f64);
        let l = total_log_likelihood;
        (-2.0 * l + p * n.ln(), -2.0 * l + 2.0 * p)
    }

    /// The Viterbi path of every sequence with its log-probability (hmmlearn's `decode`).
    pub fn decode(&self, data: &Sequences) -> Result<Vec<Decoded>, EmError> {
        let viterbi = Viterbi::new(&self.parameters.startprob, &self.parameters.transmat);
        let k = self.n_states();
        self.per_sequence(data, |_, rows| {
            let mut log_b = vec![0.0; rows.len() * k];
            let e = &self.parameters.emissions;
            e.log_likelihoods(&data.observations, rows, &mut log_b);
            let (log_prob, states) = viterbi.decode(&log_b);
            Decoded { log_prob, states }
        })
    }

    /// The Viterbi state path of every sequence.
    pub fn predict(&self, data: &Sequences) -> Result<Vec<Vec<usize>>, EmError> {
        Ok(self.decode(data)?.into_iter().map(|d| d.states).collect())
    }

    /// Posterior state marginals `p(z_t = j | x_s)`, one row per observation (sequences concatenated),
    /// `[n_observations, k]`. An impossible sequence is an error naming it.
    pub fn predict_proba(&self, data: &Sequences) -> Result<Matrix, EmError> {
        let p = &self.parameters;
        let k = p.n_states();
        let per = self.per_sequence(data, |s, rows| {
            let mut fb = ForwardBackward::new(k);
            let n = rows.len() * k;
            let log_prob = fb.run(p, &data.observations, rows, Want::Posteriors);
            if log_prob.is_finite() {
                fb.gamma.truncate(n);
                Ok(fb.gamma)
            } else {
                Err(impossible(data, s, log_prob))
            }
        })?;
        let mut values = Vec::with_capacity(data.n_observations() * k);
        for gamma in per {
            values.extend(gamma?);
        }
        Ok(Matrix::new(data.n_observations(), k, values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gmm::CovarianceType;
    use crate::hmm::{Emissions, GaussianEmissions};

    fn model() -> Hmm {
        let g = GaussianEmissions::new(CovarianceType::Diag, 1, vec![0.0, 5.0], vec![1.0, 1.0]);
        Hmm {
            parameters: HmmParameters {
                startprob: vec![0.5, 0.5],
                transmat: vec![0.9, 0.1, 0.1, 0.9],
                emissions: Emissions::Gaussian(g.unwrap()),
            },
            converged: true,
            n_iter: 3,
            lower_bound: -1.5,
            lower_bounds: vec![-2.0, -1.6, -1.5],
            best_restart: 0,
        }
    }

    #[test]
    fn model_file_round_trips_and_rejects_unknown_fields() {
        let m = model();
        let text = serde_json::to_string(&HmmJson::from(&m)).unwrap();
        assert!(text.contains("\"format\":\"emvae.hmm.v1\""), "{text}");
        let back: HmmJson = serde_json::from_str(&text).unwrap();
        assert_eq!(Hmm::try_from(back).unwrap(), m);
        let e = serde_json::from_str::<HmmJson>(&text.replace("\"converged\"", "\"convergd\""));
        assert!(e.is_err());
        let mut j = HmmJson::from(&m);
        j.format = "emvae.gmm.v1".into();
        assert_eq!(Hmm::try_from(j).unwrap_err().key, "format");
    }

    #[test]
    fn predictions_on_wrong_data_are_errors() {
        let m = model();
        let symbols = Sequences::categorical(&[vec![0, 1]], 2, "s").unwrap();
        let e = m.score(&symbols).unwrap_err();
        assert!(e.to_string().contains("gaussian emissions"), "{e}");
        let wide = Sequences::gaussian(Matrix::new(2, 2, vec![0.0; 4]), None, "w").unwrap();
        assert!(matches!(
            m.predict(&wide),
            Err(EmError::FeatureMismatch {
                expected: 1,
                found: 2
            })
        ));
        let x = Sequences::gaussian(Matrix::new(3, 1, vec![0.1, 4.9, 5.2]), None, "x").unwrap();
        assert_eq!(m.predict(&x).unwrap(), vec![vec![0, 1, 1]]);
        let proba = m.predict_proba(&x).unwrap();
        assert!(
            proba
                .rows()
                .all(|r| (r.iter().sum::<f64>() - 1.0).abs() < 1e-12)
        );
    }
}
