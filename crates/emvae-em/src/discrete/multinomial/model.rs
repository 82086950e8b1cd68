//! A fitted multinomial mixture: `score_samples`, `score`, `perplexity`, `predict_proba`, `predict`,
//! `sample`, information criteria, and its model file.

use emvae_core::config::InvalidParam;
use emvae_core::data::Matrix;
use emvae_core::rng::rng_for;
use serde::{Deserialize, Serialize};

use super::corpus::BagOfWords;
use super::parameters::{MultinomialParameters, MultinomialParametersJson};
use crate::EmError;
use crate::discrete::model::{Cumulative, FitSummary, argmax_rows, draw_categorical};
use crate::discrete::stats::{Posterior, posterior};
use crate::driver::EmFit;

/// Format tag of the model file.
pub const MODEL_FORMAT: &str = "emvae.multinomial_mixture.v1";

/// A mixture of multinomials (of unigrams) fitted by EM.
#[derive(Debug, Clone, PartialEq)]
pub struct MultinomialMixture {
    pub parameters: MultinomialParameters,
    /// Whether the best restart converged (its last change was below `tol`).
    pub converged: bool,
    /// EM iterations of the best restart.
    pub n_iter: usize,
    /// The objective entering the last E-step of the best restart: the average log-likelihood, or
    /// with smoothing the average log posterior `(sum_i log p(doc_i) + log p(params)) / n`.
    pub lower_bound: f64,
    /// The best restart's objective, one per iteration.
    pub lower_bounds: Vec<f64>,
    /// Which restart was best (0-based).
    pub best_restart: usize,
}

/// The model file: parameters plus the fit's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultinomialMixtureJson {
    pub format: String,
    #[serde(flatten)]
    pub parameters: MultinomialParametersJson,
    pub converged: bool,
    pub n_iter: usize,
    pub lower_bound: f64,
    pub lower_bounds: Vec<f64>,
    pub best_restart: usize,
}

impl From<&MultinomialMixture> for MultinomialMixtureJson {
    fn from(m: &MultinomialMixture) -> Self {
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

/// A model file, validated: errors name the field (see [`MultinomialParameters`]'s `TryFrom`).
impl TryFrom<MultinomialMixtureJson> for MultinomialMixture {
    type Error = InvalidParam;
    fn try_from(j: MultinomialMixtureJson) -> Result<Self, InvalidParam> {
        if j.format != MODEL_FORMAT {
            return Err(InvalidParam::new(
                "format",
                format!(
                    "`{}` is not a multinomial mixture (`{MODEL_FORMAT}`)",
                    j.format
                ),
            ));
        }
        let s = FitSummary::checked(j.n_iter, j.lower_bound, j.lower_bounds, j.best_restart)?;
        Ok(Self {
            parameters: MultinomialParameters::try_from(j.parameters)?,
            converged: j.converged,
            n_iter: s.n_iter,
            lower_bound: s.lower_bound,
            lower_bounds: s.lower_bounds,
            best_restart: s.best_restart,
        })
    }
}

impl MultinomialMixture {
    pub(crate) fn from_fit(fit: EmFit<MultinomialParameters>) -> Self {
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

    pub fn vocab_size(&self) -> usize {
        self.parameters.vocab_size
    }

    /// The posterior of every document (labels ignored).
    fn posterior(&self, docs: &BagOfWords) -> Result<Posterior, EmError> {
        if docs.vocab_size() != self.vocab_size() {
            return Err(EmError::FeatureMismatch {
                expected: self.vocab_size(),
                found: docs.vocab_size(),
            });
        }
        Ok(posterior(&docs.x, &self.parameters.linear_form(), None))
    }

    /// `log p(doc_i)` per document: the log-probability of its word sequence (labels ignored). An empty
    /// document has log-probability 0.
    pub fn score_samples(&self, docs: &BagOfWords) -> Result<Vec<f64>, EmError> {
        Ok(self.posterior(docs)?.log_norm)
    }

    /// Average log-likelihood per document `1/n sum_i log p(doc_i)`.
    pub fn score(&self, docs: &BagOfWords) -> Result<f64, EmError> {
        let s = self.score_samples(docs)?;
        if s.is_empty() {
            return Err(docs.error("no documents to score").into());
        }
        Ok(s.iter().sum::<f64>() / s.len() as f64)
    }

    /// Per-token perplexity `exp(-sum_i log p(doc_i) / sum_i |doc_i|)`.
    pub fn perplexity(&self, docs: &BagOfWords) -> Result<f64, EmError> {
        let total: f64 = self.score_samples(docs)?.iter().sum();
        let tokens: u64 = docs.lengths().iter().sum();
        if tokens == 0 {
            return Err(docs.error("the documents have no tokens").into());
        }
        Ok((-total / tokens as f64).exp())
    }

    /// Posterior responsibilities `p(z = j | doc_i)`, `[n, k]`.
    pub fn predict_proba(&self, docs: &BagOfWords) -> Result<Matrix, EmError> {
        let resp = self.posterior(docs)?.resp;
        Ok(Matrix::new(docs.n_documents(), self.n_components(), resp))
    }

    /// The most probable component of every document.
    pub fn predict(&self, docs: &BagOfWords) -> Result<Vec<usize>, EmError> {
        Ok(argmax_rows(&self.predict_proba(docs)?))
    }

    /// Number of free parameters: `k - 1` weights and `k (V - 1)` word probabilities.
    pub fn n_parameters(&self) -> usize {
        self.parameters.n_parameters()
    }

    /// `(BIC, AIC)` of `n` documents whose average log-likelihood is `score`: `-2 n score + p ln n`
    /// and `-2 n score + 2 p` (lower is better).
    pub fn criteria(&self, score: f64, n: usize) -> (f64, f64) {
        FitSummary::criteria(score, n, self.n_parameters())
    }

    /// Token sequences of the given lengths with their components: `z ~ Categorical(pi)`, then every
    /// token `~ Categorical(theta_z)`. Depends only on `seed`.
    pub fn sample_sequences(&self, lengths: &[usize], seed: u64) -> (Vec<Vec<usize>>, Vec<usize>) {
        let p = &self.parameters;
        let words: Vec<Cumulative> = (0..p.n_components)
            .map(|j| Cumulative::new(p.prob(j)))
            .collect();
        let mut rng = rng_for(seed, b"multinomial-mixture-sample", 0);
        lengths
            .iter()
            .map(|&len| {
                let j = draw_categorical(&p.weights, &mut rng);
                ((0..len).map(|_| words[j].draw(&mut rng)).collect(), j)
            })
            .unzip()
    }

    /// `n` documents of `length` tokens each, as counts, with their components.
    pub fn sample(&self, n: usize, length: usize, seed: u64) -> (BagOfWords, Vec<usize>) {
        let (seqs, z) = self.sample_sequences(&vec![length; n], seed);
        let source = "sampled documents".into();
        (
            BagOfWords::from_checked_sequences(&seqs, self.vocab_size(), source),
            z,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discrete::MultinomialMixtureParams;
    use crate::discrete::testing::best_permutation;

    fn truth() -> MultinomialMixture {
        let v = 30;
        // Each topic favours its own third of the vocabulary, with a gentle slope inside it.
        let topic = |j: usize| {
            let raw: Vec<f64> = (0..v)
                .map(|w| {
                    if w / 10 == j {
                        4.0 + (w % 10) as f64 * 0.3
                    } else {
                        1.0
                    }
                })
                .collect();
            let s: f64 = raw.iter().sum();
            raw.into_iter().map(move |r| r / s)
        };
        MultinomialMixture {
            parameters: MultinomialParameters {
                n_components: 3,
                vocab_size: v,
                weights: vec![0.2, 0.3, 0.5],
                probs: (0..3).flat_map(topic).collect(),
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
        let (docs, z) = truth.sample(1500, 40, 5);
        let fit = MultinomialMixtureParams::new(3)
            .alpha(0.0)
            .n_init(3)
            .seed(4)
            .check()
            .unwrap()
            .fit(&docs)
            .unwrap();
        let (t, f) = (&truth.parameters, &fit.parameters);
        let l1 = |j: usize, l: usize| {
            (0..t.vocab_size)
                .map(|w| (t.prob(j)[w] - f.prob(l)[w]).abs())
                .sum::<f64>()
        };
        let perm = best_permutation(3, l1);
        for j in 0..3 {
            assert!(
                (t.weights[j] - f.weights[perm[j]]).abs() < 0.03,
                "{:?}",
                f.weights
            );
            assert!(l1(j, perm[j]) < 0.08, "component {j}: {}", l1(j, perm[j]));
        }
        let predicted = fit.predict(&docs).unwrap();
        let agree = z
            .iter()
            .zip(&predicted)
            .filter(|(z, p)| perm[**z] == **p)
            .count();
        assert!(agree as f64 > 0.97 * z.len() as f64, "{agree}");
    }

    #[test]
    fn scores_are_sequence_probabilities() {
        let m = truth();
        let seqs = vec![vec![0, 0, 15], vec![], vec![29, 3]];
        let docs = BagOfWords::from_token_sequences(&seqs, 30, "s").unwrap();
        let s = m.score_samples(&docs).unwrap();
        let p = &m.parameters;
        for (i, seq) in seqs.iter().enumerate() {
            let total: f64 = (0..3)
                .map(|j| p.weights[j] * seq.iter().map(|&w| p.prob(j)[w]).product::<f64>())
                .sum();
            assert!((s[i] - total.ln()).abs() < 1e-12);
        }
        assert_eq!(s[1], 0.0);
        let proba = m.predict_proba(&docs).unwrap();
        for j in 0..3 {
            assert!((proba.row(1)[j] - p.weights[j]).abs() < 1e-15);
        }
        let perplexity = m.perplexity(&docs).unwrap();
        assert!((perplexity - (-(s[0] + s[2]) / 5.0).exp()).abs() < 1e-12);
        let (bic, aic) = m.criteria(-2.0, 10);
        assert_eq!(m.n_parameters(), 3 * 29 + 2);
        assert!((bic - (40.0 + 89.0 * 10f64.ln())).abs() < 1e-9);
        assert!((aic - (40.0 + 178.0)).abs() < 1e-9);
        let other = BagOfWords::from_token_sequences(&[vec![0]], 5, "s").unwrap();
        assert!(matches!(
            m.score(&other),
            Err(EmError::FeatureMismatch {
                expected: 30,
                found: 5
            })
        ));
    }

    #[test]
    fn samples_have_the_requested_lengths_and_the_model_file_reads_back() {
        let m = truth();
        let (seqs, z) = m.sample_sequences(&[3, 0, 7], 1);
        assert_eq!(seqs.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 0, 7]);
        assert!(z.iter().all(|&j| j < 3) && seqs.iter().flatten().all(|&w| w < 30));
        assert_eq!(m.sample_sequences(&[3, 0, 7], 1), (seqs, z));
        let (docs, _) = m.sample(4, 6, 2);
        assert_eq!(docs.lengths(), vec![6; 4]);
        let json = serde_json::to_string(&MultinomialMixtureJson::from(&m)).unwrap();
        let back: MultinomialMixtureJson = serde_json::from_str(&json).unwrap();
        assert_eq!(MultinomialMixture::try_from(back.clone()).unwrap(), m);
        let e =
            MultinomialMixture::try_from(MultinomialMixtureJson { n_iter: 3, ..back }).unwrap_err();
        assert_eq!(e.key, "n_iter");
    }
}
